//! The syscall proxy: answers the system calls a container's seccomp policy hands to user
//! space (liblxc's `lxc.seccomp.notify.proxy`). Today `statfs` and `fstatfs`, so that `df`
//! inside a container shows the quota of a volume whose filesystem keeps quotas out of its
//! own figures (btrfs qgroups; a driver's `quota_hidden_from_statfs`): the volume's size
//! as the total, what its qgroup counts as used, the rest as free, and as available the
//! lesser of the rest and what the filesystem has.
//!
//! ```text
//!   container ──statfs──► seccomp (notify) ──► its liblxc monitor ──seqpacket, 3 fds──► proxy
//!       ▲                                            │  ◄── answer, or "let it run" ───────┘
//!       └──────────── result ◄── kernel ◄────────────┘
//! ```
//!
//! One proxy serves all of a berthd's containers: a process of its own (`berthd
//! forksyscalls SOCKET`, its socket `DIR/syscalls.socket`), started at the first start of a
//! container that needs it, in its own process group. Like lxcfs and the monitors it
//! outlives berthd, so `df` in running containers keeps working while berthd is stopped or
//! restarting. berthd makes the listening socket and keeps a copy (a restarted berthd
//! takes one from the running proxy), so a proxy that ends is replaced at once and a
//! monitor reconnecting meanwhile waits in the backlog: a monitor refused (berthd and
//! proxy both gone) answers ENOSYS, stops asking until its container's own tree makes
//! another intercepted call, and liblxc refuses `berth exec` until then.
//!
//! It keeps no state: each answer is read from the kernel (the file's subvolume, its
//! qgroup's limit and count in `/sys/fs/btrfs/FSID/qgroups/0_ID/`). Any call it does not
//! answer itself (another filesystem, no limit, another ABI, a file it cannot resolve, a
//! FIFO or device node) it lets the kernel run (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`), so
//! the caller sees what it would without it. Each call is answered on a thread of its own,
//! within [`DEADLINE`] (liblxc's monitor waits 30 s for a reply, then answers ENOSYS and
//! would read the late reply as the next call's): a lookup stuck on a mount that never
//! answers (a FUSE daemon, NFS) is let run in the kernel instead and leaves only its
//! thread behind.
//!
//! A path is looked up as the caller would: the thread takes the caller's root and working
//! directory (`/proc/PID/root`, `/proc/PID/cwd`) and its file system ids and groups, with
//! no capabilities, for the lookup; a descriptor is reopened from `/proc/PID/fd/N` the same
//! way. The caller's memory is read and written as it could itself (`process_vm_readv`,
//! `process_vm_writev`). `/proc/self` in a path names no process the proxy can see (it is
//! not in the container's pid namespace): such a call runs as without the proxy.
//!
//! Which containers intercept: those with a size on a volume on such a pool at start (their
//! root or a custom volume disk; a size set later shows from the next start), except
//! checkpointable ones (CRIU cannot dump a seccomp listener) and nesting ones (the kernel
//! allows one listener along a filter chain, so a container manager inside could not
//! intercept for its own containers). A container that never has a size pays nothing.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_host::seccomp::StatFs;
use rustix::event::epoll;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

use crate::error::{Failure, Result};

/// The proxy's socket in berthd's directory.
pub const SOCKET: &str = "syscalls.socket";

/// What a container's seccomp policy adds to hand its `statfs` calls to the proxy.
pub const POLICY: &str = "statfs notify
fstatfs notify
";

/// liblxc's `struct seccomp_notify_proxy_msg`: reserved `u64`, the monitor's and init's
/// pids, the kernel's `struct seccomp_notif_sizes` (three `u16`), the cookie's length.
/// Then `struct seccomp_notif`, `struct seccomp_notif_resp`, the cookie.
const HEADER: usize = 32;
/// `struct seccomp_notif`: id, pid, flags, then `struct seccomp_data` (nr, arch,
/// instruction pointer, six arguments).
const NOTIF_MIN: usize = 80;
/// `struct seccomp_notif_resp`: id, val, error, flags.
const RESP_MIN: usize = 24;
/// `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: the kernel runs the call as if never intercepted.
const FLAG_CONTINUE: u32 = 1;
/// `BTRFS_SUPER_MAGIC`.
const BTRFS_MAGIC: u64 = 0x9123_683e;

/// The native ABI's `AUDIT_ARCH_*`: calls of any other (32-bit compat) go on untouched.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: u32 = 0;

/// One intercepted call, as the monitor forwards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Call {
    id: u64,
    /// The calling thread, in berthd's pid namespace.
    pid: i32,
    nr: i64,
    arch: u32,
    args: [u64; 6],
    /// Where the answer (`struct seccomp_notif_resp`) starts in the message, and its size.
    resp_at: usize,
    resp_len: usize,
}

/// How the proxy answers a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The kernel runs it.
    Continue,
    /// It returns this value.
    Value(i64),
    /// It fails with this errno.
    Error(i32),
}

fn field<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

/// The call a monitor's message carries; `None` when it is not one.
fn parse(msg: &[u8]) -> Option<Call> {
    let notif = usize::from(u16::from_ne_bytes(field(msg, 16)?));
    let resp_len = usize::from(u16::from_ne_bytes(field(msg, 18)?));
    if notif < NOTIF_MIN || resp_len < RESP_MIN || msg.len() < HEADER + notif + resp_len {
        return None;
    }
    let n = &msg[HEADER..];
    let mut args = [0; 6];
    for (i, a) in args.iter_mut().enumerate() {
        *a = u64::from_ne_bytes(field(n, 32 + 8 * i)?);
    }
    Some(Call {
        id: u64::from_ne_bytes(field(n, 0)?),
        pid: i32::from_ne_bytes(field(n, 8)?),
        nr: i64::from(i32::from_ne_bytes(field(n, 16)?)),
        arch: u32::from_ne_bytes(field(n, 20)?),
        args,
        resp_at: HEADER + notif,
        resp_len,
    })
}

/// The reply to `msg`: its header and call, then the answer (the cookie is not sent back).
fn reply(msg: &[u8], call: &Call, answer: Answer) -> Vec<u8> {
    let mut out = msg[..call.resp_at + call.resp_len].to_vec();
    out[..8].fill(0);
    let (val, error, flags) = match answer {
        Answer::Continue => (0, 0, FLAG_CONTINUE),
        Answer::Value(v) => (v, 0, 0),
        Answer::Error(e) => (0, -e, 0),
    };
    let r = &mut out[call.resp_at..];
    r[..8].copy_from_slice(&call.id.to_ne_bytes());
    r[8..16].copy_from_slice(&val.to_ne_bytes());
    r[16..20].copy_from_slice(&error.to_ne_bytes());
    r[20..24].copy_from_slice(&flags.to_ne_bytes());
    out
}

/// `figures` as a volume of `limit` bytes with `used` of them taken shows them: the limit
/// as the total, free what the limit leaves (so total less free is what the volume
/// uses), and available the same unless the filesystem has less.
fn limited(figures: StatFs, limit: u64, used: u64) -> StatFs {
    let unit = figures.unit().max(1);
    let left = limit.saturating_sub(used) / unit;
    let (_, _, available) = figures.space();
    figures.with_space(limit / unit, left, available.min(left))
}

/// The NUL-terminated path at `addr` in thread `pid`'s memory; `None` when it cannot be
/// read whole or is empty (the kernel then gives the caller its error).
fn read_path(pid: i32, addr: u64) -> Option<Vec<u8>> {
    const MAX: usize = 4096;
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < MAX {
        // Never across a page boundary: the next page may not be mapped.
        let in_page = MAX - usize::try_from(at % MAX as u64).ok()?;
        let mut chunk = vec![0; in_page.min(MAX - out.len())];
        let n = berth_host::seccomp::read_memory(pid, at, &mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        chunk.truncate(n);
        if let Some(end) = chunk.iter().position(|b| *b == 0) {
            out.extend_from_slice(&chunk[..end]);
            return (!out.is_empty()).then_some(out);
        }
        out.extend_from_slice(&chunk);
        at += n as u64;
    }
    None
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// What `statfs` on `file` shows when it lies in a btrfs subvolume with a size limit.
fn quota_figures(file: &OwnedFd) -> Option<StatFs> {
    let figures = berth_host::seccomp::fstatfs(file).ok()?;
    if figures.fs_type() != BTRFS_MAGIC {
        return None;
    }
    let kind = rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(file).ok()?.st_mode);
    let dir = match kind {
        rustix::fs::FileType::Directory => OFlags::DIRECTORY,
        rustix::fs::FileType::RegularFile => OFlags::empty(),
        // Never opened: a device or a FIFO could react to it.
        _ => return None,
    };
    // The ioctls need a descriptor open for reading.
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK | dir;
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let readable = rustix::fs::open(path.as_str(), flags, Mode::empty()).ok()?;
    let fsid = berth_host::btrfs::fsid(&readable).ok()?;
    let id = berth_host::btrfs::subvolume_id(&readable).ok()?;
    let qgroup = Path::new("/sys/fs/btrfs")
        .join(fsid)
        .join("qgroups")
        .join(format!("0_{id}"));
    let limit = read_number(&qgroup.join("max_referenced")).filter(|l| *l > 0)?;
    let used = read_number(&qgroup.join("referenced")).unwrap_or(0);
    Some(limited(figures, limit, used))
}

/// The caller's file system credentials, from `/proc/PID/status` (host ids).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Creds {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    /// It may read and search any directory (`CAP_DAC_OVERRIDE` or `CAP_DAC_READ_SEARCH`
    /// in its user namespace, which owns its container's files): a container's root.
    overrides: bool,
}

/// The file system ids (the fourth of `Uid:` and `Gid:`), groups and effective
/// capabilities in a `status` file.
fn creds_of(status: &str) -> Option<Creds> {
    let line = |key: &str| status.lines().find_map(|l| l.strip_prefix(key));
    let fs_id = |key: &str| line(key)?.split_whitespace().nth(3)?.parse().ok();
    let groups = line("Groups:")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|g| g.parse().ok())
        .collect();
    let caps = u64::from_str_radix(line("CapEff:")?.trim(), 16).ok()?;
    // Bits 1 and 2: CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH.
    Some(Creds {
        uid: fs_id("Uid:")?,
        gid: fs_id("Gid:")?,
        groups,
        overrides: caps & 0b110 != 0,
    })
}

/// Runs `f` with the calling thread's credentials those of `creds` (its capabilities gone
/// with its effective uid 0), then takes root's back; `None` when either step fails. A
/// caller that may read any directory is looked up for as root.
fn as_caller<T>(creds: &Creds, f: impl FnOnce() -> T) -> Option<T> {
    use rustix::process::{Gid, Uid};
    if creds.overrides {
        return Some(f());
    }
    let groups: Vec<Gid> = creds.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let became = rustix::thread::set_thread_groups(&groups)
        .and_then(|()| rustix::thread::set_thread_res_gid(None, Gid::from_raw(creds.gid), None))
        .and_then(|()| rustix::thread::set_thread_res_uid(None, Uid::from_raw(creds.uid), None));
    let out = became.is_ok().then(f);
    // The real and saved uids stayed root's: the effective one (and with it the
    // capabilities) comes back.
    let back = rustix::thread::set_thread_res_uid(None, Uid::ROOT, None)
        .and_then(|()| rustix::thread::set_thread_res_gid(None, Gid::ROOT, None))
        .and_then(|()| rustix::thread::set_thread_groups(&[]));
    back.ok().and(out)
}

/// The answer to `call`, given the monitor's descriptors (the caller's `/proc/PID`, its
/// memory, the seccomp listener) and the proxy's own root. Runs on a thread of its own,
/// which it changes (root, credentials) and which ends with it. The caller's memory is
/// read and written as the caller could (`process_vm_readv`/`writev`), not through the
/// memory descriptor, which would force a write into a read-only page.
fn answer(call: &Call, fds: &[OwnedFd], own_root: &OwnedFd) -> Answer {
    let [proc_dir, _mem, listener] = fds else {
        return Answer::Continue;
    };
    if call.arch != AUDIT_ARCH {
        return Answer::Continue;
    }
    let creds = rustix::fs::openat(
        proc_dir,
        "status",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
    .and_then(|fd| std::io::read_to_string(std::fs::File::from(fd)).ok())
    .and_then(|s| creds_of(&s));
    let Some(creds) = creds else {
        return Answer::Continue;
    };
    let file = if call.nr == berth_host::seccomp::SYS_STATFS {
        look_up(proc_dir, call.pid, call.args[0], &creds, own_root)
    } else if call.nr == berth_host::seccomp::SYS_FSTATFS {
        // The descriptor is an `int`: the argument's low 32 bits.
        let fd = call.args[0] as u32 as i32;
        let flags = OFlags::PATH | OFlags::CLOEXEC;
        (fd >= 0)
            .then(|| {
                as_caller(&creds, || {
                    rustix::fs::openat(proc_dir, format!("fd/{fd}"), flags, Mode::empty()).ok()
                })
            })
            .flatten()
            .flatten()
    } else {
        None
    };
    let Some(figures) = file.as_ref().and_then(quota_figures) else {
        return Answer::Continue;
    };
    // The caller may have gone (killed, or its call interrupted) while the answer was
    // made: then the memory is no longer its buffer.
    if !berth_host::seccomp::notification_pending(listener, call.id) {
        return Answer::Continue;
    }
    let bytes = figures.to_bytes();
    match berth_host::seccomp::write_memory(call.pid, call.args[1], &bytes) {
        Ok(n) if n == bytes.len() => Answer::Value(0),
        _ => Answer::Error(Errno::FAULT.raw_os_error()),
    }
}

/// Opens (`O_PATH`) the path at `addr` as the caller would: from its root and working
/// directory, with its credentials. The thread's root is its own again after.
fn look_up(
    proc_dir: &OwnedFd,
    pid: i32,
    addr: u64,
    creds: &Creds,
    own_root: &OwnedFd,
) -> Option<OwnedFd> {
    let path = read_path(pid, addr)?;
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let root = rustix::fs::openat(proc_dir, "root", flags, Mode::empty()).ok()?;
    let cwd = rustix::fs::openat(proc_dir, "cwd", flags, Mode::empty()).ok()?;
    berth_host::unshare_fs().ok()?;
    let found = rustix::process::fchdir(&root)
        .and_then(|()| rustix::process::chroot("."))
        .and_then(|()| rustix::process::fchdir(&cwd))
        .ok()
        .and_then(|()| {
            as_caller(creds, || {
                rustix::fs::open(
                    path.as_slice(),
                    OFlags::PATH | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok()
            })
        })
        .flatten();
    // Back to the proxy's root, for what is read next (/proc, /sys).
    rustix::process::fchdir(own_root)
        .and_then(|()| rustix::process::chroot("."))
        .ok()?;
    found
}

/// How long a call may take to answer before it is let run as it is: well within the 30 s
/// liblxc's monitor waits for a reply (after which it answers ENOSYS and the connection's
/// replies would come one call late). A lookup stuck on a mount that does not answer (a
/// FUSE daemon, NFS) leaves its thread behind; the call goes on.
const DEADLINE: Duration = Duration::from_secs(5);
/// Calls being answered at once, beyond which calls are let run without an answer.
const MAX_BUSY: usize = 256;

/// A call being answered: the first of its thread and the deadline to reply wins.
struct Pending {
    conn: std::sync::Arc<OwnedFd>,
    key: u64,
    msg: Vec<u8>,
    call: Call,
    replied: std::sync::atomic::AtomicBool,
}

impl Pending {
    /// Replies (once) and listens to the connection again.
    fn reply(&self, poll: &OwnedFd, answer: Answer) {
        if self.replied.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let out = reply(&self.msg, &self.call, answer);
        let _ = rustix::net::sendmsg(
            &*self.conn,
            &[IoSlice::new(&out)],
            &mut SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL,
        );
        let data = epoll::EventData::new_u64(self.key);
        let _ = epoll::modify(poll, &*self.conn, data, ONE_CALL);
    }
}

/// A connection is listened to for one call at a time: the monitor sends the next only
/// after the reply.
const ONE_CALL: epoll::EventFlags = epoll::EventFlags::IN.union(epoll::EventFlags::ONESHOT);

/// Receives one message on `conn`: the call and its descriptors; `Err(keep)` when there is
/// none (`keep`: the connection stays).
fn receive(conn: &OwnedFd) -> std::result::Result<(Vec<u8>, Call, Vec<OwnedFd>), bool> {
    let mut buf = [0u8; 4096];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        conn,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    );
    let fds: Vec<OwnedFd> = control
        .drain()
        .filter_map(|m| match m {
            RecvAncillaryMessage::ScmRights(fds) => Some(fds.collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    let got = match got {
        Ok(r) if r.bytes > 0 => r.bytes.min(buf.len()),
        Err(Errno::INTR | Errno::AGAIN) => return Err(true),
        _ => return Err(false),
    };
    let msg = buf[..got].to_vec();
    // A message that is not a call cannot be answered: the monitor, seeing the connection
    // close, answers it (ENOSYS) and connects again.
    let call = parse(&msg).ok_or(false)?;
    Ok((msg, call, fds))
}

/// The descriptor number a proxy finds its listening socket at.
const LISTENER_FD: i32 = 3;

/// `forksyscalls SOCKET`: the proxy, serving the listening socket it inherits (descriptor
/// 3) until killed; SOCKET only names it (for whoever looks for it).
pub fn main(args: &[OsString]) -> i32 {
    if args.is_empty() {
        eprintln!("Error: forksyscalls needs its socket's path");
        return 1;
    }
    let Some(listener) = berth_host::take_inherited_fd(LISTENER_FD) else {
        eprintln!("Error: forksyscalls needs its listening socket as descriptor 3");
        return 1;
    };
    match serve(&listener) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

fn serve(listener: &OwnedFd) -> std::io::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A connection per intercepting container and a few descriptors per call in flight.
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: nofile.maximum,
            maximum: nofile.maximum,
        },
    );
    rustix::io::ioctl_fionbio(listener, true)?;
    let own_root = Arc::new(rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?);
    const LISTENER: u64 = u64::MAX;
    let poll = Arc::new(epoll::create(epoll::CreateFlags::CLOEXEC)?);
    let listen = |on: bool| {
        let data = epoll::EventData::new_u64(LISTENER);
        if on {
            epoll::add(&*poll, listener, data, epoll::EventFlags::IN)
        } else {
            epoll::delete(&*poll, listener)
        }
    };
    listen(true)?;
    let mut accepting = true;
    let busy = Arc::new(AtomicUsize::new(0));
    let mut conns: HashMap<u64, Arc<OwnedFd>> = HashMap::new();
    let mut deadlines: Vec<(Instant, Arc<Pending>)> = Vec::new();
    let mut events = Vec::with_capacity(64);
    loop {
        let now = Instant::now();
        for (_, p) in deadlines.iter().filter(|(at, _)| *at <= now) {
            p.reply(&poll, Answer::Continue);
        }
        deadlines
            .retain(|(at, p)| *at > now && !p.replied.load(std::sync::atomic::Ordering::SeqCst));
        let wait = deadlines
            .iter()
            .map(|(at, _)| at.saturating_duration_since(now))
            .min()
            .map(|d| rustix::event::Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: i64::from(d.subsec_nanos()),
            });
        events.clear();
        match epoll::wait(
            &*poll,
            rustix::buffer::spare_capacity(&mut events),
            wait.as_ref(),
        ) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        for event in events.drain(..) {
            let key = event.data.u64();
            if key == LISTENER {
                loop {
                    match rustix::net::accept_with(listener, SocketFlags::CLOEXEC) {
                        Ok(conn) => {
                            let k = conn.as_raw_fd() as u64;
                            let data = epoll::EventData::new_u64(k);
                            if epoll::add(&*poll, &conn, data, ONE_CALL).is_ok() {
                                conns.insert(k, Arc::new(conn));
                            }
                        }
                        // Out of descriptors: no more connections until one closes (the
                        // monitors wait in the backlog), rather than waking for them.
                        Err(Errno::MFILE | Errno::NFILE) => {
                            eprintln!("Error: out of descriptors; connections wait");
                            accepting = listen(false).is_err();
                            break;
                        }
                        Err(_) => break,
                    }
                }
                continue;
            }
            let Some(conn) = conns.get(&key).cloned() else {
                continue;
            };
            let (msg, call, fds) = match receive(&conn) {
                Ok(got) => got,
                Err(true) => {
                    let data = epoll::EventData::new_u64(key);
                    let _ = epoll::modify(&*poll, &*conn, data, ONE_CALL);
                    continue;
                }
                Err(false) => {
                    let _ = epoll::delete(&*poll, &*conn);
                    conns.remove(&key);
                    if !accepting {
                        accepting = listen(true).is_ok();
                    }
                    continue;
                }
            };
            let pending = Arc::new(Pending {
                conn,
                key,
                msg,
                call,
                replied: std::sync::atomic::AtomicBool::new(false),
            });
            if busy.load(Ordering::SeqCst) >= MAX_BUSY {
                pending.reply(&poll, Answer::Continue);
                continue;
            }
            busy.fetch_add(1, Ordering::SeqCst);
            deadlines.push((Instant::now() + DEADLINE, pending.clone()));
            let (p, b, root) = (poll.clone(), busy.clone(), own_root.clone());
            let spawned = std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    let a = answer(&pending.call, &fds, &root);
                    drop(fds);
                    pending.reply(&p, a);
                    b.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                busy.fetch_sub(1, Ordering::SeqCst);
                if let Some((_, p)) = deadlines.pop() {
                    p.reply(&poll, Answer::Continue);
                }
            }
        }
    }
}

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
    /// start (doubling, up to a minute; reset by one that ran long).
    backoff: Duration,
}

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
    // The command line was the pidfd's process's only if that still runs now (a pidfd
    // turns readable when its process ends).
    let mut fds = [rustix::event::PollFd::new(
        &pidfd,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let alive = matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(0));
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
    let copy = listener
        .try_clone()
        .map_err(|e| Failure::failed("Failed to make the syscall proxy's socket", e))?;
    kept.listener = Some(listener);
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Failure::failed(format!("Failed to open {}", log.display()), e))?;
    let mut cmd = super::fork::command("forksyscalls")?;
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
            (kept.backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
        } else {
            Duration::ZERO
        };
        kept.backoff
    };
    tracing::warn!(pid, ?pause, "The syscall proxy exited; starting it again");
    std::thread::sleep(pause);
    if let Err(e) = ensure(socket, log) {
        tracing::warn!(error = %e, "Containers' statfs calls fail until it runs");
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A monitor's message for a call, with the kernel's sizes and a cookie.
    fn message(nr: i32, args: [u64; 6]) -> Vec<u8> {
        let mut m = vec![0u8; HEADER];
        m[16..18].copy_from_slice(&80u16.to_ne_bytes());
        m[18..20].copy_from_slice(&24u16.to_ne_bytes());
        m[20..22].copy_from_slice(&64u16.to_ne_bytes());
        m[24..32].copy_from_slice(&6u64.to_ne_bytes());
        let mut notif = vec![0u8; 80];
        notif[..8].copy_from_slice(&77u64.to_ne_bytes());
        notif[16..20].copy_from_slice(&nr.to_ne_bytes());
        notif[20..24].copy_from_slice(&AUDIT_ARCH.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            notif[32 + 8 * i..40 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        m.extend(notif);
        m.extend([0u8; 24]);
        m.extend(b"cookie");
        m
    }

    #[test]
    fn a_call_is_read_and_answered_in_place() {
        let msg = message(137, [0x1000, 0x2000, 0, 0, 0, 0]);
        let call = parse(&msg).unwrap();
        assert_eq!((call.id, call.nr, call.arch), (77, 137, AUDIT_ARCH));
        assert_eq!(call.args[..2], [0x1000, 0x2000]);

        let out = reply(&msg, &call, Answer::Error(Errno::FAULT.raw_os_error()));
        // Header and call as sent, the cookie left out, the answer filled in.
        assert_eq!(out.len(), HEADER + 80 + 24);
        assert_eq!(out[..HEADER + 80], msg[..HEADER + 80]);
        let r = &out[HEADER + 80..];
        assert_eq!(u64::from_ne_bytes(r[..8].try_into().unwrap()), 77);
        assert_eq!(
            i32::from_ne_bytes(r[16..20].try_into().unwrap()),
            -Errno::FAULT.raw_os_error()
        );
        let out = reply(&msg, &call, Answer::Continue);
        assert_eq!(
            u32::from_ne_bytes(out[HEADER + 100..].try_into().unwrap()),
            1
        );
    }

    #[test]
    fn a_caller_s_credentials_are_read_from_its_status() {
        let status = "Name:\tsh\nUid:\t1001000\t1001000\t1001000\t1001001\n\
                      Gid:\t1001000\t1001000\t1001000\t1001002\nGroups:\t1001000 1001005 \n\
                      CapEff:\t0000000000000000\n";
        let c = creds_of(status).unwrap();
        assert_eq!((c.uid, c.gid), (1_001_001, 1_001_002));
        assert_eq!(c.groups, [1_001_000, 1_001_005]);
        assert!(!c.overrides);
        let root = status.replace("CapEff:\t0000000000000000", "CapEff:\t000001ffffffffff");
        assert!(creds_of(&root).unwrap().overrides);
        assert_eq!(creds_of("Name:\tsh\n"), None);
    }

    #[test]
    fn short_or_odd_messages_are_not_calls() {
        let msg = message(137, [0; 6]);
        assert_eq!(parse(&msg[..HEADER + 90]), None);
        let mut odd = msg.clone();
        odd[16..18].copy_from_slice(&8u16.to_ne_bytes());
        assert_eq!(parse(&odd), None);
        assert_eq!(parse(&[]), None);
    }

    #[test]
    fn a_quota_bounds_total_and_free_space() {
        let dir = std::fs::File::open("/").unwrap();
        let real = berth_host::seccomp::fstatfs(&dir).unwrap();
        let unit = real.unit();
        let (_, free, available) = real.space();
        // 64 blocks, 16 used: 48 free, and available unless the filesystem has less.
        let shown = limited(real, 64 * unit, 16 * unit);
        assert_eq!(shown.space(), (64, 48, available.min(48)));
        // A limit beyond what the filesystem has: used is still what the volume holds.
        let huge = limited(real, (free + 1000) * unit, 16 * unit);
        let (blocks, free_shown, _) = huge.space();
        assert_eq!(blocks - free_shown, 16);
        // Over the limit (a lowered size): nothing free, never a negative count.
        assert_eq!(limited(real, 8 * unit, 16 * unit).space(), (8, 0, 0));
    }
}
