//! Unit tests of the forecasters on synthetic series with known answers.

use super::*;
use crate::forecast::history::DAY;

const T0: i64 = 1_372_636_800; // 2013-07-01 00:00 UTC

fn daily_sine(t: usize) -> f64 {
    100.0 + 50.0 * (t as f64 / DAY as f64 * std::f64::consts::TAU).sin()
}

/// A small deterministic noise source in [-0.5, 0.5).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }
}

fn feed(f: &mut SeriesForecaster, from: usize, to: usize, g: impl Fn(usize) -> f64) {
    for t in from..to {
        f.update(T0 + 300 * t as i64, g(t)).unwrap();
    }
}

fn index(name: &str) -> usize {
    candidate_names().iter().position(|n| *n == name).unwrap()
}

/// Mean absolute error of candidate `name` over horizons 1..=48 against `truth`.
fn cand_mae(d: &Detailed, name: &str, now: usize, truth: impl Fn(usize) -> f64) -> f64 {
    let c = index(name);
    (1..=H)
        .map(|k| {
            let v = d.candidates[c * H + k - 1];
            assert!(present(v), "{name} has no forecast at h={k}");
            (v as f64 - truth(now + k)).abs()
        })
        .sum::<f64>()
        / H as f64
}

#[test]
fn seasonal_models_learn_a_pure_daily_sine() {
    let mut f = SeriesForecaster::default();
    let n = 9 * DAY as usize; // enough for the week lag too
    feed(&mut f, 0, n, daily_sine);
    let d = f.detailed(true);
    let now = n - 1;
    // Exact lookups and profiles: essentially exact.
    for name in [
        "snaive_day",
        "snaive_week",
        "smed_day7",
        "snaive_day_lc",
        "prof3",
        "prof7",
        "prof7_day",
        "prof14_day",
    ] {
        let e = cand_mae(&d, name, now, daily_sine);
        assert!(e < 0.5, "{name}: MAE {e} on a pure daily sine");
    }
    // Learnt models: close (amplitude 50; naive's MAE over 48 steps is ≈ 25).
    let naive = cand_mae(&d, "naive", now, daily_sine);
    for (name, tol) in [("holt_winters", 2.0), ("ar_ridge", 4.0), ("esn", 5.0)] {
        let e = cand_mae(&d, name, now, daily_sine);
        assert!(e < tol, "{name}: MAE {e} (naive {naive})");
    }
    assert!(naive > 10.0);
    // And the ensemble follows the seasonal candidates.
    let ens: f64 = (1..=H)
        .map(|k| (d.ensemble.point[k - 1] as f64 - daily_sine(now + k)).abs())
        .sum::<f64>()
        / H as f64;
    assert!(ens < 1.0, "ensemble MAE {ens}");
}

#[test]
fn every_candidate_forecasts_after_warmup_and_stays_non_negative() {
    let mut f = SeriesForecaster::default();
    let mut rng = Lcg(3);
    let g = |t: usize| (daily_sine(t) - 120.0).max(0.0);
    for t in 0..(8 * DAY as usize) {
        let v = g(t) + 5.0 * (rng.next() + 0.5);
        f.update(T0 + 300 * t as i64, v).unwrap();
    }
    let d = f.detailed(true);
    for (c, name) in candidate_names().iter().enumerate() {
        for k in 1..=H {
            let v = d.candidates[c * H + k - 1];
            assert!(v.is_finite() && v >= 0.0, "{name} h={k}: {v}");
            assert!(d.candidates_p95[c * H + k - 1] >= 0.0);
        }
    }
    assert_eq!(
        f.forecast(),
        d.ensemble,
        "the sparse forecast is the full one"
    );
    for k in 0..H {
        let q = d.ensemble.quantiles[k];
        assert!(d.ensemble.point[k] >= 0.0);
        assert!(q[0] <= q[1] && q[1] <= q[2] && q[2] <= q[3], "{q:?}");
    }
}

#[test]
fn a_step_change_is_tracked() {
    let mut f = SeriesForecaster::default();
    let g = |t: usize| if t < 3 * DAY as usize { 10.0 } else { 50.0 };
    let n = 3 * DAY as usize + 60;
    feed(&mut f, 0, n, g);
    let d = f.detailed(false);
    for name in [
        "naive", "mean3", "mean12", "median3", "median12", "tmean12", "ewma50", "ewma30",
    ] {
        let e = cand_mae(&d, name, n - 1, g);
        assert!(e < 1e-3, "{name}: MAE {e} after a step");
    }
    // The slow ones move toward it.
    let e = cand_mae(&d, "ewma10", n - 1, g);
    assert!(e < 0.1, "ewma10 {e}");
    for k in [1, 12, 48] {
        let p = d.ensemble.point[k - 1];
        assert!((p - 50.0).abs() < 1.0, "ensemble h={k}: {p}");
    }
}

#[test]
fn hourly_phase_is_learnt() {
    let mut f = SeriesForecaster::default();
    let g = |t: usize| {
        [
            5.0, 5.0, 80.0, 20.0, 5.0, 5.0, 5.0, 5.0, 40.0, 5.0, 5.0, 5.0,
        ][t % 12]
    };
    let n = DAY as usize;
    feed(&mut f, 0, n, g);
    let d = f.detailed(false);
    for name in ["phase3", "phase6", "phasechg3", "phasechg6", "phase_lc6"] {
        let e = cand_mae(&d, name, n - 1, g);
        assert!(e < 1e-3, "{name}: MAE {e}");
    }
}

#[test]
fn vpa_histogram_percentiles() {
    let mut f = SeriesForecaster::default();
    // Values 1..=100 in turn: p50 ≈ 50, p90 ≈ 90 within the 5 % buckets, a little higher
    // since the latest values (the top of the cycle) weigh up to 2^(100/288) = 1.27× more.
    feed(&mut f, 0, 2000, |t| (t % 100 + 1) as f64);
    let d = f.detailed(false);
    let p90 = d.candidates[index("vpa_p90") * H];
    let p50 = d.candidates[index("hist_p50") * H];
    assert!((88.0..=97.0).contains(&p90), "p90 {p90}");
    assert!((48.0..=58.0).contains(&p50), "p50 {p50}");
    // A constant: both percentiles sit in its bucket.
    let mut f = SeriesForecaster::default();
    feed(&mut f, 0, 500, |_| 1234.0);
    let d = f.detailed(false);
    for name in ["vpa_p90", "hist_p50"] {
        let v = d.candidates[index(name) * H];
        assert!((v / 1234.0 - 1.0).abs() < 0.05, "{name} {v}");
    }
}

#[test]
fn ensemble_weights_move_to_the_better_model() {
    // naive, snaive_day and mean12 only, on a daily sine: the seasonal one is exact.
    let cfg = Config {
        enabled: parse_models("naive,snaive_day,mean12").unwrap(),
        ..Config::default()
    };
    let mut f = SeriesForecaster::new(cfg);
    feed(&mut f, 0, 4 * DAY as usize, daily_sine);
    let w = f.weights();
    assert_eq!(w.len(), H);
    let (naive, sd, mean12) = (index("naive"), index("snaive_day"), index("mean12"));
    for k in [1, 6, 12, 48] {
        let wk = &w[k - 1];
        let total: f32 = wk.iter().sum();
        assert!((total - 1.0).abs() < 1e-4);
        assert!(wk[sd] > 0.99, "h={k}: {wk:?}");
        assert!(wk[naive] < 0.01 && wk[mean12] < 0.01, "h={k}");
        assert_eq!(wk[index("prof7")], 0.0, "disabled candidates weigh nothing");
    }
    let errors = f.errors();
    assert!(errors[11][sd].unwrap() < errors[11][naive].unwrap());
    // Then the series turns flat-noisy-free constant: naive becomes exact and wins back.
    let n = 4 * DAY as usize;
    feed(&mut f, n, n + 3 * DAY as usize, |_| 70.0);
    let w = f.weights();
    assert!(w[0][naive] > w[0][sd], "{:?}", w[0]);
}

/// A spike at one phase of the hour: right after it, the short mean is the better forecast;
/// one step later, the last value is exact. Overall both err alike; the weights at each
/// phase tell them apart.
#[test]
fn weights_follow_the_phase_of_the_hour() {
    let cfg = Config {
        enabled: parse_models("naive,mean3").unwrap(),
        ..Config::default()
    };
    let mut f = SeriesForecaster::new(cfg);
    let g = |t: usize| if t % 12 == 5 { 100.0 } else { 10.0 };
    let n = 2 * DAY as usize;
    let (naive, mean3) = (index("naive"), index("mean3"));
    // The last observation is the spike (phase 5): mean3 forecasts (10 + 10 + 100) / 3.
    feed(&mut f, 0, n + 6, g);
    let e = f.errors();
    let (en, em) = (e[0][naive].unwrap(), e[0][mean3].unwrap());
    assert!((en / em - 1.0).abs() < 0.05, "overall alike: {en} {em}");
    let w = f.weights();
    assert!(w[0][mean3] > 0.9, "after the spike: {:?}", w[0]);
    assert!((f.forecast().point[0] - 40.0).abs() < 1e-3);
    // One step on (phase 6): the last value is exact.
    feed(&mut f, n + 6, n + 7, g);
    let w = f.weights();
    assert!(w[0][naive] > 0.9, "a step later: {:?}", w[0]);
    assert_eq!(f.forecast().point[0], 10.0);
}

#[test]
fn conformal_p95_covers_a_stationary_noisy_series() {
    let mut f = SeriesForecaster::default();
    let mut rng = Lcg(11);
    let mut values = Vec::new();
    let n = 9000;
    for _ in 0..n {
        values.push(100.0 + 40.0 * rng.next());
    }
    let mut hits = [0usize; 3];
    let mut count = 0;
    let mut pending: Vec<(usize, Forecast)> = Vec::new();
    for (t, &v) in values.iter().enumerate() {
        f.update(T0 + 300 * t as i64, v).unwrap();
        if t >= 3000 && t + H < n && t % 7 == 0 {
            pending.push((t, f.forecast()));
        }
    }
    for (t, fc) in &pending {
        for (j, k) in [1usize, 12, 48].into_iter().enumerate() {
            hits[j] += (values[t + k] <= fc.quantiles[k - 1][2] as f64) as usize;
        }
        count += 1;
    }
    for (j, h) in hits.iter().enumerate() {
        let cov = *h as f64 / count as f64;
        assert!((0.93..=0.97).contains(&cov), "horizon #{j}: coverage {cov}");
    }
}

/// An hourly cycle: busy (1 core) at phases 1–5, idle (a few thousandths of a core) at
/// 7–11; at phases 0 and 6 (the boundaries) busy or idle by the toss of a coin.
fn cyclic(t: usize, rng: &mut Lcg) -> f64 {
    let p = t % 12;
    let busy = match p {
        0 | 6 => rng.next() < 0.0,
        _ => p < 6,
    };
    if busy {
        1.0 + 0.01 * rng.next()
    } else {
        0.005 + 0.005 * rng.next()
    }
}

#[test]
fn quantiles_are_narrow_where_a_cycle_is_regular_and_wide_at_its_boundary() {
    let mut f = SeriesForecaster::default();
    let mut rng = Lcg(21);
    // Ten days; the last observation at phase 11, so that horizon k targets phase k − 1.
    let n = 10 * DAY as usize;
    for t in 0..n {
        f.update(T0 + 300 * t as i64, cyclic(t, &mut rng)).unwrap();
    }
    let fc = f.forecast();
    let mut seen = String::new();
    for k in 1..=24 {
        let phase = (n - 1 + k) % 12;
        let [p50, _, p95, _] = fc.quantiles[k - 1];
        let point = fc.point[k - 1];
        seen += &format!("h{k} phase {phase}: point {point:.3} p50 {p50:.3} p95 {p95:.3}\n");
    }
    for k in 1..=24 {
        let phase = (n - 1 + k) % 12;
        let [p50, _, p95, _] = fc.quantiles[k - 1];
        let point = fc.point[k - 1];
        if phase.is_multiple_of(6) {
            // The coin toss: the p95 is wide (reaching the busy level every time would take
            // more than a 95 % coverage over all phases asks for).
            assert!(p95 - point > 0.3, "h{k} (boundary) narrow:\n{seen}");
        } else {
            // Regular: within a tenth of a core of the point.
            assert!(p95 - point < 0.1, "h{k} (regular) too wide:\n{seen}");
        }
        // The p50 is the point forecast's, not pulled towards 0 at a boundary.
        assert!(
            (p50 - point).abs() < 0.05,
            "h{k}: p50 off the point:\n{seen}"
        );
    }
}

#[test]
fn save_and_restore_give_identical_forecasts() {
    let mut f = SeriesForecaster::default();
    let mut rng = Lcg(5);
    let g = |t: usize, r: f64| daily_sine(t) + 10.0 * r;
    for t in 0..(3 * DAY as usize) {
        f.update(T0 + 300 * t as i64, g(t, rng.next())).unwrap();
    }
    let saved = serde_json::to_string(&f).unwrap();
    let mut r: SeriesForecaster = serde_json::from_str(&saved).unwrap();
    assert_eq!(f.forecast(), r.forecast());
    assert_eq!(f.detailed(true), r.detailed(true));
    assert_eq!(f.weights(), r.weights());
    // And they stay identical as both go on.
    for t in (3 * DAY as usize)..(4 * DAY as usize) {
        let v = g(t, rng.next());
        f.update(T0 + 300 * t as i64, v).unwrap();
        r.update(T0 + 300 * t as i64, v).unwrap();
    }
    assert_eq!(f.forecast(), r.forecast());
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        serde_json::to_string(&f).unwrap()
    );

    // A tenant too.
    let mut t = TenantForecaster::default();
    for i in 0..500 {
        let v = daily_sine(i);
        let pr = PerResource {
            cpu: v,
            mem: 2.0 * v,
            disk: 3.0 * v,
            net: 4.0 * v,
        };
        t.update(T0 + 300 * i as i64, pr).unwrap();
    }
    let back: TenantForecaster = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
    assert_eq!(t.forecast(), back.forecast());
}

#[test]
fn bad_input_is_refused_and_never_poisons_the_state() {
    let mut f = SeriesForecaster::default();
    feed(&mut f, 0, 1000, daily_sine);
    let before = serde_json::to_string(&f).unwrap();
    let fc = f.forecast();
    let ts = T0 + 300 * 1000;
    assert!(matches!(
        f.update(ts, f64::NAN),
        Err(ForecastError::NotFinite(_))
    ));
    assert!(matches!(
        f.update(ts, f64::INFINITY),
        Err(ForecastError::NotFinite(_))
    ));
    assert_eq!(f.update(ts, -1.0), Err(ForecastError::Negative(-1.0)));
    // Finite as f64 but infinite as the f32 the models keep.
    assert_eq!(f.update(ts, 1e39), Err(ForecastError::TooLarge(1e39)));
    assert!(matches!(
        f.update(T0, 5.0),
        Err(ForecastError::NotLater { .. })
    ));
    let e = f.update(ts, -2.5).unwrap_err().to_string();
    assert!(e.contains("negative") && e.contains("-2.5"), "{e}");
    assert_eq!(f.len(), 1000);
    assert_eq!(
        serde_json::to_string(&f).unwrap(),
        before,
        "state untouched"
    );
    assert_eq!(f.forecast(), fc);
    f.update(ts, 10.0).unwrap();

    // A tenant refuses the whole observation if one resource is bad.
    let mut t = TenantForecaster::default();
    let ok = PerResource {
        cpu: 1.0,
        mem: 1.0,
        disk: 1.0,
        net: 1.0,
    };
    t.update(T0, ok).unwrap();
    let bad = PerResource {
        net: f64::NAN,
        ..ok
    };
    let e = t.update(T0 + 300, bad).unwrap_err().to_string();
    assert!(e.starts_with("net: "), "{e}");
    assert_eq!(t.series.cpu.len(), 1, "no resource was updated");
}

#[test]
fn model_lists_parse() {
    assert_eq!(
        parse_models("all").unwrap().iter().filter(|b| **b).count(),
        candidate_names().len()
    );
    let on = parse_models("profile,naive").unwrap();
    assert_eq!(on.iter().filter(|b| **b).count(), 6);
    assert!(parse_models("nope").unwrap_err().contains("unknown model"));
    assert!(parse_models("").is_err());
}

#[test]
fn state_fits_in_64_kib() {
    let mut f = SeriesForecaster::default();
    feed(&mut f, 0, 5000, daily_sine);
    assert!(f.state_bytes() <= 64 * 1024, "{} bytes", f.state_bytes());
}

/// A tenant whose network follows its cpu two steps later (net = 100 + 50·cpu two steps
/// before, cpu random): the AR model of net links to cpu at lag 2 and, with the link, knows
/// the next network value; forecast alone, it cannot.
#[test]
fn a_leading_companion_is_linked_and_sharpens_the_ar_model() {
    let mut noise = Lcg(7);
    let cpu: Vec<f64> = (0..1400)
        .map(|_| 1.0 + 2.0 * (noise.next() + 0.5))
        .collect();
    let net = |t: usize| 100.0 + 50.0 * cpu[t.saturating_sub(2)];
    let run = |links: bool| {
        let cfg = Config {
            links,
            ..Config::default()
        };
        let mut f = TenantForecaster::new(cfg);
        let ar = index("ar_ridge");
        let (mut err, mut n) = (0.0, 0);
        for t in 0..cpu.len() {
            let v = PerResource {
                cpu: cpu[t],
                mem: 1000.0,
                disk: 10.0,
                net: net(t),
            };
            f.update(T0 + 300 * t as i64, v).unwrap();
            if t >= 1200 && t + 1 < cpu.len() {
                let d = f.series.net.detailed(false);
                let p = d.candidates[ar * H];
                assert!(present(p), "ar_ridge forecasts net at h=1");
                err += (p as f64 - net(t + 1)).abs();
                n += 1;
            }
        }
        (f.series.net.link(), err / n as f64)
    };
    let (link, with) = run(true);
    let (none, alone) = run(false);
    // companions_of(Net) = [Cpu, Mem, Disk]: cpu is companion 0.
    assert_eq!(link, Some((0, 2)), "net links to cpu two steps earlier");
    assert_eq!(none, None);
    assert!(
        with < 0.4 * alone,
        "with the link the AR model's h=1 MAE ({with:.2}) is far below alone ({alone:.2})"
    );
}

/// A companion that is mere noise, unrelated to the series, is not linked.
#[test]
fn an_unrelated_companion_is_not_linked() {
    let mut a = Lcg(1);
    let mut b = Lcg(2);
    let mut f = TenantForecaster::new(Config::default());
    for t in 0..1500 {
        let v = PerResource {
            cpu: 2.0 + a.next(),
            mem: 1000.0 + 100.0 * b.next(),
            disk: 10.0,
            net: 5.0,
        };
        f.update(T0 + 300 * t as i64, v).unwrap();
    }
    assert_eq!(f.series.cpu.link(), None);
    assert_eq!(f.series.mem.link(), None);
}
