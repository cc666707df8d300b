//! Cost figures for `prescient bench forecast`: per series-step update cost (every model,
//! scoring, the ensemble's records and the conformal quantiles), the cost of one 48-step
//! forecast with quantiles, and the state size. Times are the thread's CPU time (so that
//! other load on the machine does not inflate them) and wall time; it prints figures and
//! asserts nothing.

use super::{Config, H, SeriesForecaster, TenantForecaster};
use crate::model::Resource;
use crate::trace;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Steps every series trains on before forecasts are timed (a week of 5-minute steps).
pub const WARMUP: usize = 2016;

/// This thread's CPU time in nanoseconds.
pub fn thread_cpu_ns() -> u128 {
    cpu_time::ThreadTime::try_now().map_or(0, |t| t.as_duration().as_nanos())
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub series: usize,
    pub steps: u64,
    pub forecasts: u64,
    pub update_cpu_ns_per_series_step: f64,
    pub update_wall_ns_per_series_step: f64,
    pub forecast_cpu_ns: f64,
    pub forecast_wall_ns: f64,
    /// In-memory state of one series (vectors included), the largest seen.
    pub state_bytes_per_series: usize,
    /// serde_json size of one series' state (the largest seen).
    pub json_bytes_per_series: usize,
    /// Candidates per series.
    pub candidates: usize,
}

/// A synthetic series: a daily wave, an hourly ripple and noise (for when no trace is given).
pub fn synthetic(steps: usize) -> Vec<(i64, f64)> {
    let mut seed = 7u64;
    (0..steps)
        .map(|t| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = (seed >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
            let day = (t as f64 / 288.0 * std::f64::consts::TAU).sin();
            let hour = ((t % 12) as f64 / 12.0 * std::f64::consts::TAU).cos();
            (
                1_372_636_800 + 300 * t as i64,
                100.0 + 40.0 * day + 10.0 * hour + 8.0 * noise,
            )
        })
        .collect()
}

/// Run `series` through fresh forecasters: update on every step, forecast every
/// `forecast_every` steps after `warmup`.
pub fn run(series: &[Vec<(i64, f64)>], warmup: usize, forecast_every: usize) -> BenchReport {
    let mut r = BenchReport {
        series: series.len(),
        steps: 0,
        forecasts: 0,
        update_cpu_ns_per_series_step: 0.0,
        update_wall_ns_per_series_step: 0.0,
        forecast_cpu_ns: 0.0,
        forecast_wall_ns: 0.0,
        state_bytes_per_series: 0,
        json_bytes_per_series: 0,
        candidates: super::candidate_names().len(),
    };
    let (mut ucpu, mut uwall, mut fcpu, mut fwall) = (0u128, 0u128, 0u128, 0u128);
    for s in series {
        let mut f = SeriesForecaster::new(Config::default());
        for (t, &(ts, v)) in s.iter().enumerate() {
            let (c0, w0) = (thread_cpu_ns(), Instant::now());
            let _ = f.update(ts, v);
            uwall += w0.elapsed().as_nanos();
            ucpu += thread_cpu_ns() - c0;
            r.steps += 1;
            if t >= warmup && (t - warmup).is_multiple_of(forecast_every) {
                let (c0, w0) = (thread_cpu_ns(), Instant::now());
                let fc = f.forecast();
                fwall += w0.elapsed().as_nanos();
                fcpu += thread_cpu_ns() - c0;
                debug_assert_eq!(fc.point.len(), H);
                std::hint::black_box(fc);
                r.forecasts += 1;
            }
        }
        r.state_bytes_per_series = r.state_bytes_per_series.max(f.state_bytes());
        let json = serde_json::to_vec(&f).map(|v| v.len()).unwrap_or(0);
        r.json_bytes_per_series = r.json_bytes_per_series.max(json);
    }
    let steps = r.steps.max(1) as f64;
    let fc = r.forecasts.max(1) as f64;
    r.update_cpu_ns_per_series_step = ucpu as f64 / steps;
    r.update_wall_ns_per_series_step = uwall as f64 / steps;
    r.forecast_cpu_ns = fcpu as f64 / fc;
    r.forecast_wall_ns = fwall as f64 / fc;
    r
}

/// The series of the first `files` traces of `dir` (every resource), or synthetic ones.
pub fn load(
    dir: Option<&PathBuf>,
    files: usize,
) -> Result<Vec<Vec<(i64, f64)>>, trace::TraceError> {
    let Some(dir) = dir else {
        return Ok((0..4).map(|_| synthetic(8640)).collect());
    };
    let mut out = Vec::new();
    for p in trace::list_dir(dir)?.iter().take(files) {
        let t = trace::read_file(p)?;
        for r in Resource::ALL {
            out.push(t.rows.iter().map(|row| (row.ts, row.get(r))).collect());
        }
    }
    Ok(out)
}

/// The JSON size of a whole tenant (four series) after `steps` synthetic steps.
pub fn tenant_json_bytes(steps: usize) -> usize {
    let mut t = TenantForecaster::new(Config::default());
    for (ts, v) in synthetic(steps) {
        let _ = t.update(
            ts,
            crate::model::PerResource {
                cpu: v,
                mem: v,
                disk: v,
                net: v,
            },
        );
    }
    serde_json::to_vec(&t).map(|v| v.len()).unwrap_or(0)
}

/// CPU time of one 48-step forecast of each model family alone (candidates only), and of
/// the combination step, at the end of `s`.
pub fn family_costs(s: &[(i64, f64)]) -> Vec<(String, f64)> {
    let mut f = SeriesForecaster::new(Config::default());
    for &(ts, v) in s {
        let _ = f.update(ts, v);
    }
    let names = super::candidate_names();
    let mut out = Vec::new();
    let mut c = 0;
    let reps = 200;
    for (fam, n) in super::FAMILIES {
        let mut g = f.clone();
        g.cfg.enabled = (0..names.len())
            .map(|i| i >= c && i < c + n.len())
            .collect();
        let hs: Vec<usize> = (1..=H).collect();
        let mut buf = vec![0.0; names.len() * H];
        let c0 = thread_cpu_ns();
        for _ in 0..reps {
            g.candidates(&hs, &mut buf);
            std::hint::black_box(&buf);
        }
        out.push((fam.to_string(), (thread_cpu_ns() - c0) as f64 / reps as f64));
        c += n.len();
    }
    let cand = f.detailed(false).candidates;
    let c0 = thread_cpu_ns();
    for _ in 0..reps {
        std::hint::black_box(f.combine(&cand, H));
    }
    out.push((
        "medians, quantiles".into(),
        (thread_cpu_ns() - c0) as f64 / reps as f64,
    ));
    let c0 = thread_cpu_ns();
    for _ in 0..reps {
        std::hint::black_box(super::models::Origin::new(&f.hist));
    }
    out.push((
        "origin context".into(),
        (thread_cpu_ns() - c0) as f64 / reps as f64,
    ));
    let c0 = thread_cpu_ns();
    for _ in 0..reps {
        std::hint::black_box(f.forecast());
    }
    out.push((
        "whole forecast".into(),
        (thread_cpu_ns() - c0) as f64 / reps as f64,
    ));
    out
}
