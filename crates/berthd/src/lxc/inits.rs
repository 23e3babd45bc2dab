//! Running containers' init processes, each held by a pidfd: whether one still runs is one
//! `poll`, where the check by start time reads `/proc/PID/stat` (the dearest part of a
//! status when a list asks for a thousand).
//!
//! A pidfd names one process for good, so a pid reused by another process is never taken
//! for the init. The fds held are capped at a quarter of the open-file limit: past it a
//! status falls back to the recorded pid and start time.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags, Resource};

/// One held init.
#[derive(Debug)]
struct Init {
    pid: i32,
    /// Its start time, in clock ticks since boot.
    ticks: u64,
    fd: OwnedFd,
}

/// The inits held, by container name.
#[derive(Debug)]
pub struct Inits {
    held: Mutex<HashMap<String, Init>>,
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
fn exited(fd: &OwnedFd) -> bool {
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
    /// The pid and start time of `name`'s init, when one is held and still runs; a held
    /// init that exited is let go.
    pub fn running(&self, name: &str) -> Option<(i32, u64)> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let init = held.get(name)?;
        if exited(&init.fd) {
            held.remove(name);
            return None;
        }
        Some((init.pid, init.ticks))
    }

    /// Holds `name`'s init `pid`, which started at `ticks` (checked again once the pidfd
    /// is open: the pid may have been reused in between).
    pub fn hold(&self, name: &str, pid: i32, ticks: u64) {
        let Some(p) = Pid::from_raw(pid) else {
            return;
        };
        if self
            .held
            .lock()
            .map(|h| h.len() >= self.cap)
            .unwrap_or(true)
        {
            return;
        }
        let Ok(fd) = rustix::process::pidfd_open(p, PidfdFlags::empty()) else {
            return;
        };
        if super::lifecycle::start_time(pid) != Some(ticks) {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.insert(name.to_owned(), Init { pid, ticks, fd });
    }

    /// Lets `name`'s init go (the container stopped, was renamed or deleted).
    pub fn forget(&self, name: &str) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(name);
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
        inits.hold("c1", pid, ticks);
        assert_eq!(inits.running("c1"), Some((pid, ticks)));
        // A wrong start time (a reused pid) is not held.
        inits.hold("c2", pid, ticks + 1);
        assert_eq!(inits.running("c2"), None);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(inits.running("c1"), None);
        inits.hold("c3", pid, ticks);
        assert_eq!(inits.running("c3"), None, "an exited process is not held");
    }
}
