//! One daemon per profile: whoever opens the profile database for writing holds an exclusive
//! `flock` on the file for as long as it has it open. The kernel releases the lock when the
//! process exits, however it exits (kill -9 included), so no stale lock is ever left behind.
//! A second opener is refused, with the holder's PID read from `/proc/locks`.
//!
//! The lock is an `flock`, not a POSIX record lock, so it never meets SQLite's own locks on
//! the same file (they are independent on local file systems).

use super::ProfileError;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// An exclusive lock on a profile database file, held until dropped.
#[derive(Debug)]
pub struct ProfileLock {
    file: File,
}

impl ProfileLock {
    /// Lock the file at `path`, if it exists and can be opened (None otherwise: the caller's
    /// checks say why it cannot be used). Refused if another process holds it.
    pub fn try_existing(path: &Path) -> Result<Option<ProfileLock>, ProfileError> {
        let Ok(file) = File::open(path) else {
            return Ok(None);
        };
        use rustix::fs::{FlockOperation, flock};
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(ProfileLock { file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(ProfileError::InUse {
                path: path.to_path_buf(),
                holder: holder(&file)
                    .map(|pid| format!("pid {pid}"))
                    .unwrap_or_else(|| "its PID unknown".into()),
            }),
            Err(e) => Err(ProfileError::CannotOpen {
                path: path.to_path_buf(),
                source: e.into(),
            }),
        }
    }

    /// Whether this lock is on the file now at `path` (not on one moved aside).
    pub fn is_on(&self, path: &Path) -> bool {
        match (self.file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
}

/// The PID of the process holding an `flock` on `file`, from `/proc/locks`.
fn holder(file: &File) -> Option<u32> {
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    let id = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev),
        meta.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(&locks, &id)
}

/// The PID in the `FLOCK` line of `/proc/locks` for the file `id` (`maj:min:inode`).
fn holder_in(locks: &str, id: &str) -> Option<u32> {
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (blocked waiters have "->").
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&id))
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.db");
        assert!(ProfileLock::try_existing(&path).unwrap().is_none());
        std::fs::write(&path, b"").unwrap();
        let first = ProfileLock::try_existing(&path).unwrap().unwrap();
        assert!(first.is_on(&path));
        let err = ProfileLock::try_existing(&path).unwrap_err().to_string();
        let me = format!("pid {}", std::process::id());
        assert!(err.contains(&me) && err.contains("profile.db"), "{err}");
        drop(first);
        assert!(ProfileLock::try_existing(&path).unwrap().is_some());
    }

    #[test]
    fn the_holder_is_read_from_the_flock_line_of_its_file() {
        let locks = "1: POSIX  ADVISORY  WRITE 77 fd:01:42 1073741824 1073741824\n\
                     2: FLOCK  ADVISORY  WRITE 1234 fd:01:42 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 99 fd:01:7 0 EOF\n";
        assert_eq!(holder_in(locks, "fd:01:42"), Some(1234));
        assert_eq!(holder_in(locks, "fd:01:8"), None);
    }
}
