//! The trace-driven host simulator: real VM traces replayed through prescient's own control
//! loop ([`crate::pipeline::Controller`]) on the trace backend, with the reactive baselines
//! side by side. See docs/evaluation.md.

pub mod classes;
pub mod metrics;
pub mod oracle;
pub mod plot;
pub mod replay;

use crate::allocate::Policy;
use crate::allocate::baselines::{NSigma, Reactive, StaticShare, Vpa};
use crate::allocate::prescient::Prescient;
use crate::backend::BackendError;
use crate::backend::trace::{HostModel, TraceBackend};
use crate::forecast::stage::ForecastStage;
use crate::model::Class;
use crate::pipeline::Controller;
use metrics::Report;
use replay::Replay;
use std::sync::Arc;

/// The policies `simulate` knows.
pub const POLICIES: [&str; 6] = ["static", "reactive", "vpa", "nsigma", "prescient", "oracle"];

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("unknown policy {0:?} (known: static, reactive, vpa, nsigma, prescient, oracle)")]
    UnknownPolicy(String),
    #[error("--knob {knob} is out of range for {policy}: {expected}")]
    Knob {
        policy: String,
        knob: f64,
        expected: &'static str,
    },
    #[error(
        "{dir}: no tenant-interval to replay ({files} trace files read, {skipped} skipped; none \
         has a row in the replayed period): nothing was simulated"
    )]
    NoData {
        dir: std::path::PathBuf,
        files: usize,
        skipped: usize,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What the knob means for each policy, and its range.
pub fn knob_help(policy: &str) -> Option<(&'static str, f64, f64, f64)> {
    // (meaning, default, min, max)
    match policy {
        "reactive" => Some((
            "margin over the last value",
            Reactive::DEFAULT_MARGIN,
            0.0,
            100.0,
        )),
        "vpa" => Some((
            "percentile of the decaying histogram",
            Vpa::DEFAULT_PERCENTILE,
            0.01,
            1.0,
        )),
        "nsigma" => Some((
            "n, the number of standard deviations",
            NSigma::DEFAULT_N,
            0.0,
            100.0,
        )),
        "prescient" => Some((
            "c, the price of slack against weighted shortfall",
            Prescient::DEFAULT_COST,
            0.0,
            100.0,
        )),
        _ => None,
    }
}

/// The knob values a `--sweep` runs, from timid to generous.
pub fn sweep_values(policy: &str) -> Vec<Option<f64>> {
    match policy {
        "reactive" => [0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0].map(Some).to_vec(),
        "vpa" => [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0].map(Some).to_vec(),
        "nsigma" => [0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0].map(Some).to_vec(),
        "prescient" => [0.02, 0.05, 0.1, 0.2, 0.4, 1.2, 3.0].map(Some).to_vec(),
        _ => vec![None],
    }
}

/// Settings of the baselines other than their knob.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// `reactive`'s growth after a capped interval (1: none).
    pub reactive_cap_growth: f64,
    /// `prescient` learns each tenant's sensitivity from its experience.
    pub prescient_feedback: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            reactive_cap_growth: Reactive::DEFAULT_CAP_GROWTH,
            prescient_feedback: true,
        }
    }
}

/// Build a policy by name; `knob` None takes the policy's default.
pub fn make_policy(
    name: &str,
    knob: Option<f64>,
    tuning: Tuning,
    replay: &Arc<Replay>,
) -> Result<(Box<dyn Policy>, Option<f64>), SimError> {
    if !POLICIES.contains(&name) {
        return Err(SimError::UnknownPolicy(name.to_string()));
    }
    let knob = match (knob_help(name), knob) {
        (None, Some(k)) => {
            return Err(SimError::Knob {
                policy: name.into(),
                knob: k,
                expected: "this policy has no knob",
            });
        }
        (None, None) => None,
        (Some((_, default, _, _)), None) => Some(default),
        (Some((_, _, lo, hi)), Some(k)) => {
            if !(k.is_finite() && k >= lo && k <= hi) {
                return Err(SimError::Knob {
                    policy: name.into(),
                    knob: k,
                    expected: match name {
                        "vpa" => "a percentile in 0.01 … 1",
                        _ => "a number in 0 … 100",
                    },
                });
            }
            Some(k)
        }
    };
    let policy: Box<dyn Policy> = match name {
        "static" => Box::new(StaticShare::new()),
        "reactive" => Box::new(Reactive::new(
            knob.unwrap_or_default(),
            tuning.reactive_cap_growth,
        )),
        "vpa" => Box::new(Vpa::new(knob.unwrap_or_default())),
        "nsigma" => Box::new(NSigma::new(knob.unwrap_or_default())),
        "prescient" => Box::new(Prescient::new(
            knob.unwrap_or_default(),
            tuning.prescient_feedback,
        )),
        _ => Box::new(oracle::Oracle::new(Arc::clone(replay))),
    };
    Ok((policy, knob))
}

/// The control loop for `policy` (named `name`), with forecasts for the policy that reads them.
pub fn controller(name: &str, policy: Box<dyn Policy>) -> Controller {
    let c = Controller::new(None).with_policy(policy);
    if name != "prescient" {
        return c;
    }
    // One interval ahead is all the policy reads; nothing to save to: the forecasters live
    // as long as the replay.
    let stage = ForecastStage::new(crate::forecast::Config::default()).with_horizons(1);
    c.with_forecasts(stage, u64::MAX)
}

/// Replay the whole trace through the control loop with policy `name` (knob None: its
/// default); `progress(step)` after each interval.
pub fn run(
    replay: &Arc<Replay>,
    classes: &[Class],
    host: HostModel,
    name: &str,
    knob: Option<f64>,
    tuning: Tuning,
    progress: &mut dyn FnMut(usize),
) -> Result<Report, SimError> {
    let (policy, knob) = make_policy(name, knob, tuning, replay)?;
    tracing::debug!(policy = %policy.describe(), "replay starts");
    let mut backend = TraceBackend::new(Arc::clone(replay), classes.to_vec(), host);
    let mut controller = controller(name, policy);
    let mut tally = metrics::Tally::default();
    let mut prices = metrics::PriceTally::default();
    while !backend.finished() {
        controller.step(&mut backend)?;
        tally.record(backend.served());
        if let Some(p) = controller.policy().and_then(|p| p.prices()) {
            prices.record(&p);
        }
        progress(backend.step());
    }
    let (resources, overall) = tally.metrics(replay::INTERVAL_S as f64);
    Ok(Report {
        policy: name.to_string(),
        knob,
        resources,
        overall,
        prices: prices.prices(),
    })
}
#[cfg(test)]
mod tests;
