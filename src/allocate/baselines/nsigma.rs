use super::super::{Inputs, Policy};
use super::PerTenant;
use crate::model::Resource;
use crate::plan::Allocation;
use std::collections::VecDeque;

/// Samples in the window.
const WINDOW: usize = 24;

/// `nsigma`: mean + n·σ of the last 24 observed samples, as the peak predictor of Google's
/// Borg overcommit study (Bashir et al., "Take it to the limit", EuroSys 2021). Knob: n.
pub struct NSigma {
    n: f64,
    tenants: PerTenant<[VecDeque<f64>; 4]>,
}

impl NSigma {
    pub const DEFAULT_N: f64 = 5.0;

    pub fn new(n: f64) -> Self {
        NSigma {
            n,
            tenants: PerTenant::new(),
        }
    }
}

impl Policy for NSigma {
    fn describe(&self) -> String {
        format!("nsigma(n={})", self.n)
    }

    fn decide(&mut self, input: &Inputs<'_>) -> Allocation {
        let n = self.n;
        self.tenants.decide(input, |windows, r: Resource, seen| {
            let w = &mut windows[r.index()];
            if let Some(u) = seen.usage {
                if w.len() == WINDOW {
                    w.pop_front();
                }
                w.push_back(u);
            }
            if w.is_empty() {
                return None;
            }
            let len = w.len() as f64;
            let mean = w.iter().sum::<f64>() / len;
            let var = w.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / len;
            Some(mean + n * var.sqrt())
        })
    }
}
