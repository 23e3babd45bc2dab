//! Storage pools: the pool layer over `berth-storage`'s drivers. It validates, records
//! pools in the database, keeps the loaded drivers ([`crate::ctx::Pools`]) and undoes
//! half-made changes; a driver only touches the host.
//!
//! A pool is deleted in one write that checks it holds no volume and removes its row,
//! before its directory is touched: an instance created on it at the same moment either
//! lands first (the delete is refused) or finds the pool gone (its create is refused);
//! neither leaves a half-made object.

pub mod disks;
pub mod spares;
pub mod volume;
pub mod volume_copy;
pub mod volume_snapshot;

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::storage::StoragePoolPut;
use berth_storage::{Driver, PoolResources};

use crate::ctx::Ctx;
use crate::db::DbError;
use crate::error::{Failure, Result};
use crate::model::names::PoolName;
use crate::model::records::PoolRecord;
use crate::revert::Reverter;

pub fn not_found(name: &str) -> Failure {
    Failure::not_found(format!("Storage pool {name:?} not found"))
}

/// Loads the driver for a pool, validating its configuration.
fn load(
    cx: &Ctx,
    name: &str,
    driver: &str,
    config: BTreeMap<String, String>,
) -> Result<Arc<dyn Driver>> {
    let default = cx.paths.default_pool_source(name);
    Ok(berth_storage::load(driver, name, config, &default).map(Arc::from)?)
}

/// On the very first start, creates what a fresh berthd needs to launch a container: the
/// `default` dir pool (the `default` profile's root disk points at it). Later starts never
/// recreate what a user deleted.
pub fn apply_defaults(cx: &Ctx) -> Result<()> {
    if cx
        .db
        .read_sync(|c| crate::db::internal::get(c, "defaults"))?
        .is_some()
    {
        return Ok(());
    }
    if cx
        .db
        .read_sync(|c| crate::db::pools::get(c, "default"))?
        .is_none()
    {
        let driver = load(cx, "default", "dir", BTreeMap::new())
            .map_err(|e| e.about("Failed to set up the default storage pool"))?;
        // A database lost or moved away leaves the pool where it was: it is taken as it
        // is (`berth admin recover` brings back what it holds), not made anew.
        let laid_out = cx
            .paths
            .default_pool_source("default")
            .join("containers")
            .is_dir();
        if laid_out {
            tracing::info!("Taking the default storage pool found on disk");
            driver
                .mount()
                .map_err(|e| Failure::failed("Failed to take the default storage pool", e))?;
        } else {
            driver
                .create()
                .map_err(|e| Failure::failed("Failed to create the default storage pool", e))?;
        }
        let rec = PoolRecord {
            name: "default".to_owned(),
            driver: "dir".to_owned(),
            description: "Default storage pool".to_owned(),
            config: driver.config().clone(),
        };
        cx.db.write_sync(|tx| crate::db::pools::insert(tx, &rec))?;
    }
    cx.db
        .write_sync(|tx| crate::db::internal::set(tx, "defaults", "1"))?;
    Ok(())
}

/// Loads and mounts every stored pool. A pool that fails is logged and left out, so one
/// broken pool does not keep the daemon (and every other pool) down.
pub fn load_all(cx: &Ctx) -> Result<()> {
    for rec in cx.db.read_sync(crate::db::pools::list_readable)? {
        match load(cx, &rec.name, &rec.driver, rec.config)
            .and_then(|d| d.mount().map(|()| d).map_err(Failure::from))
        {
            Ok(d) => cx.pools.insert(&rec.name, d),
            Err(e) => {
                let error = crate::error::chain(&e);
                tracing::error!(pool = %rec.name, %error, "Storage pool unavailable");
            }
        }
    }
    Ok(())
}

/// Removes what a crash left half-made on every pool (start-up).
pub fn remove_leftovers(cx: &Ctx) {
    for pool in cx.pools.all() {
        if let Err(e) = pool.remove_leftovers() {
            tracing::warn!(error = %crate::error::chain(&e), "Leftovers not removed");
        }
    }
}

/// The loaded driver of pool `name`.
pub fn driver(cx: &Ctx, name: &str) -> Result<Arc<dyn Driver>> {
    cx.pools
        .get(name)
        .ok_or_else(|| Failure::unavailable(format!("Storage pool {name:?} is not available")))
}

/// Every pool.
pub async fn list(cx: &Ctx) -> Result<Vec<PoolRecord>> {
    Ok(cx.db.read(crate::db::pools::list).await?)
}

/// Pool `name`.
pub async fn get(cx: &Ctx, name: &str) -> Result<PoolRecord> {
    let n = name.to_owned();
    cx.db
        .read(move |c| crate::db::pools::get(c, &n))
        .await?
        .ok_or_else(|| not_found(name))
}

/// What a new pool is.
#[derive(Debug)]
pub struct NewPool {
    pub name: PoolName,
    pub driver: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
}

/// Creates and mounts a pool and records it.
pub async fn create(cx: &Ctx, new: NewPool) -> Result<()> {
    let _guard = cx.locks.pools.lock().await;
    let name = new.name.to_string();
    if get(cx, &name).await.is_ok() {
        return Err(Failure::exists(format!(
            "Storage pool {name:?} already exists"
        )));
    }
    let driver = load(cx, &name, &new.driver, new.config)?;
    let d = driver.clone();
    tokio::task::spawn_blocking(move || d.create().and_then(|()| d.mount())).await??;
    let mut undo = Reverter::new();
    let d = driver.clone();
    undo.add("delete the new pool's directory", move || {
        Ok(d.unmount().and_then(|()| d.delete())?)
    });
    let rec = PoolRecord {
        name: name.clone(),
        driver: new.driver.clone(),
        description: new.description,
        config: driver.config().clone(),
    };
    cx.db
        .write(move |tx| crate::db::pools::insert(tx, &rec))
        .await
        .map_err(|e| match e {
            DbError::Exists { .. } => {
                Failure::exists(format!("Storage pool {name:?} already exists"))
            }
            other => other.into(),
        })?;
    cx.pools.insert(&new.name, driver);
    undo.success();
    tracing::info!(pool = %new.name, driver = %new.driver, "Storage pool created");
    cx.events
        .lifecycle("storage-pool-created", &url(&new.name), None);
    Ok(())
}

/// Replaces (`replace`) or merges a pool's description and config; `source` cannot move.
/// `precondition` sees the pool as it is, under the pool lock (an ETag check).
pub async fn update(
    cx: &Ctx,
    name: &str,
    precondition: impl FnOnce(&PoolRecord) -> Result<()>,
    req: StoragePoolPut,
    replace: bool,
) -> Result<()> {
    let _guard = cx.locks.pools.lock().await;
    let rec = get(cx, name).await?;
    precondition(&rec)?;
    // An empty value unsets a key (PATCH); PUT replaces, empty values left out.
    let mut config = rec.config.clone();
    crate::model::merge_config(&mut config, Some(req.config), replace);
    config.retain(|_, v| !v.is_empty());
    // `source` is where the data is: it cannot move under a live pool; a changed `size`
    // is the driver's to apply (a loop file grows). Unset, they keep their value.
    for key in ["source", "size"] {
        // A key the pool never had is left for its driver to judge.
        let Some(old) = rec.config.get(key).cloned() else {
            continue;
        };
        match config.get(key) {
            Some(v) if *v != old && key == "source" => {
                return Err(Failure::invalid(format!(
                    "Storage pool key \"{key}\" cannot be changed"
                )));
            }
            Some(_) => {}
            None => {
                config.insert(key.to_owned(), old);
            }
        }
    }
    let driver = load(cx, name, &rec.driver, config)?;
    let (applied, old) = (driver.clone(), rec.config.clone());
    tokio::task::spawn_blocking(move || applied.update(&old)).await??;
    let new = PoolRecord {
        description: {
            let mut d = rec.description.clone();
            crate::model::merge_description(&mut d, req.description, replace);
            d
        },
        config: driver.config().clone(),
        ..rec
    };
    cx.db
        .write(move |tx| crate::db::pools::put(tx, &new))
        .await?;
    cx.pools.insert(name, driver);
    cx.events
        .lifecycle("storage-pool-updated", &url(name), None);
    Ok(())
}

/// Deletes an empty pool: its row first (refused while a volume is recorded on it or a
/// profile's disk names it), then its spare volumes and its directory; a failure there
/// brings the row back.
pub async fn delete(cx: &Ctx, name: &str) -> Result<()> {
    let _guard = cx.locks.pools.lock().await;
    let rec = get(cx, name).await?;
    let n = name.to_owned();
    cx.db
        .write(move |tx| {
            let users = users_of(
                &n,
                &crate::db::volumes::list(tx, Some(&n), None)?,
                &crate::db::profiles::list(tx)?,
            );
            if let Some(first) = users.first() {
                return Err(Failure::conflict(format!(
                    "Storage pool {n:?} is in use by {first}{}",
                    match users.len() {
                        1 => String::new(),
                        more => format!(" and {} more", more - 1),
                    }
                )));
            }
            // An instance recorded on it since refers to it: the same refusal.
            crate::db::pools::delete(tx, &n).map_err(|e| match e {
                DbError::Missing => Failure::conflict(format!("Storage pool {n:?} is in use")),
                other => other.into(),
            })
        })
        .await?;
    let mut undo = Reverter::new();
    let (db, row) = (cx.db.clone(), rec.clone());
    undo.add("record the pool again", move || {
        Ok(db.write_sync(|tx| crate::db::pools::insert(tx, &row))?)
    });
    let driver = match cx.pools.get(name) {
        Some(d) => d,
        None => load(cx, name, &rec.driver, rec.config.clone())?,
    };
    cx.pools.remove(name);
    let (pools, loaded, n) = (cx.pools.clone(), driver.clone(), name.to_owned());
    undo.add("load the pool again", move || {
        pools.insert(&n, loaded);
        Ok(())
    });
    // Spare volumes are berthd's own, not a user's: they go first, once none is being
    // made (no new one starts: the pool is out of `cx.pools`).
    spares::wait_idle(cx, driver.as_ref()).await;
    spares::clear(driver.as_ref());
    tokio::task::spawn_blocking(move || driver.unmount().and_then(|()| driver.delete())).await??;
    undo.success();
    cx.events
        .lifecycle("storage-pool-deleted", &url(name), None);
    Ok(())
}

/// A pool's space and inodes.
pub async fn resources(cx: &Ctx, name: &str) -> Result<PoolResources> {
    get(cx, name).await?;
    let driver = driver(cx, name)?;
    Ok(tokio::task::spawn_blocking(move || driver.resources()).await??)
}

/// A pool's URL.
pub fn url(name: &str) -> String {
    format!("/1.0/storage-pools/{name}")
}

/// What uses pool `pool`, as `used_by` lists it (LXD's order): the instances and custom
/// volumes recorded on it, then the profiles whose disks name it.
fn users_of(
    pool: &str,
    volumes: &[crate::model::records::VolumeRecord],
    profiles: &[crate::model::records::ProfileRecord],
) -> Vec<String> {
    let mut out: Vec<String> = volumes
        .iter()
        .filter(|v| v.pool == pool)
        .map(|v| match v.kind.as_str() {
            "container" => crate::model::names::instance_url(&v.name),
            _ => volume::url(v),
        })
        .collect();
    out.extend(
        profiles
            .iter()
            .filter(|p| {
                p.devices.values().any(|d| {
                    d.get("type").map(String::as_str) == Some("disk")
                        && d.get("pool").map(String::as_str) == Some(pool)
                })
            })
            .map(|p| {
                crate::model::names::with_project(&format!("/1.0/profiles/{}", p.name), &p.project)
            }),
    );
    out
}

/// [`users_of`] each of `pools`.
pub async fn used_by(cx: &Ctx, pools: &[&str]) -> Result<Vec<Vec<String>>> {
    let (volumes, profiles) = cx
        .db
        .read(|c| {
            Ok::<_, DbError>((
                crate::db::volumes::list(c, None, None)?,
                crate::db::profiles::list(c)?,
            ))
        })
        .await?;
    Ok(pools
        .iter()
        .map(|p| users_of(p, &volumes, &profiles))
        .collect())
}

/// Whether `e` says an object is missing (for callers that treat that as done).
pub fn is_not_found(e: &berth_storage::StorageError) -> bool {
    e.kind() == berth_storage::StorageErrorKind::NotFound
}
