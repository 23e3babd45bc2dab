//! The helper subcommands berthd re-executes itself as, for the liblxc calls that fork.
//!
//! They run in a fresh, single-threaded process (dispatched in `main` before any runtime
//! thread exists), so liblxc's fork is safe. Each prints one line on stderr on failure and
//! exits 1.

use std::ffi::OsString;
use std::path::Path;

/// `berthd forkstart NAME LXCPATH CONFIG`: starts a container, daemonized; returns once
/// it runs.
pub fn start(args: &[OsString]) -> i32 {
    let [name, lxcpath, config] = args else {
        eprintln!("usage: berthd forkstart NAME LXCPATH CONFIG");
        return 1;
    };
    let run = || -> Result<(), berth_lxc::LxcError> {
        let c = berth_lxc::Container::new(&name.to_string_lossy(), Path::new(lxcpath))?;
        c.load_config(Path::new(config))?;
        c.want_daemonize(true)?;
        c.want_close_all_fds(true)?;
        c.start()?;
        // Record the init pid so state queries need no round trip to the monitor.
        if let Ok(Some(pid)) = c.init_pid() {
            crate::instances::record_init(&Path::new(lxcpath).join(name), pid);
        }
        Ok(())
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
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
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
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
    if spec.pty {
        let _ = rustix::process::setsid();
        let _ = rustix::process::ioctl_tiocsctty(rustix::stdio::stdin());
    }
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
