//! The lab's workload schedules, checked without bringing the lab up: `scripts/lab up` and
//! `scripts/bench-lab` refuse an unknown phase by name before they touch anything, and the
//! guest's rand phase draws the same for a seed and a clock slot, busy at the chance asked.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script(name: &str, args: &[&str]) -> Output {
    let path = root().join("scripts").join(name);
    Command::new("bash")
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_refused_naming(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {stderr}");
    assert!(
        stderr.contains(what),
        "the error does not name {what}: {stderr}"
    );
}

#[test]
fn lab_up_refuses_an_unknown_phase_by_name() {
    let out = script("lab", &["up", "--schedule", "idle,foo"]);
    assert_refused_naming(&out, "unknown phase 'foo'");
    let out = script("lab", &["up", "--schedule", "idle,,cpu"]);
    assert_refused_naming(&out, "an empty phase");
}

#[test]
fn bench_lab_refuses_an_unknown_phase_by_name() {
    let out = script("bench-lab", &["--schedule", "idle,cpu,bogus", "--report"]);
    assert_refused_naming(&out, "unknown phase 'bogus'");
    assert_eq!(out.status.code(), Some(2));
}

/// The draws of the workload's own `rand_phase` for SLOTS, under busybox's sh when there
/// is one (the guest's shell), else sh.
fn draws(seed: u32, pct: u32, slots: std::ops::Range<u64>) -> Vec<String> {
    let workload = std::fs::read_to_string(root().join("scripts/lab.d/workload")).unwrap();
    let start = workload
        .find("rand_phase() {")
        .expect("rand_phase in the workload");
    let end = start + workload[start..].find("\n}\n").expect("its end") + 3;
    let body = format!(
        "SEED={seed}; RAND_PCT={pct}\n{}\nfor s in $(seq {} {}); do rand_phase $s; done",
        &workload[start..end],
        slots.start,
        slots.end - 1
    );
    let shell = if std::path::Path::new("/bin/busybox").exists() {
        vec!["/bin/busybox", "sh"]
    } else {
        vec!["sh"]
    };
    let out = Command::new(shell[0])
        .args(&shell[1..])
        .arg("-c")
        .arg(&body)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn a_rand_phase_draws_the_same_per_seed_and_slot_at_the_chance_asked() {
    // Clock slots of 80 s phases around now.
    let slots = 22_500_000..22_502_000;
    let a = draws(101, 25, slots.clone());
    assert_eq!(a.len(), 2000);
    assert_eq!(
        a,
        draws(101, 25, slots.clone()),
        "the same seed draws the same"
    );
    assert!(a.iter().all(|p| p == "cpu" || p == "idle"), "{a:?}");
    let busy = a.iter().filter(|p| *p == "cpu").count();
    assert!((400..600).contains(&busy), "{busy} of 2000 busy at 25 %");
    let b = draws(102, 25, slots.clone());
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    assert!(
        same < 1900,
        "another seed draws otherwise ({same} of 2000 equal)"
    );
    // No pattern from one slot to the next: busy after busy about as often as at all.
    let pairs = a.windows(2).filter(|w| w[0] == "cpu").count();
    let both = a
        .windows(2)
        .filter(|w| w[0] == "cpu" && w[1] == "cpu")
        .count();
    assert!(
        (0.15..0.35).contains(&(both as f64 / pairs as f64)),
        "{both} of {pairs}"
    );
    assert!(draws(7, 0, slots.clone()).iter().all(|p| p == "idle"));
    assert!(draws(7, 100, slots).iter().all(|p| p == "cpu"));
}
