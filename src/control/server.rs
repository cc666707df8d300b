//! The transport of the control API: HTTP/1.1 over the Unix socket (callers known by their
//! peer credentials), and `/metrics` over TCP where configured. Reads are answered from the
//! published [`View`]; changes go to the loop thread as a [`Request`] and their answer comes
//! back on a oneshot channel. A slow or stuck client holds only its own connection: headers
//! must arrive within [`HEADER_TIMEOUT`], a connection lives at most [`CONNECTION_TIMEOUT`],
//! and each kind of caller has its own [`Limits`], so that neither strangers, readers nor
//! scrapers can take the room admins need. A connection over its limit is answered 503.
//!
//! Every change asked for is written to the [`AuditLog`] by whoever makes or refuses it: the
//! loop thread for the changes it makes, this module for refusals and policy reloads (run to
//! the end even when the client goes away), so no change goes unrecorded.

use super::action::{self, Action, ApiError, Role};
use super::auth::{Access, Caller};
use super::desk::Request;
use super::view::View;
use crate::daemon::Command;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::Duration;
use tokio::sync::Semaphore;

pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once, per kind of caller.
pub const ADMIN_CONNECTIONS: usize = 16;
pub const READER_CONNECTIONS: usize = 32;
/// Callers in neither group (they only ever get a 403).
pub const STRANGER_CONNECTIONS: usize = 4;
/// Scrapers of the TCP metrics listener.
pub const METRICS_CONNECTIONS: usize = 16;
/// Connections over a limit that are answered 503 at once, per listener; any more are closed
/// unanswered.
pub const BUSY_ANSWERS: usize = 32;
/// How long a connection over its limit may take to send its request before it is closed.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a change may wait for the loop thread (it takes changes between cycles).
pub const LOOP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("control socket {path}: {message}")]
    Socket { path: PathBuf, message: String },
    #[error("audit log {path}: {source}")]
    Audit {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("control.metrics_listen {0}")]
    MetricsAddress(String),
    #[error("metrics address {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// What every connection shares.
pub struct Shared {
    pub view: RwLock<Arc<View>>,
    pub commands: mpsc::Sender<Command>,
    pub access: Access,
    pub audit: AuditLog,
    pub policy_file: Option<PathBuf>,
    pub limits: Limits,
}

/// Room for connections, kept apart per kind of caller.
pub struct Limits {
    admins: Arc<Semaphore>,
    readers: Arc<Semaphore>,
    strangers: Arc<Semaphore>,
    metrics: Arc<Semaphore>,
    /// Answering 503 on the socket and on the metrics listener.
    socket_busy: Arc<Semaphore>,
    metrics_busy: Arc<Semaphore>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            admins: Arc::new(Semaphore::new(ADMIN_CONNECTIONS)),
            readers: Arc::new(Semaphore::new(READER_CONNECTIONS)),
            strangers: Arc::new(Semaphore::new(STRANGER_CONNECTIONS)),
            metrics: Arc::new(Semaphore::new(METRICS_CONNECTIONS)),
            socket_busy: Arc::new(Semaphore::new(BUSY_ANSWERS)),
            metrics_busy: Arc::new(Semaphore::new(BUSY_ANSWERS)),
        }
    }
}

impl Limits {
    /// The room for a caller of `role` on the socket (None: neither group), with the limit.
    fn socket(&self, role: Option<Role>) -> (&Arc<Semaphore>, &'static str, usize) {
        match role {
            Some(Role::Admin) => (&self.admins, "admins", ADMIN_CONNECTIONS),
            Some(Role::Reader) => (&self.readers, "readers", READER_CONNECTIONS),
            None => (
                &self.strangers,
                "callers in neither group",
                STRANGER_CONNECTIONS,
            ),
        }
    }
}

/// The audit log: one JSON line per change asked for through the socket, with who asked,
/// when, and the result.
pub struct AuditLog {
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    /// Open (create, append) the audit log, readable by root and its group only.
    pub fn open(path: &Path) -> Result<AuditLog, ServerError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .map_err(|source| ServerError::Audit {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(AuditLog {
            file: Mutex::new(file),
        })
    }

    /// Append one line: who, when, what, and the result.
    pub fn record(&self, caller: &Caller, action: &Action, result: Result<(), &ApiError>) {
        let line = json!({
            "at_unix_ms": crate::model::now_unix_ms(),
            "uid": caller.uid,
            "gid": caller.gid,
            "pid": caller.pid,
            "user": caller.user,
            "action": action.describe(),
            "result": match result {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("{} {}", e.status, e.message),
            },
        });
        let written = (self.file.lock())
            .map_err(|_| std::io::Error::other("audit log lock poisoned"))
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            tracing::error!("cannot write the audit log: {e} (the change was: {line})");
        }
    }
}

impl Shared {
    pub fn view(&self) -> Arc<View> {
        self.view.read().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn publish(&self, view: View) {
        if let Ok(mut v) = self.view.write() {
            *v = Arc::new(view);
        }
    }
}

/// Bind the control socket at `path`: its directory is created if missing, a stale socket
/// left by a daemon that died is replaced, a live one (another daemon) or any other file is
/// refused. The socket gets `group` and mode 0660 (0600 if the group does not exist), and an
/// ACL entry that lets `admin_group` connect too, so that an admin need not also be a reader.
pub fn bind(
    path: &Path,
    group: &str,
    admin_group: &str,
) -> Result<std::os::unix::net::UnixListener, ServerError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let err = |message: String| ServerError::Socket {
        path: path.to_path_buf(),
        message,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("cannot create its directory: {e}")))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(err(
                "exists and is not a socket; not replacing it (remove it or choose another \
                 [control] socket)"
                    .into(),
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err(
                "another prescient daemon is listening on it (stop it first, or give this one \
                 another --socket)"
                    .into(),
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| err(format!("cannot remove a stale socket: {e}")))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| err(format!("cannot listen: {e}")))?;
    let mode = match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => {
            std::os::unix::fs::chown(path, None, Some(g.gid.as_raw()))
                .map_err(|e| err(format!("cannot give it to group {group}: {e}")))?;
            0o660
        }
        _ => {
            tracing::warn!(
                socket = %path.display(),
                "group {group} does not exist: only root can use the control socket (create \
                 the group and add operators to it, then restart)"
            );
            0o600
        }
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| err(format!("cannot set its mode: {e}")))?;
    if let Ok(Some(admins)) = nix::unistd::Group::from_name(admin_group)
        && let Err(e) = grant_group(path, mode, admins.gid.as_raw())
    {
        tracing::warn!(
            socket = %path.display(),
            "cannot let group {admin_group} connect through an ACL ({e}): its members must \
             also be in group {group} to use the control socket"
        );
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| err(format!("{e}")))?;
    Ok(listener)
}

/// Give group `gid` read and write on `path` with a POSIX ACL (the `system.posix_acl_access`
/// attribute, as `setfacl -m g:GID:rw` writes it), keeping what `mode` gives the others.
fn grant_group(path: &Path, mode: u32, gid: u32) -> std::io::Result<()> {
    const UNDEFINED: u32 = u32::MAX;
    let rw = 0o6;
    // (tag, permissions, id), in the order the kernel requires.
    let entries = [
        (0x01, (mode >> 6) & 0o7, UNDEFINED), // the owner
        (0x04, (mode >> 3) & 0o7, UNDEFINED), // the owning group
        (0x08, rw, gid),                      // the admin group
        (0x10, rw, UNDEFINED),                // the mask
        (0x20, mode & 0o7, UNDEFINED),        // everyone else
    ];
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        acl.extend_from_slice(&(tag as u16).to_le_bytes());
        acl.extend_from_slice(&(perm as u16).to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    rustix::fs::setxattr(
        path,
        "system.posix_acl_access",
        &acl,
        rustix::fs::XattrFlags::empty(),
    )
    .map_err(std::io::Error::from)
}

/// Open the control socket and the metrics listener `cfg` asks for and serve them on `rt`
/// (until it stops); the socket's path, to remove at exit.
pub fn listen(
    rt: &tokio::runtime::Runtime,
    cfg: &super::ControlConfig,
    shared: &Arc<Shared>,
) -> Result<Option<PathBuf>, ServerError> {
    let _runtime = rt.enter();
    let socket = cfg.socket().map(Path::to_path_buf);
    if let Some(path) = &socket {
        let listener = bind(path, &cfg.group, &cfg.admin_group)?;
        let listener =
            tokio::net::UnixListener::from_std(listener).map_err(|e| ServerError::Socket {
                path: path.clone(),
                message: e.to_string(),
            })?;
        rt.spawn(serve_socket(listener, shared.clone()));
        tracing::info!(socket = %path.display(), group = %cfg.group, "control socket open");
    }
    let addr = cfg.metrics().map_err(ServerError::MetricsAddress)?;
    if let Some(addr) = addr {
        let bound = std::net::TcpListener::bind(addr).and_then(|l| {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)
        });
        let listener = bound.map_err(|source| ServerError::Metrics { addr, source })?;
        rt.spawn(serve_metrics(listener, shared.clone()));
        tracing::info!(%addr, "metrics served at /metrics");
    }
    Ok(socket)
}

/// Serve the control socket until the runtime stops.
pub async fn serve_socket(listener: tokio::net::UnixListener, shared: Arc<Shared>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let caller = match stream.peer_cred() {
            Ok(c) => Caller::new(c.uid(), c.gid(), c.pid()),
            Err(e) => {
                tracing::warn!("control socket: cannot read the caller's credentials: {e}");
                continue;
            }
        };
        let (room, who, limit) = shared.limits.socket(shared.access.role(&caller));
        let Ok(slot) = room.clone().try_acquire_owned() else {
            tracing::warn!(caller = %caller, "control socket: {who} have {limit} connections open; refused");
            let message = format!(
                "the daemon is serving {limit} connections of {who} already; try again shortly"
            );
            busy(stream, &shared.limits.socket_busy, message);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(|req| {
                let shared = shared.clone();
                let caller = caller.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, shared, Some(caller)).await) }
            });
            serve(TokioIo::new(stream), service).await;
        });
    }
}

/// Serve `/metrics` over TCP until the runtime stops (nothing else is answered there).
pub async fn serve_metrics(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(slot) = shared.limits.metrics.clone().try_acquire_owned() else {
            let message = format!(
                "{METRICS_CONNECTIONS} metrics connections are open already; try again shortly"
            );
            busy(stream, &shared.limits.metrics_busy, message);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(|req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, shared, None).await) }
            });
            serve(TokioIo::new(stream), service).await;
        });
    }
}

/// Answer a connection over its limit with a 503 that says why (its request is read first,
/// so that the answer is not lost to a reset), or close it if too many are being answered.
fn busy<S>(stream: S, room: &Arc<Semaphore>, message: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Ok(slot) = room.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _slot = slot;
        let service = hyper::service::service_fn(move |_req| {
            let e = ApiError::unavailable(message.clone());
            async move { Ok::<_, std::convert::Infallible>(error_response(&e)) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(BUSY_TIMEOUT)
            .keep_alive(false);
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let _ = tokio::time::timeout(BUSY_TIMEOUT * 2, conn).await;
    });
}

async fn serve<I, S>(io: I, service: S)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Full<Bytes>> + Send,
    S::Future: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        // A client that closes its write side after the request (socat, `nc -N`) still
        // gets its answer.
        .half_close(true)
        .max_buf_size(action::MAX_BODY + 16 * 1024);
    let conn = builder.serve_connection(io, service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("control connection ended: {e}"),
        Err(_) => tracing::debug!("control connection closed after {CONNECTION_TIMEOUT:?}"),
    }
}

fn respond(status: u16, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_response(status: u16, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into());
    respond(status, "application/json", body + "\n")
}

fn error_response(e: &ApiError) -> Response<Full<Bytes>> {
    json_response(e.status, &json!({ "error": e.message }))
}

/// One request: `caller` None is the TCP metrics listener (only `/metrics` is served).
async fn handle(
    req: hyper::Request<Incoming>,
    shared: Arc<Shared>,
    caller: Option<Caller>,
) -> Response<Full<Bytes>> {
    // HEAD is GET without the body (hyper leaves it out).
    let method = match req.method() {
        &hyper::Method::HEAD => "GET".to_string(),
        m => m.as_str().to_string(),
    };
    let path = req.uri().path().to_string();
    let declared = req.headers().get(hyper::header::CONTENT_LENGTH).cloned();
    let format = super::metrics::negotiate(
        (req.headers().get(hyper::header::ACCEPT)).and_then(|v| v.to_str().ok()),
    );
    let body = match Limited::new(req.into_body(), action::MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return error_response(&ApiError {
                status: 413,
                message: format!("request body over {} bytes", action::MAX_BODY),
            });
        }
        Err(e) => {
            let length = (declared.as_ref().and_then(|v| v.to_str().ok()))
                .map(|v| format!(" (Content-Length: {v})"))
                .unwrap_or_default();
            return error_response(&ApiError::bad(format!(
                "the request body ended before its declared length{length}: {e}"
            )));
        }
    };
    let action = match action::parse(&method, &path, &body) {
        Ok(a) => a,
        Err(e) => return error_response(&e),
    };
    let Some(caller) = caller else {
        return match action {
            Action::Metrics => respond(
                200,
                format.content_type(),
                super::metrics::render(shared.view(), format),
            ),
            _ => error_response(&ApiError::not_found(
                "only /metrics is served here; the control API is on the Unix socket",
            )),
        };
    };
    let needs = action.needs();
    let allowed = shared.access.role(&caller).is_some_and(|r| r >= needs);
    if !allowed {
        let e = ApiError {
            status: 403,
            message: shared.access.refusal(&caller, needs),
        };
        if action.changes() {
            shared.audit.record(&caller, &action, Err(&e));
        }
        return error_response(&e);
    }
    let view = shared.view();
    let result = match &action {
        Action::Status => Ok(serde_json::to_value(&view.status).unwrap_or_default()),
        Action::Tenants => Ok(serde_json::to_value(&view.tenants).unwrap_or_default()),
        Action::Explain { tenant } => view
            .explain(tenant)
            .map(|e| serde_json::to_value(e).unwrap_or_default())
            .ok_or_else(|| ApiError::unknown_tenant(tenant)),
        Action::OverrideList => Ok(serde_json::to_value(&view.overrides).unwrap_or_default()),
        Action::IntentList => Ok(serde_json::to_value(&view.intents).unwrap_or_default()),
        Action::Metrics => {
            return respond(
                200,
                format.content_type(),
                super::metrics::render(view, format),
            );
        }
        // Run to the end on its own task: a client that goes away (and drops this future)
        // cannot leave the new rules in force without their audit line.
        Action::PolicyReload => {
            let task = tokio::spawn(async move {
                let result = reload(&shared).await;
                (shared.audit).record(&caller, &Action::PolicyReload, result.as_ref().map(|_| ()));
                result
            });
            task.await.unwrap_or_else(|e| {
                Err(ApiError::unavailable(format!("policy reload failed: {e}")))
            })
        }
        // The loop thread makes the change and writes its audit line.
        _ => to_loop(&shared, action.clone(), &caller).await,
    };
    match result {
        Ok(v) => json_response(200, &v),
        Err(e) => error_response(&e),
    }
}

/// Reread the policy file (off the runtime) and hand the rules to the loop.
async fn reload(shared: &Shared) -> Result<serde_json::Value, ApiError> {
    let Some(path) = shared.policy_file.clone() else {
        return Err(ApiError::bad(
            "no policy file to reread (the daemon runs without --policy-file / \
             allocate.policy_file)",
        ));
    };
    let loaded = tokio::task::spawn_blocking({
        let path = path.clone();
        move || crate::allocate::rules::Rules::load(&path)
    })
    .await
    .map_err(|e| ApiError::unavailable(format!("policy reload failed: {e}")))?;
    let total = shared.view().status.host.as_ref().map(|h| h.total);
    let checked = loaded.and_then(|r| match total {
        Some(total) => r.check_host(&total).map(|()| r),
        None => Ok(r),
    });
    match checked {
        Ok(rules) => {
            shared
                .commands
                .send(Command::SetRules(Box::new(rules)))
                .map_err(|_| ApiError::unavailable("the control loop has stopped"))?;
            tracing::info!(file = %path.display(), "policy file reread on request");
            Ok(json!({ "file": path, "reloaded": true, "in_force": "from the next cycle" }))
        }
        Err(e) => Err(ApiError::bad(format!("{e}; the rules in force stay"))),
    }
}

/// Hand a change to the loop thread and wait for its answer.
async fn to_loop(
    shared: &Shared,
    action: Action,
    caller: &Caller,
) -> Result<serde_json::Value, ApiError> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let req = Request {
        action,
        caller: caller.clone(),
        reply,
    };
    if let Err(mpsc::SendError(Command::Control(req))) =
        shared.commands.send(Command::Control(Box::new(req)))
    {
        let e = ApiError::unavailable("the control loop has stopped");
        shared.audit.record(caller, &req.action, Err(&e));
        return Err(e);
    }
    match tokio::time::timeout(LOOP_TIMEOUT, answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(ApiError::unavailable("the control loop has stopped")),
        Err(_) => Err(ApiError::unavailable(format!(
            "the control loop did not take the change within {} s (a cycle is slow); it may \
             still be made: check with `prescient override list` / `intent list`",
            LOOP_TIMEOUT.as_secs()
        ))),
    }
}
