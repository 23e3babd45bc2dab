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
//!   image lock, pool lock: never held with another lock
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
    pub locks: Locks,
    /// What the host offers (memory, CPUs, cgroup version).
    pub host: Host,
    /// The host ids containers' maps come from.
    pub ids: HostIds,
    pub image_limits: berth_image::Limits,
    /// Spare volumes being unpacked: (pool's volume directory, fingerprint).
    pub spares: Mutex<HashSet<(PathBuf, String)>>,
}

/// The loaded storage pools by name; one driver per pool.
#[derive(Debug, Clone, Default)]
pub struct Pools {
    inner: Arc<RwLock<BTreeMap<String, Arc<dyn berth_storage::Driver>>>>,
}

impl Pools {
    pub fn get(&self, name: &str) -> Option<Arc<dyn berth_storage::Driver>> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn insert(&self, name: &str, driver: Arc<dyn berth_storage::Driver>) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), driver);
    }

    /// Every loaded pool.
    pub fn all(&self) -> Vec<Arc<dyn berth_storage::Driver>> {
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

/// The locks of the lock order above.
#[derive(Debug, Default)]
pub struct Locks {
    instances: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Serialises profile and project writes, and instance expansions while checked.
    pub profiles: tokio::sync::Mutex<()>,
    /// Serialises image and alias writes.
    pub images: tokio::sync::Mutex<()>,
    /// Serialises storage pool writes.
    pub pools: tokio::sync::Mutex<()>,
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

    /// Forgets the lock of a deleted or renamed instance.
    pub fn forget(&self, name: &str) {
        self.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}
