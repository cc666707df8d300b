//! Online conformal quantiles: per scored horizon, the empirical (conformal) quantile of the
//! last residuals (actual − point forecast) of the ensemble, plus a correction learnt online by
//! quantile tracking (the "P" of conformal PID control, Angelopoulos, Candès & Tibshirani
//! 2023): after a miss the correction rises by η·τ·s, after a hit it falls by η·(1 − τ)·s,
//! s being the window's mean absolute residual. The window alone lags behind bursts and
//! under-covers (0.91–0.93 on cpu); the correction steers long-run coverage back to τ.

use serde::{Deserialize, Serialize};

/// The quantile levels served: p50, p90, p95, p99.
pub const LEVELS: [f32; 4] = [0.5, 0.9, 0.95, 0.99];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conformal {
    pub horizons: usize,
    pub window: usize,
    /// Quantile-tracking step, in mean absolute residuals.
    pub eta: f32,
    /// Residual rings: `[i * window + j]`.
    resid: Vec<f32>,
    /// Residuals ever written per horizon.
    written: Vec<u64>,
    /// Quantile-tracking corrections added to the empirical quantiles: `[i * 4 + l]`.
    delta: Vec<f32>,
    /// Current quantile offsets: `[i * 4 + l]`.
    offset: Vec<f32>,
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
        }
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + 4 * (self.resid.len() + self.offset.len() + self.delta.len())
            + 8 * self.written.len()
    }

    /// The offsets to add to the point forecast at scored horizon i for each level.
    pub fn offsets(&self, i: usize) -> [f32; 4] {
        let o = &self.offset[i * 4..i * 4 + 4];
        let d = &self.delta[i * 4..i * 4 + 4];
        [o[0] + d[0], o[1] + d[1], o[2] + d[2], o[3] + d[3]]
    }

    /// A residual observed at scored horizon i.
    pub fn push(&mut self, i: usize, r: f32) {
        // Track each level by whether the current quantile covered this residual.
        if self.written[i] >= 20 {
            let cur = self.offsets(i);
            let n = (self.written[i] as usize).min(self.window);
            let w = self.window;
            let scale = self.resid[i * w..i * w + n]
                .iter()
                .map(|v| v.abs())
                .sum::<f32>()
                / n as f32;
            for l in 0..4 {
                let miss = if r > cur[l] { 1.0 } else { 0.0 };
                self.delta[i * 4 + l] += self.eta * scale * (miss - (1.0 - LEVELS[l]));
            }
        }
        let w = self.window;
        self.resid[i * w + (self.written[i] % w as u64) as usize] = r;
        self.written[i] += 1;
        let n = (self.written[i] as usize).min(w);
        let mut buf = [0f32; 1024];
        let b = &mut buf[..n];
        b.copy_from_slice(&self.resid[i * w..i * w + n]);
        // Highest level first; each selection leaves the lower part for the next.
        let mut hi = n;
        for l in (0..4).rev() {
            let lv = LEVELS[l];
            // Conformal rank: ceil(level × (n + 1)), capped at n.
            let rank = ((lv * (n as f32 + 1.0)).ceil() as usize).clamp(1, n);
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

    #[test]
    fn covers_a_stationary_noisy_series() {
        // Residuals uniform on [-1, 1] from a small LCG.
        let mut c = Conformal::new(1, 256, 0.1);
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        };
        let (mut hits, mut n) = ([0usize; 4], 0);
        for t in 0..20000 {
            let r = next();
            if t >= 1000 {
                for (l, h) in hits.iter_mut().enumerate() {
                    *h += (r <= c.offsets(0)[l]) as usize;
                }
                n += 1;
            }
            c.push(0, r);
        }
        for (l, h) in hits.iter().enumerate() {
            let cov = *h as f32 / n as f32;
            assert!((cov - LEVELS[l]).abs() < 0.01, "level {}: {cov}", LEVELS[l]);
        }
    }
}
