//! Online conformal quantiles, locally weighted by the phase of the hour of the target.
//!
//! Per scored horizon i and phase p of the hour (of the step forecast), a factor f[i][p]: the
//! discounted mean of the positive parts of the ensemble's residuals (actual − point
//! forecast) at that phase over the same pooled over every phase, i.e. how much further the
//! actual runs above the point there than elsewhere (the levels served are all upper ones: a
//! phase whose point forecast is only ever too high needs no width above it). Both means
//! span about a day and are updated at every scored origin; the phase's holds [`PRIOR`]
//! pseudo-residuals at the pooled mean, and the factor is at least [`FLOOR`].
//! The window of each horizon holds residuals divided by their phase's factor (as it stood
//! before the residual), and the p90/p95/p99 offsets at phase p are f[i][p] × (the window's
//! empirical (conformal) quantile + a correction learnt online by quantile tracking, the
//! "P" of conformal PID control, Angelopoulos, Candès & Tibshirani 2023): after a miss the
//! correction rises by η·τ·s, after a hit it falls by η·(1 − τ)·s, s being the window's mean
//! absolute value. The window alone lags behind bursts and under-covers (0.91–0.93 on cpu);
//! the correction steers long-run coverage back to τ whatever the weighting. Phases whose
//! residuals are small (an idle phase of a cyclic tenant) get narrow quantiles, phases with
//! large ones (the start of a busy phase) wide ones. The factor is a ratio, not a scale in
//! the series' units: dividing the window by an absolute scale that follows the series'
//! level counts every change of regime twice (in the scores kept for five days and in the
//! scale), which raised pinball95 on the Bitbrains month by up to 40 %.
//!
//! The p50 offset is not scaled: it is a median of the raw residuals per horizon, tracked by
//! stochastic approximation with steps of [`MEDIAN_STEP`]·μ[i]. A scaled median would follow
//! the phase's scale, and at the first step of a busy phase, where the point forecast is
//! often late and the residuals large and of either sign, pull the p50 towards 0. μ[i] is
//! the pooled discounted mean absolute residual.

use serde::{Deserialize, Serialize};

/// The quantile levels served: p50, p90, p95, p99.
pub const LEVELS: [f32; 4] = [0.5, 0.9, 0.95, 0.99];

/// Phases of the hour a factor is kept for (the ensemble's).
pub const PHASES: usize = super::ensemble::PHASES;

/// Half-life of a phase's mean, in residuals at that phase (one day of 5-minute steps).
const PHASE_HALF_LIFE: f32 = 24.0;

/// Half-life of the pooled means, in residuals (one day of 5-minute steps).
const POOLED_HALF_LIFE: f32 = 288.0;

/// Pseudo-residuals at the pooled scale in each phase's: the factor is 1 for a phase not
/// seen yet and stays between the phase's own and 1 (with a phase's steady discounted count
/// of about 35, a phase never above the point gets 0.26). Without it, on the Bitbrains month
/// (where few tenants repeat hourly) the factors' noise raised pinball95 by up to 7 %.
const PRIOR: f32 = 12.0;

/// A phase's factor is at least this (so that a phase predicted perfectly so far does not
/// get a zero width).
pub const FLOOR: f32 = 0.1;

/// Step of the p50's stochastic approximation, in pooled mean absolute residuals.
const MEDIAN_STEP: f32 = 0.02;

/// Per horizon in [`Conformal::local`]: each phase's discounted sum of the residuals' positive
/// parts, then each phase's discounted count, then the pooled discounted sum of absolute
/// residuals and count, the p50 offset, and the pooled discounted sum of positive parts.
const STRIDE: usize = 2 * PHASES + 4;
const POOLED_SUM: usize = 2 * PHASES;
const POOLED_N: usize = 2 * PHASES + 1;
const MEDIAN: usize = 2 * PHASES + 2;
const POOLED_UP: usize = 2 * PHASES + 3;

/// The longest window the quantile selection handles.
pub const MAX_WINDOW: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "Stored", into = "Stored")]
pub struct Conformal {
    pub horizons: usize,
    pub window: usize,
    /// Quantile-tracking step, in the window's mean absolute values.
    pub eta: f32,
    /// Rings of residuals divided by their phase's factor: `[i * window + j]`.
    resid: Vec<f32>,
    /// Scores ever written per horizon.
    written: Vec<u64>,
    /// Quantile-tracking corrections added to the window's empirical quantiles:
    /// `[i * 4 + l]` (the p50, l = 0, is not scaled and has none).
    delta: Vec<f32>,
    /// The window's empirical quantiles: `[i * 4 + l]` (l = 0 unused). Recomputed from the
    /// rings when a state is restored.
    offset: Vec<f32>,
    /// Per horizon, [`STRIDE`] values: the phases' means, the pooled ones and the p50.
    local: Vec<f32>,
}

/// The encoded form: the fields of the pooled version that came before, whose last vector
/// (its offsets) now holds [`Conformal::local`] (the offsets are recomputed). A state of the
/// pooled version (that vector 4 per horizon) is converted: its window and corrections are
/// kept, every phase starts at factor 1 (so its offsets are the ones saved), the p50 is its
/// saved offset, and the pooled means start from its window.
#[derive(Serialize, Deserialize)]
struct Stored {
    horizons: usize,
    window: usize,
    eta: f32,
    resid: Vec<f32>,
    written: Vec<u64>,
    delta: Vec<f32>,
    #[serde(alias = "offset")]
    local: Vec<f32>,
}

impl From<Conformal> for Stored {
    fn from(c: Conformal) -> Self {
        Stored {
            horizons: c.horizons,
            window: c.window,
            eta: c.eta,
            resid: c.resid,
            written: c.written,
            delta: c.delta,
            local: c.local,
        }
    }
}

impl TryFrom<Stored> for Conformal {
    type Error = String;

    fn try_from(s: Stored) -> Result<Self, String> {
        let h = s.horizons;
        if s.window == 0
            || s.window > MAX_WINDOW
            || s.resid.len() != h * s.window
            || s.written.len() != h
            || s.delta.len() != h * 4
        {
            return Err(format!(
                "conformal state of {h} horizons × {} residuals has vectors of the wrong sizes",
                s.window
            ));
        }
        let mut c = Conformal {
            horizons: h,
            window: s.window,
            eta: s.eta,
            resid: s.resid,
            written: s.written,
            delta: s.delta,
            offset: vec![0.0; h * 4],
            local: s.local,
        };
        if c.local.len() == h * 4 {
            // The pooled version: its window as it is, every factor 1.
            let old = std::mem::replace(&mut c.local, vec![0.0; h * STRIDE]);
            for i in 0..h {
                let ring = c.ring(i);
                let n = ring.len();
                let mae = ring.iter().map(|v| v.abs()).sum::<f32>() / n.max(1) as f32;
                let up = ring.iter().map(|v| v.max(0.0)).sum::<f32>() / n.max(1) as f32;
                let b = i * STRIDE;
                c.local[b + POOLED_SUM] = mae * n as f32;
                c.local[b + POOLED_UP] = up * n as f32;
                c.local[b + POOLED_N] = n as f32;
                c.local[b + MEDIAN] = old[i * 4] + c.delta[i * 4];
                c.delta[i * 4] = 0.0;
            }
        } else if c.local.len() != h * STRIDE {
            return Err(format!(
                "conformal state of {h} horizons has {} phase means, not {}",
                c.local.len(),
                h * STRIDE
            ));
        }
        if c.resid
            .iter()
            .chain(&c.delta)
            .chain(&c.local)
            .any(|v| !v.is_finite())
        {
            return Err("conformal state holds a non-finite value".into());
        }
        for i in 0..h {
            c.requantile(i);
        }
        Ok(c)
    }
}

impl Conformal {
    pub fn new(horizons: usize, window: usize, eta: f32) -> Self {
        Conformal {
            horizons,
            window,
            eta,
            resid: vec![0.0; horizons * window],
            written: vec![0; horizons],
            offset: vec![0.0; horizons * 4],
            delta: vec![0.0; horizons * 4],
            local: vec![0.0; horizons * STRIDE],
        }
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + 4 * (self.resid.len() + self.offset.len() + self.delta.len() + self.local.len())
            + 8 * self.written.len()
    }

    /// The filled part of horizon i's ring.
    fn ring(&self, i: usize) -> &[f32] {
        let w = self.window;
        let n = (self.written[i] as usize).min(w);
        &self.resid[i * w..i * w + n]
    }

    /// The pooled mean absolute residual at scored horizon i (0 before any).
    pub fn pooled(&self, i: usize) -> f32 {
        let b = i * STRIDE;
        let n = self.local[b + POOLED_N];
        if n > 0.0 {
            self.local[b + POOLED_SUM] / n
        } else {
            0.0
        }
    }

    /// How much larger than over every phase the residuals at scored horizon i whose target
    /// is at phase p run above the point: the phase's discounted mean of positive parts over
    /// the pooled one, with [`PRIOR`] pseudo-residuals of the pooled, at least [`FLOOR`].
    pub fn factor(&self, i: usize, p: usize) -> f32 {
        let b = i * STRIDE;
        let pooled_n = self.local[b + POOLED_N];
        let pooled = if pooled_n > 0.0 {
            self.local[b + POOLED_UP] / pooled_n
        } else {
            0.0
        };
        if pooled <= 0.0 {
            return 1.0;
        }
        let n = self.local[b + PHASES + p];
        ((self.local[b + p] + PRIOR * pooled) / (n + PRIOR) / pooled).max(FLOOR)
    }

    /// The offsets to add to the point forecast at scored horizon i, for a target at phase
    /// p of the hour, for each level.
    pub fn offsets(&self, i: usize, p: usize) -> [f32; 4] {
        let s = self.factor(i, p);
        let o = &self.offset[i * 4..i * 4 + 4];
        let d = &self.delta[i * 4..i * 4 + 4];
        [
            self.local[i * STRIDE + MEDIAN],
            s * (o[1] + d[1]),
            s * (o[2] + d[2]),
            s * (o[3] + d[3]),
        ]
    }

    /// A residual observed at scored horizon i for a target at phase p of the hour. Every
    /// residual moves the means and the p50; `slow` ones also enter the window.
    pub fn observe(&mut self, i: usize, p: usize, r: f32, slow: bool) {
        let b = i * STRIDE;
        if self.local[b + POOLED_N] > 0.0 {
            let mu = self.pooled(i);
            let m = &mut self.local[b + MEDIAN];
            *m += MEDIAN_STEP * mu * if r > *m { 0.5 } else { -0.5 };
            if slow {
                self.push(i, r / self.factor(i, p));
            }
        }
        let keep = 0.5f32.powf(1.0 / PHASE_HALF_LIFE);
        self.local[b + p] = keep * self.local[b + p] + r.max(0.0);
        self.local[b + PHASES + p] = keep * self.local[b + PHASES + p] + 1.0;
        let keep = 0.5f32.powf(1.0 / POOLED_HALF_LIFE);
        self.local[b + POOLED_SUM] = keep * self.local[b + POOLED_SUM] + r.abs();
        self.local[b + POOLED_UP] = keep * self.local[b + POOLED_UP] + r.max(0.0);
        self.local[b + POOLED_N] = keep * self.local[b + POOLED_N] + 1.0;
    }

    /// A residual divided by its phase's factor into horizon i's window.
    fn push(&mut self, i: usize, s: f32) {
        // Track each level by whether the current quantile covered this value.
        if self.written[i] >= 20 {
            let ring = self.ring(i);
            let scale = ring.iter().map(|v| v.abs()).sum::<f32>() / ring.len() as f32;
            for l in 1..4 {
                let q = self.offset[i * 4 + l] + self.delta[i * 4 + l];
                let miss = if s > q { 1.0 } else { 0.0 };
                self.delta[i * 4 + l] += self.eta * scale * (miss - (1.0 - LEVELS[l]));
            }
        }
        let w = self.window;
        self.resid[i * w + (self.written[i] % w as u64) as usize] = s;
        self.written[i] += 1;
        self.requantile(i);
    }

    /// The empirical (conformal) quantiles of horizon i's window.
    fn requantile(&mut self, i: usize) {
        let n = self.ring(i).len();
        if n == 0 {
            return;
        }
        let mut buf = [0f32; MAX_WINDOW];
        let b = &mut buf[..n];
        b.copy_from_slice(self.ring(i));
        // Highest level first; each selection leaves the lower part for the next.
        let mut hi = n;
        for l in (1..4).rev() {
            // Conformal rank: ceil(level × (n + 1)), capped at n.
            let rank = ((LEVELS[l] * (n as f32 + 1.0)).ceil() as usize).clamp(1, n);
            let idx = (rank - 1).min(hi - 1);
            let (_, v, _) = b[..hi].select_nth_unstable_by(idx, f32::total_cmp);
            self.offset[i * 4 + l] = *v;
            hi = idx + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniform on [-1, 1) from a small LCG.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        }
    }

    #[test]
    fn covers_a_stationary_noisy_series() {
        let mut c = Conformal::new(1, 256, 0.1);
        let mut rng = Lcg(12345);
        let (mut hits, mut n) = ([0usize; 4], 0);
        for t in 0..20000 {
            let r = rng.next();
            let p = t % PHASES;
            if t >= 1000 {
                for (l, h) in hits.iter_mut().enumerate() {
                    *h += (r <= c.offsets(0, p)[l]) as usize;
                }
                n += 1;
            }
            c.observe(0, p, r, t % 7 == 0);
        }
        for (l, h) in hits.iter().enumerate() {
            let cov = *h as f32 / n as f32;
            assert!((cov - LEVELS[l]).abs() < 0.01, "level {}: {cov}", LEVELS[l]);
        }
    }

    #[test]
    fn quiet_phases_are_narrow_and_a_noisy_phase_wide() {
        // Phase 0 (a busy phase's start) errs by up to ±1; the others by up to ±0.01.
        let mut c = Conformal::new(1, 200, 0.1);
        let mut rng = Lcg(7);
        let noise = |p: usize| if p == 0 { 1.0 } else { 0.01 };
        let (mut hits, mut n) = ([0usize; PHASES], [0usize; PHASES]);
        for t in 0..30000 {
            let p = t % PHASES;
            let r = noise(p) * rng.next();
            if t >= 5000 {
                hits[p] += (r <= c.offsets(0, p)[2]) as usize;
                n[p] += 1;
            }
            c.observe(0, p, r, t % 7 == 0);
        }
        let wide = c.offsets(0, 0)[2];
        let mut narrowest = f32::MAX;
        for p in 1..PHASES {
            let narrow = c.offsets(0, p)[2];
            assert!(narrow < 0.03, "p95 offset at quiet phase {p}: {narrow}");
            narrowest = narrowest.min(narrow);
        }
        // The pooled version gives every phase the same offset.
        assert!(
            wide > 10.0 * narrowest,
            "p95 offset at the noisy phase: {wide}"
        );
        let all = hits.iter().sum::<usize>() as f32 / n.iter().sum::<usize>() as f32;
        assert!(
            (all - 0.95).abs() < 0.01,
            "coverage over every phase: {all}"
        );
    }

    #[test]
    fn the_median_is_not_scaled_by_the_phase() {
        // At phase 0 the residuals are 0.5 ± 0.5 (the point forecast is often short there);
        // elsewhere 0.2 ± 0.01. The p50 offset is the median of all, unscaled, and stays
        // positive whatever the target's phase.
        let mut c = Conformal::new(1, 200, 0.1);
        let mut rng = Lcg(99);
        for t in 0..20000 {
            let p = t % PHASES;
            let r = if p == 0 {
                0.5 + 0.5 * rng.next()
            } else {
                0.2 + 0.01 * rng.next()
            };
            c.observe(0, p, r, t % 7 == 0);
        }
        for p in 0..PHASES {
            let m = c.offsets(0, p)[0];
            assert!((m - 0.2).abs() < 0.02, "p50 offset at phase {p}: {m}");
        }
    }

    #[test]
    fn a_pooled_state_converts_to_the_same_offsets() {
        // The encoding before the scales by phase: raw residuals, raw offsets.
        let (h, w) = (2, 50);
        let mut rng = Lcg(3);
        let resid: Vec<f32> = (0..h * w).map(|_| 3.0 * rng.next()).collect();
        let mut offsets = vec![0f32; h * 4];
        for i in 0..h {
            let mut r = resid[i * w..(i + 1) * w].to_vec();
            r.sort_by(f32::total_cmp);
            for l in 0..4 {
                let rank = ((LEVELS[l] * (w as f32 + 1.0)).ceil() as usize).clamp(1, w);
                offsets[i * 4 + l] = r[rank - 1];
            }
        }
        let delta = vec![0.1, 0.2, 0.3, 0.4, -0.1, -0.2, -0.3, -0.4];
        let old = Stored {
            horizons: h,
            window: w,
            eta: 0.1,
            resid,
            written: vec![w as u64 + 7; h],
            delta: delta.clone(),
            local: offsets.clone(),
        };
        let bytes = postcard::to_allocvec(&old).unwrap();
        let c: Conformal = postcard::from_bytes(&bytes).unwrap();
        for i in 0..h {
            for p in [0, 5, 11] {
                let got = c.offsets(i, p);
                for l in 0..4 {
                    let want = offsets[i * 4 + l] + delta[i * 4 + l];
                    assert!(
                        (got[l] - want).abs() < 1e-5,
                        "h{i} p{p} l{l}: {got:?} vs {want}"
                    );
                }
            }
        }
        // The same saved as JSON, whose last vector was named `offset` then.
        let json = serde_json::to_string(&old)
            .unwrap()
            .replace("\"local\"", "\"offset\"");
        let from_json: Conformal = serde_json::from_str(&json).unwrap();
        assert_eq!(from_json.offsets(1, 3), c.offsets(1, 3));
        // And the converted state encodes and decodes as itself.
        let again: Conformal = postcard::from_bytes(&postcard::to_allocvec(&c).unwrap()).unwrap();
        assert_eq!(again.offsets(1, 3), c.offsets(1, 3));
        // A state whose vectors do not fit its sizes is refused, not loaded.
        let bad = Stored {
            horizons: h,
            window: w,
            eta: 0.1,
            resid: vec![0.0; 3],
            written: vec![0; h],
            delta: vec![0.0; h * 4],
            local: vec![0.0; h * STRIDE],
        };
        let bytes = postcard::to_allocvec(&bad).unwrap();
        assert!(postcard::from_bytes::<Conformal>(&bytes).is_err());
    }
}
