//! The profile writer: a thread that owns the database and commits observations in batches,
//! so that the control loop never waits on the disk.

use super::{ProfileDb, ProfileError, Retention};
use crate::collect::Observation;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Observations that may wait for the writer before new ones are dropped (and counted).
const QUEUE: usize = 4096;
/// Observations committed in one transaction at most.
const MAX_BATCH: usize = 512;

enum Msg {
    Write(Box<Observation>),
    /// Encoded forecaster states (format, at_ms, states).
    Forecasters(i64, i64, Vec<(Arc<str>, Vec<u8>)>),
    Flush(mpsc::Sender<Result<(), String>>),
}

/// What the writer did, reported at shutdown.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WriterStats {
    pub samples_committed: u64,
    pub transactions: u64,
    pub observations_dropped: u64,
    pub errors: u64,
}

pub struct ProfileWriter {
    tx: SyncSender<Msg>,
    handle: JoinHandle<WriterStats>,
    dropped: u64,
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
        }
    }

    /// Queue an observation; never blocks. If the writer is hopelessly behind, the
    /// observation is dropped and counted (and logged), not silently lost.
    pub fn submit(&mut self, obs: Observation) {
        match self.tx.try_send(Msg::Write(Box::new(obs))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped += 1;
                tracing::error!(
                    dropped = self.dropped,
                    "profile writer is behind; dropped an observation"
                );
            }
        }
    }

    /// Queue forecaster states to store; blocks if the queue is full (they are rare and
    /// large, and losing them costs relearning).
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

    /// Wait until everything submitted so far is committed.
    pub fn flush(&self) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Msg::Flush(tx))
            .map_err(|_| "profile writer has stopped".to_string())?;
        rx.recv()
            .map_err(|_| "profile writer has stopped".to_string())?
    }

    /// Commit what is queued, checkpoint, and stop.
    pub fn shutdown(self) -> WriterStats {
        drop(self.tx);
        let mut stats = self.handle.join().unwrap_or_default();
        stats.observations_dropped += self.dropped;
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

    let commit = |db: &mut ProfileDb, pending: &mut Vec<Observation>, stats: &mut WriterStats| {
        if pending.is_empty() {
            return Ok(());
        }
        match db.write(pending) {
            Ok(n) => {
                stats.samples_committed += n as u64;
                stats.transactions += 1;
                pending.clear();
                Ok(())
            }
            Err(e) => {
                stats.errors += 1;
                tracing::error!("cannot store samples (kept for the next try): {e}");
                if pending.len() > QUEUE {
                    let excess = pending.len() - QUEUE;
                    pending.drain(..excess);
                    stats.observations_dropped += excess as u64;
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
    // Channel closed: shutting down.
    let _ = commit(&mut db, &mut pending, &mut stats);
    if let Err(e) = finish(&mut db, newest_ms, retention) {
        tracing::error!("profile shutdown: {e}");
    }
    stats
}

fn finish(db: &mut ProfileDb, newest_ms: i64, retention: Retention) -> Result<(), ProfileError> {
    if newest_ms > 0 {
        db.maintain(newest_ms, retention)?;
    }
    db.checkpoint()
}
