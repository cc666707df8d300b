//! The forecasters survive a restart through the real profile database: the control loop
//! (the same `Controller` the daemon runs) replays two days of four real VMs through the
//! trace backend with forecasting on, stores the forecasters at shutdown in SQLite on disk,
//! and a fresh stage restored from that file forecasts at once exactly as before.

use prescient::backend::trace::{HostModel, TraceBackend};
use prescient::forecast::intents::Intent;
use prescient::forecast::stage::ForecastStage;
use prescient::forecast::{Config, Forecast};
use prescient::model::{Class, PerResource, Resource};
use prescient::pipeline::Controller;
use prescient::profile::writer::ProfileWriter;
use prescient::profile::{ProfileDb, Retention};
use prescient::sim::replay::Replay;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn forecasters_and_intents_are_restored_from_the_profile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bitbrains-slice");
    let (traces, bad) = prescient::trace::read_dir(&dir, false, |_, _| {}).unwrap();
    assert!(bad.is_empty());
    let replay = Arc::new(Replay::align(&traces, None));
    let host = HostModel::sized(&replay, 100.0, 1e12);
    let mut backend = TraceBackend::new(Arc::clone(&replay), vec![Class::Silver; 4], host);

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("profile.db");
    let writer = ProfileWriter::spawn(
        ProfileDb::open(&path, false).unwrap(),
        Retention::default(),
        Duration::from_secs(3600),
    );
    let stage = ForecastStage::new(Config::default());
    // The trace backend moves on when an allocation is applied: a policy drives it.
    let (policy, _) =
        prescient::sim::make_policy("reactive", None, Default::default(), &replay).unwrap();
    let mut c = Controller::new(Some(writer))
        .with_forecasts(stage, 1_000_000)
        .with_policy(policy);
    let mut last = None;
    while !backend.finished() {
        last = Some(c.step(&mut backend).unwrap());
    }
    let obs = last.unwrap();
    let uuids: Vec<Arc<str>> = obs.tenants.iter().map(|t| Arc::clone(&t.id.uuid)).collect();
    assert_eq!(uuids.len(), 4);

    // An intent for the first tenant (declared on the restored stage below).
    let now_s = obs.at_unix_ms / 1000;
    let intent = Intent {
        id: 1,
        resource: Resource::Cpu,
        start_s: now_s + 3600,
        duration_s: 1800,
        amount: 64.0,
    };
    let stage = c.forecasts().unwrap();
    let mut before: Vec<PerResource<Forecast>> = uuids
        .iter()
        .map(|u| {
            stage
                .forecast(u)
                .expect("a forecast for every tenant")
                .clone()
        })
        .collect();
    c.shutdown();

    let db = ProfileDb::open(&path, false).unwrap();
    let saved = db.load_forecasters().unwrap();
    assert_eq!(saved.len(), 4, "one state per tenant");
    let mut restored = ForecastStage::new(Config::default());
    assert_eq!(restored.restore(saved), 4);
    for (u, b) in uuids.iter().zip(&before) {
        assert_eq!(
            restored.forecast(u).unwrap(),
            b,
            "tenant {u} forecasts at once, as before the restart"
        );
    }

    // Intents are part of the saved state: declare, save through the database again,
    // restore, and the pending intent and its effect are still there.
    restored.declare(&uuids[0], intent, now_s).unwrap();
    before[0] = restored.forecast(&uuids[0]).unwrap().clone();
    let mut db = db;
    db.save_forecasters(
        obs.at_unix_ms,
        prescient::forecast::stage::STATE_FORMAT,
        &restored.export(true),
    )
    .unwrap();
    let mut again = ForecastStage::new(Config::default());
    assert_eq!(again.restore(db.load_forecasters().unwrap()), 4);
    assert_eq!(again.intents(&uuids[0]).unwrap().pending().len(), 1);
    assert_eq!(again.forecast(&uuids[0]).unwrap(), &before[0]);
}
