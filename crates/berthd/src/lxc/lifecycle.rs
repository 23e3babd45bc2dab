//! [`Liblxc`]: the instance driver on liblxc 5.0.
//!
//! Every container has a directory `DIR/containers/NAME` holding its LXC configuration,
//! seccomp policy and logs. Starting re-executes berthd as `forkstart` (liblxc forks);
//! stopping and state queries talk to the container's monitor in-process on a blocking
//! thread. forkstart records the init pid and its start time in `init.pid`, so the state
//! of a running container costs a few file reads, and nothing of a container's runtime
//! lives in berthd's memory: a restarted berthd sees running containers as they are.

use std::path::{Path, PathBuf};

use berth_api::StatusCode;
use berth_api::instance::{InstanceState, InstanceStateCpu, InstanceStateMemory};

use super::root::MappedRoot;
use super::{BoxFuture, InstanceDriver, MountSpec, Observe, StartSpec, checkpoint, console};
use crate::error::{Failure, Result};
use crate::host::cgroup::Cgroups;

/// The liblxc driver.
#[derive(Debug)]
pub struct Liblxc {
    /// The containers directory (liblxc's lxcpath).
    pub(super) lxcpath: PathBuf,
    /// Where berthd's own lxcfs is mounted when the host runs none, and its log.
    lxcfs_own: PathBuf,
    lxcfs_log: PathBuf,
    pub(super) cgroups: Cgroups,
    /// The cgroup directory of this daemon's containers (`berth.<id>`).
    pub(super) cgroup_parent: String,
    /// The host's memory: a container's total when it has no limit.
    host_memory: i64,
    /// Serialises finding or starting lxcfs.
    lxcfs: std::sync::Mutex<()>,
    /// The syscall proxy's socket and log.
    syscalls: (PathBuf, PathBuf),
    /// Running containers' inits, held by pidfds.
    inits: super::inits::Inits,
    /// Running containers' interfaces, kept between reads.
    nets: crate::host::netwatch::Watch,
}

impl Liblxc {
    pub fn new(paths: &crate::paths::Paths, cgroups: Cgroups, host_memory: u64) -> Self {
        Liblxc {
            lxcpath: paths.containers(),
            lxcfs_own: paths.lxcfs(),
            lxcfs_log: paths.logs().join("lxcfs.log"),
            cgroups,
            cgroup_parent: super::cgroup_parent(paths.dir()),
            host_memory: i64::try_from(host_memory).unwrap_or(i64::MAX),
            lxcfs: std::sync::Mutex::new(()),
            syscalls: (
                paths.dir().join(super::syscalls::SOCKET),
                paths.logs().join("syscalls.log"),
            ),
            inits: super::inits::Inits::default(),
            nets: crate::host::netwatch::Watch::new(),
        }
    }

    /// [`lxc_status`] with the init's start time; a running init is held and then
    /// checked with one poll.
    fn status_and_start(&self, name: &str) -> (StatusCode, Option<i32>, Option<u64>) {
        if let Some((pid, ticks)) = self.inits.running(name) {
            return (StatusCode::Running, Some(pid), Some(ticks));
        }
        let found = status_and_start(&self.lxcpath, name);
        if let (StatusCode::Running, Some(pid), Some(ticks)) = found {
            let freezer = self.cgroups.freezer_file(&self.cgroup(name));
            self.inits.hold(name, pid, ticks, freezer);
        }
        found
    }

    /// [`Liblxc::status_and_start`], frozen included: a held init's freezer file is
    /// read again, another's found by its path.
    fn state_and_start(&self, name: &str) -> (StatusCode, Option<i32>, Option<u64>) {
        let cgroups = &self.cgroups;
        let (status, pid, ticks, frozen) =
            match self.inits.running_with(name, |f| cgroups.frozen_by(f)) {
                Some((pid, ticks, frozen)) => (StatusCode::Running, Some(pid), Some(ticks), frozen),
                None => {
                    let (status, pid, ticks) = self.status_and_start(name);
                    (status, pid, ticks, None)
                }
            };
        if status == StatusCode::Running
            && frozen.unwrap_or_else(|| cgroups.is_frozen(&self.cgroup(name)))
        {
            return (StatusCode::Frozen, pid, ticks);
        }
        (status, pid, ticks)
    }

    /// A container's cgroup, below this daemon's parent.
    pub(super) fn cgroup(&self, name: &str) -> String {
        format!("{}/{name}", self.cgroup_parent)
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.lxcpath.join(name)
    }

    /// Starts the syscall proxy again if containers may use it (one was started: its
    /// socket is there) and none answers: one that died while no berthd ran left their
    /// `statfs` calls failing.
    pub fn resume_syscall_proxy(&self) {
        let (socket, log) = &self.syscalls;
        if socket.exists()
            && let Err(e) = super::syscalls::ensure(socket, log)
        {
            tracing::warn!(error = %e, "Containers' statfs calls fail until it runs");
        }
    }

    /// The mount entries of lxcfs, starting it when the host runs none.
    fn lxcfs_mounts(&self) -> Vec<String> {
        let guard = self.lxcfs.lock().unwrap_or_else(|p| p.into_inner());
        let found = crate::host::lxcfs::ensure(&self.lxcfs_own, &self.lxcfs_log);
        drop(guard);
        found
            .map(|p| crate::host::lxcfs::mount_entries(&p))
            .unwrap_or_default()
    }

    /// Writes everything a start or a restore needs: the container's directory, LXC
    /// configuration, seccomp policy, the console keeper of a checkpointable container.
    /// Returns the configuration's path. `mapped`: an unprivileged container's root and
    /// user namespace (see [`super::root`]). `restore`: for a restore from a saved state
    /// (which makes its own namespaces); otherwise a saved state is discarded (a fresh
    /// boot makes it stale).
    pub(super) async fn prepare(
        &self,
        spec: &StartSpec,
        mapped: Option<&MappedRoot>,
        restore: bool,
    ) -> Result<PathBuf> {
        let dir = self.dir(&spec.name);
        if !restore {
            checkpoint::discard(&self.lxcpath, &spec.name)?;
        }
        crate::paths::create_private_dir(&dir)
            .map_err(|e| Failure::failed(format!("Failed to create {}", dir.display()), e))?;
        masked_dir(&self.lxcpath)?;
        let mut extra = spec.limits.clone();
        for entry in tokio::task::block_in_place(|| self.lxcfs_mounts()) {
            extra.push(("lxc.mount.entry".to_owned(), entry));
        }
        extra.extend(spec.devices.iter().cloned());
        if spec.quota_view {
            let (socket, log) = &self.syscalls;
            tokio::task::block_in_place(|| super::syscalls::ensure(socket, log))?;
            extra.push((
                "lxc.seccomp.notify.proxy".to_owned(),
                format!("unix:{}", socket.display()),
            ));
        }
        let links = dir.join(HOST_LINKS);
        std::fs::write(&links, spec.host_links.join("\n"))
            .map_err(|e| Failure::failed("Failed to write the nics' host links", e))?;
        if !spec.host_links.is_empty() {
            // liblxc runs it in the host's namespaces once the container has stopped,
            // whoever stopped it.
            let exe = std::env::current_exe()
                .map_err(|e| Failure::failed("Failed to find berthd's own binary", e))?;
            extra.push((
                "lxc.hook.post-stop".to_owned(),
                format!("{} forkdellinks {}", exe.display(), links.display()),
            ));
        }
        // A checkpointable container's console comes from its keeper; any other's is
        // liblxc's (a keeper left from before the key changed goes).
        let console = if spec.checkpointable {
            let (uid, gid) = spec.idmap.map_or((0, 0), |m| (m.uid_base, m.gid_base));
            Some(console::ensure(&dir, uid, gid).await?)
        } else {
            let d = dir.clone();
            let _ = tokio::task::spawn_blocking(move || console::quit(&d)).await;
            None
        };
        if let (Some(m), Some(map), false) = (mapped, spec.idmap, restore) {
            extra.push(("lxc.namespace.share.user".to_owned(), m.userns_path()));
            // liblxc cannot set init's limits in a namespace root does not own: a hook
            // does (forkstart's --prlimit-hook).
            let limits: Vec<_> = extra
                .iter()
                .filter(|(k, _)| k.starts_with("lxc.prlimit."))
                .cloned()
                .collect();
            if !limits.is_empty() {
                let exe = std::env::current_exe()
                    .map_err(|e| Failure::failed("Failed to find berthd's own binary", e))?;
                let hook = super::fork::prlimit_hook(&exe, map.uid_base, map.gid_base, &limits);
                extra.push(("lxc.hook.start-host".to_owned(), hook));
            }
        }
        // Last, so an administrator's raw keys win over berthd's defaults.
        extra.extend(spec.raw.iter().cloned());
        let config = super::config::render(&super::config::Spec {
            extra: &extra,
            name: &spec.name,
            hostname: &spec.hostname,
            rootfs: mapped.map_or(spec.rootfs.as_path(), MappedRoot::path),
            dir: &dir,
            cgroup_parent: &self.cgroup_parent,
            idmap: spec.idmap,
            nesting: spec.nesting,
            console: console.as_deref(),
            root_mapped: mapped.is_some(),
        })
        .map_err(|e| Failure::invalid(e.to_string()))?;
        let conf_path = dir.join("lxc.conf");
        std::fs::write(&conf_path, config)
            .map_err(|e| Failure::failed("Failed to write LXC config", e))?;
        std::fs::write(
            dir.join("seccomp"),
            super::config::seccomp(spec.checkpointable, spec.quota_view),
        )
        .map_err(|e| Failure::failed("Failed to write seccomp policy", e))?;
        let _ = std::fs::remove_file(dir.join("lxc.log"));
        Ok(conf_path)
    }

    /// Removes the cgroups a stopped container left. liblxc leaves the monitor's behind
    /// when the container aborts or is checkpointed, and the monitor may still be exiting:
    /// retry for a moment.
    pub(super) async fn remove_cgroup_leftovers(&self, name: &str) {
        for _ in 0..100 {
            if self.cgroups.remove_leftovers(&self.cgroup_parent, name) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Cleans up after a container that failed to start (or restore); the error to
    /// report.
    pub(super) async fn failed_start(&self, name: &str, what: &str) -> String {
        let dir = self.dir(name);
        delete_host_links(&dir.join(HOST_LINKS));
        self.remove_cgroup_leftovers(name).await;
        self.cgroups.remove_parent(&self.cgroup_parent);
        forget_init(&dir);
        let mut why = log_tail(&dir);
        // A kernel limit the log shows was reached is named, with the host's value.
        let log = std::fs::read_to_string(dir.join("lxc.log")).unwrap_or_default();
        if let Some(sysctl) = crate::model::boot::limit_hit(&log) {
            let value = crate::host::sysctl::read(sysctl)
                .map_or_else(String::new, |v| format!(", {v} on this host"));
            why.push_str(&format!("; the host limit {sysctl} was reached{value}"));
        }
        if why.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {why}")
        }
    }

    async fn start_container(&self, spec: &StartSpec) -> Result<()> {
        let dir = self.dir(&spec.name);
        let mapped = if super::root::own_namespace(spec) {
            MappedRoot::of(spec, &self.lxcpath).await?
        } else {
            None
        };
        let conf_path = self.prepare(spec, mapped.as_ref(), false).await?;
        let stderr = std::fs::File::create(dir.join("forkstart.log"))
            .map_err(|e| Failure::failed("Failed to create log", e))?;
        let mut cmd = super::fork::command("forkstart")?;
        cmd.arg(&spec.name).arg(&self.lxcpath).arg(&conf_path);
        if mapped.is_some() {
            cmd.arg("--prlimit-hook");
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr);
        let status = tokio::process::Command::from(cmd)
            .status()
            .await
            .map_err(|e| Failure::failed("Failed to run forkstart", e))?;
        if !status.success() {
            return Err(Failure::internal(
                self.failed_start(&spec.name, "Failed to start the instance")
                    .await,
            ));
        }
        Ok(())
    }

    async fn stop_container(&self, name: &str, timeout: i64, force: bool) -> Result<()> {
        let lxcpath = self.lxcpath.clone();
        let cg = self.cgroup(name);
        let cgroups = self.cgroups.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let c = berth_lxc::Container::new(&name, &lxcpath)
                .map_err(|e| Failure::failed("Failed to open the container", e))?;
            if !c.is_running().unwrap_or(false) {
                // liblxc asks the container's monitor over an abstract socket of berthd's
                // network namespace: a berthd started in another one cannot reach it
                // while the init recorded at start still runs.
                let dir = lxcpath.join(&name);
                if let Some((pid, ticks)) = recorded_init(&dir) {
                    if !force {
                        return Err(Failure::conflict(
                            "The instance's monitor cannot be reached (berthd runs in another network namespace than its containers): use force to kill it",
                        ));
                    }
                    let _ = cgroups.set_frozen(&cg, false);
                    kill_init(pid, ticks)?;
                    forget_init(&dir);
                }
                return Ok(());
            }
            // A frozen container can neither shut down nor die: thaw it first.
            let _ = cgroups.set_frozen(&cg, false);
            if force {
                c.stop()
                    .map_err(|_| Failure::internal("Failed to kill the instance"))?;
            } else {
                let t = i32::try_from(timeout.clamp(-1, i64::from(i32::MAX))).unwrap_or(-1);
                if c.shutdown(t).is_err() {
                    return Err(Failure::conflict(
                        "The instance did not stop within the timeout (use force to kill it)",
                    ));
                }
            }
            if !c.wait("STOPPED", 30).unwrap_or(false) {
                return Err(Failure::internal("The instance did not stop"));
            }
            forget_init(&lxcpath.join(&name));
            Ok(())
        })
        .await?
    }

    async fn device_rule_of(&self, name: &str, key: &'static str, rule: String) -> Result<()> {
        let lxcpath = self.lxcpath.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let c = berth_lxc::Container::new(&name, &lxcpath)
                .map_err(|e| Failure::failed("Failed to open the container", e))?;
            c.load_config(&lxcpath.join(&name).join("lxc.conf"))
                .map_err(|e| Failure::failed("Failed to load the container's configuration", e))?;
            c.set_cgroup_item(key, &rule)
                .map_err(|_| Failure::internal(format!("Failed to set {key} {rule}")))
        })
        .await?
    }
}

/// Runs `berthd forkmount`; its one-line error on failure.
async fn forkmount(spec: &MountSpec) -> Result<()> {
    let arg = serde_json::to_string(spec)
        .map_err(|e| Failure::failed("Failed to pass the mount to forkmount", e))?;
    let mut cmd = super::fork::command("forkmount")?;
    cmd.arg(arg).stdin(std::process::Stdio::null());
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .map_err(|e| Failure::failed("Failed to run forkmount", e))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(Failure::internal(err.trim().trim_start_matches("Error: ")))
}

impl InstanceDriver for Liblxc {
    fn status(&self, name: &str) -> (StatusCode, Option<i32>) {
        let (status, pid, _) = self.state_and_start(name);
        (status, pid)
    }

    fn is_stopped(&self, name: &str) -> bool {
        self.status_and_start(name).0 == StatusCode::Stopped
    }

    fn observe(&self, name: &str, how: Observe) -> InstanceState {
        let (status, pid, ticks) = self.state_and_start(name);
        let mut state = InstanceState::default();
        if let Some(p) = pid {
            if how.counters {
                let c = self.cgroups.counters(&self.cgroup(name));
                state.processes = c.processes;
                state.memory = InstanceStateMemory {
                    usage: c.memory_usage,
                    usage_peak: c.memory_peak,
                    total: c.memory_limit.unwrap_or(self.host_memory),
                    ..Default::default()
                };
                state.cpu = InstanceStateCpu { usage: c.cpu_usage };
            }
            if how.network_counters {
                state.network = if how.own_thread {
                    crate::host::netns::interfaces_joining(p).ok()
                } else {
                    crate::host::netns::interfaces(p).ok()
                };
            } else if how.network {
                state.network = self.nets.interfaces(name, p, ticks, how.own_thread).ok();
            }
        }
        state.status = status.name().to_owned();
        state.status_code = status.code();
        state.pid = i64::from(pid.unwrap_or(0));
        // Clients parse it as a time: never empty.
        state.started_at = ticks
            .or_else(|| pid.and_then(start_time))
            .and_then(started_at)
            .unwrap_or_else(|| crate::time::NEVER.to_owned());
        state
    }

    fn create(&self, name: &str) -> Result<()> {
        let dir = self.dir(name);
        crate::paths::create_private_dir(&dir)
            .map_err(|e| Failure::failed(format!("Failed to create {}", dir.display()), e))
    }

    fn start<'a>(&'a self, spec: &'a StartSpec) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.start_container(spec))
    }

    fn restore<'a>(&'a self, spec: &'a StartSpec) -> BoxFuture<'a, Result<()>> {
        Box::pin(checkpoint::restore(self, spec))
    }

    fn stop<'a>(&'a self, name: &'a str, timeout: i64, force: bool) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.stop_container(name, timeout, force))
    }

    fn checkpoint<'a>(&'a self, name: &'a str, stop: bool) -> BoxFuture<'a, Result<()>> {
        if stop {
            Box::pin(checkpoint::checkpoint(self, name))
        } else {
            Box::pin(checkpoint::snapshot_dump(self, name))
        }
    }

    fn migration_dump<'a>(
        &'a self,
        name: &'a str,
        dumped: tokio::sync::oneshot::Sender<PathBuf>,
        verdict: tokio::sync::oneshot::Receiver<bool>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(super::handoff::dump(self, name, dumped, verdict))
    }

    fn release(&self, name: &str) {
        self.inits.forget(name);
        self.nets.forget(name);
        delete_host_links(&self.dir(name).join(HOST_LINKS));
        console::quit(&self.dir(name));
        self.cgroups.remove_parent(&self.cgroup_parent);
    }

    fn cleanup(&self, name: &str, keep_console: bool) {
        self.inits.forget(name);
        self.nets.forget(name);
        delete_host_links(&self.dir(name).join(HOST_LINKS));
        self.cgroups.remove_leftovers(&self.cgroup_parent, name);
        super::root::sweep(&self.lxcpath, name);
        if !keep_console {
            console::quit(&self.dir(name));
        }
        self.cgroups.remove_parent(&self.cgroup_parent);
    }

    fn is_frozen(&self, name: &str) -> bool {
        self.cgroups.is_frozen(&self.cgroup(name))
    }

    fn set_frozen(&self, name: &str, frozen: bool) -> Result<()> {
        self.cgroups
            .set_frozen(&self.cgroup(name), frozen)
            .map_err(|e| {
                let what = if frozen { "freeze" } else { "unfreeze" };
                Failure::failed(format!("Failed to {what} the instance"), e)
            })
    }

    fn set_cgroup(&self, name: &str, controller: &str, file: &str, value: &str) -> Result<()> {
        self.cgroups
            .write(controller, &self.cgroup(name), file, value)
            .map_err(|e| Failure::failed(format!("Failed to set {file} to {value}"), e))
    }

    fn mount<'a>(&'a self, spec: &'a MountSpec) -> BoxFuture<'a, Result<()>> {
        Box::pin(forkmount(spec))
    }

    fn device_rule<'a>(
        &'a self,
        name: &'a str,
        key: &'static str,
        rule: String,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.device_rule_of(name, key, rule))
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.inits.forget(from);
        self.nets.forget(from);
        let (old, new) = (self.dir(from), self.dir(to));
        if old.exists() {
            std::fs::rename(&old, &new)
                .map_err(|e| Failure::failed(format!("Failed to rename {}", old.display()), e))?;
        }
        // The old runtime config named the old paths; the next start writes a new one.
        let _ = std::fs::remove_file(new.join("lxc.conf"));
        Ok(())
    }

    fn delete(&self, name: &str) {
        self.inits.forget(name);
        self.nets.forget(name);
        let dir = self.dir(name);
        console::quit(&dir);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(instance = name, error = %e, "Runtime directory not removed");
        }
    }

    fn lxcpath(&self) -> &Path {
        &self.lxcpath
    }
}

/// The file recording a running container's init pid and that process's start time.
const INIT_PID: &str = "init.pid";

/// The file in a container's directory listing its nics' host links, one per line (and
/// `neigh ADDR PARENT` for a routed nic's proxy neighbour entry, `conntrack TABLE LINK`
/// for a nic's conntrack limit).
pub const HOST_LINKS: &str = "host-links";

/// Deletes the links listed in `file` (a container's [`HOST_LINKS`]); those gone already
/// are fine. Blocking.
pub fn delete_host_links(file: &Path) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    for entry in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = entry.strip_prefix("neigh ") {
            // A routed nic's proxy neighbour entry: `neigh ADDR PARENT`.
            if let Some((addr, parent)) = rest.split_once(' ') {
                berth_network::nic::unproxy(&[addr.to_owned()], parent);
            }
            continue;
        }
        if let Some(rest) = entry.strip_prefix("conntrack ") {
            // A nic's conntrack limit: `conntrack TABLE LINK`.
            if let Some((table, link)) = rest.split_once(' ') {
                let _ = berth_network::nic::remove_conntrack(table, link);
            }
            continue;
        }
        if let Err(e) = berth_network::nic::delete(entry) {
            tracing::warn!(link = entry, error = %crate::error::chain(&e), "Link not deleted");
        }
    }
}

/// A process's start time (clock ticks after boot), which tells it from a later process
/// that reuses its pid.
pub fn start_time(pid: i32) -> Option<u64> {
    start_time_in(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time in a process's `stat` file.
pub fn start_time_in(stat: &str) -> Option<u64> {
    // Fields after the command name (which may hold spaces); start time is field 22.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// When the host booted (seconds since the epoch), read once: /proc/stat is large.
fn boot_time() -> Option<i64> {
    static BOOT: std::sync::OnceLock<Option<i64>> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()
    })
}

/// A process start time in clock ticks since boot ([`start_time`]) as RFC 3339 (the
/// instance state's `started_at`).
fn started_at(ticks: u64) -> Option<String> {
    let boot = boot_time()?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    let secs = boot + i64::try_from(ticks / hz).ok()?;
    let nanos = u32::try_from((ticks % hz) * (1_000_000_000 / hz)).ok()?;
    chrono::DateTime::from_timestamp(secs, nanos)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Records the init pid of a container that just started (in its directory `dir`).
pub fn record_init(dir: &Path, pid: i32) {
    if let Some(t) = start_time(pid) {
        let _ = std::fs::write(dir.join(INIT_PID), format!("{pid} {t}\n"));
    }
}

/// Forgets the recorded init pid of a container that stopped.
pub fn forget_init(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(INIT_PID));
}

/// Kills the init `pid` that started at `ticks` (through a pidfd, checked to be that
/// process) and waits up to 30 s for it to exit; its monitor, wherever it is, then
/// cleans up as after any stop.
fn kill_init(pid: i32, ticks: u64) -> Result<()> {
    let fail = |e: std::io::Error| Failure::failed("Failed to kill the instance", e);
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return Ok(());
    };
    let fd = match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(()),
        // A kernel without pidfds: by pid, checked by its start time just before.
        Err(rustix::io::Errno::NOSYS) => {
            if start_time(pid) != Some(ticks) {
                return Ok(());
            }
            rustix::process::kill_process(p, rustix::process::Signal::KILL)
                .map_err(|e| fail(e.into()))?;
            for _ in 0..3000 {
                if start_time(pid) != Some(ticks) {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            return Err(Failure::internal("The instance did not stop"));
        }
        Err(e) => return Err(fail(e.into())),
    };
    if start_time(pid) != Some(ticks) {
        return Ok(());
    }
    rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL)
        .map_err(|e| fail(e.into()))?;
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let wait = rustix::event::Timespec {
        tv_sec: 30,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&wait)) {
        Ok(n) if n > 0 => Ok(()),
        _ => Err(Failure::internal("The instance did not stop")),
    }
}

/// The recorded init pid and its start time, when that process still runs.
fn recorded_init(dir: &Path) -> Option<(i32, u64)> {
    let text = std::fs::read_to_string(dir.join(INIT_PID)).ok()?;
    let (pid, t) = text.trim().split_once(' ')?;
    let pid: i32 = pid.parse().ok()?;
    let t: u64 = t.parse().ok()?;
    (start_time(pid)? == t).then_some((pid, t))
}

/// A container's status and init pid: from the recorded init pid when that process still
/// runs (a few file reads), else from liblxc (a round trip to the container's monitor).
pub fn lxc_status(lxcpath: &Path, name: &str) -> (StatusCode, Option<i32>) {
    let (status, pid, _) = status_and_start(lxcpath, name);
    (status, pid)
}

/// [`lxc_status`], with the init's start time when the recorded pid gave it.
fn status_and_start(lxcpath: &Path, name: &str) -> (StatusCode, Option<i32>, Option<u64>) {
    if let Some((pid, t)) = recorded_init(&lxcpath.join(name)) {
        return (StatusCode::Running, Some(pid), Some(t));
    }
    let (status, pid) = monitor_status(lxcpath, name);
    if status == StatusCode::Stopped {
        forget_init(&lxcpath.join(name));
    }
    (status, pid, None)
}

/// The empty directory bound read-only over the masked directories of every container
/// (see [`super::config::MASKED`]): made when missing, refused when not empty.
fn masked_dir(lxcpath: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let path = lxcpath.join(super::config::MASKED);
    let fail = |e| Failure::failed(format!("Failed to prepare {}", path.display()), e);
    match std::fs::DirBuilder::new().mode(0o555).create(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(fail(e)),
        _ => {}
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).map_err(fail)?;
    if std::fs::read_dir(&path).map_err(fail)?.next().is_some() {
        return Err(Failure::internal(format!(
            "{} must be empty: it is shown to containers over /proc and /sys paths",
            path.display()
        )));
    }
    Ok(())
}

/// What liblxc says of a container: its status and init pid.
fn monitor_status(lxcpath: &Path, name: &str) -> (StatusCode, Option<i32>) {
    let Ok(c) = berth_lxc::Container::new(name, lxcpath) else {
        return (StatusCode::Error, None);
    };
    let state = c.state().unwrap_or_else(|_| "STOPPED".to_owned());
    let status = match state.as_str() {
        "STOPPED" => StatusCode::Stopped,
        "FROZEN" => StatusCode::Frozen,
        "ABORTING" => StatusCode::Error,
        _ => StatusCode::Running,
    };
    let pid = if status == StatusCode::Stopped {
        None
    } else {
        c.init_pid().ok().flatten()
    };
    (status, pid)
}

/// The last error lines of a container's LXC log, to explain a failed start.
fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("lxc.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    lines
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(|l| l.rsplit(" - ").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("; ")
}
