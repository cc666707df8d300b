//! The daemon running a policy under a policy file, against libvirt's test driver with a
//! real SQLite profile: its allocations obey the file's limit; on SIGHUP an invalid file is
//! rejected with file, line and field named and the rules in force stay; a valid one is
//! obeyed from the next cycle on. An invalid file at start stops the daemon before it runs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

/// The cpu of the newest recorded allocations and how many there are.
fn allocations(db: &Path) -> (i64, Option<f64>) {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(c) = rusqlite::Connection::open_with_flags(db, flags) else {
        return (0, None);
    };
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let n = c
        .query_row("SELECT count(*) FROM allocations", [], |r| r.get(0))
        .unwrap_or(0);
    let cpu = c
        .query_row(
            "SELECT cpu_cores FROM allocations ORDER BY ts_ms DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .ok();
    (n, cpu)
}

/// Wait until `f` holds (or fail after 30 s, saying `what`).
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

#[test]
fn sighup_rereads_the_policy_file_and_keeps_the_rules_in_force_on_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profile.db");
    let file = dir.path().join("policy.toml");
    let log = dir.path().join("daemon.log");
    let limit = |v: &str| {
        std::fs::write(
            &file,
            format!("[classes.silver]\nlimit = {{ cpu_cores = {v} }}\n"),
        )
        .unwrap()
    };
    limit("0.5");
    // The test driver's domain is silver (no metadata); reactive's smallest request (5% of
    // the host's 16 cores) is above both limits, so the limit in force is what it gets.
    let mut child = common::daemon(Path::new(env!("CARGO_BIN_EXE_prescient")), &db)
        .args(["--policy", "reactive", "--policy-file"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    until("first allocations", || allocations(&db).0 >= 3);
    assert_eq!(allocations(&db).1, Some(0.5));

    limit("-1");
    signal(&child, "-HUP");
    until("the rejection in the log", || {
        read_log().contains("rules in force stay")
    });
    let text = read_log();
    assert!(
        text.contains("policy.toml, line 2: classes.silver.limit.cpu_cores"),
        "{text}"
    );
    let (n, _) = allocations(&db);
    until("more allocations", || allocations(&db).0 >= n + 3);
    assert_eq!(
        allocations(&db).1,
        Some(0.5),
        "the previous rules stay in force"
    );

    limit("0.25");
    signal(&child, "-HUP");
    until("the new limit obeyed", || allocations(&db).1 == Some(0.25));

    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {}", read_log());
    assert!(read_log().contains("allocations are applied each cycle"));
    // It went on collecting meanwhile: one sample per allocation.
    assert_eq!(common::committed(&db), allocations(&db).0);
}

#[test]
fn an_invalid_policy_file_at_start_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profile.db");
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, "[classes.gold]\nwieght = 3\n").unwrap();
    let out = common::daemon(Path::new(env!("CARGO_BIN_EXE_prescient")), &db)
        .args(["--policy", "prescient", "--policy-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policy.toml") && err.contains("line 2") && err.contains("wieght"),
        "{err}"
    );
    let out = common::daemon(Path::new(env!("CARGO_BIN_EXE_prescient")), &db)
        .args(["--policy", "mom"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("allocate.policy") && err.contains("unknown policy \"mom\""),
        "{err}"
    );
}

#[test]
fn what_prescient_learnt_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profile.db");
    let run = |until_rows: i64| {
        let mut child = common::daemon(Path::new(env!("CARGO_BIN_EXE_prescient")), &db)
            .args(["--policy", "prescient"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        until("allocations", || allocations(&db).0 >= until_rows);
        signal(&child, "-TERM");
        let out = std::mem::take(&mut child.stderr);
        let status = child.wait().unwrap();
        let mut log = String::new();
        std::io::Read::read_to_string(&mut out.unwrap(), &mut log).unwrap();
        assert!(status.success(), "{log}");
        log
    };
    run(3);
    // What it learnt, as the profile keeps it: a sensitivity of 2 for cpu.
    let c = rusqlite::Connection::open(&db).unwrap();
    let newest: i64 = c
        .query_row("SELECT max(ts_ms) FROM allocations", [], |r| r.get(0))
        .unwrap();
    c.execute(
        "UPDATE allocations SET reasons_json = json_set(reasons_json, '$.cpu.sensitivity', 2.0)
         WHERE ts_ms = ?1",
        [newest],
    )
    .unwrap();
    drop(c);
    let n = allocations(&db).0;
    let log = run(n + 3);
    assert!(log.contains("restored from the profile tenants=1"), "{log}");
    let c = rusqlite::Connection::open(&db).unwrap();
    let s: f64 = c
        .query_row(
            "SELECT json_extract(reasons_json, '$.cpu.sensitivity') FROM allocations
             ORDER BY ts_ms DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(s, 2.0);
}

#[test]
fn a_refused_change_is_recorded_as_a_denial_and_the_daemon_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profile.db");
    // The test driver refuses vCPU bandwidth (it knows only a weight) and accepts a balloon.
    let mut child = common::daemon(Path::new(env!("CARGO_BIN_EXE_prescient")), &db)
        .args(["--policy", "static"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rows = |sql: &str| -> i64 {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        rusqlite::Connection::open_with_flags(&db, flags)
            .and_then(|c| {
                c.busy_timeout(Duration::from_secs(5))?;
                c.query_row(sql, [], |r| r.get(0))
            })
            .unwrap_or(0)
    };
    until("a cpu denial with libvirt's code and message", || {
        rows(
            "SELECT count(*) FROM actuations WHERE resource = 'cpu' AND accepted = 0 \
             AND code = 8 AND message LIKE '%SchedulerParameters%'",
        ) >= 1
    });
    assert!(
        rows("SELECT count(*) FROM actuations WHERE resource = 'mem' AND accepted = 1") >= 1,
        "the balloon target was accepted"
    );
    let cycles = allocations(&db).0;
    until("more cycles after the refusal", || {
        allocations(&db).0 >= cycles + 5
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon is still running"
    );
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}
