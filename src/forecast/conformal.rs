//! Online conformal quantiles: per scored horizon, the empirical quantile of the last
//! residuals (actual − point forecast) of the ensemble, at a level adapted online (adaptive
//! conformal inference, Gibbs & Candès 2021: the level rises after a miss and falls slowly
//! otherwise), so that coverage holds under drift.

use serde::{Deserialize, Serialize};

/// The quantile levels served: p50, p90, p95, p99.
pub const LEVELS: [f32; 4] = [0.5, 0.9, 0.95, 0.99];
/// ACI step.
const GAMMA: f32 = 0.005;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conformal {
    pub horizons: usize,
    pub window: usize,
    /// Residual rings: `[i * window + j]`.
    resid: Vec<f32>,
    /// Residuals ever written per horizon.
    written: Vec<u64>,
    /// Adapted levels: `[i * 4 + l]`.
    level: Vec<f32>,
    /// Current quantile offsets: `[i * 4 + l]`.
    offset: Vec<f32>,
}

impl Conformal {
    pub fn new(horizons: usize, window: usize) -> Self {
        Conformal {
            horizons,
            window,
            resid: vec![0.0; horizons * window],
            written: vec![0; horizons],
            level: (0..horizons).flat_map(|_| LEVELS).collect(),
            offset: vec![0.0; horizons * 4],
        }
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + 4 * (self.resid.len() + self.level.len() + self.offset.len())
            + 8 * self.written.len()
    }

    /// The offsets to add to the point forecast at scored horizon i for each level.
    pub fn offsets(&self, i: usize) -> [f32; 4] {
        let o = &self.offset[i * 4..i * 4 + 4];
        [o[0], o[1], o[2], o[3]]
    }

    /// The adapted levels at scored horizon i.
    pub fn levels(&self, i: usize) -> [f32; 4] {
        let o = &self.level[i * 4..i * 4 + 4];
        [o[0], o[1], o[2], o[3]]
    }

    /// A residual observed at scored horizon i.
    pub fn push(&mut self, i: usize, r: f32) {
        // Adapt the levels by whether the current quantiles covered it.
        if self.written[i] >= 20 {
            for l in 0..4 {
                let miss = if r > self.offset[i * 4 + l] { 1.0 } else { 0.0 };
                let lv = &mut self.level[i * 4 + l];
                *lv = (*lv + GAMMA * (miss - (1.0 - LEVELS[l]))).clamp(0.01, 0.9995);
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
            let lv = self.level[i * 4 + l];
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
        let mut c = Conformal::new(1, 256);
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
