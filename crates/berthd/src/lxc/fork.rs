//! The helper subcommands berthd re-executes itself as, for the liblxc calls that fork,
//! both sides: [`command`] launches one, the functions below are what it runs.
//!
//! They run in a fresh, single-threaded process (dispatched in `main` before any runtime
//! thread exists), so liblxc's fork is safe. Each prints one line on stderr on failure and
//! exits 1.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::error::{Failure, Result};

/// A command running berthd's helper `name` (`forkstart`, `forkexec`, …).
pub fn command(name: &str) -> Result<std::process::Command> {
    let exe = std::env::current_exe().map_err(|e| Failure::failed("Failed to find berthd", e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(name);
    Ok(cmd)
}

/// A terminal for a command run in container `name`, from the container's own devpts
/// so that inside it has a name (the host's when that cannot be had): (master, slave).
pub fn terminal(lxcpath: &Path, name: &str) -> Result<(OwnedFd, OwnedFd)> {
    let devpts = berth_lxc::Container::new(name, lxcpath).and_then(|c| c.devpts_fd());
    match devpts {
        Ok(fd) => berth_host::openpty_in(&fd),
        Err(_) => berth_host::openpty(),
    }
    .map_err(|e| Failure::failed("Failed to open a terminal", e))
}

/// The helpers `main` dispatches to, by subcommand.
pub fn dispatch(args: &[OsString]) -> Option<i32> {
    let (name, rest) = args.split_first()?;
    let run: fn(&[OsString]) -> i32 = match name.to_str()? {
        "forkstart" => start,
        "forkconsole" => console,
        "forkexec" => exec,
        "forkmount" => mount,
        "forkmigrate" => migrate,
        "forkconsolekeeper" => super::console::keeper_main,
        "forkdellinks" => del_links,
        "forkprlimit" => prlimit,
        "forkproxy" => super::proxy::main,
        "forksyscalls" => super::syscalls::main,
        "forknetcat" => netcat,
        "forkhandoff" => handoff,
        _ => return None,
    };
    Some(run(rest))
}

/// `forknetcat @NAME [ignored...]`: rsync's remote shell during a migration (see
/// `berth_host::netcat`); rsync appends its own remote command, which is ignored.
fn netcat(args: &[OsString]) -> i32 {
    let Some(name) = args.first().and_then(|a| a.to_str()) else {
        eprintln!("Error: forknetcat needs a socket name");
        return 1;
    };
    exit_code(berth_host::netcat::relay(name))
}

/// `forkhandoff @NAME`: a live migration's post-dump action script (see
/// [`super::handoff`]): exit 0 ends the dumped processes, 1 resumes them.
fn handoff(args: &[OsString]) -> i32 {
    let Some(name) = args.first().and_then(|a| a.to_str()) else {
        eprintln!("Error: forkhandoff needs a socket name");
        return 1;
    };
    match super::handoff::helper(name) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

/// A helper's exit code: 0, or 1 after one line on stderr.
fn exit_code<E: std::fmt::Display>(result: Result<(), E>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

/// `berthd forkdellinks FILE [NAME lxc post-stop]`: liblxc's post-stop hook of a
/// container with nics; deletes the host links listed in FILE.
pub fn del_links(args: &[OsString]) -> i32 {
    let Some(file) = args.first() else {
        eprintln!("usage: berthd forkdellinks FILE");
        return 1;
    };
    super::lifecycle::delete_host_links(Path::new(file));
    0
}

/// The `lxc.hook.start-host` line that sets `limits` (`lxc.prlimit.NAME` keys and values)
/// on a container whose user namespace belongs to `uid`:`gid` (see [`prlimit`]).
pub fn prlimit_hook(exe: &Path, uid: u32, gid: u32, limits: &[(String, String)]) -> String {
    let mut line = format!("{} forkprlimit {uid}:{gid}", exe.display());
    for (k, v) in limits {
        if let Some(name) = k.strip_prefix("lxc.prlimit.") {
            line.push_str(&format!(" {name}={v}"));
        }
    }
    line
}

/// `berthd forkprlimit UID:GID NAME=SOFT[:HARD]… [NAME lxc start-host]`: liblxc's
/// start-host hook, run before the container's init, which sets the init's resource
/// limits (`LXC_PID`). It stands in for liblxc's own `lxc.prlimit`, which fails where root
/// lacks CAP_SYS_RESOURCE once the init runs as the container's root in a namespace that
/// berthd made (liblxc's check only passes for a namespace root owns): limits root may not
/// set are set again as UID:GID, the namespace's owner, who may lower any of them.
pub fn prlimit(args: &[OsString]) -> i32 {
    exit_code(set_prlimits(args))
}

fn set_prlimits(args: &[OsString]) -> Result<(), String> {
    use rustix::process::{Pid, Resource, Rlimit};
    let usage = || "usage: berthd forkprlimit UID:GID NAME=SOFT[:HARD]…".to_owned();
    let (owner, rest) = args.split_first().ok_or_else(usage)?;
    let (uid, gid) = owner
        .to_str()
        .and_then(|o| o.split_once(':'))
        .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)))
        .ok_or_else(usage)?;
    let pid = std::env::var("LXC_PID")
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
        .and_then(Pid::from_raw)
        .ok_or("LXC_PID names no process")?;
    let value = |v: &str| -> Option<Option<u64>> {
        if v == "unlimited" {
            Some(None)
        } else {
            v.parse().ok().map(Some)
        }
    };
    let mut limits = Vec::new();
    // Arguments without '=' are the ones liblxc appends (name, section, hook).
    for arg in rest
        .iter()
        .filter_map(|a| a.to_str())
        .take_while(|a| a.contains('='))
    {
        let (name, v) = arg.split_once('=').ok_or_else(usage)?;
        let resource = match name {
            "as" => Resource::As,
            "core" => Resource::Core,
            "cpu" => Resource::Cpu,
            "data" => Resource::Data,
            "fsize" => Resource::Fsize,
            "locks" => Resource::Locks,
            "memlock" => Resource::Memlock,
            "msgqueue" => Resource::Msgqueue,
            "nice" => Resource::Nice,
            "nofile" => Resource::Nofile,
            "nproc" => Resource::Nproc,
            "rss" => Resource::Rss,
            "rtprio" => Resource::Rtprio,
            "rttime" => Resource::Rttime,
            "sigpending" => Resource::Sigpending,
            "stack" => Resource::Stack,
            _ => return Err(format!("Unknown resource limit {name:?}")),
        };
        let (soft, hard) = v.split_once(':').unwrap_or((v, v));
        let (Some(current), Some(maximum)) = (value(soft), value(hard)) else {
            return Err(format!("Invalid value {v:?} for limit {name}"));
        };
        limits.push((name, resource, Rlimit { current, maximum }));
    }
    let mut refused = Vec::new();
    for (name, resource, limit) in &limits {
        if let Err(e) = rustix::process::prlimit(Some(pid), *resource, *limit) {
            if e != rustix::io::Errno::PERM {
                return Err(format!("Failed to set limit {name}: {e}"));
            }
            refused.push((name, resource, limit));
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    // This helper is single-threaded: changing this thread's ids changes the process's.
    rustix::thread::set_thread_res_gid(
        rustix::fs::Gid::from_raw(gid),
        rustix::fs::Gid::from_raw(gid),
        rustix::fs::Gid::from_raw(gid),
    )
    .and_then(|()| {
        rustix::thread::set_thread_res_uid(
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Uid::from_raw(uid),
            rustix::fs::Uid::from_raw(uid),
        )
    })
    .map_err(|e| format!("Failed to take the container's ids: {e}"))?;
    for (name, resource, limit) in refused {
        rustix::process::prlimit(Some(pid), *resource, *limit)
            .map_err(|e| format!("Failed to set limit {name}: {e}"))?;
    }
    Ok(())
}

/// `berthd forkstart NAME LXCPATH CONFIG [--prlimit-hook]`: starts a container,
/// daemonized; returns once it runs. With `--prlimit-hook`, the configuration's
/// `lxc.prlimit` keys are left to its [`prlimit`] hook at this start (they stay for
/// `exec`, which liblxc can still limit).
pub fn start(args: &[OsString]) -> i32 {
    let (name, lxcpath, config, by_hook) = match args {
        [n, l, c] => (n, l, c, false),
        [n, l, c, flag] if flag == "--prlimit-hook" => (n, l, c, true),
        _ => {
            eprintln!("usage: berthd forkstart NAME LXCPATH CONFIG [--prlimit-hook]");
            return 1;
        }
    };
    let run = || -> Result<(), berth_lxc::LxcError> {
        let c = berth_lxc::Container::new(&name.to_string_lossy(), Path::new(lxcpath))?;
        c.load_config(Path::new(config))?;
        if by_hook {
            c.clear_config_item("lxc.prlimit")?;
        }
        c.want_daemonize(true)?;
        c.want_close_all_fds(true)?;
        c.start()?;
        // Record the init pid so state queries need no round trip to the monitor.
        if let Ok(Some(pid)) = c.init_pid() {
            super::lifecycle::record_init(&Path::new(lxcpath).join(name), pid);
        }
        Ok(())
    };
    exit_code(run())
}

/// `berthd forkconsole NAME LXCPATH CONFIG`: attaches this process's stdin/stdout (the
/// terminal side of a pty berthd holds) to the container's console until either hangs up.
pub fn console(args: &[OsString]) -> i32 {
    let [name, lxcpath, config] = args else {
        eprintln!("usage: berthd forkconsole NAME LXCPATH CONFIG");
        return 1;
    };
    // The pty becomes the controlling terminal, so a resize on berthd's side reaches
    // liblxc as SIGWINCH and it passes the size on to the console.
    let _ = rustix::process::setsid();
    let _ = rustix::process::ioctl_tiocsctty(rustix::stdio::stdin());
    let run = || -> Result<(), berth_lxc::LxcError> {
        let c = berth_lxc::Container::new(&name.to_string_lossy(), Path::new(lxcpath))?;
        c.load_config(Path::new(config))?;
        c.console(0, 1, -1)
    };
    exit_code(run())
}

/// What `forkexec` runs, passed as one JSON argument.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub cwd: String,
    /// stdin is a terminal: make it the controlling terminal of a new session.
    pub pty: bool,
}

/// `berthd forkexec NAME LXCPATH CONFIG SPEC`: runs a command in a container with this
/// process's stdin, stdout and stderr, reports the command's host pid on descriptor 3 (so
/// berthd can signal it), waits for it and exits with its status (128 + signal if killed).
pub fn exec(args: &[OsString]) -> i32 {
    let [name, lxcpath, config, spec] = args else {
        eprintln!("usage: berthd forkexec NAME LXCPATH CONFIG SPEC");
        return 1;
    };
    let spec: ExecSpec = match serde_json::from_str(&spec.to_string_lossy()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error: invalid exec spec: {e}");
            return 1;
        }
    };
    let report = berth_host::take_inherited_fd(3);
    let run = || -> Result<i32, berth_lxc::LxcError> {
        let c = berth_lxc::Container::new(&name.to_string_lossy(), Path::new(lxcpath))?;
        c.load_config(Path::new(config))?;
        let opts = berth_lxc::AttachOptions {
            env: spec.env.clone(),
            uid: Some(spec.uid),
            gid: Some(spec.gid),
            cwd: Some(spec.cwd.clone()).filter(|c| !c.is_empty()),
            stdin: 0,
            stdout: 1,
            stderr: 2,
            tty: spec.pty,
        };
        c.attach(&opts, &spec.argv)
    };
    let pid = match run() {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("Error: {e}");
            return 127;
        }
    };
    if let Some(fd) = report {
        let mut f = std::fs::File::from(fd);
        let _ = std::io::Write::write_all(&mut f, pid.to_string().as_bytes());
    }
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return 1;
    };
    match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
        Ok(Some((_, status))) => {
            if let Some(code) = status.exit_status() {
                code
            } else if let Some(sig) = status.terminating_signal() {
                128 + sig
            } else {
                1
            }
        }
        _ => 1,
    }
}

/// What `forkmount` does in a running container, passed as one JSON argument.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct MountSpec {
    /// The container's init, whose namespaces and root are joined.
    pub pid: i32,
    /// That process's start time (clock ticks after boot): a later process reusing the
    /// pid is refused.
    pub start_time: u64,
    /// Refuse a `source` whose path holds a symlink (restricted projects).
    pub no_symlinks: bool,
    /// The container has its own user namespace (unprivileged).
    pub userns: bool,
    /// A host path to mount at `target`; `None` unmounts `target` instead.
    pub source: Option<String>,
    /// The path inside the container.
    pub target: String,
    /// The mount point is a directory (else a file, as for device nodes).
    pub dir: bool,
    pub readonly: bool,
    pub recursive: bool,
    /// An idmapped mount through the container's user namespace.
    pub shift: bool,
    /// `private`, `shared`, `slave` or their `r` forms; default `slave`, so nothing the
    /// container mounts there reaches the host.
    pub propagation: Option<String>,
    /// After unmounting, remove the (empty) mount point.
    pub remove: bool,
}

/// `berthd forkmount SPEC`: mounts a host path into a running container, or unmounts one.
///
/// The host path is opened here, on the host, as a detached mount (`open_tree`), given its
/// attributes, and only then does this process join the container's user and mount
/// namespaces and its root: the mount point is made and resolved as the container's root
/// sees it, so a symlink the container planted can only lead elsewhere inside it.
pub fn mount(args: &[OsString]) -> i32 {
    let [spec] = args else {
        eprintln!("usage: berthd forkmount SPEC");
        return 1;
    };
    let spec: MountSpec = match serde_json::from_str(&spec.to_string_lossy()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error: invalid mount spec: {e}");
            return 1;
        }
    };
    match mount_in(&spec) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

fn mount_in(spec: &MountSpec) -> Result<()> {
    use rustix::fs::{Mode, OFlags};
    use rustix::mount::{MoveMountFlags, OpenTreeFlags, UnmountFlags};
    use rustix::thread::LinkNameSpaceType;

    // /proc/PID is opened once and checked to be the container's init (not a later
    // process reusing its pid); everything else is opened relative to it.
    let proc = format!("/proc/{}", spec.pid);
    let dir = rustix::fs::open(
        &proc,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Failure::failed(format!("Failed to open {proc}"), e))?;
    let open = |p: &str, flags: OFlags| {
        rustix::fs::openat(&dir, p, flags | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Failure::failed(format!("Failed to open {proc}/{p}"), e))
    };
    let mut stat = String::new();
    std::io::Read::read_to_string(
        &mut std::fs::File::from(open("stat", OFlags::RDONLY)?),
        &mut stat,
    )
    .map_err(|e| Failure::failed(format!("Failed to read {proc}/stat"), e))?;
    let started: Option<u64> = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19)?.parse().ok());
    if spec.start_time != 0 && started != Some(spec.start_time) {
        return Err(Failure::internal(
            "The instance's init has changed (it stopped or restarted)",
        ));
    }
    let mntns = open("ns/mnt", OFlags::RDONLY)?;
    let userns = if spec.userns {
        Some(open("ns/user", OFlags::RDONLY)?)
    } else {
        None
    };
    // Never the host's own namespaces.
    let same_as_ours = |fd: &OwnedFd, ns: &str| -> bool {
        let (Ok(theirs), Ok(ours)) = (
            rustix::fs::fstat(fd),
            rustix::fs::stat(format!("/proc/self/ns/{ns}")),
        ) else {
            return true;
        };
        theirs.st_ino == ours.st_ino && theirs.st_dev == ours.st_dev
    };
    if same_as_ours(&mntns, "mnt") || userns.as_ref().is_some_and(|u| same_as_ours(u, "user")) {
        return Err(Failure::internal(
            "The process is not in the instance's namespaces",
        ));
    }
    let root = open("root", OFlags::PATH | OFlags::DIRECTORY)?;
    let tree = match &spec.source {
        Some(source) => {
            let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
            if spec.recursive {
                flags |= OpenTreeFlags::AT_RECURSIVE;
            }
            let tree = if spec.no_symlinks {
                let how =
                    rustix::fs::ResolveFlags::NO_SYMLINKS | rustix::fs::ResolveFlags::NO_MAGICLINKS;
                let fd = rustix::fs::openat2(
                    rustix::fs::CWD,
                    source.as_str(),
                    OFlags::PATH | OFlags::CLOEXEC,
                    Mode::empty(),
                    how,
                )
                .map_err(|e| {
                    Failure::failed(
                        format!("Failed to open {source} without following symlinks"),
                        e,
                    )
                })?;
                rustix::mount::open_tree(&fd, "", flags | OpenTreeFlags::AT_EMPTY_PATH)
            } else {
                rustix::mount::open_tree(rustix::fs::CWD, source.as_str(), flags)
            }
            .map_err(|e| Failure::failed(format!("Failed to open {source}"), e))?;
            let propagation = match spec
                .propagation
                .as_deref()
                .map(|p| p.trim_start_matches('r'))
            {
                Some("private") => berth_host::MS_PRIVATE,
                Some("shared") => berth_host::MS_SHARED,
                _ => berth_host::MS_SLAVE,
            };
            let attr = berth_host::MountAttr {
                readonly: spec.readonly,
                idmap: if spec.shift {
                    userns.as_ref().map(std::os::fd::AsFd::as_fd)
                } else {
                    None
                },
                propagation,
                recursive: spec.recursive,
            };
            berth_host::mount_setattr(std::os::fd::AsFd::as_fd(&tree), &attr)
                .map_err(|e| Failure::failed("Failed to set the mount's attributes", e))?;
            Some(tree)
        }
        None => None,
    };
    // Become the container's root, then enter its mounts and its root directory.
    if let Some(ns) = &userns {
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(ns),
            Some(LinkNameSpaceType::User),
        )
        .map_err(|e| Failure::failed("Failed to join the user namespace", e))?;
        let root_id = rustix::process::Gid::ROOT;
        rustix::thread::set_thread_res_gid(root_id, root_id, root_id)
            .and_then(|()| rustix::thread::set_thread_groups(&[]))
            .and_then(|()| {
                let u = rustix::process::Uid::ROOT;
                rustix::thread::set_thread_res_uid(u, u, u)
            })
            .map_err(|e| Failure::failed("Failed to become the container's root", e))?;
    }
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&mntns),
        Some(LinkNameSpaceType::Mount),
    )
    .map_err(|e| Failure::failed("Failed to join the mount namespace", e))?;
    rustix::process::fchdir(&root)
        .and_then(|()| rustix::process::chroot("."))
        .and_then(|()| rustix::process::chdir("/"))
        .map_err(|e| Failure::failed("Failed to enter the container's root", e))?;
    let target = Path::new(&spec.target);
    let Some(tree) = tree else {
        rustix::mount::unmount(target, UnmountFlags::DETACH)
            .map_err(|e| Failure::failed(format!("Failed to unmount {}", spec.target), e))?;
        if spec.remove {
            let _ = std::fs::remove_file(target);
        }
        return Ok(());
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::failed(format!("Failed to create {}", parent.display()), e))?;
    }
    let made = if spec.dir {
        std::fs::create_dir(target)
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target)
            .map(drop)
    };
    if let Err(e) = made
        && e.kind() != std::io::ErrorKind::AlreadyExists
    {
        return Err(Failure::internal(format!(
            "Failed to create {}: {e}",
            spec.target
        )));
    }
    rustix::mount::move_mount(
        &tree,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| Failure::failed(format!("Failed to mount at {}", spec.target), e))
}

/// `berthd forkmigrate dump|restore NAME LXCPATH CONFIG DIR [stop]`: checkpoints the
/// running container into the fresh directory `DIR` (`stop`: and stops it), or restores
/// it from there. berthd sets the environment: `PATH` finding the right criu and
/// `CRIU_CONFIG_FILE` with this call's criu options; descriptors it passed stay open for
/// criu to inherit (the console's terminal on restore).
pub fn migrate(args: &[OsString]) -> i32 {
    let (action, name, lxcpath, config, dir, stop) = match args {
        [a, n, l, c, d] => (a, n, l, c, d, false),
        [a, n, l, c, d, s] if s == "stop" => (a, n, l, c, d, true),
        _ => {
            eprintln!("usage: berthd forkmigrate dump|restore NAME LXCPATH CONFIG DIR [stop]");
            return 1;
        }
    };
    let dir = Path::new(dir);
    let run = || -> Result<(), berth_lxc::LxcError> {
        let c = berth_lxc::Container::new(&name.to_string_lossy(), Path::new(lxcpath))?;
        c.load_config(Path::new(config))?;
        if action == "dump" {
            c.checkpoint(dir, stop)
        } else {
            c.want_daemonize(true)?;
            c.restore(dir)?;
            if let Ok(Some(pid)) = c.init_pid() {
                super::lifecycle::record_init(&Path::new(lxcpath).join(name), pid);
            }
            Ok(())
        }
    };
    exit_code(run())
}
