//! The few raw host operations berth needs, kept in one small crate so `unsafe` stays out
//! of the daemon: handing a file descriptor to a child at a fixed number, taking such a
//! descriptor over in the child, opening pseudo-terminals, changing a detached mount's
//! attributes (`mount_setattr`, which rustix does not wrap), and making a user namespace
//! with a given id map (for idmapped mounts made before a container exists), two btrfs
//! ioctls ([`btrfs`]), a netlink receive with its namespace id ([`netlink`]), a seccomp
//! notification's check and `struct statfs` ([`seccomp`]); and the one runner of host
//! tools ([`run_command`]).

#![allow(unsafe_code)] // The boundary for the raw calls below; each block says why it holds.

pub mod btrfs;
mod command;
pub mod netcat;
pub mod netlink;
pub mod seccomp;

pub use command::{CommandError, run_command, run_command_with_input};

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;

/// Has the child `cmd` starts killed when the thread that starts it ends (berthd dies): a
/// copy or a host tool never runs on, writing into a volume, after the daemon that
/// started it is gone and a restarted one has swept what it was making. Only for children
/// waited for by the thread that starts them.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and only makes the
    // prctl(PR_SET_PDEATHSIG) system call, which is async-signal-safe and does not
    // allocate.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
}

/// Makes `fd` appear as descriptor `target` in the child `cmd` starts.
pub fn pass_fd(cmd: &mut Command, fd: OwnedFd, target: RawFd) {
    let raw = fd.as_raw_fd();
    // SAFETY: the closure runs in the child between fork and exec and only calls dup2 and
    // fcntl, which are async-signal-safe and do not allocate; `fd` stays open in the parent
    // until the command is spawned because the closure owns it.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &fd;
            // SAFETY: `raw` is open in the child: it was inherited from the parent.
            let from = rustix::fd::BorrowedFd::borrow_raw(raw);
            if raw == target {
                // dup2 onto itself would keep close-on-exec: clear the flag instead.
                rustix::io::fcntl_setfd(from, rustix::io::FdFlags::empty())?;
                return Ok(());
            }
            // SAFETY: `target` is the number the child wants; dup2 replaces whatever is
            // there, and forgetting the handle keeps the new descriptor open across exec.
            let mut to = std::mem::ManuallyDrop::new(OwnedFd::from_raw_fd(target));
            rustix::io::dup2(from, &mut to)?;
            Ok(())
        });
    }
}

/// Takes over descriptor `n` inherited from the parent, if it is open, and marks it
/// close-on-exec so that programs this process starts do not inherit it.
pub fn take_inherited_fd(n: RawFd) -> Option<OwnedFd> {
    // SAFETY: fcntl(F_GETFD) on any integer is harmless; it only tells whether it is open.
    let b = unsafe { rustix::fd::BorrowedFd::borrow_raw(n) };
    rustix::io::fcntl_getfd(b).ok()?;
    rustix::io::fcntl_setfd(b, rustix::io::FdFlags::CLOEXEC).ok()?;
    // SAFETY: `n` is open and nothing else in this process owns it: it was inherited for
    // exactly this purpose and is taken once, at start-up.
    Some(unsafe { OwnedFd::from_raw_fd(n) })
}

/// A new pseudo-terminal: the controlling side and the terminal side.
pub fn openpty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok((master, slave))
}

/// A new pseudo-terminal from the devpts mount `devpts` (a container's own): the
/// controlling side and the terminal side, the latter opened without a path.
pub fn openpty_in(devpts: &OwnedFd) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let master = rustix::fs::openat(
        devpts,
        "ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::pty::unlockpt(&master)?;
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )?;
    Ok((master, slave))
}

/// What [`mount_setattr`] changes on a detached mount.
#[derive(Debug, Default, Clone, Copy)]
pub struct MountAttr<'a> {
    /// Make the mount read-only.
    pub readonly: bool,
    /// Show the files' owners through this user namespace's id map (an idmapped mount).
    pub idmap: Option<BorrowedFd<'a>>,
    /// `MS_PRIVATE`, `MS_SLAVE` or `MS_SHARED`; 0 leaves it.
    pub propagation: u64,
    /// Apply to every mount of the tree, not only its top.
    pub recursive: bool,
}

/// `MS_PRIVATE`, `MS_SLAVE` and `MS_SHARED`, for [`MountAttr::propagation`].
pub const MS_PRIVATE: u64 = 1 << 18;
pub const MS_SLAVE: u64 = 1 << 19;
pub const MS_SHARED: u64 = 1 << 20;

/// The kernel's `struct mount_attr`.
#[repr(C)]
struct RawMountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(2)` on the mount `fd` (from `open_tree(OPEN_TREE_CLONE)`).
pub fn mount_setattr(fd: BorrowedFd<'_>, attr: &MountAttr<'_>) -> std::io::Result<()> {
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    const AT_EMPTY_PATH: u32 = 0x1000;
    const AT_RECURSIVE: u32 = 0x8000;
    let mut raw = RawMountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: attr.propagation,
        userns_fd: 0,
    };
    if attr.readonly {
        raw.attr_set |= MOUNT_ATTR_RDONLY;
    }
    if let Some(ns) = attr.idmap {
        raw.attr_set |= MOUNT_ATTR_IDMAP;
        raw.userns_fd = u64::try_from(ns.as_raw_fd()).unwrap_or_default();
    }
    let mut flags = AT_EMPTY_PATH;
    if attr.recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: the path is a static empty C string, `raw` is a live `struct mount_attr` of
    // the size passed, and the kernel only reads it; both descriptors are borrowed for the
    // call's duration.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &raw const raw,
            std::mem::size_of::<RawMountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A user namespace mapping ids `0..size` to host ids from `uid_base` and `gid_base`,
/// owned by the map's root (host id `uid_base`), not by root. The kernel charges the
/// per-user counts of everything made inside (inotify instances and watches, user
/// namespaces) to a namespace's owner: owned this way, each container with a range of
/// its own has counts of its own, and none takes from the host's root. Containers join
/// it at start; idmapped mounts use it too. A short-lived child process creates it; the
/// returned descriptor keeps the namespace alive.
pub fn userns_with_map(uid_base: u32, gid_base: u32, size: u32) -> std::io::Result<OwnedFd> {
    let mut cmd = Command::new("sleep");
    cmd.arg("30")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: the closure runs in the child between fork and exec and only makes raw
    // system calls (getrlimit, setrlimit, setgroups, setresgid, setresuid, unshare), which are
    // async-signal-safe and do not allocate. Raw calls rather than libc's wrappers, which
    // would try to change every thread of the (forked, single-threaded) child.
    unsafe {
        cmd.pre_exec(move || {
            // The namespace's process limit is its creator's: none, as for root's, or
            // (without CAP_SYS_RESOURCE) the highest this process may set.
            let mut limit = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::syscall(libc::SYS_setrlimit, libc::RLIMIT_NPROC, &raw const limit) != 0
                && libc::syscall(libc::SYS_getrlimit, libc::RLIMIT_NPROC, &raw mut limit) == 0
            {
                limit.rlim_cur = limit.rlim_max;
                libc::syscall(libc::SYS_setrlimit, libc::RLIMIT_NPROC, &raw const limit);
            }
            let calls = [
                libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()),
                libc::syscall(libc::SYS_setresgid, gid_base, gid_base, gid_base),
                libc::syscall(libc::SYS_setresuid, uid_base, uid_base, uid_base),
            ];
            if calls.iter().any(|rc| *rc != 0) {
                return Err(std::io::Error::last_os_error());
            }
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER)?;
            Ok(())
        });
    }
    // spawn returns once the child has exec'd, so it is in its namespace by then.
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let result = (|| {
        std::fs::write(
            format!("/proc/{pid}/uid_map"),
            format!("0 {uid_base} {size}\n"),
        )?;
        std::fs::write(
            format!("/proc/{pid}/gid_map"),
            format!("0 {gid_base} {size}\n"),
        )?;
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
        Ok(OwnedFd::from(ns))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Moves the calling thread into a new, empty network namespace (only a loopback, down):
/// where network tests build bridges and rules without touching the host's, and what
/// the processes the thread starts from then on inherit.
pub fn unshare_netns() -> std::io::Result<()> {
    // SAFETY: a new network namespace changes which network objects the thread sees; it
    // shares no memory, descriptors or credentials differently, which is what makes other
    // unshare flags unsafe.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET)? };
    Ok(())
}

/// Gives the calling thread a root and working directory of its own (`CLONE_FS`), so it
/// may `chroot` and `chdir` without moving the rest of the process.
pub fn unshare_fs() -> std::io::Result<()> {
    // SAFETY: CLONE_FS copies the thread's root, working directory and umask; it shares no
    // memory or descriptors differently, which is what makes other unshare flags unsafe.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS)? };
    Ok(())
}

/// Marks every descriptor from 3 up close-on-exec, so that nothing a daemon inherited
/// from whoever started it reaches the processes it starts (containers' among them).
pub fn cloexec_from_3() -> std::io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC closes nothing; it only sets a flag on
    // descriptors of this process, which no Rust object's validity depends on.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.11, or a sandbox refusing the call: one descriptor at a time.
    let mut open = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
            && fd > 2
        {
            open.push(fd);
        }
    }
    for fd in open {
        // SAFETY: only the close-on-exec flag of a descriptor of this process changes; one
        // that closed meanwhile (the directory listing's own) just fails, ignored.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = rustix::io::fcntl_setfd(b, rustix::io::FdFlags::CLOEXEC);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn passes_a_descriptor_at_a_fixed_number() {
        let (r, w) = rustix::pipe::pipe().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo hi >&3"]);
        pass_fd(&mut cmd, w, 3);
        let status = cmd.status().unwrap();
        assert!(status.success());
        // The command keeps the parent's copy of the write end alive until it is dropped.
        drop(cmd);
        let mut out = String::new();
        std::fs::File::from(r).read_to_string(&mut out).unwrap();
        assert_eq!(out, "hi\n");
        assert!(take_inherited_fd(999).is_none());
    }

    #[test]
    fn opens_a_pty() {
        let (m, s) = openpty().unwrap();
        rustix::termios::tcsetwinsize(
            &m,
            rustix::termios::Winsize {
                ws_row: 24,
                ws_col: 80,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .unwrap();
        assert_eq!(rustix::termios::tcgetwinsize(&s).unwrap().ws_col, 80);
    }
}

#[cfg(test)]
mod userns_tests {
    #[test]
    fn makes_a_namespace_owned_by_the_maps_root() {
        const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;
        let ns = super::userns_with_map(1_300_000, 1_400_000, 65536).unwrap();
        let mut owner: libc::uid_t = 0;
        // SAFETY: the ioctl writes one uid_t into `owner`, which outlives the call.
        let rc = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&ns),
                NS_GET_OWNER_UID,
                &raw mut owner,
            )
        };
        assert_eq!((rc, owner), (0, 1_300_000));
    }
}
