//! The allocation policies by name: one list for `simulate --policy`, `daemon --policy` and
//! the control socket, with each policy's knob (its meaning, default and range) and the
//! values a `--sweep` runs.

use super::Policy;
use super::baselines::{NSigma, Reactive, StaticShare, Vpa};
use super::prescient::Prescient;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Static,
    Reactive,
    Vpa,
    NSigma,
    Prescient,
}

/// A policy's one knob.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knob {
    pub meaning: &'static str,
    pub default: f64,
    pub min: f64,
    pub max: f64,
}

/// Settings of the policies other than their knob.
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

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KindError {
    #[error("unknown policy {0:?} (known: static, reactive, vpa, nsigma, prescient)")]
    Unknown(String),
    #[error("knob {knob} is out of range for {policy}: {expected}")]
    Knob {
        policy: PolicyKind,
        knob: f64,
        expected: String,
    },
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 5] = [
        PolicyKind::Static,
        PolicyKind::Reactive,
        PolicyKind::Vpa,
        PolicyKind::NSigma,
        PolicyKind::Prescient,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Static => "static",
            PolicyKind::Reactive => "reactive",
            PolicyKind::Vpa => "vpa",
            PolicyKind::NSigma => "nsigma",
            PolicyKind::Prescient => "prescient",
        }
    }

    /// The knob, for the policies that have one.
    pub fn knob(self) -> Option<Knob> {
        let knob = |meaning, default, min, max| {
            Some(Knob {
                meaning,
                default,
                min,
                max,
            })
        };
        match self {
            PolicyKind::Static => None,
            PolicyKind::Reactive => knob(
                "margin over the last value",
                Reactive::DEFAULT_MARGIN,
                0.0,
                100.0,
            ),
            PolicyKind::Vpa => knob(
                "percentile of the decaying histogram",
                Vpa::DEFAULT_PERCENTILE,
                0.01,
                1.0,
            ),
            PolicyKind::NSigma => knob(
                "n, the number of standard deviations",
                NSigma::DEFAULT_N,
                0.0,
                100.0,
            ),
            PolicyKind::Prescient => knob(
                "c, the price of slack against weighted shortfall",
                Prescient::DEFAULT_COST,
                0.0,
                100.0,
            ),
        }
    }

    /// The knob values a `--sweep` runs, from timid to generous.
    pub fn sweep(self) -> Vec<Option<f64>> {
        match self {
            PolicyKind::Static => vec![None],
            PolicyKind::Reactive => [0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0].map(Some).to_vec(),
            PolicyKind::Vpa => [0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0].map(Some).to_vec(),
            PolicyKind::NSigma => [0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0].map(Some).to_vec(),
            PolicyKind::Prescient => [0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 1.2, 3.0]
                .map(Some)
                .to_vec(),
        }
    }

    /// Whether the policy reads the forecasts (the control loop then forecasts).
    pub fn forecasts(self) -> bool {
        self == PolicyKind::Prescient
    }

    /// The knob checked against its range (None: the default; a policy without a knob
    /// refuses one).
    pub fn check_knob(self, knob: Option<f64>) -> Result<Option<f64>, KindError> {
        let Some(k) = self.knob() else {
            return match knob {
                None => Ok(None),
                Some(v) => Err(KindError::Knob {
                    policy: self,
                    knob: v,
                    expected: "this policy has no knob".into(),
                }),
            };
        };
        match knob {
            None => Ok(Some(k.default)),
            Some(v) if v.is_finite() && v >= k.min && v <= k.max => Ok(Some(v)),
            Some(v) => Err(KindError::Knob {
                policy: self,
                knob: v,
                expected: format!("{} in {} … {}", k.meaning, k.min, k.max),
            }),
        }
    }

    /// Build the policy with `knob` (None: its default); returns the knob it runs with.
    pub fn build(
        self,
        knob: Option<f64>,
        tuning: Tuning,
    ) -> Result<(Box<dyn Policy>, Option<f64>), KindError> {
        let knob = self.check_knob(knob)?;
        let k = knob.unwrap_or_default();
        let policy: Box<dyn Policy> = match self {
            PolicyKind::Static => Box::new(StaticShare::new()),
            PolicyKind::Reactive => Box::new(Reactive::new(k, tuning.reactive_cap_growth)),
            PolicyKind::Vpa => Box::new(Vpa::new(k)),
            PolicyKind::NSigma => Box::new(NSigma::new(k)),
            PolicyKind::Prescient => Box::new(Prescient::new(k, tuning.prescient_feedback)),
        };
        Ok((policy, knob))
    }
}

impl std::str::FromStr for PolicyKind {
    type Err = KindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PolicyKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| KindError::Unknown(s.to_string()))
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_knobs_are_checked() {
        for k in PolicyKind::ALL {
            assert_eq!(k.name().parse::<PolicyKind>(), Ok(k));
            assert!(k.build(None, Tuning::default()).is_ok());
        }
        assert!(matches!(
            "mom".parse::<PolicyKind>(),
            Err(KindError::Unknown(_))
        ));
        assert!(PolicyKind::Static.check_knob(Some(1.0)).is_err());
        assert!(PolicyKind::Vpa.check_knob(Some(1.5)).is_err());
        assert!(PolicyKind::Reactive.check_knob(Some(-0.1)).is_err());
        assert!(PolicyKind::NSigma.check_knob(Some(f64::NAN)).is_err());
        assert_eq!(PolicyKind::Vpa.check_knob(None), Ok(Some(0.9)));
    }
}
