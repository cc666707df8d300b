//! `scripts/bench-lab --report` on a profile written here: every recurring cpu step is
//! sorted by room (the others' use in the step's first seconds plus its vCPUs against the
//! host's cores) and by outcome (ahead, late with the seconds, not covered), with λ of the
//! decision before it, one line per step in OUT/steps-POLICY.tsv; with --noise, the random
//! busy phases the guests drew (OUT/phases.tsv) are sorted apart and set against chance;
//! the daemon's own `rises` are compared step for step when the profile has them. Needs
//! the sqlite3 command, as bench-lab does.

use std::path::{Path, PathBuf};
use std::process::Command;

use rusqlite::Connection;

const PHASE: i64 = 30;

/// A profile with the tables bench-lab reads: 3 tenants of 1 vCPU running idle,cpu,idle
/// in 30 s phases; measured time 30060 … 30180 s (slots 1002 … 1005). The steps:
/// tenant 1 (gold) at 30090: raised at 30085, ahead, with room (λ 0.12 before);
/// tenant 2 (silver) at 30120: raised at 30127.5, late by 7.5 s, short (tenant 1 uses 1.2);
/// tenant 3 (bronze) at 30060: never raised, not covered; at 30150: raised at 30140, ahead.
fn profile(path: &Path) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE tenants (id INTEGER PRIMARY KEY, name TEXT, class TEXT, vcpus INTEGER,
             max_memory_kib INTEGER);
         CREATE TABLE samples (tenant_id INTEGER, ts_ms INTEGER, cpu_cores REAL, mem_used_kib REAL,
             disk_rd_bytes_per_s REAL, disk_wr_bytes_per_s REAL, net_rx_bytes_per_s REAL,
             net_tx_bytes_per_s REAL);
         CREATE TABLE allocations (tenant_id INTEGER, ts_ms INTEGER, cpu_cores REAL, reasons_json TEXT);
         CREATE TABLE actuations (tenant_id INTEGER, ts_ms INTEGER, resource TEXT, wanted REAL,
             accepted INTEGER);
         INSERT INTO tenants VALUES (1, 'prescient-lab-1', 'gold', 1, 524288),
             (2, 'prescient-lab-2', 'silver', 1, 524288), (3, 'prescient-lab-3', 'bronze', 1, 524288);",
    )
    .unwrap();
    for id in 1..=3 {
        for s in (30000..=30180).step_by(5) {
            let cpu = if id == 1 && (30125..=30130).contains(&s) {
                1.2
            } else {
                0.05
            };
            c.execute(
                "INSERT INTO samples VALUES (?1, ?2, ?3, 0, 0, 0, 0, 0)",
                rusqlite::params![id, s * 1000, cpu],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO actuations VALUES (?1, 30000000, 'cpu', 0.2, 1)",
            [id],
        )
        .unwrap();
    }
    let reason = |lambda: f64| format!(r#"{{"cpu":{{"binding":"capacity","lambda":{lambda}}}}}"#);
    for (id, ts, wanted, lambda) in [
        (1, 30_085_000, 1.0, 0.12),
        (2, 30_127_500, 1.0, 0.0),
        (3, 30_140_000, 1.0, 0.0),
    ] {
        c.execute(
            "INSERT INTO actuations VALUES (?1, ?2, 'cpu', ?3, 1)",
            rusqlite::params![id, ts, wanted],
        )
        .unwrap();
        c.execute(
            "INSERT INTO allocations VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![id, ts, wanted, reason(lambda)],
        )
        .unwrap();
    }
    // A refused raise is not in force.
    c.execute(
        "INSERT INTO actuations VALUES (3, 30061000, 'cpu', 1.0, 0)",
        [],
    )
    .unwrap();
}

fn report(out: &Path, extra: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/bench-lab");
    let o = Command::new("bash")
        .arg(script)
        .args([
            "--policies",
            "prescient",
            "--phase-seconds",
            &PHASE.to_string(),
        ])
        .args([
            "--interval",
            "5",
            "--measure-minutes",
            "2",
            "--host-cores",
            "2",
        ])
        .arg("--out")
        .arg(out)
        .arg("--report")
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

/// The report on the profile above changed by `sql`, with the base schedule `schedule`.
fn report_with(out: &Path, sql: &str, schedule: &str) -> String {
    let db = out.join("prescient.db");
    profile(&db);
    Connection::open(&db).unwrap().execute_batch(sql).unwrap();
    report(out, &["--schedule", schedule])
}

/// The steps file's rows as (tenant, step_utc, kind, room, lambda, outcome, late_s, daemon).
fn steps(out: &Path) -> Vec<Vec<String>> {
    columns(
        &out.join("steps-prescient.tsv"),
        &[
            "tenant",
            "step_utc",
            "kind",
            "room",
            "lambda",
            "outcome",
            "late_s",
            "daemon_outcome",
        ],
    )
}

/// The columns named `names` of every step in the steps file `tsv`.
fn columns(tsv: &Path, names: &[&str]) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(tsv).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let cols: Vec<usize> = names
        .iter()
        .map(|name| head.iter().position(|h| h == name).unwrap())
        .collect();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            cols.iter().map(|&i| f[i].to_string()).collect()
        })
        .collect()
}

fn row(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn steps_are_sorted_by_room_and_outcome_with_lambda_and_the_targets() {
    let dir = tempfile::tempdir().unwrap();
    profile(&dir.path().join("prescient.db"));
    let printed = report(dir.path(), &[]);
    assert_eq!(
        steps(dir.path()),
        vec![
            row(&[
                "prescient-lab-1",
                "08:21:30Z",
                "regular",
                "room",
                "0.12",
                "ahead",
                "-",
                "-"
            ]),
            row(&[
                "prescient-lab-2",
                "08:22:00Z",
                "regular",
                "short",
                "-",
                "late",
                "7.5",
                "-"
            ]),
            row(&[
                "prescient-lab-3",
                "08:21:00Z",
                "regular",
                "room",
                "-",
                "not_covered",
                "-",
                "-"
            ]),
            row(&[
                "prescient-lab-3",
                "08:22:30Z",
                "regular",
                "room",
                "0",
                "ahead",
                "-",
                "-"
            ]),
        ]
    );
    // Gold 1 of 1 with room, silver none with room, bronze 1 of 2; overall 2 of 3 with room.
    assert!(
        printed.contains("PASS ahead at 100 % (1/1) of the steps with room for gold"),
        "{printed}"
    );
    assert!(
        printed.contains("MISS ahead at 50 % (1/2) of the steps with room for bronze"),
        "{printed}"
    );
    assert!(
        printed.contains("MISS ahead at none of the steps with room for silver"),
        "{printed}"
    );
    assert!(
        printed.contains("MISS ahead at 67 % (2/3) of the steps with room overall"),
        "{printed}"
    );
    assert!(
        printed.contains("MISS ahead at 50 % (2/4) of all steps"),
        "{printed}"
    );
    assert!(
        printed.contains("late s: mean 7.5 median 7.5 max 7.5"),
        "{printed}"
    );
    assert!(printed.contains("no rises table"), "{printed}");
}

#[test]
fn the_daemons_rises_are_compared_step_for_step() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("prescient.db");
    profile(&db);
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE rises (tenant_id INTEGER, resource TEXT, start_ms INTEGER, level REAL,
                 in_force REAL, outcome TEXT, late_s REAL, end_ms INTEGER);
             INSERT INTO rises VALUES (1, 'cpu', 30091000, 1, 1, 'ahead', NULL, 30120000),
                 (2, 'cpu', 30118000, 1, 0.2, 'late', 9.5, 30150000),
                 (3, 'cpu', 30151000, 1, 0.2, 'late', 2.0, 30180000);",
        )
        .unwrap();
    let printed = report(dir.path(), &[]);
    let daemon: Vec<String> = steps(dir.path())
        .into_iter()
        .map(|r| r[7].clone())
        .collect();
    assert_eq!(daemon, ["ahead", "late", "none", "late"]);
    assert!(
        printed.contains(
            "agree (both ahead / both not ahead) at 2 of 4 steps; the daemon counted no rise at 1"
        ),
        "{printed}"
    );
}

#[test]
fn with_noise_the_random_busy_phases_are_sorted_apart_and_set_against_chance() {
    let dir = tempfile::tempdir().unwrap();
    profile(&dir.path().join("prescient.db"));
    // What the guests drew for their rand phases (rand,cpu,rand rotated): all idle, but
    // tenant 1's slot 1005 (30150 s), where its raise of 30085 is still in force.
    let mut drawn = String::new();
    for (idx, slots) in [
        (1, [1002, 1004, 1005]),
        (2, [1002, 1003, 1005]),
        (3, [1001, 1003, 1004]),
    ] {
        for s in slots {
            let p = if (idx, s) == (1, 1005) { "cpu" } else { "idle" };
            drawn += &format!("{idx}\t{s}\t{p}\trand\n");
        }
    }
    std::fs::write(dir.path().join("phases.tsv"), drawn).unwrap();
    let printed = report(dir.path(), &["--noise"]);
    let rows = steps(dir.path());
    assert_eq!(
        rows.iter().filter(|r| r[2] == "regular").count(),
        4,
        "{rows:?}"
    );
    let random: Vec<_> = rows.iter().filter(|r| r[2] == "random").collect();
    assert_eq!(random.len(), 1, "{rows:?}");
    assert_eq!(
        (random[0][0].as_str(), random[0][5].as_str()),
        ("prescient-lab-1", "ahead")
    );
    assert!(
        printed.contains("up ahead of the random busy phases: 100 % (1 of 1)"),
        "{printed}"
    );
    // Chance: the rand phases that drew idle after a phase that was not busy, where the
    // random steps are counted: tenant 2 at slot 1003 and tenant 3 at 1004, both held at 0.2.
    assert!(
        printed
            .contains("; chance (up at the start of the rand phases that drew idle): 0 % (0 of 2)"),
        "{printed}"
    );
    assert!(
        printed.contains("seconds late at the random busy phases:"),
        "{printed}"
    );
}

#[test]
fn mem_steps_are_sorted_where_the_balloon_had_to_move() {
    let dir = tempfile::tempdir().unwrap();
    // idle,mem,idle: the same slots as the cpu steps above. Every guest uses 100000 KiB
    // before its phase; the level is that plus 0.9 × the mem phase's 192 MiB.
    let printed = report_with(
        dir.path(),
        "UPDATE samples SET mem_used_kib = 100000;
         INSERT INTO actuations VALUES (1, 30000000, 'mem', 400000, 1),
             (2, 30000000, 'mem', 150000, 1), (2, 30125000, 'mem', 350000, 1),
             (3, 30000000, 'mem', 150000, 1), (3, 30140000, 'mem', 350000, 1);",
        "idle,mem,idle",
    );
    assert_eq!(
        columns(
            &dir.path().join("steps-prescient-mem.tsv"),
            &["tenant", "outcome", "late_s"]
        ),
        [
            row(&["prescient-lab-1", "ahead", "-"]),
            row(&["prescient-lab-2", "late", "5.0"]),
            row(&["prescient-lab-3", "not_covered", "-"]),
            row(&["prescient-lab-3", "ahead", "-"]),
        ]
    );
    // Tenant 1's balloon never had to move: left out of the sorting.
    assert!(
        printed.contains(" mem, steps where the allocation had to rise"),
        "{printed}"
    );
    assert!(printed.contains("(1 steps left out"), "{printed}");
    assert!(
        printed.contains("  all     steps   3  room   3: ahead   1"),
        "{printed}"
    );
}

#[test]
fn a_resource_never_changed_is_in_force_at_the_domains_own_setting() {
    let dir = tempfile::tempdir().unwrap();
    // idle,net,idle: every guest sends 20 MB/s, so the level is 18 MB/s. Tenant 1 is held
    // at 12.5 MB/s from the start; tenants 2 and 3 never had a throttle: unlimited, so their
    // allocation never had to rise.
    let printed = report_with(
        dir.path(),
        "UPDATE samples SET net_tx_bytes_per_s = 20000000;
         INSERT INTO actuations VALUES (1, 30000000, 'net', 12500000, 1);",
        "idle,net,idle",
    );
    assert_eq!(
        columns(
            &dir.path().join("steps-prescient-net.tsv"),
            &["tenant", "in_force", "outcome"]
        ),
        [
            row(&["prescient-lab-1", "12500000.0", "not_covered"]),
            row(&["prescient-lab-2", "unlimited", "ahead"]),
            row(&["prescient-lab-3", "unlimited", "ahead"]),
            row(&["prescient-lab-3", "unlimited", "ahead"]),
        ]
    );
    // No capacity is known for net: neither room nor short is claimed.
    assert!(
        printed.contains("  all     steps   1  room   -: ahead   0    -   short   -  all: ahead   0   0 %  late   0  not covered   1"),
        "{printed}"
    );
    assert!(printed.contains("(3 steps left out"), "{printed}");
}
