//! What every service works with: the state directory, the database, the event hub, the
//! instance driver, the loaded storage pools, the host's facts and the locks.
//!
//! One [`Ctx`] is built at start-up (`daemon.rs`) and shared; a unit test builds one over
//! a temporary directory and the fake driver (`testing::ctx`). It holds data, not
//! behaviour: the services are the modules above it, and take `&Ctx`.
//!
//! ## Lock order
//!
//! ```text
//!   instance lock(s) ──► profile lock ──► (database)
//!   image lock, pool lock, network lock: never held with another lock
//!   volume lock(s) ──► (database)
//! ```
//!
//! An instance's lock serialises every change to it (held across a whole operation); a
//! rename holds both names'. The profile lock is held while profiles, projects or an
//! instance's expansion are checked and written, so neither can change meanwhile; a
//! profile change takes its users' instance locks only after letting it go.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use crate::db::Db;
use crate::events::Events;
use crate::lxc::InstanceDriver;
use crate::model::idmap::HostIds;
use crate::model::limits::Host;
use crate::paths::Paths;

/// The shared context of the services.
#[derive(Debug)]
pub struct Ctx {
    pub paths: Paths,
    pub db: Db,
    pub events: Events,
    pub driver: Arc<dyn InstanceDriver>,
    pub pools: Pools,
    pub networks: Networks,
    pub locks: Locks,
    /// What the host offers (memory, CPUs, cgroup version).
    pub host: Host,
    /// The host ids containers' maps come from.
    pub ids: HostIds,
    pub image_limits: berth_image::Limits,
    /// Spare volumes being unpacked: (pool's volume directory, fingerprint).
    pub spares: Mutex<HashSet<(PathBuf, String)>>,
    /// Custom volumes being moved, renamed, restored or deleted (`POOL/NAME`): no
    /// instance binds one meanwhile.
    pub busy_volumes: Mutex<HashSet<String>>,
    /// Instances started lately, watched for an init that dies at boot.
    pub starts: Starts,
    /// The trust store as requests look it up (`trust::` keeps it in step with the
    /// database).
    pub trust: Trust,
}

/// The trust store, replaced whole on each change; `writes` serialises the changes
/// (each holds it across its database write and the reload).
#[derive(Debug, Default)]
pub struct Trust {
    store: RwLock<Arc<crate::model::trust::TrustStore>>,
    pub writes: tokio::sync::Mutex<()>,
}

impl Trust {
    pub fn get(&self) -> Arc<crate::model::trust::TrustStore> {
        self.store.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, store: crate::model::trust::TrustStore) {
        *self.store.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(store);
    }
}

/// Instances started lately: `instance::background::boots` watches each for a while
/// after its start.
#[derive(Debug, Default)]
pub struct Starts(Mutex<HashMap<String, std::time::Instant>>);

impl Starts {
    /// Instance `name` has just started.
    pub fn note(&self, name: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(name.to_owned(), std::time::Instant::now());
    }

    /// The instances started less than `window` ago, with how long ago; older ones are
    /// let go.
    pub fn within(&self, window: std::time::Duration) -> Vec<(String, std::time::Duration)> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, t| t.elapsed() < window);
        m.iter().map(|(n, t)| (n.clone(), t.elapsed())).collect()
    }

    /// Stops watching instance `name`.
    pub fn forget(&self, name: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(name);
    }
}

/// Loaded drivers by name: one per storage pool ([`Pools`]) or network ([`Networks`]).
#[derive(Debug)]
pub struct Registry<D: ?Sized> {
    inner: Arc<RwLock<BTreeMap<String, Arc<D>>>>,
}

impl<D: ?Sized> Clone for Registry<D> {
    fn clone(&self) -> Self {
        Registry {
            inner: self.inner.clone(),
        }
    }
}

impl<D: ?Sized> Default for Registry<D> {
    fn default() -> Self {
        Registry {
            inner: Arc::default(),
        }
    }
}

impl<D: ?Sized> Registry<D> {
    pub fn get(&self, name: &str) -> Option<Arc<D>> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn insert(&self, name: &str, driver: Arc<D>) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), driver);
    }

    /// Every loaded driver.
    pub fn all(&self) -> Vec<Arc<D>> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn remove(&self, name: &str) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

/// The loaded storage pools.
pub type Pools = Registry<dyn berth_storage::Driver>;

/// The managed networks: a driver for each (loaded even when it could not start), and why
/// those that are down could not start.
#[derive(Debug, Clone, Default)]
pub struct Networks {
    pub drivers: Registry<dyn berth_network::Driver>,
    errors: Arc<Mutex<BTreeMap<String, String>>>,
    /// The server key `network.host_firewall.accept`: berthd may put accept rules for its
    /// bridges in the host's other tables.
    accept_foreign: Arc<std::sync::atomic::AtomicBool>,
}

impl Networks {
    /// Whether berthd may put accept rules for its bridges in foreign chains.
    pub fn accepts_foreign(&self) -> bool {
        self.accept_foreign
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets [`Networks::accepts_foreign`]; returns whether it changed.
    pub fn set_accepts_foreign(&self, on: bool) -> bool {
        self.accept_foreign
            .swap(on, std::sync::atomic::Ordering::Relaxed)
            != on
    }

    /// Why network `name` is down, if it is.
    pub fn error(&self, name: &str) -> Option<String> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Records whether network `name` is up (`None`) or why it is not.
    pub fn set_error(&self, name: &str, error: Option<String>) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        match error {
            Some(e) => errors.insert(name.to_owned(), e),
            None => errors.remove(name),
        };
    }
}

/// The locks of the lock order above.
#[derive(Debug, Default)]
pub struct Locks {
    instances: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    volumes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Serialises profile and project writes, and instance expansions while checked.
    pub profiles: tokio::sync::Mutex<()>,
    /// Serialises image and alias writes.
    pub images: tokio::sync::Mutex<()>,
    /// Serialises storage pool writes.
    pub pools: tokio::sync::Mutex<()>,
    /// Serialises network writes.
    pub networks: tokio::sync::Mutex<()>,
}

impl Locks {
    /// The lock serialising changes to instance `name` (its host-wide name).
    pub fn instance(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// The lock serialising changes to custom volume `name` (its host-wide name) on
    /// `pool`; a copy or move holds the source's and the target's.
    pub fn volume(&self, pool: &str, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.volumes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(format!("{pool}/{name}"))
            .or_default()
            .clone()
    }

    /// Forgets the lock of a deleted or renamed instance.
    pub fn forget(&self, name: &str) {
        self.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}
