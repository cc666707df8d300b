//! Real-VM tests against the lab (`scripts/lab up`: TCG guests under libvirtd with recurring
//! CPU, memory, disk and network phases). `scripts/test` brings the lab up and runs these
//! with `--include-ignored --test-threads=1`; a plain `cargo test` skips them as ignored.

use prescient::backend::Backend;
use prescient::backend::libvirt::LibvirtBackend;
use prescient::collect::{Observation, TenantStats};
use prescient::model::Class;
use prescient::pipeline::Controller;
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/lab_host.rs"]
mod lab_host;
use lab_host::{URI, daemon as lab_daemon, virsh};

fn running_lab_tenants() -> Vec<String> {
    lab_host::domains(&["--state-running"], "prescient-lab-")
}

fn serial_log(name: &str) -> String {
    format!("/var/log/libvirt/qemu/{name}-serial.log")
}

/// `lab.phase=` from the domain's kernel command line.
fn phase_seconds(name: &str) -> u64 {
    let xml = virsh(&["dumpxml", name]);
    xml.split_whitespace()
        .find_map(|w| w.strip_prefix("lab.phase="))
        .and_then(|v| {
            v.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .expect("lab.phase= on the kernel command line")
}

/// Phase markers seen so far on a guest's console, with the host time they were first seen.
struct PhaseLog {
    path: String,
    seen: Vec<(Instant, String)>,
}

impl PhaseLog {
    fn new(name: &str) -> Self {
        let mut log = PhaseLog {
            path: serial_log(name),
            seen: Vec::new(),
        };
        // Markers already in the file belong to the past: remember them as old.
        let old = Instant::now() - Duration::from_secs(3600);
        for p in Self::markers(&log.path) {
            log.seen.push((old, p));
        }
        log
    }

    fn markers(path: &str) -> Vec<String> {
        let text = std::fs::read(path).unwrap_or_default();
        String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("PRESCIENT-LAB PHASE "))
            .filter_map(|rest| rest.split_whitespace().next().map(String::from))
            .collect()
    }

    fn poll(&mut self) {
        let all = Self::markers(&self.path);
        let now = Instant::now();
        for p in all.into_iter().skip(self.seen.len()) {
            self.seen.push((now, p));
        }
    }

    /// The phase that covered all of [from, to], with `margin` after its start; None when a
    /// phase boundary falls inside (the rate would mix two phases).
    fn phase_during(&self, from: Instant, to: Instant, margin: Duration) -> Option<&str> {
        let idx = self.seen.iter().rposition(|(t, _)| *t + margin <= from)?;
        let next_started = self
            .seen
            .get(idx + 1)
            .is_some_and(|(t, _)| *t <= to + margin);
        (!next_started).then(|| self.seen[idx].1.as_str())
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Per tenant and phase, the values of one metric.
type Series = HashMap<(String, String), Vec<f64>>;

fn record(series: &mut Series, tenant: &str, phase: &str, v: Option<f64>) {
    if let Some(v) = v {
        series
            .entry((tenant.to_string(), phase.to_string()))
            .or_default()
            .push(v);
    }
}

#[test]
#[ignore = "needs the lab (scripts/lab up); scripts/test runs it"]
fn phases_are_visible_in_collected_samples() {
    let tenants = running_lab_tenants();
    assert!(
        tenants.len() >= 2,
        "the lab runs {tenants:?}; need at least 2 tenants"
    );
    let watched = &tenants[..2];
    let phase_s = phase_seconds(&watched[0]);
    let mut logs: Vec<PhaseLog> = watched.iter().map(|n| PhaseLog::new(n)).collect();

    let mut backend = LibvirtBackend::connect(URI).expect("connecting to libvirt");
    let mut ctl = Controller::new(None);
    let step = Duration::from_secs(1);
    // Every tenant passes through all five phases once, plus a phase of slack.
    let duration = Duration::from_secs(phase_s * 6 + 10);
    let (mut cpu, mut unused, mut disk, mut net_tx) =
        (Series::new(), Series::new(), Series::new(), Series::new());
    let start = Instant::now();
    ctl.step(&mut backend).unwrap();
    let mut prev = Instant::now();
    while start.elapsed() < duration {
        std::thread::sleep(step);
        for l in &mut logs {
            l.poll();
        }
        let obs: Observation = ctl.step(&mut backend).expect("one bulk stats call");
        let now = Instant::now();
        for (name, log) in watched.iter().zip(&logs) {
            let Some(t) = obs.tenants.iter().find(|t| *t.id.name == **name) else {
                panic!("{name} missing from the observation")
            };
            // Balloon stats refresh every 2 s inside the guest: allow that much lag.
            let Some(phase) = log.phase_during(prev, now, Duration::from_secs(3)) else {
                continue;
            };
            record(&mut cpu, name, phase, t.usage.cpu);
            record(
                &mut unused,
                name,
                phase,
                t.mem.unused_kib.map(|v| v as f64 / 1024.0),
            );
            record(&mut disk, name, phase, t.usage.disk);
            let tx = t.nics.iter().map(|n| n.tx_bytes_per_s).sum::<Option<f64>>();
            record(&mut net_tx, name, phase, tx);
        }
        prev = now;
    }

    let get = |s: &Series, n: &str, p: &str| -> Vec<f64> {
        let v = s
            .get(&(n.to_string(), p.to_string()))
            .cloned()
            .unwrap_or_default();
        assert!(
            v.len() >= 3,
            "{n}: only {} samples in its {p} phase",
            v.len()
        );
        v
    };
    for n in watched {
        let (cpu_busy, cpu_idle) = (mean(&get(&cpu, n, "cpu")), mean(&get(&cpu, n, "idle")));
        let (mem_phase, mem_idle) = (
            get(&unused, n, "mem")
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min),
            median(&get(&unused, n, "idle")),
        );
        let (disk_phase, disk_idle) = (mean(&get(&disk, n, "disk")), mean(&get(&disk, n, "idle")));
        let (net_phase, net_idle) = (
            mean(&get(&net_tx, n, "net")),
            mean(&get(&net_tx, n, "idle")),
        );
        eprintln!(
            "{n}: cpu {cpu_busy:.2} vs idle {cpu_idle:.2} cores; balloon unused {mem_phase:.0} \
             vs idle {mem_idle:.0} MiB; disk {:.2} vs idle {:.3} MB/s; net tx {:.2} vs idle \
             {:.3} MB/s",
            disk_phase / 1e6,
            disk_idle / 1e6,
            net_phase / 1e6,
            net_idle / 1e6
        );
        assert!(
            cpu_busy > 0.4 && cpu_busy > cpu_idle + 0.25,
            "{n}: cpu phase not visible"
        );
        assert!(
            mem_phase < mem_idle - 100.0,
            "{n}: mem phase not visible in balloon unused"
        );
        assert!(
            disk_phase > 1e6 && disk_phase > 10.0 * disk_idle,
            "{n}: disk phase not visible"
        );
        assert!(
            net_phase > 2e5 && net_phase > 10.0 * net_idle,
            "{n}: net phase not visible"
        );
    }
}

fn find<'a>(obs: &'a Observation, name: &str) -> Option<&'a TenantStats> {
    obs.tenants.iter().find(|t| &*t.id.name == name)
}

#[test]
#[ignore = "needs the lab (scripts/lab up); scripts/test runs it"]
fn collect_once_json_holds_every_field() {
    let tenants = running_lab_tenants();
    assert!(!tenants.is_empty());
    let out = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["collect", "--once", "--json", "--window", "2", "--uri", URI])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim().lines().count(), 1, "one JSON object");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["host"]["cpus"].as_u64().unwrap() >= 1);
    assert!(v["host"]["memory_free_kib"].as_u64().is_some());
    let arr = v["tenants"].as_array().unwrap();
    for name in &tenants {
        let t = arr
            .iter()
            .find(|t| t["id"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not in the tenants array"));
        let num = |path: &[&str]| {
            let mut x = t;
            for p in path {
                x = if let Ok(i) = p.parse::<usize>() {
                    &x[i]
                } else {
                    &x[*p]
                };
            }
            assert!(x.is_number(), "{name}: {path:?} is {x}");
        };
        assert!(t["id"]["uuid"].as_str().unwrap().len() == 36);
        num(&["vcpus"]);
        num(&["max_memory_kib"]);
        for f in [
            "cores",
            "user_cores",
            "system_cores",
            "utilisation",
            "delay_ratio",
        ] {
            num(&["cpu", f]);
        }
        num(&["cpu", "vcpu_busy", "0"]);
        num(&["cpu", "vcpu_delay", "0"]);
        for f in [
            "balloon_current_kib",
            "balloon_maximum_kib",
            "unused_kib",
            "available_kib",
            "usable_kib",
            "rss_kib",
            "used_kib",
            "swap_in_kib_per_s",
            "swap_out_kib_per_s",
            "major_faults_per_s",
        ] {
            num(&["mem", f]);
        }
        assert_eq!(t["disks"][0]["name"], "vda");
        for f in ["rd_bytes_per_s", "wr_bytes_per_s", "rd_iops", "wr_iops"] {
            num(&["disks", "0", f]);
        }
        for f in [
            "rx_bytes_per_s",
            "tx_bytes_per_s",
            "rx_pkts_per_s",
            "tx_pkts_per_s",
            "rx_drops_per_s",
            "tx_drops_per_s",
        ] {
            num(&["nics", "0", f]);
        }
        for r in ["cpu", "mem", "disk", "net"] {
            num(&["usage", r]);
        }
    }
    let gold = arr
        .iter()
        .find(|t| t["id"]["name"] == "prescient-lab-1")
        .unwrap();
    assert_eq!(gold["policy"]["class"], "gold");
    assert_eq!(gold["policy"]["guarantee"]["cpu"], 0.25);
    assert_eq!(gold["policy"]["limit"]["mem"], 512.0 * 1024.0);
}

fn step_until(
    ctl: &mut Controller,
    backend: &mut LibvirtBackend,
    within: Duration,
    what: &str,
    mut done: impl FnMut(&Observation) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(obs) = ctl.step(backend)
            && done(&obs)
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{what}: not seen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
#[ignore = "needs the lab (scripts/lab up); scripts/test runs it"]
fn domains_vanish_appear_and_metadata_changes_are_seen() {
    let tenants = running_lab_tenants();
    let name = tenants.last().expect("a lab tenant").clone();
    let mut backend = LibvirtBackend::connect(URI).unwrap();
    let mut ctl = Controller::new(None);
    let obs = ctl.step(&mut backend).unwrap();
    let before = find(&obs, &name).expect("tenant observed").policy.class;

    virsh(&["destroy", &name]);
    step_until(
        &mut ctl,
        &mut backend,
        Duration::from_secs(10),
        "vanished",
        |o| o.vanished.iter().any(|t| *t.name == *name) && find(o, &name).is_none(),
    );
    std::fs::write(serial_log(&name), "").ok();
    virsh(&["start", &name]);
    step_until(
        &mut ctl,
        &mut backend,
        Duration::from_secs(20),
        "appeared",
        |o| o.appeared.iter().any(|t| *t.name == *name),
    );

    // A live metadata change arrives as an event: seen within a few cycles, long before
    // the periodic XML refresh (30 cycles) would notice.
    let target = if before == Class::Gold {
        "bronze"
    } else {
        "gold"
    };
    set_live_metadata(&name, &format!("<tenant class=\"{target}\"/>"));
    let took = step_until(
        &mut ctl,
        &mut backend,
        Duration::from_secs(5),
        "metadata event",
        |o| find(o, &name).is_some_and(|t| t.policy.class.name() == target),
    );
    eprintln!("{name}: class change seen after {took:?}");

    // Malformed metadata: the tenant stays monitored with defaults and the error names it.
    set_live_metadata(&name, "<tenant class=\"platinum\"/>");
    step_until(
        &mut ctl,
        &mut backend,
        Duration::from_secs(5),
        "malformed metadata",
        |o| {
            find(o, &name).is_some_and(|t| {
                t.policy.class == Class::Silver
                    && t.policy
                        .metadata_error
                        .as_deref()
                        .is_some_and(|e| e.contains("platinum"))
            })
        },
    );
    // Restore what the lab defined (the persistent definition was never touched).
    virsh(&["destroy", &name]);
    std::fs::write(serial_log(&name), "").ok();
    virsh(&["start", &name]);
    wait_ready(&name);
}

/// Replace the running domain's `<prescient:tenant>` (its persistent definition is kept).
fn set_live_metadata(name: &str, xml: &str) {
    virsh(&[
        "metadata",
        name,
        "https://prescient.dev/xmlns/tenant/1",
        "--key",
        "prescient",
        "--set",
        xml,
        "--live",
    ]);
}

fn wait_ready(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(serial_log(name))
        .unwrap_or_default()
        .contains("PRESCIENT-LAB READY")
    {
        assert!(Instant::now() < deadline, "{name} did not boot again");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[ignore = "needs the lab (scripts/lab up); scripts/test runs it"]
fn reconnects_after_libvirtd_restarts() {
    let mut backend = LibvirtBackend::connect(URI).unwrap();
    let mut ctl = Controller::new(None);
    let n = ctl.step(&mut backend).unwrap().tenants.len();
    assert!(n >= 1);
    restart_libvirtd();
    let took = step_until(
        &mut ctl,
        &mut backend,
        Duration::from_secs(60),
        "reconnect",
        |o| o.tenants.len() == n,
    );
    eprintln!("collection resumed {took:?} after libvirtd restarted");
    assert!(backend.host().unwrap().cpus >= 1);
}

fn restart_libvirtd() {
    let systemd = std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd");
    if systemd {
        assert!(
            Command::new("systemctl")
                .args(["restart", "libvirtd"])
                .status()
                .unwrap()
                .success()
        );
        return;
    }
    let pid = std::fs::read_to_string("/run/libvirtd.pid").expect("/run/libvirtd.pid");
    let pid = pid.trim().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "libvirtd did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        // Null stdio: the daemon outlives the test and must not hold the runner's pipes.
        Command::new("libvirtd")
            .arg("-d")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    );
}

// ---- Actuation: the daemon changes what it chose on the domains ----

/// A lab tenant's live settings as virsh shows them: (vcpu_quota, cpu_shares, balloon
/// actual KiB, vda total_bytes_sec).
fn live_settings(name: &str) -> (i64, u64, u64, u64) {
    let field = |text: &str, key: &str| -> String {
        text.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':').or_else(|| l.split_once(' '))?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("{key} missing in:\n{text}"))
    };
    let sched = virsh(&["schedinfo", name, "--live"]);
    let quota: i64 = field(&sched, "vcpu_quota").parse().unwrap_or(-1);
    let shares: u64 = field(&sched, "cpu_shares").parse().unwrap();
    let mem = virsh(&["dommemstat", name]);
    let actual: u64 = field(&mem, "actual").parse().unwrap();
    let io = virsh(&["blkdeviotune", name, "vda", "--live"]);
    let bytes: u64 = field(&io, "total_bytes_sec").parse().unwrap();
    // cgroup v2 shows "no quota" as a huge number.
    let quota = if quota <= 0 || quota > 1 << 40 {
        -1
    } else {
        quota
    };
    (quota, shares, actual, bytes)
}

fn tc(args: &[&str]) -> String {
    let out = Command::new("tc").args(args).output().expect("running tc");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Give the lab tenants back the settings they boot with.
fn restore_lab(names: &[String]) {
    for n in names {
        virsh(&[
            "schedinfo",
            n,
            "--live",
            "--set",
            "vcpu_quota=-1",
            "cpu_shares=1024",
        ]);
        virsh(&["setmem", n, "512M", "--live"]);
        virsh(&["blkdeviotune", n, "vda", "--live", "--total-bytes-sec", "0"]);
        let all = format!("0-{}", host_cpus() - 1);
        for (vcpu, _) in vcpu_pins(n) {
            virsh(&["vcpupin", n, &vcpu.to_string(), &all, "--live"]);
        }
        virsh(&["emulatorpin", n, &all, "--live"]);
        let ifaces = virsh(&["domiflist", n]);
        for tap in ifaces.split_whitespace().filter(|w| w.starts_with("vnet")) {
            for args in [
                vec!["qdisc", "del", "dev", tap, "root"],
                vec!["qdisc", "del", "dev", tap, "ingress"],
            ] {
                let _ = Command::new("tc").args(&args).output();
            }
            let _ = Command::new("ip")
                .args(["link", "del", &format!("pfb-{tap}")])
                .output();
        }
    }
}

/// The host's CPUs, as libvirt counts them.
fn host_cpus() -> u32 {
    let info = virsh(&["nodeinfo"]);
    (info.lines())
        .find_map(|l| l.strip_prefix("CPU(s):")?.trim().parse().ok())
        .expect("CPU(s) in virsh nodeinfo")
}

/// A domain's vCPUs and the host CPUs each may run on, as `virsh vcpupin` lists them.
fn vcpu_pins(name: &str) -> Vec<(u32, String)> {
    (virsh(&["vcpupin", name, "--live"]).lines())
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.parse().ok()?, w.next()?.to_string()))
        })
        .collect()
}

/// The host CPUs a domain's emulator threads may run on (`virsh emulatorpin`).
fn emulator_pin(name: &str) -> String {
    let out = virsh(&["emulatorpin", name, "--live"]);
    (out.lines())
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim() == "*")
        .map(|(_, v)| v.trim().to_string())
        .next()
        .unwrap_or_else(|| panic!("no emulator pinning in:\n{out}"))
}

/// Run `prescient daemon` on the lab for `seconds` with `args`; returns its log.
fn run_daemon(db: &std::path::Path, args: &[&str], seconds: u64) -> String {
    let log = db.with_extension("log");
    let mut child = lab_daemon(db, &db.with_extension("sock"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting the daemon");
    std::thread::sleep(Duration::from_secs(seconds));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon stopped early:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "daemon exit {status}:\n{text}");
    text
}

/// Per tenant name and resource, the newest accepted change's settings, as JSON.
fn accepted(db: &std::path::Path) -> HashMap<(String, String), (f64, serde_json::Value)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut q = c
        .prepare(
            "SELECT t.name, a.resource, a.wanted, a.settings_json FROM actuations a
             JOIN tenants t ON t.id = a.tenant_id WHERE a.accepted = 1 ORDER BY a.ts_ms",
        )
        .unwrap();
    let rows = q
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, f64>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .unwrap();
    let mut out = HashMap::new();
    for row in rows {
        let (name, resource, wanted, json) = row.unwrap();
        out.insert(
            (name, resource),
            (wanted, serde_json::from_str(&json).unwrap()),
        );
    }
    out
}

#[test]
#[ignore = "needs the lab (scripts/lab up); scripts/test runs it"]
fn the_daemon_sets_what_it_chose_on_the_domains() {
    let tenants = running_lab_tenants();
    assert!(tenants.len() >= 2, "the lab runs {tenants:?}");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profile.db");
    let rules = dir.path().join("rules.toml");
    // Limits the lab's guests can live with, low enough to be seen in every setting.
    let mut text = String::new();
    for class in ["gold", "silver", "bronze"] {
        text += &format!(
            "[classes.{class}]\nlimit = {{ cpu_cores = 0.6, mem_mib = 384, disk_bytes_per_s = 20971520, net_bytes_per_s = 2500000 }}\n"
        );
    }
    std::fs::write(&rules, text).unwrap();
    let rules = rules.to_str().unwrap();
    // The host has memory to spare: let the balloon move anyway.
    let config = dir.path().join("prescient.toml");
    std::fs::write(&config, "[actuate]\nballoon_below_host_free = 1.0\n").unwrap();
    let config = config.to_str().unwrap();
    let args = [
        "--config",
        config,
        "--policy",
        "static",
        "--policy-file",
        rules,
    ];
    let log = run_daemon(&db, &args, 16);
    assert!(log.contains("allocations are applied each cycle"), "{log}");
    let chosen = accepted(&db);
    // Give the balloons time to reach their targets (TCG: seconds per GiB).
    std::thread::sleep(Duration::from_secs(5));
    let mut seen = (0, 0, 0);
    let mut taps: Vec<String> = Vec::new();
    for name in &tenants {
        let (quota, shares, actual, bytes) = live_settings(name);
        if let Some((_, s)) = chosen.get(&(name.clone(), "cpu".into())) {
            assert_eq!(
                quota,
                s[0]["vcpu_quota_us"].as_i64().unwrap(),
                "{name}: vcpu_quota"
            );
            assert_eq!(
                shares,
                s[0]["cpu_shares"].as_u64().unwrap(),
                "{name}: cpu_shares"
            );
            seen.0 += 1;
        }
        if let Some((_, s)) = chosen.get(&(name.clone(), "mem".into())) {
            let target = s[0]["target_kib"].as_u64().unwrap();
            assert!(
                actual.abs_diff(target) <= 4096,
                "{name}: balloon actual {actual} KiB, target {target} KiB"
            );
            seen.1 += 1;
        }
        if let Some((_, s)) = chosen.get(&(name.clone(), "disk".into())) {
            assert_eq!(
                bytes,
                s[0]["total_bytes_sec"].as_u64().unwrap(),
                "{name}: total_bytes_sec"
            );
            seen.2 += 1;
        }
        if let Some((_, s)) = chosen.get(&(name.clone(), "net".into())) {
            let tap = s[0]["tap"].as_str().unwrap().to_string();
            let mbit = s[0]["bytes_per_s"].as_u64().unwrap() * 8 / 1_000_000;
            let rate = format!("rate {mbit}Mbit");
            let class = tc(&["-s", "class", "show", "dev", &tap]);
            assert!(
                class.contains(&rate),
                "{name}: inbound on {tap} not at {rate}:\n{class}"
            );
            let ifb = tc(&["qdisc", "show", "dev", &format!("pfb-{tap}")]);
            assert!(
                ifb.contains("tbf") && ifb.contains(&rate),
                "{name}: outbound:\n{ifb}"
            );
            taps.push(tap);
        }
    }
    restore_lab(&tenants);
    // Every tenant's vNIC was shaped (none is at boot).
    assert_eq!(taps.len(), tenants.len(), "net changes: {chosen:?}");
    // Every tenant's disk was throttled (none is at boot); CPU and balloon moved on every
    // tenant but the first, whose metadata (limit 1 core, 512 MiB) is what it boots with.
    assert_eq!(seen.2, tenants.len(), "disk changes: {chosen:?}");
    assert!(seen.0 >= tenants.len() - 1, "cpu changes: {chosen:?}");
    assert!(seen.1 >= tenants.len() - 1, "balloon changes: {chosen:?}");

    // The balloon never went below the guest's floor: what it used then plus 64 MiB.
    let c = rusqlite::Connection::open(&db).unwrap();
    let below: Vec<(String, f64, f64)> = c
        .prepare(
            "SELECT t.name, a.wanted, s.mem_used_kib FROM actuations a
             JOIN tenants t ON t.id = a.tenant_id
             JOIN samples s ON s.tenant_id = a.tenant_id AND s.ts_ms = a.ts_ms
             WHERE a.resource = 'mem' AND s.mem_used_kib IS NOT NULL
               AND a.wanted < s.mem_used_kib + 65536 - 1",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        below.is_empty(),
        "balloon targets below the guest floor: {below:?}"
    );
}

#[test]
#[ignore = "needs the lab (scripts/lab up); scripts/test runs it"]
fn a_dry_run_changes_nothing_on_any_domain() {
    let tenants = running_lab_tenants();
    restore_lab(&tenants);
    std::thread::sleep(Duration::from_secs(3));
    let before: Vec<_> = tenants.iter().map(|n| live_settings(n)).collect();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profile.db");
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[classes.silver]\nlimit = { cpu_cores = 0.3, mem_mib = 300, disk_bytes_per_s = 1e7 }\n\
         [classes.bronze]\nlimit = { cpu_cores = 0.3, mem_mib = 300, disk_bytes_per_s = 1e7 }\n",
    )
    .unwrap();
    let log = run_daemon(
        &db,
        &[
            "--policy",
            "static",
            "--dry-run",
            "--policy-file",
            rules.to_str().unwrap(),
        ],
        10,
    );
    assert!(log.contains("dry run, not applied"), "{log}");
    let after: Vec<_> = tenants.iter().map(|n| live_settings(n)).collect();
    assert_eq!(
        before, after,
        "settings of {tenants:?} changed in a dry run"
    );
    let c = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM actuations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0, "a dry run records no change as made");
}

#[test]
#[ignore = "needs the lab (scripts/lab up); scripts/test runs it"]
fn a_refused_setting_is_a_denial_with_libvirts_error() {
    use prescient::plan::{Change, DomainPlan, Plan, Setting};
    let mut backend = LibvirtBackend::connect(URI).expect("connecting to libvirt");
    let snap = backend.snapshot().unwrap();
    let d = snap
        .domains
        .iter()
        .find(|d| d.id.name.starts_with("prescient-lab-"))
        .expect("a lab tenant");
    let over = d.config.max_memory_kib + 1024 * 1024;
    let plan = Plan {
        domains: vec![DomainPlan {
            id: d.id.clone(),
            changes: vec![Change {
                resource: prescient::model::Resource::Mem,
                amount: over as f64,
                previous: None,
                settings: vec![Setting::Balloon { target_kib: over }],
            }],
        }],
    };
    let applied = backend.apply(&plan).expect("the backend itself works");
    assert!(applied.accepted.is_empty(), "{applied:?}");
    let denial = &applied.denials[0];
    assert_eq!(denial.code, Some(8), "VIR_ERR_INVALID_ARG: {denial:?}");
    assert!(
        denial.message.contains("max"),
        "libvirt's message: {denial:?}"
    );
}

#[test]
#[ignore = "needs the lab (scripts/lab up); scripts/test runs it"]
fn on_exit_restore_gives_the_domains_back_what_they_had_after_a_restart() {
    let tenants = running_lab_tenants();
    restore_lab(&tenants);
    // Settings an operator made by hand before prescient ever ran (taps left unshaped).
    for n in &tenants {
        virsh(&[
            "schedinfo",
            n,
            "--live",
            "--set",
            "vcpu_quota=60000",
            "cpu_shares=777",
        ]);
        virsh(&["setmem", n, "480M", "--live"]);
        virsh(&[
            "blkdeviotune",
            n,
            "vda",
            "--live",
            "--total-bytes-sec",
            "12345678",
        ]);
    }
    std::thread::sleep(Duration::from_secs(3));
    let before: Vec<_> = tenants.iter().map(|n| live_settings(n)).collect();
    for (b, n) in before.iter().zip(&tenants) {
        assert_eq!((b.0, b.1, b.3), (60000, 777, 12345678), "{n}: set by hand");
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profile.db");
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[classes.silver]\nlimit = { cpu_cores = 0.5, mem_mib = 384, disk_bytes_per_s = 1e7, \
         net_bytes_per_s = 1e6 }\n[classes.bronze]\nlimit = { cpu_cores = 0.5, mem_mib = 384, \
         disk_bytes_per_s = 1e7, net_bytes_per_s = 1e6 }\n",
    )
    .unwrap();
    let keep = dir.path().join("keep.toml");
    std::fs::write(&keep, "[actuate]\nballoon_below_host_free = 1.0\n").unwrap();
    let restore = dir.path().join("restore.toml");
    std::fs::write(
        &restore,
        "[actuate]\nballoon_below_host_free = 1.0\non_exit = \"restore\"\n",
    )
    .unwrap();
    let rules = rules.to_str().unwrap();
    let args = |config| {
        [
            "--config",
            config,
            "--policy",
            "static",
            "--policy-file",
            rules,
        ]
    };
    // Run 1 changes the domains and leaves its settings in force.
    let log = run_daemon(&db, &args(keep.to_str().unwrap()), 10);
    assert!(!log.contains("domains given back"), "{log}");
    let changed: Vec<_> = tenants.iter().map(|n| live_settings(n)).collect();
    assert_ne!(changed, before, "run 1 changed the domains");
    // Run 2 first sees run 1's settings, and gives back those of before run 1.
    let log = run_daemon(&db, &args(restore.to_str().unwrap()), 10);
    assert!(log.contains("domains given back"), "{log}");
    std::thread::sleep(Duration::from_secs(4)); // the balloons deflate
    let after: Vec<_> = tenants.iter().map(|n| live_settings(n)).collect();
    for ((b, a), n) in before.iter().zip(&after).zip(&tenants) {
        assert_eq!(
            (b.0, b.1, b.3),
            (a.0, a.1, a.3),
            "{n}: quota, shares and disk throttle given back"
        );
        assert!(
            b.2.abs_diff(a.2) <= 4096,
            "{n}: balloon {} KiB, had {} KiB",
            a.2,
            b.2
        );
        let ifaces = virsh(&["domiflist", n]);
        for tap in ifaces.split_whitespace().filter(|w| w.starts_with("vnet")) {
            let qdiscs = tc(&["qdisc", "show", "dev", tap]);
            assert!(
                !qdiscs.contains("htb"),
                "{n}: {tap} left unshaped: {qdiscs}"
            );
        }
    }
    restore_lab(&tenants);
}

// ---- The operator steers the daemon on real guests through the CLI ----

/// `prescient --socket SOCKET ARGS`, its stdout (it must succeed).
fn cli(socket: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "prescient {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cli_json(socket: &std::path::Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&cli(socket, args)).unwrap()
}

/// Start the daemon on the lab with `args`, its control socket at `socket`; wait until
/// `tenant` has a forecast.
fn start_steered(
    db: &std::path::Path,
    socket: &std::path::Path,
    args: &[&str],
    tenant: &str,
) -> Running {
    let log = db.with_extension("log");
    let child = lab_daemon(db, socket)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap(),
        )
        .spawn()
        .unwrap();
    let mut daemon = Running(Some(child));
    let t0 = Instant::now();
    loop {
        if let Some(s) = daemon.0.as_mut().unwrap().try_wait().unwrap() {
            panic!(
                "daemon exited ({s}):\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        let out = Command::new(env!("CARGO_BIN_EXE_prescient"))
            .arg("--socket")
            .arg(socket)
            .args(["explain", tenant, "--json"])
            .output()
            .unwrap();
        if out.status.success()
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            && v["steps"].as_array().is_some_and(|s| s.len() >= 3)
        {
            return daemon;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "no forecast of {tenant} in 90 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A daemon the test started: if the test fails before [`stop`], it is killed and the lab
/// given back its boot settings (a daemon left running, or its settings, would steer the
/// lab under the tests that follow).
struct Running(Option<std::process::Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
            restore_lab(&running_lab_tenants());
        }
    }
}

fn stop(mut daemon: Running) {
    let mut child = daemon.0.take().unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
#[ignore = "needs the lab (scripts/lab up); scripts/test runs it"]
fn an_override_and_an_intent_set_through_the_cli_act_on_the_lab_and_survive_a_restart() {
    let tenants = running_lab_tenants();
    let name = tenants.first().expect("a lab tenant").clone();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profile.db");
    let socket = dir.path().join("prescient.sock");
    let config = dir.path().join("prescient.toml");
    std::fs::write(&config, "[forecast]\nbucket_seconds = 10\n").unwrap();
    let config = config.to_str().unwrap().to_string();
    let args = ["--config", &config, "--policy", "prescient"];
    let daemon = start_steered(&db, &socket, &args, &name);

    // The override: at most 0.25 cores, from the next cycle on, on the domain itself.
    cli(&socket, &["override", "set", &name, "--max", "cpu=0.25"]);
    std::thread::sleep(Duration::from_secs(7));
    let view = cli_json(&socket, &["explain", &name, "--json"]);
    let alloc = view["tenant"]["allocation"]["cpu"].as_f64().unwrap();
    assert!(
        alloc <= 0.25 + 1e-9,
        "allocation {alloc} cores under a 0.25 maximum"
    );
    let (quota, _, _, _) = live_settings(&name);
    let sched = virsh(&["schedinfo", &name, "--live"]);
    let period: i64 = (sched.lines())
        .find_map(|l| {
            l.strip_prefix("vcpu_period")?
                .split(':')
                .nth(1)?
                .trim()
                .parse()
                .ok()
        })
        .unwrap();
    let vcpus: i64 = virsh(&["vcpucount", &name, "--live", "--active"])
        .trim()
        .parse()
        .unwrap();
    assert!(quota > 0, "{name}: no vCPU quota in force");
    let cores = (quota * vcpus) as f64 / period as f64;
    assert!(
        cores <= 0.25 + 0.01,
        "{name}: {cores} cores in force under a 0.25 maximum"
    );

    // The intent: 3 cores for a minute, starting six buckets from now.
    let before = cli_json(&socket, &["explain", &name, "--json"]);
    let origin = before["forecast_origin_unix_s"].as_i64().unwrap();
    let start = origin + 60;
    let step_p50 = |v: &serde_json::Value| {
        (v["steps"].as_array().unwrap().iter())
            .find(|s| s["start_unix_s"].as_i64() == Some(start))
            .map(|s| s["band"]["cpu"]["p50"].as_f64().unwrap())
    };
    let was = step_p50(&before).expect("a step at the intent's start");
    let start_arg = start.to_string();
    let declared = cli_json(
        &socket,
        &[
            "intent",
            "add",
            &name,
            "--start",
            &start_arg,
            "--duration",
            "60s",
            "--cpu",
            "3",
            "--note",
            "lab build",
            "--json",
        ],
    );
    assert_eq!(declared["ids"].as_array().unwrap().len(), 1);
    let after = cli_json(&socket, &["explain", &name, "--json"]);
    let now = step_p50(&after).unwrap_or(was);
    assert!(
        now > was + 0.5,
        "the forecast at the intent's start: {was} → {now}"
    );
    // `show` draws it: usage, the bands and the allocation.
    let svg = dir.path().join("show.svg");
    cli(&socket, &["show", &name, "--plot", svg.to_str().unwrap()]);
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(
        picture.matches(r#"<polygon class="band" points="#).count(),
        4
    );
    assert!(picture.contains(r#"class="usage""#) && picture.contains(r#"class="allocation""#));
    assert!(cli(&socket, &["show", &name, "--resource", "cpu"]).contains("p95"));
    stop(daemon);

    // Both survive a restart.
    let daemon = start_steered(&db, &socket, &args, &name);
    let overrides = cli_json(&socket, &["override", "list", "--json"]);
    assert_eq!(overrides[0]["name"].as_str(), Some(name.as_str()));
    let intents = cli_json(&socket, &["intent", "list", "--json"]);
    assert!(
        (intents.as_array().unwrap().iter()).any(|i| i["note"] == "lab build"),
        "{intents}"
    );
    cli(&socket, &["override", "clear", &name]);
    stop(daemon);
    // A restarted daemon reshapes the taps the one before it shaped.
    let log = std::fs::read_to_string(db.with_extension("log")).unwrap();
    assert!(!log.contains("Change operation not supported"), "{log}");
    restore_lab(&tenants);
}

#[test]
#[ignore = "needs the lab (scripts/lab up); scripts/test runs it"]
fn a_class_with_dedicated_cpus_is_pinned_and_the_others_share_the_rest() {
    let tenants = running_lab_tenants();
    let cpus = host_cpus();
    assert!(
        cpus >= 2,
        "pinning needs two host CPUs, the host has {cpus}"
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profile.db");
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[classes.gold]\ndedicated_cpus = true\n").unwrap();
    let args = [
        "--policy",
        "static",
        "--policy-file",
        rules.to_str().unwrap(),
    ];
    let log = run_daemon(&db, &args, 10);
    assert!(!log.contains("refused: pin"), "{log}");
    let last = cpus - 1;
    let shared = if last == 1 {
        "0".to_string()
    } else {
        format!("0-{}", last - 1)
    };
    // The lab's gold tenant (prescient-lab-1, one vCPU) has the top CPU to itself.
    for name in &tenants {
        let pins = vcpu_pins(name);
        assert!(!pins.is_empty(), "{name}: no vCPU listed");
        if name == "prescient-lab-1" {
            assert_eq!(pins[0].1, last.to_string(), "{name}: {pins:?}");
        } else {
            for (vcpu, cpus) in &pins {
                assert_eq!(*cpus, shared, "{name} vCPU {vcpu}");
            }
        }
        assert_eq!(emulator_pin(name), shared, "{name}: emulator");
    }
    restore_lab(&tenants);
    for name in &tenants {
        assert_eq!(
            emulator_pin(name),
            format!("0-{last}"),
            "{name}: given back"
        );
    }
}
