//! A safe wrapper over liblxc 5.0.
//!
//! [`Container`] owns one reference to a `struct lxc_container` and releases it when
//! dropped. liblxc forks inside `start`, `attach` and `attach_run_wait`: those methods must
//! only be called from a single-threaded process (berthd's `fork*` helper subcommands), which
//! is why they are marked in their docs. The other calls talk to the container's monitor over
//! its command socket and are safe from any thread, one call at a time per handle.

#![allow(unsafe_code)] // This crate is the safe boundary over lxc-sys.

use std::ffi::{CStr, CString, c_char, c_int};
use std::path::Path;
use std::ptr::NonNull;

use lxc_sys as sys;

/// A liblxc call failed.
#[derive(Debug, thiserror::Error)]
pub enum LxcError {
    #[error("Invalid argument {0:?} (contains NUL)")]
    Nul(String),
    #[error("Failed to create liblxc handle for {0}")]
    New(String),
    #[error("liblxc call {0} failed")]
    Call(&'static str),
    #[error("liblxc lacks {0}")]
    Missing(&'static str),
}

fn cstr(s: &str) -> Result<CString, LxcError> {
    CString::new(s).map_err(|_| LxcError::Nul(s.to_owned()))
}

fn cpath(p: &Path) -> Result<CString, LxcError> {
    cstr(&p.to_string_lossy())
}

/// The liblxc version, e.g. `5.0.2`.
pub fn version() -> String {
    // SAFETY: lxc_get_version returns a pointer to a static NUL-terminated string.
    let v = unsafe { sys::lxc_get_version() };
    if v.is_null() {
        return String::new();
    }
    // SAFETY: non-null, static, NUL-terminated (checked above).
    unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned()
}

/// One liblxc container handle.
#[derive(Debug)]
pub struct Container {
    raw: NonNull<sys::lxc_container>,
}

// SAFETY: a handle may move between threads; liblxc serialises calls on one container
// through its own locks, and berthd uses one handle from one thread at a time.
unsafe impl Send for Container {}

impl Drop for Container {
    fn drop(&mut self) {
        // SAFETY: `raw` came from lxc_container_new and this is our one reference.
        unsafe {
            sys::lxc_container_put(self.raw.as_ptr());
        }
    }
}

unsafe extern "C" {
    #[link_name = "free"]
    fn libc_free(p: *mut std::ffi::c_void);
}

/// Calls a function of the container's table, which liblxc always fills.
macro_rules! call {
    ($self:ident, $name:ident $(, $arg:expr)*) => {{
        let c = $self.raw.as_ptr();
        // SAFETY: `c` is a live handle (we hold a reference) and its function table is set
        // by lxc_container_new and never changes.
        let f = unsafe { (*c).$name };
        match f {
            // SAFETY: `f` belongs to `c`; the arguments are valid for the call's duration.
            Some(f) => Ok(unsafe { f(c $(, $arg)*) }),
            None => Err(LxcError::Missing(stringify!($name))),
        }
    }};
}

// liblxc's `migrate` commands (an unnamed enum in lxccontainer.h, so not in the bindings).
const MIGRATE_DUMP: u32 = 1;
const MIGRATE_RESTORE: u32 = 2;

/// How to run a command in a container.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// Environment as `KEY=VALUE`; the container process gets only these.
    pub env: Vec<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub cwd: Option<String>,
    pub stdin: c_int,
    pub stdout: c_int,
    pub stderr: c_int,
    /// stdin is a terminal: it becomes the controlling terminal of the command's session.
    pub tty: bool,
}

impl Container {
    /// A handle for container `name` under `lxcpath` (nothing is read yet).
    pub fn new(name: &str, lxcpath: &Path) -> Result<Container, LxcError> {
        let n = cstr(name)?;
        let p = cpath(lxcpath)?;
        // SAFETY: both strings are valid NUL-terminated strings for the call's duration.
        let raw = unsafe { sys::lxc_container_new(n.as_ptr(), p.as_ptr()) };
        NonNull::new(raw)
            .map(|raw| Container { raw })
            .ok_or_else(|| LxcError::New(name.to_owned()))
    }

    /// Loads the configuration file at `path`.
    pub fn load_config(&self, path: &Path) -> Result<(), LxcError> {
        let p = cpath(path)?;
        if call!(self, load_config, p.as_ptr())? {
            Ok(())
        } else {
            Err(LxcError::Call("load_config"))
        }
    }

    /// Removes every value of `key` (or, for a prefix such as `lxc.prlimit`, of every key
    /// below it) from the loaded configuration.
    pub fn clear_config_item(&self, key: &str) -> Result<(), LxcError> {
        let k = cstr(key)?;
        if call!(self, clear_config_item, k.as_ptr())? {
            Ok(())
        } else {
            Err(LxcError::Call("clear_config_item"))
        }
    }

    /// `STOPPED`, `STARTING`, `RUNNING`, `STOPPING`, `ABORTING`, `FREEZING`, `FROZEN`, `THAWED`.
    pub fn state(&self) -> Result<String, LxcError> {
        let s: *const c_char = call!(self, state)?;
        if s.is_null() {
            return Ok("STOPPED".to_owned());
        }
        // SAFETY: liblxc returns a pointer to a static state name.
        Ok(unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
    }

    pub fn is_running(&self) -> Result<bool, LxcError> {
        call!(self, is_running)
    }

    /// The host pid of the container's init, when it runs.
    pub fn init_pid(&self) -> Result<Option<i32>, LxcError> {
        let pid = call!(self, init_pid)?;
        Ok((pid > 0).then_some(pid))
    }

    /// Whether `start` daemonizes (returns once the container runs) or waits for it to end.
    pub fn want_daemonize(&self, yes: bool) -> Result<(), LxcError> {
        call!(self, want_daemonize, yes).map(drop)
    }

    /// Whether liblxc closes every inherited file descriptor before starting.
    pub fn want_close_all_fds(&self, yes: bool) -> Result<(), LxcError> {
        call!(self, want_close_all_fds, yes).map(drop)
    }

    /// Starts the container's init. **Forks**: call only from a single-threaded process.
    pub fn start(&self) -> Result<(), LxcError> {
        if call!(self, start, 0, std::ptr::null())? {
            Ok(())
        } else {
            Err(LxcError::Call("start"))
        }
    }

    /// Kills the container (SIGKILL to init).
    pub fn stop(&self) -> Result<(), LxcError> {
        if call!(self, stop)? {
            Ok(())
        } else {
            Err(LxcError::Call("stop"))
        }
    }

    /// Asks init to shut down and waits up to `timeout` seconds (-1: forever).
    pub fn shutdown(&self, timeout: i32) -> Result<(), LxcError> {
        if call!(self, shutdown, timeout)? {
            Ok(())
        } else {
            Err(LxcError::Call("shutdown"))
        }
    }

    pub fn freeze(&self) -> Result<(), LxcError> {
        if call!(self, freeze)? {
            Ok(())
        } else {
            Err(LxcError::Call("freeze"))
        }
    }

    pub fn unfreeze(&self) -> Result<(), LxcError> {
        if call!(self, unfreeze)? {
            Ok(())
        } else {
            Err(LxcError::Call("unfreeze"))
        }
    }

    /// Sets cgroup item `key` (e.g. `devices.allow`) of the running container through its
    /// monitor, which also keeps cgroup v2's device program in step.
    pub fn set_cgroup_item(&self, key: &str, value: &str) -> Result<(), LxcError> {
        let k = cstr(key)?;
        let v = cstr(value)?;
        if call!(self, set_cgroup_item, k.as_ptr(), v.as_ptr())? {
            Ok(())
        } else {
            Err(LxcError::Call("set_cgroup_item"))
        }
    }

    /// Waits up to `timeout` seconds for the container to reach `state`.
    pub fn wait(&self, state: &str, timeout: i32) -> Result<bool, LxcError> {
        let s = cstr(state)?;
        call!(self, wait, s.as_ptr(), timeout)
    }

    /// A descriptor of the running container's devpts mount, to open terminals that are the
    /// container's own (so `tty` inside names them). Talks to the monitor; does not fork.
    pub fn devpts_fd(&self) -> Result<std::os::fd::OwnedFd, LxcError> {
        let fd = call!(self, devpts_fd)?;
        if fd < 0 {
            return Err(LxcError::Call("devpts_fd"));
        }
        // SAFETY: liblxc hands us a new descriptor that nothing else owns.
        Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
    }

    /// Attaches `stdin`/`stdout` to the container's console until either side hangs up
    /// (`escape` < 0: no escape key). Runs liblxc's console loop: call only from a process
    /// of its own (it handles signals and terminal modes of `stdin`).
    pub fn console(&self, stdin: c_int, stdout: c_int, escape: c_int) -> Result<(), LxcError> {
        let r = call!(self, console, 0, stdin, stdout, stdout, escape)?;
        if r < 0 {
            return Err(LxcError::Call("console"));
        }
        Ok(())
    }

    /// Checkpoints the running container into `dir` with CRIU (a fresh directory: liblxc
    /// refuses one holding an earlier dump); `stop` kills it once dumped, else it goes on
    /// running. **Forks** (criu): call only from a single-threaded process.
    pub fn checkpoint(&self, dir: &Path, stop: bool) -> Result<(), LxcError> {
        self.migrate(MIGRATE_DUMP, dir, stop, "checkpoint")
    }

    /// Restores the container from the CRIU images in `dir`; returns once it runs.
    /// **Forks**: call only from a single-threaded process.
    pub fn restore(&self, dir: &Path) -> Result<(), LxcError> {
        self.migrate(MIGRATE_RESTORE, dir, false, "restore")
    }

    fn migrate(
        &self,
        cmd: u32,
        dir: &Path,
        stop: bool,
        what: &'static str,
    ) -> Result<(), LxcError> {
        let d = cpath(dir)?;
        let mut opts = sys::migrate_opts {
            // liblxc only reads it.
            directory: d.as_ptr().cast_mut(),
            verbose: false,
            stop,
            predump_dir: std::ptr::null_mut(),
            pageserver_address: std::ptr::null_mut(),
            pageserver_port: std::ptr::null_mut(),
            preserves_inodes: false,
            action_script: std::ptr::null_mut(),
            disable_skip_in_flight: false,
            ghost_limit: 0,
            features_to_check: 0,
        };
        let size = u32::try_from(std::mem::size_of::<sys::migrate_opts>()).unwrap_or(u32::MAX);
        let r = call!(self, migrate, cmd, &mut opts, size)?;
        if r != 0 {
            return Err(LxcError::Call(what));
        }
        Ok(())
    }

    /// The running container's console ring buffer; `clear` empties it (after reading).
    /// Talks to the monitor; does not fork.
    pub fn console_log(&self, clear: bool) -> Result<Vec<u8>, LxcError> {
        let mut max: u64 = 1 << 20;
        let mut log = sys::lxc_console_log {
            clear,
            read: true,
            read_max: &mut max,
            data: std::ptr::null_mut(),
        };
        let r = call!(self, console_log, &mut log)?;
        if r < 0 {
            return Err(LxcError::Call("console_log"));
        }
        if log.data.is_null() {
            return Ok(Vec::new());
        }
        let len = usize::try_from(max).unwrap_or(0);
        // SAFETY: liblxc returned a malloc'd buffer of `max` bytes that we now own.
        let data = unsafe { std::slice::from_raw_parts(log.data.cast::<u8>(), len) }.to_vec();
        // SAFETY: allocated by liblxc with malloc; freed once, here.
        unsafe { libc_free(log.data.cast()) };
        Ok(data)
    }

    /// Runs `argv` in the container and waits for it; returns its wait status.
    /// **Forks**: call only from a single-threaded process.
    pub fn attach_run_wait(&self, opts: &AttachOptions, argv: &[String]) -> Result<i32, LxcError> {
        let mut call_args = AttachCall::new(opts, argv)?;
        let status = call!(
            self,
            attach_run_wait,
            &mut call_args.raw,
            call_args.program.as_ptr(),
            call_args.arg_ptrs.as_ptr()
        )?;
        if status < 0 {
            Err(LxcError::Call("attach_run_wait"))
        } else {
            Ok(status)
        }
    }

    /// Starts `argv` in the container and returns its host pid without waiting: the caller
    /// reaps it. The command leads a session of its own inside the container (with
    /// `opts.tty`, stdin its controlling terminal): what it leaves running in the
    /// background belongs to a session CRIU can checkpoint, whose leader's pid exists in
    /// the container's pid namespace even after the command ended. **Forks**: call only
    /// from a single-threaded process.
    pub fn attach(&self, opts: &AttachOptions, argv: &[String]) -> Result<i32, LxcError> {
        let mut call_args = AttachCall::new(opts, argv)?;
        let mut command = SessionCommand {
            program: call_args.program.as_ptr(),
            argv: call_args.arg_ptrs.as_ptr(),
            tty: opts.tty,
        };
        let mut pid: sys::pid_t = 0;
        let payload: *mut SessionCommand = &mut command;
        let ret = call!(
            self,
            attach,
            Some(run_in_session),
            payload.cast(),
            &mut call_args.raw,
            &mut pid
        )?;
        if ret < 0 || pid <= 0 {
            Err(LxcError::Call("attach"))
        } else {
            Ok(pid)
        }
    }
}

/// What [`run_in_session`] runs.
struct SessionCommand {
    program: *const c_char,
    argv: *const *const c_char,
    tty: bool,
}

/// The attached child's own steps, in the container: a new session, its terminal, then
/// the command (exit status 127 when it is not found, 126 when it cannot run, as shells
/// say).
unsafe extern "C" fn run_in_session(payload: *mut std::ffi::c_void) -> c_int {
    // SAFETY: `payload` is the SessionCommand `attach` passed; this child is a fork of
    // that call, whose memory it has a copy of.
    let cmd = unsafe { &*payload.cast::<SessionCommand>() };
    // SAFETY: plain system calls on this process; `program` and `argv` are NUL-terminated
    // strings and a NULL-terminated array kept alive by the caller's AttachCall.
    unsafe {
        libc::setsid();
        if cmd.tty {
            libc::ioctl(0, libc::TIOCSCTTY, 0);
        }
        libc::execvp(cmd.program, cmd.argv);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENOENT) => 127,
        _ => 126,
    }
}

/// The C strings and options of one attach call, kept alive for its duration.
struct AttachCall {
    program: CString,
    _args: Vec<CString>,
    arg_ptrs: Vec<*const c_char>,
    _env: Vec<CString>,
    _env_ptrs: Vec<*mut c_char>,
    _cwd: Option<CString>,
    raw: sys::lxc_attach_options_t,
}

impl AttachCall {
    fn new(opts: &AttachOptions, argv: &[String]) -> Result<AttachCall, LxcError> {
        let program = cstr(argv.first().map(String::as_str).unwrap_or(""))?;
        let args: Vec<CString> = argv.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?;
        let mut arg_ptrs: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
        arg_ptrs.push(std::ptr::null());
        let env: Vec<CString> = opts.env.iter().map(|e| cstr(e)).collect::<Result<_, _>>()?;
        let mut env_ptrs: Vec<*mut c_char> = env.iter().map(|e| e.as_ptr().cast_mut()).collect();
        env_ptrs.push(std::ptr::null_mut());
        let cwd = opts.cwd.as_deref().map(cstr).transpose()?;
        let mut raw = default_attach_options();
        raw.env_policy = sys::lxc_attach_env_policy_t_LXC_ATTACH_CLEAR_ENV;
        raw.extra_env_vars = env_ptrs.as_mut_ptr();
        raw.uid = opts.uid.unwrap_or(u32::MAX);
        raw.gid = opts.gid.unwrap_or(u32::MAX);
        raw.initial_cwd = cwd
            .as_ref()
            .map_or(std::ptr::null_mut(), |c| c.as_ptr().cast_mut());
        raw.stdin_fd = opts.stdin;
        raw.stdout_fd = opts.stdout;
        raw.stderr_fd = opts.stderr;
        // The pointers above point into heap buffers that move with the struct unchanged.
        Ok(AttachCall {
            program,
            _args: args,
            arg_ptrs,
            _env: env,
            _env_ptrs: env_ptrs,
            _cwd: cwd,
            raw,
        })
    }
}

/// liblxc's `LXC_ATTACH_OPTIONS_DEFAULT`.
fn default_attach_options() -> sys::lxc_attach_options_t {
    // SAFETY: an all-zero lxc_attach_options_t is a valid value (integers and null pointers);
    // the fields that must not be zero are set below.
    let mut o: sys::lxc_attach_options_t = unsafe { std::mem::zeroed() };
    o.attach_flags = sys::LXC_ATTACH_DEFAULT as c_int;
    o.namespaces = -1;
    o.personality = -1;
    o.uid = u32::MAX;
    o.gid = u32::MAX;
    o.env_policy = sys::lxc_attach_env_policy_t_LXC_ATTACH_KEEP_ENV;
    o.stdin_fd = 0;
    o.stdout_fd = 1;
    o.stderr_fd = 2;
    o.log_fd = -libc::EBADF;
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_5_0() {
        assert!(version().starts_with("5.0."), "{}", version());
    }

    #[test]
    fn unknown_container_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let c = Container::new("nothing-here", dir.path()).unwrap();
        assert_eq!(c.state().unwrap(), "STOPPED");
        assert!(!c.is_running().unwrap());
        assert_eq!(c.init_pid().unwrap(), None);
        assert!(Container::new("bad\0name", dir.path()).is_err());
    }
}
