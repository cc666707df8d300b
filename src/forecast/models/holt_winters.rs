//! Additive Holt-Winters: level, damped trend and a daily seasonal profile indexed by the
//! 5-minute slot of the day (so it stays aligned across gaps). One O(1) update per sample.

use super::{Model, Origin};
use crate::forecast::history::{DAY, History};
use serde::{Deserialize, Serialize};

// Each seasonal term learns once a day, hence its large step; a weak, damped trend.
const ALPHA: f64 = 0.1;
const BETA: f64 = 0.01;
const GAMMA: f64 = 0.3;
const PHI: f64 = 0.9;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoltWinters {
    level: f64,
    trend: f64,
    season: Vec<f32>,
    /// Observations seen (the first day initialises the profile).
    seen: u64,
}

impl Default for HoltWinters {
    fn default() -> Self {
        HoltWinters {
            level: 0.0,
            trend: 0.0,
            season: vec![0.0; DAY as usize],
            seen: 0,
        }
    }
}

impl HoltWinters {
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + 4 * self.season.len()
    }
}

impl Model for HoltWinters {
    const NAMES: &'static [&'static str] = &["holt_winters"];
    fn update(&mut self, h: &History) {
        let y = h.last() as f64;
        let j = h.slot().rem_euclid(DAY) as usize;
        if self.seen < DAY as u64 {
            // The first day initialises: its values become the profile around their mean.
            self.season[j] = y as f32;
            self.level += y;
            self.seen += 1;
            if self.seen == DAY as u64 {
                self.level /= DAY as f64;
                let l = self.level as f32;
                self.season.iter_mut().for_each(|s| *s -= l);
            }
            return;
        }
        let s = self.season[j] as f64;
        let prev = self.level;
        self.level = ALPHA * (y - s) + (1.0 - ALPHA) * (prev + PHI * self.trend);
        self.trend = BETA * (self.level - prev) + (1.0 - BETA) * PHI * self.trend;
        self.season[j] = (GAMMA * (y - self.level) + (1.0 - GAMMA) * s) as f32;
        self.seen += 1;
    }
    fn forecast(&self, o: &Origin, hs: &[usize], _want: u64, out: &mut [f32]) {
        if self.seen < DAY as u64 {
            return;
        }
        for (i, &k) in hs.iter().enumerate() {
            // Σ_{i=1..k} φ^i = φ (1 − φ^k) / (1 − φ)
            let damp = PHI * (1.0 - PHI.powi(k as i32)) / (1.0 - PHI);
            let j = (o.slot + k as i64).rem_euclid(DAY) as usize;
            out[i] = (self.level + damp * self.trend + self.season[j] as f64) as f32;
        }
    }
}
