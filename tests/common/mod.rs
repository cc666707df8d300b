//! Helpers the daemon's integration tests share.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `prescient daemon` (the binary at `bin`) against libvirt's in-process test driver,
/// collecting every 50 ms into the profile `db`, its control socket beside it (see
/// [`socket_of`]) and no metrics listener (tests run side by side).
pub fn daemon(bin: &Path, db: &Path) -> Command {
    daemon_with_metrics(bin, db, "off")
}

/// [`daemon`] serving `/metrics` over TCP at `metrics` (ADDR:PORT).
pub fn daemon_with_metrics(bin: &Path, db: &Path, metrics: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["daemon", "--uri", "test:///default", "--interval", "0.05"])
        .args(["--metrics", metrics, "--socket"])
        .arg(socket_of(db))
        .arg("--db")
        .arg(db);
    cmd
}

/// The control socket of the daemon [`daemon`] starts on `db`.
pub fn socket_of(db: &Path) -> std::path::PathBuf {
    db.with_file_name("prescient.sock")
}

/// Committed samples as another process sees them (read-only, like an operator's sqlite3);
/// 0 while the file does not exist yet.
pub fn committed(db: &Path) -> i64 {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(c) = rusqlite::Connection::open_with_flags(db, flags) else {
        return 0;
    };
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row("SELECT count(*) FROM samples", [], |r| r.get(0))
        .unwrap_or(0)
}
