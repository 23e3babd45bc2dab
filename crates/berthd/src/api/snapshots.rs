//! `/1.0/instances/{name}/snapshots`: stateless snapshots, and restoring one
//! (`PUT /1.0/instances/{name}` with `restore`).
//!
//! A snapshot is a copy of the instance's volume on its pool (the driver's
//! `create_snapshot`) plus a row holding the instance's own configuration, devices and
//! profiles at that moment. Restoring checks the snapshot's configuration as an update
//! would (project restrictions first, a 403 naming the restriction; then keys and
//! limits) before anything changes, stops a running instance, swaps the volume's content
//! for a copy of the snapshot's, writes the configuration back and starts it again.
//! Stateful snapshots (CRIU) come with checkpoint/restore.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use berth_api::{ErrorKind, StatusCode};
use serde::Deserialize;

use super::instances::{self, find as find_instance, pool_of, url_sub};
use super::{ApiError, ApiResult, AppState, InstanceName, Json, async_operation, recursion, sync};
use crate::db::instances::InstanceRecord;
use crate::db::snapshots::SnapshotRecord;
use crate::instances as inst;
use crate::operations::OpSpec;

/// The body of `POST /1.0/instances/{name}/snapshots`.
#[derive(Debug, Default, Deserialize)]
pub struct SnapshotsPost {
    #[serde(default)]
    name: String,
    #[serde(default)]
    stateful: bool,
    #[serde(default)]
    expires_at: Option<String>,
}

/// The body of `POST /1.0/instances/{name}/snapshots/{snap}` (rename).
#[derive(Debug, Deserialize)]
pub struct SnapshotPost {
    #[serde(default)]
    name: String,
    #[serde(default)]
    migration: bool,
}

/// LXD's "no expiry".
const NEVER: &str = "0001-01-01T00:00:00Z";

fn check_name(name: &str) -> Result<(), ApiError> {
    super::profiles::check_object_name("snapshot", name)
}

fn not_found(instance: &str, snap: &str) -> ApiError {
    ApiError::not_found(format!(
        "Snapshot {snap:?} of instance {:?} not found",
        crate::db::instances::api_name(instance)
    ))
}

async fn find(st: &AppState, instance: &str, snap: &str) -> Result<SnapshotRecord, ApiError> {
    let (i, s) = (instance.to_owned(), snap.to_owned());
    st.db
        .call(move |c| crate::db::snapshots::get(c, &i, &s))
        .await?
        .ok_or_else(|| not_found(instance, snap))
}

fn snap_url(instance: &str, snap: &str) -> String {
    url_sub(instance, &format!("/snapshots/{snap}"))
}

fn spec(description: &str, instance: &str, snap: &str) -> OpSpec {
    let mut resources = BTreeMap::new();
    resources.insert("instances".to_owned(), vec![instances::url(instance)]);
    resources.insert(
        "instances_snapshots".to_owned(),
        vec![snap_url(instance, snap)],
    );
    OpSpec {
        class: berth_api::OperationClass::Task,
        description: description.to_owned(),
        resources: Some(resources),
        may_cancel: false,
        metadata: serde_json::Map::new(),
        fds: vec![],
    }
}

/// A snapshot as a list shows it: without the expansion, which needs its profiles.
pub(crate) fn render_plain(s: &SnapshotRecord) -> serde_json::Value {
    serde_json::json!({
        "name": s.name,
        "description": s.description,
        "architecture": s.architecture,
        "config": s.config,
        "devices": s.devices,
        "ephemeral": s.ephemeral,
        "profiles": s.profiles,
        "stateful": s.stateful,
        "created_at": s.created_at,
        "expires_at": s.expires_at,
        "last_used_at": NEVER,
        "size": -1,
    })
}

/// A snapshot as LXD shows it.
async fn render(st: &AppState, project: &str, s: &SnapshotRecord) -> serde_json::Value {
    // A profile deleted since is left out of the expansion.
    let mut profiles = Vec::new();
    for p in &s.profiles {
        if let Ok(mut found) = instances::profiles(st, project, std::slice::from_ref(p)).await {
            profiles.append(&mut found);
        }
    }
    let as_instance = InstanceRecord {
        config: s.config.clone(),
        devices: s.devices.clone(),
        ..InstanceRecord::default()
    };
    let (expanded_config, expanded_devices) = inst::expand(&profiles, &as_instance);
    let mut v = render_plain(s);
    v["expanded_config"] = serde_json::json!(expanded_config);
    v["expanded_devices"] = serde_json::json!(expanded_devices);
    v
}

/// An instance's snapshots, rendered (for `recursion` on the instance).
pub(crate) async fn rendered(st: &AppState, rec: &InstanceRecord) -> Vec<serde_json::Value> {
    let n = rec.name.clone();
    let Ok(all) = st.db.call(move |c| crate::db::snapshots::list(c, &n)).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in &all {
        out.push(render(st, &rec.project, s).await);
    }
    out
}

/// `GET /1.0/instances/{name}/snapshots`.
pub async fn list(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let rec = find_instance(&st, &name).await?;
    if recursion(q.as_deref())? > 0 {
        return Ok(sync(rendered(&st, &rec).await));
    }
    let n = name.clone();
    let all = st
        .db
        .call(move |c| crate::db::snapshots::list(c, &n))
        .await?;
    Ok(sync(
        all.iter()
            .map(|s| snap_url(&name, &s.name))
            .collect::<Vec<_>>(),
    ))
}

/// `GET /1.0/instances/{name}/snapshots/{snap}`.
pub async fn get(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Path((_, snap)): Path<(String, String)>,
) -> ApiResult {
    let rec = find_instance(&st, &name).await?;
    let s = find(&st, &name, &snap).await?;
    let etag = snapshot_etag(&s);
    Ok(super::sync_etag(render(&st, &rec.project, &s).await, &etag))
}

/// Refuses snapshots in a project with `restricted.snapshots=block` (403).
async fn check_allowed(st: &AppState, project: &str) -> Result<(), ApiError> {
    let p = project.to_owned();
    let proj = st
        .db
        .call(move |c| crate::db::instances::project(c, &p))
        .await?;
    if let Some(proj) = proj
        && proj.restricted()
        && proj.config.get("restricted.snapshots").map(String::as_str) == Some("block")
    {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            format!("Snapshots are forbidden in project {project:?} (restricted.snapshots=block)"),
        ));
    }
    Ok(())
}

/// `POST /1.0/instances/{name}/snapshots`: a copy of the instance's volume and
/// configuration, named by `snapshots.pattern` (default `snapN`, the first free N) when
/// no name is given.
pub async fn post(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Json(req): Json<SnapshotsPost>,
) -> ApiResult {
    let rec = find_instance(&st, &name).await?;
    if req.stateful {
        instances::check_stateful(&st, &rec, "snapshot").await?;
    }
    check_allowed(&st, &rec.project).await?;
    let snap = (!req.name.is_empty()).then(|| req.name.clone());
    if let Some(snap) = &snap {
        check_name(snap)?;
        let (i, s) = (name.clone(), snap.clone());
        if st
            .db
            .call(move |c| crate::db::snapshots::get(c, &i, &s))
            .await?
            .is_some()
        {
            return Err(ApiError::new(
                ErrorKind::AlreadyExists,
                format!("Snapshot {snap:?} already exists"),
            ));
        }
    }
    if let Some(e) = &req.expires_at
        && chrono::DateTime::parse_from_rfc3339(e).is_err()
    {
        return Err(ApiError::bad_request(format!(
            "Invalid value {e:?} for \"expires_at\": expected an RFC 3339 time"
        )));
    }
    let uuid = rec.config.get("volatile.uuid").cloned().unwrap_or_default();
    let lock = st.instances.lock(&name);
    let state = st.clone();
    let shown = snap.clone().unwrap_or_default();
    let op = st.ops.start(
        spec("Snapshotting instance", &name, &shown),
        move |_| async move {
            let _guard = lock.lock_owned().await;
            let at = chrono::Utc::now();
            take(&state, &name, &uuid, snap, req.expires_at, at, req.stateful)
                .await
                .map(drop)
        },
    );
    Ok(async_operation(op.render()))
}

/// When a snapshot taken at `now` expires under the instance's `snapshots.expiry`.
fn expiry_of(
    config: &BTreeMap<String, String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, String> {
    let spec = config.get("snapshots.expiry").map_or("", String::as_str);
    Ok(inst::schedule::expiry(spec, now)?.map_or_else(
        || NEVER.to_owned(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    ))
}

/// Takes a snapshot of instance `name` (whose lock the caller holds), which must still be
/// the instance `uuid` names (not one created since under the same name): named `snap`,
/// else by `snapshots.pattern`; expiring at `expires_at`, else by `snapshots.expiry`
/// from `at`. A running instance is frozen while its volume is copied, so nothing inside
/// can swap a directory for a symlink under the copy. `stateful`: the running processes
/// are checkpointed first (CRIU, the instance goes on) and the state kept with the
/// snapshot. Returns the snapshot's name.
#[allow(clippy::too_many_arguments)]
async fn take(
    st: &AppState,
    name: &str,
    uuid: &str,
    snap: Option<String>,
    expires_at: Option<String>,
    at: chrono::DateTime<chrono::Utc>,
    stateful: bool,
) -> Result<String, String> {
    let rec = find_instance(st, name).await.map_err(|e| e.message)?;
    if rec.config.get("volatile.uuid").map(String::as_str) != Some(uuid) {
        return Err("The instance was replaced meanwhile".to_owned());
    }
    check_allowed(st, &rec.project)
        .await
        .map_err(|e| e.message)?;
    let profiles = instances::profiles(st, &rec.project, &rec.profiles)
        .await
        .map_err(|e| e.message)?;
    let (config, _) = inst::expand(&profiles, &rec);
    let n = name.to_owned();
    let existing: Vec<String> = st
        .db
        .call(move |c| crate::db::snapshots::list(c, &n))
        .await
        .map_err(|e| crate::logging::chain(&e))?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let snap = snap.unwrap_or_else(|| {
        inst::schedule::next_name(
            config
                .get("snapshots.pattern")
                .map_or("snap%d", String::as_str),
            &existing,
        )
    });
    if existing.contains(&snap) {
        return Err(format!("Snapshot {snap:?} already exists"));
    }
    let expires_at = match expires_at {
        Some(e) => e,
        None => expiry_of(&config, at)?,
    };
    let pool = pool_of(st, &rec).await.map_err(|e| e.message)?;
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
        created_at: crate::state::now_rfc3339(),
        expires_at,
    };
    let running = instances::status_of(st, name).await.0 != StatusCode::Stopped;
    let cg = format!("{}/{}", st.runtime.cgroup_parent, name);
    // A stateful snapshot keeps the instance frozen across the dump and the copy, so its
    // memory and its files are of one moment (criu leaves a frozen cgroup frozen).
    let held = stateful && !crate::host::cgroup::is_frozen(&cg);
    let thaw = |why: &str| {
        if held && let Err(e) = crate::host::cgroup::set_frozen(&cg, false) {
            tracing::error!(instance = %name, error = %e, "Failed to thaw the instance {why}");
        }
    };
    if stateful {
        if !running {
            return Err("A stateful snapshot needs a running instance".to_owned());
        }
        if held {
            crate::host::cgroup::set_frozen(&cg, true)
                .map_err(|e| format!("Failed to freeze the instance for its snapshot: {e}"))?;
        }
        if let Err(e) = inst::checkpoint::snapshot_dump(st, &rec).await {
            thaw("after a failed dump");
            return Err(e);
        }
    }
    let cg_copy = cg.clone();
    let (i, s, copy_pool) = (rec.name.clone(), snap.clone(), pool.clone());
    let copied = tokio::task::spawn_blocking(move || {
        let t = berth_storage::VolumeType::Container;
        // The database has no such snapshot: files under its name are left from a crash.
        if copy_pool.snapshot_path(t, &i, &s).exists() {
            copy_pool
                .delete_snapshot(t, &i, &s)
                .map_err(|e| crate::logging::chain(&e))?;
        }
        let freeze = running && !crate::host::cgroup::is_frozen(&cg_copy);
        if freeze {
            crate::host::cgroup::set_frozen(&cg_copy, true)
                .map_err(|e| format!("Failed to freeze the instance for its snapshot: {e}"))?;
        }
        let copied = copy_pool.create_snapshot(t, &i, &s);
        if freeze && let Err(e) = crate::host::cgroup::set_frozen(&cg_copy, false) {
            tracing::error!(instance = %i, error = %e, "Failed to thaw the instance after its snapshot");
        }
        copied.map_err(|e| crate::logging::chain(&e))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    thaw("after its snapshot");
    let copied = match copied {
        Ok(()) if stateful => {
            let at = pool.snapshot_path(berth_storage::VolumeType::Container, &rec.name, &snap);
            let (state, n) = (st.clone(), rec.name.clone());
            tokio::task::spawn_blocking(move || {
                inst::checkpoint::keep_with_snapshot(&state, &n, &at)
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
        }
        other => other,
    };
    if let Err(e) = copied {
        inst::checkpoint::discard_snapshot_dump(st, &rec.name);
        let _ = pool.delete_snapshot(berth_storage::VolumeType::Container, &rec.name, &snap);
        return Err(e);
    }
    let stored = record.clone();
    let inserted = st
        .db
        .call(move |c| crate::db::snapshots::insert(c, &stored))
        .await
        .map_err(|e| crate::logging::chain(&e));
    if !matches!(inserted, Ok(true)) {
        let _ = pool.delete_snapshot(berth_storage::VolumeType::Container, &rec.name, &snap);
        return Err(inserted
            .err()
            .unwrap_or_else(|| format!("Snapshot {snap:?} already exists")));
    }
    st.events.lifecycle(
        "instance-snapshot-created",
        &snap_url(&record.instance, &record.name),
        None,
    );
    Ok(snap)
}

/// Deletes snapshot `snap` of instance `name` (whose lock the caller holds): files, then
/// the row.
async fn remove(
    st: &AppState,
    pool: std::sync::Arc<dyn berth_storage::Driver>,
    name: &str,
    snap: &str,
) -> Result<(), String> {
    let (n, s) = (name.to_owned(), snap.to_owned());
    let deleted = tokio::task::spawn_blocking(move || {
        pool.delete_snapshot(berth_storage::VolumeType::Container, &n, &s)
    })
    .await
    .map_err(|e| e.to_string())?;
    if let Err(e) = deleted
        && e.kind() != berth_storage::StorageErrorKind::NotFound
    {
        return Err(crate::logging::chain(&e));
    }
    let (n, s) = (name.to_owned(), snap.to_owned());
    st.db
        .call(move |c| crate::db::snapshots::delete(c, &n, &s))
        .await
        .map_err(|e| crate::logging::chain(&e))?;
    st.events
        .lifecycle("instance-snapshot-deleted", &snap_url(name, snap), None);
    Ok(())
}

/// One pass of the snapshot scheduler for the minute of `now`: takes the snapshots whose
/// `snapshots.schedule` fires (of running instances, and of stopped ones with
/// `snapshots.schedule.stopped=true`), then deletes expired snapshots.
pub(crate) async fn scheduled_pass(st: &AppState, now: chrono::DateTime<chrono::Utc>) {
    let Ok(all) = instances::expand_all(st).await else {
        return;
    };
    for (rec, config, _) in all {
        let schedule = config.get("snapshots.schedule").map_or("", String::as_str);
        let Ok(schedules) = inst::schedule::parse_schedule(schedule) else {
            continue;
        };
        if !inst::schedule::fires(&schedules, now) {
            continue;
        }
        let running = instances::status_of(st, &rec.name).await.0 != StatusCode::Stopped;
        let when_stopped = config
            .get("snapshots.schedule.stopped")
            .is_some_and(|v| v == "true");
        if !running && !when_stopped {
            continue;
        }
        if check_allowed(st, &rec.project).await.is_err() {
            continue;
        }
        let uuid = rec.config.get("volatile.uuid").cloned().unwrap_or_default();
        let lock = st.instances.lock(&rec.name);
        let _guard = lock.lock().await;
        if let Err(e) = take(st, &rec.name, &uuid, None, None, now, false).await {
            tracing::warn!(instance = %rec.name, error = %e, "Scheduled snapshot failed");
        }
    }
    // Expired snapshots go.
    let Ok(all) = st.db.call(|c| crate::db::snapshots::all(c)).await else {
        return;
    };
    for s in all.into_values().flatten() {
        let expired = chrono::DateTime::parse_from_rfc3339(&s.expires_at)
            .is_ok_and(|t| s.expires_at != NEVER && t <= now);
        if !expired {
            continue;
        }
        let Ok(rec) = find_instance(st, &s.instance).await else {
            continue;
        };
        let Ok(pool) = pool_of(st, &rec).await else {
            continue;
        };
        let lock = st.instances.lock(&rec.name);
        let _guard = lock.lock().await;
        if let Err(e) = remove(st, pool, &rec.name, &s.name).await {
            tracing::warn!(instance = %rec.name, snapshot = %s.name, error = %e, "Expired snapshot not deleted");
        }
    }
}

/// Runs [`scheduled_pass`] at the start of every minute, for as long as berthd runs.
pub async fn scheduler(st: AppState) {
    loop {
        let now = chrono::Utc::now();
        let into_minute = u64::from(chrono::Timelike::second(&now));
        tokio::time::sleep(std::time::Duration::from_secs(60 - into_minute.min(59))).await;
        scheduled_pass(&st, chrono::Utc::now()).await;
    }
}

fn snapshot_etag(s: &SnapshotRecord) -> String {
    crate::state::etag_of(&(&s.description, &s.expires_at))
}

/// `PUT`/`PATCH /1.0/instances/{name}/snapshots/{snap}`: description and expiry, honouring
/// `If-Match`; an operation, as LXD answers.
pub async fn put(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Path((_, snap)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> ApiResult {
    let mut s = find(&st, &name, &snap).await?;
    super::check_if_match(&headers, &snapshot_etag(&s))?;
    if let Some(d) = instances::field::<String>(&body, "description")? {
        s.description = d;
    }
    if let Some(e) = instances::field::<String>(&body, "expires_at")? {
        if chrono::DateTime::parse_from_rfc3339(&e).is_err() {
            return Err(ApiError::bad_request(format!(
                "Invalid value {e:?} for \"expires_at\": expected an RFC 3339 time"
            )));
        }
        s.expires_at = e;
    }
    st.db
        .call(move |c| crate::db::snapshots::update(c, &s))
        .await?;
    st.events
        .lifecycle("instance-snapshot-updated", &snap_url(&name, &snap), None);
    let op = st
        .ops
        .start(spec("Updating snapshot", &name, &snap), |_| async {
            Ok(())
        });
    Ok(async_operation(op.render()))
}

/// `POST /1.0/instances/{name}/snapshots/{snap}`: renames a snapshot.
pub async fn rename(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Path((_, snap)): Path<(String, String)>,
    Json(req): Json<SnapshotPost>,
) -> ApiResult {
    if req.migration {
        return Err(ApiError::bad_request(
            "Migration between servers is not supported yet",
        ));
    }
    let rec = find_instance(&st, &name).await?;
    find(&st, &name, &snap).await?;
    check_name(&req.name)?;
    let (i, t) = (name.clone(), req.name.clone());
    if st
        .db
        .call(move |c| crate::db::snapshots::get(c, &i, &t))
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            ErrorKind::AlreadyExists,
            format!("Snapshot {:?} already exists", req.name),
        ));
    }
    let pool = pool_of(&st, &rec).await?;
    let lock = st.instances.lock(&name);
    let state = st.clone();
    let to = req.name;
    let op = st.ops.start(
        spec("Renaming snapshot", &name, &snap),
        move |_| async move {
            let _guard = lock.lock_owned().await;
            pool.rename_snapshot(berth_storage::VolumeType::Container, &name, &snap, &to)
                .map_err(|e| crate::logging::chain(&e))?;
            let (i, f, t) = (name.clone(), snap.clone(), to.clone());
            let renamed = state
                .db
                .call(move |c| crate::db::snapshots::rename(c, &i, &f, &t))
                .await
                .map_err(|e| crate::logging::chain(&e));
            if !matches!(renamed, Ok(true)) {
                // The files go back under the name the database still has.
                let _ =
                    pool.rename_snapshot(berth_storage::VolumeType::Container, &name, &to, &snap);
                return Err(renamed
                    .err()
                    .unwrap_or_else(|| format!("Snapshot {to:?} already exists")));
            }
            let mut ctx = serde_json::Map::new();
            ctx.insert("old_name".into(), snap.into());
            state.events.lifecycle(
                "instance-snapshot-renamed",
                &snap_url(&name, &to),
                Some(ctx),
            );
            Ok(())
        },
    );
    Ok(async_operation(op.render()))
}

/// `DELETE /1.0/instances/{name}/snapshots/{snap}`.
pub async fn delete(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Path((_, snap)): Path<(String, String)>,
) -> ApiResult {
    let rec = find_instance(&st, &name).await?;
    find(&st, &name, &snap).await?;
    let pool = pool_of(&st, &rec).await?;
    let lock = st.instances.lock(&name);
    let state = st.clone();
    let op = st.ops.start(
        spec("Deleting snapshot", &name, &snap),
        move |_| async move {
            let _guard = lock.lock_owned().await;
            remove(&state, pool, &name, &snap).await
        },
    );
    Ok(async_operation(op.render()))
}

fn start_put() -> berth_api::instance::InstanceStatePut {
    berth_api::instance::InstanceStatePut {
        action: "start".to_owned(),
        ..Default::default()
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
/// (restrictions first, as a 403); returns the record it would give.
async fn check_restore(
    st: &AppState,
    name: &str,
    snap: &str,
) -> Result<(InstanceRecord, BTreeMap<String, String>), ApiError> {
    let rec = find_instance(st, name).await?;
    let s = find(st, name, snap).await?;
    let new = restored_record(&rec, &s);
    let profiles = instances::profiles(st, &new.project, &new.profiles).await?;
    let (expanded, devices) = inst::expand(&profiles, &new);
    let candidate = (new.name.clone(), expanded.clone(), devices.clone());
    super::projects::check_allowed(st, &new.project, &candidate).await?;
    instances::validate_config(&new.config, st.runtime.host)?;
    instances::validate_devices(&new.devices)?;
    instances::validate_config(&expanded, st.runtime.host)?;
    super::projects::check_limits_with(st, &new.project, &candidate).await?;
    let old_profiles = instances::profiles(st, &rec.project, &rec.profiles).await?;
    let (_, old_devices) = inst::expand(&old_profiles, &rec);
    if inst::root_pool(&devices) != inst::root_pool(&old_devices) {
        return Err(ApiError::bad_request(
            "The snapshot's root disk is on another pool",
        ));
    }
    Ok((new, expanded))
}

/// Refuses a stateful restore that cannot work: a snapshot without a saved state, or a
/// configuration it restores that is not checkpointable.
async fn check_stateful_restore(
    st: &AppState,
    new: &InstanceRecord,
    expanded: &BTreeMap<String, String>,
    snap: &str,
) -> Result<(), ApiError> {
    let s = find(st, &new.name, snap).await?;
    let pool = pool_of(st, new).await?;
    let at = pool.snapshot_path(berth_storage::VolumeType::Container, &new.name, snap);
    if !s.stateful || !at.join("state/inventory.img").exists() {
        return Err(ApiError::bad_request(format!(
            "Snapshot {snap:?} has no saved state (it is not stateful)"
        )));
    }
    if !inst::checkpoint::checkpointable(expanded) {
        return Err(ApiError::bad_request(
            "A stateful restore needs migration.stateful=true in the configuration it restores",
        ));
    }
    Ok(())
}

/// The internal flag saying a restore of instance `name` is under way (its value: the
/// snapshot), so one a crash interrupted is finished at the next start.
fn restore_flag(name: &str) -> String {
    format!("restoring/{name}")
}

/// Swaps instance `name`'s volume for a copy of snapshot `snap` and stores the snapshot's
/// configuration, clearing the restore flag in the same transaction. Idempotent: a second
/// run copies again. The instance is stopped and its lock held.
async fn finish_restore(st: &AppState, name: &str, snap: &str) -> Result<(), String> {
    let rec = find_instance(st, name).await.map_err(|e| e.message)?;
    let s = find(st, name, snap).await.map_err(|e| e.message)?;
    let pool = pool_of(st, &rec).await.map_err(|e| e.message)?;
    let (n, sn) = (name.to_owned(), snap.to_owned());
    let volume = pool.volume_path(berth_storage::VolumeType::Container, name);
    tokio::task::spawn_blocking(move || {
        pool.restore_snapshot(berth_storage::VolumeType::Container, &n, &sn)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| crate::logging::chain(&e))?;
    // A stateful snapshot's state came back with the volume: not the instance's (a
    // stateful restore took its copy before the swap).
    if let Err(e) = tokio::task::spawn_blocking(move || inst::checkpoint::strip_volume(&volume))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
    {
        tracing::warn!(instance = %name, error = %e, "A restored volume keeps a snapshot's state");
    }
    let mut stored = restored_record(&rec, &s);
    let profiles = instances::profiles(st, &stored.project, &stored.profiles)
        .await
        .unwrap_or_default();
    let (expanded, _) = inst::expand(&profiles, &stored);
    let ids = st.runtime.ids;
    let flag = restore_flag(name);
    st.db
        .call(move |c| {
            let tx = c.unchecked_transaction()?;
            if let Err(e) = instances::assign_idmap(&tx, &mut stored, &expanded, ids, false) {
                return Ok(Err(e));
            }
            crate::db::instances::update(&tx, &stored)?;
            crate::db::instances::delete_internal(&tx, &flag)?;
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
        .map_err(|e| crate::logging::chain(&e))?
}

/// Finishes the restores a crash interrupted (their flag is still set): at start, before
/// instances are swept or started.
pub async fn recover(st: &AppState) {
    let flags = st
        .db
        .call(|c| crate::db::instances::internal_prefixed(c, "restoring/"))
        .await
        .unwrap_or_default();
    for (key, snap) in flags {
        let name = key.trim_start_matches("restoring/").to_owned();
        let finished = if instances::status_of(st, &name).await.0 == StatusCode::Stopped {
            finish_restore(st, &name, &snap).await
        } else {
            Err("the instance runs".to_owned())
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

/// Restores snapshot `snap` of instance `name` (the `restore` field of a PUT): checked
/// here (so a refusal is the request's status), and again under the instance's and the
/// profile lock when the operation runs.
pub(crate) async fn restore(st: &AppState, name: &str, snap: &str, stateful: bool) -> ApiResult {
    let (new, expanded) = check_restore(st, name, snap).await?;
    if stateful {
        check_stateful_restore(st, &new, &expanded, snap).await?;
        inst::checkpoint::criu_check()
            .await
            .map_err(ApiError::bad_request)?;
    }
    let lock = st.instances.lock(name);
    let state = st.clone();
    let (name, snap) = (name.to_owned(), snap.to_owned());
    let op = st.ops.start(
        spec("Restoring snapshot", &name, &snap),
        move |_| async move {
            let _guard = lock.lock_owned().await;
            let (new, expanded) = {
                let _profiles = state.profile_lock.lock().await;
                check_restore(&state, &name, &snap)
                    .await
                    .map_err(|e| e.message)?
            };
            if stateful {
                check_stateful_restore(&state, &new, &expanded, &snap)
                    .await
                    .map_err(|e| e.message)?;
            }
            let running = instances::status_of(&state, &name).await.0 != StatusCode::Stopped;
            if running {
                inst::stop(&state, &name, -1, true).await?;
                instances::set_power(&state, &name, "STOPPED").await;
            }
            // A saved state belongs to the files being replaced; a stateful restore takes
            // the snapshot's before the volume is swapped.
            inst::checkpoint::discard(&state, &name)?;
            if stateful {
                let pool = pool_of(&state, &new).await.map_err(|e| e.message)?;
                let at = pool.snapshot_path(berth_storage::VolumeType::Container, &name, &snap);
                let (st2, n) = (state.clone(), name.clone());
                tokio::task::spawn_blocking(move || {
                    inst::checkpoint::state_from_snapshot(&st2, &n, &at)
                })
                .await
                .map_err(|e| e.to_string())??;
            }
            let (flag, s) = (restore_flag(&name), snap.clone());
            state
                .db
                .call(move |c| crate::db::instances::set_internal(c, &flag, &s))
                .await
                .map_err(|e| crate::logging::chain(&e))?;
            if let Err(e) = finish_restore(&state, &name, &snap).await {
                let _ = inst::checkpoint::discard(&state, &name);
                // The volume is whole (old content, or the snapshot's if only the record
                // failed, which the flag finishes at the next start): bring it back up.
                if running && let Ok(rec) = find_instance(&state, &name).await {
                    let _ = instances::change_state(&state, &rec, &start_put()).await;
                }
                return Err(e);
            }
            let mut ctx = serde_json::Map::new();
            ctx.insert("snapshot".into(), snap.clone().into());
            state
                .events
                .lifecycle("instance-restored", &instances::url(&name), Some(ctx));
            // A stateful restore brings the snapshot's processes back.
            if running || stateful {
                let rec = find_instance(&state, &name).await.map_err(|e| e.message)?;
                let put = berth_api::instance::InstanceStatePut {
                    stateful,
                    ..start_put()
                };
                instances::change_state(&state, &rec, &put).await?;
            }
            Ok(())
        },
    );
    Ok(async_operation(op.render()))
}
