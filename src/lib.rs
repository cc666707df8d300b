//! prescient: proactive resource management for the tenant VMs of a KVM host.
//!
//! The pipeline, one module a stage: [`collect`] → [`profile`] → [`forecast`] → [`allocate`]
//! → [`actuate`], around the host [`backend`] seam, in the words of [`model`] and [`plan`].
//! The daemon ([`daemon`]), the simulator ([`sim`]) and the CLI ([`cli`]) are thin drivers of
//! one control loop ([`pipeline`]); operators reach the daemon through [`control`].

pub mod actuate;
pub mod allocate;
pub mod backend;
pub mod cadence;
pub mod cli;
pub mod collect;
pub mod config;
pub mod control;
pub mod daemon;
pub mod forecast;
pub mod leadtime;
pub mod model;
pub mod pipeline;
pub mod plan;
pub mod profile;
pub mod sim;
pub mod trace;
