//! The trace-driven host simulator: real VM traces replayed through prescient's own control
//! loop ([`crate::pipeline::Controller`]) on the trace backend, with the reactive baselines
//! side by side. See docs/evaluation.md.

pub mod classes;
pub mod metrics;
pub mod oracle;
pub mod plot;
pub mod replay;

use crate::allocate::Policy;
pub use crate::allocate::kind::Tuning;
use crate::allocate::kind::{KindError, Knob, PolicyKind};
use crate::allocate::rules::Rules;
use crate::backend::BackendError;
use crate::backend::trace::{HostModel, TraceBackend};
use crate::forecast::stage::ForecastStage;
use crate::model::Class;
use crate::model::STEP_S;
use crate::pipeline::Controller;
use metrics::Report;
use replay::Replay;
use std::sync::Arc;

/// The policies `simulate` knows: every [`PolicyKind`] and the oracle.
pub const POLICIES: [&str; 6] = ["static", "reactive", "vpa", "nsigma", "prescient", "oracle"];

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("unknown policy {0:?} (known: static, reactive, vpa, nsigma, prescient, oracle)")]
    UnknownPolicy(String),
    #[error("--{0}")]
    Knob(KindError),
    #[error("--knob {0}: the oracle has no knob")]
    OracleKnob(f64),
    #[error(
        "{dir}: no tenant-interval to replay ({} read, {skipped} skipped; none has a row \
         in the replayed period): nothing was simulated",
        crate::model::count(*files, "trace file")
    )]
    NoData {
        dir: std::path::PathBuf,
        files: usize,
        skipped: usize,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

fn kind(name: &str) -> Result<Option<PolicyKind>, SimError> {
    match name {
        "oracle" => Ok(None),
        _ => name
            .parse()
            .map(Some)
            .map_err(|_| SimError::UnknownPolicy(name.to_string())),
    }
}

/// The knob of policy `name`, if it has one (the oracle has none).
pub fn knob_help(name: &str) -> Option<Knob> {
    kind(name).ok().flatten().and_then(PolicyKind::knob)
}

/// The knob values a `--sweep` runs for policy `name`.
pub fn sweep_values(name: &str) -> Vec<Option<f64>> {
    match kind(name) {
        Ok(Some(k)) => k.sweep(),
        _ => vec![None],
    }
}

/// Build a policy by name; `knob` None takes the policy's default.
pub fn make_policy(
    name: &str,
    knob: Option<f64>,
    tuning: Tuning,
    replay: &Arc<Replay>,
) -> Result<(Box<dyn Policy>, Option<f64>), SimError> {
    match kind(name)? {
        Some(k) => k.build(knob, tuning).map_err(SimError::Knob),
        None => match knob {
            None => Ok((Box::new(oracle::Oracle::new(Arc::clone(replay))), None)),
            Some(v) => Err(SimError::OracleKnob(v)),
        },
    }
}

/// The control loop for `policy` (named `name`) under `rules`, with forecasts for the
/// policy that reads them.
pub fn controller(name: &str, policy: Box<dyn Policy>, rules: Rules) -> Controller {
    let mut c = Controller::new(None).with_policy(policy);
    c.set_rules(rules);
    if !kind(name).ok().flatten().is_some_and(PolicyKind::forecasts) {
        return c;
    }
    // One interval ahead is all the policy reads; nothing to save to: the forecasters live
    // as long as the replay.
    let stage = ForecastStage::new(crate::forecast::Config::default()).with_horizons(1);
    c.with_forecasts(stage, u64::MAX)
}

/// What a replay runs on: the traces, the tenants' classes, the host, the policies' tuning and
/// the operator's rules.
#[derive(Clone, Copy)]
pub struct Scenario<'a> {
    pub replay: &'a Arc<Replay>,
    pub classes: &'a [Class],
    pub host: HostModel,
    pub tuning: Tuning,
    pub rules: &'a Rules,
}

/// Replay the whole trace through the control loop with policy `name` (knob None: its
/// default); `progress(step)` after each interval.
pub fn run(
    s: &Scenario<'_>,
    name: &str,
    knob: Option<f64>,
    progress: &mut dyn FnMut(usize),
) -> Result<Report, SimError> {
    let Scenario {
        replay,
        classes,
        host,
        tuning,
        rules,
    } = *s;
    let (policy, knob) = make_policy(name, knob, tuning, replay)?;
    tracing::debug!(policy = %policy.describe(), "replay starts");
    let mut backend = TraceBackend::new(Arc::clone(replay), classes.to_vec(), host);
    let mut controller = controller(name, policy, rules.clone());
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
    let (resources, overall) = tally.metrics(STEP_S as f64);
    Ok(Report {
        policy: name.to_string(),
        knob,
        resources,
        overall,
        prices: prices.prices(),
        rises: controller.leadtime().totals(),
    })
}
#[cfg(test)]
mod tests;
