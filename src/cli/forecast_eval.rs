use crate::forecast::eval::{self, LinkMode, Options};
use crate::forecast::{H, parse_models};
use crate::model::Resource;
use crate::trace;
use clap::Args;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ForecastEvalArgs {
    /// Directory of GWA-T-12 trace files (`N.csv` or `N.csv.gz`).
    #[arg(long, value_name = "DIR")]
    pub trace: PathBuf,
    /// Resources to evaluate.
    #[arg(long, default_value = "cpu,mem,disk,net", value_name = "LIST")]
    pub resources: String,
    /// Horizons to score, in steps (1..=48).
    #[arg(long, default_value = "1,6,12,48", value_name = "LIST")]
    pub horizons: String,
    /// Steps that only train before the first origin.
    #[arg(long, default_value_t = 2016, value_name = "STEPS")]
    pub warmup: usize,
    /// Steps between forecast origins.
    #[arg(long, default_value_t = 12, value_name = "STEPS")]
    pub origin_every: usize,
    /// Candidates (or model families) in the ensemble and the report; `all` by default.
    #[arg(long, default_value = "all", value_name = "LIST")]
    pub models: String,
    /// One JSON object (`{"results":[…],"timing":{…}}`) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Leave out (and count) malformed files instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
    /// Only the first N files (in natural order), for quick iterations.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Files evaluated in parallel.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub jobs: usize,
    /// Companions offered to the AR model's lead-lag links: `none` (each series alone), `own`
    /// (the VM's other resources) or `tenants` (also a leader from another VM, searched daily
    /// over all files aligned by timestamp; reads every file first).
    #[arg(long, value_enum, default_value = "own", value_name = "MODE")]
    pub links: LinkMode,
    /// Also write every series' errors to FILE (CSV: file, resource, model, horizon,
    /// origins, mae, naive_mae, ratio), one row per series, model and horizon: what each
    /// gmrae is the geometric mean of, to find the tenants a model serves badly.
    /// `scripts/forecast-series FILE` summarises it. FILE must not exist yet.
    #[arg(long, value_name = "FILE")]
    pub per_series: Option<PathBuf>,
}

fn list<T>(s: &str, what: &str, f: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| f(x).ok_or_else(|| format!("--{what}: {x:?} is not valid")))
        .collect()
}

pub fn run(a: ForecastEvalArgs) -> super::CliResult {
    let resources = list(&a.resources, "resources", |x| {
        Resource::ALL.into_iter().find(|r| r.name() == x)
    })?;
    let horizons = list(&a.horizons, "horizons", |x| {
        x.parse::<usize>().ok().filter(|k| (1..=H).contains(k))
    })?;
    if resources.is_empty() || horizons.is_empty() || a.origin_every == 0 {
        return Err("--resources and --horizons must not be empty; --origin-every ≥ 1".into());
    }
    let opt = Options {
        resources,
        horizons: horizons.clone(),
        warmup: a.warmup,
        origin_every: a.origin_every,
        enabled: parse_models(&a.models).map_err(|e| format!("--models: {e}"))?,
        skip_bad: a.skip_bad,
        jobs: a.jobs.max(1),
        links: a.links,
        per_series: a.per_series.is_some(),
    };
    let mut files = trace::list_dir(&a.trace)?;
    if let Some(n) = a.limit {
        files.truncate(n);
    }
    // Refuse an existing file before the run, not after it.
    let per_series = match &a.per_series {
        Some(p) => Some((
            p,
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
                .map_err(|e| format!("--per-series {}: {e}", p.display()))?,
        )),
        None => None,
    };
    // A counter that rewrites its line: for a person at a terminal, never in a log or a pipe.
    let show = !a.json && std::io::stderr().is_terminal();
    let progress = move |done: usize, total: usize| {
        if show {
            let mut e = std::io::stderr();
            let _ = write!(e, "\rforecast-eval: {done}/{total} files");
            if done == total {
                let _ = writeln!(e);
            }
        }
    };
    let report = eval::evaluate(&files, &opt, &progress).inspect_err(|_| {
        // Leave no empty file behind for a run that wrote nothing.
        if let Some((p, _)) = &per_series {
            let _ = std::fs::remove_file(p);
        }
    })?;
    if report.results.iter().all(|r| r.series == 0) {
        if let Some((p, _)) = &per_series {
            let _ = std::fs::remove_file(p);
        }
        for b in &report.bad_files {
            errln!("prescient: skipped: {b}");
        }
        return Err(format!(
            "{}: no series could be scored ({} read, {} malformed; a series needs more \
             than --warmup {} steps plus the longest horizon)",
            a.trace.display(),
            crate::model::count(files.len(), "file"),
            report.bad_files.len(),
            a.warmup
        )
        .into());
    }
    if let Some((p, f)) = per_series {
        write_series(f, &report.per_series)
            .map_err(|e| format!("--per-series {}: {e}", p.display()))?;
    }
    for b in &report.bad_files {
        errln!("prescient: skipped: {b}");
    }
    if a.json {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        out!("{}", eval::render(&report, &horizons))?;
    }
    Ok(())
}

/// The `--per-series` CSV: a header, then a line per row.
fn write_series(f: std::fs::File, rows: &[eval::SeriesRow]) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(f);
    writeln!(w, "{}", eval::SeriesRow::CSV_HEADER)?;
    for r in rows {
        writeln!(w, "{}", r.csv())?;
    }
    w.flush()
}
