//! Autoregression fit by ridge least squares, direct (one fit per anchor horizon
//! 1, 3, 6, 12, 24, 48; a horizon uses the nearest anchor's coefficients with its own
//! features). Features, relative to the origin's value and divided by a slow level so the
//! fit is unit-free: recent lags, the median of the last 12 steps and of the day, the values
//! one day and one week before the target (by timestamp), the value at the same phase of the
//! last hour, the target's hour of day (sin, cos) and day of week (weekend).
//! Normal equations forget with a one-week half-life; refit every 144 steps.

use super::{Model, Origin};
use crate::forecast::history::{DAY, History, STEP_S, WEEK};
use crate::forecast::ridge::Normal;
use serde::{Deserialize, Serialize};

#[cfg(test)]
#[test]
fn anchors_by_log_distance() {
    for k in 1..=48usize {
        let lk = (k as f64).ln();
        let mut best = 0;
        for (i, &a) in ANCHORS.iter().enumerate() {
            if ((a as f64).ln() - lk).abs() < ((ANCHORS[best] as f64).ln() - lk).abs() {
                best = i;
            }
        }
        assert_eq!(anchor_of(k), best, "k={k}");
    }
}

const ANCHORS: [usize; 6] = [1, 3, 6, 12, 24, 48];
const P: usize = 10;
const REFIT: u64 = 144;
const RIDGE: f64 = 1e-2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ar {
    normals: Vec<Normal>,
    /// ANCHORS.len() × P.
    w: Vec<f64>,
    fitted: bool,
    scale: f64,
}

impl Default for Ar {
    fn default() -> Self {
        Ar {
            normals: ANCHORS.iter().map(|_| Normal::new(P, 1)).collect(),
            w: vec![0.0; ANCHORS.len() * P],
            fitted: false,
            scale: 0.0,
        }
    }
}

/// The anchor nearest to horizon k in log terms: k² against the products of neighbouring
/// anchors (integers, no logarithms).
fn anchor_of(k: usize) -> usize {
    let mut i = 0;
    while i + 1 < ANCHORS.len() && k * k > ANCHORS[i] * ANCHORS[i + 1] {
        i += 1;
    }
    i
}

impl Ar {
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.normals.iter().map(Normal::bytes).sum::<usize>()
            + 8 * self.w.len()
    }

    /// Features of horizon `k` at the origin `lag` steps ago; None if it is not held.
    fn features(&self, h: &History, lag: usize, k: usize) -> Option<[f64; P]> {
        let x = h.lag(lag)? as f64;
        let ts = h.ts_lag(lag)?;
        let s = self.scale.max(1e-3);
        let rel = |v: Option<f32>| v.map_or(0.0, |v| (v as f64 - x) / s);
        let slot = ts.div_euclid(STEP_S);
        let t = slot + k as i64;
        let tod = (t.rem_euclid(DAY) as f64 / DAY as f64) * std::f64::consts::TAU;
        // 1970-01-01 was a Thursday: day 2 and 3 of the week (from Thursday) are Sat, Sun.
        let dow = t.div_euclid(DAY).rem_euclid(7);
        let phase = 12 * k.div_ceil(12) - k;
        Some([
            1.0,
            rel(h.lag(lag + 1)),
            rel(h.med12_lag(lag)),
            rel(h.daymed_at_slot(slot)),
            rel(h.near_slot(t - DAY)),
            rel(h.near_slot(t - WEEK)),
            rel(h.lag(lag + phase)),
            tod.sin(),
            tod.cos(),
            if dow == 2 || dow == 3 { 1.0 } else { 0.0 },
        ])
    }
}

impl Model for Ar {
    const NAMES: &'static [&'static str] = &["ar_ridge"];
    fn update(&mut self, h: &History) {
        let y = h.last() as f64;
        self.scale = if h.n == 1 {
            y
        } else {
            0.99 * self.scale + 0.01 * y
        };
        let keep = 0.5f64.powf(1.0 / WEEK as f64);
        let s = self.scale.max(1e-3);
        for (i, &a) in ANCHORS.iter().enumerate() {
            let Some(f) = self.features(h, a, a) else {
                continue;
            };
            let x0 = h.lag(a).unwrap_or(0.0) as f64;
            let nrm = &mut self.normals[i];
            nrm.decay(keep);
            nrm.add_x(&f);
            nrm.add_y(0, &f, (y - x0) / s);
        }
        if h.n.is_multiple_of(REFIT) && self.normals[ANCHORS.len() - 1].count > 200.0 {
            for (i, nrm) in self.normals.iter().enumerate() {
                if nrm.solve(RIDGE, &mut self.w[i * P..(i + 1) * P]) {
                    self.fitted = true;
                }
            }
        }
    }
    fn forecast(&self, o: &Origin, hs: &[usize], out: &mut [f32]) {
        if !self.fitted {
            return;
        }
        let s = self.scale.max(1e-3);
        for (i, &k) in hs.iter().enumerate() {
            let Some(f) = self.features(o.hist, 0, k) else {
                continue;
            };
            let a = anchor_of(k);
            let w = &self.w[a * P..(a + 1) * P];
            let y: f64 = f.iter().zip(w).map(|(a, b)| a * b).sum();
            out[i] = (o.x as f64 + s * y) as f32;
        }
    }
}
