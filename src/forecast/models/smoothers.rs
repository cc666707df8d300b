//! Smoothers: exponentially weighted moving averages, and the last value shrunk toward a
//! longer median (they help memory at short horizons; the ensemble weighs them per horizon).

use super::{Model, Origin};
use crate::forecast::history::History;
use serde::{Deserialize, Serialize};

const ALPHAS: [f64; 4] = [0.5, 0.3, 0.1, 0.03];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Smoothers {
    ewma: [f64; 4],
}

impl Model for Smoothers {
    const NAMES: &'static [&'static str] = &[
        "ewma50",
        "ewma30",
        "ewma10",
        "ewma03",
        "shrink50",
        "shrink75",
        "shrink_m12",
    ];
    fn update(&mut self, h: &History) {
        let x = h.last() as f64;
        for (e, a) in self.ewma.iter_mut().zip(ALPHAS) {
            *e = if h.n == 1 { x } else { a * x + (1.0 - a) * *e };
        }
    }
    fn forecast(&self, o: &Origin, hs: &[usize], _want: u64, out: &mut [f32]) {
        let n = hs.len();
        let vals = [
            self.ewma[0] as f32,
            self.ewma[1] as f32,
            self.ewma[2] as f32,
            self.ewma[3] as f32,
            0.5 * o.x + 0.5 * o.med288,
            0.75 * o.x + 0.25 * o.med288,
            0.5 * o.x + 0.5 * o.med12,
        ];
        for (c, v) in vals.into_iter().enumerate() {
            out[c * n..(c + 1) * n].fill(v);
        }
    }
}
