//! A decaying histogram, as the Kubernetes Vertical Pod Autoscaler keeps: exponentially
//! spaced buckets (5 % apart), each sample weighted so that weights halve every 24 hours;
//! the forecast is a percentile (p90, VPA's target; and p50), the same at every horizon.

use super::{Model, Origin};
use crate::forecast::history::{DAY, History};
use serde::{Deserialize, Serialize};

const FIRST: f64 = 0.01;
const RATIO: f64 = 1.05;
const BUCKETS: usize = 520; // up to 0.01 × 1.05^519 ≈ 1e9
const HALF_LIFE: f64 = DAY as f64;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histogram {
    weights: Vec<f32>,
    total: f64,
    /// The weight a new sample gets (grows instead of decaying the old ones).
    scale: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            weights: vec![0.0; BUCKETS],
            total: 0.0,
            scale: 1.0,
        }
    }
}

fn bucket(v: f64) -> usize {
    if v < FIRST {
        0
    } else {
        (((v / FIRST).ln() / RATIO.ln()) as usize + 1).min(BUCKETS - 1)
    }
}

/// A representative value of a bucket (its geometric middle; 0 for the first).
fn value(b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        FIRST * RATIO.powf(b as f64 - 0.5)
    }
}

impl Histogram {
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + 4 * self.weights.len()
    }

    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.total <= 0.0 {
            return None;
        }
        let target = p * self.total;
        let mut acc = 0.0;
        for (b, &w) in self.weights.iter().enumerate() {
            acc += w as f64;
            if acc >= target {
                return Some(value(b));
            }
        }
        Some(value(BUCKETS - 1))
    }
}

impl Model for Histogram {
    const NAMES: &'static [&'static str] = &["vpa_p90", "hist_p50"];
    fn update(&mut self, h: &History) {
        self.scale *= 2f64.powf(1.0 / HALF_LIFE);
        if self.scale > 1e20 {
            // Renormalise: the proportions are what matter.
            let f = 1.0 / self.scale;
            for w in &mut self.weights {
                *w = (*w as f64 * f) as f32;
            }
            self.total *= f;
            self.scale = 1.0;
        }
        let b = bucket(h.last() as f64);
        self.weights[b] += self.scale as f32;
        self.total += self.scale;
    }
    fn forecast(&self, _: &Origin, hs: &[usize], _want: u64, out: &mut [f32]) {
        let n = hs.len();
        if let (Some(p90), Some(p50)) = (self.percentile(0.9), self.percentile(0.5)) {
            out[..n].fill(p90 as f32);
            out[n..2 * n].fill(p50 as f32);
        }
    }
}
