//! A small echo state network: a fixed random reservoir of 16 leaky tanh units driven by the
//! value (divided by a slow level) and the time of day; a linear readout per anchor horizon
//! (1, 3, 6, 12, 24, 48; linear interpolation in between) trained by ridge least squares on
//! the change from the origin's value, with a one-week forgetting half-life, refit every 144
//! steps. The reservoir is the same for every series (a fixed seed), so it is not state.

use super::{Model, Origin};
use crate::forecast::history::{DAY, History, WEEK};
use crate::forecast::ridge::Normal;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

const N: usize = 16;
const INPUTS: usize = 4; // u, sin, cos, bias
const P: usize = N + 2; // bias, reservoir, u
const ANCHORS: [usize; 6] = [1, 3, 6, 12, 24, 48];
const KEEP: usize = 49;
const LEAK: f64 = 0.5;
const REFIT: u64 = 144;
const RIDGE: f64 = 1e-3;

struct Reservoir {
    w: [[f64; N]; N],
    w_in: [[f64; INPUTS]; N],
}

fn reservoir() -> &'static Reservoir {
    static R: OnceLock<Reservoir> = OnceLock::new();
    R.get_or_init(|| {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let mut w = [[0.0; N]; N];
        for row in &mut w {
            for v in row.iter_mut() {
                let r = rnd();
                *v = if r.abs() < 0.5 { r * 2.0 } else { 0.0 }; // half the links
            }
        }
        let mut w_in = [[0.0; INPUTS]; N];
        for row in &mut w_in {
            for v in row.iter_mut() {
                *v = rnd();
            }
        }
        // Spectral radius ≈ 0.9, by power iteration.
        let mut x = [1.0; N];
        let mut norm = 1.0;
        for _ in 0..200 {
            let mut y = [0.0; N];
            for i in 0..N {
                y[i] = (0..N).map(|j| w[i][j] * x[j]).sum();
            }
            norm = y.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            for i in 0..N {
                x[i] = y[i] / norm;
            }
        }
        let f = 0.9 / norm;
        for row in &mut w {
            for v in row.iter_mut() {
                *v *= f;
            }
        }
        Reservoir { w, w_in }
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Esn {
    state: Vec<f64>,
    /// Readout features of the last KEEP steps: `phi[(step % KEEP) * P ..]`.
    phi: Vec<f32>,
    normal: Normal,
    w: Vec<f64>,
    fitted: bool,
    scale: f64,
}

impl Default for Esn {
    fn default() -> Self {
        Esn {
            state: vec![0.0; N],
            phi: vec![0.0; KEEP * P],
            normal: Normal::new(P, ANCHORS.len()),
            w: vec![0.0; ANCHORS.len() * P],
            fitted: false,
            scale: 0.0,
        }
    }
}

impl Esn {
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + 8 * (self.state.len() + self.w.len())
            + 4 * self.phi.len()
            + self.normal.bytes()
    }

    fn phi_at(&self, n: u64, lag: usize) -> Option<[f64; P]> {
        if lag >= KEEP || lag as u64 >= n {
            return None;
        }
        let i = ((n - 1 - lag as u64) % KEEP as u64) as usize;
        let mut f = [0.0; P];
        for (a, b) in f.iter_mut().zip(&self.phi[i * P..(i + 1) * P]) {
            *a = *b as f64;
        }
        Some(f)
    }

    fn predict(&self, f: &[f64; P], anchor: usize) -> f64 {
        self.w[anchor * P..(anchor + 1) * P]
            .iter()
            .zip(f)
            .map(|(a, b)| a * b)
            .sum()
    }
}

impl Model for Esn {
    const NAMES: &'static [&'static str] = &["esn"];
    fn update(&mut self, h: &History) {
        let y = h.last() as f64;
        self.scale = if h.n == 1 {
            y
        } else {
            0.99 * self.scale + 0.01 * y
        };
        let s = self.scale.max(1e-3);
        let u = (y / s - 1.0).clamp(-10.0, 10.0);
        let tod = (h.slot().rem_euclid(DAY) as f64 / DAY as f64) * std::f64::consts::TAU;
        let input = [u, tod.sin(), tod.cos(), 1.0];
        let r = reservoir();
        let mut next = [0.0; N];
        for i in 0..N {
            let mut a: f64 = (0..N).map(|j| r.w[i][j] * self.state[j]).sum();
            a += (0..INPUTS).map(|j| r.w_in[i][j] * input[j]).sum::<f64>();
            next[i] = (1.0 - LEAK) * self.state[i] + LEAK * a.tanh();
        }
        self.state.copy_from_slice(&next);
        let i = ((h.n - 1) % KEEP as u64) as usize;
        let row = &mut self.phi[i * P..(i + 1) * P];
        row[0] = 1.0;
        for j in 0..N {
            row[j + 1] = next[j] as f32;
        }
        row[P - 1] = u as f32;

        // Train on the targets that just arrived.
        self.normal.decay(0.5f64.powf(1.0 / WEEK as f64));
        if let Some(f) = self.phi_at(h.n, 1) {
            self.normal.add_x(&f);
        }
        for (t, &a) in ANCHORS.iter().enumerate() {
            if let (Some(f), Some(x0)) = (self.phi_at(h.n, a), h.lag(a)) {
                self.normal.add_y(t, &f, (y - x0 as f64) / s);
            }
        }
        if h.n.is_multiple_of(REFIT) && self.normal.count > 200.0 {
            self.fitted = self.normal.solve(RIDGE, &mut self.w) || self.fitted;
        }
    }
    fn forecast(&self, o: &Origin, hs: &[usize], _want: u64, out: &mut [f32]) {
        if !self.fitted {
            return;
        }
        let Some(f) = self.phi_at(o.hist.n, 0) else {
            return;
        };
        let s = self.scale.max(1e-3);
        let preds: Vec<f64> = (0..ANCHORS.len()).map(|a| self.predict(&f, a)).collect();
        for (i, &k) in hs.iter().enumerate() {
            let j = ANCHORS
                .iter()
                .position(|&a| a >= k)
                .unwrap_or(ANCHORS.len() - 1);
            let y = if j == 0 || ANCHORS[j] == k {
                preds[j]
            } else {
                let (a0, a1) = (ANCHORS[j - 1] as f64, ANCHORS[j] as f64);
                let t = (k as f64 - a0) / (a1 - a0);
                preds[j - 1] * (1.0 - t) + preds[j] * t
            };
            out[i] = (o.x as f64 + s * y) as f32;
        }
    }
}
