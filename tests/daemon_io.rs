//! The daemon against a profile it may not write and a log it may not keep: refused at start
//! with the case named (never called corrupt, never moved aside), and a closed log pipe that
//! does not stop the control loop. Runs the real binary against libvirt's test driver with
//! real SQLite files; as root (CI), the daemon runs as `nobody` so that file permissions
//! apply to it.

use prescient::profile::ProfileDb;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::committed;

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        == 0
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A world-readable scratch directory holding a copy of the binary, so that `nobody` can run
/// it wherever the build tree is.
struct Scratch {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let bin = dir.path().join("prescient");
        std::fs::copy(env!("CARGO_BIN_EXE_prescient"), &bin).unwrap();
        chmod(&bin, 0o755);
        Scratch { dir, bin }
    }

    /// A directory `name` in the scratch space with a valid profile in it.
    fn profile_in(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        chmod(&d, 0o755);
        let db = d.join("profile.db");
        drop(ProfileDb::open(&db, false).unwrap());
        db
    }

    /// The daemon, as `nobody` when the test runs as root; it must stop by itself.
    fn daemon_refusing(&self, db: &Path, extra: &[&str]) -> Output {
        let mut cmd = common::daemon(&self.bin, db);
        cmd.args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if is_root() {
            cmd.uid(NOBODY).gid(NOBODY);
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("the daemon ran on a profile it cannot write");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_read_only_profile_is_refused_at_start_and_left_alone() {
    let s = Scratch::new();
    let db = s.profile_in("ro");
    chmod(&db, 0o444);
    let before = std::fs::read(&db).unwrap();
    let out = s.daemon_refusing(&db, &["--reset-db"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&db.display().to_string()) && err.contains("cannot be written"),
        "{err}"
    );
    assert!(
        !err.contains("corrupt") && !err.contains("--reset-db"),
        "{err}"
    );
    assert!(
        !err.contains("daemon running"),
        "refused before the loop: {err}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before, "file unchanged");
    assert_eq!(files_in(db.parent().unwrap()), ["profile.db"]);
}

#[test]
fn a_good_profile_in_a_read_only_directory_is_not_called_corrupt_nor_moved() {
    let s = Scratch::new();
    let db = s.profile_in("dir");
    if is_root() {
        // The file itself is the daemon's to write; only its directory is not.
        std::os::unix::fs::chown(&db, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let dir = db.parent().unwrap().to_path_buf();
    chmod(&dir, 0o555);
    let before = std::fs::read(&db).unwrap();
    let out = s.daemon_refusing(&db, &["--reset-db"]);
    chmod(&dir, 0o755); // let the temporary directory be removed
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("write-ahead log") && err.contains(&dir.display().to_string()),
        "{err}"
    );
    assert!(
        !err.contains("corrupt") && !err.contains("--reset-db"),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before, "file unchanged");
    assert_eq!(files_in(&dir), ["profile.db"], "nothing moved aside");
}

#[test]
fn a_db_in_a_missing_directory_is_refused_and_nothing_is_created() {
    let s = Scratch::new();
    let db = s.dir.path().join("missing").join("profile.db");
    let out = s.daemon_refusing(&db, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("does not exist") && err.contains("missing"),
        "{err}"
    );
    assert!(!s.dir.path().join("missing").exists());
}

#[test]
fn a_closed_log_pipe_does_not_stop_the_daemon() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profile.db");
    let mut daemon = common::daemon(Path::new(env!("CARGO_BIN_EXE_prescient")), &db)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one log line, then close the pipe, as `prescient daemon 2>&1 | head -1` does.
    let mut first = String::new();
    BufReader::new(daemon.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty());
    // The daemon logs more (it is running) into the closed pipe, and keeps collecting.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = committed(&db);
    let mut grew = 0;
    while grew < 3 {
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "the daemon exited after its log pipe closed"
        );
        assert!(
            Instant::now() < deadline,
            "no samples stored after the pipe closed"
        );
        std::thread::sleep(Duration::from_millis(200));
        let n = committed(&db);
        if n > seen {
            grew += 1;
            seen = n;
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = daemon.wait().unwrap();
    assert_eq!(status.code(), Some(0), "clean shutdown, no panic");
    assert!(committed(&db) >= seen);
}
