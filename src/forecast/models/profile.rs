//! Level-corrected daily profiles, looked up by timestamp: today's level plus the median,
//! over the last 3, 7 or 14 days, of how far the value at the target's time of day sat from
//! that day's level. Levels are either the median of the last 12 values (now, and the 12
//! slots ending at the origin's time of day on the past day: `profN`) or the median of the
//! last 24 hours (now, and as it stood then: `profN_day`).
//! The strongest single candidates on the Bitbrains month (forecasting notes).

use super::{Model, Origin};
use crate::forecast::history::{DAY, History};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profile;

/// (days, use the day's median as the past level)
const VARIANTS: [(usize, bool); 5] = [(3, false), (7, false), (14, false), (7, true), (14, true)];

impl Model for Profile {
    const NAMES: &'static [&'static str] = &["prof3", "prof7", "prof14", "prof7_day", "prof14_day"];
    fn update(&mut self, _: &History) {}
    fn forecast(&self, o: &Origin, hs: &[usize], want: u64, out: &mut [f32]) {
        let n = hs.len();
        let h = o.hist;
        // Only the wanted variants, and only as many past days as they read.
        let days_needed = VARIANTS
            .iter()
            .enumerate()
            .filter(|&(c, _)| want & (1 << c) != 0)
            .map(|(_, &(days, _))| days)
            .max()
            .unwrap_or(0);
        let by_12 = want & 0b00111 != 0;
        let by_day = want & 0b11000 != 0;
        for (i, &k) in hs.iter().enumerate() {
            let t = o.slot + k as i64;
            // The deviations of the past days at the target's time of day from their
            // levels, kept sorted as the days are added: the 3-, 7- and 14-day medians are
            // read off the growing prefix (one insertion sort for all three).
            let mut dev12 = Sorted::default();
            let mut devday = Sorted::default();
            for d in 1..=days_needed {
                if let Some(v) = h.near_slot(t - d as i64 * DAY) {
                    if by_12 && let Some(l) = o.lvl12[d] {
                        dev12.insert(v - l);
                    }
                    if by_day && let Some(l) = o.daymed[d] {
                        devday.insert(v - l);
                    }
                }
                write_ending(d, &dev12, &devday, o, i, n, want, out);
            }
        }
    }
}

/// At the end of day `d`: write the variants whose window ends there.
#[allow(clippy::too_many_arguments)]
#[inline]
fn write_ending(
    d: usize,
    dev12: &Sorted,
    devday: &Sorted,
    o: &Origin,
    i: usize,
    n: usize,
    want: u64,
    out: &mut [f32],
) {
    for (c, &(days, day_level)) in VARIANTS.iter().enumerate() {
        if days != d || want & (1 << c) == 0 {
            continue;
        }
        let (dev, now) = if day_level {
            (devday, o.med288)
        } else {
            (dev12, o.med12)
        };
        if dev.n * 2 >= days.min(7) {
            out[c * n + i] = now + dev.median();
        }
    }
}

/// Up to 14 values kept in order.
#[derive(Default)]
struct Sorted {
    v: [f32; 14],
    n: usize,
}

impl Sorted {
    #[inline]
    fn insert(&mut self, x: f32) {
        let mut j = self.n;
        while j > 0 && self.v[j - 1] > x {
            self.v[j] = self.v[j - 1];
            j -= 1;
        }
        self.v[j] = x;
        self.n += 1;
    }

    /// Median (the mean of the middle two for an even count); n > 0.
    #[inline]
    fn median(&self) -> f32 {
        let n = self.n;
        if n % 2 == 1 {
            self.v[n / 2]
        } else {
            0.5 * (self.v[n / 2 - 1] + self.v[n / 2])
        }
    }
}
