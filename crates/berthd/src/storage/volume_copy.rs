//! Custom volumes copied (from a volume or one of its snapshots, to any pool and
//! project), renamed, and moved between pools or projects.
//!
//! A copy is made under a dot-name on the target pool and renamed into place before its
//! rows are written (see [`super::volume`]), so a crash leaves nothing a user sees. A
//! move is a copy followed by the source's deletion; the instances and profiles that
//! attach the volume are repointed in the same write that records the move. A rename or
//! a move is refused while a running instance has the volume attached.

use std::sync::Arc;

use berth_api::instance::Device;
use berth_storage::{Driver, VolumeType};
use rusqlite::Connection;

use super::disks::Busy;
use super::disks::{User, volume_of};
use super::volume::{CUSTOM, NewVolume, Scope, exists, get, place, size_of, url};
use crate::ctx::Ctx;
use crate::db::DbError;
use crate::error::{Failure, Result};
use crate::model::records::{VolumeRecord, VolumeSnapshotRecord};
use crate::revert::Reverter;

/// Where a copy's content comes from.
#[derive(Debug, Clone)]
pub struct Source {
    pub scope: Scope,
    pub name: String,
    /// A snapshot of it, copied as the new volume's content (no snapshots then).
    pub snapshot: Option<String>,
    /// Leave the source's snapshots behind.
    pub volume_only: bool,
}

/// Takes the locks of two volumes in a fixed order (one when they are the same).
async fn lock_both(
    cx: &Ctx,
    a: (&str, &str),
    b: (&str, &str),
) -> (
    tokio::sync::OwnedMutexGuard<()>,
    Option<tokio::sync::OwnedMutexGuard<()>>,
) {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    let one = cx.locks.volume(first.0, first.1).lock_owned().await;
    let two = if first == second {
        None
    } else {
        Some(cx.locks.volume(second.0, second.1).lock_owned().await)
    };
    (one, two)
}

/// Refuses when a running instance has volume `v` attached (`what`: what would be done).
pub async fn refuse_running_users(cx: &Ctx, v: &VolumeRecord, what: &str) -> Result<()> {
    let (p, h) = (v.pool.clone(), v.name.clone());
    let users = cx.db.read(move |c| super::disks::users(c, &p, &h)).await?;
    for u in users {
        let stopped = match &u {
            User::Instance(name) => {
                let (driver, n) = (cx.driver.clone(), name.clone());
                tokio::task::spawn_blocking(move || driver.is_stopped(&n)).await?
            }
            User::Profile(..) => true,
        };
        if !stopped {
            return Err(Failure::invalid(format!(
                "Storage volume {:?} cannot be {what} while {u} uses it and is running",
                v.api_name()
            )));
        }
    }
    Ok(())
}

/// The volume and the snapshots a copy takes, and their paths on the source pool.
struct Plan {
    from: VolumeRecord,
    content: std::path::PathBuf,
    snapshots: Vec<(VolumeSnapshotRecord, std::path::PathBuf)>,
}

async fn plan(cx: &Ctx, source: &Source) -> Result<(Plan, Arc<dyn Driver>)> {
    let from = get(cx, &source.scope, &source.name).await?;
    let driver = super::driver(cx, &source.scope.pool)?;
    let snapshots = super::volume_snapshot::list(cx, &source.scope, &source.name).await?;
    let content = match &source.snapshot {
        Some(s) => {
            snapshots.iter().find(|r| &r.name == s).ok_or_else(|| {
                Failure::not_found(format!(
                    "Snapshot {s:?} of storage volume {:?} not found",
                    source.name
                ))
            })?;
            driver.snapshot_path(VolumeType::Custom, &from.name, s)
        }
        None => driver.volume_path(VolumeType::Custom, &from.name),
    };
    let snapshots = if source.snapshot.is_some() || source.volume_only {
        Vec::new()
    } else {
        snapshots
            .into_iter()
            .map(|s| {
                let p = driver.snapshot_path(VolumeType::Custom, &from.name, &s.name);
                (s, p)
            })
            .collect()
    };
    Ok((
        Plan {
            from,
            content,
            snapshots,
        },
        driver,
    ))
}

/// Copies `plan` to volume `host` of `target`, with `config` and `description`, and
/// records it; `more` runs in the same write (a move deletes its source there). The
/// caller holds both volumes' locks. A failure takes the copy back.
#[allow(clippy::too_many_arguments)]
async fn make_copy(
    cx: &Ctx,
    target: &Scope,
    name: &str,
    host: &str,
    plan: &Plan,
    description: String,
    config: std::collections::BTreeMap<String, String>,
    more: impl FnOnce(&Connection) -> Result<()> + Send + 'static,
) -> Result<VolumeRecord> {
    let driver = super::driver(cx, &target.pool)?;
    super::volume::check_config(driver.as_ref(), &config, None)?;
    if get(cx, target, name).await.is_ok() {
        return Err(exists(target, name));
    }
    let (d, h) = (driver.clone(), host.to_owned());
    let content = plan.content.clone();
    let snaps: Vec<(String, std::path::PathBuf)> = plan
        .snapshots
        .iter()
        .map(|(s, p)| (s.name.clone(), p.clone()))
        .collect();
    place(target, &driver, host, move || {
        let tmp = super::volume::temp_name(&h);
        let t = VolumeType::Custom;
        // Snapshots first, oldest first, then the volume: on btrfs each is a snapshot.
        let made = snaps
            .iter()
            .try_for_each(|(s, p)| d.create_snapshot_from(t, &tmp, s, p))
            .and_then(|()| d.create_volume_from(t, &tmp, &content));
        if let Err(e) = made {
            let _ = d.delete_volume(t, &tmp);
            let _ = d.delete_snapshots(t, &tmp);
            return Err(e);
        }
        Ok(tmp)
    })
    .await?;
    let mut undo = Reverter::new();
    let (d, h) = (driver.clone(), host.to_owned());
    undo.add("delete the copy", move || {
        d.delete_snapshots(VolumeType::Custom, &h)?;
        Ok(d.delete_volume(VolumeType::Custom, &h)?)
    });
    let size = size_of(&config);
    if size.is_some() {
        let (d, h) = (driver.clone(), host.to_owned());
        tokio::task::spawn_blocking(move || d.set_quota(VolumeType::Custom, &h, size)).await??;
    }
    let rec = VolumeRecord {
        pool: target.pool.clone(),
        project: target.project.clone(),
        kind: CUSTOM.to_owned(),
        name: host.to_owned(),
        description,
        config,
        created_at: crate::time::now_rfc3339(),
    };
    let snapshot_rows: Vec<VolumeSnapshotRecord> = plan
        .snapshots
        .iter()
        .map(|(s, _)| VolumeSnapshotRecord {
            pool: target.pool.clone(),
            volume: host.to_owned(),
            ..s.clone()
        })
        .collect();
    let row = rec.clone();
    let (pool, shown) = (target.pool.clone(), name.to_owned());
    // The profile lock: the instances and profiles a move repoints are not written
    // meanwhile by an update that read them before.
    let _profiles = cx.locks.profiles.lock().await;
    cx.db
        .write(move |tx| {
            crate::db::volumes::insert(tx, &row).map_err(|e| match e {
                DbError::Exists { .. } => Failure::exists(format!(
                    "Storage volume {shown:?} already exists on pool {pool:?}"
                )),
                DbError::Missing => super::not_found(&pool),
                other => other.into(),
            })?;
            for s in &snapshot_rows {
                crate::db::volumes::put_snapshot(tx, s)?;
            }
            more(tx)
        })
        .await?;
    undo.success();
    Ok(rec)
}

/// Copies a custom volume (or one of its snapshots) to a new volume of `target`. The new
/// volume takes `new.config` and `new.description`, or the source's when `new.config` is
/// empty.
pub async fn copy(cx: &Ctx, target: &Scope, new: NewVolume, source: Source) -> Result<()> {
    let host = target.host_name(&new.name);
    let from_host = source.scope.host_name(&source.name);
    let _locks = lock_both(cx, (&source.scope.pool, &from_host), (&target.pool, &host)).await;
    let (plan, _) = plan(cx, &source).await?;
    let config = if new.config.is_empty() {
        plan.from
            .config
            .iter()
            .filter(|(k, _)| !k.starts_with("volatile."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    } else {
        new.config
    };
    let description = if new.description.is_empty() {
        plan.from.description.clone()
    } else {
        new.description
    };
    let rec = make_copy(
        cx,
        target,
        &new.name,
        &host,
        &plan,
        description,
        config,
        |_| Ok(()),
    )
    .await?;
    super::volume::save_sidecar(cx, &rec.pool, &rec.name).await;
    cx.events
        .lifecycle("storage-volume-created", &url(&rec), None);
    Ok(())
}

/// Renames custom volume `name` of `scope` to `to`, with its snapshots; the instances
/// and profiles attaching it follow.
pub async fn rename(cx: &Ctx, scope: &Scope, name: &str, to: &str) -> Result<()> {
    let (from_host, to_host) = (scope.host_name(name), scope.host_name(to));
    let _locks = lock_both(cx, (&scope.pool, &from_host), (&scope.pool, &to_host)).await;
    let v = get(cx, scope, name).await?;
    let _busy = Busy::mark(cx, &scope.pool, &from_host);
    refuse_running_users(cx, &v, "renamed").await?;
    if get(cx, scope, to).await.is_ok() {
        return Err(exists(scope, to));
    }
    let driver = super::driver(cx, &scope.pool)?;
    let (d, f, t) = (driver.clone(), from_host.clone(), to_host.clone());
    tokio::task::spawn_blocking(move || {
        d.rename_volume(VolumeType::Custom, &f, &t)?;
        if let Err(e) = d.rename_snapshots(VolumeType::Custom, &f, &t) {
            let _ = d.rename_volume(VolumeType::Custom, &t, &f);
            return Err(e);
        }
        Ok(())
    })
    .await??;
    let (pool, project) = (scope.pool.clone(), scope.project.clone());
    let (f, t, old, new) = (
        from_host.clone(),
        to_host.clone(),
        name.to_owned(),
        to.to_owned(),
    );
    let profiles = cx.locks.profiles.lock().await;
    let written = cx
        .db
        .write(move |tx| {
            crate::db::volumes::rename(tx, &pool, &f, &t, &project)?;
            repoint(tx, &project, (&pool, &old), (&pool, &new))
        })
        .await;
    drop(profiles);
    if let Err(e) = written {
        let _ = driver.rename_snapshots(VolumeType::Custom, &to_host, &from_host);
        let _ = driver.rename_volume(VolumeType::Custom, &to_host, &from_host);
        return Err(e);
    }
    let _ = std::fs::remove_file(super::volume::sidecar(driver.as_ref(), &from_host));
    super::volume::save_sidecar(cx, &scope.pool, &to_host).await;
    let moved = VolumeRecord { name: to_host, ..v };
    cx.events
        .lifecycle("storage-volume-renamed", &url(&moved), None);
    Ok(())
}

/// Moves custom volume `name` of `from` to `target` (another pool or project) as `to`,
/// with its snapshots unless `volume_only`; the instances and profiles attaching it
/// follow (a move to another project is refused while anything attaches it).
pub async fn move_to(
    cx: &Ctx,
    from: &Scope,
    name: &str,
    target: &Scope,
    to: &str,
    volume_only: bool,
) -> Result<()> {
    let (from_host, to_host) = (from.host_name(name), target.host_name(to));
    let _locks = lock_both(cx, (&from.pool, &from_host), (&target.pool, &to_host)).await;
    let v = get(cx, from, name).await?;
    let _busy = Busy::mark(cx, &from.pool, &from_host);
    refuse_running_users(cx, &v, "moved").await?;
    if from.project != target.project {
        let users = super::volume::used_by(cx, &v).await?;
        if let Some(u) = users.first() {
            return Err(Failure::invalid(format!(
                "Storage volume {name:?} cannot move to another project while {u} uses it"
            )));
        }
    }
    let source = Source {
        scope: from.clone(),
        name: name.to_owned(),
        snapshot: None,
        volume_only,
    };
    let (plan, source_driver) = plan(cx, &source).await?;
    let config = v
        .config
        .iter()
        .filter(|(k, _)| !k.starts_with("volatile."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // The copy, the source's row going and its users repointed: one write.
    let (fp, fh, project) = (from.pool.clone(), from_host.clone(), from.project.clone());
    let (tp, old, new) = (target.pool.clone(), name.to_owned(), to.to_owned());
    let rec = make_copy(
        cx,
        target,
        to,
        &to_host,
        &plan,
        v.description.clone(),
        config,
        move |tx| {
            crate::db::volumes::delete(tx, &fp, CUSTOM, &fh)?;
            repoint(tx, &project, (&fp, &old), (&tp, &new))
        },
    )
    .await?;
    super::volume::save_sidecar(cx, &rec.pool, &rec.name).await;
    let h = from_host.clone();
    let removed = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_file(super::volume::sidecar(source_driver.as_ref(), &h));
        source_driver.delete_snapshots(VolumeType::Custom, &h)?;
        source_driver.delete_volume(VolumeType::Custom, &h)
    })
    .await?;
    if let Err(e) = removed {
        tracing::error!(volume = %from_host, error = %crate::error::chain(&e), "Moved volume's old files not removed");
    }
    cx.events
        .lifecycle("storage-volume-moved", &url(&rec), None);
    Ok(())
}

/// Points every instance (and instance snapshot) and profile of the projects whose volumes
/// `holder` holds that attach volume `from` (pool, name) at `to`.
fn repoint(tx: &Connection, holder: &str, from: (&str, &str), to: (&str, &str)) -> Result<()> {
    if from == to {
        return Ok(());
    }
    let projects = crate::db::projects::list(tx)?;
    let holds = |project: &str| {
        projects
            .iter()
            .find(|p| p.name == project)
            .map_or(project, |p| p.volumes_project())
            == holder
    };
    let change = |devices: &mut std::collections::BTreeMap<String, Device>| {
        let mut changed = false;
        for d in devices.values_mut() {
            if volume_of(d) == Some(from) {
                d.insert("pool".to_owned(), to.0.to_owned());
                d.insert("source".to_owned(), to.1.to_owned());
                changed = true;
            }
        }
        changed
    };
    for mut rec in crate::db::instances::list(tx)? {
        if !holds(&rec.project) {
            continue;
        }
        if change(&mut rec.devices) {
            crate::db::instances::update(tx, &rec)?;
        }
        // A snapshot's devices too: restored, it attaches the volume where it now is.
        for mut s in crate::db::snapshots::list(tx, &rec.name)? {
            if change(&mut s.devices) {
                crate::db::snapshots::set_devices(tx, &s)?;
            }
        }
    }
    for mut p in crate::db::profiles::list(tx)? {
        if holds(&p.project) && change(&mut p.devices) {
            crate::db::profiles::update(tx, &p)?;
        }
    }
    Ok(())
}
