//! The profile writer: a thread that owns the database and commits observations in batches,
//! so that the control loop never waits on the disk.

use super::Actuation;
use super::{ProfileDb, ProfileError, Retention};
use crate::collect::Observation;
use crate::leadtime::Rise;
use crate::plan::{Allocation, Applied, DomainSettings, Plan};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Observations that may wait for the writer before new ones are dropped (and counted); also
/// how many are kept in memory while the database cannot be written.
const QUEUE: usize = 4096;
/// While writes keep failing, how often the failure is logged again.
const REMIND_EVERY: Duration = Duration::from_secs(60);
/// Observations committed in one transaction at most.
const MAX_BATCH: usize = 512;

enum Msg {
    Write(Box<Observation>),
    /// Encoded forecaster states (format, at_ms, states).
    Forecasters(i64, i64, Vec<(Arc<str>, Vec<u8>)>),
    /// What a policy decided (at_ms, policy, allocation, applied).
    Allocation(i64, String, Box<Allocation>, bool),
    /// The changes tried on the domains (at_ms, records).
    Actuations(i64, Vec<Actuation>),
    /// Rises in usage whose outcome is known.
    Rises(Vec<Rise>),
    /// What domains had when first seen (at_ms, per UUID), answering when committed.
    TakenOver(i64, Vec<DomainSettings>, mpsc::Sender<Result<(), String>>),
    Flush(mpsc::Sender<Result<(), String>>),
    /// Replace the operator's state of one kind (kind, rows), answering when committed.
    OperatorState(
        &'static str,
        Vec<(String, String)>,
        mpsc::Sender<Result<(), String>>,
    ),
}

/// What the writer did, reported at shutdown.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WriterStats {
    pub samples_committed: u64,
    pub transactions: u64,
    /// Observations never stored: dropped while the writer was behind or the database could
    /// not be written for longer than the queue holds, or still unstored at shutdown.
    pub observations_lost: u64,
    /// The tenant samples in those observations.
    pub samples_lost: u64,
    /// Failed attempts to store samples (each is retried with what is queued).
    pub write_failures: u64,
    /// Allocation, actuation and rise records that could not be stored (they are not
    /// retried).
    pub allocations_lost: u64,
}

/// What [`FailureLog`] says about one failed write.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Said {
    /// The first failure of a run of them: logged at once.
    First,
    /// A reminder, at most every [`REMIND_EVERY`].
    Reminder,
    Nothing,
}

/// Makes a failing database loud without flooding the log: the first failure at once, then a
/// reminder at most every [`REMIND_EVERY`], and one line when writes work again.
#[derive(Debug, Default)]
struct FailureLog {
    failing_since: Option<Instant>,
    last_said: Option<Instant>,
    failures_in_run: u64,
}

impl FailureLog {
    fn failed(&mut self, now: Instant) -> Said {
        self.failures_in_run += 1;
        match (self.failing_since, self.last_said) {
            (None, _) => {
                self.failing_since = Some(now);
                self.last_said = Some(now);
                Said::First
            }
            (Some(_), Some(t)) if now.duration_since(t) < REMIND_EVERY => Said::Nothing,
            _ => {
                self.last_said = Some(now);
                Said::Reminder
            }
        }
    }

    /// Writes work again: how long they had failed, if they had.
    fn recovered(&mut self, now: Instant) -> Option<(Duration, u64)> {
        let since = self.failing_since.take()?;
        self.last_said = None;
        let n = std::mem::take(&mut self.failures_in_run);
        Some((now.duration_since(since), n))
    }
}

pub struct ProfileWriter {
    tx: SyncSender<Msg>,
    handle: JoinHandle<WriterStats>,
    dropped: u64,
    dropped_samples: u64,
}

impl ProfileWriter {
    /// Start the writer thread. Maintenance (roll-up, retention) runs every `maintain_every`.
    pub fn spawn(db: ProfileDb, retention: Retention, maintain_every: Duration) -> ProfileWriter {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let handle = std::thread::Builder::new()
            .name("profile-writer".into())
            .spawn(move || run(db, rx, retention, maintain_every))
            .expect("spawning the profile writer thread");
        ProfileWriter {
            tx,
            handle,
            dropped: 0,
            dropped_samples: 0,
        }
    }

    /// Queue an observation; never blocks. If the writer is hopelessly behind, the
    /// observation is dropped and counted (and logged), not silently lost.
    pub fn submit(&mut self, obs: Observation) {
        match self.tx.try_send(Msg::Write(Box::new(obs))) {
            Ok(()) => {}
            Err(TrySendError::Full(m)) | Err(TrySendError::Disconnected(m)) => {
                self.dropped += 1;
                if let Msg::Write(o) = m {
                    self.dropped_samples += o.tenants.len() as u64;
                }
                if self.dropped.is_power_of_two() {
                    tracing::error!(
                        dropped = self.dropped,
                        "profile writer is behind; observations are being dropped"
                    );
                }
            }
        }
    }

    /// Queue forecaster states to store; blocks if the queue is full (they are rare and
    /// large, and losing them costs relearning).
    /// Store what `policy` decided (`applied`: whether it was applied to the domains).
    pub fn save_allocation(
        &self,
        at_ms: i64,
        policy: &str,
        allocation: &Allocation,
        applied: bool,
    ) {
        let msg = Msg::Allocation(
            at_ms,
            policy.to_string(),
            Box::new(allocation.clone()),
            applied,
        );
        if self.tx.try_send(msg).is_err() {
            tracing::warn!("profile writer is behind or stopped; an allocation record was dropped");
        }
    }

    /// Store what the backend made of `plan`: every change accepted or refused.
    pub fn save_actuations(&self, at_ms: i64, plan: &Plan, applied: &Applied) {
        let records = Actuation::of(plan, applied);
        if records.is_empty() {
            return;
        }
        if self.tx.try_send(Msg::Actuations(at_ms, records)).is_err() {
            tracing::warn!("profile writer is behind or stopped; actuation records were dropped");
        }
    }

    /// Store rises in usage whose outcome is known.
    pub fn save_rises(&self, rises: Vec<Rise>) {
        if rises.is_empty() {
            return;
        }
        if self.tx.try_send(Msg::Rises(rises)).is_err() {
            tracing::warn!("profile writer is behind or stopped; rise records were dropped");
        }
    }

    /// Keep what newly seen domains have (never overwriting what was kept before), committed
    /// before this returns: the domains are changed right after, and what they had must
    /// outlive a crash.
    pub fn save_taken_over(&self, at_ms: i64, domains: Vec<DomainSettings>) -> Result<(), String> {
        if domains.is_empty() {
            return Ok(());
        }
        self.wait_for(|reply| Msg::TakenOver(at_ms, domains, reply))
    }

    pub fn save_forecasters(&self, format: i64, at_ms: i64, states: Vec<(Arc<str>, Vec<u8>)>) {
        if states.is_empty() {
            return;
        }
        if self
            .tx
            .send(Msg::Forecasters(format, at_ms, states))
            .is_err()
        {
            tracing::error!("profile writer has stopped; forecaster states not saved");
        }
    }

    /// Replace the operator's state of `kind` (overrides, intent notes) and wait until it is
    /// committed.
    pub fn save_operator_state(
        &self,
        kind: &'static str,
        rows: Vec<(String, String)>,
    ) -> Result<(), String> {
        self.wait_for(|reply| Msg::OperatorState(kind, rows, reply))
    }

    /// Wait until everything submitted so far is committed.
    pub fn flush(&self) -> Result<(), String> {
        self.wait_for(Msg::Flush)
    }

    /// Send the message `make` builds around a reply channel and wait for its answer.
    fn wait_for(
        &self,
        make: impl FnOnce(mpsc::Sender<Result<(), String>>) -> Msg,
    ) -> Result<(), String> {
        const STOPPED: &str = "profile writer has stopped";
        let (tx, rx) = mpsc::channel();
        self.tx.send(make(tx)).map_err(|_| STOPPED.to_string())?;
        rx.recv().map_err(|_| STOPPED.to_string())?
    }

    /// Commit what is queued, checkpoint, and stop.
    pub fn shutdown(self) -> WriterStats {
        drop(self.tx);
        let mut stats = self.handle.join().unwrap_or_default();
        stats.observations_lost += self.dropped;
        stats.samples_lost += self.dropped_samples;
        stats
    }
}

fn run(
    mut db: ProfileDb,
    rx: Receiver<Msg>,
    retention: Retention,
    maintain_every: Duration,
) -> WriterStats {
    let mut stats = WriterStats::default();
    let mut pending: Vec<Observation> = Vec::new();
    let mut last_maintenance = Instant::now();
    let mut newest_ms = 0i64;

    let mut failures = FailureLog::default();
    let mut allocation_failures = FailureLog::default();
    let mut commit =
        |db: &mut ProfileDb, pending: &mut Vec<Observation>, stats: &mut WriterStats| {
            if pending.is_empty() {
                return Ok(());
            }
            match db.write(pending) {
                Ok(n) => {
                    stats.samples_committed += n as u64;
                    stats.transactions += 1;
                    if let Some((took, tries)) = failures.recovered(Instant::now()) {
                        tracing::info!(
                            "the profile database {} is writable again after {:.0} s and {tries} \
                         failed attempts; {n} waiting samples stored",
                            db.path().display(),
                            took.as_secs_f64()
                        );
                    }
                    pending.clear();
                    Ok(())
                }
                Err(e) => {
                    stats.write_failures += 1;
                    if pending.len() > QUEUE {
                        let excess = pending.len() - QUEUE;
                        stats.observations_lost += excess as u64;
                        stats.samples_lost += pending
                            .drain(..excess)
                            .map(|o| o.tenants.len() as u64)
                            .sum::<u64>();
                    }
                    match failures.failed(Instant::now()) {
                        Said::First => tracing::error!(
                            "cannot store samples: {e}. They are kept in memory (up to {QUEUE} \
                         observations, the oldest dropped first) and retried"
                        ),
                        Said::Reminder => tracing::error!(
                            queued = pending.len(),
                            lost = stats.observations_lost,
                            failures = stats.write_failures,
                            "the profile database still cannot be written: {e}"
                        ),
                        Said::Nothing => {}
                    }
                    Err(e.to_string())
                }
            }
        };

    while let Ok(first) = rx.recv() {
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Write(o) => {
                    newest_ms = newest_ms.max(o.at_unix_ms);
                    pending.push(*o);
                }
                Msg::Flush(reply) => flushes.push(reply),
                Msg::Allocation(at_ms, policy, allocation, applied) => {
                    // Samples first: the tenants' rows must exist.
                    let _ = commit(&mut db, &mut pending, &mut stats);
                    let saved = db.save_allocation(at_ms, &policy, &allocation, applied);
                    record_kept(saved, "allocation", &mut allocation_failures, &mut stats);
                }
                Msg::Actuations(at_ms, records) => {
                    let _ = commit(&mut db, &mut pending, &mut stats);
                    let saved = db.save_actuations(at_ms, &records);
                    record_kept(saved, "actuation", &mut allocation_failures, &mut stats);
                }
                Msg::Rises(rises) => {
                    // Samples first: the tenants' rows must exist.
                    let _ = commit(&mut db, &mut pending, &mut stats);
                    let saved = db.save_rises(&rises);
                    record_kept(saved, "rise", &mut allocation_failures, &mut stats);
                }
                Msg::TakenOver(at_ms, domains, reply) => {
                    // Samples first: the tenants' rows must exist.
                    let _ = commit(&mut db, &mut pending, &mut stats);
                    let saved = db
                        .save_taken_over(at_ms, &domains)
                        .map_err(|e| e.to_string());
                    let _ = reply.send(saved.map(|_| ()));
                }
                Msg::OperatorState(kind, rows, reply) => {
                    let saved = db.save_operator_state(kind, &rows);
                    if let Err(e) = &saved {
                        tracing::error!("cannot store the operator's {kind} state: {e}");
                    }
                    let _ = reply.send(saved.map_err(|e| e.to_string()));
                }
                Msg::Forecasters(format, at_ms, states) => {
                    // Samples first: the tenants' rows must exist.
                    let _ = commit(&mut db, &mut pending, &mut stats);
                    match db.save_forecasters(at_ms, format, &states) {
                        Ok(n) => tracing::debug!(saved = n, "forecaster states stored"),
                        Err(e) => tracing::error!("cannot store forecaster states: {e}"),
                    }
                }
            }
            next = if pending.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        let result = commit(&mut db, &mut pending, &mut stats);
        for reply in flushes {
            let _ = reply.send(result.clone());
        }
        if last_maintenance.elapsed() >= maintain_every && newest_ms > 0 {
            last_maintenance = Instant::now();
            if let Err(e) = db.maintain(newest_ms, retention) {
                tracing::error!("profile maintenance failed: {e}");
            }
        }
    }
    // Channel closed: shutting down. What cannot be stored now is lost: count it.
    if commit(&mut db, &mut pending, &mut stats).is_err() {
        stats.observations_lost += pending.len() as u64;
        stats.samples_lost += pending.iter().map(|o| o.tenants.len() as u64).sum::<u64>();
    }
    if let Err(e) = finish(&mut db, newest_ms, retention) {
        tracing::error!("profile shutdown: {e}");
    }
    stats
}

/// Count and say (once a minute) allocation or actuation records that could not be stored.
fn record_kept(
    saved: Result<usize, ProfileError>,
    what: &str,
    failures: &mut FailureLog,
    stats: &mut WriterStats,
) {
    match saved {
        Ok(_) => {
            failures.recovered(Instant::now());
        }
        Err(e) => {
            stats.allocations_lost += 1;
            if failures.failed(Instant::now()) != Said::Nothing {
                tracing::error!(
                    lost = stats.allocations_lost,
                    "cannot store {what} records: {e}"
                );
            }
        }
    }
}

fn finish(db: &mut ProfileDb, newest_ms: i64, retention: Retention) -> Result<(), ProfileError> {
    if newest_ms > 0 {
        db.maintain(newest_ms, retention)?;
    }
    db.checkpoint()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_said_once_then_reminded_at_most_every_minute() {
        let t0 = Instant::now();
        let mut log = FailureLog::default();
        assert_eq!(log.failed(t0), Said::First);
        for s in 1..60 {
            assert_eq!(log.failed(t0 + Duration::from_secs(s)), Said::Nothing);
        }
        assert_eq!(log.failed(t0 + Duration::from_secs(60)), Said::Reminder);
        assert_eq!(log.failed(t0 + Duration::from_secs(61)), Said::Nothing);
        assert_eq!(log.failed(t0 + Duration::from_secs(125)), Said::Reminder);
        let (took, tries) = log.recovered(t0 + Duration::from_secs(130)).unwrap();
        assert_eq!((took, tries), (Duration::from_secs(130), 63));
        assert_eq!(log.recovered(t0 + Duration::from_secs(131)), None);
        // A new run of failures starts loud again.
        assert_eq!(log.failed(t0 + Duration::from_secs(140)), Said::First);
    }
}
