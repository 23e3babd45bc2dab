//! The console of checkpointable containers (`migration.stateful=true`).
//!
//! liblxc's console pty cannot be restored by CRIU (liblxc 5.0.2 never allocates it on its
//! restore path), so these containers run with `lxc.console.path = none` and get their
//! console from a *console keeper*: a small process (`berthd forkconsolekeeper`) that holds
//! a host pty, whose terminal side is bound into the container as `/dev/console`. CRIU is
//! told that terminal is external to the dump (`external tty[…]`) and, on restore, is
//! handed the keeper's terminal again (`inherit-fd`), so the console survives a stateful
//! stop and start; see `docs/checkpointable-console.md`.
//!
//! The keeper outlives berthd (like the container's monitor and lxcfs), keeps the console's
//! ring buffer and `console.log` in the container's directory, and serves a unix socket
//! `console.socket` there. A connection sends one command line:
//!
//! - `attach`: from then on, raw bytes both ways between the connection and the console;
//! - `resize W H`: sets the console's window size;
//! - `log`: the ring buffer, then end of stream; `clear`: empties it and the log file;
//! - `tty`: the host path of the console's terminal side;
//! - `quit`: the keeper exits.
//!
//! Commands with a reply end it with the end of the stream.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Failure, Result};

/// The keeper's socket in the container's directory.
pub const SOCKET: &str = "console.socket";
/// The console log in the container's directory (the same name liblxc's console uses).
pub const LOG: &str = "console.log";
/// How much console output the ring buffer keeps.
const RING: usize = 128 * 1024;
/// The log file is rewritten from the ring once it grows past this.
const LOG_MAX: u64 = 4 * RING as u64;

fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET)
}

/// Sends `cmd` to the keeper of the container in `dir`; the connection, for the reply.
pub fn connect(dir: &Path, cmd: &str) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(socket_path(dir))?;
    s.write_all(format!("{cmd}\n").as_bytes())?;
    Ok(s)
}

/// Sends `cmd` and reads the whole reply.
pub fn request(dir: &Path, cmd: &str) -> std::io::Result<Vec<u8>> {
    let mut s = connect(dir, cmd)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// The host path of the console terminal of the keeper in `dir`, when one runs.
pub fn tty(dir: &Path) -> Option<PathBuf> {
    let reply = request(dir, "tty").ok()?;
    let path = String::from_utf8(reply).ok()?;
    let path = path.trim();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// Makes sure a keeper runs for the container in `dir`, its terminal owned by the
/// container's root (`uid`, `gid` on the host); returns the terminal's host path.
/// A keeper already running is kept (and with it the console's log so far).
pub async fn ensure(dir: &Path, uid: u32, gid: u32) -> Result<PathBuf> {
    let d = dir.to_owned();
    if let Ok(Some(path)) = tokio::task::spawn_blocking(move || tty(&d)).await {
        // The container's id map may have changed since the keeper started.
        rustix::fs::chown(
            &path,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .map_err(|e| Failure::failed("Failed to give the console to the container", e))?;
        return Ok(path);
    }
    let exe = std::env::current_exe().map_err(|e| Failure::failed("Failed to find berthd", e))?;
    let log = std::fs::File::create(dir.join("console-keeper.log"))
        .map_err(|e| Failure::failed("Failed to create the console keeper's log", e))?;
    // It makes its own session (setsid): no terminal signal of berthd's reaches it, and
    // it goes on when berthd stops (tokio reaps it if it ends while berthd runs).
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("forkconsolekeeper")
        .arg(dir)
        .arg(uid.to_string())
        .arg(gid.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log);
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure::failed("Failed to start the console keeper", e))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        use tokio::io::AsyncBufReadExt;
        let mut out = tokio::io::BufReader::new(out);
        let read = out.read_line(&mut line);
        let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    }
    let path = line.trim();
    if path.is_empty() {
        let why = std::fs::read_to_string(dir.join("console-keeper.log")).unwrap_or_default();
        return Err(Failure::internal(format!(
            "Failed to start the console keeper: {}",
            why.lines().last().unwrap_or("no reply")
        )));
    }
    Ok(PathBuf::from(path))
}

/// Whether a keeper serves the console of the container in `dir`.
pub fn has_keeper(dir: &Path) -> bool {
    socket_path(dir).exists()
}

/// The last `max` bytes of file `path` (none when it cannot be read).
fn tail(path: &Path, max: u64) -> Vec<u8> {
    use std::io::{Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut out = Vec::new();
    let _ = f.take(max).read_to_end(&mut out);
    out
}

/// The console log of container `name`: its keeper's ring, the ring buffer of liblxc's
/// console while it runs, else the log file. Blocking.
pub fn log(lxcpath: &Path, name: &str, running: bool) -> Vec<u8> {
    let dir = lxcpath.join(name);
    if has_keeper(&dir)
        && let Ok(buf) = request(&dir, "log")
    {
        return buf;
    }
    if running
        && let Ok(Ok(buf)) = berth_lxc::Container::new(name, lxcpath).map(|c| c.console_log(false))
        && !buf.is_empty()
    {
        return buf;
    }
    tail(&dir.join(LOG), 1 << 20)
}

/// Clears the console log of container `name`. Blocking.
pub fn clear_log(lxcpath: &Path, name: &str, running: bool) {
    let dir = lxcpath.join(name);
    if has_keeper(&dir) {
        let _ = request(&dir, "clear");
    } else if running && let Ok(c) = berth_lxc::Container::new(name, lxcpath) {
        let _ = c.console_log(true);
    }
    let file = dir.join(LOG);
    if file.exists() {
        let _ = std::fs::File::create(&file);
    }
}

/// The `berthd forkconsole` command attaching to liblxc's console of container `name`
/// (without its stdio).
pub fn attach_command(lxcpath: &Path, name: &str) -> Result<std::process::Command> {
    let mut cmd = super::fork::command("forkconsole")?;
    cmd.arg(name)
        .arg(lxcpath)
        .arg(lxcpath.join(name).join("lxc.conf"));
    Ok(cmd)
}

/// Stops the keeper of the container in `dir`, if one runs.
pub fn quit(dir: &Path) {
    let _ = request(dir, "quit");
    let _ = std::fs::remove_file(socket_path(dir));
}

/// What the keeper shares between its threads.
struct Keeper {
    master: OwnedFd,
    ring: Mutex<VecDeque<u8>>,
    log: Mutex<std::fs::File>,
    clients: Mutex<Vec<UnixStream>>,
    tty: PathBuf,
    dir: PathBuf,
}

impl Keeper {
    /// Console output: into the ring, the log file and every attached client.
    fn output(&self, data: &[u8]) {
        {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            ring.extend(data);
            let over = ring.len().saturating_sub(RING);
            ring.drain(..over);
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            let _ = log.write_all(data);
            if log.metadata().is_ok_and(|m| m.len() > LOG_MAX) {
                let (a, b) = ring.as_slices();
                let _ = log.set_len(0);
                let _ = log.write_all(a);
                let _ = log.write_all(b);
            }
        }
        // A client that cannot keep up (its write times out) is detached.
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.retain_mut(|c| c.write_all(data).is_ok());
    }

    fn serve(self: &Arc<Self>, mut conn: UnixStream) {
        let mut first = Vec::new();
        let rest = {
            let mut r = BufReader::new(match conn.try_clone() {
                Ok(c) => c,
                Err(_) => return,
            });
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            if r.read_until(b'\n', &mut first).is_err() {
                return;
            }
            let _ = conn.set_read_timeout(None);
            r.buffer().to_vec()
        };
        let line = String::from_utf8_lossy(&first);
        let mut words = line.split_whitespace();
        match words.next() {
            Some("attach") => {
                // Bytes the client sent after the command line belong to the console.
                if write_all_fd(&self.master, &rest).is_err() {
                    return;
                }
                let Ok(out) = conn.try_clone() else { return };
                let _ = out.set_write_timeout(Some(Duration::from_secs(5)));
                self.clients
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(out);
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || write_all_fd(&self.master, &buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
            Some("resize") => {
                let w: u16 = words.next().and_then(|v| v.parse().ok()).unwrap_or(80);
                let h: u16 = words.next().and_then(|v| v.parse().ok()).unwrap_or(24);
                let _ = rustix::termios::tcsetwinsize(
                    &self.master,
                    rustix::termios::Winsize {
                        ws_row: h.max(1),
                        ws_col: w.max(1),
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    },
                );
            }
            Some("log") => {
                let data: Vec<u8> = {
                    let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
                    ring.iter().copied().collect()
                };
                let _ = conn.write_all(&data);
            }
            Some("clear") => {
                self.ring.lock().unwrap_or_else(|p| p.into_inner()).clear();
                let _ = self
                    .log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .set_len(0);
            }
            Some("tty") => {
                let _ = conn.write_all(self.tty.as_os_str().as_encoded_bytes());
            }
            Some("quit") => {
                let _ = std::fs::remove_file(socket_path(&self.dir));
                std::process::exit(0);
            }
            _ => {}
        }
    }
}

fn write_all_fd(fd: &OwnedFd, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = rustix::io::write(fd.as_fd(), data)?;
        data = &data[n..];
    }
    Ok(())
}

/// `berthd forkconsolekeeper DIR UID GID`: the keeper itself. Prints its terminal's path
/// on stdout once it serves, then runs until told to quit.
pub fn keeper_main(args: &[std::ffi::OsString]) -> i32 {
    let [dir, uid, gid] = args else {
        eprintln!("usage: berthd forkconsolekeeper DIR UID GID");
        return 1;
    };
    let dir = PathBuf::from(dir);
    let (Ok(uid), Ok(gid)) = (
        uid.to_string_lossy().parse::<u32>(),
        gid.to_string_lossy().parse::<u32>(),
    ) else {
        eprintln!("Error: invalid uid or gid");
        return 1;
    };
    match keep(&dir, uid, gid) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

fn keep(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let _ = rustix::process::setsid();
    let (master, slave) = berth_host::openpty()?;
    let tty = PathBuf::from(std::ffi::OsString::from_vec(
        rustix::pty::ptsname(&master, Vec::new())?.into_bytes(),
    ));
    // The container's root owns its console, as with liblxc's.
    rustix::fs::chown(
        &tty,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )?;
    rustix::fs::chmod(&tty, rustix::fs::Mode::from_raw_mode(0o620))?;
    let sock = socket_path(dir);
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock)?;
    std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    // Appending: after a truncation the next write lands at the start again.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join(LOG))?;
    log.set_len(0)?;
    let keeper = Arc::new(Keeper {
        master,
        ring: Mutex::new(VecDeque::with_capacity(RING)),
        log: Mutex::new(log),
        clients: Mutex::new(Vec::new()),
        tty: tty.clone(),
        dir: dir.to_owned(),
    });
    // The keeper holds the terminal side open too, so the console never hangs up while
    // the container is stopped or being restored.
    let _slave = slave;
    {
        let k = keeper.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match rustix::io::read(&k.master, &mut buf) {
                    Ok(0) => std::thread::sleep(Duration::from_millis(50)),
                    Ok(n) => k.output(&buf[..n]),
                    Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
    }
    let mut out = std::io::stdout();
    writeln!(out, "{}", tty.display())?;
    out.flush()?;
    // Nothing more goes to berthd's pipe.
    let null = std::fs::File::open("/dev/null")?;
    let _ = rustix::stdio::dup2_stdout(&null);
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let k = keeper.clone();
        std::thread::spawn(move || k.serve(conn));
    }
    Ok(())
}
