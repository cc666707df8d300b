use super::*;
use crate::backend::{DomainCounters, DomainSnapshot, Snapshot};
use crate::collect::{Collector, Observation};
use crate::model::TenantId;
use std::sync::Arc;

fn obs(collector: &mut Collector, t_s: i64, n_tenants: usize) -> Observation {
    let domains = (0..n_tenants)
        .map(|i| DomainSnapshot {
            id: TenantId {
                uuid: format!("00000000-0000-0000-0000-00000000000{i}").into(),
                name: format!("vm{i}").into(),
            },
            counters: DomainCounters {
                cpu_time_ns: Some(t_s as u64 * 500_000_000),
                ..DomainCounters::default()
            },
            ..DomainSnapshot::default()
        })
        .collect();
    collector.ingest(&Snapshot {
        at_unix_ms: t_s * 1000,
        mono_ns: t_s as u64 * 1_000_000_000,
        domains,
        ..Snapshot::default()
    })
}

#[test]
fn creates_migrates_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.db");
    let mut db = ProfileDb::open(&path, false).unwrap();
    let mut c = Collector::new();
    let batch: Vec<_> = (0..5).map(|i| obs(&mut c, 1000 + 10 * i, 3)).collect();
    assert_eq!(db.write(&batch).unwrap(), 15);
    drop(db);
    let db = ProfileDb::open(&path, false).unwrap();
    assert_eq!(
        db.counts().unwrap(),
        Counts {
            tenants: 3,
            samples: 15,
            history: 0
        }
    );
    let v: i64 = db
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    // The first sample of each tenant has no rate: stored as NULL, not 0.
    let nulls: i64 = db
        .conn
        .query_row(
            "SELECT count(*) FROM samples WHERE cpu_cores IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(nulls, 3);
    let cpu: f64 = db
        .conn
        .query_row("SELECT max(cpu_cores) FROM samples", [], |r| r.get(0))
        .unwrap();
    assert!((cpu - 0.5).abs() < 1e-9);
}

#[test]
fn foreign_files_are_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.db");
    std::fs::write(&text, "my precious notes, not a database at all").unwrap();
    let err = ProfileDb::open(&text, false).err().unwrap();
    assert!(matches!(err, ProfileError::Foreign { .. }));
    assert!(err.to_string().contains("notes.db"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        "my precious notes, not a database at all"
    );

    let other = dir.path().join("other.sqlite");
    let c = Connection::open(&other).unwrap();
    c.execute_batch("CREATE TABLE accounts (id INTEGER); INSERT INTO accounts VALUES (7);")
        .unwrap();
    drop(c);
    let err = ProfileDb::open(&other, false).err().unwrap();
    assert!(matches!(err, ProfileError::Foreign { .. }), "{err}");
    let c = Connection::open(&other).unwrap();
    let v: i64 = c
        .query_row("SELECT id FROM accounts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 7, "the foreign database is untouched");
}

#[test]
fn corrupt_file_is_refused_and_reset_moves_it_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.db");
    {
        let mut db = ProfileDb::open(&path, false).unwrap();
        let mut c = Collector::new();
        let batch: Vec<_> = (0..200).map(|i| obs(&mut c, 1000 + 10 * i, 5)).collect();
        db.write(&batch).unwrap();
        db.checkpoint().unwrap();
    }
    // Scribble over the pages after the header page.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 8192);
    for b in &mut bytes[4096..] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = ProfileDb::open(&path, false).err().unwrap();
    assert!(
        matches!(
            err,
            ProfileError::Corrupt { .. } | ProfileError::Foreign { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("profile.db"));
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing overwritten");

    let db = ProfileDb::open(&path, true).unwrap();
    assert_eq!(db.counts().unwrap().samples, 0);
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("profile.db.bad-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "old file kept beside the new one");
    assert_eq!(std::fs::read(aside[0].path()).unwrap(), bytes);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.db");
    drop(ProfileDb::open(&path, false).unwrap());
    let c = Connection::open(&path).unwrap();
    c.execute_batch(&format!("PRAGMA user_version={}", SCHEMA_VERSION + 1))
        .unwrap();
    drop(c);
    let err = ProfileDb::open(&path, true).err().unwrap();
    assert!(matches!(err, ProfileError::TooNew { .. }), "{err}");
}

#[test]
fn rollup_and_retention_bound_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.db");
    let mut db = ProfileDb::open(&path, false).unwrap();
    let mut c = Collector::new();
    // Two hours of 10 s samples for 2 tenants.
    let start = 1_700_000_000 / 300 * 300;
    let batch: Vec<_> = (0..720).map(|i| obs(&mut c, start + 10 * i, 2)).collect();
    db.write(&batch).unwrap();
    let now_ms = (start + 7190) * 1000;
    let retention = Retention {
        raw_ms: 3600 * 1000,
        history_ms: 90 * 60 * 1000,
    };
    db.maintain(now_ms, retention).unwrap();
    let counts = db.counts().unwrap();
    // 23 buckets of 5 min per tenant were complete (the one holding `now` is not); those
    // starting within the last 90 min are kept: start+1800 s … start+6600 s, 17 each.
    assert_eq!(counts.history, 2 * 17, "{counts:?}");
    // Raw samples: only the last hour remains.
    let min_ts: i64 = db
        .conn
        .query_row("SELECT min(ts_ms) FROM samples", [], |r| r.get(0))
        .unwrap();
    assert!(min_ts >= now_ms - 3600 * 1000);
    assert!(counts.samples <= 2 * 361);
    // Aggregates are right: 0.5 cores throughout.
    let (n, mean): (i64, f64) = db
        .conn
        .query_row(
            "SELECT n, cpu_mean FROM history ORDER BY bucket_ms DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(n, 30);
    assert!((mean - 0.5).abs() < 1e-9);
    // Idempotent.
    db.maintain(now_ms, retention).unwrap();
    assert_eq!(db.counts().unwrap(), counts);
}

/// A fresh database in a temporary directory, with its writer.
fn writer_fixture() -> (tempfile::TempDir, std::path::PathBuf, writer::ProfileWriter) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.db");
    let db = ProfileDb::open(&path, false).unwrap();
    let w = writer::ProfileWriter::spawn(
        db,
        Retention::default(),
        std::time::Duration::from_secs(3600),
    );
    (dir, path, w)
}

#[test]
fn writer_batches_and_flushes() {
    let (_dir, path, mut w) = writer_fixture(); // _dir: kept alive to the end
    let mut c = Collector::new();
    for i in 0..100 {
        w.submit(obs(&mut c, 1000 + i, 4));
    }
    w.flush().unwrap();
    // As an operator's sqlite3 reads it: the daemon's writer holds the profile.
    let reader =
        Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let samples: i64 =
        (reader.query_row("SELECT count(*) FROM samples", [], |r| r.get(0))).unwrap();
    assert_eq!(samples, 400);
    let stats = w.shutdown();
    assert_eq!(stats.samples_committed, 400);
    assert!(stats.transactions >= 1 && stats.transactions <= 100);
    assert_eq!(stats.observations_lost, 0);
}

#[test]
fn samples_wait_while_the_database_is_locked_and_are_stored_after() {
    let (_dir, path, mut w) = writer_fixture();
    let mut c = Collector::new();
    w.submit(obs(&mut c, 1000, 3));
    w.flush().unwrap();
    // Another process holds the write lock for longer than the writer's busy timeout.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for i in 1..=5 {
        w.submit(obs(&mut c, 1000 + 10 * i, 3));
    }
    assert!(w.flush().is_err(), "the write fails while the lock is held");
    other.execute_batch("ROLLBACK").unwrap();
    w.flush().unwrap();
    let stats = w.shutdown();
    assert_eq!(stats.samples_committed, 18, "the waiting samples were kept");
    assert_eq!(stats.observations_lost, 0);
    assert!(stats.write_failures >= 1);
    let reader = ProfileDb::open(&path, false).unwrap();
    assert_eq!(reader.counts().unwrap().samples, 18);
}

#[test]
fn samples_that_cannot_be_stored_by_shutdown_are_counted_as_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.db");
    let db = ProfileDb::open(&path, false).unwrap();
    db.refuse_writes();
    let mut w = writer::ProfileWriter::spawn(
        db,
        Retention::default(),
        std::time::Duration::from_secs(3600),
    );
    let mut c = Collector::new();
    for i in 0..3 {
        w.submit(obs(&mut c, 1000 + 10 * i, 4));
    }
    assert!(w.flush().is_err());
    let stats = w.shutdown();
    assert_eq!(stats.samples_committed, 0);
    assert_eq!((stats.observations_lost, stats.samples_lost), (3, 12));
    assert!(stats.write_failures >= 1);
}

#[test]
fn forecaster_states_round_trip_through_the_writer() {
    let (_dir, path, mut w) = writer_fixture(); // _dir: kept alive to the end
    let mut c = Collector::new();
    let o = obs(&mut c, 1000, 2);
    let uuids: Vec<Arc<str>> = o.tenants.iter().map(|t| Arc::clone(&t.id.uuid)).collect();
    w.submit(o);
    // Saved right after the samples that create the tenants' rows; an unknown tenant is skipped.
    w.save_forecasters(
        1,
        1_000_000,
        vec![
            (Arc::clone(&uuids[0]), vec![1, 2, 3]),
            (Arc::clone(&uuids[1]), vec![4]),
            (Arc::from("not-a-tenant"), vec![9]),
        ],
    );
    w.save_forecasters(1, 2_000_000, vec![(Arc::clone(&uuids[0]), vec![7, 7])]);
    w.shutdown();
    let db = ProfileDb::open(&path, false).unwrap();
    let mut saved = db.load_forecasters().unwrap();
    saved.sort();
    assert_eq!(
        saved,
        vec![
            (uuids[0].to_string(), 1, vec![7, 7]),
            (uuids[1].to_string(), 1, vec![4]),
        ]
    );
}

#[test]
fn an_older_profile_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.db");
    drop(ProfileDb::open(&path, false).unwrap());
    let c = Connection::open(&path).unwrap();
    c.execute_batch(
        "DROP TABLE rises; DROP TABLE operator_state; DROP TABLE taken_over; DROP TABLE actuations; DROP TABLE allocations; DROP TABLE forecasters; \
         PRAGMA user_version=1;",
    )
    .unwrap();
    drop(c);
    let db = ProfileDb::open(&path, false).unwrap();
    assert!(db.load_forecasters().unwrap().is_empty());
    let v: i64 = db
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
}

#[test]
fn allocations_are_recorded_through_the_writer() {
    let (_dir, path, mut w) = writer_fixture(); // _dir: kept alive to the end
    let o = obs(&mut Collector::new(), 1000, 1);
    let uuid = Arc::clone(&o.tenants[0].id.uuid);
    w.submit(o);
    let mut allocation = crate::plan::Allocation::default();
    allocation.tenants.push(crate::plan::TenantAllocation {
        uuid,
        reasons: None,
        amounts: crate::model::PerResource {
            cpu: 1.5,
            mem: 2048.0,
            disk: 1e6,
            net: 2e6,
        },
    });
    w.save_allocation(1_000_000, "reactive", &allocation, false);
    allocation.tenants[0].reasons = Some(crate::model::PerResource::default());
    w.save_allocation(1_000_500, "prescient", &allocation, false);
    w.shutdown();
    let c = Connection::open(&path).unwrap();
    let row: (i64, f64, f64, String, bool) = c
        .query_row(
            "SELECT ts_ms, cpu_cores, net_bytes_per_s, policy, applied FROM allocations
             WHERE reasons_json IS NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(row, (1_000_000, 1.5, 2e6, "reactive".to_string(), false));
    let why: String = c
        .query_row(
            "SELECT reasons_json FROM allocations WHERE ts_ms = 1000500",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let why: serde_json::Value = serde_json::from_str(&why).unwrap();
    assert_eq!(why["mem"]["binding"], "none");
    assert!(why["cpu"]["forecast_p95"].is_null());
    // The newest reasons come back per tenant, by policy; a damaged row is skipped.
    let db = ProfileDb::open(&path, false).unwrap();
    let back = db.load_reasons("prescient").unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].1, crate::model::PerResource::default());
    assert!(db.load_reasons("reactive").unwrap().is_empty());
    c.execute(
        "UPDATE allocations SET reasons_json = '{' WHERE ts_ms = 1000500",
        [],
    )
    .unwrap();
    assert!(db.load_reasons("prescient").unwrap().is_empty());
}

#[test]
fn a_missing_directory_is_named_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("profile.db");
    let err = ProfileDb::open(&path, true).err().unwrap();
    assert!(matches!(err, ProfileError::NoDir { .. }), "{err}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    assert!(!dir.path().join("no-such-dir").exists());
    ProfileDb::create_dir_of(&path).unwrap();
    ProfileDb::open(&path, false).unwrap();
}

#[test]
fn reset_moves_aside_only_unusable_files_with_one_true_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.db");
    std::fs::write(&path, "not sqlite at all, but long enough\n").unwrap();
    let e = ProfileDb::open(&path, false).err().unwrap();
    assert_eq!(
        e.unusable_because().as_deref(),
        Some("not a prescient profile (it is not an SQLite file)")
    );
    // Cases that are not about the file's contents are never moved aside.
    for e in [
        ProfileError::ReadOnly {
            path: path.clone(),
            why: "x".into(),
        },
        ProfileError::NoDir {
            path: path.clone(),
            dir: dir.path().into(),
        },
    ] {
        assert_eq!(e.unusable_because(), None, "{e}");
    }
}

#[test]
fn changes_denials_and_original_settings_are_kept() {
    use crate::model::Resource;
    use crate::plan::{Applied, Change, Denial, DomainPlan, Plan, Setting};
    let (_dir, path, mut w) = writer_fixture(); // _dir: kept alive to the end
    let o = obs(&mut Collector::new(), 1000, 1);
    let id = o.tenants[0].id.clone();
    w.submit(o);
    let balloon = Setting::Balloon { target_kib: 1024 };
    let first = vec![balloon.clone()];
    w.save_taken_over(1_000_000, vec![(id.uuid.clone(), first.clone())])
        .unwrap();
    // Seen again later with other settings: the first ones stay.
    let later = vec![Setting::Balloon { target_kib: 4 }];
    w.save_taken_over(1_000_500, vec![(id.uuid.clone(), later)])
        .unwrap();
    let change = |r, amount| Change {
        resource: r,
        amount,
        previous: Some(1.0),
        settings: vec![balloon.clone()],
    };
    let plan = Plan {
        domains: vec![DomainPlan {
            id: id.clone(),
            changes: vec![change(Resource::Mem, 2048.0), change(Resource::Cpu, 2.0)],
        }],
    };
    let applied = Applied {
        accepted: vec![(id.uuid.clone(), Resource::Mem, 2048.0)],
        denials: vec![Denial {
            tenant: id.clone(),
            resource: Resource::Cpu,
            wanted: 2.0,
            got: Some(1.0),
            setting: None,
            code: Some(8),
            message: "refused here".into(),
        }],
    };
    w.save_actuations(1_000_600, &plan, &applied);
    w.shutdown();
    let db = ProfileDb::open(&path, false).unwrap();
    assert_eq!(
        db.load_taken_over().unwrap(),
        vec![(id.uuid.clone(), first)]
    );
    let got = db.load_actuations(Some(&id.uuid), 10).unwrap();
    assert_eq!(got.len(), 2);
    let denial = got.iter().find(|(_, a)| !a.accepted).unwrap();
    assert_eq!(denial.1.resource, Resource::Cpu);
    assert_eq!(denial.1.code, Some(8));
    assert_eq!(denial.1.message.as_deref(), Some("refused here"));
    assert!(
        got.iter()
            .any(|(ts, a)| a.accepted && *ts == 1_000_600 && a.wanted == 2048.0)
    );
}

#[test]
fn rises_are_written_through_the_writer_and_read_back_from_a_start_on() {
    use crate::leadtime::{Outcome, Rise};
    let (_dir, path, mut w) = writer_fixture(); // _dir: kept alive to the end
    let o = obs(&mut Collector::new(), 1000, 1);
    let uuid = Arc::clone(&o.tenants[0].id.uuid);
    w.submit(o);
    let rise = |start_ms, outcome, late_s, in_force| Rise {
        uuid: Arc::clone(&uuid),
        resource: Resource::Cpu,
        start_ms,
        level: 0.98,
        in_force,
        outcome,
        late_s,
        end_ms: start_ms + 20_000,
    };
    let rises = vec![
        rise(1_000_000, Outcome::Ahead, None, Some(1.2)),
        rise(2_000_000, Outcome::Late, Some(20.0), Some(0.3)),
        rise(3_000_000, Outcome::NotCovered, None, Some(f64::INFINITY)),
    ];
    w.save_rises(rises.clone());
    // A tenant the profile does not know is skipped, not an error.
    let mut stranger = rise(4_000_000, Outcome::Ahead, None, None);
    stranger.uuid = "unknown".into();
    w.save_rises(vec![stranger]);
    w.shutdown();
    let c = Connection::open(&path).unwrap();
    let row: (String, i64, f64, Option<f64>, String, Option<f64>, i64) = c
        .query_row(
            "SELECT resource, start_ms, level, in_force, outcome, late_s, end_ms FROM rises
             WHERE outcome = 'late'",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(
        row,
        (
            "cpu".into(),
            2_000_000,
            0.98,
            Some(0.3),
            "late".into(),
            Some(20.0),
            2_020_000
        )
    );
    let db = ProfileDb::open(&path, false).unwrap();
    let back = db.load_rises(0).unwrap();
    // Unlimited is kept as NULL.
    let mut expected = rises.clone();
    expected[2].in_force = None;
    assert_eq!(back, expected);
    assert_eq!(db.load_rises(1_500_000).unwrap(), expected[1..]);
    // An outcome outside the three is refused by the table.
    let bad = c.execute(
        "INSERT INTO rises (tenant_id, resource, start_ms, level, outcome) VALUES (1, 'cpu', 1, 1.0, 'early')",
        [],
    );
    assert!(bad.is_err());
}

#[test]
fn a_profile_from_before_rises_were_kept_opens_with_no_rises() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.db");
    let mut db = ProfileDb::open(&path, false).unwrap();
    let mut c = Collector::new();
    let batch: Vec<_> = (0..3).map(|i| obs(&mut c, 1000 + 10 * i, 2)).collect();
    db.write(&batch).unwrap();
    drop(db);
    // The schema as the previous version left it.
    let c = Connection::open(&path).unwrap();
    c.execute_batch(&format!(
        "DROP TABLE rises; PRAGMA user_version={};",
        SCHEMA_VERSION - 1
    ))
    .unwrap();
    drop(c);
    let db = ProfileDb::open(&path, false).unwrap();
    let v: i64 = db
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    assert_eq!(db.counts().unwrap().samples, 6, "the old samples are kept");
    let rises = db.load_rises(0).unwrap();
    assert!(rises.is_empty());
    let mut lt = crate::leadtime::LeadTime::default();
    lt.adopt(rises);
    let w = lt.windows(None);
    for r in Resource::ALL {
        assert_eq!(*w.get(r), Default::default(), "{r}");
    }
}
