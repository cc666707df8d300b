//! Kill -9 the daemon mid-run, restart it: no committed sample is lost and the profile
//! database opens cleanly. Runs the real binary against libvirt's in-process test driver
//! (this is a test of the profile database, not of collection) with a real SQLite file.

use prescient::profile::ProfileDb;
use rusqlite::Connection;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::committed;

fn start_daemon(db: &Path) -> Child {
    common::daemon(Path::new(env!("CARGO_BIN_EXE_prescient")), db)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting prescient daemon")
}

fn wait_for_samples(daemon: &mut Child, db: &Path, at_least: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = committed(db);
        if n >= at_least {
            return n;
        }
        if let Some(status) = daemon.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            daemon
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("daemon exited early ({status}): {err}");
        }
        assert!(
            Instant::now() < deadline,
            "daemon stored only {n} samples in 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_9_loses_no_committed_sample() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profile.db");
    let mut floor = 0;
    for round in 0..5 {
        let mut daemon = start_daemon(&db);
        // Let it commit some more, then read what is committed and kill it at once.
        let seen = wait_for_samples(&mut daemon, &db, floor + 20 + round * 7);
        daemon.kill().unwrap(); // SIGKILL
        daemon.wait().unwrap();
        let profile =
            ProfileDb::open(&db, false).expect("the database opens cleanly after kill -9");
        let after = profile.counts().unwrap().samples;
        assert!(
            after >= seen,
            "round {round}: {seen} samples were committed before kill -9, {after} after"
        );
        drop(profile);
        let c = Connection::open(&db).unwrap();
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        floor = after;
    }
}

#[test]
fn sigterm_flushes_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profile.db");
    let mut daemon = start_daemon(&db);
    let seen = wait_for_samples(&mut daemon, &db, 30);
    let pid = daemon.id() as i32;
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = daemon.wait_with_output().unwrap();
    assert!(out.status.success(), "daemon exited with {:?}", out.status);
    let wal = dir.path().join("profile.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        wal_len, 0,
        "the WAL is checkpointed into the database at shutdown"
    );
    let profile = ProfileDb::open(&db, false).unwrap();
    assert!(profile.counts().unwrap().samples >= seen);
}

#[test]
fn daemon_refuses_a_foreign_database_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profile.db");
    std::fs::write(&db, "operator's notes\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["daemon", "--uri", "test:///default", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("profile.db") && err.contains("not a prescient profile"),
        "{err}"
    );
    assert!(err.contains("--reset-db"), "{err}");
    assert_eq!(std::fs::read_to_string(&db).unwrap(), "operator's notes\n");
}

#[test]
fn daemon_rejects_an_invalid_config_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prescient.toml");
    std::fs::write(&cfg, "[daemon]\ninterval_seconds = -1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["daemon", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("daemon.interval_seconds") && err.contains("prescient.toml"),
        "{err}"
    );
}

#[test]
fn a_second_daemon_on_one_profile_is_refused_and_kill_9_leaves_no_stale_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profile.db");
    let mut first = start_daemon(&db);
    let seen = wait_for_samples(&mut first, &db, 5);
    let samples_before = committed(&db);
    let mut second = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["daemon", "--uri", "test:///default", "--interval", "0.05"])
        .args(["--metrics", "off", "--reset-db", "--socket"])
        .arg(dir.path().join("other.sock"))
        .arg("--db")
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while second.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(10) {
            second.kill().unwrap();
            panic!("a second daemon on the same profile was still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = second.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    let pid = format!("pid {}", first.id());
    assert!(
        err.contains("in use by another prescient daemon") && err.contains(&pid),
        "the first daemon is named: {err}"
    );
    assert!(
        committed(&db) >= samples_before,
        "--reset-db moved nothing aside"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first daemon runs on"
    );
    first.kill().unwrap(); // SIGKILL: the kernel releases the lock
    first.wait().unwrap();
    let mut again = start_daemon(&db);
    wait_for_samples(&mut again, &db, seen + 5);
    again.kill().unwrap();
    again.wait().unwrap();
}
