//! The storage pools berthd has loaded: one driver per pool, from the database at start-up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use berth_storage::Driver;

use crate::paths::Paths;

/// Loaded pools by name; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Pools {
    inner: Arc<RwLock<BTreeMap<String, Arc<dyn Driver>>>>,
}

impl Pools {
    pub fn get(&self, name: &str) -> Option<Arc<dyn Driver>> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn insert(&self, name: &str, driver: Arc<dyn Driver>) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), driver);
    }

    /// Every loaded pool.
    pub fn all(&self) -> Vec<Arc<dyn Driver>> {
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

/// Where a pool lives when its config names no `source`.
pub fn default_source(paths: &Paths, pool: &str) -> PathBuf {
    paths.storage_pools().join(pool)
}
