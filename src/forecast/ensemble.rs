//! Combining the candidates: per horizon, each candidate's exponentially discounted mean
//! absolute error S_m (scored only once the target has been observed), weights
//! ∝ (S_m / min S)^-power, and the weighted median of the candidates' forecasts (the score is
//! MAE, minimised by the median: on spiky series a weighted mean is clearly worse).

use super::history::present;
use serde::{Deserialize, Serialize};

/// The most candidates a weighted median combines (`Config::cap` is clamped to it).
pub const MAX_CAP: usize = 32;

/// The first scored horizon (index) whose weights pool the neighbouring horizons' scores.
pub const POOL_FROM: usize = 3;

/// Discounted scores a candidate needs before it is weighed.
pub const MIN_COUNT: f32 = 20.0;

/// The phases of the hour (5-minute slots of the origin's timestamp) whose scores are also
/// kept apart: many tenants repeat every hour, and which candidate is best depends on where
/// in that cycle the forecast starts.
pub const PHASES: usize = 12;

/// Fixed point of the phase ratios: 1.0 is stored as this; the largest is 15.99.
const RATIO_ONE: f32 = 4096.0;

/// The most scored horizons.
const MAX_HORIZONS: usize = 16;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scores {
    pub models: usize,
    pub horizons: usize,
    /// Discounted sums of |error| and of counts: `[m * horizons + i]`.
    pub abs: Vec<f32>,
    pub count: Vec<f32>,
    /// Per phase of the origin: each candidate's discounted mean of |error| over its overall
    /// MAE at the time (1 = as good there as overall), in fixed point (u16, 1.0 =
    /// `RATIO_ONE`: half an f32 table's size, and the resolution is ample):
    /// `[(i * PHASES + p) * models + m]`.
    pub phase: Vec<u16>,
}

impl Scores {
    pub fn new(models: usize, horizons: usize) -> Self {
        assert!(models <= 64 && horizons <= MAX_HORIZONS);
        Scores {
            models,
            horizons,
            abs: vec![0.0; models * horizons],
            count: vec![0.0; models * horizons],
            phase: vec![RATIO_ONE as u16; horizons * PHASES * models],
        }
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + 4 * (self.abs.len() + self.count.len()) + 2 * self.phase.len()
    }

    /// Record candidate m's absolute error at scored horizon i for an origin at `phase`;
    /// `keep` discounts the overall sums (per score), `keep_phase` the phase's ratio (per
    /// score at that phase).
    #[inline]
    pub fn add(&mut self, m: usize, i: usize, phase: usize, err: f32, keep: f32, keep_phase: f32) {
        let j = m * self.horizons + i;
        // The error relative to the candidate's MAE so far (before this score).
        let x = if self.count[j] > 0.5 && self.abs[j] > 0.0 {
            err * self.count[j] / self.abs[j]
        } else {
            1.0
        };
        let r = &mut self.phase[(i * PHASES + phase) * self.models + m];
        let v = keep_phase * (*r as f32) + (1.0 - keep_phase) * x.min(15.99) * RATIO_ONE;
        *r = (v + 0.5) as u16;
        self.abs[j] = keep * self.abs[j] + err;
        self.count[j] = keep * self.count[j] + 1.0;
    }

    /// The discounted mean absolute error, if scored at all.
    #[inline]
    pub fn mae(&self, m: usize, i: usize) -> Option<f32> {
        let j = m * self.horizons + i;
        (self.count[j] > 0.5).then(|| self.abs[j] / self.count[j])
    }

    /// Every candidate's overall weight at every scored horizon: `out[i * models + m]` (0 for
    /// disabled ones and those not yet scored MIN_COUNT times; equal weights among the
    /// enabled ones at a horizon where none is).
    pub fn weights_all(&self, enabled: &[bool], power: f32, out: &mut [f32]) {
        let (nm, nh) = (self.models, self.horizons);
        // S_m / min S per horizon (NaN: not weighed).
        let mut ratio = [0f32; MAX_HORIZONS * 64];
        let mut ok = [false; MAX_HORIZONS];
        for i in 0..nh {
            ok[i] = self
                .ratios(i, enabled, &mut ratio[i * nm..(i + 1) * nm])
                .is_some();
        }
        for i in 0..nh {
            let w = &mut out[i * nm..(i + 1) * nm];
            if !ok[i] {
                for m in 0..nm {
                    w[m] = if enabled[m] { 1.0 } else { 0.0 };
                }
                continue;
            }
            // From POOL_FROM (12 steps) on, a candidate's standing is the mean of its ratios
            // at this horizon and the two next to it: far-ahead scores are noisier, and
            // neighbouring horizons rank the candidates alike.
            for m in 0..nm {
                let mut r = ratio[i * nm + m];
                if r.is_nan() {
                    w[m] = 0.0;
                    continue;
                }
                let mut n = 1.0;
                if i >= POOL_FROM {
                    for j in [i - 1, i + 1] {
                        if j < nh && ok[j] && !ratio[j * nm + m].is_nan() {
                            r += ratio[j * nm + m];
                            n += 1.0;
                        }
                    }
                }
                w[m] = inv_pow(r / n, power);
            }
        }
    }

    /// Scale the weights `w` of the candidates `idx` (u8::MAX: none) at scored horizon i by
    /// their standing at `phase`: (1 − alpha + alpha × ratio)^-power, the ratio being the
    /// candidate's error at that phase over its overall error (from POOL_FROM on, averaged
    /// with the neighbouring horizons', as the overall weights are).
    pub fn phase_adjust(
        &self,
        i: usize,
        phase: usize,
        alpha: f32,
        power: f32,
        idx: &[u8],
        w: &mut [f32],
    ) {
        if alpha == 0.0 {
            return;
        }
        let factor = |m: usize, h: usize| {
            1.0 - alpha
                + alpha * (self.phase[(h * PHASES + phase) * self.models + m] as f32 / RATIO_ONE)
        };
        for (j, &c) in idx.iter().enumerate() {
            if c == u8::MAX {
                continue;
            }
            let m = c as usize;
            let (mut f, mut n) = (factor(m, i), 1.0);
            if i >= POOL_FROM {
                for h in [i - 1, i + 1] {
                    if h < self.horizons {
                        f += factor(m, h);
                        n += 1.0;
                    }
                }
            }
            w[j] *= inv_pow(f / n, power);
        }
    }

    /// [`Self::weights_all`] at one scored horizon (for tests).
    pub fn weights(&self, i: usize, enabled: &[bool], power: f32, out: &mut [f32]) {
        let mut all = vec![0f32; self.horizons * self.models];
        self.weights_all(enabled, power, &mut all);
        out[..self.models].copy_from_slice(&all[i * self.models..(i + 1) * self.models]);
    }

    /// S_m / min S (≥ 1) at scored horizon i for the trusted enabled candidates (NaN for
    /// the others); None when none is trusted. A candidate that started late (a weekly lag,
    /// a model that needs a refit) has fewer scores than the others: the scores it missed
    /// count as the typical candidate's error (the median MAE), so that a short lucky run
    /// (a weekly lag on a series that has been zero all week) cannot outweigh candidates
    /// judged over the whole window.
    fn ratios(&self, i: usize, enabled: &[bool], out: &mut [f32]) -> Option<()> {
        let nh = self.horizons;
        let mut maes = [0f32; 64];
        let mut k = 0;
        let (mut cmin, mut cmax) = (f32::INFINITY, 0f32);
        for m in 0..self.models {
            let c = self.count[m * nh + i];
            out[m] = f32::NAN;
            if enabled[m] && c >= MIN_COUNT {
                maes[k] = self.abs[m * nh + i] / c;
                k += 1;
                cmin = cmin.min(c);
                cmax = cmax.max(c);
            }
        }
        if k == 0 {
            return None;
        }
        // The median only matters when some candidate has missed a noticeable share of the
        // scores (usually none has: the counts saturate alike).
        let pool = if cmin < cmax * 0.999 {
            super::history::median(&mut maes[..k])
        } else {
            0.0
        };
        let (mut min, mut sum) = (f32::INFINITY, 0.0);
        for m in 0..self.models {
            let j = m * nh + i;
            if enabled[m] && self.count[j] >= MIN_COUNT {
                let s = (self.abs[j] + (cmax - self.count[j]).max(0.0) * pool) / cmax;
                out[m] = s;
                min = min.min(s);
                sum += s;
            }
        }
        let eps = 1e-6 * sum / k as f32 + 1e-20;
        let inv = 1.0 / (min + eps);
        for v in out[..self.models].iter_mut() {
            if !v.is_nan() {
                *v = (*v + eps) * inv;
            }
        }
        Some(())
    }
}

/// r^-power, without `powf` for the usual power 5 (on the update's path).
#[inline]
fn inv_pow(r: f32, power: f32) -> f32 {
    if power == 5.0 {
        let r2 = r * r;
        1.0 / (r2 * r2 * r)
    } else {
        r.powf(-power)
    }
}

/// The candidates worth combining at one horizon: weight above 1e-4 of the largest, at most
/// `idx.len()` of them (the heaviest), written to `idx` (u8::MAX after the last) and `w`.
pub fn top(weights: &[f32], idx: &mut [u8], w: &mut [f32]) {
    let cap = idx.len();
    let wmax = weights.iter().copied().fold(0.0, f32::max);
    let mut v = [(0u8, 0f32); 64];
    let mut n = 0;
    for (m, &x) in weights.iter().enumerate() {
        if x > 0.0 && x > wmax * 1e-4 {
            v[n] = (m as u8, x);
            n += 1;
        }
    }
    let v = &mut v[..n];
    if n > cap && cap > 0 {
        // The `cap` heaviest (ties: the lower index), in no particular order.
        v.select_nth_unstable_by(cap - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    for j in 0..cap {
        (idx[j], w[j]) = v.get(j).copied().unwrap_or((u8::MAX, 0.0));
    }
}

/// The weighted median of the present values of the chosen candidates (`top`): `idx[j]`
/// with weight `w[j]`; u8::MAX marks an unused entry. `values` is indexed by candidate.
pub fn weighted_median_of(values: &[f32], idx: &[u8], w: &[f32]) -> Option<f32> {
    let mut buf = [(0f32, 0f32); MAX_CAP];
    let mut n = 0;
    let mut total = 0.0;
    for (&i, &w) in idx.iter().zip(w) {
        if i == u8::MAX {
            continue;
        }
        let v = values[i as usize];
        if present(v) && n < buf.len() {
            // Insertion by value.
            let mut j = n;
            while j > 0 && buf[j - 1].0 > v {
                buf[j] = buf[j - 1];
                j -= 1;
            }
            buf[j] = (v, w);
            total += w;
            n += 1;
        }
    }
    median_of_sorted(&buf[..n], total)
}

fn median_of_sorted(b: &[(f32, f32)], total: f32) -> Option<f32> {
    let half = 0.5 * total;
    let mut acc = 0.0;
    for (i, &(v, w)) in b.iter().enumerate() {
        acc += w;
        if acc > half {
            return Some(v);
        }
        if acc == half {
            // Exactly half: the midpoint of the two middle values.
            return Some(0.5 * (v + b.get(i + 1).map_or(v, |x| x.0)));
        }
    }
    b.last().map(|x| x.0)
}

/// The weighted median of the present values (weights ≤ 0 and missing values ignored);
/// None when nothing is left.
pub fn weighted_median(values: &[f32], weights: &[f32]) -> Option<f32> {
    let mut buf = [(0f32, 0f32); 64];
    let mut wmax = 0f32;
    for (&v, &w) in values.iter().zip(weights) {
        if present(v) && w > wmax {
            wmax = w;
        }
    }
    if wmax <= 0.0 {
        return None;
    }
    // Candidates with a negligible weight cannot move the median: prune them.
    let floor = wmax * 1e-4;
    let mut n = 0;
    let mut total = 0.0;
    for (&v, &w) in values.iter().zip(weights) {
        if present(v) && w > floor && n < buf.len() {
            buf[n] = (v, w);
            total += w;
            n += 1;
        }
    }
    let b = &mut buf[..n];
    b.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    median_of_sorted(b, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_median_basics() {
        assert_eq!(
            weighted_median(&[1.0, 2.0, 3.0], &[1.0, 1.0, 1.0]),
            Some(2.0)
        );
        assert_eq!(
            weighted_median(&[1.0, 2.0, 3.0], &[5.0, 1.0, 1.0]),
            Some(1.0)
        );
        assert_eq!(
            weighted_median(&[1.0, -1.0, 3.0], &[1.0, 9.0, 1.0]),
            Some(2.0)
        );
        assert_eq!(weighted_median(&[-1.0], &[1.0]), None);
    }

    #[test]
    fn weights_favour_the_smaller_error() {
        let mut s = Scores::new(2, 1);
        for _ in 0..100 {
            s.add(0, 0, 0, 1.0, 0.99, 0.99);
            s.add(1, 0, 0, 2.0, 0.99, 0.99);
        }
        let mut w = [0.0; 2];
        s.weights(0, &[true, true], 5.0, &mut w);
        assert_eq!(w[0], 1.0);
        assert!((w[1] - 1.0 / 32.0).abs() < 1e-4, "{w:?}");
    }

    /// A candidate that started late and has been perfect over its few scores (a weekly lag
    /// on a series that was zero all week) does not take all the weight from candidates
    /// judged over the whole window: the scores it missed count at the median error.
    #[test]
    fn a_late_lucky_candidate_does_not_take_all_the_weight() {
        let mut s = Scores::new(3, 1);
        for t in 0..200 {
            s.add(0, 0, 0, 1.0, 0.99, 0.99);
            s.add(1, 0, 0, 1.1, 0.99, 0.99);
            if t >= 175 {
                s.add(2, 0, 0, 0.0, 0.99, 0.99);
            }
        }
        let mut w = [0.0; 3];
        s.weights(0, &[true, true, true], 5.0, &mut w);
        assert!(w[2] > w[0], "still the best: {w:?}");
        assert!(w[0] > 0.1 * w[2], "but not alone: {w:?}");
    }

    /// From POOL_FROM on, a horizon's weights also follow the neighbouring horizons' scores.
    #[test]
    fn far_horizons_pool_their_neighbours_scores() {
        let mut s = Scores::new(2, POOL_FROM + 2);
        for _ in 0..100 {
            for i in 0..POOL_FROM + 2 {
                // Candidate 0 is better everywhere except at POOL_FROM, where it is a little
                // worse; alone that horizon would favour candidate 1.
                let e0 = if i == POOL_FROM { 1.1 } else { 0.5 };
                s.add(0, i, 0, e0, 0.99, 0.99);
                s.add(1, i, 0, 1.0, 0.99, 0.99);
            }
        }
        let mut w = [0.0; 2];
        s.weights(POOL_FROM, &[true, true], 5.0, &mut w);
        assert!(w[0] > w[1], "pooled: {w:?}");
        s.weights(0, &[true, true], 5.0, &mut w);
        assert!(w[0] > w[1]);
    }

    /// The weights at a phase of the hour follow the candidates' errors at that phase.
    #[test]
    fn each_phase_of_the_hour_weighs_its_own_best() {
        let mut s = Scores::new(2, 1);
        for t in 0..1200 {
            let p = t % PHASES;
            // Candidate 0 is better at phase 3, candidate 1 elsewhere (and overall).
            let (e0, e1) = if p == 3 { (0.5, 2.0) } else { (1.2, 1.0) };
            s.add(0, 0, p, e0, 0.999, 0.99);
            s.add(1, 0, p, e1, 0.999, 0.99);
        }
        let mut overall = [0.0; 2];
        s.weights(0, &[true, true], 5.0, &mut overall);
        assert!(overall[1] > overall[0], "overall: {overall:?}");
        let at = |phase| {
            let mut w = overall;
            s.phase_adjust(0, phase, 0.7, 5.0, &[0, 1], &mut w);
            w
        };
        let w = at(3);
        assert!(w[0] > 10.0 * w[1], "phase 3: {w:?}");
        let w = at(4);
        assert!(w[1] > 1.5 * w[0], "phase 4: {w:?}");
        // Without the phases, the overall errors decide.
        let mut w = overall;
        s.phase_adjust(0, 3, 0.0, 5.0, &[0, 1], &mut w);
        assert_eq!(w, overall);
    }
}
