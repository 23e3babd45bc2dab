//! Snapshots of custom volumes: taken (named by the volume's `snapshots.pattern`,
//! expiring by its `snapshots.expiry`), listed, changed, renamed, deleted, and restored
//! into the volume. A snapshot is the driver's snapshot of the volume (a subvolume
//! snapshot on btrfs, a copy on dir) plus a row keeping the volume's configuration.
//!
//! Rows and files are kept in step: a snapshot's files are made before its row and go
//! after it, so a crash leaves at most files without a row, which a later snapshot of
//! the same name replaces.

use berth_storage::VolumeType;

use super::volume::{CUSTOM, Scope, get, url};
use crate::ctx::Ctx;
use crate::db::DbError;
use crate::error::{Failure, Result};
use crate::model::names::SnapshotName;
use crate::model::records::{VolumeRecord, VolumeSnapshotRecord};
use crate::time::NEVER;

fn not_found(volume: &str, snap: &str) -> Failure {
    Failure::not_found(format!(
        "Snapshot {snap:?} of storage volume {volume:?} not found"
    ))
}

fn exists(snap: &str) -> Failure {
    Failure::exists(format!("Snapshot {snap:?} already exists"))
}

/// A snapshot's URL.
pub fn snapshot_url(v: &VolumeRecord, snap: &str) -> String {
    let base = url(v);
    match base.split_once('?') {
        Some((path, query)) => format!("{path}/snapshots/{snap}?{query}"),
        None => format!("{base}/snapshots/{snap}"),
    }
}

/// The snapshots of custom volume `name`, oldest first.
pub async fn list(cx: &Ctx, scope: &Scope, name: &str) -> Result<Vec<VolumeSnapshotRecord>> {
    let v = get(cx, scope, name).await?;
    cx.db
        .read(move |c| crate::db::volumes::snapshots(c, &v.pool, &v.name))
        .await
        .map_err(Into::into)
}

/// Snapshot `snap` of custom volume `name`.
pub async fn find(
    cx: &Ctx,
    scope: &Scope,
    name: &str,
    snap: &str,
) -> Result<(VolumeRecord, VolumeSnapshotRecord)> {
    let v = get(cx, scope, name).await?;
    let (p, h, s) = (v.pool.clone(), v.name.clone(), snap.to_owned());
    let rec = cx
        .db
        .read(move |c| crate::db::volumes::get_snapshot(c, &p, &h, &s))
        .await?
        .ok_or_else(|| not_found(name, snap))?;
    Ok((v, rec))
}

/// Whether an expiry is "never": year 1 (Go's zero time), however it is written.
fn is_never(e: &str) -> bool {
    e.is_empty() || e.starts_with("0001-01-01")
}

fn check_time(e: &str) -> Result<()> {
    if !is_never(e) && chrono::DateTime::parse_from_rfc3339(e).is_err() {
        return Err(Failure::invalid(format!(
            "Invalid value {e:?} for \"expires_at\": expected an RFC 3339 time"
        )));
    }
    Ok(())
}

/// Takes a snapshot of custom volume `name`: named `snap`, else by the volume's
/// `snapshots.pattern` (`snap%d`); expiring at `expires_at`, else by its
/// `snapshots.expiry`. Returns its name.
pub async fn take(
    cx: &Ctx,
    scope: &Scope,
    name: &str,
    snap: Option<SnapshotName>,
    expires_at: Option<String>,
) -> Result<String> {
    if let Some(e) = &expires_at {
        check_time(e)?;
    }
    let host = scope.host_name(name);
    let lock = cx.locks.volume(&scope.pool, &host);
    let _guard = lock.lock().await;
    let v = get(cx, scope, name).await?;
    let existing: Vec<String> = list(cx, scope, name)
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let snap = snap.map(|n| n.to_string()).unwrap_or_else(|| {
        crate::model::schedule::next_name(
            v.config
                .get("snapshots.pattern")
                .map_or("snap%d", String::as_str),
            &existing,
        )
    });
    if existing.contains(&snap) {
        return Err(exists(&snap));
    }
    let now = chrono::Utc::now();
    let expires_at = match expires_at {
        Some(e) => e,
        None => crate::model::schedule::expiry(
            v.config.get("snapshots.expiry").map_or("", String::as_str),
            now,
        )?
        .map_or_else(
            || NEVER.to_owned(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
    };
    let driver = super::driver(cx, &scope.pool)?;
    let (d, h, s) = (driver.clone(), host.clone(), snap.clone());
    tokio::task::spawn_blocking(move || {
        let t = VolumeType::Custom;
        // The database has no such snapshot: files under its name are left from a crash.
        if d.snapshot_path(t, &h, &s).exists() {
            d.delete_snapshot(t, &h, &s)?;
        }
        d.create_snapshot(t, &h, &s)
    })
    .await??;
    let rec = VolumeSnapshotRecord {
        pool: v.pool.clone(),
        volume: v.name.clone(),
        name: snap.clone(),
        description: String::new(),
        config: v.config.clone(),
        created_at: crate::time::now_rfc3339(),
        expires_at,
    };
    let written = cx
        .db
        .write(move |tx| crate::db::volumes::insert_snapshot(tx, &rec))
        .await;
    if let Err(e) = written {
        let _ = driver.delete_snapshot(VolumeType::Custom, &host, &snap);
        return Err(match e {
            DbError::Exists { .. } => exists(&snap),
            other => other.into(),
        });
    }
    super::volume::save_sidecar(cx, &v.pool, &v.name).await;
    cx.events.lifecycle(
        "storage-volume-snapshot-created",
        &snapshot_url(&v, &snap),
        None,
    );
    Ok(snap)
}

/// Changes a snapshot's description and expiry; `precondition` sees it as it is.
pub async fn update(
    cx: &Ctx,
    scope: &Scope,
    name: &str,
    snap: &str,
    precondition: impl FnOnce(&VolumeSnapshotRecord) -> Result<()>,
    description: Option<String>,
    expires_at: Option<String>,
) -> Result<()> {
    if let Some(e) = &expires_at {
        check_time(e)?;
    }
    let lock = cx.locks.volume(&scope.pool, &scope.host_name(name));
    let _guard = lock.lock().await;
    let (v, mut rec) = find(cx, scope, name, snap).await?;
    precondition(&rec)?;
    if let Some(d) = description {
        rec.description = d;
    }
    if let Some(e) = expires_at {
        rec.expires_at = e;
    }
    cx.db
        .write(move |tx| crate::db::volumes::put_snapshot(tx, &rec))
        .await?;
    super::volume::save_sidecar(cx, &v.pool, &v.name).await;
    cx.events.lifecycle(
        "storage-volume-snapshot-updated",
        &snapshot_url(&v, snap),
        None,
    );
    Ok(())
}

/// Renames a snapshot.
pub async fn rename(
    cx: &Ctx,
    scope: &Scope,
    name: &str,
    snap: &str,
    to: &SnapshotName,
) -> Result<()> {
    let lock = cx.locks.volume(&scope.pool, &scope.host_name(name));
    let _guard = lock.lock().await;
    let (v, _) = find(cx, scope, name, snap).await?;
    if find(cx, scope, name, to).await.is_ok() {
        return Err(exists(to));
    }
    let driver = super::driver(cx, &scope.pool)?;
    let (d, h, from, t) = (
        driver.clone(),
        v.name.clone(),
        snap.to_owned(),
        to.to_string(),
    );
    tokio::task::spawn_blocking(move || d.rename_snapshot(VolumeType::Custom, &h, &from, &t))
        .await??;
    let (p, h, from, t) = (
        v.pool.clone(),
        v.name.clone(),
        snap.to_owned(),
        to.to_string(),
    );
    let written = cx
        .db
        .write(move |tx| crate::db::volumes::rename_snapshot(tx, &p, &h, &from, &t))
        .await;
    if let Err(e) = written {
        let _ = driver.rename_snapshot(VolumeType::Custom, &v.name, to, snap);
        return Err(e.into());
    }
    super::volume::save_sidecar(cx, &v.pool, &v.name).await;
    cx.events.lifecycle(
        "storage-volume-snapshot-renamed",
        &snapshot_url(&v, to),
        None,
    );
    Ok(())
}

/// Deletes a snapshot: its row, then its files.
pub async fn delete(cx: &Ctx, scope: &Scope, name: &str, snap: &str) -> Result<()> {
    let lock = cx.locks.volume(&scope.pool, &scope.host_name(name));
    let _guard = lock.lock().await;
    let (v, _) = find(cx, scope, name, snap).await?;
    let (p, h, s) = (v.pool.clone(), v.name.clone(), snap.to_owned());
    cx.db
        .write(move |tx| crate::db::volumes::delete_snapshot(tx, &p, &h, &s))
        .await?;
    let driver = super::driver(cx, &scope.pool)?;
    let (h, s) = (v.name.clone(), snap.to_owned());
    tokio::task::spawn_blocking(
        move || match driver.delete_snapshot(VolumeType::Custom, &h, &s) {
            Err(e) if super::is_not_found(&e) => Ok(()),
            other => other,
        },
    )
    .await??;
    super::volume::save_sidecar(cx, &v.pool, &v.name).await;
    cx.events.lifecycle(
        "storage-volume-snapshot-deleted",
        &snapshot_url(&v, snap),
        None,
    );
    Ok(())
}

/// Rolls custom volume `name` back to snapshot `snap`; refused while a running instance
/// has it attached.
pub async fn restore(cx: &Ctx, scope: &Scope, name: &str, snap: &str) -> Result<()> {
    let lock = cx.locks.volume(&scope.pool, &scope.host_name(name));
    let _guard = lock.lock().await;
    let (v, _) = find(cx, scope, name, snap).await?;
    let _busy = super::disks::Busy::mark(cx, &scope.pool, &v.name);
    super::volume_copy::refuse_running_users(cx, &v, "restored").await?;
    let driver = super::driver(cx, &scope.pool)?;
    let (h, s) = (v.name.clone(), snap.to_owned());
    let size = super::volume::size_of(&v.config);
    tokio::task::spawn_blocking(move || {
        driver.restore_snapshot(VolumeType::Custom, &h, &s)?;
        // The restored tree is a new one (a btrfs clone has no limit): the size holds again.
        driver.set_quota(VolumeType::Custom, &h, size)
    })
    .await??;
    cx.events
        .lifecycle("storage-volume-restored", &url(&v), None);
    Ok(())
}

/// Deletes the snapshots of every custom volume whose expiry has passed (the background
/// pruner calls it with the instances' snapshots).
pub async fn prune_expired(cx: &Ctx) -> Result<()> {
    let now = chrono::Utc::now();
    let expired: Vec<(VolumeRecord, String)> = cx
        .db
        .read(move |c| {
            let mut out = Vec::new();
            for v in crate::db::volumes::list(c, None, Some(CUSTOM))? {
                for s in crate::db::volumes::snapshots(c, &v.pool, &v.name)? {
                    let due = !is_never(&s.expires_at)
                        && chrono::DateTime::parse_from_rfc3339(&s.expires_at)
                            .is_ok_and(|t| t < now);
                    if due {
                        out.push((v.clone(), s.name));
                    }
                }
            }
            Ok::<_, Failure>(out)
        })
        .await?;
    for (v, snap) in expired {
        let scope = Scope {
            pool: v.pool.clone(),
            project: v.project.clone(),
        };
        if let Err(e) = delete(cx, &scope, v.api_name(), &snap).await {
            tracing::warn!(volume = %v.name, snapshot = %snap, error = %e.message(), "Expired snapshot not deleted");
        }
    }
    Ok(())
}
