//! The end-to-end test harness: each test starts its own berthd in its own state directory
//! and drives it through `berth-client`, the `berth` CLI and the real `lxc` client.
//!
//! Binaries come from `$BERTH_BIN_DIR`, else from the cargo target directory the test runs
//! from (`cargo xtask ci` builds them first). A [`Daemon`] is stopped and its directory
//! removed when dropped, so a test leaves nothing behind even when it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_client::Client;

/// Where the berth binaries are.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target profile dir")
        .to_path_buf()
}

/// The path of binary `name`, which must have been built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A network namespace of a test's own, held open by a `sleep` it starts: where the
/// test's berthd lives (so its bridges, rules, dnsmasq and sysctls never reach the host),
/// or "the outside" its containers' traffic goes to. Dropping it ends the namespace and
/// whatever links and rules were in it.
#[derive(Debug)]
pub struct Netns {
    holder: Child,
}

impl Netns {
    /// A new namespace with its loopback up.
    pub fn new() -> Netns {
        let holder = Command::new("unshare")
            .args(["--net", "sleep", "infinity"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run unshare");
        let ns = Netns { holder };
        let own = std::fs::read_link("/proc/self/ns/net").expect("own netns");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(ns.path()).ok().as_ref() == Some(&own) {
            assert!(
                Instant::now() < deadline,
                "unshare --net did not take effect"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        ns.run("ip", &["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's file (`/proc/PID/ns/net`).
    pub fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.id())
    }

    /// `program args` to be run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path()))
            .arg("--")
            .arg(program)
            .args(args);
        cmd
    }

    /// Starts `program args` inside the namespace, its stdout piped, and returns once it
    /// printed its first line (a server's `ready`), with that line; the caller kills it.
    pub fn spawn_ready(&self, program: &str, args: &[&str]) -> (Child, String) {
        use std::io::BufRead;
        let mut child = self
            .command(program, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run nsenter");
        let mut line = String::new();
        let out = child.stdout.as_mut().expect("piped stdout");
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .expect("read the first line");
        (child, line)
    }

    /// Runs `program args` inside the namespace; its stdout, which must have succeeded.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        ok(&self
            .command(program, args)
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter"))
    }
}

impl Netns {
    /// Runs `f` on a thread of its own inside the namespace (its sockets are made there),
    /// with a runtime to drive it: how a test reaches a daemon's HTTPS port.
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>> + Send,
        T: Send,
    {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(move || {
                let ns = std::fs::File::open(&path).expect("open the netns");
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&ns),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .expect("enter the netns");
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(f())
            })
            .join()
            .expect("the netns thread")
        })
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A berthd running for one test, in a network namespace of its own.
#[derive(Debug)]
pub struct Daemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
    args: Vec<String>,
    netns: std::sync::Arc<Netns>,
}

impl Daemon {
    /// Starts berthd with the testing endpoints in a fresh directory.
    pub fn start() -> Daemon {
        Self::start_with(&["--testing", "--verbose"])
    }

    /// Starts berthd with extra arguments in a fresh directory.
    pub fn start_with(args: &[&str]) -> Daemon {
        Self::start_in(std::sync::Arc::new(Netns::new()), args)
    }

    /// Starts a second berthd in `other`'s network namespace: another host on the same
    /// loopback, for what goes between hosts (give each its own HTTPS port).
    pub fn start_beside(other: &Daemon) -> Daemon {
        Self::start_in(other.netns.clone(), &["--testing", "--verbose"])
    }

    fn start_in(netns: std::sync::Arc<Netns>, args: &[&str]) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .expect("temp dir");
        let mut d = Daemon {
            dir,
            child: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            netns,
        };
        d.spawn();
        d
    }

    /// The daemon's state directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("unix.socket")
    }

    pub fn client(&self) -> Client {
        Client::unix(self.socket())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon's network namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The daemon's namespace, shared: another server of the test runs in it too.
    pub fn netns_arc(&self) -> std::sync::Arc<Netns> {
        self.netns.clone()
    }

    /// A `berthd` command for this directory and namespace, not started (nsenter execs
    /// berthd in place, so the child's pid is berthd's).
    pub fn command(&self) -> Command {
        let mut cmd = self.netns.command(bin("berthd"), &[]);
        cmd.arg("--dir").arg(self.dir()).args(&self.args);
        cmd
    }

    /// The dnsmasq processes of this daemon's networks (they outlive berthd by design).
    pub fn dnsmasqs(&self) -> Vec<i32> {
        processes_naming(&self.dir().join("networks"), "dnsmasq")
    }

    fn spawn(&mut self) {
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start berthd");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("berthd exited early with {status}; log: {}", self.log());
            }
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("berthd did not come up; log: {}", self.log());
    }

    /// The daemon's log file.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("logs/berthd.log")).unwrap_or_default()
    }

    fn signal(&mut self, sig: rustix::process::Signal) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, sig);
        }
        child.wait().ok()
    }

    /// Stops the daemon with SIGTERM and returns how it exited.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(rustix::process::Signal::TERM)
            .expect("berthd was running")
    }

    /// Kills the daemon with SIGKILL.
    pub fn kill(&mut self) {
        self.signal(rustix::process::Signal::KILL);
    }

    /// Starts the daemon again on the same directory.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// Starts the daemon again on the same directory, in a network namespace of its own:
    /// not the one its running containers' monitors listen in.
    pub fn restart_elsewhere(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.netns = std::sync::Arc::new(Netns::new());
        self.spawn();
    }

    /// Runs the `berth` CLI against this daemon.
    pub fn berth(&self, args: &[&str]) -> Output {
        Command::new(bin("berth"))
            .args(args)
            .env("BERTH_DIR", self.dir())
            .env("BERTH_CONF", self.dir().join("berth-client"))
            .env_remove("BERTH_SOCKET")
            .env_remove("BERTH_PROJECT")
            .stdin(Stdio::null())
            .output()
            .expect("run berth")
    }

    /// Runs the `berth` CLI against this daemon with `input` on its standard input.
    pub fn berth_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = Command::new(bin("berth"))
            .args(args)
            .env("BERTH_DIR", self.dir())
            .env("BERTH_CONF", self.dir().join("berth-client"))
            .env_remove("BERTH_SOCKET")
            .env_remove("BERTH_PROJECT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run berth");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input).expect("write berth's stdin");
        }
        child.wait_with_output().expect("wait for berth")
    }

    /// Serves the API over HTTPS on 127.0.0.1:8443 of the daemon's namespace; returns the
    /// address.
    pub fn https(&self) -> String {
        self.https_on(8443)
    }

    /// Serves the API over HTTPS on 127.0.0.1:`port`; returns the address.
    pub fn https_on(&self, port: u16) -> String {
        let addr = format!("127.0.0.1:{port}");
        ok(&self.berth(&["config", "set", "core.https_address", &addr]));
        addr
    }

    /// A command running the real `lxc` or `incus` client (`program`) inside the daemon's
    /// namespace, with its configuration in `DIR/<conf>` (a remote's client).
    pub fn remote_client(&self, program: &str, conf: &str, args: &[&str]) -> Command {
        let dir = self.dir().join(conf);
        std::fs::create_dir_all(&dir).expect("client config dir");
        let mut cmd = self.netns.command(program, args);
        cmd.env("LXD_CONF", &dir)
            .env("INCUS_CONF", &dir)
            .env("BERTH_CONF", &dir)
            .env_remove("LXD_DIR")
            .env_remove("INCUS_DIR")
            .env_remove("BERTH_DIR")
            .env_remove("LXD_SOCKET")
            .env_remove("INCUS_SOCKET")
            .env_remove("BERTH_PROJECT")
            .env("BERTH_SOCKET", self.dir().join("no-local-socket"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs [`Daemon::remote_client`].
    pub fn remote(&self, program: &str, conf: &str, args: &[&str]) -> Output {
        self.remote_client(program, conf, args)
            .output()
            .expect("run a remote client")
    }

    /// A command running the real LXD client (`lxc`) against this daemon.
    pub fn lxc_command(&self, args: &[&str]) -> Command {
        let conf = self.dir().join("lxc-client");
        std::fs::create_dir_all(&conf).expect("lxc config dir");
        let mut cmd = Command::new(lxc_binary());
        cmd.args(args)
            .env("LXD_DIR", self.dir())
            .env("LXD_CONF", conf)
            .env_remove("LXD_SOCKET")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the real LXD client against this daemon.
    pub fn lxc(&self, args: &[&str]) -> Output {
        self.lxc_command(args).output().expect("run lxc")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        self.remove_containers();
        for pid in self.dnsmasqs() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        // What a failed test left mounted in the daemon's directory (a btrfs pool's loop
        // file, say; its loop device goes with it), deepest first.
        let dir = self.dir().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| p.starts_with(&format!("{dir}/")))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").args(["-l", p]).output();
        }
    }
}

/// The processes whose command line (its arguments NUL-separated) passes `keep`.
fn pids_whose_cmdline(keep: impl Fn(&[u8]) -> bool) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| keep(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()))
        .collect()
}

/// The processes running `program` whose command line names `path`.
pub fn processes_naming(path: &Path, program: &str) -> Vec<i32> {
    let needle = path.as_os_str().as_encoded_bytes();
    pids_whose_cmdline(|cmd| {
        let first = cmd.split(|b| *b == 0).next().unwrap_or_default();
        first.ends_with(program.as_bytes()) && cmd.windows(needle.len()).any(|w| w == needle)
    })
}

impl Daemon {
    /// The cgroup directory berthd gives this daemon's containers (`berth.<id>`).
    pub fn cgroup_parent(&self) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg("printf '%s' \"$1\" | sha256sum")
            .arg("sh")
            .arg(self.dir())
            .output()
            .expect("sha256sum");
        format!("berth.{}", &String::from_utf8_lossy(&out.stdout)[..8])
    }

    /// Every cgroup directory of this daemon still on the host.
    pub fn leftover_cgroups(&self) -> Vec<PathBuf> {
        let parent = self.cgroup_parent();
        let mut found: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(&parent))
            .filter(|p| p.exists())
            .collect();
        let v2 = Path::new("/sys/fs/cgroup").join(&parent);
        if v2.exists() && !found.contains(&v2) {
            found.push(v2);
        }
        found
    }

    /// Kills whatever containers the test left running (every process in this daemon's
    /// cgroups: inits and their liblxc monitors), removes their cgroups, and stops the
    /// daemon's console keepers, syscall proxy and own lxcfs, so a failed test leaves
    /// nothing behind either.
    fn remove_containers(&self) {
        fn procs(dir: &Path, out: &mut Vec<i32>) {
            let own = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            out.extend(own.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            for child in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if child.path().is_dir() {
                    procs(&child.path(), out);
                }
            }
        }
        fn remove_tree(dir: &Path) {
            for child in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if child.path().is_dir() {
                    remove_tree(&child.path());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        let dirs = self.leftover_cgroups();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut pids = Vec::new();
            for d in &dirs {
                procs(d, &mut pids);
            }
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for d in &dirs {
            remove_tree(d);
        }
        self.stop_console_keepers();
        for pid in self.syscall_proxies() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        self.stop_lxcfs();
    }

    /// The console keepers of this daemon's containers (they outlive berthd by design).
    pub fn console_keepers(&self) -> Vec<i32> {
        let dir = self.dir().join("containers");
        let needle = dir.as_os_str().as_encoded_bytes();
        pids_whose_cmdline(|cmd| {
            cmd.split(|b| *b == 0).nth(1) == Some(b"forkconsolekeeper".as_slice())
                && cmd.windows(needle.len()).any(|w| w == needle)
        })
    }

    /// This daemon's syscall proxies (one at most; it outlives berthd by design).
    pub fn syscall_proxies(&self) -> Vec<i32> {
        let needle = self.dir().as_os_str().as_encoded_bytes().to_vec();
        pids_whose_cmdline(|cmd| {
            cmd.split(|b| *b == 0).nth(1) == Some(b"forksyscalls".as_slice())
                && cmd.windows(needle.len()).any(|w| w == needle.as_slice())
        })
    }

    fn stop_console_keepers(&self) {
        for pid in self.console_keepers() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }

    /// Stops the lxcfs this daemon started for its containers (it unmounts itself).
    fn stop_lxcfs(&self) {
        let mount = self.dir().join("lxcfs");
        let pid = std::fs::read_to_string(self.dir().join("lxcfs.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{}", pid.as_raw_nonzero())).exists()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if lxcfs_mounted(&mount) {
            let _ = Command::new("umount").arg("-l").arg(&mount).status();
        }
    }
}

/// Whether an lxcfs is mounted at `path`.
pub fn lxcfs_mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            l.split(' ').nth(4) == Some(path.to_string_lossy().as_ref())
                && l.contains(" fuse.lxcfs ")
        })
}

/// The real LXD client: Debian's `lxd-client` package, which `.ci/run` installs.
pub fn lxc_binary() -> PathBuf {
    let path = PathBuf::from("/usr/bin/lxc");
    assert!(
        path.exists(),
        "/usr/bin/lxc is missing: install Debian's lxd-client (bash scripts/deps.sh)"
    );
    path
}

/// stdout of a command that must have succeeded.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed with {}: stdout: {} stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr of a command that must have failed with exit code 1.
pub fn fails(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit code 1; stdout: {} stderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Creates an operation through the testing endpoint and returns the raw async reply.
pub async fn test_operation(client: &Client, body: serde_json::Value) -> berth_client::RawResponse {
    client
        .query(
            berth_client::Method::POST,
            "/internal/testing/operations",
            Some(&body),
        )
        .await
        .expect("create test operation")
}

/// Posts `body` to `path`, whose reply is an operation, and waits for it to succeed.
pub async fn post_and_wait(client: &Client, path: &str, body: &serde_json::Value) {
    let r = client
        .query(berth_client::Method::POST, path, Some(body))
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    client
        .wait_success(&operation_id(&r))
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
}

/// The operation id in an async reply.
pub fn operation_id(r: &berth_client::RawResponse) -> String {
    r.body.operation_id().expect("operation url").to_owned()
}

/// The busybox test image, built once per build of `berth` and shared by every test: it
/// lives beside the binaries in the target directory and is rebuilt when `berth` is newer.
pub fn busybox_image() -> PathBuf {
    let out = bin_dir().join("e2e-busybox.tar.gz");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if mtime(&out).is_some() && mtime(&out) >= mtime(&bin("berth")) {
        return out;
    }
    build_image("busybox", &out);
    out
}

/// `berth image build KIND` into `out`: under a unique name, then renamed, so tests
/// running in parallel never see half a file.
fn build_image(kind: &str, out: &Path) {
    let tmp = bin_dir().join(format!(".e2e-{kind}-{}.tar.gz", std::process::id()));
    let status = Command::new(bin("berth"))
        .args(["image", "build", kind, "-o"])
        .arg(&tmp)
        .stdout(Stdio::null())
        .status()
        .expect("run berth image build");
    assert!(status.success(), "berth image build {kind} failed");
    std::fs::rename(&tmp, out).expect("install the test image");
}

/// The Debian test image (`berth image build debian`, bookworm), built once and kept beside
/// the binaries: its content does not follow berth's code, so it is rebuilt only when
/// missing. Building it fetches packages from the mirror the host's debootstrap uses, as
/// installing the system packages does; tests running at the same time wait for one build.
pub fn debian_image() -> PathBuf {
    let out = bin_dir().join("e2e-debian.tar.gz");
    let lock = std::fs::File::create(bin_dir().join(".e2e-debian.lock")).expect("lock file");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("flock");
    if !out.exists() {
        build_image("debian", &out);
    }
    out
}

/// Waits until systemd in `name` has booted, and returns its verdict.
pub async fn system_state(d: &Daemon, name: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let out = d.berth(&[
            "exec",
            name,
            "--",
            "timeout",
            "60",
            "systemctl",
            "is-system-running",
            "--wait",
        ]);
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // Before systemd's bus is up, systemctl fails without a state.
        if !state.is_empty() && state != "starting" && state != "initializing" {
            return state;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} did not boot: {out:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Imports the shared busybox test image into daemon `d` as alias `bb`.
pub async fn with_busybox(d: &Daemon) {
    import_as(d, &busybox_image(), "bb").await;
}

/// Imports the shared Debian test image into daemon `d` as alias `deb`.
pub async fn with_debian(d: &Daemon) {
    import_as(d, &debian_image(), "deb").await;
}

async fn import_as(d: &Daemon, image: &Path, alias: &str) {
    let opts = berth_client::ImportOptions {
        aliases: vec![alias.into()],
        ..Default::default()
    };
    d.client()
        .import_image(image, None, &opts)
        .await
        .unwrap_or_else(|e| panic!("import {}: {e}", image.display()));
}

/// The fingerprint alias `alias` of daemon `d` names.
pub async fn alias_target(d: &Daemon, alias: &str) -> String {
    let a: serde_json::Value = d
        .client()
        .get(&format!("/1.0/images/aliases/{alias}"))
        .await
        .unwrap_or_else(|e| panic!("alias {alias}: {e}"));
    a["target"].as_str().unwrap_or_default().to_owned()
}

/// The fingerprints of daemon `d`'s images.
pub async fn image_fingerprints(d: &Daemon) -> Vec<String> {
    let list: Vec<serde_json::Value> = d
        .client()
        .get("/1.0/images?recursion=1")
        .await
        .expect("list images");
    list.iter()
        .filter_map(|i| i["fingerprint"].as_str().map(str::to_owned))
        .collect()
}

/// The SHA-256 of a file, as hex.
pub fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Files left in the daemon's image store (ignoring nothing: temporary uploads count).
pub fn image_store_files(d: &Daemon) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d.dir().join("images"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Waits for the busybox image's boot output ("BusyBox") on `name`'s console log.
pub async fn wait_for_boot(c: &Client, name: &str) {
    for _ in 0..200 {
        let log = c
            .get_file(&format!("/1.0/instances/{name}/console"))
            .await
            .expect("the console log");
        if String::from_utf8_lossy(&log).contains("BusyBox") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no boot output on {name}'s console");
}

/// Attaches to `name`'s console as the clients do (control, then the terminal), types
/// `input` and returns what came back once it holds `expect`; then detaches.
pub async fn console(c: &Client, name: &str, input: &str, expect: &str) -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let r = c
        .query(
            berth_client::Method::POST,
            &format!("/1.0/instances/{name}/console"),
            Some(&serde_json::json!({"width": 100, "height": 30, "type": "console"})),
        )
        .await
        .expect("POST console");
    let id = r.body.operation_id().expect("an operation").to_owned();
    let fds = r.body.metadata["metadata"]["fds"].clone();
    let mut control = c
        .operation_websocket(&id, fds["control"].as_str().expect("control secret"))
        .await
        .expect("control websocket");
    let data = c
        .operation_websocket(&id, fds["0"].as_str().expect("terminal secret"))
        .await
        .expect("terminal websocket");
    let (mut tx, mut rx) = data.split();
    tx.send(Message::Binary(format!("{input}\r").into_bytes().into()))
        .await
        .expect("send input");
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains(expect) {
        let msg = tokio::time::timeout_at(deadline, rx.next())
            .await
            .unwrap_or_else(|_| panic!("{expect:?} on the console in time; got {seen:?}"));
        if let Some(Ok(Message::Binary(b))) = msg {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
    }
    control.close(None).await.expect("detach");
    let op = c
        .wait_operation(&id, Some(std::time::Duration::from_secs(10)))
        .await
        .expect("the console operation ends");
    assert_eq!(op.status, "Success");
    seen
}
