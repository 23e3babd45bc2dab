//! Snapshots: take, delete, rename and restore them, by hand or on a schedule.
//!
//! A snapshot is a copy of the instance's volume on its pool (the driver's
//! `create_snapshot`) plus a row holding the instance's own configuration, devices and
//! profiles at that moment. A stateful snapshot also keeps the running processes (a CRIU
//! dump in the snapshot's volume, `state/`). Restoring checks the snapshot's
//! configuration as an update would (project restrictions first, a 403 naming the
//! restriction; then keys and limits) before anything changes, stops a running
//! instance, swaps the volume's content for a copy of the snapshot's, writes the
//! configuration back and starts it again. A restore a crash interrupted is finished at
//! the next start ([`recover`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::instance::InstanceStatePut;
use berth_storage::VolumeType;

use super::query::is_stopped;
use super::state::set_power;
use super::{blocking, expanded, find, pool_of, profiles};
use crate::ctx::Ctx;
use crate::db::DbError;
use crate::error::{Failure, Result};
use crate::lxc::checkpoint;
use crate::model::expand::{expand, expand_parts, flag, root_pool};
use crate::model::names::{SnapshotName, api_name, instance_url, instance_url_sub};
use crate::model::records::{InstanceRecord, SnapshotRecord};
use crate::time::NEVER;

fn not_found(instance: &str, snap: &str) -> Failure {
    Failure::not_found(format!(
        "Snapshot {snap:?} of instance {:?} not found",
        api_name(instance)
    ))
}

fn exists(snap: &str) -> Failure {
    Failure::exists(format!("Snapshot {snap:?} already exists"))
}

/// A snapshot's URL.
pub fn url(instance: &str, snap: &str) -> String {
    instance_url_sub(instance, &format!("/snapshots/{snap}"))
}

/// Snapshot `snap` of instance `instance`.
pub async fn find_snapshot(cx: &Ctx, instance: &str, snap: &str) -> Result<SnapshotRecord> {
    let (i, s) = (instance.to_owned(), snap.to_owned());
    cx.db
        .read(move |c| crate::db::snapshots::get(c, &i, &s))
        .await?
        .ok_or_else(|| not_found(instance, snap))
}

/// An instance's snapshots, oldest first.
pub async fn list(cx: &Ctx, instance: &str) -> Result<Vec<SnapshotRecord>> {
    find(cx, instance).await?;
    let n = instance.to_owned();
    Ok(cx
        .db
        .read(move |c| crate::db::snapshots::list(c, &n))
        .await?)
}

/// A snapshot's expansion through its profiles as `project` has them now (a profile
/// deleted since is left out).
pub async fn expansion(
    cx: &Ctx,
    project: &str,
    s: &SnapshotRecord,
) -> crate::model::expand::Expansion {
    let mut found = Vec::new();
    for p in &s.profiles {
        if let Ok(mut one) = profiles(cx, project, std::slice::from_ref(p)).await {
            found.append(&mut one);
        }
    }
    expand_parts(&found, &s.config, &s.devices)
}

/// The parts of a new snapshot a request gives.
#[derive(Debug, Default)]
pub struct NewSnapshot {
    /// Its name; by `snapshots.pattern` when `None`.
    pub name: Option<SnapshotName>,
    pub expires_at: Option<String>,
    pub stateful: bool,
}

/// Checks a snapshot request for instance `name`; returns the instance's `volatile.uuid`
/// (the snapshot is of this instance, not one created since under its name).
pub async fn check_take(cx: &Ctx, name: &str, new: &NewSnapshot) -> Result<String> {
    let rec = find(cx, name).await?;
    if new.stateful {
        super::state::check_stateful(cx, &rec, "snapshot").await?;
    }
    crate::project::check_snapshots(cx, &rec.project).await?;
    if let Some(snap) = &new.name {
        let (i, s) = (name.to_owned(), snap.to_string());
        if cx
            .db
            .read(move |c| crate::db::snapshots::get(c, &i, &s))
            .await?
            .is_some()
        {
            return Err(exists(snap));
        }
    }
    if let Some(e) = &new.expires_at {
        check_time(e)?;
    }
    Ok(rec.uuid().to_owned())
}

fn check_time(e: &str) -> Result<()> {
    if chrono::DateTime::parse_from_rfc3339(e).is_err() {
        return Err(Failure::invalid(format!(
            "Invalid value {e:?} for \"expires_at\": expected an RFC 3339 time"
        )));
    }
    Ok(())
}

/// When a snapshot taken at `now` expires under the instance's `snapshots.expiry`.
fn expiry_of(
    config: &BTreeMap<String, String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String> {
    let spec = config.get("snapshots.expiry").map_or("", String::as_str);
    Ok(crate::model::schedule::expiry(spec, now)?.map_or_else(
        || NEVER.to_owned(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    ))
}

/// Takes a snapshot of instance `name` under its lock, which must still be the instance
/// `uuid` names.
pub async fn take_locked(cx: &Ctx, name: &str, uuid: &str, new: NewSnapshot) -> Result<String> {
    let lock = cx.locks.instance(name);
    let _guard = lock.lock().await;
    take(cx, name, uuid, new, chrono::Utc::now()).await
}

/// Takes a snapshot of instance `name` (whose lock the caller holds), which must still be
/// the instance `uuid` names: named `new.name`, else by `snapshots.pattern`; expiring at
/// `new.expires_at`, else by `snapshots.expiry` from `at`. A running instance is frozen
/// while its volume is copied, so nothing inside can swap a directory for a symlink under
/// the copy. A stateful snapshot checkpoints the running processes first (the instance
/// goes on) and keeps the state with the snapshot. Returns the snapshot's name.
async fn take(
    cx: &Ctx,
    name: &str,
    uuid: &str,
    new: NewSnapshot,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<String> {
    let rec = find(cx, name).await?;
    if rec.uuid() != uuid {
        return Err(Failure::conflict("The instance was replaced meanwhile"));
    }
    crate::project::check_snapshots(cx, &rec.project).await?;
    let (config, _) = expanded(cx, &rec).await?;
    let n = name.to_owned();
    let existing: Vec<String> = cx
        .db
        .read(move |c| crate::db::snapshots::list(c, &n))
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let snap = new.name.map(|n| n.to_string()).unwrap_or_else(|| {
        crate::model::schedule::next_name(
            config
                .get("snapshots.pattern")
                .map_or("snap%d", String::as_str),
            &existing,
        )
    });
    if existing.contains(&snap) {
        return Err(exists(&snap));
    }
    let expires_at = match new.expires_at {
        Some(e) => e,
        None => expiry_of(&config, at)?,
    };
    let stateful = new.stateful;
    let pool = pool_of(cx, &rec).await?;
    let record = SnapshotRecord {
        instance: rec.name.clone(),
        name: snap.clone(),
        description: String::new(),
        architecture: rec.architecture.clone(),
        ephemeral: rec.ephemeral,
        stateful,
        profiles: rec.profiles.clone(),
        config: rec.config.clone(),
        devices: rec.devices.clone(),
        created_at: crate::time::now_rfc3339(),
        expires_at,
    };
    let running = !is_stopped(cx, name).await;
    let lxcpath = cx.driver.lxcpath().to_owned();
    // A stateful snapshot keeps the instance frozen across the dump and the copy, so its
    // memory and its files are of one moment (criu leaves a frozen cgroup frozen).
    let held = stateful && !cx.driver.is_frozen(name);
    let thaw = |why: &str| {
        if held && let Err(e) = cx.driver.set_frozen(name, false) {
            tracing::error!(instance = %name, error = %e, "Failed to thaw the instance {why}");
        }
    };
    if stateful {
        if !running {
            return Err(Failure::invalid(
                "A stateful snapshot needs a running instance",
            ));
        }
        if held {
            cx.driver
                .set_frozen(name, true)
                .map_err(|e| e.about("Failed to freeze the instance for its snapshot"))?;
        }
        if let Err(e) = cx.driver.checkpoint(name, false).await {
            thaw("after a failed dump");
            return Err(e);
        }
    }
    let (i, s, copy_pool) = (rec.name.clone(), snap.clone(), pool.clone());
    let copied = blocking(cx, move |driver| {
        let t = VolumeType::Container;
        // The database has no such snapshot: files under its name are left from a crash.
        if copy_pool.snapshot_path(t, &i, &s).exists() {
            copy_pool.delete_snapshot(t, &i, &s)?;
        }
        let freeze = running && !driver.is_frozen(&i);
        if freeze {
            driver
                .set_frozen(&i, true)
                .map_err(|e| e.about("Failed to freeze the instance for its snapshot"))?;
        }
        let copied = copy_pool.create_snapshot(t, &i, &s);
        if freeze && let Err(e) = driver.set_frozen(&i, false) {
            tracing::error!(instance = %i, error = %e, "Failed to thaw the instance after its snapshot");
        }
        Ok::<_, Failure>(copied?)
    })
    .await
    .and_then(|r| r);
    thaw("after its snapshot");
    let copied = match copied {
        Ok(()) if stateful => {
            let at = pool.snapshot_path(VolumeType::Container, &rec.name, &snap);
            let (l, n) = (lxcpath.clone(), rec.name.clone());
            tokio::task::spawn_blocking(move || checkpoint::keep_with_snapshot(&l, &n, &at))
                .await
                .map_err(Failure::from)
                .and_then(|r| r)
        }
        other => other,
    };
    let drop_files = || {
        if let Err(e) = pool.delete_snapshot(VolumeType::Container, &rec.name, &snap) {
            tracing::warn!(instance = %name, snapshot = %snap, error = %e, "Snapshot files not removed");
        }
    };
    if let Err(e) = copied {
        checkpoint::discard_snapshot_dump(&lxcpath, &rec.name);
        drop_files();
        return Err(e);
    }
    let stored = record.clone();
    let inserted = cx
        .db
        .write(move |tx| crate::db::snapshots::insert(tx, &stored))
        .await;
    if let Err(e) = inserted {
        drop_files();
        return Err(match e {
            DbError::Exists { .. } => exists(&snap),
            other => other.into(),
        });
    }
    super::backup::save_file(cx, &record.instance).await;
    cx.events.lifecycle(
        "instance-snapshot-created",
        &url(&record.instance, &record.name),
        None,
    );
    Ok(snap)
}

/// Deletes snapshot `snap` of instance `name` (whose lock the caller holds): files, then
/// the row.
pub(crate) async fn remove(
    cx: &Ctx,
    pool: Arc<dyn berth_storage::Driver>,
    name: &str,
    snap: &str,
) -> Result<()> {
    let (n, s) = (name.to_owned(), snap.to_owned());
    let deleted =
        tokio::task::spawn_blocking(move || pool.delete_snapshot(VolumeType::Container, &n, &s))
            .await?;
    match deleted {
        Err(e) if !crate::storage::is_not_found(&e) => return Err(e.into()),
        _ => {}
    }
    let (n, s) = (name.to_owned(), snap.to_owned());
    cx.db
        .write(move |tx| crate::db::snapshots::delete(tx, &n, &s))
        .await?;
    super::backup::save_file(cx, name).await;
    cx.events
        .lifecycle("instance-snapshot-deleted", &url(name, snap), None);
    Ok(())
}

/// Checks that snapshot `snap` of instance `name` exists, and its pool is there.
pub async fn check_exists(cx: &Ctx, name: &str, snap: &str) -> Result<()> {
    let rec = find(cx, name).await?;
    find_snapshot(cx, name, snap).await?;
    pool_of(cx, &rec).await.map(drop)
}

/// Deletes snapshot `snap` of instance `name`, under the instance's lock.
pub async fn delete(cx: &Ctx, name: &str, snap: &str) -> Result<()> {
    let lock = cx.locks.instance(name);
    let _guard = lock.lock().await;
    let rec = find(cx, name).await?;
    find_snapshot(cx, name, snap).await?;
    let pool = pool_of(cx, &rec).await?;
    remove(cx, pool, name, snap).await
}

/// Checks that snapshot `snap` of instance `name` can be renamed `to`.
pub async fn check_rename(cx: &Ctx, name: &str, snap: &str, to: &SnapshotName) -> Result<()> {
    check_exists(cx, name, snap).await?;
    let (i, t) = (name.to_owned(), to.to_string());
    if cx
        .db
        .read(move |c| crate::db::snapshots::get(c, &i, &t))
        .await?
        .is_some()
    {
        return Err(exists(to));
    }
    Ok(())
}

/// Renames snapshot `snap` of instance `name` to `to`, under the instance's lock.
pub async fn rename(cx: &Ctx, name: &str, snap: &str, to: &SnapshotName) -> Result<()> {
    let lock = cx.locks.instance(name);
    let _guard = lock.lock().await;
    let rec = find(cx, name).await?;
    let pool = pool_of(cx, &rec).await?;
    let t = VolumeType::Container;
    pool.rename_snapshot(t, name, snap, to)?;
    let (i, f, tn) = (name.to_owned(), snap.to_owned(), to.to_string());
    let renamed = cx
        .db
        .write(move |tx| crate::db::snapshots::rename(tx, &i, &f, &tn))
        .await;
    if let Err(e) = renamed {
        // The files go back under the name the database still has.
        if let Err(undo) = pool.rename_snapshot(t, name, to, snap) {
            tracing::warn!(instance = name, snapshot = snap, error = %undo, "Undo step failed");
        }
        return Err(match e {
            DbError::Exists { .. } => exists(to),
            other => other.into(),
        });
    }
    let mut ctx = serde_json::Map::new();
    ctx.insert("old_name".into(), snap.into());
    super::backup::save_file(cx, name).await;
    cx.events
        .lifecycle("instance-snapshot-renamed", &url(name, to), Some(ctx));
    Ok(())
}

/// Changes a snapshot's description and expiry. `precondition` sees it as it is (an
/// ETag check).
pub async fn update(
    cx: &Ctx,
    name: &str,
    snap: &str,
    precondition: impl FnOnce(&SnapshotRecord) -> Result<()>,
    description: Option<String>,
    expires_at: Option<String>,
) -> Result<()> {
    let mut s = find_snapshot(cx, name, snap).await?;
    precondition(&s)?;
    if let Some(d) = description {
        s.description = d;
    }
    if let Some(e) = expires_at {
        check_time(&e)?;
        s.expires_at = e;
    }
    cx.db
        .write(move |tx| crate::db::snapshots::update(tx, &s))
        .await?;
    super::backup::save_file(cx, name).await;
    cx.events
        .lifecycle("instance-snapshot-updated", &url(name, snap), None);
    Ok(())
}

/// One pass of the snapshot scheduler for the minute of `now`: takes the snapshots whose
/// `snapshots.schedule` fires (of running instances, and of stopped ones with
/// `snapshots.schedule.stopped=true`), then deletes expired snapshots.
pub async fn scheduled_pass(cx: &Ctx, now: chrono::DateTime<chrono::Utc>) {
    let all = match crate::project::expand_readable(cx).await {
        Ok(all) => all,
        Err(e) => {
            tracing::error!(error = %crate::error::chain(&e), "Snapshot schedule pass skipped");
            return;
        }
    };
    for e in all {
        let schedule = e
            .config
            .get("snapshots.schedule")
            .map_or("", String::as_str);
        let Ok(schedules) = crate::model::schedule::parse_schedule(schedule) else {
            continue;
        };
        if !crate::model::schedule::fires(&schedules, now) {
            continue;
        }
        let running = !is_stopped(cx, &e.rec.name).await;
        if !running && !flag(&e.config, "snapshots.schedule.stopped") {
            continue;
        }
        if crate::project::check_snapshots(cx, &e.rec.project)
            .await
            .is_err()
        {
            continue;
        }
        let lock = cx.locks.instance(&e.rec.name);
        let _guard = lock.lock().await;
        if let Err(err) = take(cx, &e.rec.name, e.rec.uuid(), NewSnapshot::default(), now).await {
            tracing::warn!(instance = %e.rec.name, error = %err, "Scheduled snapshot failed");
        }
    }
    // Expired snapshots go, the custom volumes' too, and expired backups.
    if let Err(e) = crate::storage::volume_snapshot::prune_expired(cx).await {
        tracing::warn!(error = %e, "Expired volume snapshots not pruned");
    }
    super::backup::prune_expired(cx).await;
    let Ok(all) = cx.db.read(crate::db::snapshots::all).await else {
        return;
    };
    for s in all.into_values().flatten() {
        let expired = chrono::DateTime::parse_from_rfc3339(&s.expires_at)
            .is_ok_and(|t| s.expires_at != NEVER && t <= now);
        if !expired {
            continue;
        }
        let Ok(rec) = find(cx, &s.instance).await else {
            continue;
        };
        let Ok(pool) = pool_of(cx, &rec).await else {
            continue;
        };
        let lock = cx.locks.instance(&rec.name);
        let _guard = lock.lock().await;
        if let Err(e) = remove(cx, pool, &rec.name, &s.name).await {
            tracing::warn!(instance = %rec.name, snapshot = %s.name, error = %e, "Expired snapshot not deleted");
        }
    }
}

/// The instance record a restore of `s` gives `rec`: the snapshot's own config (with the
/// instance's `volatile.*`), devices, profiles and ephemeral flag.
fn restored_record(rec: &InstanceRecord, s: &SnapshotRecord) -> InstanceRecord {
    let mut new = rec.clone();
    new.config = s
        .config
        .iter()
        .filter(|(k, _)| !k.starts_with("volatile."))
        .chain(
            rec.config
                .iter()
                .filter(|(k, _)| k.starts_with("volatile.")),
        )
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    new.devices = s.devices.clone();
    new.profiles = s.profiles.clone();
    new.ephemeral = s.ephemeral;
    new
}

/// Checks that restoring `snap` of instance `name` is allowed and valid today
/// (restrictions first, as a 403), and with `stateful` that it has a state to restore;
/// returns the record it would give.
pub async fn check_restore(
    cx: &Ctx,
    name: &str,
    snap: &str,
    stateful: bool,
) -> Result<InstanceRecord> {
    let rec = find(cx, name).await?;
    let s = find_snapshot(cx, name, snap).await?;
    let new = restored_record(&rec, &s);
    let new_profiles = profiles(cx, &new.project, &new.profiles).await?;
    let (expanded, devices) = expand(&new_profiles, &new);
    let candidate = (new.name.clone(), expanded.clone(), devices.clone());
    crate::project::check_allowed(cx, &new.project, &candidate).await?;
    super::config::validate(cx, &new, &expanded)?;
    crate::project::check_limits(cx, &new.project, std::slice::from_ref(&candidate)).await?;
    let (_, old_devices) = super::expanded(cx, &rec).await?;
    if root_pool(&devices) != root_pool(&old_devices) {
        return Err(Failure::invalid(
            "The snapshot's root disk is on another pool",
        ));
    }
    if stateful {
        let pool = pool_of(cx, &new).await?;
        let at = pool.snapshot_path(VolumeType::Container, &new.name, snap);
        if !s.stateful || !at.join("state/inventory.img").exists() {
            return Err(Failure::invalid(format!(
                "Snapshot {snap:?} has no saved state (it is not stateful)"
            )));
        }
        if !flag(&expanded, "migration.stateful") {
            return Err(Failure::invalid(
                "A stateful restore needs migration.stateful=true in the configuration it restores",
            ));
        }
    }
    Ok(new)
}

/// [`check_restore`] for a request, which a stateful restore also needs CRIU for.
pub async fn check_restore_request(cx: &Ctx, name: &str, snap: &str, stateful: bool) -> Result<()> {
    check_restore(cx, name, snap, stateful).await?;
    if stateful {
        checkpoint::criu_check().await?;
    }
    Ok(())
}

/// The internal flag saying a restore of instance `name` is under way (its value: the
/// snapshot), so one a crash interrupted is finished at the next start.
fn restore_flag(name: &str) -> String {
    format!("restoring/{name}")
}

/// Swaps instance `name`'s volume for a copy of snapshot `snap` and stores the snapshot's
/// configuration, clearing the restore flag in the same write. Idempotent: a second run
/// copies again. The instance is stopped and its lock held.
async fn finish_restore(cx: &Ctx, name: &str, snap: &str) -> Result<()> {
    let rec = find(cx, name).await?;
    let s = find_snapshot(cx, name, snap).await?;
    let pool = pool_of(cx, &rec).await?;
    let (n, sn) = (name.to_owned(), snap.to_owned());
    let vol = super::volume(pool.as_ref(), name);
    tokio::task::spawn_blocking(move || pool.restore_snapshot(VolumeType::Container, &n, &sn))
        .await??;
    // A stateful snapshot's state came back with the volume: not the instance's (a
    // stateful restore took its copy before the swap).
    if let Err(e) = tokio::task::spawn_blocking(move || checkpoint::strip_volume(&vol))
        .await
        .map_err(Failure::from)
        .and_then(|r| r)
    {
        tracing::warn!(instance = %name, error = %e, "A restored volume keeps a snapshot's state");
    }
    let mut stored = restored_record(&rec, &s);
    let found = profiles(cx, &stored.project, &stored.profiles)
        .await
        .unwrap_or_default();
    let (expanded, _) = expand(&found, &stored);
    let ids = cx.ids;
    let flag = restore_flag(name);
    cx.db
        .write(move |tx| {
            super::config::assign_idmap(tx, &mut stored, &expanded, ids, false)?;
            crate::db::instances::update(tx, &stored)?;
            Ok::<_, Failure>(crate::db::internal::delete(tx, &flag)?)
        })
        .await
}

/// Finishes the restores a crash interrupted (their flag is still set): at start, before
/// instances are swept or started.
pub async fn recover(cx: &Ctx) {
    let flags = cx
        .db
        .read(|c| crate::db::internal::prefixed(c, "restoring/"))
        .await
        .unwrap_or_default();
    for (key, snap) in flags {
        let name = key.trim_start_matches("restoring/").to_owned();
        let finished = if is_stopped(cx, &name).await {
            finish_restore(cx, &name, &snap).await
        } else {
            Err(Failure::conflict("the instance runs"))
        };
        match finished {
            Ok(()) => {
                tracing::warn!(instance = %name, snapshot = %snap, "Finished an interrupted restore");
            }
            Err(e) => {
                tracing::error!(instance = %name, snapshot = %snap, error = %e, "Interrupted restore not finished");
            }
        }
    }
}

fn start_put(stateful: bool) -> InstanceStatePut {
    InstanceStatePut {
        action: "start".to_owned(),
        stateful,
        ..Default::default()
    }
}

/// Restores snapshot `snap` of instance `name` (checked before by [`check_restore`], and
/// checked again here under the instance's and the profile lock).
pub async fn restore(cx: &Ctx, name: &str, snap: &str, stateful: bool) -> Result<()> {
    let lock = cx.locks.instance(name);
    let _guard = lock.lock().await;
    {
        let _profiles = cx.locks.profiles.lock().await;
        check_restore(cx, name, snap, stateful).await?;
    }
    let running = !is_stopped(cx, name).await;
    if running {
        cx.driver.stop(name, -1, true).await?;
        set_power(cx, name, "STOPPED").await;
    }
    let lxcpath = cx.driver.lxcpath().to_owned();
    // A saved state belongs to the files being replaced; a stateful restore takes the
    // snapshot's before the volume is swapped.
    checkpoint::discard(&lxcpath, name)?;
    if stateful {
        let rec = find(cx, name).await?;
        let pool = pool_of(cx, &rec).await?;
        let at = pool.snapshot_path(VolumeType::Container, name, snap);
        let (l, n) = (lxcpath.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || checkpoint::state_from_snapshot(&l, &n, &at)).await??;
    }
    let (flag, s, n) = (restore_flag(name), snap.to_owned(), name.to_owned());
    cx.db
        .write(move |tx| crate::db::internal::set(tx, &flag, &s))
        .await?;
    if let Err(e) = finish_restore(cx, &n, snap).await {
        if let Err(undo) = checkpoint::discard(&lxcpath, name) {
            tracing::warn!(instance = name, error = %undo, "Saved state not discarded");
        }
        // The volume is whole (old content, or the snapshot's if only the record failed,
        // which the flag finishes at the next start): bring it back up.
        if running
            && let Ok(rec) = find(cx, name).await
            && let Err(undo) = super::state::change(cx, &rec, &start_put(false)).await
        {
            tracing::warn!(instance = name, error = %undo, "Instance not started again");
        }
        return Err(e);
    }
    let mut ctx = serde_json::Map::new();
    ctx.insert("snapshot".into(), snap.into());
    super::backup::save_file(cx, name).await;
    cx.events
        .lifecycle("instance-restored", &instance_url(name), Some(ctx));
    // A stateful restore brings the snapshot's processes back.
    if running || stateful {
        let rec = find(cx, name).await?;
        super::state::change(cx, &rec, &start_put(stateful)).await?;
    }
    Ok(())
}
