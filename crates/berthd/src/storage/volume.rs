//! Custom volumes: made, listed, changed and deleted on a pool, in a project.
//!
//! A custom volume is a directory (a subvolume on btrfs) under the pool's `custom/`,
//! named by its host-wide name (`PROJECT_NAME`, as Incus names it on disk), and a row in
//! `storage_volumes` with its project. The project holding a project's volumes
//! is itself when it has `features.storage.volumes`, else `default`.
//!
//! Its files are stored as the container sees them (uid 0 is 0): an attached volume is
//! bound in with an idmapped mount through the container's map, so containers with
//! different maps share it with the same owners, and no file is ever shifted on disk
//! (`security.shifted` is accepted and always in effect). Volumes are reachable by root
//! only: a pool's `custom/` is 0700.
//!
//! A volume is made under a dot-name (`.NAME.tmp`, which no volume name can take) and
//! renamed into place before its row is written: a crash half-way leaves only a
//! dot-name, which the pool's leftovers sweep at start removes.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::storage::{StorageVolume, StorageVolumePut};
use berth_storage::{Driver, VolumeType};

use crate::ctx::Ctx;
use crate::db::DbError;
use crate::error::{Failure, Result};
use crate::model::names::VolumeName;
use crate::model::records::VolumeRecord;
use crate::revert::Reverter;

/// The API name of the custom volume type.
pub const CUSTOM: &str = "custom";

/// Where a project's volumes live: the pool and the project holding them.
#[derive(Debug, Clone)]
pub struct Scope {
    pub pool: String,
    /// The project holding the volumes (the request's, or `default`).
    pub project: String,
}

impl Scope {
    /// The host-wide name of volume `name` of this scope.
    pub fn host_name(&self, name: &str) -> String {
        host_name(&self.project, name)
    }
}

/// The host-wide name of custom volume `name` of `project`: `PROJECT_NAME`, the project
/// always named (a project's name has no `_`, so no two volumes share one).
pub fn host_name(project: &str, name: &str) -> String {
    format!("{project}_{name}")
}

/// The scope of `project`'s volumes on `pool`; the pool and the project must exist.
pub async fn scope(cx: &Ctx, pool: &str, project: &str) -> Result<Scope> {
    super::get(cx, pool).await?;
    let rec = project_record(cx, project).await?;
    Ok(Scope {
        pool: pool.to_owned(),
        project: rec.volumes_project().to_owned(),
    })
}

/// Project `name`'s record.
async fn project_record(cx: &Ctx, name: &str) -> Result<crate::model::records::ProjectRecord> {
    let n = name.to_owned();
    cx.db
        .read(move |c| crate::db::projects::get(c, &n))
        .await?
        .ok_or_else(|| Failure::not_found(format!("Project {name:?} not found")))
}

pub fn not_found(scope: &Scope, name: &str) -> Failure {
    Failure::not_found(format!(
        "Storage volume {name:?} not found on pool {:?}",
        scope.pool
    ))
}

/// The URL of a custom volume, from its record.
pub fn url(v: &VolumeRecord) -> String {
    v.url()
}

/// A volume as the API shows it.
pub fn render(v: &VolumeRecord, used_by: Vec<String>) -> StorageVolume {
    StorageVolume {
        name: v.api_name().to_owned(),
        kind: v.kind.clone(),
        description: v.description.clone(),
        config: v.config.clone(),
        used_by,
        location: "none".to_owned(),
        content_type: "filesystem".to_owned(),
        project: v.project.clone(),
        created_at: v.created_at.clone(),
    }
}

/// Where the description of custom volume `host` is kept: beside it in the pool's
/// `custom/` (root's only), as `.HOST.yaml`, out of reach of the containers it is bound
/// into; what recovery rebuilds its record from.
pub fn sidecar(driver: &dyn Driver, host: &str) -> std::path::PathBuf {
    driver.volume_path(VolumeType::Custom, &format!(".{host}.yaml"))
}

/// Rewrites the description of custom volume `host` on `pool` (its row and its
/// snapshots' as `backup.yaml` has them). Best effort: a failure is logged.
pub async fn save_sidecar(cx: &Ctx, pool: &str, host: &str) {
    let (p, h) = (pool.to_owned(), host.to_owned());
    let found = cx
        .db
        .read(move |c| {
            let v = crate::db::volumes::get(c, &p, CUSTOM, &h)?;
            let snaps = crate::db::volumes::snapshots(c, &p, &h)?;
            Ok::<_, DbError>(v.map(|v| (v, snaps)))
        })
        .await;
    let (Ok(Some((v, snaps))), Some(driver)) = (found, cx.pools.get(pool)) else {
        return;
    };
    let config = berth_api::backup::BackupFileConfig {
        volume: serde_json::to_value(render(&v, Vec::new())).ok(),
        volume_snapshots: snaps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "description": s.description,
                    "config": s.config,
                    "content_type": "filesystem",
                    "created_at": s.created_at,
                    "expires_at": s.expires_at,
                })
            })
            .collect(),
        ..Default::default()
    };
    let path = sidecar(driver.as_ref(), host);
    let written = tokio::task::spawn_blocking(move || {
        let yaml = serde_saphyr::to_string(&config).map_err(std::io::Error::other)?;
        crate::paths::replace_file(&path, yaml.as_bytes())
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::warn!(
            volume = host,
            pool,
            "The volume's description was not written"
        );
    }
}

/// Custom volume `name` of the scope.
pub async fn get(cx: &Ctx, scope: &Scope, name: &str) -> Result<VolumeRecord> {
    let (p, n) = (scope.pool.clone(), scope.host_name(name));
    cx.db
        .read(move |c| crate::db::volumes::get(c, &p, CUSTOM, &n))
        .await?
        .ok_or_else(|| not_found(scope, name))
}

/// The configuration keys a custom volume takes, checked; `old` is the volume's
/// configuration when it is changed (its `volatile.` keys are kept, never set by hand).
pub fn check_config(
    driver: &dyn Driver,
    config: &BTreeMap<String, String>,
    old: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    for (k, v) in config {
        let bad = |expected: &str| {
            Failure::invalid(format!(
                "Invalid value {v:?} for storage volume key {k:?}: expected {expected}"
            ))
        };
        match k.as_str() {
            "size" => {
                let Some(bytes) = crate::model::limits::parse_size(v) else {
                    return Err(bad("a size such as 10GiB"));
                };
                let changed = old.and_then(|o| o.get(k)) != Some(v);
                if bytes > 0 && changed && !driver.info().quotas {
                    return Err(Failure::invalid(format!(
                        "Storage volume key \"size\" cannot be enforced on this pool: its {} driver has no quotas (a btrfs pool has)",
                        driver.info().name
                    )));
                }
            }
            "security.shifted" => {
                if !matches!(v.as_str(), "true" | "false") {
                    return Err(bad("true or false"));
                }
            }
            "snapshots.expiry" => {
                crate::model::schedule::expiry(v, chrono::Utc::now())?;
            }
            "snapshots.pattern" => crate::model::schedule::check_pattern(v)?,
            k if k.starts_with("user.") => {}
            k if k.starts_with("volatile.") && old.and_then(|o| o.get(k)) == Some(v) => {}
            other => {
                return Err(Failure::invalid(format!(
                    "Unknown storage volume key {other:?}"
                )));
            }
        }
    }
    Ok(())
}

/// The size a volume's configuration sets, if any (0 is none).
pub fn size_of(config: &BTreeMap<String, String>) -> Option<u64> {
    config
        .get("size")
        .and_then(|s| crate::model::limits::parse_size(s))
        .filter(|n| *n > 0)
}

/// What a new custom volume is.
#[derive(Debug, Clone)]
pub struct NewVolume {
    pub name: VolumeName,
    pub description: String,
    pub config: BTreeMap<String, String>,
}

/// Checks a content type: only filesystem volumes are made (berthd runs containers).
pub fn check_content_type(content_type: &str) -> Result<()> {
    match content_type {
        "" | "filesystem" => Ok(()),
        other => Err(Failure::invalid(format!(
            "Storage volume content type {other:?} is not supported: berthd makes filesystem volumes"
        ))),
    }
}

/// Checks a new volume against its pool and the volumes there, before anything is made.
pub async fn check_new(cx: &Ctx, scope: &Scope, new: &NewVolume) -> Result<Arc<dyn Driver>> {
    let driver = super::driver(cx, &scope.pool)?;
    check_config(driver.as_ref(), &new.config, None)?;
    if get(cx, scope, &new.name).await.is_ok() {
        return Err(exists(scope, &new.name));
    }
    Ok(driver)
}

pub fn exists(scope: &Scope, name: &str) -> Failure {
    Failure::exists(format!(
        "Storage volume {name:?} already exists on pool {:?}",
        scope.pool
    ))
}

/// The dot-name a volume is made under before it is renamed into place.
pub fn temp_name(host: &str) -> String {
    format!(".{host}.tmp")
}

/// Makes an empty custom volume.
pub async fn create(cx: &Ctx, scope: &Scope, new: NewVolume) -> Result<()> {
    let host = scope.host_name(&new.name);
    let lock = cx.locks.volume(&scope.pool, &host);
    let _guard = lock.lock().await;
    let driver = check_new(cx, scope, &new).await?;
    let size = size_of(&new.config);
    let (d, h) = (driver.clone(), host.clone());
    place(scope, &driver, &host, move || {
        let tmp = temp_name(&h);
        d.create_volume(VolumeType::Custom, &tmp)?;
        Ok(tmp)
    })
    .await?;
    let mut undo = Reverter::new();
    let (d, h) = (driver.clone(), host.clone());
    undo.add("delete the new volume", move || {
        Ok(d.delete_volume(VolumeType::Custom, &h)?)
    });
    if size.is_some() {
        let (d, h) = (driver.clone(), host.clone());
        tokio::task::spawn_blocking(move || d.set_quota(VolumeType::Custom, &h, size)).await??;
    }
    let rec = VolumeRecord {
        pool: scope.pool.clone(),
        project: scope.project.clone(),
        kind: CUSTOM.to_owned(),
        name: host,
        description: new.description,
        config: new.config,
        created_at: crate::time::now_rfc3339(),
    };
    insert(cx, scope, &rec, &new.name).await?;
    undo.success();
    save_sidecar(cx, &scope.pool, &rec.name).await;
    cx.events
        .lifecycle("storage-volume-created", &url(&rec), None);
    Ok(())
}

/// Runs `make` (which makes a volume under a dot-name and returns it) on a blocking
/// thread, then renames the result to `host`. A volume of that name left on disk without
/// a row is refused rather than replaced: it may be data `berth admin recover` can
/// bring back.
pub async fn place(
    scope: &Scope,
    driver: &Arc<dyn Driver>,
    host: &str,
    make: impl FnOnce() -> std::result::Result<String, berth_storage::StorageError> + Send + 'static,
) -> Result<()> {
    let d = driver.clone();
    let h = host.to_owned();
    let on_disk =
        tokio::task::spawn_blocking(move || d.volume_path(VolumeType::Custom, &h).exists()).await?;
    if on_disk {
        let name = host
            .strip_prefix(&format!("{}_", scope.project))
            .unwrap_or(host);
        return Err(Failure::conflict(format!(
            "Storage volume {name:?} is on pool {:?} but not recorded (a crash left it?): bring it back with `berth admin recover`, or remove it",
            scope.pool
        )));
    }
    let (d, h) = (driver.clone(), host.to_owned());
    tokio::task::spawn_blocking(move || {
        let tmp = make()?;
        let renamed = d.rename_volume(VolumeType::Custom, &tmp, &h);
        if renamed.is_err() {
            let _ = d.delete_volume(VolumeType::Custom, &tmp);
            let _ = d.delete_snapshots(VolumeType::Custom, &tmp);
        }
        renamed?;
        d.rename_snapshots(VolumeType::Custom, &tmp, &h)
    })
    .await??;
    Ok(())
}

/// Records a volume whose files are in place.
pub async fn insert(cx: &Ctx, scope: &Scope, rec: &VolumeRecord, name: &str) -> Result<()> {
    let row = rec.clone();
    cx.db
        .write(move |tx| crate::db::volumes::insert(tx, &row))
        .await
        .map_err(|e| match e {
            DbError::Exists { .. } => exists(scope, name),
            DbError::Missing => super::not_found(&scope.pool),
            other => other.into(),
        })
}

/// Replaces (`replace`) or merges a custom volume's description and configuration; a
/// changed `size` holds at once. `precondition` sees the volume as it is (an ETag check).
pub async fn update(
    cx: &Ctx,
    scope: &Scope,
    name: &str,
    precondition: impl FnOnce(&VolumeRecord) -> Result<()>,
    req: StorageVolumePut,
    replace: bool,
) -> Result<()> {
    let host = scope.host_name(name);
    let lock = cx.locks.volume(&scope.pool, &host);
    let _guard = lock.lock().await;
    let old = get(cx, scope, name).await?;
    precondition(&old)?;
    let driver = super::driver(cx, &scope.pool)?;
    let mut rec = old.clone();
    let volatile = crate::model::volatile_keys(&old.config);
    crate::model::merge_config(&mut rec.config, Some(req.config), replace);
    rec.config
        .retain(|k, v| !v.is_empty() && !k.starts_with("volatile."));
    check_config(driver.as_ref(), &rec.config, Some(&old.config))?;
    rec.config.extend(volatile);
    crate::model::merge_description(&mut rec.description, req.description, replace);
    let (before, after) = (size_of(&old.config), size_of(&rec.config));
    if before != after {
        let (d, h) = (driver.clone(), host.clone());
        tokio::task::spawn_blocking(move || d.set_quota(VolumeType::Custom, &h, after))
            .await?
            .map_err(|e| Failure::from(e).about(format_args!("Storage volume {name:?}")))?;
    }
    let row = rec.clone();
    let stored = cx
        .db
        .write(move |tx| crate::db::volumes::update(tx, &row))
        .await;
    if let Err(e) = stored {
        if before != after {
            let _ = driver.set_quota(VolumeType::Custom, &host, before);
        }
        return Err(e.into());
    }
    save_sidecar(cx, &scope.pool, &host).await;
    cx.events
        .lifecycle("storage-volume-updated", &url(&rec), None);
    Ok(())
}

/// Deletes a custom volume and its snapshots; refused while an instance or a profile
/// uses it. The row goes first (in the write that checks the users), then the files.
pub async fn delete(cx: &Ctx, scope: &Scope, name: &str) -> Result<()> {
    let host = scope.host_name(name);
    let lock = cx.locks.volume(&scope.pool, &host);
    let _guard = lock.lock().await;
    let rec = get(cx, scope, name).await?;
    let driver = super::driver(cx, &scope.pool)?;
    let _busy = super::disks::Busy::mark(cx, &scope.pool, &host);
    let (p, h, n) = (scope.pool.clone(), host.clone(), name.to_owned());
    // Under the profile lock: no instance or profile update that checked the volume is
    // there writes its device meanwhile. Let go before the files go (that may be long).
    let profiles = cx.locks.profiles.lock().await;
    cx.db
        .write(move |tx| {
            let users = super::disks::users(tx, &p, &h)?;
            if let Some(first) = users.first() {
                return Err(Failure::invalid(format!(
                    "Storage volume {n:?} is in use by {first}: detach it first"
                )));
            }
            Ok(crate::db::volumes::delete(tx, &p, CUSTOM, &h)?)
        })
        .await?;
    drop(profiles);
    let (d, h) = (driver.clone(), host.clone());
    let removed = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_file(sidecar(d.as_ref(), &h));
        d.delete_snapshots(VolumeType::Custom, &h)?;
        match d.delete_volume(VolumeType::Custom, &h) {
            Err(e) if super::is_not_found(&e) => Ok(()),
            other => other,
        }
    })
    .await?;
    if let Err(e) = removed {
        // The row is gone: the files stay for `berth admin recover` or a retry by hand.
        tracing::error!(volume = %host, error = %crate::error::chain(&e), "Volume files not removed");
        return Err(Failure::from(e).about("The volume was forgotten but its files remain"));
    }
    cx.events
        .lifecycle("storage-volume-deleted", &url(&rec), None);
    Ok(())
}

/// The volumes of a pool as the project `project` sees them (`None`: every project):
/// custom volumes of the project holding its volumes, and its instances' volumes.
pub async fn list(
    cx: &Ctx,
    pool: &str,
    project: Option<&str>,
    kind: Option<String>,
) -> Result<Vec<StorageVolume>> {
    if let Some(k) = &kind
        && VolumeType::parse(k).is_none()
        && k != "virtual-machine"
    {
        return Err(Failure::invalid(format!(
            "Invalid storage volume type {k:?}"
        )));
    }
    super::get(cx, pool).await?;
    let holder = match project {
        Some(p) => Some(project_record(cx, p).await?),
        None => None,
    };
    let p = pool.to_owned();
    let (recs, users) = cx
        .db
        .read(move |c| {
            let recs = crate::db::volumes::list(c, Some(&p), kind.as_deref())?;
            let users = super::disks::all_users(c)?;
            Ok::<_, Failure>((recs, users))
        })
        .await?;
    Ok(recs
        .into_iter()
        .filter(|v| match &holder {
            None => true,
            Some(h) if v.kind == CUSTOM => v.project == h.volumes_project(),
            Some(h) => v.project == h.name,
        })
        .map(|v| {
            let used = users
                .get(&(v.pool.clone(), v.name.clone()))
                .cloned()
                .unwrap_or_default();
            let used = if v.kind == CUSTOM {
                used
            } else {
                vec![crate::model::names::instance_url(&v.name)]
            };
            render(&v, used)
        })
        .collect())
}

/// The URLs of what uses a custom volume (instances, then profiles).
pub async fn used_by(cx: &Ctx, v: &VolumeRecord) -> Result<Vec<String>> {
    let (p, h) = (v.pool.clone(), v.name.clone());
    let users = cx.db.read(move |c| super::disks::users(c, &p, &h)).await?;
    Ok(users.iter().map(super::disks::User::url).collect())
}
