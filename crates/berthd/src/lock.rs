//! The per-directory daemon lock: one berthd per state directory.
//!
//! An exclusive `flock` on `DIR/berthd.pid`, held for the daemon's life. The kernel drops it
//! when the process dies, however it dies, so a stale file never blocks a restart.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

/// Taking the daemon lock failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("berthd is already running on {dir} (pid {pid})")]
    Held { dir: String, pid: String },
    #[error("Failed to open lock file {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Failed to write lock file {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; released when dropped or when the process exits.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
}

impl DaemonLock {
    /// Takes the lock for `dir`, writing our pid into the lock file.
    pub fn acquire(dir: &Path, lock_path: &Path) -> Result<DaemonLock, LockError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path)
            .map_err(|source| LockError::Open {
                path: lock_path.display().to_string(),
                source,
            })?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(LockError::Held {
                dir: dir.display().to_string(),
                pid: pid.trim().to_owned(),
            });
        }
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            file.sync_all()
        };
        write(&mut file).map_err(|source| LockError::Write {
            path: lock_path.display().to_string(),
            source,
        })?;
        Ok(DaemonLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berthd.pid");
        let _held = DaemonLock::acquire(dir.path(), &path).unwrap();
        let err = DaemonLock::acquire(dir.path(), &path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("already running"), "{msg}");
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
    }
}
