//! The operator's way in: a control API over a Unix socket (HTTP/JSON, callers authorised
//! by their peer credentials, every change audited) and Prometheus metrics.
//!
//! * [`action`]: every request as data ([`action::Action`]), parsed and checked;
//! * [`view`]: what the loop publishes after each cycle, read without waiting on it;
//! * [`desk`]: the loop thread's side, where changes are made;
//! * [`server`]: the transport (socket, peer credentials, audit log, metrics listener);
//! * [`metrics`]: the view in Prometheus text format.

pub mod action;
pub mod auth;
pub mod desk;
pub mod metrics;
pub mod server;
pub mod view;

use serde::Deserialize;
use std::path::PathBuf;

/// `[control]` in the daemon's config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// The control socket ("off": none).
    pub socket: PathBuf,
    /// The group the socket belongs to (mode 0660): its members may read.
    pub group: String,
    /// Members of this group (and root) may also change overrides, intents, the policy and
    /// pause or resume the daemon.
    pub admin_group: String,
    /// Every change made through the socket is appended here as a JSON line (default:
    /// `audit.log` beside the profile database).
    pub audit_log: Option<PathBuf>,
    /// Where Prometheus scrapes `/metrics` over TCP ("off": only over the socket).
    pub metrics_listen: String,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: PathBuf::from(DEFAULT_SOCKET),
            group: "prescient".into(),
            admin_group: "prescient-admin".into(),
            audit_log: None,
            metrics_listen: "127.0.0.1:9187".into(),
        }
    }
}

/// Where the daemon listens and the CLI connects by default.
pub const DEFAULT_SOCKET: &str = "/run/prescient/prescient.sock";

impl ControlConfig {
    /// The socket, unless turned off.
    pub fn socket(&self) -> Option<&std::path::Path> {
        (self.socket.as_os_str() != "off").then_some(self.socket.as_path())
    }

    /// The metrics address, unless turned off.
    pub fn metrics(&self) -> Result<Option<std::net::SocketAddr>, String> {
        if self.metrics_listen == "off" {
            return Ok(None);
        }
        self.metrics_listen.parse().map(Some).map_err(|_| {
            format!(
                "= {:?} is not an address and port such as 127.0.0.1:9187 (or \"off\")",
                self.metrics_listen
            )
        })
    }
}
