//! Level-corrected daily profiles, looked up by timestamp: today's level plus the median,
//! over the last 3, 7 or 14 days, of how far the value at the target's time of day sat from
//! that day's level. Levels are either the median of the last 12 values (now, and the 12
//! slots ending at the origin's time of day on the past day: `profN`) or the median of the
//! last 24 hours (now, and as it stood then: `profN_day`).
//! The strongest single candidates on the Bitbrains month (forecasting notes).

use super::{Model, Origin, median_or_missing};
use crate::forecast::history::{DAY, History};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profile;

/// (days, use the day's median as the past level)
const VARIANTS: [(usize, bool); 5] = [(3, false), (7, false), (14, false), (7, true), (14, true)];

impl Model for Profile {
    const NAMES: &'static [&'static str] = &["prof3", "prof7", "prof14", "prof7_day", "prof14_day"];
    fn update(&mut self, _: &History) {}
    fn forecast(&self, o: &Origin, hs: &[usize], out: &mut [f32]) {
        let n = hs.len();
        let h = o.hist;
        for (i, &k) in hs.iter().enumerate() {
            let t = o.slot + k as i64;
            // The past values at the target's time of day, once for all variants.
            let mut past = [None; 15];
            for (d, p) in past.iter_mut().enumerate().skip(1) {
                *p = h.near_slot(t - d as i64 * DAY);
            }
            for (c, &(days, day_level)) in VARIANTS.iter().enumerate() {
                let mut buf = [0f32; 14];
                let mut m = 0;
                for d in 1..=days {
                    let lvl = if day_level { o.daymed[d] } else { o.lvl12[d] };
                    if let (Some(v), Some(l)) = (past[d], lvl) {
                        buf[m] = v - l;
                        m += 1;
                    }
                }
                if m * 2 >= days.min(7) {
                    let now = if day_level { o.med288 } else { o.med12 };
                    out[c * n + i] = now + median_or_missing(&mut buf[..m]);
                }
            }
        }
    }
}
