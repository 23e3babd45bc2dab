//! The instance driver: everything that touches liblxc, the container's cgroups and its
//! namespaces, behind [`InstanceDriver`], so the instance service runs on a fake in unit
//! tests ([`fake`]) and on liblxc ([`Liblxc`]) in berthd.
//!
//! ```text
//!   instance service ──StartSpec──► driver.start ──► prepare (lxc.conf, lxcfs, console
//!        │                                              keeper) ──► berthd forkstart
//!        └── stop / freeze / live limits / hotplug mounts / checkpoint / restore
//! ```
//!
//! The driver knows nothing of the database, projects or profiles: the service hands it
//! what to run ([`StartSpec`]: the id map, limits, device entries and `raw.lxc` lines it
//! decided) and a container's host-wide name. Streams (exec, console attach) are not in
//! the trait: `instance::exec` and `instance::console` hand the API the helper commands
//! [`fork`] and [`console`] make, and the API pumps their streams.

pub mod checkpoint;
pub mod config;
pub mod console;
#[cfg(test)]
pub mod fake;
pub mod fork;
pub mod handoff;
mod inits;
pub mod lifecycle;
pub mod proxy;
pub mod root;
pub mod syscalls;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use berth_api::StatusCode;
use berth_api::instance::InstanceState;

use crate::error::Result;
use crate::model::idmap::IdMap;

pub use fork::{ExecSpec, MountSpec};
pub use lifecycle::Liblxc;

/// A driver call that waits on a helper process or the container.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a start or a restore runs, as the instance service decided it.
#[derive(Debug, Clone, Default)]
pub struct StartSpec {
    /// The host-wide name.
    pub name: String,
    /// The host name inside: the instance's name in its project.
    pub hostname: String,
    /// The rootfs on the instance's volume.
    pub rootfs: PathBuf,
    /// The user-namespace map; `None` for a privileged container.
    pub idmap: Option<IdMap>,
    /// `security.nesting`.
    pub nesting: bool,
    /// `migration.stateful`: the console comes from a keeper CRIU can restore.
    pub checkpointable: bool,
    /// Its volumes have sizes their filesystem keeps out of its own figures (btrfs):
    /// `statfs` and `fstatfs` go through the syscall proxy ([`syscalls`]), so `df` inside
    /// shows them, and it may make no subvolumes ([`config::NO_SUBVOLUMES`]).
    pub quota_view: bool,
    /// Limits as LXC keys (`lxc.cgroup*.…`, `lxc.prlimit.…`).
    pub limits: Vec<(String, String)>,
    /// Devices as LXC keys: mount entries, device cgroup rules, nics.
    pub devices: Vec<(String, String)>,
    /// Links on the host the container's nics use (veth host ends, IFB devices): deleted
    /// whenever the container stops, by berthd or on its own.
    pub host_links: Vec<String>,
    /// `raw.lxc`, last: an administrator's keys win.
    pub raw: Vec<(String, String)>,
}

/// How much [`InstanceDriver::observe`] reads beyond the status, the init pid and its start
/// time (which the init cache holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observe {
    /// The cgroup counters: processes, memory, CPU.
    pub counters: bool,
    /// The interfaces, from the container's network namespace: kept ones when nothing
    /// changed since they were read (see [`crate::host::netwatch`]), without counters.
    pub network: bool,
    /// The interfaces with their counters, read now.
    pub network_counters: bool,
    /// The calling thread is the caller's own and discarded after (a scoped worker), so
    /// it may join the container's network namespace for a moment; otherwise a
    /// short-lived thread does.
    pub own_thread: bool,
}

impl Observe {
    /// What LXD sends for the parts named in LXD's selective recursion: the cgroup
    /// counters always, and the interfaces' counters with the interfaces.
    pub fn as_lxd(self) -> Observe {
        Observe {
            counters: true,
            network_counters: self.network,
            ..self
        }
    }

    /// Status and init pid only.
    pub const STATUS: Observe = Observe {
        counters: false,
        network: false,
        network_counters: false,
        own_thread: false,
    };
    /// Everything: counters and network, with the interfaces' counters.
    pub const FULL: Observe = Observe {
        counters: true,
        network: true,
        network_counters: true,
        own_thread: false,
    };
}

/// The liblxc side of instances. Calls that wait on the container or a helper are
/// async; the others block briefly (callers keep them off the async workers when they
/// may ask the container's monitor).
///
/// Lifecycle contract: `create` makes the runtime directory; `start` (or `restore`)
/// writes the configuration and runs the container; `stop` ends it and `release` lets go
/// of what outlives a stop (console keeper, empty cgroup parent), unless a checkpoint
/// keeps the console; `delete` removes the runtime directory. Every call is idempotent
/// on what is already done.
pub trait InstanceDriver: Send + Sync + std::fmt::Debug {
    /// The container's status (frozen included) and init pid. Blocking.
    fn status(&self, name: &str) -> (StatusCode, Option<i32>);

    /// Whether the container is stopped: [`InstanceDriver::status`] without asking
    /// whether it is frozen. Blocking.
    fn is_stopped(&self, name: &str) -> bool {
        self.status(name).0 == StatusCode::Stopped
    }

    /// What the host says of the container. Blocking.
    fn observe(&self, name: &str, how: Observe) -> InstanceState;

    /// Makes the container's runtime directory.
    fn create(&self, name: &str) -> Result<()>;

    /// Starts the container (a saved state is discarded: a fresh boot makes it stale).
    fn start<'a>(&'a self, spec: &'a StartSpec) -> BoxFuture<'a, Result<()>>;

    /// Restores the container from its saved state.
    fn restore<'a>(&'a self, spec: &'a StartSpec) -> BoxFuture<'a, Result<()>>;

    /// Stops it: a clean shutdown waiting `timeout` seconds (-1: forever), or a kill.
    fn stop<'a>(&'a self, name: &'a str, timeout: i64, force: bool) -> BoxFuture<'a, Result<()>>;

    /// Checkpoints the running container into its saved state and stops it (`stop`), or
    /// into a stateful snapshot's dump while it goes on.
    fn checkpoint<'a>(&'a self, name: &'a str, stop: bool) -> BoxFuture<'a, Result<()>>;

    /// Dumps the running container for a live migration, its processes held frozen:
    /// sends the directory to transfer on `dumped`, then ends them when `verdict` says
    /// the target took over, or lets them run on (see [`handoff`]).
    fn migration_dump<'a>(
        &'a self,
        name: &'a str,
        dumped: tokio::sync::oneshot::Sender<PathBuf>,
        verdict: tokio::sync::oneshot::Receiver<bool>,
    ) -> BoxFuture<'a, Result<()>>;

    /// After a stop for good: the console keeper goes, and the cgroup parent when empty.
    fn release(&self, name: &str);

    /// For a container found stopped at start-up: what it left (cgroups, a restore's
    /// root, its console keeper unless `keep_console`).
    fn cleanup(&self, name: &str, keep_console: bool);

    fn is_frozen(&self, name: &str) -> bool;

    /// Freezes or thaws it. Blocking until the kernel reports it done.
    fn set_frozen(&self, name: &str, frozen: bool) -> Result<()>;

    /// Writes one cgroup file of the running container (a limit applied live).
    fn set_cgroup(&self, name: &str, controller: &str, file: &str, value: &str) -> Result<()>;

    /// Mounts or unmounts inside the running container (`berthd forkmount`).
    fn mount<'a>(&'a self, spec: &'a MountSpec) -> BoxFuture<'a, Result<()>>;

    /// Sets a device cgroup rule (`devices.allow` or `devices.deny`) of the running
    /// container.
    fn device_rule<'a>(
        &'a self,
        name: &'a str,
        key: &'static str,
        rule: String,
    ) -> BoxFuture<'a, Result<()>>;

    /// Moves the stopped container's runtime directory (its old configuration goes).
    fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// Removes the runtime directory (and the console keeper).
    fn delete(&self, name: &str);

    /// The containers directory (liblxc's lxcpath): runtime directories, logs, states.
    fn lxcpath(&self) -> &Path;
}

/// The cgroup directory of a daemon's containers: derived from its state directory, so
/// daemons on different directories never share a cgroup name.
pub fn cgroup_parent(dir: &Path) -> String {
    format!(
        "berth.{}",
        crate::paths::Paths::new(dir.to_owned()).daemon_id()
    )
}
