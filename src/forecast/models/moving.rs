//! Short moving averages and medians (flat forecasts).

use super::{Model, Origin};
use crate::forecast::history::{History, median};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Moving;

impl Model for Moving {
    const NAMES: &'static [&'static str] = &[
        "mean3",
        "mean12",
        "median3",
        "median12",
        "median36",
        "median288",
        "tmean12",
    ];
    fn update(&mut self, _: &History) {}
    fn forecast(&self, o: &Origin, hs: &[usize], _want: u64, out: &mut [f32]) {
        let n = hs.len();
        let h = o.hist;
        let mut last = [0f32; 12];
        let k = (h.n as usize).min(12);
        for (j, v) in last[..k].iter_mut().enumerate() {
            *v = h.lag(j).unwrap_or(o.x);
        }
        let mean3 = h.mean_last(3);
        let mean12 = h.mean_last(12);
        let median3 = h.median_last(3);
        let median36 = h.median_last(36);
        // Trimmed mean of the last 12: drop the two highest and two lowest.
        let tmean = if k >= 8 {
            median(&mut last[..k]); // sorts (k <= 16)
            let s: f32 = last[2..k - 2].iter().sum();
            s / (k - 4) as f32
        } else {
            mean12
        };
        let vals = [mean3, mean12, median3, o.med12, median36, o.med288, tmean];
        for (c, v) in vals.into_iter().enumerate() {
            out[c * n..(c + 1) * n].fill(v);
        }
    }
}
