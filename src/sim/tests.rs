//! The simulator on hand-made traces whose answers are known, and its invariants.

use super::metrics::Report;
use super::replay::{Replay, ReplayTenant};
use super::*;
use crate::allocate::Inputs;
use crate::backend::trace::CORE_MHZ;
use crate::collect::Observation;
use crate::model::STEP_S;
use crate::model::{PerResource, Resource};
use crate::plan::{Allocation, TenantAllocation};
use std::sync::Mutex;

/// A replay from per-tenant cpu demand rows (MHz); mem, disk and net demand follow cpu × 10,
/// × 2 and × 3. NaN = absent.
fn replay(cpu: &[&[f32]]) -> Arc<Replay> {
    let steps = cpu[0].len();
    let tenants = cpu
        .iter()
        .enumerate()
        .map(|(i, d)| ReplayTenant {
            name: format!("{}", i + 1),
            demand: [
                d.to_vec(),
                d.iter().map(|v| v * 10.0).collect(),
                d.iter().map(|v| v * 2.0).collect(),
                d.iter().map(|v| v * 3.0).collect(),
            ],
            cores: vec![2.0; steps],
            mem_capacity_kib: vec![1e6; steps],
        })
        .collect();
    Arc::new(Replay {
        t0: 1_000_000 * STEP_S,
        steps,
        tenants,
        short_gaps: 0,
        long_gaps: 0,
    })
}

/// Allocates fixed amounts (trace units, converted) to every tenant, recording what it saw.
struct Fixed {
    cpu_mhz: Vec<f64>,
    seen: Arc<Mutex<Vec<Observation>>>,
}

impl Policy for Fixed {
    fn describe(&self) -> String {
        "fixed".into()
    }
    fn decide(&mut self, input: &Inputs<'_>) -> Allocation {
        let obs = input.obs;
        self.seen.lock().unwrap().push(obs.clone());
        Allocation {
            tenants: obs
                .tenants
                .iter()
                .map(|t| {
                    let i: usize = t.id.name.parse::<usize>().unwrap() - 1;
                    let mhz = self.cpu_mhz[i];
                    TenantAllocation {
                        uuid: t.id.uuid.clone(),
                        reasons: None,
                        amounts: PerResource {
                            cpu: mhz / CORE_MHZ,
                            mem: mhz * 10.0,
                            disk: mhz * 2.0 * 1024.0,
                            net: mhz * 3.0 * 1024.0,
                        },
                    }
                })
                .collect(),
        }
    }
}

fn big_host(replay: &Replay) -> HostModel {
    HostModel::sized(replay, 100.0, 1e12)
}

/// Replay `policy` through the control loop; the metrics of what the host served.
fn drive(
    replay: &Arc<Replay>,
    classes: Vec<Class>,
    host: HostModel,
    policy: Box<dyn Policy>,
) -> (PerResource<metrics::Metrics>, metrics::Metrics) {
    let mut backend = TraceBackend::new(Arc::clone(replay), classes, host);
    let mut c = Controller::new(None).with_policy(policy);
    let mut tally = metrics::Tally::default();
    while !backend.finished() {
        c.step(&mut backend).unwrap();
        tally.record(backend.served());
    }
    tally.metrics(STEP_S as f64)
}

#[test]
fn metric_arithmetic_through_the_loop() {
    // Tenant 1 (gold) demands 100 then 300 MHz with a cap of 200; tenant 2 (bronze) demands
    // 50 twice with a cap of 100.
    let r = replay(&[&[100.0, 300.0], &[50.0, 50.0]]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let policy = Fixed {
        cpu_mhz: vec![200.0, 100.0],
        seen: Arc::clone(&seen),
    };
    let (per, overall) = drive(
        &r,
        vec![Class::Gold, Class::Bronze],
        big_host(&r),
        Box::new(policy),
    );
    for res in Resource::ALL {
        let m = per.get(res);
        // demand 500 (×k), served 100+200+50+50 = 400 → shortfall 100/500.
        assert!((m.shortfall - 0.2).abs() < 1e-9, "{res}: {m:?}");
        // weighted: 4·100 / (4·400 + 1·100)
        assert!(
            (m.weighted_shortfall - 400.0 / 1700.0).abs() < 1e-9,
            "{res}"
        );
        // allocated 600, unused 100+0+50+50 = 200
        assert!((m.slack - 200.0 / 600.0).abs() < 1e-9, "{res}");
        assert_eq!(m.violation_rate.gold, Some(0.5));
        assert_eq!(m.violation_rate.bronze, Some(0.0));
        assert_eq!(m.violation_rate.silver, None);
        assert_eq!(m.changes_per_tenant_day, 0.0);
    }
    assert!((overall.shortfall - 0.2).abs() < 1e-9);
    // The policy saw served usage (capped at 200), never the demand of 300, and the cap.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[0].tenants.iter().all(|t| t.usage.cpu.is_none()),
        "nothing served yet"
    );
    let t1 = &seen[1].tenants[0];
    assert!((t1.usage.cpu.unwrap() * CORE_MHZ - 100.0).abs() < 1e-6);
    assert!(!t1.capped.cpu);
    assert!((t1.usage.mem.unwrap() - 1000.0).abs() < 1.0);
    assert!((t1.usage.disk.unwrap() - 200.0 * 1024.0).abs() < 1.0);
}

#[test]
fn policies_observe_served_usage_and_caps_only() {
    let r = replay(&[&[100.0, 300.0, 300.0]]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let policy = Fixed {
        cpu_mhz: vec![200.0],
        seen: Arc::clone(&seen),
    };
    drive(&r, vec![Class::Silver], big_host(&r), Box::new(policy));
    let seen = seen.lock().unwrap();
    let t = &seen[2].tenants[0];
    assert!(
        (t.usage.cpu.unwrap() * CORE_MHZ - 200.0).abs() < 1e-6,
        "served, not 300"
    );
    assert!(t.capped.cpu && t.capped.mem && t.capped.disk && t.capped.net);
}

#[test]
fn no_policy_reads_an_interval_before_deciding_it() {
    // Two replays equal up to interval 20 and different after: every baseline's decisions
    // up to and including interval 20 must be the same on both (they see only the past);
    // the oracle's up to 19 (it alone sees the interval it decides).
    let base: Vec<f32> = (0..40).map(|k| 100.0 + (k % 7) as f32 * 30.0).collect();
    let mut other = base.clone();
    for v in &mut other[20..] {
        *v *= 5.0;
    }
    let second: Vec<f32> = (0..40).map(|k| 80.0 + (k % 5) as f32 * 50.0).collect();
    let a = replay(&[&base, &second]);
    let b = replay(&[&other, &second]);
    let host = HostModel::sized(&a, 0.8, 1e12);
    struct Recorder(Box<dyn Policy>, Arc<Mutex<Vec<Allocation>>>);
    impl Policy for Recorder {
        fn describe(&self) -> String {
            self.0.describe()
        }
        fn decide(&mut self, input: &Inputs<'_>) -> Allocation {
            let a = self.0.decide(input);
            self.1.lock().unwrap().push(a.clone());
            a
        }
    }
    for name in POLICIES {
        let mut logs = Vec::new();
        for r in [&a, &b] {
            let log = Arc::new(Mutex::new(Vec::new()));
            let (p, _) = make_policy(name, None, Tuning::default(), r).unwrap();
            drive(
                r,
                vec![Class::Gold, Class::Bronze],
                host,
                Box::new(Recorder(p, Arc::clone(&log))),
            );
            logs.push(Arc::try_unwrap(log).unwrap().into_inner().unwrap());
        }
        let same_until = if name == "oracle" { 20 } else { 21 };
        assert_eq!(logs[0][..same_until], logs[1][..same_until], "{name}");
        if name == "oracle" {
            assert_ne!(logs[0][20], logs[1][20], "the oracle does see interval 20");
        }
    }
}

/// A pseudo-random replay: n tenants with daily-ish cycles, noise and gaps.
fn random_replay(n: usize, steps: usize, seed: u64) -> Arc<Replay> {
    let mut s = seed;
    let mut rnd = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 11) as f32 / (1u64 << 53) as f32
    };
    let rows: Vec<Vec<f32>> = (0..n)
        .map(|i| {
            let scale = 100.0 + 900.0 * rnd();
            let start = (rnd() * steps as f32 * 0.3) as usize;
            (0..steps)
                .map(|k| {
                    if k < start || (k / 50 + i) % 9 == 0 {
                        f32::NAN
                    } else {
                        let phase = (k as f32 / 48.0 * std::f32::consts::TAU).sin();
                        scale * (1.0 + 0.6 * phase) * (0.7 + 0.6 * rnd())
                    }
                })
                .collect()
        })
        .collect();
    let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
    replay(&refs)
}

fn run_all(r: &Arc<Replay>, classes: &[Class], fraction: f64, policies: &[&str]) -> Vec<Report> {
    let host = HostModel::sized(r, fraction, 1e12);
    policies
        .iter()
        .map(|p| {
            run(
                &Scenario {
                    replay: r,
                    classes,
                    host,
                    tuning: Tuning::default(),
                    rules: &Rules::default(),
                },
                p,
                None,
                &mut |_| {},
            )
            .expect("capacity respected")
        })
        .collect()
}

#[test]
fn baselines_respect_capacity_and_the_oracle_is_best() {
    check_capacity_and_the_oracle(40, 400, &["static", "reactive", "vpa", "nsigma", "oracle"]);
}

#[test]
fn prescient_respects_capacity_and_the_oracle_is_better() {
    // Smaller: the forecasters are slow in a debug build.
    check_capacity_and_the_oracle(12, 200, &["prescient", "oracle"]);
}

fn check_capacity_and_the_oracle(tenants: usize, steps: usize, policies: &[&str]) {
    let r = random_replay(tenants, steps, 3);
    let classes = classes::assign(
        tenants,
        &classes::parse_ratios("gold=0.2,silver=0.5,bronze=0.3").unwrap(),
        9,
    );
    for fraction in [0.5, 1.0, 1.5] {
        // `run` fails if any interval's allocations exceed the capacity (the trace backend
        // refuses them), so finishing is the Σ allocations ≤ capacity check.
        let reports = run_all(&r, &classes, fraction, policies);
        let oracle = reports.iter().find(|x| x.policy == "oracle").unwrap();
        for rep in &reports {
            for res in Resource::ALL {
                let m = rep.resources.get(res);
                assert!(
                    (0.0..=1.0).contains(&m.shortfall),
                    "{} {res}: served ≤ demand",
                    rep.policy
                );
                assert!((0.0..=1.0).contains(&m.slack), "{} {res}", rep.policy);
            }
            assert!(
                oracle.overall.weighted_shortfall <= rep.overall.weighted_shortfall + 1e-12,
                "fraction {fraction}: oracle {} vs {} {}",
                oracle.overall.weighted_shortfall,
                rep.policy,
                rep.overall.weighted_shortfall
            );
        }
        if fraction >= 1.5 {
            assert!(
                oracle.overall.shortfall < 1e-9,
                "with room to spare the oracle meets all demand"
            );
        }
    }
}

#[test]
fn knobs_are_checked() {
    let r = random_replay(2, 10, 1);
    assert!(make_policy("static", Some(1.0), Tuning::default(), &r).is_err());
    assert!(make_policy("vpa", Some(1.5), Tuning::default(), &r).is_err());
    assert!(make_policy("reactive", Some(-0.1), Tuning::default(), &r).is_err());
    assert!(make_policy("nsigma", Some(f64::NAN), Tuning::default(), &r).is_err());
    assert!(matches!(
        make_policy("mom", None, Tuning::default(), &r),
        Err(SimError::UnknownPolicy(_))
    ));
    assert_eq!(
        make_policy("vpa", None, Tuning::default(), &r).unwrap().1,
        Some(0.9)
    );
}

#[test]
fn balloon_speed_limits_how_fast_memory_is_taken_back() {
    // Allocation drops from 1000 to 100 KiB·10 in one interval; at 1 KiB/s the balloon takes
    // back only 300 KiB per interval.
    let r = replay(&[&[100.0, 100.0, 100.0]]);
    struct Drop3(usize);
    impl Policy for Drop3 {
        fn describe(&self) -> String {
            "drop".into()
        }
        fn decide(&mut self, input: &Inputs<'_>) -> Allocation {
            let obs = input.obs;
            self.0 += 1;
            let mem = if self.0 == 1 { 1000.0 } else { 100.0 };
            Allocation {
                tenants: obs
                    .tenants
                    .iter()
                    .map(|t| TenantAllocation {
                        uuid: t.id.uuid.clone(),
                        reasons: None,
                        amounts: PerResource {
                            cpu: 1.0,
                            mem,
                            disk: 1e6,
                            net: 1e6,
                        },
                    })
                    .collect(),
            }
        }
    }
    let mut host = HostModel::sized(&r, 100.0, 1.0);
    host.capacity.mem = 1e9;
    let (per, _) = drive(&r, vec![Class::Gold], host, Box::new(Drop3(0)));
    // Allocations: 1000, 700 (not 100), 400: demand 1000 each time → unmet 0, 300, 600.
    let m = per.mem;
    assert!((m.shortfall - 900.0 / 3000.0).abs() < 1e-9, "{m:?}");
}

#[test]
fn a_controller_without_a_policy_is_refused_by_the_replay_instead_of_looping() {
    let r = replay(&[&[100.0, 300.0], &[50.0, 50.0]]);
    let mut backend = TraceBackend::new(Arc::clone(&r), vec![Class::Gold; 2], big_host(&r));
    let mut c = Controller::new(None);
    c.step(&mut backend)
        .expect("the first interval is observed");
    let e = c.step(&mut backend).expect_err("the same interval again");
    let msg = e.to_string();
    assert!(msg.contains("interval 0 was observed twice"), "{msg}");
    assert!(msg.contains("policy"), "{msg}");
    assert!(!backend.finished());
}

#[test]
fn reactive_grows_out_of_a_cap_unless_told_not_to() {
    // A step from 100 to 1000 MHz: with no margin, plain reactive is stuck at what its cap
    // let through (served 100, so it asks 100 again); growing ×1.5 after a capped interval
    // reaches the new level within ⌈log1.5 10⌉ = 6 intervals.
    let mut d = vec![100.0f32; 5];
    d.extend([1000.0f32; 30]);
    let r = replay(&[&d]);
    // Capacity = the peak (the floor, 5% of the static share, stays below 100).
    let host = HostModel::sized(&r, 1.0, 1e12);
    let shortfall = |g: f64| {
        let tuning = Tuning {
            reactive_cap_growth: g,
            ..Tuning::default()
        };
        run(
            &Scenario {
                replay: &r,
                classes: &[Class::Gold],
                host,
                tuning,
                rules: &Rules::default(),
            },
            "reactive",
            Some(0.0),
            &mut |_| {},
        )
        .unwrap()
        .resources
        .cpu
        .shortfall
    };
    let stuck = shortfall(1.0);
    let grows = shortfall(1.5);
    assert!(stuck > 0.7, "ratchets at the cap: {stuck}");
    assert!(grows < 0.2, "grows out of it: {grows}");
}

/// Allocations of tenant 0's cpu (trace MHz) each interval, as `policy` decided them.
fn cpu_allocations(r: &Arc<Replay>, host: HostModel, name: &str, knob: Option<f64>) -> Vec<f64> {
    let (policy, _) = make_policy(name, knob, Tuning::default(), r).unwrap();
    let mut backend = TraceBackend::new(Arc::clone(r), vec![Class::Gold; r.tenants.len()], host);
    let mut c = controller(name, policy, Rules::default());
    let mut out = Vec::new();
    while !backend.finished() {
        c.step(&mut backend).unwrap();
        out.push(backend.served()[0].allocation[0]);
    }
    out
}

#[test]
fn prescient_rises_before_a_recurring_step_and_reactive_after() {
    // An hourly cycle: 100 MHz for 45 minutes, then 1000 for 15; three days of it.
    let d: Vec<f32> = (0..864)
        .map(|k| if k % 12 >= 9 { 1000.0 } else { 100.0 })
        .collect();
    let r = replay(&[&d]);
    let host = HostModel::sized(&r, 1.5, 1e12);
    let ready_at_step = |alloc: &[f64]| {
        // On the last day: how often the interval where the step comes was already
        // allocated 90 % of it.
        let starts: Vec<usize> = (576..864).filter(|k| k % 12 == 9).collect();
        starts.iter().filter(|&&k| alloc[k] >= 900.0).count() as f64 / starts.len() as f64
    };
    let p = ready_at_step(&cpu_allocations(&r, host, "prescient", None));
    let q = ready_at_step(&cpu_allocations(&r, host, "reactive", None));
    assert!(p >= 0.8, "prescient ready for the step in {p} of the hours");
    assert!(q <= 0.1, "reactive is late: ready in {q}");
}

#[test]
fn the_report_counts_each_policys_rises_as_the_daemon_does() {
    // An hourly cycle: 100 MHz for 30 minutes, then 1000 for 30; 72 steps over three days.
    let d: Vec<f32> = (0..864)
        .map(|k| if k % 12 >= 6 { 1000.0 } else { 100.0 })
        .collect();
    let r = replay(&[&d]);
    let reports = run_all(&r, &[Class::Gold], 1.5, &["prescient", "reactive"]);
    let (p, q) = (reports[0].rises.cpu, reports[1].rises.cpu);
    // Each step counted once (the first, before the loop has a base to compare with, and
    // one still open when the replay ends, may not be).
    for c in [p, q] {
        let n = c.ahead + c.late + c.not_covered;
        assert!((66..=72).contains(&n), "prescient {p:?}, reactive {q:?}");
    }
    // Once the cycle is learnt (a day), prescient is ready at each step. reactive never is:
    // its cap grows 1.5× an interval, and the rise shows once the served usage has grown
    // past the threshold under it.
    assert!(p.ahead >= 40, "{p:?}");
    assert_eq!(q.ahead, 0, "{q:?}");
    assert_eq!(reports[0].rises.mem.ahead + reports[0].rises.mem.late, 0);
}

#[test]
fn prescient_probes_out_of_a_cap() {
    // A step the forecasts cannot know: served usage is capped at the allocation, and a
    // capped tenant gets ×1.5 more at least until it is not capped.
    let mut d = vec![100.0f32; 300];
    d.extend([1000.0f32; 40]);
    let r = replay(&[&d]);
    let host = HostModel::sized(&r, 1.0, 1e12);
    let alloc = cpu_allocations(&r, host, "prescient", None);
    assert!(alloc[300] < 1000.0, "the step was not foreseen");
    assert!(
        alloc[300 + 8..].iter().all(|&a| a >= 999.0),
        "grown out of the cap within 8 intervals: {:?}",
        &alloc[300..315]
    );
}

#[test]
fn prescient_takes_a_tenant_back_after_a_gap() {
    // Away for an hour: its last forecast does not reach the interval it comes back in.
    let mut d = vec![200.0f32; 100];
    d.extend([f32::NAN; 12]);
    d.extend([300.0f32; 20]);
    let r = replay(&[&d, &[100.0; 132]]);
    let host = HostModel::sized(&r, 2.0, 1e12);
    let scenario = Scenario {
        replay: &r,
        classes: &[Class::Gold, Class::Silver],
        host,
        tuning: Tuning::default(),
        rules: &Rules::default(),
    };
    let report = run(&scenario, "prescient", None, &mut |_| {}).unwrap();
    assert!(
        report.resources.cpu.shortfall < 0.05,
        "{:?}",
        report.resources.cpu
    );
}

#[test]
fn an_override_holds_in_the_replay_from_the_next_interval() {
    use crate::allocate::overrides::Override;
    // Two tenants demanding 1000 MHz each interval on a host with room for both.
    let r = replay(&[&[1000.0; 6], &[1000.0; 6]]);
    let (policy, _) = crate::allocate::kind::PolicyKind::Reactive
        .build(None, Default::default())
        .unwrap();
    let mut backend = TraceBackend::new(Arc::clone(&r), vec![Class::Silver; 2], big_host(&r));
    let mut c = Controller::new(None).with_policy(policy);
    let mut served_cpu = Vec::new();
    for k in 0..6 {
        let obs = c.step(&mut backend).unwrap();
        if k == 2 {
            let id = &obs.tenants.iter().find(|t| &*t.id.name == "1").unwrap().id;
            let mut o = Override::of(id, "root (uid 0)".into(), 0);
            o.class = Some(Class::Bronze);
            o.max.cpu = Some(0.1); // cores
            c.set_override(o).unwrap();
        }
        served_cpu.push(backend.served()[0].allocation[0]);
    }
    let cap_mhz = 0.1 * CORE_MHZ;
    assert!(
        served_cpu[2] > cap_mhz,
        "before the override: {served_cpu:?}"
    );
    for (k, mhz) in served_cpu.iter().enumerate().skip(3) {
        assert!(
            *mhz <= cap_mhz + 1e-6,
            "interval {k}: {mhz} MHz over the override's 0.1 cores"
        );
    }
    assert_eq!(
        backend.served()[0].class,
        Class::Silver,
        "the replay's class is its own"
    );
}
