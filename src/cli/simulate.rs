use crate::backend::trace::HostModel;
use crate::model::STEP_S;
use crate::model::{Resource, count};
use crate::sim::metrics::{Metrics, Report};
use crate::sim::replay::Replay;
use crate::sim::{self, classes};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Directory of per-VM trace files in the GWA-T-12 layout (`N.csv` or `N.csv.gz`).
    #[arg(long, value_name = "DIR")]
    pub trace: PathBuf,
    /// Policies to replay, comma-separated: static, reactive, vpa, nsigma, prescient, oracle,
    /// or `all`.
    #[arg(long, value_name = "LIST", default_value = "reactive")]
    pub policy: String,
    /// Each policy's aggressiveness: reactive's margin (default 0.2), vpa's percentile (0.9),
    /// nsigma's n (5), prescient's price of slack c (0.05; lower gives more). Applies to the
    /// listed policies that have a knob.
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub knob: Option<f64>,
    /// Run each policy over a range of knob values and report its shortfall-versus-slack
    /// frontier.
    #[arg(long, conflicts_with = "knob")]
    pub sweep: bool,
    /// Host capacity per resource = F × the 99th percentile over time of the tenants' summed
    /// demand.
    #[arg(
        long,
        value_name = "F",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub capacity_fraction: f64,
    /// Tenant classes: shares such as `gold=0.2,silver=0.5,bronze=0.3` (drawn with --seed),
    /// or a file of `NAME CLASS` lines.
    #[arg(
        long,
        value_name = "SPEC|FILE",
        default_value = "gold=0.2,silver=0.5,bronze=0.3"
    )]
    pub classes: String,
    /// reactive's growth after an interval in which a tenant ran into its allocation: the
    /// next request is × this much more (1 turns the growth off).
    #[arg(
        long,
        value_name = "G",
        default_value_t = crate::allocate::baselines::Reactive::DEFAULT_CAP_GROWTH,
        allow_negative_numbers = true
    )]
    pub cap_growth: f64,
    /// prescient without its feedback: every tenant's sensitivity stays 1 instead of being
    /// learned from how often it runs into its allocation.
    #[arg(long)]
    pub no_feedback: bool,
    /// The operator's policy file (classes' weights, reservations, limits and targets, the
    /// host's reserve), as the daemon reads it; see `prescient policy validate --help`.
    /// Without one, the defaults: weights 4 / 2 / 1 and nothing else. The figures are
    /// always weighted 4 / 2 / 1, whatever weights the file gives.
    #[arg(long, value_name = "FILE")]
    pub policy_file: Option<PathBuf>,
    /// Seed of the class draw.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Replay only the first D days.
    #[arg(long, value_name = "D", allow_negative_numbers = true)]
    pub days: Option<f64>,
    /// How fast the balloon takes memory back, GiB/s.
    #[arg(
        long,
        value_name = "GIB_PER_S",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub balloon_speed: f64,
    /// Leave out trace files with malformed rows (each is reported) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Print JSON (an object for one run, a list for several) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Draw the policies' shortfall-versus-slack points (frontiers with --sweep) into an SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

fn bar(len: u64, what: &str, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:>28} [{bar:40}] {pos}/{len} ({eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_message(what.to_string());
    b
}

pub fn run(a: SimulateArgs) -> super::CliResult {
    let policies: Vec<String> = if a.policy.trim() == "all" {
        sim::POLICIES.iter().map(|p| p.to_string()).collect()
    } else {
        a.policy
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    };
    if policies.is_empty() {
        return Err("--policy: no policy given".into());
    }
    for p in &policies {
        if !sim::POLICIES.contains(&p.as_str()) {
            return Err(sim::SimError::UnknownPolicy(p.clone()).into());
        }
    }
    if a.knob.is_some() && policies.iter().all(|p| sim::knob_help(p).is_none()) {
        return Err(format!("--knob: none of {} has a knob", policies.join(", ")).into());
    }
    if !(a.capacity_fraction.is_finite() && a.capacity_fraction > 0.0) {
        return Err(format!("--capacity-fraction {} must be > 0", a.capacity_fraction).into());
    }
    if !(a.cap_growth.is_finite() && (1.0..=100.0).contains(&a.cap_growth)) {
        return Err(format!("--cap-growth {} must be in 1 … 100", a.cap_growth).into());
    }
    if !(a.balloon_speed.is_finite() && a.balloon_speed > 0.0) {
        return Err(format!("--balloon-speed {} must be > 0", a.balloon_speed).into());
    }
    if let Some(d) = a.days
        && !(d.is_finite() && d > 0.0)
    {
        return Err(format!("--days {d} must be > 0").into());
    }
    let rules = match &a.policy_file {
        Some(path) => crate::allocate::rules::Rules::load(path)?,
        None => crate::allocate::rules::Rules::default(),
    };
    let quiet = a.json;

    let files = crate::trace::list_dir(&a.trace)?;
    let reading = bar(files.len() as u64, "reading traces", quiet);
    let (traces, skipped) =
        crate::trace::read_dir(&a.trace, a.skip_bad, |i, _| reading.set_position(i as u64))?;
    reading.finish_and_clear();
    for e in &skipped {
        errln!("prescient: skipped: {e}");
    }
    let max_steps = a
        .days
        .map(|d| (d * 86_400.0 / STEP_S as f64).round() as usize);
    let replay = Arc::new(Replay::align(&traces, max_steps));
    if replay.tenant_intervals() == 0 {
        return Err(sim::SimError::NoData {
            dir: a.trace.clone(),
            files: traces.len(),
            skipped: skipped.len(),
        }
        .into());
    }
    drop(traces);
    let names: Vec<String> = replay.tenants.iter().map(|t| t.name.clone()).collect();
    let classes = if a.classes.contains('=') {
        classes::assign(names.len(), &classes::parse_ratios(&a.classes)?, a.seed)
    } else {
        classes::read_file(std::path::Path::new(&a.classes), &names)?
    };
    let host = HostModel::sized(
        &replay,
        a.capacity_fraction,
        a.balloon_speed * 1024.0 * 1024.0,
    );

    let tuning = sim::Tuning {
        reactive_cap_growth: a.cap_growth,
        prescient_feedback: !a.no_feedback,
    };
    let runs: Vec<(String, Option<f64>)> = policies
        .iter()
        .flat_map(|p| {
            let knobs = if a.sweep {
                sim::sweep_values(p)
            } else {
                vec![a.knob.filter(|_| sim::knob_help(p).is_some())]
            };
            knobs.into_iter().map(move |k| (p.clone(), k))
        })
        .collect();
    let scenario = sim::Scenario {
        replay: &replay,
        classes: &classes,
        host,
        tuning,
        rules: &rules,
    };
    let progress = bar((runs.len() * replay.steps) as u64, "", quiet);
    let mut reports = Vec::new();
    for (i, (p, k)) in runs.iter().enumerate() {
        progress.set_message(match k {
            Some(k) => format!("{p} (knob {k})"),
            None => p.clone(),
        });
        let base = (i * replay.steps) as u64;
        let report = sim::run(&scenario, p, *k, &mut |s| {
            if s % 64 == 0 {
                progress.set_position(base + s as u64);
            }
        })?;
        reports.push(report);
    }
    progress.finish_and_clear();

    if let Some(path) = &a.plot {
        sim::plot::frontiers(path, &reports)?;
    }
    let setup = Setup {
        tenants: replay.tenants.len(),
        present_at_end: replay.present(replay.steps.saturating_sub(1)),
        intervals: replay.steps,
        interval_s: STEP_S,
        capacity_fraction: a.capacity_fraction,
        capacity: host.capacity,
        capacity_units: "cpu MHz, mem KiB, disk and net KiB/s (the traces' units)",
        reactive_cap_growth: a.cap_growth,
        prescient_feedback: !a.no_feedback,
        policy_file: a.policy_file.clone(),
        files_skipped: skipped.len(),
    };
    if a.json {
        let runs: Vec<Run> = reports
            .iter()
            .map(|report| Run {
                report,
                setup: &setup,
            })
            .collect();
        if runs.len() == 1 {
            outln!("{}", serde_json::to_string(&runs[0])?)?;
        } else {
            outln!("{}", serde_json::to_string(&runs)?)?;
        }
    } else {
        outln!(
            "{} ({} present at the end), {} of {} s, capacity {:.2} × p99 of total demand{}",
            count(setup.tenants, "tenant"),
            setup.present_at_end,
            count(setup.intervals, "interval"),
            setup.interval_s,
            setup.capacity_fraction,
            if skipped.is_empty() {
                String::new()
            } else {
                format!(", {} skipped", count(skipped.len(), "file"))
            }
        )?;
        if a.sweep {
            out!("{}", render_frontier(&reports))?;
        } else {
            out!("{}", render(&reports))?;
        }
        if let Some(p) = &a.plot {
            outln!("plot: {}", p.display())?;
        }
    }
    Ok(())
}

/// What was replayed: the facts the table's first line gives, for `--json`.
#[derive(Debug, serde::Serialize)]
struct Setup {
    tenants: usize,
    present_at_end: usize,
    intervals: usize,
    interval_s: i64,
    capacity_fraction: f64,
    capacity: crate::model::PerResource<f64>,
    capacity_units: &'static str,
    reactive_cap_growth: f64,
    prescient_feedback: bool,
    policy_file: Option<PathBuf>,
    files_skipped: usize,
}

/// One run as `--json` prints it: the report's fields, and the setup beside them.
#[derive(serde::Serialize)]
struct Run<'a> {
    #[serde(flatten)]
    report: &'a Report,
    setup: &'a Setup,
}

fn rate(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

/// The metric columns' header, shared by both tables.
const METRIC_HEADER: &str = "shortfall  weighted   slack   viol_g   viol_s   viol_b chg/t·day";

/// One line's metric columns.
fn cells(m: &Metrics) -> String {
    format!(
        "{:>9.4} {:>9.4} {:>7.4} {:>8} {:>8} {:>8} {:>9.2}",
        m.shortfall,
        m.weighted_shortfall,
        m.slack,
        rate(m.violation_rate.gold),
        rate(m.violation_rate.silver),
        rate(m.violation_rate.bronze),
        m.changes_per_tenant_day
    )
}

/// A sweep's frontier for people: one line per run, overall figures.
pub fn render_frontier(reports: &[Report]) -> String {
    let mut s = format!("\n{:<9} {:>6} {METRIC_HEADER}\n", "policy", "knob");
    for r in reports {
        let knob = r.knob.map_or("-".into(), |k| k.to_string());
        let _ = writeln!(s, "{:<9} {knob:>6} {}", r.policy, cells(&r.overall));
    }
    s
}

/// Tables for people: one block per run.
pub fn render(reports: &[Report]) -> String {
    let mut s = String::new();
    for r in reports {
        let knob = r.knob.map(|k| format!(" (knob {k})")).unwrap_or_default();
        let _ = writeln!(s, "\n{}{knob}", r.policy);
        let _ = writeln!(s, "  {:<8} {METRIC_HEADER}", "resource");
        for res in Resource::ALL {
            let _ = writeln!(s, "  {:<8} {}", res.name(), cells(r.resources.get(res)));
        }
        let _ = writeln!(s, "  {:<8} {}", "overall", cells(&r.overall));
        if let Some(p) = &r.prices {
            let _ = write!(s, "  λ mean (share of intervals short):");
            for res in Resource::ALL {
                let _ = write!(
                    s,
                    " {} {:.3} ({:.0}%)",
                    res.name(),
                    p.mean.get(res),
                    100.0 * p.scarce.get(res)
                );
            }
            let _ = writeln!(s);
        }
        let _ = write!(s, "  rises ahead / late / not covered:");
        for res in Resource::ALL {
            let c = r.rises.get(res);
            let _ = write!(
                s,
                " {} {}/{}/{}",
                res.name(),
                c.ahead,
                c.late,
                c.not_covered
            );
        }
        let _ = writeln!(s);
    }
    s
}
