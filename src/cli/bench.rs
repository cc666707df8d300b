use crate::forecast::bench;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Cost of one allocation solve (every resource's newsvendor with its shadow price) for
    /// many tenants with random demand curves. Prints figures (use a release build).
    Solve {
        /// Tenants in the solve; at least 1.
        #[arg(long, default_value_t = 1000, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..))]
        tenants: u64,
        /// Capacity as a fraction of what the tenants want at no scarcity (below 1: λ > 0).
        #[arg(
            long,
            default_value_t = 0.8,
            value_name = "F",
            allow_negative_numbers = true
        )]
        scarcity: f64,
        /// Solves timed; the median is reported; at least 1.
        #[arg(long, default_value_t = 21, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..))]
        passes: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Cost of the online forecasters: update per series-step, one 48-step forecast with
    /// quantiles, state bytes per series. Prints figures (use a release build).
    Forecast {
        /// Trace directory to replay (default: synthetic series).
        #[arg(long, value_name = "DIR")]
        trace: Option<PathBuf>,
        /// Trace files to use (each gives four series); at least 1.
        #[arg(long, default_value_t = 5, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..))]
        files: u64,
        /// Passes over the series; the pass with the median forecast cost is reported (a
        /// shared or virtualised host's timings vary from one pass to the next); at least 1.
        #[arg(long, default_value_t = 5, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..))]
        passes: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(a: BenchArgs) -> super::CliResult {
    match a.what {
        BenchWhat::Solve {
            tenants,
            scarcity,
            passes,
            json,
        } => {
            if !(scarcity.is_finite() && scarcity > 0.0) {
                return Err(format!("--scarcity {scarcity} must be > 0").into());
            }
            let mut ns = crate::allocate::solve::bench(tenants as usize, scarcity, passes as usize);
            ns.sort_unstable();
            let ms = |v: u128| v as f64 / 1e6;
            let (min, median, max) = (ms(ns[0]), ms(ns[ns.len() / 2]), ms(ns[ns.len() - 1]));
            if json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "tenants": tenants, "resources": 4, "scarcity": scarcity,
                        "passes": passes, "cpu_ms_min": min, "cpu_ms_median": median,
                        "cpu_ms_max": max
                    })
                )?;
            } else {
                outln!(
                    "solve for {tenants} tenants × 4 resources (capacity {scarcity} × what they want): {median:.3} ms CPU median of {passes} passes (min {min:.3}, max {max:.3})"
                )?;
            }
            Ok(())
        }
        BenchWhat::Forecast {
            trace,
            files,
            passes,
            json,
        } => {
            let series = bench::load(trace.as_ref(), files as usize)?;
            if series.iter().all(|s| s.len() <= bench::WARMUP) {
                return Err(format!(
                    "{}: no trace of the {} read has more than {} rows (a week of 5-minute \
                     steps to warm the forecasters up before timing them)",
                    trace
                        .as_ref()
                        .map_or("synthetic".into(), |t| t.display().to_string()),
                    crate::model::count(series.len() / crate::model::Resource::ALL.len(), "file"),
                    bench::WARMUP
                )
                .into());
            }
            let mut runs: Vec<bench::BenchReport> = (0..passes)
                .map(|_| bench::run(&series, bench::WARMUP, 12))
                .collect();
            runs.sort_by(|a, b| a.forecast_cpu_ns.total_cmp(&b.forecast_cpu_ns));
            let spread = (
                runs[0].forecast_cpu_ns,
                runs[runs.len() - 1].forecast_cpu_ns,
            );
            let r = runs.swap_remove(runs.len() / 2);
            if !json {
                let longest = series
                    .iter()
                    .max_by_key(|s| s.len())
                    .cloned()
                    .unwrap_or_default();
                for (fam, ns) in bench::family_costs(&longest) {
                    outln!("  {fam:<16} {:8.2} µs CPU per 48-step forecast", ns / 1e3)?;
                }
            }
            if json {
                outln!("{}", serde_json::to_string(&r)?)?;
            } else {
                outln!(
                    "series {}  steps {}  forecasts {}  candidates {}",
                    r.series,
                    r.steps,
                    r.forecasts,
                    r.candidates
                )?;
                outln!(
                    "update (all models, scoring, ensemble records, conformal): {:.2} µs CPU per series-step ({:.2} µs wall)",
                    r.update_cpu_ns_per_series_step / 1e3,
                    r.update_wall_ns_per_series_step / 1e3
                )?;
                outln!(
                    "forecast 48 steps with p50/p90/p95/p99: {:.2} µs CPU ({:.2} µs wall); median of {} passes, which ranged {:.2}–{:.2} µs CPU",
                    r.forecast_cpu_ns / 1e3,
                    r.forecast_wall_ns / 1e3,
                    passes,
                    spread.0 / 1e3,
                    spread.1 / 1e3
                )?;
                outln!(
                    "state per series: {} bytes in memory ({:.1} KiB), {} bytes as JSON; a tenant (4 series) as JSON: {} bytes",
                    r.state_bytes_per_series,
                    r.state_bytes_per_series as f64 / 1024.0,
                    r.json_bytes_per_series,
                    bench::tenant_json_bytes(8640)
                )?;
            }
            Ok(())
        }
    }
}
