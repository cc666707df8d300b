//! Combining the candidates: per horizon, each candidate's exponentially discounted mean
//! absolute error S_m (scored only once the target has been observed), weights
//! ∝ (S_m / min S)^-power, and the weighted median of the candidates' forecasts (the score is
//! MAE, minimised by the median: on spiky series a weighted mean is clearly worse).

use super::history::present;
use serde::{Deserialize, Serialize};

/// The most candidates a weighted median combines (`Config::cap` is clamped to it).
pub const MAX_CAP: usize = 32;

/// The first scored horizon (index) whose weights pool the neighbouring horizons' scores.
pub const POOL_FROM: usize = 4;

/// Discounted scores a candidate needs before it is weighed.
pub const MIN_COUNT: f32 = 20.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scores {
    pub models: usize,
    pub horizons: usize,
    /// Discounted sums of |error| and of counts: `[m * horizons + i]`.
    pub abs: Vec<f32>,
    pub count: Vec<f32>,
}

impl Scores {
    pub fn new(models: usize, horizons: usize) -> Self {
        Scores {
            models,
            horizons,
            abs: vec![0.0; models * horizons],
            count: vec![0.0; models * horizons],
        }
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + 4 * (self.abs.len() + self.count.len())
    }

    /// Record candidate m's absolute error at scored horizon i.
    #[inline]
    pub fn add(&mut self, m: usize, i: usize, err: f32, keep: f32) {
        let j = m * self.horizons + i;
        self.abs[j] = keep * self.abs[j] + err;
        self.count[j] = keep * self.count[j] + 1.0;
    }

    /// The discounted mean absolute error, if scored at all.
    #[inline]
    pub fn mae(&self, m: usize, i: usize) -> Option<f32> {
        let j = m * self.horizons + i;
        (self.count[j] > 0.5).then(|| self.abs[j] / self.count[j])
    }

    /// The discounted mean absolute error, once it rests on enough scores to be trusted
    /// (a candidate that became available late, e.g. the weekly lag, does not get a large
    /// weight from a few lucky scores).
    #[inline]
    fn trusted_mae(&self, m: usize, i: usize) -> Option<f32> {
        let j = m * self.horizons + i;
        (self.count[j] >= MIN_COUNT).then(|| self.abs[j] / self.count[j])
    }

    /// Weights of every candidate at scored horizon i (0 for disabled ones and those not yet
    /// scored MIN_COUNT times; equal weights among the enabled ones before any is).
    pub fn weights(&self, i: usize, enabled: &[bool], power: f32, out: &mut [f32]) {
        let mut lr = [0f32; 256];
        if self.log_ratios(i, enabled, &mut lr).is_none() {
            for m in 0..self.models {
                out[m] = if enabled[m] { 1.0 } else { 0.0 };
            }
            return;
        }
        // From the fifth scored horizon (6 steps) on, a candidate's standing is the mean of
        // its log ratios at this horizon and the two next to it: far-ahead scores are few
        // and noisy, and neighbouring horizons rank the candidates alike.
        let mut n = [1u8; 256];
        if i >= POOL_FROM {
            let mut lj = [0f32; 256];
            for j in [i - 1, i + 1] {
                if j < self.horizons && self.log_ratios(j, enabled, &mut lj).is_some() {
                    for m in 0..self.models {
                        if lr[m].is_finite() && lj[m].is_finite() {
                            lr[m] += lj[m];
                            n[m] += 1;
                        }
                    }
                }
            }
        }
        for m in 0..self.models {
            out[m] = if lr[m].is_finite() {
                let r = (-lr[m] / n[m] as f32).exp();
                if power == 5.0 {
                    let r2 = r * r;
                    r2 * r2 * r
                } else {
                    r.powf(power)
                }
            } else {
                0.0
            };
        }
    }

    /// ln(S_m / min S) at scored horizon i for the trusted enabled candidates (NaN for the
    /// others); None when none is trusted. A candidate that started late (a weekly lag, a
    /// model that needs a refit) has fewer scores than the others: the scores it missed
    /// count as the typical candidate's error (the median MAE), so that a short lucky run
    /// (a weekly lag on a series that has been zero all week) cannot outweigh candidates
    /// judged over the whole window.
    fn log_ratios(&self, i: usize, enabled: &[bool], out: &mut [f32]) -> Option<()> {
        let mut maes = [0f32; 256];
        let mut k = 0;
        let (mut cmin, mut cmax) = (f32::INFINITY, 0f32);
        for m in 0..self.models {
            if let (true, Some(s)) = (enabled[m], self.trusted_mae(m, i)) {
                maes[k] = s;
                k += 1;
                let c = self.count[m * self.horizons + i];
                cmin = cmin.min(c);
                cmax = cmax.max(c);
            }
        }
        if k == 0 {
            return None;
        }
        // The median only matters when some candidate has missed scores (usually none has:
        // the counts saturate alike).
        let pool = if cmin < cmax {
            super::history::median(&mut maes[..k])
        } else {
            0.0
        };
        let mut min = f32::INFINITY;
        let mut sum = 0.0;
        for m in 0..self.models {
            out[m] = f32::NAN;
            if enabled[m] && self.trusted_mae(m, i).is_some() {
                let j = m * self.horizons + i;
                let s = (self.abs[j] + (cmax - self.count[j]).max(0.0) * pool) / cmax;
                out[m] = s;
                min = min.min(s);
                sum += s;
            }
        }
        let eps = 1e-6 * sum / k as f32 + 1e-20;
        for v in out[..self.models].iter_mut() {
            if v.is_finite() {
                *v = ((*v + eps) / (min + eps)).ln();
            }
        }
        Some(())
    }
}

/// The candidates worth combining at one horizon: weight above 1e-4 of the largest, at most
/// `cap` of them (the heaviest), as (index, weight).
pub fn top(weights: &[f32], cap: usize) -> Vec<(usize, f32)> {
    let wmax = weights.iter().copied().fold(0.0, f32::max);
    let mut v: Vec<(usize, f32)> = weights
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, w)| w > 0.0 && w > wmax * 1e-4)
        .collect();
    if v.len() > cap && cap > 0 {
        // The `cap` heaviest (ties: the lower index), in no particular order.
        v.select_nth_unstable_by(cap - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(cap);
    }
    v
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
            s.add(0, 0, 1.0, 0.99);
            s.add(1, 0, 2.0, 0.99);
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
            s.add(0, 0, 1.0, 0.99);
            s.add(1, 0, 1.1, 0.99);
            if t >= 175 {
                s.add(2, 0, 0.0, 0.99);
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
                s.add(0, i, e0, 0.99);
                s.add(1, i, 1.0, 0.99);
            }
        }
        let mut w = [0.0; 2];
        s.weights(POOL_FROM, &[true, true], 5.0, &mut w);
        assert!(w[0] > w[1], "pooled: {w:?}");
        s.weights(0, &[true, true], 5.0, &mut w);
        assert!(w[0] > w[1]);
    }
}
