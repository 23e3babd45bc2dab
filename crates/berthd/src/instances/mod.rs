//! Instances: system containers on liblxc.
//!
//! ```text
//!   create ──► STOPPED ──start──► RUNNING ──stop (clean, timeout; or force)──► STOPPED
//!                 │                                                          │
//!                 └──────────────────────── delete ◄─────────────────────────┘
//! ```
//!
//! Every instance has a volume `containers/NAME` on its root disk's pool holding `rootfs/`,
//! `metadata.yaml` and `templates/`, and a directory `DIR/containers/NAME` holding its LXC
//! configuration, seccomp policy and logs. Starting re-executes berthd as `forkstart` (liblxc
//! forks); stopping and state queries talk to the container's monitor in-process on a
//! blocking thread. Changes to one instance are serialised by its lock in [`Instances`].

pub mod checkpoint;
pub mod console;
pub mod devices;
pub mod hotplug;
pub mod idmap;
pub mod keys;
pub mod limits;
pub mod lxc_config;
pub mod rootfs;
pub mod schedule;
pub mod spares;
pub mod templates;
pub mod unpack;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_api::StatusCode;
use berth_api::instance::Device;
use sha2::{Digest, Sha256};

use crate::db::instances::InstanceRecord;
use crate::state::State;

/// Per-instance locks.
#[derive(Debug, Default)]
pub struct Instances {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Instances {
    /// The lock serialising changes to instance `name`.
    pub fn lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Forgets the lock of a deleted instance.
    pub fn forget(&self, name: &str) {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

/// Checks an instance name: a valid host name label, as LXD requires.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Invalid instance name {name:?}: use letters, digits and hyphens, starting with a letter, at most 63 characters"
        ))
    }
}

/// The cgroup directory of this daemon's containers: derived from its state directory, so
/// daemons on different directories never share a cgroup name.
pub fn cgroup_parent(dir: &Path) -> String {
    let digest = Sha256::digest(dir.to_string_lossy().as_bytes());
    format!("berth.{}", berth_image::hex(&digest[..4]))
}

/// Profiles merged in order, then the instance's own values.
pub fn expand(
    profiles: &[crate::db::instances::ProfileRecord],
    rec: &InstanceRecord,
) -> (BTreeMap<String, String>, BTreeMap<String, Device>) {
    let mut config = BTreeMap::new();
    let mut devices = BTreeMap::new();
    for p in profiles {
        config.extend(p.config.clone());
        devices.extend(p.devices.clone());
    }
    config.extend(rec.config.clone());
    devices.extend(rec.devices.clone());
    devices.retain(|_, d: &mut Device| d.get("type").map(String::as_str) != Some("none"));
    (config, devices)
}

/// The pool of the root disk among expanded devices.
pub fn root_pool(devices: &BTreeMap<String, Device>) -> Option<String> {
    devices
        .values()
        .find(|d| {
            d.get("type").map(String::as_str) == Some("disk")
                && d.get("path").map(String::as_str) == Some("/")
        })
        .and_then(|d| d.get("pool").cloned())
}

/// The file recording a running container's init pid and that process's start time.
const INIT_PID: &str = "init.pid";

/// A process's start time (clock ticks after boot), which tells it from a later process
/// that reuses its pid.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
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

/// When process `pid` started, as RFC 3339 (the instance state's `started_at`).
pub fn started_at(pid: i32) -> Option<String> {
    let ticks = start_time(pid)?;
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

/// The recorded init pid, when that process still runs.
fn recorded_init(dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(dir.join(INIT_PID)).ok()?;
    let (pid, t) = text.trim().split_once(' ')?;
    let pid: i32 = pid.parse().ok()?;
    (start_time(pid)? == t.parse::<u64>().ok()?).then_some(pid)
}

/// A container's status and init pid: from the recorded init pid when that process still
/// runs (a few file reads), else from liblxc (a round trip to the container's monitor).
pub fn lxc_status(lxcpath: &Path, name: &str) -> (StatusCode, Option<i32>) {
    if let Some(pid) = recorded_init(&lxcpath.join(name)) {
        return (StatusCode::Running, Some(pid));
    }
    let (status, pid) = monitor_status(lxcpath, name);
    if status == StatusCode::Stopped {
        forget_init(&lxcpath.join(name));
    }
    (status, pid)
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

/// The container's runtime directory: LXC config, seccomp policy, logs.
pub fn container_dir(st: &State, name: &str) -> PathBuf {
    st.paths.containers().join(name)
}

/// Where the host nodes of a container's unix devices are made.
pub fn nodes_dir(st: &State, name: &str) -> PathBuf {
    st.paths.devices().join(name)
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

/// The LXC keys of an expanded configuration's limits.
pub fn limit_keys(
    config: &BTreeMap<String, String>,
    host: limits::Host,
) -> Result<Vec<(String, String)>, String> {
    let prefix = if host.cgroup_v2 {
        "lxc.cgroup2"
    } else {
        "lxc.cgroup"
    };
    let mut keys: Vec<(String, String)> = limits::cgroup_settings(config, host)?
        .into_iter()
        .map(|(_, file, value)| (format!("{prefix}.{file}"), value))
        .collect();
    keys.extend(limits::prlimits(config)?);
    Ok(keys)
}

/// Renders the templates of the instance's image (kept in its volume) that `trigger` fires:
/// `start` at every start, `rename` after a rename (`create` and `copy` run where those
/// happen).
pub fn apply_templates(rec: &InstanceRecord, volume: &Path, trigger: &str) -> Result<(), String> {
    let Ok(text) = std::fs::read(volume.join("metadata.yaml")) else {
        return Ok(());
    };
    let md = berth_image::ImageMetadata::parse(&text).map_err(|e| crate::logging::chain(&e))?;
    let ctx = templates::Context {
        name: rec.api_name(),
        architecture: &rec.architecture,
        config: &rec.config,
    };
    templates::apply(volume, &md, trigger, &ctx).map_err(|e| crate::logging::chain(&e))
}

/// The mount entries of lxcfs, starting it when the host runs none.
async fn lxcfs_mounts(st: &State) -> Vec<String> {
    let own = st.paths.dir().join("lxcfs");
    let log = st.paths.logs().join("lxcfs.log");
    // The lock lives in the shared state; the blocking task needs its own handle.
    let st_lock = &st.runtime.lxcfs;
    let guard = st_lock.lock().unwrap_or_else(|p| p.into_inner());
    let found = tokio::task::block_in_place(|| crate::host::lxcfs::ensure(&own, &log));
    drop(guard);
    found
        .map(|p| crate::host::lxcfs::mount_entries(&p))
        .unwrap_or_default()
}

/// The user-namespace map the instance runs with; `None` when privileged.
pub fn idmap_of(
    st: &State,
    rec: &InstanceRecord,
    config: &BTreeMap<String, String>,
) -> Option<idmap::IdMap> {
    if config
        .get("security.privileged")
        .is_some_and(|v| v == "true")
    {
        return None;
    }
    Some(
        idmap::IdMap::from_volatile(&rec.config)
            .flatten()
            .unwrap_or_else(|| st.runtime.ids.shared()),
    )
}

/// Writes the configuration (with `config`'s limits) and starts the container through
/// `berthd forkstart`.
pub async fn start(
    st: &State,
    rec: &InstanceRecord,
    config: &BTreeMap<String, String>,
    devices: &BTreeMap<String, Device>,
    rootfs: &Path,
) -> Result<(), String> {
    let conf_path = prepare(st, rec, config, devices, rootfs, false).await?;
    let dir = container_dir(st, &rec.name);
    let exe = std::env::current_exe().map_err(|e| format!("Failed to find berthd: {e}"))?;
    let stderr = std::fs::File::create(dir.join("forkstart.log"))
        .map_err(|e| format!("Failed to create log: {e}"))?;
    let status = tokio::process::Command::new(exe)
        .arg("forkstart")
        .arg(&rec.name)
        .arg(st.paths.containers())
        .arg(&conf_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .status()
        .await
        .map_err(|e| format!("Failed to run forkstart: {e}"))?;
    if !status.success() {
        return Err(failed_start(st, &rec.name, "Failed to start the instance").await);
    }
    Ok(())
}

/// Removes the cgroups a stopped container left. liblxc leaves the monitor's behind when
/// the container aborts or is checkpointed, and the monitor may still be exiting: retry
/// for a moment.
pub async fn remove_cgroup_leftovers(st: &State, name: &str) {
    for _ in 0..100 {
        if crate::host::cgroup::remove_leftovers(&st.runtime.cgroup_parent, name) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Cleans up after a container that failed to start (or restore); the error to report.
pub async fn failed_start(st: &State, name: &str, what: &str) -> String {
    let dir = container_dir(st, name);
    remove_cgroup_leftovers(st, name).await;
    crate::host::cgroup::remove_parent(&st.runtime.cgroup_parent);
    forget_init(&dir);
    let why = log_tail(&dir);
    if why.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {why}")
    }
}

/// Writes everything a start or a restore needs: the container's directory, LXC
/// configuration, seccomp policy, device nodes, the console keeper of a checkpointable
/// container; runs the `start` templates. Returns the configuration's path.
/// `restoring`: for a restore from a saved state (no templates; an unprivileged
/// container's `rootfs` is then an idmapped mount already, not the volume); otherwise a
/// saved state is discarded (a fresh boot makes it stale).
pub async fn prepare(
    st: &State,
    rec: &InstanceRecord,
    config: &BTreeMap<String, String>,
    devices: &BTreeMap<String, Device>,
    rootfs: &Path,
    restoring: bool,
) -> Result<PathBuf, String> {
    let dir = container_dir(st, &rec.name);
    if !restoring {
        checkpoint::discard(st, &rec.name)?;
    }
    crate::db::create_private_dir(&dir)
        .map_err(|e| format!("Failed to create {}: {e}", dir.display()))?;
    let mut extra = limit_keys(config, st.runtime.host)?;
    for entry in lxcfs_mounts(st).await {
        extra.push(("lxc.mount.entry".to_owned(), entry));
    }
    let flag = |k: &str| config.get(k).is_some_and(|v| v == "true");
    for entry in devices::disk_mounts(devices, !flag("security.privileged"))? {
        extra.push(("lxc.mount.entry".to_owned(), entry));
    }
    let idmap = idmap_of(st, rec, config);
    if let Some(m) = &idmap {
        st.runtime.ids.check_usable(m)?;
    }
    let root_mapped = restoring && idmap.is_some();
    // A checkpointable container's console comes from its keeper; any other's is
    // liblxc's (a keeper left from before the key changed goes).
    let console = if checkpoint::checkpointable(config) {
        let (uid, gid) = idmap.map_or((0, 0), |m| (m.uid_base, m.gid_base));
        Some(console::ensure(&dir, uid, gid).await?)
    } else {
        let d = dir.clone();
        let _ = tokio::task::spawn_blocking(move || console::quit(&d)).await;
        None
    };
    // The device cgroup: deny all, then the standard nodes and the unix devices.
    let (nodes, rules) = devices::unix_at_start(
        &nodes_dir(st, &rec.name),
        devices,
        idmap.map(|m| (m.uid_base, m.gid_base, m.size)),
    )?;
    let devices_key = if st.runtime.host.cgroup_v2 {
        "lxc.cgroup2.devices"
    } else {
        "lxc.cgroup.devices"
    };
    extra.push((format!("{devices_key}.deny"), "a".to_owned()));
    for rule in devices::DEFAULT_RULES
        .iter()
        .map(|r| (*r).to_owned())
        .chain(rules)
    {
        extra.push((format!("{devices_key}.allow"), rule));
    }
    for entry in nodes {
        extra.push(("lxc.mount.entry".to_owned(), entry));
    }
    // Last, so an administrator's raw keys win over berthd's defaults.
    if let Some(raw) = config.get("raw.lxc") {
        extra.extend(lxc_config::parse_raw(raw)?);
    }
    let spec = lxc_config::Spec {
        extra: &extra,
        name: &rec.name,
        hostname: rec.api_name(),
        rootfs,
        dir: &dir,
        cgroup_parent: &st.runtime.cgroup_parent,
        idmap,
        nesting: flag("security.nesting"),
        console: console.as_deref(),
        root_mapped,
    };
    let config = lxc_config::render(&spec).map_err(|e| e.to_string())?;
    // A restore resumes the instance: no start templates.
    if !restoring && let Some(volume) = rootfs.parent() {
        apply_templates(rec, volume, "start")?;
    }
    let conf_path = dir.join("lxc.conf");
    std::fs::write(&conf_path, config).map_err(|e| format!("Failed to write LXC config: {e}"))?;
    std::fs::write(dir.join("seccomp"), lxc_config::SECCOMP)
        .map_err(|e| format!("Failed to write seccomp policy: {e}"))?;
    let _ = std::fs::remove_file(dir.join("lxc.log"));
    Ok(conf_path)
}

/// Stops the container: a clean shutdown waiting `timeout` seconds (-1: forever), or a
/// kill with `force`.
pub async fn stop(st: &State, name: &str, timeout: i64, force: bool) -> Result<(), String> {
    let lxcpath = st.paths.containers();
    let cg = format!("{}/{}", st.runtime.cgroup_parent, name);
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        let c = berth_lxc::Container::new(&name, &lxcpath).map_err(|e| e.to_string())?;
        if !c.is_running().unwrap_or(false) {
            return Ok(());
        }
        // A frozen container can neither shut down nor die: thaw it first.
        let _ = crate::host::cgroup::set_frozen(&cg, false);
        if force {
            c.stop()
                .map_err(|_| "Failed to kill the instance".to_owned())?;
        } else {
            let t = i32::try_from(timeout.clamp(-1, i64::from(i32::MAX))).unwrap_or(-1);
            if c.shutdown(t).is_err() {
                return Err(
                    "The instance did not stop within the timeout (use force to kill it)"
                        .to_owned(),
                );
            }
        }
        if !c.wait("STOPPED", 30).unwrap_or(false) {
            return Err("The instance did not stop".to_owned());
        }
        forget_init(&lxcpath.join(&name));
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())?
}
