use super::super::{Inputs, Policy};
use super::PerTenant;
use crate::model::Resource;
use crate::plan::Allocation;

/// Half-life of a sample's weight, as the VPA recommender's default (24 h).
const HALF_LIFE_MS: f64 = 24.0 * 3600e3;
/// The recommender's safety margin.
const MARGIN: f64 = 0.15;
/// Bucket growth, as VPA's histograms (5%).
const GROWTH: f64 = 1.05;
const BUCKETS: usize = 640;

/// The first bucket's upper bound per resource, in pipeline units: 1 millicore, 1 MiB, 1 KiB/s.
fn first_bucket(r: Resource) -> f64 {
    match r {
        Resource::Cpu => 0.001,
        Resource::Mem => 1024.0,
        Resource::Disk | Resource::Net => 1024.0,
    }
}

/// A decaying histogram with exponentially growing buckets, as in the Kubernetes VPA
/// recommender (`pkg/recommender/util/decaying_histogram.go`): a sample's weight doubles every
/// half-life after a reference time, so old samples count for less.
#[derive(Clone)]
pub struct DecayingHistogram {
    weights: Vec<f64>,
    total: f64,
    first: f64,
    reference_ms: Option<i64>,
    min_bucket: usize,
    max_bucket: usize,
}

impl DecayingHistogram {
    pub fn new(first: f64) -> Self {
        DecayingHistogram {
            weights: vec![0.0; BUCKETS],
            total: 0.0,
            first,
            reference_ms: None,
            min_bucket: BUCKETS,
            max_bucket: 0,
        }
    }

    fn bucket(&self, v: f64) -> usize {
        if v <= self.first {
            return 0;
        }
        let b = ((v / self.first).ln() / GROWTH.ln()).ceil() as usize;
        b.min(BUCKETS - 1)
    }

    /// The upper bound of bucket `b`.
    fn upper(&self, b: usize) -> f64 {
        self.first * GROWTH.powi(b as i32)
    }

    pub fn add(&mut self, v: f64, at_ms: i64) {
        let reference = *self.reference_ms.get_or_insert(at_ms);
        let mut w = 2f64.powf((at_ms - reference) as f64 / HALF_LIFE_MS);
        if w > 1e100 {
            // Move the reference forward so that weights stay finite.
            let scale = 1.0 / w;
            self.weights.iter_mut().for_each(|x| *x *= scale);
            self.total *= scale;
            self.reference_ms = Some(at_ms);
            w = 1.0;
        }
        let b = self.bucket(v);
        self.weights[b] += w;
        self.total += w;
        self.min_bucket = self.min_bucket.min(b);
        self.max_bucket = self.max_bucket.max(b);
    }

    /// The smallest bucket bound with at least `p` of the weight at or below it.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.total <= 0.0 {
            return None;
        }
        let target = p.clamp(0.0, 1.0) * self.total;
        let mut acc = 0.0;
        for b in self.min_bucket..=self.max_bucket {
            acc += self.weights[b];
            if acc >= target {
                return Some(self.upper(b));
            }
        }
        Some(self.upper(self.max_bucket))
    }
}

/// `vpa`: the Kubernetes Vertical Pod Autoscaler recommender's rule: the p-th percentile of a
/// decaying histogram of observed usage (24 h half-life) plus a 15% margin. Knob: the
/// percentile (VPA's target uses 0.9).
pub struct Vpa {
    percentile: f64,
    tenants: PerTenant<Option<[DecayingHistogram; 4]>>,
}

impl Vpa {
    pub const DEFAULT_PERCENTILE: f64 = 0.9;

    pub fn new(percentile: f64) -> Self {
        Vpa {
            percentile,
            tenants: PerTenant::new(),
        }
    }
}

impl Policy for Vpa {
    fn describe(&self) -> String {
        format!("vpa(percentile={})", self.percentile)
    }

    fn decide(&mut self, input: &Inputs<'_>) -> Allocation {
        let p = self.percentile;
        self.tenants.decide(input, |h, r, seen| {
            let h = h.get_or_insert_with(|| {
                Resource::ALL.map(|r| DecayingHistogram::new(first_bucket(r)))
            });
            let h = &mut h[r.index()];
            if let Some(u) = seen.usage {
                h.add(u, seen.at_ms);
            }
            h.percentile(p).map(|v| v * (1.0 + MARGIN))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_of_uniform_samples() {
        let mut h = DecayingHistogram::new(0.001);
        for i in 1..=100 {
            h.add(i as f64 / 100.0, 0);
        }
        let p90 = h.percentile(0.9).unwrap();
        // Within one bucket (5%) above the true 0.90.
        assert!((0.9..=0.9 * 1.05 + 1e-9).contains(&p90), "{p90}");
    }

    #[test]
    fn old_samples_fade() {
        let mut h = DecayingHistogram::new(0.001);
        for _ in 0..100 {
            h.add(10.0, 0);
        }
        // Ten half-lives later, a few small samples outweigh the old ones.
        let later = (10.0 * HALF_LIFE_MS) as i64;
        for _ in 0..5 {
            h.add(1.0, later);
        }
        let p50 = h.percentile(0.5).unwrap();
        assert!(p50 < 1.1, "{p50}");
    }

    #[test]
    fn weights_stay_finite_over_a_year() {
        let mut h = DecayingHistogram::new(0.001);
        for day in 0..400 {
            h.add(1.0 + (day % 3) as f64, day * 86_400_000);
        }
        assert!(h.total.is_finite() && h.percentile(0.99).unwrap().is_finite());
    }
}
