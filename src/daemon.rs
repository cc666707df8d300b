//! The daemon driver: the control loop on a timer against the libvirt backend, on its own
//! thread (libvirt calls block), with the async runtime left for signals and, later, the
//! control socket. SIGINT/SIGTERM stop it gracefully: the cycle in flight finishes, the
//! profile writer commits what is queued and checkpoints the database.

use crate::backend::Backend;
use crate::backend::libvirt::LibvirtBackend;
use crate::collect::Observation;
use crate::config::Config;
use crate::forecast::stage::ForecastStage;
use crate::pipeline::Controller;
use crate::profile::{ProfileDb, writer::ProfileWriter};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Profile(#[from] crate::profile::ProfileError),
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot install the signal handler: {0}")]
    Signal(std::io::Error),
    #[error(
        "{observations} observations ({samples} tenant samples) could not be stored in the \
         profile database {path} and are lost (the errors above say why)"
    )]
    SamplesLost {
        observations: u64,
        samples: u64,
        path: std::path::PathBuf,
    },
    #[error("the control loop stopped on an internal error (a panic; see the log above)")]
    LoopPanicked,
}

pub struct Options {
    pub reset_db: bool,
    /// Print a per-tenant table every cycle (the demo's live view).
    pub print_stats: bool,
}

pub fn run(cfg: Config, opts: Options) -> Result<(), DaemonError> {
    if cfg.profile.path == crate::config::ProfileConfig::default().path {
        ProfileDb::create_dir_of(&cfg.profile.path)?;
    }
    let db = ProfileDb::open(&cfg.profile.path, opts.reset_db)?;
    tracing::info!(path = %db.path().display(), "profile database open");
    let counts = db.counts()?;
    tracing::info!(
        tenants = counts.tenants,
        samples = counts.samples,
        history = counts.history,
        "profile holds"
    );
    let mut forecasts = ForecastStage::new(crate::forecast::Config::default());
    let restored = forecasts.restore(db.load_forecasters()?);
    tracing::info!(restored, "forecasters restored from the profile");
    let maintain_every = Duration::from_secs_f64(cfg.profile.maintenance_minutes * 60.0);
    let writer = ProfileWriter::spawn(db, cfg.retention(), maintain_every);
    let backend = LibvirtBackend::connect(&cfg.daemon.uri)?;
    let interval = Duration::from_secs_f64(cfg.daemon.interval_seconds);
    let save_every = (cfg.forecast.save_minutes * 60.0 / cfg.daemon.interval_seconds).ceil() as u64;
    let controller = Controller::new(Some(writer)).with_forecasts(forecasts, save_every);
    tracing::info!(
        backend = %backend.describe(),
        interval_s = cfg.daemon.interval_seconds,
        "prescient daemon running"
    );

    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let print = opts.print_stats;
    let control = std::thread::Builder::new()
        .name("control-loop".into())
        .spawn(move || control_loop(backend, controller, interval, stop_rx, print))
        .map_err(DaemonError::Runtime)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
        let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        Ok::<(), DaemonError>(())
    })?;
    let _ = stop_tx.send(());
    match control.join() {
        Ok(Some(stats)) => {
            tracing::info!(
                samples = stats.samples_committed,
                transactions = stats.transactions,
                write_failures = stats.write_failures,
                lost = stats.observations_lost,
                "profile flushed and closed"
            );
            if stats.observations_lost > 0 {
                return Err(DaemonError::SamplesLost {
                    observations: stats.observations_lost,
                    samples: stats.samples_lost,
                    path: cfg.profile.path.clone(),
                });
            }
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(_) => Err(DaemonError::LoopPanicked),
    }
}

fn control_loop(
    mut backend: LibvirtBackend,
    mut controller: Controller,
    interval: Duration,
    stop: mpsc::Receiver<()>,
    print: bool,
) -> Option<crate::profile::writer::WriterStats> {
    let mut next = Instant::now();
    let mut failing = false;
    loop {
        match controller.step(&mut backend) {
            Ok(obs) => {
                if failing {
                    tracing::info!("collection recovered");
                    failing = false;
                }
                tracing::debug!(tenants = obs.tenants.len(), "cycle {}", controller.cycles());
                if print {
                    print_cycle(&obs);
                }
            }
            Err(e) => {
                if !failing {
                    tracing::error!("collection failed (retrying every interval): {e}");
                }
                failing = true;
            }
        }
        next += interval;
        let now = Instant::now();
        if next < now {
            next = now; // a slow cycle: do not try to catch up in a burst
        }
        match stop.recv_timeout(next - now) {
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            _ => break,
        }
    }
    controller.shutdown()
}

fn print_cycle(obs: &Observation) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", crate::cli::collect::render_table(obs));
    let _ = out.flush();
}
