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
//! takes one from the running proxy), so a proxy that ends is replaced on the same socket
//! (at once, or after a pause of at most 15 s when it keeps ending at start) and a monitor
//! reconnecting meanwhile waits in the backlog; a call in flight when it ended gets
//! ENOSYS. A monitor refused (berthd and proxy both gone, or none can be started) answers
//! ENOSYS, stops asking until its container's own tree makes another intercepted call,
//! and liblxc refuses `berth exec` until then.
//!
//! It keeps no state: each answer is read from the kernel (the file's subvolume, its
//! qgroup's limit and count in `/sys/fs/btrfs/FSID/qgroups/0_ID/`). Any call it does not
//! answer itself (another filesystem, no limit, another ABI, a file it cannot resolve, a
//! FIFO or device node, a write into the caller's buffer that fails) it lets the kernel run
//! (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`), so the caller sees what it would without it.
//! Each call is answered on a thread of its own within [`DEADLINE`] (liblxc's monitor
//! waits 30 s for a reply, then answers ENOSYS and would read the late reply as the next
//! call's), at most [`MAX_BUSY_EACH`] of one container at once: a lookup stuck on a mount
//! that never answers (a FUSE daemon, NFS) is let run in the kernel instead, and when more
//! than [`MAX_LATE`] are stuck the proxy exits to be replaced (their threads, and their
//! hold on the containers' mounts, go with it).
//!
//! A path is looked up as the caller would: the thread takes the caller's root and working
//! directory (`/proc/PID/root`, `/proc/PID/cwd`) and, unless the caller may search any
//! directory in its container's own user namespace, its file system ids and groups with
//! no capabilities. A descriptor is reopened from `/proc/PID/fd/N`. The caller's memory is
//! read and written as it could itself (`process_vm_readv`, `process_vm_writev`), after
//! checking its thread id still names it (its start time). `/proc/self` in a path names no
//! process the proxy can see (it is not in the container's pid namespace): such a call
//! runs as without the proxy.
//!
//! Which containers intercept: those with a size on a volume on such a pool at start (their
//! root or a custom volume disk; a size set later shows from the next start), except
//! checkpointable ones (CRIU cannot dump a seccomp listener) and nesting ones (the kernel
//! allows one listener along a filter chain, so a container manager inside could not
//! intercept for its own containers). A container that never has a size pays nothing.

mod keep;

pub use keep::ensure;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_host::seccomp::StatFs;
use rustix::event::epoll;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendFlags,
    SocketFlags,
};

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
    /// The container's init (from liblxc's header), in berthd's pid namespace.
    init_pid: i32,
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
        init_pid: i32::from_ne_bytes(field(msg, 12)?),
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
        Answer::Continue => (0, 0i32, FLAG_CONTINUE),
        Answer::Value(v) => (v, 0, 0),
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
    let caps = rustix::thread::capabilities(None).ok()?;
    let groups: Vec<Gid> = creds.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let none = rustix::thread::CapabilitySets {
        effective: rustix::thread::CapabilitySet::empty(),
        ..caps
    };
    let became = rustix::thread::set_thread_groups(&groups)
        .and_then(|()| rustix::thread::set_thread_res_gid(None, Gid::from_raw(creds.gid), None))
        .and_then(|()| rustix::thread::set_thread_res_uid(None, Uid::from_raw(creds.uid), None))
        // Also for a caller whose uid is root's (a privileged container's, its
        // capabilities dropped): the uid change alone would leave them.
        .and_then(|()| rustix::thread::set_capabilities(None, none));
    let out = became.is_ok().then(f);
    // The real and saved uids stayed root's: the effective one comes back, and the
    // capabilities with it.
    let back = rustix::thread::set_thread_res_uid(None, Uid::ROOT, None)
        .and_then(|()| rustix::thread::set_capabilities(None, caps))
        .and_then(|()| rustix::thread::set_thread_res_gid(None, Gid::ROOT, None))
        .and_then(|()| rustix::thread::set_thread_groups(&[]));
    back.ok().and(out)
}

/// The figures to write for `call`, given the monitor's descriptors (the caller's
/// `/proc/PID`, its memory, the seccomp listener) and the proxy's own root; `None`: the
/// call runs in the kernel. Runs on a thread of its own, which it changes (root,
/// credentials) and which ends with it.
fn figures_for(call: &Call, proc_dir: &OwnedFd, own_root: &OwnedFd) -> Option<StatFs> {
    if call.arch != AUDIT_ARCH {
        return None;
    }
    let file = if call.nr == berth_host::seccomp::SYS_STATFS {
        let status = rustix::fs::openat(
            proc_dir,
            "status",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
        .and_then(|fd| std::io::read_to_string(std::fs::File::from(fd)).ok())?;
        let mut creds = creds_of(&status)?;
        // Its capabilities count only in its container's own user namespace (one it made
        // itself, `unshare -r`, owns none of the container's files).
        creds.overrides &= same_user_namespace(proc_dir, call.init_pid);
        look_up(proc_dir, call, &creds, own_root)
    } else if call.nr == berth_host::seccomp::SYS_FSTATFS {
        // The descriptor is an `int`: the argument's low 32 bits. The caller holds it, so
        // reopening it tells nothing it could not learn.
        let fd = call.args[0] as u32 as i32;
        let flags = OFlags::PATH | OFlags::CLOEXEC;
        (fd >= 0)
            .then(|| rustix::fs::openat(proc_dir, format!("fd/{fd}"), flags, Mode::empty()))?
            .ok()
    } else {
        None
    };
    quota_figures(&file?)
}

/// Whether the process of `proc_dir` is in the user namespace of init `init_pid`.
fn same_user_namespace(proc_dir: &OwnedFd, init_pid: i32) -> bool {
    let id = |st: rustix::fs::Stat| (st.st_dev, st.st_ino);
    let flags = rustix::fs::AtFlags::empty();
    let caller = rustix::fs::statat(proc_dir, "ns/user", flags).map(id);
    let init = rustix::fs::stat(format!("/proc/{init_pid}/ns/user").as_str()).map(id);
    matches!((caller, init), (Ok(a), Ok(b)) if a == b)
}

/// Whether `/proc/{pid}` is still the process `proc_dir` was opened on: the same start
/// time (a thread id that ended and was given again would not have it), so its memory is
/// the caller's.
fn still_the_caller(proc_dir: &OwnedFd, pid: i32) -> bool {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC;
    let held = rustix::fs::openat(proc_dir, "stat", flags, Mode::empty())
        .ok()
        .and_then(|fd| std::io::read_to_string(std::fs::File::from(fd)).ok())
        .and_then(|stat| super::lifecycle::start_time_in(&stat));
    held.is_some() && held == super::lifecycle::start_time(pid)
}

/// Answers `pending` (on its worker thread): the figures written into the caller's
/// memory as it could write them itself (`process_vm_writev`: never forced into a
/// read-only page), or the call let run; what cannot be done is let run.
fn answer(pending: &Pending, fds: &[OwnedFd], own_root: &OwnedFd, poll: &OwnedFd) {
    let call = &pending.call;
    let [proc_dir, _mem, listener] = fds else {
        pending.reply(poll, Answer::Continue, OPEN);
        return;
    };
    let Some(figures) = figures_for(call, proc_dir, own_root) else {
        pending.reply(poll, Answer::Continue, OPEN);
        return;
    };
    // The caller may have gone (killed, its call interrupted) while the answer was made,
    // or the deadline let the call run: then the memory is no longer its buffer.
    if !berth_host::seccomp::notification_pending(listener, call.id)
        || !still_the_caller(proc_dir, call.pid)
        || !pending.claim()
    {
        pending.reply(poll, Answer::Continue, OPEN);
        return;
    }
    let bytes = figures.to_bytes();
    let answer = match berth_host::seccomp::write_memory(call.pid, call.args[1], &bytes) {
        Ok(n) if n == bytes.len() => Answer::Value(0),
        // The kernel gives a bad buffer its own error.
        _ => Answer::Continue,
    };
    pending.reply(poll, answer, WRITING);
}

/// Opens (`O_PATH`) the path `call` names as the caller would: from its root and working
/// directory, with its credentials. The thread's root is its own again after.
fn look_up(proc_dir: &OwnedFd, call: &Call, creds: &Creds, own_root: &OwnedFd) -> Option<OwnedFd> {
    if !still_the_caller(proc_dir, call.pid) {
        return None;
    }
    let path = read_path(call.pid, call.args[0])?;
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
/// replies would come one call late).
const DEADLINE: Duration = Duration::from_secs(5);
/// Calls being answered at once, beyond which calls are let run without an answer.
const MAX_BUSY: usize = 256;
/// Calls of one container being answered at once, beyond which its calls are let run:
/// one container's stuck lookups do not take the others' turns.
const MAX_BUSY_EACH: usize = 4;
/// Lookups still running past their deadline (stuck on a mount that never answers: a
/// FUSE daemon, NFS) beyond which the proxy exits, so berthd starts a fresh one and the
/// stuck threads (killable waits) go with this one, and their hold on the containers'
/// mounts.
const MAX_LATE: usize = 32;

/// A call's states: being answered; its figures being written; replied to.
const OPEN: u8 = 0;
const WRITING: u8 = 1;
const REPLIED: u8 = 2;

/// A call being answered: its thread or its deadline replies, whichever comes first; a
/// thread that has begun writing the caller's memory is never overtaken.
struct Pending {
    conn: std::sync::Arc<OwnedFd>,
    key: u64,
    msg: Vec<u8>,
    call: Call,
    state: std::sync::atomic::AtomicU8,
    /// Its deadline replied while its thread still ran.
    late: std::sync::atomic::AtomicBool,
}

impl Pending {
    /// Takes the call for writing its figures; false when the deadline has replied.
    fn claim(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.state
            .compare_exchange(OPEN, WRITING, SeqCst, SeqCst)
            .is_ok()
    }

    /// Replies, if the call is still in state `from`, and listens to the connection
    /// again; whether it did.
    fn reply(&self, poll: &OwnedFd, answer: Answer, from: u8) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        if self
            .state
            .compare_exchange(from, REPLIED, SeqCst, SeqCst)
            .is_err()
        {
            return false;
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
        true
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
pub(super) const LISTENER_FD: i32 = 3;

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

/// Calls being answered, in all and by container (its init's pid).
#[derive(Default)]
struct Busy {
    all: usize,
    each: HashMap<i32, usize>,
    /// Those still running past their deadline.
    late: usize,
}

/// A worker's share of [`Busy`], given back when it ends, even by a panic.
struct Share {
    busy: std::sync::Arc<std::sync::Mutex<Busy>>,
    init: i32,
    pending: std::sync::Arc<Pending>,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut b = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        b.all = b.all.saturating_sub(1);
        if let Some(n) = b.each.get_mut(&self.init) {
            *n -= 1;
            if *n == 0 {
                b.each.remove(&self.init);
            }
        }
        if self.pending.late.load(std::sync::atomic::Ordering::SeqCst) {
            b.late = b.late.saturating_sub(1);
        }
    }
}

fn serve(listener: &OwnedFd) -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};
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
    let busy = Arc::new(Mutex::new(Busy::default()));
    let mut conns: HashMap<u64, Arc<OwnedFd>> = HashMap::new();
    let mut deadlines: Vec<(Instant, Arc<Pending>)> = Vec::new();
    let mut events = Vec::with_capacity(64);
    loop {
        let now = Instant::now();
        for (_, p) in deadlines.iter().filter(|(at, _)| *at <= now) {
            if p.reply(&poll, Answer::Continue, OPEN) {
                p.late.store(true, Ordering::SeqCst);
                busy.lock().unwrap_or_else(|p| p.into_inner()).late += 1;
            }
        }
        deadlines.retain(|(at, p)| *at > now && p.state.load(Ordering::SeqCst) != REPLIED);
        let late = busy.lock().unwrap_or_else(|p| p.into_inner()).late;
        if late > MAX_LATE {
            eprintln!("Error: {late} lookups stuck past their deadline; exiting to be replaced");
            std::process::exit(1);
        }
        if !accepting {
            // Out of descriptors before: try again now and then.
            accepting = listen(true).is_ok();
        }
        let mut wait = deadlines
            .iter()
            .map(|(at, _)| at.saturating_duration_since(now))
            .min();
        if !accepting {
            wait = Some(wait.map_or(Duration::from_secs(1), |w| w.min(Duration::from_secs(1))));
        }
        let wait = wait.map(|d| rustix::event::Timespec {
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
                        // Out of descriptors: the monitors wait in the backlog, rather than
                        // the loop waking for them; tried again within a second.
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
                    continue;
                }
            };
            let pending = Arc::new(Pending {
                conn,
                key,
                msg,
                call,
                state: std::sync::atomic::AtomicU8::new(OPEN),
                late: std::sync::atomic::AtomicBool::new(false),
            });
            {
                let mut b = busy.lock().unwrap_or_else(|p| p.into_inner());
                let mine = b.each.get(&call.init_pid).copied().unwrap_or(0);
                if b.all >= MAX_BUSY || mine >= MAX_BUSY_EACH {
                    drop(b);
                    pending.reply(&poll, Answer::Continue, OPEN);
                    continue;
                }
                b.all += 1;
                *b.each.entry(call.init_pid).or_default() += 1;
            }
            let share = Share {
                busy: busy.clone(),
                init: call.init_pid,
                pending: pending.clone(),
            };
            deadlines.push((Instant::now() + DEADLINE, pending.clone()));
            let (p, root) = (poll.clone(), own_root.clone());
            let spawned = std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    let _share = share;
                    answer(&pending, &fds, &root, &p);
                });
            if spawned.is_err()
                && let Some((_, p)) = deadlines.pop()
            {
                p.reply(&poll, Answer::Continue, OPEN);
            }
        }
    }
}

#[cfg(test)]
mod tests;
