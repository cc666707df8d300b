//! Seasonal naive, looked up by timestamp: the value one day (or one week) before the
//! target; the median of the last 7 days at the target's time of day; and the day/week lag
//! shifted by how much the level moved since (level-corrected).

use super::{Model, Origin, median_or_missing};
use crate::forecast::history::{DAY, History, WEEK};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Seasonal;

impl Model for Seasonal {
    const NAMES: &'static [&'static str] = &[
        "snaive_day",
        "snaive_week",
        "smed_day7",
        "snaive_day_lc",
        "snaive_week_lc",
    ];
    fn update(&mut self, _: &History) {}
    fn forecast(&self, o: &Origin, hs: &[usize], _want: u64, out: &mut [f32]) {
        let n = hs.len();
        let h = o.hist;
        let lvl_week = h.med12_at_slot(o.slot - WEEK);
        for (i, &k) in hs.iter().enumerate() {
            let t = o.slot + k as i64;
            let day = h.near_slot(t - DAY);
            let week = h.near_slot(t - WEEK);
            if let Some(v) = day {
                out[i] = v;
                if let Some(l) = o.lvl12[1] {
                    out[3 * n + i] = v + o.med12 - l;
                }
            }
            if let Some(v) = week {
                out[n + i] = v;
                if let Some(l) = lvl_week {
                    out[4 * n + i] = v + o.med12 - l;
                }
            }
            let mut buf = [0f32; 7];
            let mut c = 0;
            for d in 1..=7 {
                if let Some(v) = h.near_slot(t - d * DAY) {
                    buf[c] = v;
                    c += 1;
                }
            }
            if c >= 3 {
                out[2 * n + i] = median_or_missing(&mut buf[..c]);
            }
        }
    }
}
