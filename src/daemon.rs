//! The daemon driver: the control loop on a timer against the libvirt backend, on its own
//! thread (libvirt calls block), with the async runtime left for signals and, later, the
//! control socket. SIGINT/SIGTERM stop it gracefully: the cycle in flight finishes, the
//! profile writer commits what is queued and checkpoints the database. SIGHUP rereads the
//! policy file: a valid one is obeyed from the next cycle on, an invalid one is rejected
//! with its error and the rules in force stay.
//!
//! The loop thread alone owns the control loop's state; the rest of the daemon reaches it
//! with [`Command`]s over a channel, taken between cycles. The control socket and the
//! metrics listener run on the async runtime beside the signals: they read the view the
//! loop publishes after every cycle and every change, and send changes as commands.

use crate::allocate::rules::Rules;
use crate::backend::Backend;
use crate::backend::libvirt::LibvirtBackend;
use crate::collect::Observation;
use crate::config::Config;
use crate::control::desk::{Desk, Request};
use crate::control::server::{ServerError, Shared};
use crate::control::view::{Context, CycleView, Status, View};
use crate::forecast::stage::ForecastStage;
use crate::pipeline::Controller;
use crate::profile::{ProfileDb, writer::ProfileWriter};
use std::sync::{Arc, mpsc};
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
    #[error(transparent)]
    Rules(#[from] crate::allocate::rules::RulesError),
    #[error("allocate.policy: {0}")]
    Policy(#[from] crate::allocate::kind::KindError),
    #[error(transparent)]
    Control(#[from] ServerError),
}

/// What the rest of the daemon asks of the control loop.
#[derive(Debug)]
pub enum Command {
    /// Obey these rules from the next cycle on.
    SetRules(Box<Rules>),
    /// A change an operator asked for through the control socket.
    Control(Box<Request>),
    /// Finish the cycle in flight and stop.
    Stop,
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
    let mut forecasts = ForecastStage::new(crate::forecast::Config::default())
        .with_bucket_seconds(cfg.forecast.bucket_seconds);
    let restored = forecasts.restore(db.load_forecasters()?);
    tracing::info!(restored, "forecasters restored from the profile");
    let reasons = match cfg.allocate.kind() {
        Some(kind) => db.load_reasons(kind.name())?,
        None => Vec::new(),
    };
    let taken_over = db.load_taken_over()?;
    let overrides = db.load_operator_state(crate::pipeline::OVERRIDES)?;
    let desk = crate::control::desk::load_notes(&db)?;
    let rises = db.load_rises(crate::model::now_unix_ms() - crate::leadtime::DAY_MS)?;
    let maintain_every = Duration::from_secs_f64(cfg.profile.maintenance_minutes * 60.0);
    let writer = ProfileWriter::spawn(db, cfg.retention(), maintain_every);
    let mut backend = LibvirtBackend::connect(&cfg.daemon.uri)?;
    let interval = Duration::from_secs_f64(cfg.daemon.interval_seconds);
    let save_every = (cfg.forecast.save_minutes * 60.0 / cfg.daemon.interval_seconds).ceil() as u64;
    let mut controller = Controller::new(Some(writer))
        .with_forecasts(forecasts, save_every)
        .with_interval(cfg.daemon.interval_seconds);
    controller.adopt_rises(rises);
    let kept = controller.adopt_overrides(overrides);
    if kept > 0 {
        tracing::info!(
            overrides = kept,
            "operator overrides restored from the profile"
        );
    }
    let policy_file = cfg.allocate.policy_file.clone();
    if let Some(path) = &policy_file {
        let rules = Rules::load(path)?;
        rules.check_host(&backend.host()?.capacity)?;
        tracing::info!(file = %path.display(), "policy file read");
        controller.set_rules(rules);
    }
    if let Some(kind) = cfg.allocate.kind() {
        let (mut policy, _) = kind.build(cfg.allocate.knob, Default::default())?;
        let mut learnt = 0;
        for (uuid, reasons) in &reasons {
            learnt += usize::from(policy.restore(uuid, reasons));
        }
        if learnt > 0 {
            tracing::info!(
                tenants = learnt,
                "what the policy learnt restored from the profile"
            );
        }
        if cfg.actuate.dry_run {
            tracing::info!(
                policy = %policy.describe(),
                "dry run: allocations are decided, recorded and logged; no domain setting \
                 is changed"
            );
        } else {
            tracing::info!(
                policy = %policy.describe(),
                "allocations are applied each cycle: vCPU quota and shares, balloon targets, \
                 disk throttles, vNIC bandwidth"
            );
        }
        controller = controller
            .with_policy(policy)
            .with_actuation(cfg.actuate.clone());
        controller.actuator_mut().adopt_originals(taken_over);
    }
    tracing::info!(
        backend = %backend.describe(),
        interval_s = cfg.daemon.interval_seconds,
        "prescient daemon running"
    );

    // Signal handlers first: a signal that comes as soon as the loop runs is handled too.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let (mut term, mut int, mut hup) = {
        use tokio::signal::unix::{SignalKind, signal};
        let _runtime = rt.enter();
        let on = |kind| signal(kind).map_err(DaemonError::Signal);
        (
            on(SignalKind::terminate())?,
            on(SignalKind::interrupt())?,
            on(SignalKind::hangup())?,
        )
    };
    let (tx, commands) = mpsc::channel::<Command>();
    let status = Status {
        version: env!("CARGO_PKG_VERSION").into(),
        backend: backend.describe(),
        started_unix_ms: crate::model::now_unix_ms(),
        interval_s: cfg.daemon.interval_seconds,
        policy_file: policy_file.as_ref().map(|p| p.display().to_string()),
        ..Default::default()
    };
    let shared = Arc::new(Shared {
        view: Default::default(),
        commands: tx.clone(),
        access: crate::control::auth::Access {
            read_group: cfg.control.group.clone(),
            admin_group: cfg.control.admin_group.clone(),
        },
        audit: crate::control::server::AuditLog::open(&audit_path(&cfg))?,
        policy_file: policy_file.clone(),
        limits: Default::default(),
    });
    let socket = crate::control::server::listen(&rt, &cfg.control, &shared)?;
    let print = opts.print_stats;
    let publisher = Publisher {
        shared,
        status,
        desk,
        unmet: Default::default(),
    };
    let restore = cfg.allocate.kind().is_some()
        && !cfg.actuate.dry_run
        && cfg.actuate.on_exit == crate::actuate::OnExit::Restore;
    let control = std::thread::Builder::new()
        .name("control-loop".into())
        .spawn(move || {
            control_loop(
                backend, controller, publisher, interval, commands, print, restore,
            )
        })
        .map_err(DaemonError::Runtime)?;
    rt.block_on(async {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break }
                _ = hup.recv() => reload(policy_file.as_deref(), &tx),
            }
        }
    });
    let _ = tx.send(Command::Stop);
    let joined = control.join();
    if let Some(path) = &socket {
        let _ = std::fs::remove_file(path);
    }
    match joined {
        Ok(Some(stats)) => {
            tracing::info!(
                samples = stats.samples_committed,
                transactions = stats.transactions,
                write_failures = stats.write_failures,
                lost = stats.observations_lost,
                allocations_lost = stats.allocations_lost,
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

/// SIGHUP: reread the policy file and hand the rules to the loop, or say why not.
fn reload(path: Option<&std::path::Path>, tx: &mpsc::Sender<Command>) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: no policy file to reread (allocate.policy_file is not set)");
        return;
    };
    match Rules::load(path) {
        Ok(rules) => {
            tracing::info!(file = %path.display(), "SIGHUP: policy file reread");
            let _ = tx.send(Command::SetRules(Box::new(rules)));
        }
        Err(e) => tracing::error!("SIGHUP: {e}; the rules in force stay"),
    }
}

/// Where changes made through the control socket are logged.
fn audit_path(cfg: &Config) -> std::path::PathBuf {
    cfg.control.audit_log.clone().unwrap_or_else(|| {
        (cfg.profile.path.parent())
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .join("audit.log")
    })
}

/// What the loop thread needs to publish its view and take the operator's changes.
struct Publisher {
    shared: Arc<Shared>,
    /// What does not change between cycles, and the last cycle's figures.
    status: Status,
    desk: Desk,
    /// The resources whose reservations did not fit in the last view (said once, on change).
    unmet: crate::model::PerResource<bool>,
}

impl Publisher {
    fn publish(&mut self, controller: &Controller, obs: Option<&Observation>) {
        let mut status = self.status.clone();
        status.at_unix_ms = crate::model::now_unix_ms();
        let view = View::build(
            controller,
            Context {
                status,
                obs,
                notes: &self.desk.notes,
            },
        );
        let s = &view.status;
        for r in crate::model::Resource::ALL {
            let unmet = *s.reservations_unmet.get(r);
            let capacity = s.host.as_ref().and_then(|h| *h.capacity.get(r));
            if unmet && !self.unmet.get(r) {
                tracing::warn!(
                    resource = %r,
                    reserved = s.reserved.get(r),
                    capacity,
                    "the tenants' reservations exceed what they may have: they cannot all be \
                     honoured, the lowest classes' are squeezed (lower an override's minimum, \
                     a class's reservation or the host reserve)"
                );
            } else if !unmet && *self.unmet.get(r) {
                tracing::info!(resource = %r, "the tenants' reservations fit again");
            }
            *self.unmet.get_mut(r) = unmet;
        }
        self.shared.publish(view);
    }
}

fn control_loop(
    mut backend: LibvirtBackend,
    mut controller: Controller,
    mut publisher: Publisher,
    interval: Duration,
    commands: mpsc::Receiver<Command>,
    print: bool,
    restore: bool,
) -> Option<crate::profile::writer::WriterStats> {
    let mut next = Instant::now();
    let mut failing = false;
    let mut last: Option<Observation> = None;
    publisher.publish(&controller, None);
    loop {
        let started = Instant::now();
        let at_unix_ms = crate::model::now_unix_ms();
        let error = match controller.step(&mut backend) {
            Ok(obs) => {
                if failing {
                    tracing::info!("collection recovered");
                    failing = false;
                }
                tracing::debug!(tenants = obs.tenants.len(), "cycle {}", controller.cycles());
                if print {
                    print_cycle(&obs, &controller);
                }
                last = Some(obs);
                None
            }
            Err(e) => {
                if !failing {
                    tracing::error!("collection failed (retrying every interval): {e}");
                }
                failing = true;
                publisher.status.cycle_errors_total += 1;
                Some(e.to_string())
            }
        };
        publisher.status.last_cycle = Some(CycleView {
            at_unix_ms,
            duration_s: started.elapsed().as_secs_f64(),
            decide_s: controller.decide_seconds(),
            error,
        });
        publisher.desk.prune(&controller);
        publisher.publish(&controller, last.as_ref());
        next += interval;
        let now = Instant::now();
        if next < now {
            next = now; // a slow cycle: do not try to catch up in a burst
        }
        if !wait(
            &mut controller,
            &mut publisher,
            last.as_ref(),
            &commands,
            next,
        ) {
            break;
        }
    }
    let l = backend.latency();
    tracing::info!(
        "setter latency (ms, slow-weighted average): cpu {:.2}, memory {:.2}, disk {:.2}, \
         network {:.2}",
        l.cpu * 1e3,
        l.mem * 1e3,
        l.disk * 1e3,
        l.net * 1e3
    );
    if let Some((median, longest)) = controller.cadence().measured() {
        tracing::info!(
            "a decision's reach (s, from its snapshot to the next cycle's changes, last {} \
             cycles): median {median:.3}, longest {longest:.3}; decisions covered {:.3} s \
             ahead plus each setter's latency",
            crate::cadence::Cadence::WINDOW,
            controller.cadence().ahead_s()
        );
    }
    if restore {
        match controller.hand_back(&mut backend) {
            Ok(a) => tracing::info!(
                restored = a.accepted.len(),
                refused = a.denials.len(),
                "domains given back the settings they had when prescient first saw them"
            ),
            Err(e) => tracing::error!("cannot give the domains back their settings: {e}"),
        }
    }
    controller.shutdown()
}

/// Take commands until `until`; false when the loop must stop.
fn wait(
    controller: &mut Controller,
    publisher: &mut Publisher,
    last: Option<&Observation>,
    commands: &mpsc::Receiver<Command>,
    until: Instant,
) -> bool {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match commands.recv_timeout(left) {
            Err(mpsc::RecvTimeoutError::Timeout) => return true,
            Err(mpsc::RecvTimeoutError::Disconnected) | Ok(Command::Stop) => return false,
            Ok(Command::SetRules(rules)) => {
                match last.map(|o| rules.check_host(&o.host.capacity)) {
                    Some(Err(e)) => tracing::error!("{e}; the rules in force stay"),
                    _ => {
                        controller.set_rules(*rules);
                        tracing::info!("new rules in force from the next cycle");
                    }
                }
            }
            Ok(Command::Control(req)) => {
                let now_ms = crate::model::now_unix_ms();
                let result =
                    (publisher.desk).act(controller, last, req.action.clone(), &req.caller, now_ms);
                // Here, with the change, not in the connection: a client that goes away
                // cannot leave a change unaudited.
                let outcome = result.as_ref().map(|_| ());
                (publisher.shared.audit).record(&req.caller, &req.action, outcome);
                publisher.publish(controller, last);
                let _ = req.reply.send(result);
            }
        }
    }
}

fn print_cycle(obs: &Observation, controller: &Controller) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", crate::cli::collect::render_table(obs));
    if let Some(alloc) = controller.last_allocation() {
        let a = controller.actuator();
        // As the actuator holds them: unlimited where the capacity is unknown and no limit.
        let decided = |t: &crate::collect::TenantStats, r, amount| {
            let mut held = t.clone();
            controller.overrides().apply_one(&mut held);
            crate::actuate::enforced(obs, controller.rules(), &held, r, amount)
        };
        let table =
            crate::cli::collect::render_allocations(obs, alloc, decided, |u, r| a.in_force(u, r));
        let _ = writeln!(out, "{table}");
    }
    let _ = out.flush();
}
