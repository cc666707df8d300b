//! Autoregression fit by ridge least squares, direct (one fit per anchor horizon
//! 1, 3, 6, 12, 24, 48; a horizon uses the nearest anchor's coefficients with its own
//! features). Features, relative to the origin's value and divided by a slow level so the
//! fit is unit-free: recent lags, the median of the last 12 steps and of the day, the values
//! one day and one week before the target (by timestamp), the value at the same phase of the
//! last hour, the target's hour of day (sin, cos) and day of week (weekend).
//! Normal equations forget with a one-week half-life; refit every 144 steps.
//!
//! **Lead-lag links**. When the tenant's series run together, each
//! series also sees its companions (the tenant's other three resources). [`Links`] keeps
//! the lagged cross-correlation between this series' step changes and each companion's
//! changes 1…4 steps earlier, separately on even and odd days. At each refit the link with
//! the strongest correlation that *holds up on the other half* (same sign, |r| ≥ 0.1 on
//! both) is kept, and its two features (the companion's change over the lag, and its last
//! step change) enter the short-horizon fits (anchors 1…12; a lead of at most 20 minutes
//! says nothing 2 hours out). No link, no features: the fit is the plain AR.

use super::{Model, Origin};
use crate::forecast::history::{COMPANIONS, DAY, History, WEEK};
use crate::forecast::ridge::Normal;
use crate::model::STEP_S;
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
/// Own features.
const P0: usize = 10;
/// With the linked companion's two.
const P: usize = P0 + 2;
/// Anchors up to this one may use a link.
const LINKED_ANCHORS: usize = 4;
const REFIT: u64 = 144;
const RIDGE: f64 = 1e-2;
/// Lags (steps) a companion may lead by.
const LAGS: usize = 4;
/// Smallest |correlation| a link needs on both halves.
pub const R_MIN: f32 = 0.1;

/// sin and cos of the time of day of a slot (a table: the forecast needs 48 a call).
fn time_of_day(slot: i64) -> (f64, f64) {
    static TABLE: std::sync::LazyLock<Vec<(f64, f64)>> = std::sync::LazyLock::new(|| {
        (0..DAY)
            .map(|s| (s as f64 / DAY as f64 * std::f64::consts::TAU).sin_cos())
            .collect()
    });
    TABLE[slot.rem_euclid(DAY) as usize]
}

fn p_of(anchor: usize) -> usize {
    if anchor < LINKED_ANCHORS { P } else { P0 }
}

/// Lagged cross-correlations with the companions, on even and odd days.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Links {
    /// `[half][c * LAGS + l − 1]`: discounted Σ Δy·Δc(l steps earlier) and Σ Δc².
    sxy: [[f32; COMPANIONS * LAGS]; 2],
    scc: [[f32; COMPANIONS * LAGS]; 2],
    /// Discounted Σ Δy² per half.
    syy: [f32; 2],
    /// Slow levels of the companions, to make their features unit-free.
    co_scale: [f32; COMPANIONS],
    /// The link in use: (companion, lag in steps).
    pub link: Option<(u8, u8)>,
}

impl Links {
    /// Forget companion c (its series changed: a new leader); a link to it is dropped.
    /// True when the link in use was.
    pub fn reset(&mut self, c: usize) -> bool {
        for half in 0..2 {
            for l in 0..LAGS {
                self.sxy[half][c * LAGS + l] = 0.0;
                self.scc[half][c * LAGS + l] = 0.0;
            }
        }
        self.co_scale[c] = 0.0;
        if self.link.is_some_and(|(lc, _)| lc as usize == c) {
            self.link = None;
            return true;
        }
        false
    }

    /// Correlation of companion c at lag l (1-based) on a half, if it has any data.
    fn corr(&self, half: usize, c: usize, l: usize) -> f32 {
        let j = c * LAGS + l - 1;
        let d = (self.syy[half] * self.scc[half][j]).sqrt();
        if d > 0.0 { self.sxy[half][j] / d } else { 0.0 }
    }

    /// The strongest link that holds on both halves: (companion, lag, weaker |r|).
    pub fn best(&self) -> Option<(u8, u8, f32)> {
        let mut best = None;
        for c in 0..COMPANIONS {
            for l in 1..=LAGS {
                let (a, b) = (self.corr(0, c, l), self.corr(1, c, l));
                let r = a.abs().min(b.abs());
                if a * b > 0.0 && r >= R_MIN && best.is_none_or(|(_, _, s)| r > s) {
                    best = Some((c as u8, l as u8, r));
                }
            }
        }
        best
    }

    fn update(&mut self, h: &History, keep: f32) {
        let (Some(y0), Some(y1)) = (h.lag(0), h.lag(1)) else {
            return;
        };
        let dy = y0 - y1;
        let half = (h.last_ts.div_euclid(86_400) & 1) as usize;
        for v in self.sxy.iter_mut().chain(self.scc.iter_mut()).flatten() {
            *v *= keep;
        }
        self.syy.iter_mut().for_each(|v| *v *= keep);
        let mut any = false;
        for c in 0..COMPANIONS {
            if let Some(v) = h.co_lag(c, 0) {
                let s = &mut self.co_scale[c];
                *s = if *s == 0.0 { v } else { 0.99 * *s + 0.01 * v };
            }
            let sc = self.co_scale[c].max(1e-3);
            for l in 1..=LAGS {
                if let (Some(a), Some(b)) = (h.co_lag(c, l), h.co_lag(c, l + 1)) {
                    let dc = (a - b) / sc;
                    self.sxy[half][c * LAGS + l - 1] += dy * dc;
                    self.scc[half][c * LAGS + l - 1] += dc * dc;
                    any = true;
                }
            }
        }
        if any {
            self.syy[half] += dy * dy;
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ar {
    normals: Vec<Normal>,
    /// ANCHORS.len() × P (anchors past LINKED_ANCHORS use the first P0).
    w: Vec<f64>,
    fitted: bool,
    scale: f64,
    pub links: Links,
}

impl Default for Ar {
    fn default() -> Self {
        Ar {
            normals: (0..ANCHORS.len())
                .map(|i| Normal::new(p_of(i), 1))
                .collect(),
            w: vec![0.0; ANCHORS.len() * P],
            fitted: false,
            scale: 0.0,
            links: Links::default(),
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
    /// Companion c now carries another series: forget what was learnt about it.
    pub fn reset_companion(&mut self, c: usize) {
        if self.links.reset(c) {
            for nrm in &mut self.normals[..LINKED_ANCHORS] {
                nrm.clear_features(P0..P);
            }
        }
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.normals.iter().map(Normal::bytes).sum::<usize>()
            + 8 * self.w.len()
    }

    /// The linked companion's features at the origin `lag` steps ago: its change over the
    /// link's lag and its last step change (over two steps for a one-step link), over its
    /// slow level. Zeros without a link or its values.
    fn link_features(&self, h: &History, lag: usize) -> [f64; 2] {
        let Some((c, l)) = self.links.link else {
            return [0.0; 2];
        };
        let (c, l) = (c as usize, l as usize);
        let sc = self.links.co_scale[c].max(1e-3) as f64;
        let at = |j: usize| h.co_lag(c, lag + j).map(|v| v as f64);
        let d = |a: usize, b: usize| match (at(a), at(b)) {
            (Some(x), Some(y)) => (x - y) / sc,
            _ => 0.0,
        };
        [d(0, l), if l == 1 { d(1, 2) } else { d(0, 1) }]
    }

    /// Features of horizon `k` at the origin `lag` steps ago; None if it is not held.
    fn features(&self, h: &History, lag: usize, k: usize) -> Option<[f64; P]> {
        let link = if anchor_of(k) < LINKED_ANCHORS {
            self.link_features(h, lag)
        } else {
            [0.0; 2]
        };
        let x = h.lag(lag)? as f64;
        let ts = h.ts_lag(lag)?;
        let s = self.scale.max(1e-3);
        let rel = |v: Option<f32>| v.map_or(0.0, |v| (v as f64 - x) / s);
        let slot = ts.div_euclid(STEP_S);
        let t = slot + k as i64;
        let (tod_sin, tod_cos) = time_of_day(t);
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
            tod_sin,
            tod_cos,
            if dow == 2 || dow == 3 { 1.0 } else { 0.0 },
            link[0],
            link[1],
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
        self.links.update(h, keep as f32);
        let s = self.scale.max(1e-3);
        for (i, &a) in ANCHORS.iter().enumerate() {
            let Some(f) = self.features(h, a, a) else {
                continue;
            };
            let f = &f[..p_of(i)];
            let x0 = h.lag(a).unwrap_or(0.0) as f64;
            let nrm = &mut self.normals[i];
            nrm.decay(keep);
            nrm.add_x(f);
            nrm.add_y(0, f, (y - x0) / s);
        }
        if h.n.is_multiple_of(REFIT) && self.normals[ANCHORS.len() - 1].count > 200.0 {
            let link = self.links.best().map(|(c, l, _)| (c, l));
            if link != self.links.link {
                // What the old link's columns learnt is about another companion.
                self.links.link = link;
                for nrm in &mut self.normals[..LINKED_ANCHORS] {
                    nrm.clear_features(P0..P);
                }
            }
            for (i, nrm) in self.normals.iter().enumerate() {
                let w = &mut self.w[i * P..i * P + p_of(i)];
                if nrm.solve(RIDGE, w) {
                    self.fitted = true;
                }
            }
        }
    }
    fn forecast(&self, o: &Origin, hs: &[usize], _want: u64, out: &mut [f32]) {
        if !self.fitted {
            return;
        }
        let s = self.scale.max(1e-3);
        for (i, &k) in hs.iter().enumerate() {
            let Some(f) = self.features(o.hist, 0, k) else {
                continue;
            };
            let a = anchor_of(k);
            let w = &self.w[a * P..a * P + p_of(a)];
            let y: f64 = f.iter().zip(w).map(|(a, b)| a * b).sum();
            out[i] = (o.x as f64 + s * y) as f32;
        }
    }
}
