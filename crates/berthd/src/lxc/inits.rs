//! Running containers' init processes, each held by a pidfd: whether one still runs is one
//! `poll`, where the check by start time reads `/proc/PID/stat` (the dearest part of a
//! status when a list asks for a thousand).
//!
//! A pidfd names one process for good, so a pid reused by another process is never taken
//! for the init. Each held init also keeps its cgroup's freezer file open, read again from
//! its start for whether the container is frozen (no path walked to it). The inits held are
//! capped at a quarter of the open-file limit (two fds each: half of it): past it a status
//! falls back to the recorded pid and start time, and the freezer file's path.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags, Resource};

/// One held init.
#[derive(Debug)]
struct Init {
    pid: i32,
    /// Its start time, in clock ticks since boot.
    ticks: u64,
    fd: OwnedFd,
    /// Its cgroup's freezer file, when it could be opened.
    freezer: Option<OwnedFd>,
}

/// The inits held, by container name. The lock is held for the map only: the system
/// calls on an init's fds are made after (a list's workers ask at once).
#[derive(Debug)]
pub struct Inits {
    held: Mutex<HashMap<String, Arc<Init>>>,
    cap: usize,
}

impl Default for Inits {
    fn default() -> Self {
        let limit = rustix::process::getrlimit(Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        Inits {
            held: Mutex::new(HashMap::new()),
            cap: usize::try_from(limit / 4).unwrap_or(usize::MAX),
        }
    }
}

/// Whether the process of `fd` has exited (its pidfd reads as ready).
pub(super) fn exited(fd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&now)) {
        Ok(0) => false,
        Ok(_) => true,
        Err(_) => true,
    }
}

impl Inits {
    /// `name`'s init, when one is held and still runs; a held init that exited is let go.
    fn live(&self, name: &str) -> Option<Arc<Init>> {
        let init = self.lock().get(name).cloned()?;
        if exited(&init.fd) {
            let mut held = self.lock();
            if held.get(name).is_some_and(|h| Arc::ptr_eq(h, &init)) {
                held.remove(name);
            }
            return None;
        }
        Some(init)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Init>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pid and start time of `name`'s init, when one is held and still runs.
    pub fn running(&self, name: &str) -> Option<(i32, u64)> {
        self.live(name).map(|i| (i.pid, i.ticks))
    }

    /// As [`Inits::running`], with its cgroup's freezer file to read whether it is
    /// frozen (`None`: none is held, the caller reads it by path).
    pub fn running_with<T>(
        &self,
        name: &str,
        frozen: impl FnOnce(&OwnedFd) -> Option<T>,
    ) -> Option<(i32, u64, Option<T>)> {
        let init = self.live(name)?;
        let f = init.freezer.as_ref().and_then(frozen);
        Some((init.pid, init.ticks, f))
    }

    /// Holds `name`'s init `pid`, which started at `ticks` (checked again once the pidfd
    /// is open: the pid may have been reused in between), with its cgroup's freezer file.
    pub fn hold(&self, name: &str, pid: i32, ticks: u64, freezer: Option<OwnedFd>) {
        let Some(p) = Pid::from_raw(pid) else {
            return;
        };
        if self.lock().len() >= self.cap {
            return;
        }
        let Ok(fd) = rustix::process::pidfd_open(p, PidfdFlags::empty()) else {
            return;
        };
        if super::lifecycle::start_time(pid) != Some(ticks) {
            return;
        }
        let init = Init {
            pid,
            ticks,
            fd,
            freezer,
        };
        self.lock().insert(name.to_owned(), Arc::new(init));
    }

    /// Lets `name`'s init go (the container stopped, was renamed or deleted).
    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_a_process_until_it_exits() {
        let inits = Inits::default();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let ticks = super::super::lifecycle::start_time(pid).unwrap();
        inits.hold("c1", pid, ticks, None);
        assert_eq!(inits.running("c1"), Some((pid, ticks)));
        // A wrong start time (a reused pid) is not held.
        inits.hold("c2", pid, ticks + 1, None);
        assert_eq!(inits.running("c2"), None);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(inits.running("c1"), None);
        inits.hold("c3", pid, ticks, None);
        assert_eq!(inits.running("c3"), None, "an exited process is not held");
    }
}
