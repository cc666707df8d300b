//! The CLI's side of the control socket: one HTTP/1.1 request per connection over a Unix
//! stream, with errors that say what to do about them.

use crate::control::DEFAULT_SOCKET;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the CLI waits for the daemon's answer.
pub const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no prescient daemon is listening at {0} (is it running? `systemctl status prescient`; \
         another socket: --socket PATH)"
    )]
    NotRunning(PathBuf),
    #[error(
        "permission denied on {0}: run as root, or as a member of group prescient (to read) or \
         prescient-admin (to change)"
    )]
    Permission(PathBuf),
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the daemon's answer is not HTTP: {0}")]
    Malformed(String),
    #[error("{message}")]
    Refused { status: u16, message: String },
}

/// `--socket` on each command that talks to the daemon.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SocketArg {
    /// The daemon's control socket (default /run/prescient/prescient.sock, or
    /// $PRESCIENT_SOCKET).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// The socket the CLI talks to: `--socket`, else `$PRESCIENT_SOCKET`, else the default.
pub fn socket(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("PRESCIENT_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// Send one request and return the body of a 2xx answer.
pub fn call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<String, ClientError> {
    let io = |source| ClientError::Io {
        path: socket.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning(socket.to_path_buf())
        }
        std::io::ErrorKind::PermissionDenied => ClientError::Permission(socket.to_path_buf()),
        _ => io(e),
    })?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: prescient\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(io)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| ClientError::Malformed(text.chars().take(80).collect()))?;
    let status: u16 = (head.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Malformed(head.lines().next().unwrap_or("").into()))?;
    if (200..300).contains(&status) {
        return Ok(rest.to_string());
    }
    let message = serde_json::from_str::<serde_json::Value>(rest)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(String::from))
        .unwrap_or_else(|| rest.trim().to_string());
    Err(ClientError::Refused { status, message })
}

/// [`call`] and decode the JSON answer as `T`.
pub fn get<T: serde::de::DeserializeOwned>(socket: &Path, path: &str) -> Result<T, ClientError> {
    let body = call(socket, "GET", path, None)?;
    serde_json::from_str(&body).map_err(|e| ClientError::Malformed(format!("{e}")))
}
