//! berthd's side of the syscall proxy: starting it, holding a copy of its listening
//! socket, taking over one a berthd before started, and starting another when it ends
//! (see the parent module).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use super::LISTENER_FD;
use crate::error::{Failure, Result};

/// What this berthd keeps of the proxy of one socket.
#[derive(Default)]
struct Kept {
    /// The listening socket, held beside the proxy: while it is open, a monitor
    /// connecting between one proxy's end and the next one's start waits in its backlog
    /// instead of being refused (a refused monitor stops asking until its own container's
    /// next intercepted call, and refuses `berth exec` meanwhile).
    listener: Option<OwnedFd>,
    /// The proxy a thread of this berthd waits on, to start another when it ends.
    watched: Option<i32>,
    /// How long to wait before starting one again after one that ended soon after its
    /// start (doubling, up to [`MAX_PAUSE`]; reset by one that ran long).
    backoff: Duration,
}

/// The longest pause before a proxy is started again: monitors connecting meanwhile wait
/// in the backlog, and must have their reply within liblxc's 30 s.
const MAX_PAUSE: Duration = Duration::from_secs(15);

static KEPT: std::sync::Mutex<Option<HashMap<std::path::PathBuf, Kept>>> =
    std::sync::Mutex::new(None);

/// The proxy's pid file, beside its socket.
fn pid_file(socket: &Path) -> std::path::PathBuf {
    socket.with_extension("pid")
}

/// The running proxy serving `socket`, held by a pidfd: the process its pid file names,
/// if that is still a proxy for this socket.
fn running(socket: &Path) -> Option<(i32, OwnedFd)> {
    let pid: i32 = std::fs::read_to_string(pid_file(socket))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid)?,
        rustix::process::PidfdFlags::empty(),
    )
    .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = cmdline.split(|b| *b == 0).skip(1);
    let ours = args.next() == Some(b"forksyscalls".as_slice())
        && args.next() == Some(socket.as_os_str().as_encoded_bytes());
    // The command line was the pidfd's process's only if that still runs now.
    let alive = !crate::lxc::inits::exited(&pidfd);
    (ours && alive).then_some((pid, pidfd))
}

/// Makes sure a proxy serves `socket`, starting one (its output to `log`) when none does,
/// and holds its listening socket; a proxy that exits while this berthd runs is started
/// again on the same socket (at once, unless it ended soon after its start).
pub fn ensure(socket: &Path, log: &Path) -> Result<()> {
    let mut all = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    let kept = all
        .get_or_insert_with(HashMap::new)
        .entry(socket.to_owned())
        .or_default();
    // The one this berthd started runs (even if its pid file could not be written).
    if let Some(pid) = kept.watched
        && alive(pid)
    {
        return Ok(());
    }
    if let Some((pid, pidfd)) = running(socket) {
        if kept.watched != Some(pid) {
            // One a berthd before this one started: take a copy of its socket, and watch it.
            let flags = rustix::process::PidfdGetfdFlags::empty();
            if kept.listener.is_none() {
                kept.listener = rustix::process::pidfd_getfd(&pidfd, LISTENER_FD, flags).ok();
            }
            kept.watched = Some(pid);
            let (socket, log) = (socket.to_owned(), log.to_owned());
            std::thread::spawn(move || {
                let mut fds = [rustix::event::PollFd::new(
                    &pidfd,
                    rustix::event::PollFlags::IN,
                )];
                while matches!(rustix::event::poll(&mut fds, None), Err(Errno::INTR)) {}
                ended(&socket, &log, pid, None);
            });
        }
        return Ok(());
    }
    let listener = match kept.listener.take() {
        Some(l) => l,
        None => listen(socket)
            .map_err(|e| Failure::failed("Failed to make the syscall proxy's socket", e))?,
    };
    let copy = listener.try_clone();
    kept.listener = Some(listener);
    let copy = copy.map_err(|e| Failure::failed("Failed to make the syscall proxy's socket", e))?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Failure::failed(format!("Failed to open {}", log.display()), e))?;
    let mut cmd = crate::lxc::fork::command("forksyscalls")?;
    cmd.arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(out)
        // Its own process group: a signal to berthd's group must not end it under running
        // containers.
        .process_group(0);
    berth_host::pass_fd(&mut cmd, copy, LISTENER_FD);
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure::failed("Failed to start the syscall proxy", e))?;
    let pid = child.id() as i32;
    kept.watched = Some(pid);
    let (s, l, started) = (socket.to_owned(), log.to_owned(), Instant::now());
    std::thread::spawn(move || {
        let _ = child.wait();
        ended(&s, &l, pid, Some(started));
    });
    // The kernel must not pick it to free memory: every intercepting container's statfs
    // would fail until it is back.
    let _ = std::fs::write(format!("/proc/{pid}/oom_score_adj"), "-1000");
    // For the next berthd, which takes it over.
    if let Err(e) = std::fs::write(pid_file(socket), pid.to_string()) {
        tracing::warn!(error = %e, "The syscall proxy's pid file was not written");
    }
    tracing::info!(socket = %socket.display(), pid, "Started the syscall proxy");
    Ok(())
}

/// Starts a proxy again after proxy `pid` (started at `started`, when by this berthd)
/// ended.
fn ended(socket: &Path, log: &Path, pid: i32, started: Option<Instant>) {
    let pause = {
        let mut all = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        let kept = all
            .get_or_insert_with(HashMap::new)
            .entry(socket.to_owned())
            .or_default();
        if kept.watched != Some(pid) {
            return;
        }
        kept.watched = None;
        let short = started.is_some_and(|s| s.elapsed() < Duration::from_secs(10));
        kept.backoff = if short {
            (kept.backoff * 2).clamp(Duration::from_secs(1), MAX_PAUSE)
        } else {
            Duration::ZERO
        };
        kept.backoff
    };
    tracing::warn!(pid, ?pause, "The syscall proxy exited; starting it again");
    std::thread::sleep(pause);
    while let Err(e) = ensure(socket, log) {
        // None can be started: monitors are refused at once (ENOSYS) rather than left
        // waiting in a backlog no proxy reads.
        tracing::warn!(error = %e, "Containers' statfs calls fail until it runs");
        {
            let mut all = KEPT.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(kept) = all.as_mut().and_then(|m| m.get_mut(socket)) {
                kept.listener = None;
            }
        }
        std::thread::sleep(MAX_PAUSE);
    }
}

/// Whether process `pid` still runs (a zombie does not: its pidfd reads as ended).
fn alive(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
        .is_some_and(|fd| !crate::lxc::inits::exited(&fd))
}

/// A new listening socket at `socket` (one left there by a proxy gone with its berthd is
/// replaced), for root only.
fn listen(socket: &Path) -> std::io::Result<OwnedFd> {
    let flags = SocketFlags::CLOEXEC;
    let listener =
        rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, flags, None)?;
    let _ = std::fs::remove_file(socket);
    rustix::net::bind(&listener, &SocketAddrUnix::new(socket)?)?;
    rustix::fs::chmod(socket, Mode::from_raw_mode(0o600))?;
    rustix::net::listen(&listener, 1024)?;
    Ok(listener)
}
