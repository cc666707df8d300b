//! The `forecast-eval` protocol, on GWA-T-12 traces.
//!
//! Per file and resource: rows sorted by timestamp (duplicates: the last row wins, see
//! [`crate::trace`]), then rows are consecutive steps (gaps ignored). The first `warmup`
//! steps only train. Origins start at step `warmup` and advance every `origin_every` steps
//! while 48 steps remain after the origin; at an origin the forecaster has seen every row up
//! to and including it, and forecasts origin+1 … origin+48. The forecaster runs exactly as
//! in the daemon: one pass, one update per row, forecasts never feed back.
//!
//! Scores per (resource, model, horizon): `gmrae`, the geometric mean over series of
//! MAE_model / MAE_naive (naive = the value at the origin; ratios clipped to [0.001, 1000];
//! series whose naive MAE is negligible against their level, at most [`NEGLIGIBLE`] × the
//! mean |value| at the origins (exact zeros included), are left out and counted: their
//! ratios measure rounding, not forecasting); `pooled`, Σ|err_model| / Σ|err_naive|
//! over all series and origins; `coverage95`, the share of actuals ≤ the p95 forecast;
//! `pinball95`, the geometric mean over series of the mean pinball loss (τ = 0.95) of the p95
//! forecast over that of the naive value taken as the p95 (over the same series as the
//! gmrae). A candidate that cannot forecast
//! at an origin (after the warm-up only when a lag it needs falls into a gap of the trace)
//! is scored as naive there.

use super::history::{COMPANIONS, companion_values, companions_of, present};
use super::leadlag::{Leader, WINDOW, find_leaders};
use crate::model::STEP_S;

/// Slots a day.
const DAY_SLOTS: usize = 288;

/// A series' naive MAE at or under this share of its level (mean |value| at the origins)
/// is negligible: the series is left out of the gmrae and pinball95. The forecaster keeps
/// values as f32 (relative rounding about 1e-7), so on a series that barely moves the
/// ratio to naive would measure that rounding (ratios of 10⁵ were seen), not the forecast.
pub const NEGLIGIBLE: f64 = 1e-5;
use super::{Config, H, SeriesForecaster, candidate_names};
use crate::model::Resource;
use crate::trace::{self, TraceError};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Options {
    pub resources: Vec<Resource>,
    pub horizons: Vec<usize>,
    pub warmup: usize,
    pub origin_every: usize,
    /// Candidates in the ensemble and in the report.
    pub enabled: Vec<bool>,
    pub skip_bad: bool,
    pub jobs: usize,
    /// Which lead-lag links the AR model may use.
    pub links: LinkMode,
    /// Also report every series' errors ([`Report::per_series`]).
    pub per_series: bool,
}

/// The companions each series is given (the AR model keeps a link to one of them only if
/// its lagged correlation holds up, see [`super::models::ar`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LinkMode {
    /// None: every series alone.
    None,
    /// The VM's other resources.
    Own,
    /// Also a leader from another VM whose step changes come before the series', searched
    /// once a day over all files aligned by timestamp, on the two days before.
    Tenants,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            resources: Resource::ALL.to_vec(),
            horizons: vec![1, 6, 12, 48],
            warmup: 2016,
            origin_every: 12,
            enabled: vec![true; candidate_names().len()],
            skip_bad: false,
            jobs: 1,
            links: LinkMode::Own,
            per_series: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    pub resource: Resource,
    pub model: String,
    pub horizon: usize,
    pub gmrae: Option<f64>,
    pub pooled: Option<f64>,
    pub coverage95: Option<f64>,
    pub pinball95: Option<f64>,
    pub series: usize,
    pub skipped: usize,
    /// Of `skipped`, series whose naive MAE is negligible against their level (exact
    /// zeros included), see [`NEGLIGIBLE`].
    pub negligible: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    pub update_ns_per_series_step: f64,
    pub forecast_ns_per_origin: f64,
}

/// How many series ended with a lead-lag link, and from which companion at which lag.
#[derive(Debug, Clone, Serialize)]
pub struct LinkRow {
    pub resource: Resource,
    pub series: usize,
    pub linked: usize,
    /// Linked series per companion resource of the same VM.
    pub from: Vec<(Resource, usize)>,
    /// Linked series whose link is to their leader (another VM).
    pub from_leader: usize,
    /// Series that had a leader on the last day (`--links tenants`).
    pub with_leader: usize,
    /// Linked series per lag (1..=4 steps).
    pub by_lag: Vec<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub results: Vec<ResultRow>,
    pub timing: Timing,
    /// Lead-lag links found (empty with `links: false`).
    pub links: Vec<LinkRow>,
    /// Files left out as malformed (only with `skip_bad`), with the reason.
    #[serde(skip)]
    pub bad_files: Vec<String>,
    /// Series too short for the warm-up and one full horizon, per resource (in `skipped`).
    #[serde(skip)]
    pub short_series: usize,
    /// One row per series, model and horizon (only with [`Options::per_series`]).
    #[serde(skip)]
    pub per_series: Vec<SeriesRow>,
}

/// One series' errors for one model at one horizon: what a gmrae is the geometric mean of.
#[derive(Debug, Clone)]
pub struct SeriesRow {
    pub file: PathBuf,
    pub resource: Resource,
    pub model: &'static str,
    pub horizon: usize,
    pub origins: usize,
    /// Mean absolute error of the model and of the naive forecast over the origins.
    pub mae: f64,
    pub naive_mae: f64,
    /// Mean |value| at the origins.
    pub level: f64,
}

impl SeriesRow {
    pub const CSV_HEADER: &'static str = "file,resource,model,horizon,origins,mae,naive_mae,ratio";

    /// A CSV line (no newline); `ratio` (mae / naive_mae) is empty where naive_mae is
    /// negligible against the level, as such series are left out of the gmrae.
    pub fn csv(&self) -> String {
        let ratio = if scored(self.naive_mae, self.level) {
            format!("{}", self.mae / self.naive_mae)
        } else {
            String::new()
        };
        let file = self.file.display().to_string();
        let file = if file.contains([',', '"', '\n']) {
            format!("\"{}\"", file.replace('"', "\"\""))
        } else {
            file
        };
        format!(
            "{},{},{},{},{},{},{},{}",
            file,
            self.resource,
            self.model,
            self.horizon,
            self.origins,
            self.mae,
            self.naive_mae,
            ratio
        )
    }
}

/// Whether a series whose naive error (a sum or mean) is `naive` against a level of `level`
/// (the same kind of figure) counts in the gmrae: its naive error is not negligible.
pub fn scored(naive: f64, level: f64) -> bool {
    naive > NEGLIGIBLE * level.abs() && naive > 0.0
}

/// One series' sums: per model (candidates, then the ensemble) and horizon.
#[derive(Debug, Clone)]
struct SeriesSums {
    origins: usize,
    /// Σ |value at the origin|.
    level: f64,
    /// The AR model's lead-lag link at the end: (companion index, lag).
    link: Option<(u8, u8)>,
    /// `[(model * horizons) + j]`
    abs: Vec<f64>,
    pin: Vec<f64>,
    covered: Vec<u64>,
    naive_abs: Vec<f64>,
    naive_pin: Vec<f64>,
}

fn pinball(y: f64, q: f64, tau: f64) -> f64 {
    if y >= q {
        tau * (y - q)
    } else {
        (1.0 - tau) * (q - y)
    }
}

struct Work {
    update_ns: u128,
    updates: u64,
    forecast_ns: u128,
    forecasts: u64,
}

/// A series' companion values by row, and the rows where its leader changes.
struct Companions {
    values: Vec<[f64; COMPANIONS]>,
    new_leader: Vec<bool>,
}

/// Tenants mode: every file's values by slot (`ts / 300`), and each series' leader per day.
struct LeaderPlan {
    first_slot: i64,
    /// `[file][resource index][slot − first_slot]`, NaN where absent.
    grid: Vec<Vec<Vec<f32>>>,
    /// `[resource index][day][file]`; day d covers slots from `first_slot + d × 288`.
    leaders: Vec<Vec<Vec<Option<Leader>>>>,
}

impl LeaderPlan {
    /// Read every file and search the leaders day by day, each on the two days before it.
    fn build(files: &[PathBuf], opt: &Options) -> Result<Self, TraceError> {
        let mut traces = Vec::with_capacity(files.len());
        for f in files {
            match trace::read_file(f) {
                Ok(t) => traces.push(Some(t)),
                Err(_) if opt.skip_bad => traces.push(None),
                Err(e) => return Err(e),
            }
        }
        let slot = |ts: i64| ts.div_euclid(STEP_S);
        let rows = traces.iter().flatten().flat_map(|t| &t.rows);
        let (lo, hi) = rows.fold((i64::MAX, i64::MIN), |(lo, hi), r| {
            (lo.min(slot(r.ts)), hi.max(slot(r.ts)))
        });
        let slots = if hi >= lo { (hi - lo + 1) as usize } else { 0 };
        let nr = opt.resources.len();
        let grid: Vec<Vec<Vec<f32>>> = traces
            .iter()
            .map(|t| {
                let mut g = vec![vec![f32::NAN; slots]; nr];
                for row in t.iter().flat_map(|t| &t.rows) {
                    for (ri, &r) in opt.resources.iter().enumerate() {
                        g[ri][(slot(row.ts) - lo) as usize] = row.get(r) as f32;
                    }
                }
                g
            })
            .collect();
        drop(traces);
        let days = slots.div_ceil(DAY_SLOTS);
        let tenant: Vec<usize> = (0..files.len()).collect();
        let jobs: Vec<(usize, usize)> = (0..nr)
            .flat_map(|ri| (WINDOW / DAY_SLOTS..days).map(move |d| (ri, d)))
            .collect();
        let next = AtomicUsize::new(0);
        let leaders = Mutex::new(vec![vec![vec![None; files.len()]; days]; nr]);
        std::thread::scope(|scope| {
            for _ in 0..opt.jobs.max(1) {
                scope.spawn(|| {
                    loop {
                        let j = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(ri, d)) = jobs.get(j) else { break };
                        let end = d * DAY_SLOTS;
                        let window: Vec<Vec<f32>> = grid
                            .iter()
                            .map(|g| g[ri][end - WINDOW..end].to_vec())
                            .collect();
                        let first = lo + (end - WINDOW) as i64;
                        let l = find_leaders(&window, &tenant, first);
                        leaders.lock().unwrap()[ri][d] = l;
                    }
                });
            }
        });
        Ok(LeaderPlan {
            first_slot: lo,
            grid,
            leaders: leaders.into_inner().unwrap(),
        })
    }

    /// File `fi`'s resource `ri` at the rows' timestamps: its leader's value (NaN without
    /// one) and whether the leader at that row differs from the last one it had.
    fn leader_values(&self, fi: usize, ri: usize, ts: &[i64]) -> (Vec<f64>, Vec<bool>) {
        let mut prev = None;
        let mut vals = Vec::with_capacity(ts.len());
        let mut changed = Vec::with_capacity(ts.len());
        for &t in ts {
            let s = (t.div_euclid(STEP_S) - self.first_slot).max(0) as usize;
            let l = self.leaders[ri].get(s / DAY_SLOTS).and_then(|d| d[fi]);
            // A new leader, unlike the last one (even with days without one between).
            let idx = l.map(|l| l.index);
            changed.push(idx.is_some() && prev.is_some() && idx != prev);
            prev = idx.or(prev);
            vals.push(l.map_or(f64::NAN, |l| self.grid[l.index][ri][s] as f64));
        }
        (vals, changed)
    }

    /// Series with a leader on the last day, per resource index.
    fn led(&self, ri: usize) -> usize {
        self.leaders[ri]
            .last()
            .map_or(0, |d| d.iter().flatten().count())
    }
}

/// Run one resource of one trace through a forecaster; None if too short.
fn run_series(
    rows: &[(i64, f64)],
    companions: Option<&Companions>,
    opt: &Options,
    cfg: &Config,
    work: &mut Work,
) -> Result<Option<SeriesSums>, super::ForecastError> {
    let n = rows.len();
    if n < opt.warmup + H + 1 {
        return Ok(None);
    }
    let m = cfg.enabled.len();
    let nh = opt.horizons.len();
    let models = m + 1;
    let mut s = SeriesSums {
        origins: 0,
        level: 0.0,
        link: None,
        abs: vec![0.0; models * nh],
        pin: vec![0.0; models * nh],
        covered: vec![0; models * nh],
        naive_abs: vec![0.0; nh],
        naive_pin: vec![0.0; nh],
    };
    let mut f = SeriesForecaster::new(cfg.clone());
    for (t, &(ts, v)) in rows.iter().enumerate() {
        let t0 = Instant::now();
        if companions.is_some_and(|c| c.new_leader[t]) {
            f.leader_changed();
        }
        f.update_with(ts, v, companions.map(|c| c.values[t]))?;
        work.update_ns += t0.elapsed().as_nanos();
        work.updates += 1;
        if t < opt.warmup || !(t - opt.warmup).is_multiple_of(opt.origin_every) || t + H >= n {
            continue;
        }
        let t0 = Instant::now();
        let d = f.detailed(true);
        work.forecast_ns += t0.elapsed().as_nanos();
        work.forecasts += 1;
        s.origins += 1;
        s.level += v.abs();
        let naive = v;
        for (j, &k) in opt.horizons.iter().enumerate() {
            let y = rows[t + k].1;
            s.naive_abs[j] += (y - naive).abs();
            s.naive_pin[j] += pinball(y, naive, 0.95);
            for c in 0..models {
                if c < m && !cfg.enabled[c] {
                    continue;
                }
                let (p, q) = if c < m {
                    let p = d.candidates[c * H + k - 1];
                    let q = d.candidates_p95[c * H + k - 1];
                    if present(p) && present(q) {
                        (p as f64, q as f64)
                    } else {
                        (naive, naive)
                    }
                } else {
                    (
                        d.ensemble.point[k - 1] as f64,
                        d.ensemble.quantiles[k - 1][2] as f64,
                    )
                };
                s.abs[c * nh + j] += (y - p).abs();
                s.pin[c * nh + j] += pinball(y, q, 0.95);
                s.covered[c * nh + j] += (y <= q) as u64;
            }
        }
    }
    s.link = f.link();
    Ok(Some(s))
}

/// Evaluate every trace file of `files`; `progress(done, total)` after each file.
pub fn evaluate(
    files: &[PathBuf],
    opt: &Options,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Report, TraceError> {
    if let Some(&k) = opt.horizons.iter().find(|&&k| k == 0 || k > H) {
        return Err(TraceError::Row {
            path: PathBuf::from("--horizons"),
            line: 0,
            message: format!("horizon {k} is not in 1..={H}"),
        });
    }
    let cfg = Config {
        enabled: opt.enabled.clone(),
        links: opt.links != LinkMode::None,
        ..Config::default()
    };
    let nr = opt.resources.len();
    let plan = match opt.links {
        LinkMode::Tenants => Some(LeaderPlan::build(files, opt)?),
        _ => None,
    };
    // Per file: per resource, the sums (None: too short).
    type FileOut = Result<Vec<Option<SeriesSums>>, TraceError>;
    let results: Mutex<Vec<Option<FileOut>>> = Mutex::new((0..files.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let work = Mutex::new(Work {
        update_ns: 0,
        updates: 0,
        forecast_ns: 0,
        forecasts: 0,
    });
    std::thread::scope(|scope| {
        for _ in 0..opt.jobs.max(1) {
            scope.spawn(|| {
                let mut w = Work {
                    update_ns: 0,
                    updates: 0,
                    forecast_ns: 0,
                    forecasts: 0,
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= files.len() || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let out: FileOut = trace::read_file(&files[i]).and_then(|t| {
                        let mut per = Vec::with_capacity(nr);
                        for (ri, &r) in opt.resources.iter().enumerate() {
                            let rows: Vec<(i64, f64)> =
                                t.rows.iter().map(|row| (row.ts, row.get(r))).collect();
                            let ts: Vec<i64> = t.rows.iter().map(|row| row.ts).collect();
                            let (lead, new_leader) = match &plan {
                                Some(p) => p.leader_values(i, ri, &ts),
                                None => (vec![f64::NAN; ts.len()], vec![false; ts.len()]),
                            };
                            let companions = Companions {
                                values: t
                                    .rows
                                    .iter()
                                    .zip(&lead)
                                    .map(|(row, &l)| companion_values(r, |c| row.get(c), l))
                                    .collect(),
                                new_leader,
                            };
                            let companions = (opt.links != LinkMode::None).then_some(&companions);
                            let s =
                                run_series(&rows, companions, opt, &cfg, &mut w).map_err(|e| {
                                    TraceError::Row {
                                        path: files[i].clone(),
                                        line: 0,
                                        message: format!("{r}: {e}"),
                                    }
                                })?;
                            per.push(s);
                        }
                        Ok(per)
                    });
                    if out.is_err() && !opt.skip_bad {
                        failed.store(true, Ordering::Relaxed);
                    }
                    results.lock().unwrap()[i] = Some(out);
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, files.len());
                }
                let mut g = work.lock().unwrap();
                g.update_ns += w.update_ns;
                g.updates += w.updates;
                g.forecast_ns += w.forecast_ns;
                g.forecasts += w.forecasts;
            });
        }
    });
    let mut per_file = Vec::new();
    let mut paths = Vec::new();
    let mut bad_files = Vec::new();
    for (i, r) in results.into_inner().unwrap().into_iter().enumerate() {
        let Some(r) = r else { continue };
        match r {
            Ok(v) => {
                per_file.push(v);
                paths.push(&files[i]);
            }
            Err(e) if opt.skip_bad => bad_files.push(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    let w = work.into_inner().unwrap();
    let names = candidate_names();
    let m = names.len();
    let nh = opt.horizons.len();
    let mut rows = Vec::new();
    let mut short_series = 0;
    let mut links = Vec::new();
    for (ri, &r) in opt.resources.iter().enumerate() {
        let series: Vec<&SeriesSums> = per_file.iter().filter_map(|f| f[ri].as_ref()).collect();
        let short = per_file.len() - series.len();
        short_series += short;
        if opt.links != LinkMode::None {
            let co = companions_of(r);
            let mut row = LinkRow {
                resource: r,
                series: series.len(),
                linked: 0,
                from: co.iter().map(|&c| (c, 0)).collect(),
                from_leader: 0,
                with_leader: plan.as_ref().map_or(0, |p| p.led(ri)),
                by_lag: vec![0; 4],
            };
            for (c, l) in series.iter().filter_map(|s| s.link) {
                row.linked += 1;
                match row.from.get_mut(c as usize) {
                    Some(f) => f.1 += 1,
                    None => row.from_leader += 1,
                }
                row.by_lag[(l as usize).clamp(1, 4) - 1] += 1;
            }
            links.push(row);
        }
        for c in 0..=m {
            if c < m && !opt.enabled[c] {
                continue;
            }
            let model = if c < m { names[c] } else { "ensemble" };
            for (j, &k) in opt.horizons.iter().enumerate() {
                let (mut lg, mut ng, mut lp, mut np) = (0.0, 0usize, 0.0, 0usize);
                let (mut sa, mut sn, mut cov, mut cnt) = (0.0, 0.0, 0u64, 0u64);
                for s in &series {
                    let (a, na) = (s.abs[c * nh + j], s.naive_abs[j]);
                    sa += a;
                    sn += na;
                    cov += s.covered[c * nh + j];
                    cnt += s.origins as u64;
                    if !scored(na, s.level) {
                        continue;
                    }
                    lg += (a / na).clamp(1e-3, 1e3).ln();
                    ng += 1;
                    let (p, np_) = (s.pin[c * nh + j], s.naive_pin[j]);
                    if np_ > 0.0 {
                        lp += (p / np_).clamp(1e-3, 1e3).ln();
                        np += 1;
                    }
                }
                rows.push(ResultRow {
                    resource: r,
                    model: model.to_string(),
                    horizon: k,
                    gmrae: (ng > 0).then(|| (lg / ng as f64).exp()),
                    pooled: (sn > 0.0).then(|| sa / sn),
                    coverage95: (cnt > 0).then(|| cov as f64 / cnt as f64),
                    pinball95: (np > 0).then(|| (lp / np as f64).exp()),
                    series: ng,
                    skipped: short + bad_files.len() + (series.len() - ng),
                    negligible: series.len() - ng,
                });
            }
        }
    }
    let mut per_series = Vec::new();
    if opt.per_series {
        for (f, path) in per_file.iter().zip(&paths) {
            for (&r, s) in opt.resources.iter().zip(f) {
                let Some(s) = s else { continue };
                let n = s.origins.max(1) as f64;
                for c in (0..=m).filter(|&c| c == m || opt.enabled[c]) {
                    for (j, &k) in opt.horizons.iter().enumerate() {
                        per_series.push(SeriesRow {
                            file: (*path).clone(),
                            resource: r,
                            model: if c < m { names[c] } else { "ensemble" },
                            horizon: k,
                            origins: s.origins,
                            mae: s.abs[c * nh + j] / n,
                            naive_mae: s.naive_abs[j] / n,
                            level: s.level / n,
                        });
                    }
                }
            }
        }
    }
    Ok(Report {
        results: rows,
        timing: Timing {
            update_ns_per_series_step: w.update_ns as f64 / w.updates.max(1) as f64,
            forecast_ns_per_origin: w.forecast_ns as f64 / w.forecasts.max(1) as f64,
        },
        links,
        bad_files,
        short_series,
        per_series,
    })
}

/// A readable table: one line per (resource, model), the horizons side by side.
pub fn render(report: &Report, horizons: &[usize]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let f = |v: Option<f64>| v.map_or("   -  ".to_string(), |v| format!("{v:6.3}"));
    let _ = write!(s, "{:<5} {:<14}", "res", "model");
    for k in horizons {
        let _ = write!(s, " | h={k:<3} gmrae pooled  cov95 pin95");
    }
    s.push('\n');
    for chunk in report.results.chunks(horizons.len()) {
        let r0 = &chunk[0];
        let _ = write!(s, "{:<5} {:<14}", r0.resource.name(), r0.model);
        for r in chunk {
            let _ = write!(
                s,
                " |      {} {} {} {}",
                f(r.gmrae),
                f(r.pooled),
                f(r.coverage95),
                f(r.pinball95)
            );
        }
        s.push('\n');
    }
    if let Some(r) = report.results.first() {
        let _ = writeln!(
            s,
            "series per resource: {} scored, {} skipped (too short: {}, malformed files: {}, \
             naive error negligible against the level: {})",
            r.series,
            r.skipped,
            report.short_series
                / report
                    .results
                    .iter()
                    .map(|r| r.resource)
                    .collect::<std::collections::HashSet<_>>()
                    .len()
                    .max(1),
            report.bad_files.len(),
            r.negligible
        );
    }
    let _ = writeln!(
        s,
        "timing: update {:.2} µs per series-step, forecast {:.2} µs per origin (all candidates, with p95s)",
        report.timing.update_ns_per_series_step / 1e3,
        report.timing.forecast_ns_per_origin / 1e3
    );
    for l in &report.links {
        let from: Vec<String> = l.from.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let _ = writeln!(
            s,
            "lead-lag links into {}: {} of {} series (from {}, another VM {}; lag 1/2/3/4 steps: {:?}; {} with a leader on the last day)",
            l.resource,
            l.linked,
            l.series,
            from.join(", "),
            l.from_leader,
            l.by_lag,
            l.with_leader
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]\n";

    fn write(dir: &std::path::Path, name: &str, rows: usize) {
        let mut s = String::from(HEADER);
        for t in 0..rows {
            let day = (t as f64 / 288.0 * std::f64::consts::TAU).sin();
            let cpu = 1000.0 + 500.0 * day;
            s.push_str(&format!(
                "{};\t2;\t5000;\t{cpu};\t10;\t8000000;\t{};\t{};\t0;\t{};\t1\n",
                1_372_636_800 + 300 * t as i64,
                4_000_000.0 + 1000.0 * (t % 7) as f64,
                (t % 12) as f64,
                (t % 5) as f64
            ));
        }
        std::fs::write(dir.join(name), s).unwrap();
    }

    #[test]
    fn runs_the_protocol_and_counts_what_it_skips() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "1.csv", 700);
        write(dir.path(), "2.csv", 100); // too short
        let files = trace::list_dir(dir.path()).unwrap();
        let opt = Options {
            warmup: 600,
            ..Options::default()
        };
        let r = evaluate(&files, &opt, &|_, _| {}).unwrap();
        let m = candidate_names().len() + 1;
        assert_eq!(r.results.len(), 4 * m * 4);
        for row in &r.results {
            if row.resource == Resource::Disk && row.horizon % 12 == 0 {
                // Disk repeats every 12 steps: naive is exact at h = 12 and 48, the series is
                // skipped (and counted) for gmrae.
                assert_eq!(
                    (row.series, row.skipped, row.gmrae),
                    (0, 2, None),
                    "{row:?}"
                );
                continue;
            }
            assert_eq!(row.series, 1, "{row:?}");
            assert_eq!(row.skipped, 1);
            if row.model == "naive" {
                // The forecaster keeps values as f32: equal up to rounding.
                assert!((row.gmrae.unwrap() - 1.0).abs() < 1e-5, "{row:?}");
                assert!((row.pooled.unwrap() - 1.0).abs() < 1e-5, "{row:?}");
            }
        }
        // 700 rows, warm-up 600: origins 600, 612, …, 648 (48 steps must remain).
        let cpu = r
            .results
            .iter()
            .find(|x| x.model == "snaive_day" && x.resource == Resource::Cpu && x.horizon == 1)
            .unwrap();
        assert!(cpu.gmrae.unwrap() < 0.1, "{cpu:?}");
        let text = render(&r, &opt.horizons);
        assert!(text.contains("ensemble"));
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["results"][0]["gmrae"].is_number());
        assert!(json["timing"]["forecast_ns_per_origin"].is_number());
    }

    #[test]
    fn series_whose_naive_error_is_negligible_are_left_out_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "1.csv", 700);
        // CPU barely moves: the naive error (1e-6 MHz) is far under what the forecaster's
        // f32 keeps of a level of 123456.789 MHz, so every ratio to naive would be rounding.
        let mut s = String::from(HEADER);
        for t in 0..700 {
            let cpu = 123_456.789 + 1e-6 * (t % 3) as f64;
            s.push_str(&format!(
                "{};\t2;\t5000;\t{cpu};\t10;\t8000000;\t4000000;\t{};\t0;\t{};\t1\n",
                1_372_636_800 + 300 * t as i64,
                t % 12,
                t % 5
            ));
        }
        std::fs::write(dir.path().join("2.csv"), s).unwrap();
        let files = trace::list_dir(dir.path()).unwrap();
        let opt = Options {
            warmup: 600,
            resources: vec![Resource::Cpu],
            horizons: vec![1, 12],
            per_series: true,
            ..Options::default()
        };
        let r = evaluate(&files, &opt, &|_, _| {}).unwrap();
        for row in &r.results {
            assert_eq!(
                (row.series, row.skipped, row.negligible),
                (1, 1, 1),
                "{row:?}"
            );
            if row.model == "naive" {
                assert!((row.gmrae.unwrap() - 1.0).abs() < 1e-5, "{row:?}");
            }
        }
        let flat = r
            .per_series
            .iter()
            .find(|s| s.file.ends_with("2.csv"))
            .unwrap();
        assert!(
            flat.naive_mae > 0.0 && flat.csv().ends_with(','),
            "{}",
            flat.csv()
        );
        assert!(render(&r, &opt.horizons).contains("negligible against the level: 1"));
    }

    #[test]
    fn per_series_rows_are_what_the_gmrae_averages() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "1.csv", 700);
        write(dir.path(), "2.csv", 760);
        let files = trace::list_dir(dir.path()).unwrap();
        let opt = Options {
            warmup: 600,
            resources: vec![Resource::Cpu, Resource::Net],
            horizons: vec![1, 12],
            ..Options::default()
        };
        let r = evaluate(&files, &opt, &|_, _| {}).unwrap();
        assert!(r.per_series.is_empty(), "only when asked");
        let opt = Options {
            per_series: true,
            ..opt
        };
        let r = evaluate(&files, &opt, &|_, _| {}).unwrap();
        let m = candidate_names().len() + 1;
        assert_eq!(r.per_series.len(), 2 * 2 * m * 2);
        for row in &r.results {
            let ratios: Vec<f64> = r
                .per_series
                .iter()
                .filter(|s| {
                    (s.resource, s.model, s.horizon) == (row.resource, &*row.model, row.horizon)
                })
                .filter(|s| scored(s.naive_mae, s.level))
                .map(|s| (s.mae / s.naive_mae).clamp(1e-3, 1e3))
                .collect();
            assert_eq!(ratios.len(), row.series, "{row:?}");
            let g = (ratios.iter().map(|x| x.ln()).sum::<f64>() / ratios.len() as f64).exp();
            assert!((g - row.gmrae.unwrap()).abs() < 1e-9, "{row:?}: {g}");
        }
        let s = &r.per_series[0];
        assert!(s.file.ends_with("1.csv"));
        assert_eq!(s.origins, 5);
        let line = s.csv();
        assert!(
            line.starts_with(&format!("{},cpu,naive,1,5,", s.file.display())),
            "{line}"
        );
        assert_eq!(
            line.split(',').count(),
            SeriesRow::CSV_HEADER.split(',').count()
        );
    }

    #[test]
    fn malformed_files_name_file_and_line_or_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "1.csv", 700);
        std::fs::write(
            dir.path().join("2.csv"),
            format!("{HEADER}0;\t2;\t5000;\tNaN;\t1;\t1;\t1;\t1;\t1;\t1;\t1\n"),
        )
        .unwrap();
        let files = trace::list_dir(dir.path()).unwrap();
        let opt = Options {
            warmup: 600,
            resources: vec![Resource::Cpu],
            ..Options::default()
        };
        let e = evaluate(&files, &opt, &|_, _| {}).unwrap_err().to_string();
        assert!(e.contains("2.csv line 2"), "{e}");
        let opt = Options {
            skip_bad: true,
            ..opt
        };
        let r = evaluate(&files, &opt, &|_, _| {}).unwrap();
        assert_eq!(r.bad_files.len(), 1);
        assert!(r.results.iter().all(|x| x.series == 1 && x.skipped == 1));
    }
}
