//! The daemon's TOML configuration: defaults for everything, unknown keys refused, and
//! `validate()` with messages that name the file and the field.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub profile: ProfileConfig,
    pub forecast: ForecastConfig,
    pub allocate: AllocateConfig,
    pub actuate: crate::actuate::ActuateConfig,
    pub control: crate::control::ControlConfig,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AllocateConfig {
    /// The allocation policy to run (static, reactive, vpa, nsigma, prescient); none: the
    /// daemon only observes and forecasts.
    pub policy: Option<String>,
    /// The policy's knob (None: its default).
    pub knob: Option<f64>,
    /// The policy file (classes, reservations, limits, host reserve), reread on SIGHUP.
    pub policy_file: Option<PathBuf>,
}

impl AllocateConfig {
    /// The policy to run, its name checked.
    pub fn kind(&self) -> Option<crate::allocate::kind::PolicyKind> {
        self.policy.as_deref().and_then(|p| p.parse().ok())
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ForecastConfig {
    /// How often the forecasters' state is stored in the profile (also at shutdown).
    pub save_minutes: f64,
    /// The forecast step: usage is averaged over buckets this long, and a forecast says
    /// what each coming bucket will need. Shorter buckets learn short cycles in minutes.
    pub bucket_seconds: i64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            save_minutes: 60.0,
            bucket_seconds: crate::model::STEP_S,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// libvirt connection URI.
    pub uri: String,
    /// Control interval: one bulk stats call per interval.
    pub interval_seconds: f64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileConfig {
    /// The SQLite profile database.
    pub path: PathBuf,
    /// How long raw samples (one per interval) are kept.
    pub raw_retention_hours: f64,
    /// How long 5-minute aggregates are kept.
    pub history_retention_days: f64,
    /// How often raw samples are rolled up and old rows dropped.
    pub maintenance_minutes: f64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            uri: "qemu:///system".into(),
            interval_seconds: 10.0,
        }
    }
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            path: PathBuf::from("/var/lib/prescient/profile.db"),
            raw_retention_hours: 48.0,
            history_retention_days: 90.0,
            maintenance_minutes: 5.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// `origin` says where the value came from: the file and its line, a command-line
    /// flag, or the defaults.
    #[error("config {origin}: {field} {message}")]
    Invalid {
        origin: String,
        field: &'static str,
        message: String,
    },
}

/// Where a config's values came from, for messages: the file (its path and text), and the
/// fields the command line set, each with its flag.
#[derive(Debug, Default)]
pub struct Origin<'a> {
    pub file: Option<(&'a Path, &'a str)>,
    pub flags: Vec<(&'static str, &'static str)>,
}

impl Origin<'_> {
    /// Where `field` (`table.key`) was set: its flag, its line in the file, or the defaults.
    fn of(&self, field: &str) -> String {
        if let Some((_, flag)) = self.flags.iter().find(|(f, _)| *f == field) {
            return format!("command line {flag}");
        }
        let Some((path, text)) = self.file else {
            return "defaults".into();
        };
        let (table, key) = field.split_once('.').unwrap_or(("", field));
        let mut current = String::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(header) = line.strip_prefix('[') {
                current = header.trim_end_matches(']').trim().to_string();
            } else if current == table
                && let Some(rest) = line.strip_prefix(key)
                && rest.trim_start().starts_with('=')
            {
                return format!("file {}, line {}", path.display(), n + 1);
            }
        }
        format!("file {} (its default)", path.display())
    }
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (cfg, text) = Config::read(path)?;
        cfg.validate(&Origin {
            file: Some((path, &text)),
            flags: Vec::new(),
        })?;
        Ok(cfg)
    }

    /// Read a config file without validating it (for values the command line still
    /// overrides: validate after), and its text.
    pub fn read(path: &Path) -> Result<(Config, String), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        Ok((cfg, text))
    }

    /// Check every value; `origin` says where each came from in the message.
    pub fn validate(&self, origin: &Origin<'_>) -> Result<(), ConfigError> {
        let bad = |field, message: String| {
            Err(ConfigError::Invalid {
                origin: origin.of(field),
                field,
                message,
            })
        };
        let range = |v: f64, lo: f64, hi: f64| v.is_finite() && v >= lo && v <= hi;
        let d = &self.daemon;
        let p = &self.profile;
        if d.uri.trim().is_empty() {
            return bad("daemon.uri", "is empty; use e.g. \"qemu:///system\"".into());
        }
        if !range(d.interval_seconds, 0.05, 3600.0) {
            return bad(
                "daemon.interval_seconds",
                format!("= {} is outside 0.05 … 3600", d.interval_seconds),
            );
        }
        if p.path.as_os_str().is_empty() {
            return bad("profile.path", "is empty".into());
        }
        if !range(p.raw_retention_hours, 0.1, 24.0 * 365.0) {
            return bad(
                "profile.raw_retention_hours",
                format!("= {} is outside 0.1 … 8760", p.raw_retention_hours),
            );
        }
        if !range(p.history_retention_days, 1.0, 3650.0) {
            return bad(
                "profile.history_retention_days",
                format!("= {} is outside 1 … 3650", p.history_retention_days),
            );
        }
        if p.history_retention_days * 24.0 < p.raw_retention_hours {
            return bad(
                "profile.history_retention_days",
                format!(
                    "= {} days is shorter than profile.raw_retention_hours = {} h; history \
                     must outlive the raw samples it summarises",
                    p.history_retention_days, p.raw_retention_hours
                ),
            );
        }
        if !range(self.forecast.save_minutes, 1.0, 1440.0) {
            return bad(
                "forecast.save_minutes",
                format!("= {} is outside 1 … 1440", self.forecast.save_minutes),
            );
        }
        let bucket = self.forecast.bucket_seconds;
        if !(10..=3600).contains(&bucket) {
            return bad(
                "forecast.bucket_seconds",
                format!("= {bucket} is outside 10 … 3600"),
            );
        }
        if (bucket as f64) < 2.0 * d.interval_seconds {
            return bad(
                "forecast.bucket_seconds",
                format!(
                    "= {bucket} holds fewer than two control intervals (daemon.interval_seconds \
                     = {}); a bucket averages several",
                    d.interval_seconds
                ),
            );
        }
        let a = &self.allocate;
        if let Some(name) = &a.policy {
            match name.parse::<crate::allocate::kind::PolicyKind>() {
                Err(e) => return bad("allocate.policy", e.to_string()),
                Ok(kind) => {
                    if let Err(e) = kind.check_knob(a.knob) {
                        return bad("allocate.knob", e.to_string());
                    }
                }
            }
        } else if a.knob.is_some() {
            return bad("allocate.knob", "is set but no allocate.policy is".into());
        }
        if let Err((field, message)) = self.actuate.check() {
            return bad(field, message);
        }
        if !range(p.maintenance_minutes, 0.01, 1440.0) {
            return bad(
                "profile.maintenance_minutes",
                format!("= {} is outside 0.01 … 1440", p.maintenance_minutes),
            );
        }
        let c = &self.control;
        if c.socket.as_os_str().is_empty() {
            return bad(
                "control.socket",
                "is empty (use \"off\" for no socket)".into(),
            );
        }
        if let Err(message) = c.metrics() {
            return bad("control.metrics_listen", message);
        }
        for (field, group) in [
            ("control.group", &c.group),
            ("control.admin_group", &c.admin_group),
        ] {
            if group.is_empty() || group.contains([':', '\n', ' ']) {
                return bad(field, format!("= {group:?} is not a group name"));
            }
        }
        Ok(())
    }

    pub fn retention(&self) -> crate::profile::Retention {
        crate::profile::Retention {
            raw_ms: (self.profile.raw_retention_hours * 3600e3) as i64,
            history_ms: (self.profile.history_retention_days * 86400e3) as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prescient.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.daemon.uri, "qemu:///system");
        assert_eq!(c.retention().raw_ms, 48 * 3600 * 1000);
    }

    #[test]
    fn the_example_config_shows_the_defaults() {
        let text = include_str!("../policies/prescient.toml");
        let c = parse(text).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn control_settings_are_checked() {
        let e = parse("[control]\nmetrics_listen = \"localhost\"\n").unwrap_err();
        assert!(e.to_string().contains("control.metrics_listen"), "{e}");
        let e = parse("[control]\ngroup = \"a b\"\n").unwrap_err();
        assert!(e.to_string().contains("control.group"), "{e}");
        let c = parse("[control]\nsocket = \"off\"\nmetrics_listen = \"off\"\n").unwrap();
        assert_eq!(c.control.socket(), None);
        assert_eq!(c.control.metrics(), Ok(None));
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let c = parse("[daemon]\ninterval_seconds = 2\n[profile]\npath = \"/tmp/p.db\"\n").unwrap();
        assert_eq!(c.daemon.interval_seconds, 2.0);
        assert_eq!(c.daemon.uri, "qemu:///system");
        assert_eq!(c.profile.path, PathBuf::from("/tmp/p.db"));
        assert_eq!(c.profile.history_retention_days, 90.0);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let e = parse("[daemon]\nintervall_seconds = 2\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("intervall_seconds") && e.contains("prescient.toml"),
            "{e}"
        );
        let e = parse("[deamon]\n").unwrap_err().to_string();
        assert!(e.contains("deamon"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_field_and_line() {
        let e = parse("[daemon]\ninterval_seconds = \"ten\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("interval_seconds") && e.contains("line 2"),
            "{e}"
        );
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        for (text, field) in [
            (
                "[daemon]\ninterval_seconds = 0\n",
                "daemon.interval_seconds",
            ),
            (
                "[daemon]\ninterval_seconds = -5\n",
                "daemon.interval_seconds",
            ),
            ("[daemon]\nuri = \" \"\n", "daemon.uri"),
            (
                "[profile]\nraw_retention_hours = 0\n",
                "profile.raw_retention_hours",
            ),
            (
                "[profile]\nhistory_retention_days = 0.5\n",
                "profile.history_retention_days",
            ),
            (
                "[profile]\nraw_retention_hours = 100\nhistory_retention_days = 2\n",
                "profile.history_retention_days",
            ),
            ("[profile]\npath = \"\"\n", "profile.path"),
            (
                "[profile]\nmaintenance_minutes = 1e9\n",
                "profile.maintenance_minutes",
            ),
            ("[forecast]\nsave_minutes = 0\n", "forecast.save_minutes"),
            (
                "[forecast]\nbucket_seconds = 5\n",
                "forecast.bucket_seconds",
            ),
            (
                "[daemon]\ninterval_seconds = 30\n[forecast]\nbucket_seconds = 40\n",
                "forecast.bucket_seconds",
            ),
            ("[allocate]\npolicy = \"mom\"\n", "allocate.policy"),
            ("[allocate]\npolicy = \"vpa\"\nknob = 2\n", "allocate.knob"),
            ("[allocate]\nknob = 2\n", "allocate.knob"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(matches!(e, ConfigError::Invalid { .. }), "{text}: {e}");
            assert!(e.to_string().contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn range_errors_name_the_line_or_the_flag_that_set_the_value() {
        let e = parse("[daemon]\nuri = \"test:///default\"\n\ninterval_seconds = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("prescient.toml, line 4") && e.contains("daemon.interval_seconds"),
            "{e}"
        );
        assert!(
            !e.contains("command-line") && !e.contains("command line"),
            "{e}"
        );
        let c = Config {
            daemon: DaemonConfig {
                interval_seconds: 0.0,
                ..DaemonConfig::default()
            },
            ..Config::default()
        };
        let origin = Origin {
            file: Some((Path::new("p.toml"), "[daemon]\ninterval_seconds = 5\n")),
            flags: vec![("daemon.interval_seconds", "--interval")],
        };
        let e = c.validate(&origin).unwrap_err().to_string();
        assert!(e.contains("command line --interval"), "{e}");
        let e = c.validate(&Origin::default()).unwrap_err().to_string();
        assert!(e.contains("defaults"), "{e}");
    }

    #[test]
    fn missing_file_is_named() {
        let e = Config::load(Path::new("/nonexistent/prescient.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/prescient.toml"));
    }
}
