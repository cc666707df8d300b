//! Ridge least squares on accumulated normal equations (the AR and ESN readouts).

use serde::{Deserialize, Serialize};

/// Σ x xᵀ and Σ x y for one design (p features) and several targets, with exponential
/// forgetting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Normal {
    pub p: usize,
    pub targets: usize,
    /// The lower triangle of XᵀX, packed by rows: (i, j ≤ i) at i (i + 1) / 2 + j.
    pub xtx: Vec<f64>,
    /// targets × p.
    pub xty: Vec<f64>,
    pub count: f64,
}

impl Normal {
    pub fn new(p: usize, targets: usize) -> Self {
        Normal {
            p,
            targets,
            xtx: vec![0.0; p * (p + 1) / 2],
            xty: vec![0.0; p * targets],
            count: 0.0,
        }
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + 8 * (self.xtx.len() + self.xty.len())
    }

    /// Forget a little of the old (multiply everything by `keep`).
    pub fn decay(&mut self, keep: f64) {
        self.xtx.iter_mut().for_each(|v| *v *= keep);
        self.xty.iter_mut().for_each(|v| *v *= keep);
        self.count *= keep;
    }

    /// Forget everything learnt about the features in `range` (their rows and columns).
    pub fn clear_features(&mut self, range: std::ops::Range<usize>) {
        for i in 0..self.p {
            for j in 0..=i {
                if range.contains(&i) || range.contains(&j) {
                    self.xtx[i * (i + 1) / 2 + j] = 0.0;
                }
            }
        }
        for t in 0..self.targets {
            for i in range.clone() {
                self.xty[t * self.p + i] = 0.0;
            }
        }
    }

    pub fn add_x(&mut self, x: &[f64]) {
        for i in 0..self.p {
            let xi = x[i];
            if xi == 0.0 {
                continue;
            }
            let row = &mut self.xtx[i * (i + 1) / 2..(i + 1) * (i + 2) / 2];
            for j in 0..=i {
                row[j] += xi * x[j];
            }
        }
        self.count += 1.0;
    }

    pub fn add_y(&mut self, target: usize, x: &[f64], y: f64) {
        let row = &mut self.xty[target * self.p..(target + 1) * self.p];
        for (r, &xi) in row.iter_mut().zip(x) {
            *r += xi * y;
        }
    }

    /// Solve (XᵀX + λI) w = Xᵀy for every target, with λ = `ridge` × mean diagonal (the
    /// intercept, feature 0, is not penalised). Writes targets × p weights; false when the
    /// system is not solvable (then `w` is untouched).
    pub fn solve(&self, ridge: f64, w: &mut [f64]) -> bool {
        let p = self.p;
        let mut a = vec![0.0; p * p];
        let tri = |i: usize, j: usize| self.xtx[i * (i + 1) / 2 + j];
        let diag: f64 = (0..p).map(|i| tri(i, i)).sum::<f64>() / p as f64;
        let lambda = ridge * diag.max(1e-12) + 1e-9;
        for i in 0..p {
            for j in 0..=i {
                a[i * p + j] = tri(i, j);
            }
            if i > 0 {
                a[i * p + i] += lambda;
            } else {
                a[0] += 1e-9 * diag.max(1e-12);
            }
        }
        // Cholesky, lower triangle in place.
        for j in 0..p {
            let mut d = a[j * p + j];
            for k in 0..j {
                d -= a[j * p + k] * a[j * p + k];
            }
            if d <= 0.0 || !d.is_finite() {
                return false;
            }
            let d = d.sqrt();
            a[j * p + j] = d;
            for i in j + 1..p {
                let mut s = a[i * p + j];
                for k in 0..j {
                    s -= a[i * p + k] * a[j * p + k];
                }
                a[i * p + j] = s / d;
            }
        }
        let mut out = vec![0.0; p * self.targets];
        for t in 0..self.targets {
            let b = &self.xty[t * p..(t + 1) * p];
            let mut z = vec![0.0; p];
            for i in 0..p {
                let mut s = b[i];
                for k in 0..i {
                    s -= a[i * p + k] * z[k];
                }
                z[i] = s / a[i * p + i];
            }
            for i in (0..p).rev() {
                let mut s = z[i];
                for k in i + 1..p {
                    s -= a[k * p + i] * out[t * p + k];
                }
                out[t * p + i] = s / a[i * p + i];
            }
        }
        if out.iter().all(|v| v.is_finite()) {
            w.copy_from_slice(&out);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_linear_map() {
        let mut n = Normal::new(3, 2);
        for i in 0..200 {
            let x = [1.0, (i as f64 * 0.37).sin(), (i as f64 * 0.11).cos()];
            n.add_x(&x);
            n.add_y(0, &x, 2.0 + 3.0 * x[1] - x[2]);
            n.add_y(1, &x, -1.0 + 0.5 * x[2]);
        }
        let mut w = vec![0.0; 6];
        assert!(n.solve(1e-9, &mut w));
        for (a, b) in w.iter().zip([2.0, 3.0, -1.0, -1.0, 0.0, 0.5]) {
            assert!((a - b).abs() < 1e-4, "{w:?}");
        }
    }
}
