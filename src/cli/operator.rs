//! The operator's commands, each one request to the daemon's control socket: status,
//! tenants, explain, overrides, intents, pause and resume.

use super::client::{SocketArg, call};
use super::collect::{cell, pad, utc};
use crate::allocate::overrides::Override;
use crate::control::action::{IntentSpec, OverrideSpec, Quantities, percent_encode};
use crate::control::view::{Explain, IntentView, Status, TenantView};
use crate::leadtime::{Outcome, Rise, RiseCounts, RiseWindows};
use crate::model::{Class, PerResource, Resource};
use crate::plan::{Basis, Binding, Reason};
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::path::Path;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Print the daemon's answer as JSON (amounts in cores, KiB and bytes/s).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The tenant's name or UUID.
    #[arg(value_name = "TENANT")]
    pub tenant: String,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Args, Debug)]
pub struct OverrideArgs {
    #[command(subcommand)]
    pub command: OverrideCommand,
}

#[derive(Subcommand, Debug)]
pub enum OverrideCommand {
    /// Set hard constraints on a tenant's allocation, in force from the next cycle until
    /// cleared or expired (kept in the profile database across restarts).
    ///
    /// Amounts are RESOURCE=VALUE with cpu in cores, mem in MiB, disk and net in bytes/s,
    /// e.g. `--min cpu=2 --max mem=4096`. A new override replaces the tenant's old one.
    Set {
        /// The tenant's name or UUID.
        #[arg(value_name = "TENANT")]
        tenant: String,
        /// Treat the tenant as this class (gold, silver, bronze).
        #[arg(long, value_name = "CLASS")]
        class: Option<Class>,
        /// Never give it less than this (repeatable).
        #[arg(long, value_name = "RESOURCE=VALUE", value_parser = parse_amount)]
        min: Vec<(Resource, f64)>,
        /// Never give it more than this (repeatable).
        #[arg(long, value_name = "RESOURCE=VALUE", value_parser = parse_amount)]
        max: Vec<(Resource, f64)>,
        /// Hold every amount where it is now.
        #[arg(long)]
        freeze: bool,
        /// Expire after this long (e.g. 30m, 2h, 1d; 1 s to 30 days); without it, until
        /// cleared.
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        ttl: Option<f64>,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// List the overrides in force.
    List(ReportArgs),
    /// Remove a tenant's override.
    Clear {
        /// The tenant's name or UUID (also of a tenant that has gone).
        #[arg(value_name = "TENANT")]
        tenant: String,
        #[command(flatten)]
        report: ReportArgs,
    },
}

#[derive(Args, Debug)]
pub struct IntentArgs {
    #[command(subcommand)]
    pub command: IntentCommand,
}

#[derive(Subcommand, Debug)]
pub enum IntentCommand {
    /// Declare a tenant's upcoming demand (say, a batch job at 02:00). The forecaster blends
    /// it in over the window, weighted by how well the tenant's past intents came true.
    ///
    /// Each amount is the tenant's total use of the resource during the window.
    Add {
        /// The tenant's name or UUID.
        #[arg(value_name = "TENANT")]
        tenant: String,
        /// When it starts: `now`, `+10m` (from now), an RFC 3339 time such as
        /// 2026-12-03T14:00:00Z, or Unix seconds.
        #[arg(long, value_name = "TIME")]
        start: String,
        /// How long it lasts (e.g. 45m, 2h; at most 7 days).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        duration: f64,
        /// CPU in cores.
        #[arg(long, value_name = "CORES", value_parser = parse_quantity)]
        cpu: Option<f64>,
        /// Memory in MiB.
        #[arg(long, value_name = "MIB", value_parser = parse_quantity)]
        mem: Option<f64>,
        /// Disk throughput in bytes/s.
        #[arg(long, value_name = "BYTES_PER_S", value_parser = parse_quantity)]
        disk: Option<f64>,
        /// Network throughput in bytes/s.
        #[arg(long, value_name = "BYTES_PER_S", value_parser = parse_quantity)]
        net: Option<f64>,
        /// A note for the record (what the demand is).
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// List the pending intents with their trust.
    List(ReportArgs),
    /// Withdraw a pending intent.
    Cancel {
        /// The intent's id, as `intent add` and `intent list` print it.
        #[arg(value_name = "ID")]
        id: u64,
        #[command(flatten)]
        report: ReportArgs,
    },
}

impl OverrideCommand {
    /// Its `--json` and `--socket`.
    pub fn report(&self) -> &ReportArgs {
        match self {
            OverrideCommand::Set { report, .. }
            | OverrideCommand::Clear { report, .. }
            | OverrideCommand::List(report) => report,
        }
    }
}

impl IntentCommand {
    /// Its `--json` and `--socket`.
    pub fn report(&self) -> &ReportArgs {
        match self {
            IntentCommand::Add { report, .. }
            | IntentCommand::Cancel { report, .. }
            | IntentCommand::List(report) => report,
        }
    }
}

/// The daemon's answer as JSON with `--json`, else `human`.
fn answer(report: &ReportArgs, body: &str, human: impl std::fmt::Display) -> super::CliResult {
    if report.json {
        outln!("{}", body.trim_end())?;
    } else {
        outln!("{human}")?;
    }
    Ok(())
}

/// `RESOURCE=VALUE` in the operator's units, to the pipeline's (mem MiB → KiB is done later).
fn parse_amount(s: &str) -> Result<(Resource, f64), String> {
    let (r, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected RESOURCE=VALUE, e.g. cpu=2 or mem=4096"))?;
    let r = match r.trim() {
        "cpu" => Resource::Cpu,
        "mem" => Resource::Mem,
        "disk" => Resource::Disk,
        "net" => Resource::Net,
        other => return Err(format!("{other:?}: expected cpu, mem, disk or net")),
    };
    Ok((r, parse_quantity(v)?))
}

/// An amount: a finite number ≥ 0.
fn parse_quantity(v: &str) -> Result<f64, String> {
    let v: f64 = v
        .trim()
        .parse()
        .map_err(|_| format!("{v:?} is not a number"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{v} is not a finite number ≥ 0"));
    }
    Ok(v)
}

fn parse_duration(s: &str) -> Result<f64, String> {
    humantime::parse_duration(s)
        .map(|d| d.as_secs_f64())
        .map_err(|e| format!("{s:?}: {e} (e.g. 90s, 30m, 2h)"))
}

/// An override's time to live: a duration of 1 s to 30 days.
fn parse_ttl(s: &str) -> Result<f64, String> {
    let ttl = parse_duration(s)?;
    if !(1.0..=crate::allocate::overrides::MAX_TTL_S).contains(&ttl) {
        return Err(format!("{s:?} is not between 1s and 30 days"));
    }
    Ok(ttl)
}

/// A start time: `now`, `+DURATION`, RFC 3339, or Unix seconds.
fn parse_start(s: &str, now_s: i64) -> Result<i64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_s);
    }
    if let Some(d) = s.strip_prefix('+') {
        return Ok(now_s + parse_duration(d)? as i64);
    }
    if let Ok(t) = s.parse::<i64>() {
        return Ok(t);
    }
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| {
            format!("--start {s:?}: {e} (use now, +10m, 2026-12-03T14:00:00Z or Unix seconds)")
        })
        .map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        })
}

/// The amounts of a repeatable `--FLAG RESOURCE=VALUE`; a resource given twice is refused.
fn quantities(flag: &str, list: &[(Resource, f64)]) -> Result<Quantities, String> {
    let mut q = Quantities::default();
    for (r, v) in list {
        let slot = match r {
            Resource::Cpu => &mut q.cpu_cores,
            Resource::Mem => &mut q.mem_mib,
            Resource::Disk => &mut q.disk_bytes_per_s,
            Resource::Net => &mut q.net_bytes_per_s,
        };
        if let Some(was) = slot.replace(*v) {
            return Err(format!(
                "{flag} {r} is given twice ({r}={was} and {r}={v}): give it once"
            ));
        }
    }
    Ok(q)
}

/// A value in the pipeline's unit of `r`, for people.
pub fn show(r: Resource, v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.is_infinite() => "∞".into(),
        Some(v) => match r {
            Resource::Cpu => format!("{v:.2}"),
            Resource::Mem => format!("{:.0}Mi", v / 1024.0),
            Resource::Disk | Resource::Net => format!("{:.2}M", v / 1e6),
        },
    }
}

/// An allocation as it is enforced: `unlimited` where None (no known capacity, no limit).
fn show_allocation(r: Resource, a: Option<&PerResource<Option<f64>>>) -> String {
    match a.map(|a| *a.get(r)) {
        None => "-".into(),
        Some(None) => "unlimited".into(),
        Some(v) => show(r, v),
    }
}

/// How many coming buckets `explain` lists.
const EXPLAIN_STEPS: usize = 12;

fn units_line() -> &'static str {
    "(cpu in cores, mem in MiB, disk and net in MB/s)"
}

pub fn status(socket: &Path, a: ReportArgs) -> super::CliResult {
    let body = call(socket, "GET", "/v1/status", None)?;
    if a.json {
        outln!("{}", body.trim_end())?;
        return Ok(());
    }
    let s: Status = serde_json::from_str(&body)?;
    out!("{}", render_status(&s))?;
    Ok(())
}

fn render_status(s: &Status) -> String {
    let mut o = String::new();
    let up = ((s.at_unix_ms - s.started_unix_ms).max(0) / 1000) as u64;
    let _ = writeln!(
        o,
        "prescient {} on {}: up {}, {} cycles every {} s",
        s.version,
        s.backend,
        humantime::format_duration(std::time::Duration::from_secs(up)),
        s.cycles,
        s.interval_s
    );
    let _ = writeln!(
        o,
        "policy:      {}{}",
        s.policy
            .as_deref()
            .unwrap_or("none (observing and forecasting only)"),
        match (&s.policy, s.paused) {
            (Some(_), true) => " — PAUSED: decided and logged, not applied",
            (Some(_), false) => " — applied",
            _ => "",
        }
    );
    if let Some(f) = &s.policy_file {
        let _ = writeln!(o, "policy file: {f}");
    }
    match &s.last_cycle {
        Some(c) => {
            let _ = writeln!(
                o,
                "last cycle:  {}, took {:.3} s (policy {:.3} s){}",
                utc(c.at_unix_ms),
                c.duration_s,
                c.decide_s,
                c.error
                    .as_ref()
                    .map(|e| format!(" — FAILED: {e}"))
                    .unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(o, "last cycle:  none yet");
        }
    }
    if let Some(h) = &s.host {
        let _ = writeln!(
            o,
            "host:        {}, {} CPUs, {:.1} GiB; the tenants may have cpu {}, mem {}, disk {}, net {}",
            h.hostname,
            h.cpus,
            h.memory_kib as f64 / 1024.0 / 1024.0,
            show(Resource::Cpu, h.capacity.cpu),
            show(Resource::Mem, h.capacity.mem),
            show(Resource::Disk, h.capacity.disk),
            show(Resource::Net, h.capacity.net),
        );
    }
    if let (Some(short), Some(h)) = (&s.capacity_short, &s.host) {
        let cells: Vec<String> = (Resource::ALL.iter())
            .map(|&r| {
                let state = if h.capacity.get(r).is_none() {
                    "unknown (held only at limits)"
                } else if *short.get(r) {
                    "SHORT"
                } else {
                    "ample"
                };
                match &s.shadow_prices {
                    Some(p) if h.capacity.get(r).is_some() && *p.get(r) > 0.0 => {
                        format!("{r} {state} (λ {:.3})", p.get(r))
                    }
                    _ => format!("{r} {state}"),
                }
            })
            .collect();
        let _ = writeln!(o, "capacity:    {}", cells.join(", "));
    }
    for r in Resource::ALL {
        if *s.reservations_unmet.get(r) {
            let _ = writeln!(
                o,
                "WARNING:     the {r} reservations ({}) exceed what the tenants may have ({}): \
                 the lowest classes' are squeezed; lower a minimum (`prescient override \
                 list`), a class's reservation or the host reserve",
                show(r, Some(*s.reserved.get(r))),
                show(r, s.host.as_ref().and_then(|h| *h.capacity.get(r))),
            );
        }
    }
    let d = &s.denials_total;
    let _ = writeln!(
        o,
        "tenants {}, overrides {}, pending intents {}; refused changes: cpu {}, mem {}, disk {}, net {}; failed cycles {}",
        s.tenants, s.overrides, s.intents, d.cpu, d.mem, d.disk, d.net, s.cycle_errors_total
    );
    let _ = writeln!(
        o,
        "rises in usage, ahead / late / not covered, over the last hour and the last day:"
    );
    for r in Resource::ALL {
        let w = s.rises.get(r);
        let _ = writeln!(
            o,
            "  {:<4}  hour {:>13}  day {:>13}{}",
            r.name(),
            rise_counts(&w.hour),
            rise_counts(&w.day),
            share_ahead(&w.day)
        );
    }
    o
}

/// Rise counts as `ahead / late / not covered`.
fn rise_counts(c: &RiseCounts) -> String {
    format!("{} / {} / {}", c.ahead, c.late, c.not_covered)
}

/// `  (80% ahead)` for counts with any rise, else nothing.
fn share_ahead(c: &RiseCounts) -> String {
    let n = c.ahead + c.late + c.not_covered;
    if n == 0 {
        return String::new();
    }
    format!("  ({:.0}% ahead)", 100.0 * c.ahead as f64 / n as f64)
}

/// A tenant's rises of `r` and its last one, for `explain`.
fn describe_rises(o: &mut String, r: Resource, w: &RiseWindows, last: Option<&Rise>) {
    let _ = writeln!(
        o,
        "  rises in usage (ahead / late / not covered): last hour {}, last day {}",
        rise_counts(&w.hour),
        rise_counts(&w.day)
    );
    if let Some(x) = last {
        let outcome = match (x.outcome, x.late_s) {
            (Outcome::Ahead, _) => "ahead: what was in force covered it".to_string(),
            (Outcome::Late, Some(s)) => format!("late: covered {s:.0} s after it started"),
            (Outcome::Late, None) => "late".to_string(),
            (Outcome::NotCovered, _) => "not covered: capped until it ended".to_string(),
        };
        let _ = writeln!(
            o,
            "  last rise {} to {} with {} in force: {outcome}",
            utc(x.start_ms),
            show(r, Some(x.level)),
            x.in_force
                .map_or("no limit".to_string(), |f| show(r, Some(f)))
        );
    }
}

pub fn tenants(socket: &Path, a: ReportArgs) -> super::CliResult {
    let body = call(socket, "GET", "/v1/tenants", None)?;
    if a.json {
        outln!("{}", body.trim_end())?;
        return Ok(());
    }
    let list: Vec<TenantView> = serde_json::from_str(&body)?;
    out!("{}", render_tenants(&list))?;
    Ok(())
}

fn render_tenants(list: &[TenantView]) -> String {
    let mut o = String::new();
    // As wide as the longest name (escaped, with its override mark, in terminal columns),
    // so the columns line up.
    let w = (list
        .iter()
        .map(|t| unicode_width::UnicodeWidthStr::width(&*cell(&t.name)) + 1))
    .max()
    .map_or(20, |n| n.max(20));
    let _ = writeln!(
        o,
        "{} {:<7} {:<4} {:>9} {:>9} {:>9} {:>9} {:>9}  BOUND BY",
        pad("TENANT", w),
        "CLASS",
        "RES",
        "NOW",
        "P50",
        "P95",
        "ALLOC",
        "IN FORCE"
    );
    let mut list: Vec<&TenantView> = list.iter().collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    for t in list {
        for r in Resource::ALL {
            let (name, class) = if r == Resource::Cpu {
                let mark = if t.overridden { "*" } else { "" };
                (format!("{}{mark}", cell(&t.name)), t.class.name())
            } else {
                (String::new(), "")
            };
            let f = t.forecast.as_ref().map(|f| *f.get(r));
            let _ = writeln!(
                o,
                "{} {:<7} {:<4} {:>9} {:>9} {:>9} {:>9} {:>9}  {}",
                pad(&name, w),
                class,
                r.name(),
                show(r, *t.usage.get(r)),
                show(r, f.map(|b| b.p50)),
                show(r, f.map(|b| b.p95)),
                show_allocation(r, t.allocation.as_ref()),
                show(r, *t.in_force.get(r)),
                t.binding
                    .map(|b| format!("{:?}", b.get(r)).to_lowercase())
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    let _ = writeln!(o, "{} * an override holds", units_line());
    o
}

pub fn explain(socket: &Path, a: ExplainArgs) -> super::CliResult {
    let path = format!("/v1/tenants/{}/explain", percent_encode(&a.tenant));
    let body = call(socket, "GET", &path, None)?;
    if a.report.json {
        outln!("{}", body.trim_end())?;
        return Ok(());
    }
    let e: Explain = serde_json::from_str(&body)?;
    out!("{}", render_explain(&e))?;
    Ok(())
}

fn render_explain(e: &Explain) -> String {
    let mut o = String::new();
    let t = &e.tenant;
    let _ = writeln!(o, "{} ({}), class {}", cell(&t.name), t.uuid, t.class);
    for r in Resource::ALL {
        let _ = writeln!(o, "\n{r}:");
        let f = t.forecast.as_ref().map(|f| *f.get(r));
        let _ = writeln!(
            o,
            "  used {} last interval{}; coming bucket forecast p50 {}, p90 {}, p95 {}, p99 {}",
            show(r, *t.usage.get(r)),
            if *t.capped.get(r) {
                " (capped: it wanted more)"
            } else {
                ""
            },
            show(r, f.map(|b| b.p50)),
            show(r, f.map(|b| b.p90)),
            show(r, f.map(|b| b.p95)),
            show(r, f.map(|b| b.p99)),
        );
        let w = e.weights.get(r);
        if !w.is_empty() {
            let list: Vec<String> = (w.iter())
                .map(|m| format!("{} {:.0}%", m.model, m.weight * 100.0))
                .collect();
            let _ = writeln!(o, "  models: {}", list.join(", "));
        }
        let (lo, hi) = e.bounds.get(r);
        let _ = writeln!(
            o,
            "  held within {} … {}{}",
            show(r, Some(*lo)),
            show(r, Some(hi.unwrap_or(f64::INFINITY))),
            match &e.override_ {
                Some(ov) if ov.min.get(r).is_some() || ov.max.get(r).is_some() || ov.freeze =>
                    " (an operator's override)",
                _ => "",
            }
        );
        match (
            t.allocation.map(|a| *a.get(r)),
            e.reasons.map(|x| *x.get(r)),
        ) {
            (Some(a), _) if !e.capacity_known.get(r) => {
                let _ = writeln!(
                    o,
                    "  the host's {r} capacity is unknown (libvirt reports none): nothing to \
                     share, so the tenant is throttled only at its limit: allocated {}; in \
                     force {}",
                    a.map_or("unlimited".to_string(), |a| show(r, Some(a))),
                    show(r, *t.in_force.get(r))
                );
            }
            (Some(a), Some(reason)) => {
                let _ = writeln!(
                    o,
                    "  allocated {} ({}); in force {}",
                    a.map_or("unlimited".to_string(), |a| show(r, Some(a))),
                    describe_reason(&reason),
                    show(r, *t.in_force.get(r))
                );
            }
            (Some(a), None) => {
                let _ = writeln!(
                    o,
                    "  allocated {} by the policy's rule (no reasons recorded); in force {}",
                    a.map_or("unlimited".to_string(), |a| show(r, Some(a))),
                    show(r, *t.in_force.get(r))
                );
            }
            _ => {
                let _ = writeln!(o, "  not allocated (the daemon runs no policy)");
            }
        }
        describe_rises(&mut o, r, e.rises.get(r), e.last_rises.get(r).as_ref());
    }
    if !e.steps.is_empty() {
        let _ = writeln!(o, "\ncoming buckets (p50 … p95):");
        for s in e.steps.iter().take(EXPLAIN_STEPS) {
            let cells: Vec<String> = (Resource::ALL.iter())
                .map(|r| {
                    let b = s.band.get(*r);
                    format!("{r} {}…{}", show(*r, Some(b.p50)), show(*r, Some(b.p95)))
                })
                .collect();
            let _ = writeln!(o, "  {}  {}", utc(s.start_unix_s * 1000), cells.join("  "));
        }
    }
    if let Some(ov) = &e.override_ {
        let _ = writeln!(o, "\noverride: {}", describe_override(ov));
    }
    if !e.intents.is_empty() {
        let _ = writeln!(o, "\nintents:");
        for i in &e.intents {
            let _ = writeln!(o, "  {}", describe_intent(i));
        }
    }
    if !e.denials.is_empty() {
        let _ = writeln!(o, "\nrecent refusals:");
        for d in &e.denials {
            let r = d.resource.unwrap_or(Resource::Cpu);
            let _ = writeln!(
                o,
                "  {} {r}: wanted {}, got {}: {}",
                utc(d.at_unix_ms),
                show(r, Some(d.wanted)),
                show(r, d.got),
                d.message
            );
        }
    }
    let _ = writeln!(o, "\n{}", units_line());
    o
}

/// What a tenant's amount of one resource started from and what bound it.
fn describe_reason(reason: &Reason) -> String {
    let from = match reason.basis {
        Some(Basis::Forecast) => "from its class's quantile of the forecast",
        Some(Basis::Usage) => "no forecast yet: from its last usage plus a margin",
        Some(Basis::Share) => {
            "nothing known of it yet: its static share of the host (class weight × size)"
        }
        Some(Basis::Rule) => "from the policy's rule on the usage it observed",
        None if reason.forecast_p50.is_some() => "from its class's quantile of the forecast",
        None => "from the policy's rule",
    };
    let bound = match reason.binding {
        Binding::None => "nothing bound".to_string(),
        Binding::Reservation => "held up at its reservation".into(),
        Binding::Floor => "held up by the policy's own floor (a share of its static share, or \
                           a probe above a capped interval)"
            .into(),
        Binding::Limit => "held down at its limit".into(),
        Binding::Size => "held down at the domain's size (its vCPUs or maximum memory)".into(),
        Binding::Capacity if reason.lambda > 0.0 => format!(
            "held down by the host's capacity, which is short (price λ = {:.3})",
            reason.lambda
        ),
        Binding::Capacity => "held down by the host's capacity, which is short".into(),
    };
    let mut s = format!("{from}; {bound}");
    if reason.basis != Some(Basis::Rule) && reason.basis != Some(Basis::Share) {
        let _ = write!(s, "; learned sensitivity {:.2}", reason.sensitivity);
    }
    s
}

fn describe_override(o: &Override) -> String {
    let mut parts = Vec::new();
    if let Some(c) = o.class {
        parts.push(format!("class {c}"));
    }
    for r in Resource::ALL {
        if let Some(v) = *o.min.get(r) {
            parts.push(format!("min {r} {}", show(r, Some(v))));
        }
        if let Some(v) = *o.max.get(r) {
            parts.push(format!("max {r} {}", show(r, Some(v))));
        }
    }
    if o.freeze {
        parts.push("frozen".into());
    }
    let until = match o.expires_ms {
        Some(t) => format!("until {}", utc(t)),
        None => "until cleared".into(),
    };
    format!(
        "{}: {}; set by {} at {}, {until}",
        cell(&o.name),
        parts.join(", "),
        o.set_by,
        utc(o.set_ms)
    )
}

fn describe_intent(i: &IntentView) -> String {
    let r = i.resource.unwrap_or(Resource::Cpu);
    format!(
        "#{} {} {r} {} from {} for {} (trust {:.2}){}",
        i.id,
        cell(&i.tenant),
        show(r, Some(i.amount)),
        utc(i.start_unix_s * 1000),
        humantime::format_duration(std::time::Duration::from_secs(i.duration_s.max(0) as u64)),
        i.trust,
        i.note
            .as_ref()
            .map(|n| format!(": {}", cell(n)))
            .unwrap_or_default()
    )
}

pub fn overrides(socket: &Path, a: OverrideArgs) -> super::CliResult {
    match a.command {
        OverrideCommand::Set {
            tenant,
            class,
            min,
            max,
            freeze,
            ttl,
            report,
        } => {
            let spec = OverrideSpec {
                class,
                min: quantities("--min", &min)?,
                max: quantities("--max", &max)?,
                freeze,
                ttl_seconds: ttl,
            };
            let path = format!("/v1/overrides/{}", percent_encode(&tenant));
            let body = call(socket, "PUT", &path, Some(&serde_json::to_value(&spec)?))?;
            let human = format!("override set on {tenant}; in force from the next cycle");
            answer(&report, &body, human)?;
        }
        OverrideCommand::Clear { tenant, report } => {
            let path = format!("/v1/overrides/{}", percent_encode(&tenant));
            let body = call(socket, "DELETE", &path, None)?;
            answer(&report, &body, format!("override on {tenant} cleared"))?;
        }
        OverrideCommand::List(r) => {
            let body = call(socket, "GET", "/v1/overrides", None)?;
            if r.json {
                outln!("{}", body.trim_end())?;
            } else {
                let list: Vec<Override> = serde_json::from_str(&body)?;
                if list.is_empty() {
                    outln!("no overrides")?;
                }
                for o in &list {
                    outln!("{}", describe_override(o))?;
                }
            }
        }
    }
    Ok(())
}

pub fn intents(socket: &Path, a: IntentArgs) -> super::CliResult {
    match a.command {
        IntentCommand::Add {
            tenant,
            start,
            duration,
            cpu,
            mem,
            disk,
            net,
            note,
            report,
        } => {
            let now_s = crate::model::now_unix_ms() / 1000;
            let spec = IntentSpec {
                tenant: tenant.clone(),
                start_unix_s: parse_start(&start, now_s)?,
                duration_s: duration.round() as i64,
                demand: Quantities {
                    cpu_cores: cpu,
                    mem_mib: mem,
                    disk_bytes_per_s: disk,
                    net_bytes_per_s: net,
                },
                note,
            };
            if spec.demand.is_empty() {
                return Err("intent add: give at least one of --cpu, --mem, --disk, --net".into());
            }
            let body = call(
                socket,
                "POST",
                "/v1/intents",
                Some(&serde_json::to_value(&spec)?),
            )?;
            if report.json {
                outln!("{}", body.trim_end())?;
            } else {
                let v: serde_json::Value = serde_json::from_str(&body)?;
                outln!("intent declared for {tenant}: ids {}", v["ids"])?;
            }
        }
        IntentCommand::Cancel { id, report } => {
            let body = call(socket, "DELETE", &format!("/v1/intents/{id}"), None)?;
            answer(&report, &body, format!("intent {id} cancelled"))?;
        }
        IntentCommand::List(r) => {
            let body = call(socket, "GET", "/v1/intents", None)?;
            if r.json {
                outln!("{}", body.trim_end())?;
            } else {
                let list: Vec<IntentView> = serde_json::from_str(&body)?;
                if list.is_empty() {
                    outln!("no pending intents")?;
                }
                for i in &list {
                    outln!("{}", describe_intent(i))?;
                }
            }
        }
    }
    Ok(())
}

/// `pause` (true) or `resume`.
pub fn pause(socket: &Path, pause: bool, a: ReportArgs) -> super::CliResult {
    let path = if pause { "/v1/pause" } else { "/v1/resume" };
    let body = call(socket, "POST", path, None)?;
    let human = if pause {
        "paused: allocations are decided and logged, no domain setting is changed"
    } else {
        "resumed: allocations are applied from the next cycle"
    };
    answer(&a, &body, human)
}

/// `policy reload`.
pub fn reload(socket: &Path, a: ReportArgs) -> super::CliResult {
    let body = call(socket, "POST", "/v1/policy/reload", None)?;
    answer(
        &a,
        &body,
        "policy file reread; in force from the next cycle",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_times_parse_as_documented() {
        assert_eq!(parse_amount("cpu=2"), Ok((Resource::Cpu, 2.0)));
        assert_eq!(parse_amount("mem = 4096"), Ok((Resource::Mem, 4096.0)));
        assert!(parse_amount("gpu=1").unwrap_err().contains("cpu, mem"));
        assert!(parse_amount("cpu=-1").is_err());
        assert!(parse_amount("cpu").is_err());
        assert!(parse_amount("cpu=NaN").unwrap_err().contains("finite"));
        use clap::Parser;
        let nan = super::super::Cli::try_parse_from([
            "prescient",
            "intent",
            "add",
            "db",
            "--start",
            "now",
            "--duration",
            "1h",
            "--cpu",
            "NaN",
        ])
        .unwrap_err()
        .to_string();
        assert!(nan.contains("--cpu") && nan.contains("finite"), "{nan}");
        assert_eq!(parse_start("now", 1000), Ok(1000));
        assert_eq!(parse_start("+10m", 1000), Ok(1600));
        assert_eq!(parse_start("1700000000", 0), Ok(1_700_000_000));
        assert_eq!(parse_start("2026-12-03T14:00:00Z", 0), Ok(1_796_306_400));
        assert!(parse_start("tomorrow", 0).is_err());
        assert_eq!(parse_duration("2h"), Ok(7200.0));
    }

    #[test]
    fn status_and_explain_show_the_rises_ahead_late_and_not_covered() {
        let mut s = Status::default();
        s.rises.cpu.hour = RiseCounts {
            ahead: 3,
            late: 1,
            not_covered: 0,
        };
        s.rises.cpu.day = RiseCounts {
            ahead: 8,
            late: 1,
            not_covered: 1,
        };
        let text = render_status(&s);
        assert!(
            text.contains(
                "rises in usage, ahead / late / not covered, over the last hour and the last day:\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  cpu   hour     3 / 1 / 0  day     8 / 1 / 1  (80% ahead)\n"),
            "{text}"
        );
        assert!(
            text.contains("  net   hour     0 / 0 / 0  day     0 / 0 / 0\n"),
            "{text}"
        );
        let mut e = Explain::default();
        e.rises.cpu.day.late = 1;
        e.last_rises.cpu = Some(Rise {
            uuid: "u1".into(),
            resource: Resource::Cpu,
            start_ms: 1_796_306_400_000,
            level: 0.98,
            in_force: Some(0.31),
            outcome: Outcome::Late,
            late_s: Some(10.0),
            end_ms: 1_796_306_420_000,
        });
        e.last_rises.mem = Some(Rise {
            resource: Resource::Mem,
            level: 2048.0 * 1024.0,
            in_force: None,
            outcome: Outcome::Ahead,
            late_s: None,
            ..e.last_rises.cpu.clone().unwrap()
        });
        let text = render_explain(&e);
        assert!(
            text.contains(
                "  rises in usage (ahead / late / not covered): last hour 0 / 0 / 0, last day 0 / 1 / 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "  last rise {} to 0.98 with 0.31 in force: late: covered 10 s after it started\n",
                utc(1_796_306_400_000)
            )),
            "{text}"
        );
        assert!(
            text.contains(
                "to 2048Mi with no limit in force: ahead: what was in force covered it\n"
            ),
            "{text}"
        );
    }
}
