//! The operator's rules for allocation, from a policy file (`policies/default.toml`): the
//! priority classes (a weight and, per resource, a reservation, a limit and a provisioning
//! target) and what the host keeps for itself. A tenant's own `<prescient:tenant>` metadata
//! (class, guarantee, limit) overrides its class's reservation and limit.
//!
//! A file is read strictly: unknown keys are refused, and every error names the file, the
//! line and the field. Without a file the defaults apply: weights 4 / 2 / 1, no
//! reservations, limits, targets or host reserve.

use crate::collect::TenantStats;
use crate::model::{Amounts, Class, HostInfo, PerResource, Resource};
use serde::{Deserialize, Serialize};
use std::path::Path;
use toml::Spanned;

/// What a policy obeys besides its own rule. Amounts are in the pipeline's units (cores,
/// KiB, bytes/s, bytes/s).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rules {
    /// Kept back from the tenants, per resource.
    pub host_reserve: Amounts,
    /// Gold, silver, bronze.
    pub classes: [ClassRules; 3],
    /// Where the file gives the host reserve: its name and, per resource, the line.
    #[serde(skip)]
    reserve_at: Place,
}

/// Where a policy file gives the host reserve: the file's name and, per resource, the line.
/// Not part of the rules: two rules that say the same are equal wherever they were read.
#[derive(Debug, Clone, Default)]
struct Place(String, PerResource<Option<usize>>);

impl PartialEq for Place {
    fn eq(&self, _: &Place) -> bool {
        true
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassRules {
    pub class: Class,
    /// Its value per unit served against the other classes; under scarcity the lowest
    /// weights are squeezed first.
    pub weight: f64,
    /// What each tenant of the class is given at least, whatever the forecast (as long as the
    /// reservations fit the host).
    pub reservation: Amounts,
    /// What each tenant of the class is never given more than.
    pub limit: Amounts,
    /// The quantile of forecast demand the class is provisioned to when capacity is ample
    /// (the `prescient` policy; without one, its price of slack decides).
    pub target: PerResource<Option<f64>>,
    /// Each vCPU of the class's tenants gets a host CPU of its own (pinned), the emulator
    /// threads and every other tenant keep to the CPUs left shared.
    pub dedicated_cpus: bool,
}

impl Default for Rules {
    fn default() -> Self {
        let class = |class: Class| ClassRules {
            class,
            weight: class.weight(),
            reservation: Amounts::default(),
            limit: Amounts::default(),
            target: PerResource::default(),
            dedicated_cpus: false,
        };
        Rules {
            host_reserve: Amounts::default(),
            reserve_at: Default::default(),
            classes: [
                class(Class::Gold),
                class(Class::Silver),
                class(Class::Bronze),
            ],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// TOML's own message names the line, the column and the key.
    #[error("policy file {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("policy file {origin}, line {line}: {field} {message}")]
    Invalid {
        origin: String,
        line: usize,
        field: String,
        message: String,
    },
    #[error(
        "policy file {origin}{}: host.reserve {resource} = {reserve} is not below what the \
         host has ({total}): the tenants would get nothing; keep back less",
        line.map(|l| format!(", line {l}")).unwrap_or_default()
    )]
    ReserveBeyondHost {
        origin: String,
        line: Option<usize>,
        resource: Resource,
        /// Both in the operator's units, with the unit.
        reserve: String,
        total: String,
    },
}

impl Rules {
    /// Read and check a policy file.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Rules::parse(&text, &path.display().to_string())
    }

    /// Parse and check the text of a policy file; `origin` names it in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Rules, RulesError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            // The parser meets tables in name order, not the file's: say the first one.
            match first_foreign_table(text) {
                Some((line, name)) => RulesError::Invalid {
                    origin: origin.to_string(),
                    line,
                    field: format!("[{name}]"),
                    message: "is not a policy file's table: a policy file has [host.reserve] \
                              and [classes.gold|silver|bronze] (policies/default.toml); the \
                              daemon's config file (prescient.toml) is read by `prescient \
                              daemon --config`"
                        .into(),
                },
                None => RulesError::Parse {
                    origin: origin.to_string(),
                    message: e.to_string().trim_end().to_string(),
                },
            }
        })?;
        let check = Check { text, origin };
        let line = |r| raw.host.reserve.given(r).map(|v| check.line(v));
        let mut rules = Rules {
            host_reserve: check.amounts("host.reserve", &raw.host.reserve)?,
            reserve_at: Place(
                origin.to_string(),
                PerResource {
                    cpu: line(Resource::Cpu),
                    mem: line(Resource::Mem),
                    disk: line(Resource::Disk),
                    net: line(Resource::Net),
                },
            ),
            ..Rules::default()
        };
        for (rules, raw) in rules.classes.iter_mut().zip([
            &raw.classes.gold,
            &raw.classes.silver,
            &raw.classes.bronze,
        ]) {
            check.class(rules, raw)?;
        }
        Ok(rules)
    }

    pub fn class(&self, class: Class) -> &ClassRules {
        &self.classes[class as usize]
    }

    pub fn weight(&self, class: Class) -> f64 {
        self.class(class).weight
    }

    /// What the tenants may be given in all: the host's capacity less its reserve (None
    /// where the capacity is unknown).
    pub fn capacity(&self, host: &HostInfo, r: Resource) -> Option<f64> {
        let reserve = self.host_reserve.get(r).unwrap_or(0.0);
        host.capacity.get(r).map(|c| (c - reserve).max(0.0))
    }

    /// Check the host reserve against what the host has (`total` per resource, in the
    /// pipeline's units; None: unknown): keeping back all of it, or more, would leave the
    /// tenants nothing.
    pub fn check_host(&self, total: &PerResource<Option<f64>>) -> Result<(), RulesError> {
        for r in Resource::ALL {
            if let (Some(reserve), Some(total)) = (*self.host_reserve.get(r), *total.get(r))
                && reserve >= total
            {
                let show = |v: f64| match r {
                    Resource::Cpu => format!("{v} cores"),
                    Resource::Mem => format!("{} MiB", v / 1024.0),
                    Resource::Disk | Resource::Net => format!("{v} bytes/s"),
                };
                return Err(RulesError::ReserveBeyondHost {
                    origin: self.reserve_at.0.clone(),
                    line: *self.reserve_at.1.get(r),
                    resource: r,
                    reserve: show(reserve),
                    total: show(total),
                });
            }
        }
        Ok(())
    }

    /// A tenant's bounds for resource `r`: its metadata's guarantee and limit where it
    /// declares them, else its class's reservation and limit (0 and +∞ by default). A
    /// reservation above the limit is held at the limit.
    pub fn bounds(&self, t: &TenantStats, r: Resource) -> (f64, f64) {
        let class = self.class(t.policy.class);
        let hi = t
            .policy
            .limit
            .get(r)
            .or(*class.limit.get(r))
            .unwrap_or(f64::INFINITY);
        let lo = t
            .policy
            .guarantee
            .get(r)
            .or(*class.reservation.get(r))
            .unwrap_or(0.0);
        (lo.min(hi), hi)
    }
}

/// The first top-level table or key of `text` a policy file does not have, and its line.
fn first_foreign_table(text: &str) -> Option<(usize, String)> {
    let mut in_table = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let name = if let Some(h) = line.strip_prefix('[') {
            in_table = true;
            h.trim_start_matches('[').split(['.', ']']).next()?.trim()
        } else if !in_table && !line.starts_with('#') && line.contains('=') {
            line.split(['=', '.']).next()?.trim()
        } else {
            continue;
        };
        let name = name.trim_matches('"');
        if !name.is_empty() && name != "host" && name != "classes" {
            return Some((n + 1, name.to_string()));
        }
    }
    None
}

/// A policy file as written, every number with its place in the file.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawFile {
    host: RawHost,
    classes: RawClasses,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawHost {
    reserve: RawAmounts,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawClasses {
    gold: RawClass,
    silver: RawClass,
    bronze: RawClass,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawClass {
    weight: Option<Spanned<f64>>,
    reservation: RawAmounts,
    limit: RawAmounts,
    target: RawTargets,
    dedicated_cpus: bool,
}

/// Amounts in the units of `<prescient:tenant>` metadata.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawAmounts {
    cpu_cores: Option<Spanned<f64>>,
    mem_mib: Option<Spanned<f64>>,
    mem_kib: Option<Spanned<f64>>,
    disk_bytes_per_s: Option<Spanned<f64>>,
    net_bytes_per_s: Option<Spanned<f64>>,
}

impl RawAmounts {
    /// Where the amount of `r` was given, if it was.
    fn given(&self, r: Resource) -> Option<&Spanned<f64>> {
        match r {
            Resource::Cpu => self.cpu_cores.as_ref(),
            Resource::Mem => self.mem_mib.as_ref().or(self.mem_kib.as_ref()),
            Resource::Disk => self.disk_bytes_per_s.as_ref(),
            Resource::Net => self.net_bytes_per_s.as_ref(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawTargets {
    cpu: Option<Spanned<f64>>,
    mem: Option<Spanned<f64>>,
    disk: Option<Spanned<f64>>,
    net: Option<Spanned<f64>>,
}

struct Check<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Check<'_> {
    /// The line (from 1) a value is given on.
    fn line(&self, at: &Spanned<f64>) -> usize {
        let start = at.span().start.min(self.text.len());
        self.text[..start].matches('\n').count() + 1
    }

    fn fail<T>(&self, at: &Spanned<f64>, field: String, message: String) -> Result<T, RulesError> {
        Err(RulesError::Invalid {
            origin: self.origin.to_string(),
            line: self.line(at),
            field,
            message,
        })
    }

    /// A number in `lo … hi` (`lo` itself excluded when `open`).
    fn number(
        &self,
        field: String,
        v: &Spanned<f64>,
        (lo, hi, open): (f64, f64, bool),
        expected: &str,
    ) -> Result<f64, RulesError> {
        let x = *v.get_ref();
        if x.is_finite() && x <= hi && (x > lo || (!open && x == lo)) {
            Ok(x)
        } else {
            self.fail(v, field, format!("= {x} is not {expected}"))
        }
    }

    fn amounts(&self, table: &str, raw: &RawAmounts) -> Result<Amounts, RulesError> {
        let amount = |key: &str, v: &Option<Spanned<f64>>, scale: f64| {
            v.as_ref()
                .map(|v| {
                    let f = format!("{table}.{key}");
                    self.number(f, v, (0.0, 1e18, false), "an amount ≥ 0")
                        .map(|x| x * scale)
                })
                .transpose()
        };
        if let (Some(_), Some(kib)) = (&raw.mem_mib, &raw.mem_kib) {
            return self.fail(
                kib,
                format!("{table}.mem_kib"),
                "is given with mem_mib: give one of them".into(),
            );
        }
        Ok(PerResource {
            cpu: amount("cpu_cores", &raw.cpu_cores, 1.0)?,
            mem: amount("mem_mib", &raw.mem_mib, 1024.0)?.or(amount("mem_kib", &raw.mem_kib, 1.0)?),
            disk: amount("disk_bytes_per_s", &raw.disk_bytes_per_s, 1.0)?,
            net: amount("net_bytes_per_s", &raw.net_bytes_per_s, 1.0)?,
        })
    }

    fn class(&self, rules: &mut ClassRules, raw: &RawClass) -> Result<(), RulesError> {
        let name = format!("classes.{}", rules.class);
        if let Some(w) = &raw.weight {
            let f = format!("{name}.weight");
            rules.weight = self.number(f, w, (0.0, 1e6, true), "a weight > 0")?;
        }
        let reservation = format!("{name}.reservation");
        rules.reservation = self.amounts(&reservation, &raw.reservation)?;
        rules.limit = self.amounts(&format!("{name}.limit"), &raw.limit)?;
        rules.dedicated_cpus = raw.dedicated_cpus;
        let t = &raw.target;
        for (r, v) in Resource::ALL
            .into_iter()
            .zip([&t.cpu, &t.mem, &t.disk, &t.net])
        {
            if let Some(v) = v {
                let f = format!("{name}.target.{r}");
                let q = self.number(
                    f,
                    v,
                    (0.0, 0.9999, true),
                    "a quantile above 0 and at most 0.9999 (a target of 0 would provision \
                     nothing; e.g. 0.9 provisions the forecast's p90)",
                )?;
                *rules.target.get_mut(r) = Some(q);
            }
        }
        for r in Resource::ALL {
            if let (Some(lo), Some(hi)) = (rules.reservation.get(r), rules.limit.get(r))
                && lo > hi
            {
                let at = raw
                    .reservation
                    .given(r)
                    .expect("a reservation was read from it");
                return self.fail(
                    at,
                    format!("{reservation} of {r}"),
                    format!(
                        "({lo} {u}) exceeds the class's limit ({hi} {u})",
                        u = r.unit()
                    ),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Rules::parse(text, "p.toml").unwrap_err().to_string()
    }

    #[test]
    fn defaults_without_a_file_or_with_an_empty_one() {
        assert_eq!(Rules::parse("", "p.toml").unwrap(), Rules::default());
        let d = Rules::default();
        assert_eq!(d.weight(Class::Gold), 4.0);
        assert_eq!(d.weight(Class::Bronze), 1.0);
    }

    #[test]
    fn a_full_file_reads_in_pipeline_units() {
        let r = Rules::parse(
            "[host.reserve]\ncpu_cores = 1\nmem_mib = 2048\n\
             [classes.gold]\nweight = 8\nreservation = { cpu_cores = 0.5, mem_mib = 512 }\n\
             limit = { cpu_cores = 4 }\ntarget = { cpu = 0.99 }\n\
             [classes.bronze.limit]\nnet_bytes_per_s = 1e6\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(r.host_reserve.cpu, Some(1.0));
        assert_eq!(r.host_reserve.mem, Some(2048.0 * 1024.0));
        let g = r.class(Class::Gold);
        assert_eq!(g.weight, 8.0);
        assert_eq!(g.reservation.mem, Some(512.0 * 1024.0));
        assert_eq!(g.limit.cpu, Some(4.0));
        assert_eq!(g.target.cpu, Some(0.99));
        assert_eq!(r.weight(Class::Silver), 2.0);
        assert_eq!(r.class(Class::Bronze).limit.net, Some(1e6));
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_field() {
        let e = err("[classes.gold]\nweight = 4\n\n[classes.silver]\nwieght = 2\n");
        assert!(
            e.contains("p.toml") && e.contains("line 5") && e.contains("wieght"),
            "{e}"
        );
        let e = err("[classes.gold]\nweight = -1\n");
        assert!(
            e.contains("line 2") && e.contains("classes.gold.weight"),
            "{e}"
        );
        let e = err("[classes.bronze]\ntarget = { mem = 1.5 }\n");
        assert!(
            e.contains("line 2") && e.contains("classes.bronze.target.mem"),
            "{e}"
        );
        let e = err("[host.reserve]\n\ncpu_cores = \"two\"\n");
        assert!(e.contains("line 3") && e.contains("cpu_cores"), "{e}");
        let e =
            err("[classes.silver]\nreservation = { cpu_cores = 2 }\nlimit = { cpu_cores = 1 }\n");
        assert!(
            e.contains("line 2") && e.contains("classes.silver.reservation of cpu"),
            "{e}"
        );
        let e = err("[host.reserve]\nmem_mib = 1\nmem_kib = 1024\n");
        assert!(e.contains("line 3") && e.contains("give one"), "{e}");
        let e = err("[classes.platinum]\nweight = 9\n");
        assert!(e.contains("platinum") && e.contains("line 1"), "{e}");
        let e = err("[host.reserve]\ndisk_bytes_per_s = nan\n");
        assert!(
            e.contains("line 2") && e.contains("disk_bytes_per_s"),
            "{e}"
        );
    }

    #[test]
    fn the_first_foreign_table_is_named_and_a_zero_target_says_why() {
        let e = err(include_str!("../../policies/prescient.toml"));
        assert!(e.contains("line 4") && e.contains("[daemon]"), "{e}");
        assert!(e.contains("daemon --config"), "{e}");
        let e = err("[classes.gold]\ntarget = { cpu = 0 }\n");
        assert!(
            e.contains("line 2") && e.contains("above 0") && e.contains("provision nothing"),
            "{e}"
        );
    }

    #[test]
    fn a_host_reserve_of_all_the_host_has_is_refused_with_its_line() {
        let rules = Rules::parse("[host.reserve]\n\ncpu_cores = 1e12\n", "p.toml").unwrap();
        let total = PerResource {
            cpu: Some(4.0),
            mem: Some(8e6),
            disk: None,
            net: None,
        };
        let e = rules.check_host(&total).unwrap_err().to_string();
        assert!(
            e.contains("p.toml, line 3") && e.contains("cpu") && e.contains("4 cores"),
            "{e}"
        );
        let rules = Rules::parse("[host.reserve]\ncpu_cores = 4\n", "p.toml").unwrap();
        assert!(rules.check_host(&total).is_err());
        let rules = Rules::parse("[host.reserve]\ncpu_cores = 1\nmem_mib = 1024\n", "p").unwrap();
        assert!(rules.check_host(&total).is_ok());
        // Unknown capacities (disk, net) are not checked.
        let rules = Rules::parse("[host.reserve]\nnet_bytes_per_s = 1e18\n", "p").unwrap();
        assert!(rules.check_host(&total).is_ok());
    }

    #[test]
    fn metadata_overrides_the_class() {
        let rules = Rules::parse(
            "[classes.silver]\nreservation = { cpu_cores = 0.5 }\nlimit = { cpu_cores = 2, mem_mib = 100 }\n",
            "p.toml",
        )
        .unwrap();
        let mut t = TenantStats::default();
        assert_eq!(rules.bounds(&t, Resource::Cpu), (0.5, 2.0));
        assert_eq!(rules.bounds(&t, Resource::Disk), (0.0, f64::INFINITY));
        t.policy.limit.cpu = Some(1.0);
        t.policy.guarantee.mem = Some(1000.0 * 1024.0);
        assert_eq!(rules.bounds(&t, Resource::Cpu), (0.5, 1.0));
        // A guarantee above the class's limit is held at the limit.
        assert_eq!(rules.bounds(&t, Resource::Mem), (102_400.0, 102_400.0));
        t.policy.class = Class::Gold;
        assert_eq!(rules.bounds(&t, Resource::Cpu), (0.0, 1.0));
    }

    #[test]
    fn the_host_reserve_comes_off_the_capacity() {
        let rules = Rules::parse("[host.reserve]\ncpu_cores = 2\n", "p.toml").unwrap();
        let mut host = HostInfo::default();
        host.capacity.cpu = Some(16.0);
        host.capacity.mem = Some(1e6);
        assert_eq!(rules.capacity(&host, Resource::Cpu), Some(14.0));
        assert_eq!(rules.capacity(&host, Resource::Mem), Some(1e6));
        assert_eq!(rules.capacity(&host, Resource::Disk), None);
        host.capacity.cpu = Some(1.0);
        assert_eq!(rules.capacity(&host, Resource::Cpu), Some(0.0));
    }
}
