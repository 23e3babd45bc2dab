//! `/1.0/instances`: create, list, inspect, delete; `/state`: start, stop, restart, freeze.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use berth_api::instance::{Instance, InstanceState, InstanceStatePut, InstancesPost};
use berth_api::{ErrorKind, OperationClass, StatusCode};

use super::{ApiError, ApiResult, AppState, Json, async_operation, recursion, sync};
use crate::db::instances::{InstanceRecord, ProfileRecord};
use crate::instances::{self as inst, templates};
use crate::operations::OpSpec;
use crate::state::now_rfc3339;

fn not_found(name: &str) -> ApiError {
    let name = crate::db::instances::api_name(name);
    ApiError::not_found(format!("Instance {name:?} not found"))
}

/// An instance's URL from its host-wide name: its name, and its project when not
/// `default`.
pub(crate) fn url(host_name: &str) -> String {
    url_sub(host_name, "")
}

/// The URL of something under an instance (`/logs/F`…), from its host-wide name.
pub(crate) fn url_sub(host_name: &str, sub: &str) -> String {
    match host_name.split_once('_') {
        Some((project, name)) => format!("/1.0/instances/{name}{sub}?project={project}"),
        None => format!("/1.0/instances/{host_name}{sub}"),
    }
}

/// An instance's record, or 404 naming it.
pub(crate) async fn find(st: &AppState, name: &str) -> Result<InstanceRecord, ApiError> {
    let n = name.to_owned();
    st.db
        .call(move |c| crate::db::instances::get(c, &n))
        .await?
        .ok_or_else(|| not_found(name))
}

/// Profiles `names` as the instances of `project` see them: the project's own, or
/// `default`'s when it does not have `features.profiles`.
pub(crate) async fn profiles(
    st: &AppState,
    project: &str,
    names: &[String],
) -> Result<Vec<ProfileRecord>, ApiError> {
    let names = names.to_vec();
    let project = project.to_owned();
    let found = st
        .db
        .call(move |c| {
            let from = crate::db::instances::project(c, &project)?
                .map_or_else(|| project.clone(), |p| p.profiles_project().to_owned());
            names
                .iter()
                .map(|n| Ok((n.clone(), crate::db::instances::profile(c, &from, n)?)))
                .collect::<Result<Vec<_>, crate::db::DbError>>()
        })
        .await?;
    found
        .into_iter()
        .map(|(n, p)| p.ok_or_else(|| ApiError::not_found(format!("Profile {n:?} not found"))))
        .collect()
}

/// Checks every key of an instance's or profile's configuration against the key table
/// ([`inst::keys`]); the error names the key and value.
pub(crate) fn validate_config(
    config: &BTreeMap<String, String>,
    host: inst::limits::Host,
) -> Result<(), ApiError> {
    for (k, v) in config {
        inst::keys::validate(k, v, host).map_err(ApiError::bad_request)?;
    }
    Ok(())
}

/// `stateful`: a stopped instance holding a saved state, under containers dir `lxcpath`.
fn render(
    rec: &InstanceRecord,
    profiles: &[ProfileRecord],
    status: StatusCode,
    lxcpath: &std::path::Path,
) -> Instance {
    let (expanded_config, expanded_devices) = inst::expand(profiles, rec);
    let stateful =
        status == StatusCode::Stopped && inst::checkpoint::has_state_in(lxcpath, &rec.name);
    Instance {
        name: rec.api_name().to_owned(),
        description: rec.description.clone(),
        status: status.name().to_owned(),
        status_code: status.code(),
        created_at: rec.created_at.clone(),
        last_used_at: rec.last_used_at.clone(),
        location: "none".to_owned(),
        kind: "container".to_owned(),
        project: rec.project.clone(),
        architecture: rec.architecture.clone(),
        ephemeral: rec.ephemeral,
        stateful,
        profiles: rec.profiles.clone(),
        config: rec.config.clone(),
        devices: rec.devices.clone(),
        expanded_config,
        expanded_devices,
    }
}

pub(crate) async fn status_of(st: &AppState, name: &str) -> (StatusCode, Option<i32>) {
    let lxcpath = st.paths.containers();
    let n = name.to_owned();
    let cg = format!("{}/{}", st.runtime.cgroup_parent, name);
    tokio::task::spawn_blocking(move || {
        let (status, pid) = inst::lxc_status(&lxcpath, &n);
        if status == StatusCode::Running && crate::host::cgroup::is_frozen(&cg) {
            return (StatusCode::Frozen, pid);
        }
        (status, pid)
    })
    .await
    .unwrap_or((StatusCode::Error, None))
}

async fn full(st: &AppState, rec: &InstanceRecord) -> Result<Instance, ApiError> {
    let profiles = profiles(st, &rec.project, &rec.profiles).await?;
    let (status, _) = status_of(st, &rec.name).await;
    Ok(render(rec, &profiles, status, &st.paths.containers()))
}

/// The pool of an instance's root disk (from its expanded devices).
pub(crate) async fn pool_of(
    st: &AppState,
    rec: &InstanceRecord,
) -> Result<Arc<dyn berth_storage::Driver>, ApiError> {
    let profiles = profiles(st, &rec.project, &rec.profiles).await?;
    let (_, devices) = inst::expand(&profiles, rec);
    inst::root_pool(&devices)
        .and_then(|p| st.pools.get(&p))
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::Internal,
                "The pool of the instance's root disk is not available",
            )
        })
}

/// The rootfs directory of an instance, on its root disk's pool.
pub async fn rootfs_path(st: &AppState, name: &str) -> Result<std::path::PathBuf, ApiError> {
    let rec = find(st, name).await?;
    Ok(pool_of(st, &rec)
        .await?
        .volume_path(berth_storage::VolumeType::Container, name)
        .join("rootfs"))
}

/// Pairs each instance with its profiles, resolved in memory from every profile and
/// project (a project without `features.profiles` uses `default`'s).
fn with_profiles(
    recs: Vec<InstanceRecord>,
    all_profiles: Vec<ProfileRecord>,
    projects: &[crate::db::instances::ProjectRecord],
) -> Vec<(InstanceRecord, Vec<ProfileRecord>)> {
    let profile_project: HashMap<&str, &str> = projects
        .iter()
        .map(|p| (p.name.as_str(), p.profiles_project()))
        .collect();
    let all: HashMap<(String, String), ProfileRecord> = all_profiles
        .into_iter()
        .map(|p| ((p.project.clone(), p.name.clone()), p))
        .collect();
    recs.into_iter()
        .map(|rec| {
            let from = profile_project
                .get(rec.project.as_str())
                .map_or_else(|| rec.project.clone(), |p| (*p).to_owned());
            let profiles = rec
                .profiles
                .iter()
                .filter_map(|p| all.get(&(from.clone(), p.clone())).cloned())
                .collect();
            (rec, profiles)
        })
        .collect()
}

/// An instance with its expanded config and devices.
pub(crate) type ExpandedInstance = (
    InstanceRecord,
    BTreeMap<String, String>,
    BTreeMap<String, berth_api::instance::Device>,
);

/// Every instance, expanded, from one database call: for passes over all of them
/// (project limits, the snapshot scheduler).
pub(crate) async fn expand_all(st: &AppState) -> Result<Vec<ExpandedInstance>, ApiError> {
    let (recs, all_profiles, projects) = st
        .db
        .call(|c| {
            Ok((
                crate::db::instances::list(c)?,
                crate::db::instances::all_profiles(c)?,
                crate::db::instances::projects(c)?,
            ))
        })
        .await?;
    Ok(with_profiles(recs, all_profiles, &projects)
        .into_iter()
        .map(|(rec, profiles)| {
            let (config, devices) = inst::expand(&profiles, &rec);
            (rec, config, devices)
        })
        .collect())
}

/// `GET /1.0/instances`.
pub async fn list(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let level = recursion(q.as_deref())?;
    let filter = match super::query_value(q.as_deref(), "filter") {
        Some(f) if !f.trim().is_empty() => Some(
            super::filter::parse(&f)
                .map_err(|e| ApiError::bad_request(format!("Invalid filter: {e}")))?,
        ),
        _ => None,
    };
    // `?project=` lists that project's instances; `all-projects=true` every project's.
    let every = super::query_value(q.as_deref(), "all-projects").is_some_and(|v| v == "true");
    let project = super::project_param(q.as_deref());
    let mut recs = st.db.call(|c| crate::db::instances::list(c)).await?;
    recs.retain(|r| every || r.project == project);
    if level == 0 && filter.is_none() {
        return Ok(sync(recs.iter().map(|r| url(&r.name)).collect::<Vec<_>>()));
    }
    // One query for the profiles and projects, and one blocking task for every
    // container's state: a list of hundreds must not cost hundreds of round trips.
    let (all_profiles, projects, snapshots) = st
        .db
        .call(move |c| {
            Ok((
                crate::db::instances::all_profiles(c)?,
                crate::db::instances::projects(c)?,
                if level >= 2 {
                    crate::db::snapshots::all(c)?
                } else {
                    BTreeMap::new()
                },
            ))
        })
        .await?;
    let work = with_profiles(recs, all_profiles, &projects);
    let lxcpath = st.paths.containers();
    let parent = st.runtime.cgroup_parent.clone();
    let host_memory = i64::try_from(st.runtime.host.memory).unwrap_or(i64::MAX);
    // Each instance is observed (a few file reads; its network read from inside its
    // namespace at recursion 2), rendered, filtered and serialised by workers spread over
    // the host's CPUs: a list of hundreds costs no round trip per instance on one thread.
    let one = move |rec: &InstanceRecord,
                    profiles: &[ProfileRecord]|
          -> Option<Box<serde_json::value::RawValue>> {
        let state = if level >= 2 {
            observe(&lxcpath, &parent, &rec.name, host_memory, true)
        } else {
            observe_status(&lxcpath, &parent, &rec.name)
        };
        let status = StatusCode::from_code(state.status_code).unwrap_or(StatusCode::Error);
        let mut v = serde_json::to_value(render(rec, profiles, status, &lxcpath)).ok()?;
        if level >= 2 {
            v["state"] = serde_json::to_value(state).unwrap_or_default();
            v["snapshots"] = snapshots.get(&rec.name).map_or_else(
                || serde_json::Value::Array(vec![]),
                |all| all.iter().map(super::snapshots::render_plain).collect(),
            );
            v["backups"] = serde_json::Value::Array(vec![]);
        }
        if filter.as_ref().is_some_and(|f| !f.matches(&v)) {
            return None;
        }
        if level == 0 {
            v = serde_json::Value::String(url(&rec.name));
        }
        serde_json::value::to_raw_value(&v).ok()
    };
    let out: Vec<Box<serde_json::value::RawValue>> = tokio::task::spawn_blocking(move || {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let chunk = work.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = work
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(|| {
                        part.iter()
                            .filter_map(|(rec, profiles)| one(rec, profiles))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    Ok(sync(out))
}

fn instance_etag(rec: &InstanceRecord) -> String {
    crate::state::etag_of(&(
        &rec.architecture,
        &rec.config,
        &rec.devices,
        rec.ephemeral,
        &rec.profiles,
        &rec.description,
    ))
}

/// `GET /1.0/instances/{name}`; with `recursion=1`, also its state, snapshots and backups
/// (LXD's `instance_get_full`, which `lxc info` uses).
pub async fn get(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let level = recursion(q.as_deref())?;
    let rec = find(&st, &name).await?;
    let etag = instance_etag(&rec);
    let inst = full(&st, &rec).await?;
    if level == 0 {
        return Ok(super::sync_etag(inst, &etag));
    }
    let mut v = serde_json::to_value(inst).map_err(|e| ApiError::internal(&e))?;
    v["state"] = serde_json::to_value(state_of(&st, &name).await).unwrap_or_default();
    v["snapshots"] = serde_json::Value::Array(super::snapshots::rendered(&st, &rec).await);
    v["backups"] = serde_json::Value::Array(vec![]);
    Ok(super::sync_etag(v, &etag))
}

/// The body of `POST /1.0/instances/{name}`.
#[derive(Debug, serde::Deserialize)]
pub struct InstancePost {
    #[serde(default)]
    name: String,
    #[serde(default)]
    migration: bool,
    #[serde(default)]
    live: bool,
}

/// `POST /1.0/instances/{name}`: renames a stopped instance (its records, volume,
/// runtime directory and logs) in an operation, as LXD.
pub async fn rename(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
    Json(req): Json<InstancePost>,
) -> ApiResult {
    let rec = find(&st, &name).await?;
    if req.migration || req.live {
        return Err(ApiError::bad_request(
            "Migration between servers is not supported yet",
        ));
    }
    let to = if req.name.is_empty() {
        rec.api_name().to_owned()
    } else {
        req.name.clone()
    };
    if to.contains('/') {
        return Err(ApiError::bad_request(
            "The character \"/\" is reserved for snapshots",
        ));
    }
    inst::validate_name(&to).map_err(ApiError::bad_request)?;
    let to = crate::db::instances::host_name(&rec.project, &to);
    if to != name {
        let t = to.clone();
        if st
            .db
            .call(move |c| crate::db::instances::get(c, &t))
            .await?
            .is_some()
        {
            return Err(ApiError::new(
                ErrorKind::AlreadyExists,
                format!(
                    "Name {:?} already in use",
                    crate::db::instances::api_name(&to)
                ),
            ));
        }
    }
    // Both names are held for the whole rename: nothing can start the old one or create
    // the new one meanwhile.
    let old_lock = st.instances.lock(&name);
    let new_lock = st.instances.lock(&to);
    let state = st.clone();
    let op = st
        .ops
        .start(spec("Renaming instance", &name), move |_| async move {
            let _old = old_lock.lock_owned().await;
            let _new = if to == name {
                None
            } else {
                Some(new_lock.lock_owned().await)
            };
            if to == name {
                return Ok(());
            }
            rename_stopped(&state, &rec, &to).await
        });
    Ok(async_operation(op.render()))
}

async fn rename_stopped(st: &AppState, rec: &InstanceRecord, to: &str) -> Result<(), String> {
    let from = rec.name.clone();
    if status_of(st, &from).await.0 != StatusCode::Stopped {
        return Err("Renaming of running instance not allowed".to_owned());
    }
    let profiles = profiles(st, &rec.project, &rec.profiles)
        .await
        .map_err(|e| e.message)?;
    let (_, devices) = inst::expand(&profiles, rec);
    let pool = inst::root_pool(&devices).and_then(|p| st.pools.get(&p));
    let (f, t) = (from.clone(), to.to_owned());
    if !st
        .db
        .call(move |c| crate::db::instances::rename(c, &f, &t))
        .await
        .map_err(|e| crate::logging::chain(&e))?
    {
        return Err(format!(
            "Name {:?} already in use",
            crate::db::instances::api_name(to)
        ));
    }
    let undo_db = || async {
        let (f, t) = (from.clone(), to.to_owned());
        let _ = st
            .db
            .call(move |c| crate::db::instances::rename(c, &t, &f))
            .await;
    };
    if let Some(pool) = &pool {
        match pool.rename_volume(berth_storage::VolumeType::Container, &from, to) {
            Ok(()) => {}
            Err(e) if e.kind() == berth_storage::StorageErrorKind::NotFound => {}
            Err(e) => {
                undo_db().await;
                return Err(crate::logging::chain(&e));
            }
        }
        if let Err(e) = pool.rename_snapshots(berth_storage::VolumeType::Container, &from, to) {
            let _ = pool.rename_volume(berth_storage::VolumeType::Container, to, &from);
            undo_db().await;
            return Err(crate::logging::chain(&e));
        }
    }
    let (old_dir, new_dir) = (inst::container_dir(st, &from), inst::container_dir(st, to));
    if old_dir.exists()
        && let Err(e) = std::fs::rename(&old_dir, &new_dir)
    {
        if let Some(pool) = &pool {
            let _ = pool.rename_volume(berth_storage::VolumeType::Container, to, &from);
            let _ = pool.rename_snapshots(berth_storage::VolumeType::Container, to, &from);
        }
        undo_db().await;
        return Err(format!("Failed to rename {}: {e}", old_dir.display()));
    }
    // The old runtime config and device nodes named the old paths; the next start makes
    // new ones.
    let _ = std::fs::remove_file(new_dir.join("lxc.conf"));
    let _ = std::fs::remove_dir_all(inst::nodes_dir(st, &from));
    if let Some(pool) = &pool {
        let renamed = InstanceRecord {
            name: to.to_owned(),
            ..rec.clone()
        };
        let volume = pool.volume_path(berth_storage::VolumeType::Container, to);
        if let Err(e) = inst::apply_templates(&renamed, &volume, "rename") {
            tracing::warn!(instance = %to, error = %e, "Rename templates failed");
        }
    }
    st.instances.forget(&from);
    let mut ctx = serde_json::Map::new();
    ctx.insert(
        "old_name".into(),
        crate::db::instances::api_name(&from).into(),
    );
    st.events.lifecycle("instance-renamed", &url(to), Some(ctx));
    Ok(())
}

/// Devices berth can give an instance today: the root disk, host-path disks, unix-char
/// and unix-block devices, and `none` to mask one.
pub(crate) fn validate_devices(
    devices: &BTreeMap<String, berth_api::instance::Device>,
) -> Result<(), ApiError> {
    for (name, d) in devices {
        if name.is_empty()
            || name.len() > 64
            || name.starts_with('.')
            || name.contains(['/', '\n', '\r', '\0'])
        {
            return Err(ApiError::bad_request(format!(
                "Invalid device name {name:?}: use at most 64 characters, no slash, not starting with a dot"
            )));
        }
        match d.get("type").map(String::as_str) {
            Some("none") => {}
            Some("disk") if d.get("path").map(String::as_str) == Some("/") => {
                if d.keys()
                    .any(|k| !matches!(k.as_str(), "type" | "path" | "pool" | "size"))
                {
                    return Err(ApiError::bad_request(format!(
                        "Device {name:?}: only type, path, pool and size are supported on the root disk yet"
                    )));
                }
                if let Some(size) = d.get("size")
                    && inst::limits::parse_size(size).is_none()
                {
                    return Err(ApiError::bad_request(format!(
                        "Device {name:?}: invalid value {size:?} for \"size\": expected a size such as 10GiB"
                    )));
                }
            }
            Some("disk") => {
                inst::devices::check_disk(name, d).map_err(ApiError::bad_request)?;
            }
            Some("unix-char" | "unix-block") => {
                inst::devices::check_unix(name, d).map_err(ApiError::bad_request)?;
            }
            Some(t) => {
                return Err(ApiError::bad_request(format!(
                    "Device {name:?}: type {t:?} is not supported yet"
                )));
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "Device {name:?} has no type"
                )));
            }
        }
    }
    Ok(())
}

/// `PUT /1.0/instances/{name}`: replaces the writable fields.
pub async fn put(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
    headers: axum::http::HeaderMap,
    Json(req): Json<serde_json::Value>,
) -> ApiResult {
    update(&st, &name, &headers, req, true).await
}

/// `PATCH /1.0/instances/{name}`: merges into the writable fields; an empty config value
/// unsets the key.
pub async fn patch(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
    headers: axum::http::HeaderMap,
    Json(req): Json<serde_json::Value>,
) -> ApiResult {
    update(&st, &name, &headers, req, false).await
}

/// Applies a PUT/PATCH body's `config` to `config`: PUT replaces it (absent: empties it),
/// PATCH merges, an empty value unsetting the key.
pub(crate) fn merge_config(
    config: &mut BTreeMap<String, String>,
    body: &serde_json::Value,
    replace: bool,
) -> Result<(), ApiError> {
    match field::<BTreeMap<String, String>>(body, "config")? {
        Some(new) if replace => *config = new,
        Some(new) => {
            for (k, v) in new {
                if v.is_empty() {
                    config.remove(&k);
                } else {
                    config.insert(k, v);
                }
            }
        }
        None if replace => config.clear(),
        None => {}
    }
    Ok(())
}

/// Field `key` of a PUT/PATCH body: absent or null is `None`, a bad type a 400 naming it.
pub(crate) fn field<T: serde::de::DeserializeOwned>(
    body: &serde_json::Value,
    key: &str,
) -> Result<Option<T>, ApiError> {
    match body.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("Invalid value for field \"{key}\": {e}"))),
    }
}

async fn update(
    st: &AppState,
    name: &str,
    headers: &axum::http::HeaderMap,
    body: serde_json::Value,
    replace: bool,
) -> ApiResult {
    // `{"restore": SNAPSHOT}` restores a snapshot instead.
    if let Some(snap) = field::<String>(&body, "restore")?.filter(|s| !s.is_empty()) {
        let stateful = field::<bool>(&body, "stateful")?.unwrap_or(false);
        // Clients send `SNAP` or `INSTANCE/SNAP`; another instance's snapshot is refused.
        let snap = match snap.split_once('/') {
            Some((instance, s)) if instance == crate::db::instances::api_name(name) => s.to_owned(),
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "Snapshot {snap:?} is not one of this instance's"
                )));
            }
            None => snap,
        };
        return super::snapshots::restore(st, name, &snap, stateful).await;
    }
    let _guard = st.instances.lock(name).lock_owned().await;
    // Profiles cannot change or go while this instance's expansion is checked and stored.
    let _profiles_guard = st.profile_lock.lock().await;
    let old = find(st, name).await?;
    super::check_if_match(headers, &instance_etag(&old))?;
    let mut rec = old.clone();
    let volatile: BTreeMap<String, String> = old
        .config
        .iter()
        .filter(|(k, _)| k.starts_with("volatile."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(config) = field::<BTreeMap<String, String>>(&body, "config")? {
        let user: BTreeMap<String, String> = config
            .into_iter()
            .filter(|(k, _)| !k.starts_with("volatile."))
            .collect();
        if replace {
            rec.config = user;
        } else {
            for (k, v) in user {
                if v.is_empty() {
                    rec.config.remove(&k);
                } else {
                    rec.config.insert(k, v);
                }
            }
        }
        rec.config.retain(|k, _| !k.starts_with("volatile."));
        rec.config.extend(volatile);
    } else if replace {
        rec.config.retain(|k, _| k.starts_with("volatile."));
    }
    if let Some(devices) = field(&body, "devices")? {
        rec.devices = if replace {
            devices
        } else {
            rec.devices.into_iter().chain(devices).collect()
        };
    } else if replace {
        rec.devices.clear();
    }
    if let Some(p) = field(&body, "profiles")? {
        rec.profiles = p;
    }
    if let Some(d) = field(&body, "description")? {
        rec.description = d;
    }
    if let Some(e) = field(&body, "ephemeral")? {
        rec.ephemeral = e;
    }
    let profiles = profiles(st, &rec.project, &rec.profiles).await?;
    let (expanded, devices) = inst::expand(&profiles, &rec);
    let candidate = (rec.name.clone(), expanded.clone(), devices.clone());
    super::projects::check_allowed(st, &rec.project, &candidate).await?;
    validate_config(&rec.config, st.runtime.host)?;
    validate_devices(&rec.devices)?;
    validate_config(&expanded, st.runtime.host)?;
    super::projects::check_limits_with(st, &rec.project, &candidate).await?;
    let old_profiles = self::profiles(st, &old.project, &old.profiles).await?;
    let (old_expanded, old_devices) = inst::expand(&old_profiles, &old);
    if inst::root_pool(&devices) != inst::root_pool(&old_devices) {
        return Err(ApiError::bad_request(
            "The root disk's pool cannot be changed",
        ));
    }
    let (status, pid) = status_of(st, name).await;
    let change = inst::hotplug::diff(&old_devices, &devices);
    if status != StatusCode::Stopped {
        inst::hotplug::check(&change).map_err(ApiError::bad_request)?;
    }
    let mut stored = rec.clone();
    let ids = st.runtime.ids;
    let map_config = expanded.clone();
    st.db
        .call(move |c| {
            if let Err(e) = assign_idmap(c, &mut stored, &map_config, ids, false) {
                return Ok(Err(e));
            }
            crate::db::instances::update(c, &stored)?;
            Ok(Ok(()))
        })
        .await?
        .map_err(ApiError::bad_request)?;
    if status != StatusCode::Stopped {
        let mut applied = apply_live(st, name, &old_expanded, &expanded);
        if let (Ok(()), Some(pid), false) = (&applied, pid, change.is_empty()) {
            let target = inst::hotplug::Target {
                pid,
                privileged: old_expanded
                    .get("security.privileged")
                    .is_some_and(|v| v == "true"),
                no_symlinks: super::projects::is_restricted(st, &rec.project).await,
            };
            applied = inst::hotplug::apply(st, name, target, &change, &devices).await;
            if applied.is_err() {
                // Take back what was added; the old record goes back below.
                let back = inst::hotplug::diff(&devices, &old_devices);
                let _ = inst::hotplug::apply(st, name, target, &back, &old_devices).await;
            }
        }
        if let Err(e) = applied {
            let _ = apply_live(st, name, &expanded, &old_expanded);
            st.db
                .call(move |c| crate::db::instances::update(c, &old))
                .await?;
            return Err(ApiError::new(berth_api::ErrorKind::Internal, e));
        }
    }
    st.events.lifecycle("instance-updated", &url(name), None);
    let op = st
        .ops
        .start(spec("Updating instance", name), |_| async { Ok(()) });
    Ok(async_operation(op.render()))
}

/// Writes changed limits into a running container's cgroup; removed limits go back to
/// the unlimited value.
pub(crate) fn apply_live(
    st: &AppState,
    name: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Result<(), String> {
    let host = st.runtime.host;
    let before = inst::limits::cgroup_settings(old, host)?;
    let after = inst::limits::cgroup_settings(new, host)?;
    let cg = format!("{}/{}", st.runtime.cgroup_parent, name);
    let all_cpus = if host.cpus > 1 {
        format!("0-{}", host.cpus - 1)
    } else {
        "0".to_owned()
    };
    for (controller, file, _) in &before {
        if after.iter().any(|(_, f, _)| f == file) {
            continue;
        }
        let reset = match *file {
            "pids.max" | "memory.max" | "memory.high" | "memory.swap.max" => "max".to_owned(),
            "cpu.max" => "max 100000".to_owned(),
            "cpu.weight" => "100".to_owned(),
            "cpu.shares" => "1024".to_owned(),
            "cpuset.cpus" => all_cpus.clone(),
            _ => "-1".to_owned(),
        };
        crate::host::cgroup::write(controller, &cg, file, &reset)
            .map_err(|e| format!("Failed to reset {file}: {e}"))?;
    }
    for (controller, file, value) in &after {
        crate::host::cgroup::write(controller, &cg, file, value)
            .map_err(|e| format!("Failed to set {file} to {value}: {e}"))?;
    }
    Ok(())
}

fn spec(description: &str, name: &str) -> OpSpec {
    let mut resources = BTreeMap::new();
    resources.insert("instances".to_owned(), vec![url(name)]);
    OpSpec {
        class: OperationClass::Task,
        description: description.to_owned(),
        resources: Some(resources),
        may_cancel: false,
        metadata: serde_json::Map::new(),
        fds: vec![],
    }
}

/// `POST /1.0/instances`: creates an instance from a local image (or empty), and starts it
/// when asked.
pub async fn post(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    Json(req): Json<InstancesPost>,
) -> ApiResult {
    inst::validate_name(&req.name).map_err(ApiError::bad_request)?;
    let project = super::project_param(q.as_deref());
    let host_name = crate::db::instances::host_name(&project, &req.name);
    if !req.kind.is_empty() && req.kind != "container" {
        return Err(ApiError::bad_request(format!(
            "Instance type {:?} is not supported",
            req.kind
        )));
    }
    let mut req = req;
    if req.source.kind == "copy" {
        // Clients copying an instance send its config, volatile keys and all: berthd sets
        // those of the copy itself.
        req.config.retain(|k, _| !k.starts_with("volatile."));
    } else if req.config.keys().any(|k| k.starts_with("volatile.")) {
        return Err(ApiError::bad_request("volatile.* keys are set by berthd"));
    }
    let copy = if req.source.kind == "copy" {
        Some(copy_source(&st, &project, &req.source).await?)
    } else {
        None
    };
    let image = match req.source.kind.as_str() {
        "image" => {
            if !req.source.server.is_empty() {
                return Err(ApiError::bad_request(
                    "Images from remote servers are not supported yet",
                ));
            }
            let key = if req.source.alias.is_empty() {
                req.source.fingerprint.clone()
            } else {
                req.source.alias.clone()
            };
            // The image comes from the instance's project's images.
            let images = super::images_project_of(&st, &project).await?;
            let fp = if req.source.alias.is_empty() {
                key.clone()
            } else {
                let (a, p) = (key.clone(), images.clone());
                st.db
                    .call(move |c| crate::db::images::get_alias(c, &p, &a))
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("Image alias {key:?} not found")))?
                    .target
            };
            Some(super::images::resolve(&st, &images, &fp).await?)
        }
        "none" | "" | "copy" => None,
        other => {
            return Err(ApiError::bad_request(format!(
                "Instance source {other:?} is not supported yet"
            )));
        }
    };
    let profile_names = req
        .profiles
        .clone()
        .unwrap_or_else(|| vec!["default".to_owned()]);
    // The instance's lock, then the profile lock (the order every path takes them in),
    // held until the instance is recorded: its profiles cannot change or go meanwhile.
    let lock = st.instances.lock(&host_name);
    let guard = lock.clone().lock_owned().await;
    let profile_guard = st.profile_lock.lock().await;
    let profiles = profiles(&st, &project, &profile_names).await?;
    let now = now_rfc3339();
    let mut config = req.config.clone();
    let architecture = image
        .as_ref()
        .map(|i| i.image.architecture.clone())
        .or_else(|| copy.as_ref().map(|c| c.rec.architecture.clone()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    if let Some(base) = copy
        .as_ref()
        .and_then(|c| c.rec.config.get("volatile.base_image"))
    {
        config.insert("volatile.base_image".to_owned(), base.clone());
    }
    if let Some(img) = &image {
        for (k, v) in &img.image.properties {
            config.insert(format!("image.{k}"), v.clone());
        }
        config.insert(
            "volatile.base_image".to_owned(),
            img.image.fingerprint.clone(),
        );
    }
    config.insert("volatile.uuid".to_owned(), uuid::Uuid::new_v4().to_string());
    config.insert("volatile.last_state.power".to_owned(), "STOPPED".to_owned());
    let rec = InstanceRecord {
        name: host_name.clone(),
        project: project.clone(),
        architecture,
        description: req.description.clone(),
        ephemeral: req.ephemeral,
        profiles: profile_names,
        config,
        devices: req.devices.clone(),
        created_at: now.clone(),
        last_used_at: "0001-01-01T00:00:00Z".to_owned(),
    };
    let (expanded, devices) = inst::expand(&profiles, &rec);
    let candidate = (host_name.clone(), expanded.clone(), devices.clone());
    super::projects::check_allowed(&st, &project, &candidate).await?;
    validate_config(&req.config, st.runtime.host)?;
    validate_devices(&req.devices)?;
    validate_config(&expanded, st.runtime.host)?;
    super::projects::check_limits_with(&st, &project, &candidate).await?;
    let expanded_for_map = expanded.clone();
    let pool_name = inst::root_pool(&devices)
        .ok_or_else(|| ApiError::bad_request("The instance has no root disk device"))?;
    let pool = st.pools.get(&pool_name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Storage pool {pool_name:?} of the root disk is not available"
        ))
    })?;

    let mut stored = rec.clone();
    let pn = pool_name.clone();
    let ids = st.runtime.ids;
    let (inserted, rec) = st
        .db
        .call(move |c| {
            if crate::db::instances::get(c, &stored.name)?.is_some() {
                return Ok(Ok((false, stored)));
            }
            // The id map is chosen where the others are read, so two creates never take
            // the same isolated range.
            if let Err(e) = assign_idmap(c, &mut stored, &expanded_for_map, ids, true) {
                return Ok(Err(e));
            }
            crate::db::instances::insert(c, &stored, &pn)?;
            Ok(Ok((true, stored)))
        })
        .await?
        .map_err(ApiError::bad_request)?;
    drop(profile_guard);
    if !inserted {
        return Err(ApiError::new(
            ErrorKind::AlreadyExists,
            format!("Instance {:?} already exists", req.name),
        ));
    }
    let start = req.start;
    let state = st.clone();
    let op = st.ops.start(
        spec("Creating instance", &host_name),
        move |ctx| async move {
            let _guard = guard;
            let st = state;
            let began = std::time::Instant::now();
            let result = match &copy {
                Some(from) => create_copy(&st, &rec, from, pool.as_ref()).await,
                None => create(&st, &rec, image.as_ref(), pool.as_ref(), &ctx).await,
            };
            tracing::debug!(instance = %rec.name, ms = began.elapsed().as_millis(), "Instance created");
            if let Err(e) = result {
                // Undo: the volume and its snapshots, the runtime directory and the records.
                let _ = pool.delete_volume(berth_storage::VolumeType::Container, &rec.name);
                let _ = pool.delete_snapshots(berth_storage::VolumeType::Container, &rec.name);
                let _ = std::fs::remove_dir_all(inst::container_dir(&st, &rec.name));
                let n = rec.name.clone();
                let _ = st
                    .db
                    .call(move |c| crate::db::instances::delete(c, &n))
                    .await;
                return Err(e);
            }
            st.events.lifecycle(
                "instance-created",
                &url(&rec.name),
                None,
            );
            if start {
                let rootfs = pool
                    .volume_path(berth_storage::VolumeType::Container, &rec.name)
                    .join("rootfs");
                let began = std::time::Instant::now();
                inst::start(&st, &rec, &expanded, &devices, &rootfs).await?;
                let started = began.elapsed().as_millis();
                set_power(&st, &rec.name, "RUNNING").await;
                tracing::debug!(
                    instance = %rec.name,
                    start_ms = started,
                    recorded_ms = began.elapsed().as_millis(),
                    "Instance started"
                );
                st.events.lifecycle(
                    "instance-started",
                    &url(&rec.name),
                    None,
                );
            }
            // The next instance from this image takes a volume unpacked meanwhile.
            if let Some(img) = image {
                inst::spares::refill(st.clone(), pool.clone(), img);
            }
            Ok(())
        },
    );
    Ok(async_operation(op.render()))
}

/// What a copy is made from: a running or stopped instance's volume, or one of its
/// snapshots, with the snapshots that go along.
#[derive(Debug)]
struct CopyFrom {
    rec: InstanceRecord,
    /// The directory copied.
    path: std::path::PathBuf,
    /// The cgroup to freeze while copying (a running instance's volume).
    freeze: Option<String>,
    /// The source's snapshots copied too, with their directories.
    snapshots: Vec<(crate::db::snapshots::SnapshotRecord, std::path::PathBuf)>,
}

/// Resolves `source` (`NAME` or `NAME/SNAP`, in `source.project` or `project`).
async fn copy_source(
    st: &AppState,
    project: &str,
    source: &berth_api::instance::InstanceSource,
) -> Result<CopyFrom, ApiError> {
    // `live` (which lxc sends for a running source) is served by a stateless copy of the
    // frozen instance, as LXD serves local copies (running state moves with migration).
    if !source.server.is_empty() {
        return Err(ApiError::bad_request(
            "Copies between servers are not supported yet",
        ));
    }
    let src_project = if source.project.is_empty() {
        project
    } else {
        &source.project
    };
    let (name, snap) = match source.source.split_once('/') {
        Some((n, s)) => (n, Some(s)),
        None => (source.source.as_str(), None),
    };
    inst::validate_name(name).map_err(ApiError::bad_request)?;
    let host = crate::db::instances::host_name(src_project, name);
    let rec = find(st, &host).await?;
    let pool = pool_of(st, &rec).await?;
    let t = berth_storage::VolumeType::Container;
    let all = {
        let h = host.clone();
        st.db
            .call(move |c| crate::db::snapshots::list(c, &h))
            .await?
    };
    if let Some(snap) = snap {
        if !all.iter().any(|s| s.name == snap) {
            return Err(ApiError::not_found(format!(
                "Snapshot {snap:?} of instance {name:?} not found"
            )));
        }
        return Ok(CopyFrom {
            path: pool.snapshot_path(t, &host, snap),
            rec,
            freeze: None,
            snapshots: vec![],
        });
    }
    let running = status_of(st, &host).await.0 != StatusCode::Stopped;
    let snapshots = if source.instance_only {
        vec![]
    } else {
        all.into_iter()
            .map(|s| {
                let p = pool.snapshot_path(t, &host, &s.name);
                (s, p)
            })
            .collect()
    };
    Ok(CopyFrom {
        path: pool.volume_path(t, &host),
        freeze: running.then(|| format!("{}/{}", st.runtime.cgroup_parent, host)),
        rec,
        snapshots,
    })
}

/// Makes instance `rec`'s volume (and snapshots) as copies of `from`, a running source
/// frozen meanwhile, then renders the image's `copy` templates.
async fn create_copy(
    st: &AppState,
    rec: &InstanceRecord,
    from: &CopyFrom,
    pool: &dyn berth_storage::Driver,
) -> Result<(), String> {
    let dir = inst::container_dir(st, &rec.name);
    crate::db::create_private_dir(&dir)
        .map_err(|e| format!("Failed to create {}: {e}", dir.display()))?;
    // The source cannot change, stop or go while it is copied.
    let _source = st.instances.lock(&from.rec.name).lock_owned().await;
    let t = berth_storage::VolumeType::Container;
    let freeze = from
        .freeze
        .as_ref()
        .filter(|cg| !crate::host::cgroup::is_frozen(cg));
    if let Some(cg) = freeze {
        crate::host::cgroup::set_frozen(cg, true)
            .map_err(|e| format!("Failed to freeze the source for its copy: {e}"))?;
    }
    let copied = tokio::task::block_in_place(|| pool.create_volume_from(t, &rec.name, &from.path));
    if let Some(cg) = freeze
        && let Err(e) = crate::host::cgroup::set_frozen(cg, false)
    {
        tracing::error!(error = %e, "Failed to thaw the source after its copy");
    }
    copied.map_err(|e| crate::logging::chain(&e))?;
    // Saved states stay with the source: a copy's snapshots restore files only.
    tokio::task::block_in_place(|| {
        inst::checkpoint::strip_volume(&pool.volume_path(t, &rec.name))
    })?;
    for (s, path) in &from.snapshots {
        tokio::task::block_in_place(|| {
            pool.create_snapshot_from(t, &rec.name, &s.name, path)
                .map_err(|e| crate::logging::chain(&e))?;
            inst::checkpoint::strip_volume(&pool.snapshot_path(t, &rec.name, &s.name))
        })?;
        let row = crate::db::snapshots::SnapshotRecord {
            instance: rec.name.clone(),
            stateful: false,
            ..s.clone()
        };
        st.db
            .call(move |c| crate::db::snapshots::insert(c, &row))
            .await
            .map_err(|e| crate::logging::chain(&e))?;
    }
    inst::apply_templates(rec, &pool.volume_path(t, &rec.name), "copy")
}

async fn create(
    st: &AppState,
    rec: &InstanceRecord,
    image: Option<&crate::db::images::ImageRecord>,
    pool: &dyn berth_storage::Driver,
    ctx: &crate::operations::OpCtx,
) -> Result<(), String> {
    let dir = inst::container_dir(st, &rec.name);
    crate::db::create_private_dir(&dir)
        .map_err(|e| format!("Failed to create {}: {e}", dir.display()))?;
    // The image unpacked ahead (a spare volume) is taken with one rename.
    if let Some(img) = image
        && inst::spares::claim(pool, &img.image.fingerprint, &rec.name)
    {
        let volume = pool.volume_path(berth_storage::VolumeType::Container, &rec.name);
        return apply_create_templates(rec, img, &volume);
    }
    let volume = pool
        .create_volume(berth_storage::VolumeType::Container, &rec.name)
        .map_err(|e| crate::logging::chain(&e))?;
    let Some(img) = image else {
        return std::fs::create_dir(volume.join("rootfs"))
            .map_err(|e| format!("Failed to create rootfs: {e}"));
    };
    let images = st.paths.images();
    let fp = img.image.fingerprint.clone();
    let split = img.split;
    let v = volume.clone();
    // Progress goes out as operation metadata (`progress.percent`), at most once per percent.
    let (tx, mut rx) = tokio::sync::watch::channel((0u64, 0u64));
    let report: inst::unpack::Progress = std::sync::Arc::new(move |done, total| {
        let pct = |d: u64, t: u64| (d * 100).checked_div(t).unwrap_or(0);
        tx.send_if_modified(|cur| {
            let changed = pct(done, total) != pct(cur.0, cur.1);
            *cur = (done, total);
            changed
        });
    });
    let unpack = tokio::task::spawn_blocking(move || {
        let rootfs = split.then(|| images.join(format!("{fp}.rootfs")));
        inst::unpack::unpack(&images.join(&fp), rootfs.as_deref(), &v, &report)
    });
    let progress = async {
        while rx.changed().await.is_ok() {
            let (done, total) = *rx.borrow();
            let mut md = serde_json::Map::new();
            let percent = (done * 100).checked_div(total).unwrap_or(0);
            md.insert(
                "progress".into(),
                serde_json::json!({"stage": "unpack", "percent": percent.to_string()}),
            );
            ctx.set_metadata(md);
        }
    };
    let began = std::time::Instant::now();
    let (result, ()) = tokio::join!(unpack, progress);
    tracing::debug!(instance = %rec.name, ms = began.elapsed().as_millis(), "Image unpacked");
    result
        .map_err(|e| e.to_string())?
        .map_err(|e| crate::logging::chain(&e))?;
    apply_create_templates(rec, img, &volume)
}

/// Renders the image's `create` templates into a new instance's volume.
fn apply_create_templates(
    rec: &InstanceRecord,
    img: &crate::db::images::ImageRecord,
    volume: &std::path::Path,
) -> Result<(), String> {
    let md: berth_image::ImageMetadata = serde_json::from_str(&img.metadata).unwrap_or_default();
    let ctx = templates::Context {
        name: rec.api_name(),
        architecture: &rec.architecture,
        config: &rec.config,
    };
    templates::apply(volume, &md, "create", &ctx).map_err(|e| crate::logging::chain(&e))
}

/// Chooses the instance's id map from its expanded config (keeping its current isolated
/// range while free) and stores it in its `volatile.idmap.*` keys. Runs in a database
/// call, so the ranges of the other instances cannot change meanwhile. The map takes
/// effect at the next start.
pub(crate) fn assign_idmap(
    c: &rusqlite::Connection,
    rec: &mut InstanceRecord,
    expanded: &BTreeMap<String, String>,
    ids: inst::idmap::HostIds,
    new: bool,
) -> Result<(), String> {
    let others = crate::db::instances::list(c).map_err(|e| e.to_string())?;
    let taken = inst::idmap::IdMap::taken_by(
        others
            .iter()
            .filter(|o| o.name != rec.name)
            .map(|o| &o.config),
        ids,
    );
    let current = if new {
        None
    } else {
        rec.config
            .get("volatile.idmap.base")
            .and_then(|b| b.parse().ok())
    };
    let map = inst::idmap::choose(expanded, ids, current, &taken)?;
    inst::idmap::IdMap::store(map, &mut rec.config);
    if new {
        let json = rec.config["volatile.idmap.next"].clone();
        rec.config
            .insert("volatile.idmap.current".to_owned(), json.clone());
        rec.config
            .insert("volatile.last_state.idmap".to_owned(), json);
    }
    Ok(())
}

pub(crate) async fn set_power(st: &AppState, name: &str, power: &str) {
    let (n, p) = (name.to_owned(), power.to_owned());
    let _ = st
        .db
        .call(move |c| {
            if let Some(mut rec) = crate::db::instances::get(c, &n)? {
                rec.config.insert("volatile.last_state.power".to_owned(), p);
                if rec.config["volatile.last_state.power"] == "RUNNING"
                    && let Some(next) = rec.config.get("volatile.idmap.next").cloned()
                {
                    rec.config
                        .insert("volatile.idmap.current".to_owned(), next.clone());
                    rec.config
                        .insert("volatile.last_state.idmap".to_owned(), next);
                }
                if rec
                    .config
                    .get("volatile.last_state.power")
                    .map(String::as_str)
                    == Some("RUNNING")
                {
                    c.execute(
                        "UPDATE instances SET last_used_at = ?2 WHERE name = ?1",
                        rusqlite::params![n, now_rfc3339()],
                    )?;
                }
                crate::db::instances::set_config(c, &n, &rec.config)?;
            }
            Ok(())
        })
        .await;
}

/// `DELETE /1.0/instances/{name}`: the instance must be stopped.
pub async fn delete(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
) -> ApiResult {
    let rec = find(&st, &name).await?;
    let guard = st.instances.lock(&name).lock_owned().await;
    if status_of(&st, &name).await.0 != StatusCode::Stopped {
        return Err(ApiError::bad_request(
            "Instance is running; stop it first (or delete with force)",
        ));
    }
    let state = st.clone();
    let op = st
        .ops
        .start(spec("Deleting instance", &name), move |_| async move {
            let _guard = guard;
            remove(&state, &rec).await
        });
    Ok(async_operation(op.render()))
}

async fn remove(st: &AppState, rec: &InstanceRecord) -> Result<(), String> {
    let profiles = profiles(st, &rec.project, &rec.profiles)
        .await
        .map_err(|e| e.message)?;
    let (_, devices) = inst::expand(&profiles, rec);
    if let Some(pool) = inst::root_pool(&devices).and_then(|p| st.pools.get(&p)) {
        match pool.delete_volume(berth_storage::VolumeType::Container, &rec.name) {
            Ok(()) => {}
            Err(e) if e.kind() == berth_storage::StorageErrorKind::NotFound => {}
            Err(e) => return Err(crate::logging::chain(&e)),
        }
        pool.delete_snapshots(berth_storage::VolumeType::Container, &rec.name)
            .map_err(|e| crate::logging::chain(&e))?;
    }
    let dir = inst::container_dir(st, &rec.name);
    let d = dir.clone();
    let _ = tokio::task::spawn_blocking(move || inst::console::quit(&d)).await;
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(inst::nodes_dir(st, &rec.name));
    let n = rec.name.clone();
    st.db
        .call(move |c| crate::db::instances::delete(c, &n))
        .await
        .map_err(|e| crate::logging::chain(&e))?;
    st.instances.forget(&rec.name);
    st.events
        .lifecycle("instance-deleted", &url(&rec.name), None);
    Ok(())
}

/// An instance's status and init pid only (what a list without state shows). Blocking.
fn observe_status(lxcpath: &std::path::Path, cgroup_parent: &str, name: &str) -> InstanceState {
    let (mut status, pid) = inst::lxc_status(lxcpath, name);
    if status == StatusCode::Running
        && crate::host::cgroup::is_frozen(&format!("{cgroup_parent}/{name}"))
    {
        status = StatusCode::Frozen;
    }
    InstanceState {
        status: status.name().to_owned(),
        status_code: status.code(),
        pid: i64::from(pid.unwrap_or(0)),
        ..Default::default()
    }
}

/// What the host says of one container: its status and init pid, the freezer, cgroup
/// counters, its network. Blocking. `own_thread`: the caller owns this thread and discards
/// it (a scoped worker), so reading the network may move it into the container's network
/// namespace for a moment.
fn observe(
    lxcpath: &std::path::Path,
    cgroup_parent: &str,
    name: &str,
    host_memory: i64,
    own_thread: bool,
) -> InstanceState {
    let (mut status, pid) = inst::lxc_status(lxcpath, name);
    let cg = format!("{cgroup_parent}/{name}");
    if status == StatusCode::Running && crate::host::cgroup::is_frozen(&cg) {
        status = StatusCode::Frozen;
    }
    let running = pid.is_some();
    InstanceState {
        status: status.name().to_owned(),
        status_code: status.code(),
        pid: i64::from(pid.unwrap_or(0)),
        processes: if running {
            crate::host::cgroup::processes(&cg)
        } else {
            0
        },
        memory: if running {
            berth_api::instance::InstanceStateMemory {
                usage: crate::host::cgroup::memory_usage(&cg),
                usage_peak: crate::host::cgroup::memory_peak(&cg),
                total: crate::host::cgroup::memory_limit(&cg).unwrap_or(host_memory),
                ..Default::default()
            }
        } else {
            Default::default()
        },
        cpu: berth_api::instance::InstanceStateCpu {
            usage: if running {
                crate::host::cgroup::cpu_usage(&cg)
            } else {
                0
            },
        },
        // Clients parse it as a time: never empty.
        started_at: pid
            .and_then(inst::started_at)
            .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_owned()),
        network: pid.and_then(|p| {
            if own_thread {
                crate::host::netns::interfaces_joining(p).ok()
            } else {
                crate::host::netns::interfaces(p).ok()
            }
        }),
        ..Default::default()
    }
}

async fn state_of(st: &AppState, name: &str) -> InstanceState {
    let lxcpath = st.paths.containers();
    let parent = st.runtime.cgroup_parent.clone();
    let n = name.to_owned();
    let host_memory = i64::try_from(st.runtime.host.memory).unwrap_or(i64::MAX);
    tokio::task::spawn_blocking(move || observe(&lxcpath, &parent, &n, host_memory, false))
        .await
        .unwrap_or_default()
}

/// `GET /1.0/instances/{name}/state`.
pub async fn get_state(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
) -> ApiResult {
    find(&st, &name).await?;
    Ok(sync(state_of(&st, &name).await))
}

/// `PUT /1.0/instances/{name}/state`.
pub async fn put_state(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
    Json(req): Json<InstanceStatePut>,
) -> ApiResult {
    let rec = find(&st, &name).await?;
    let action = req.action.clone();
    let description = match action.as_str() {
        "start" => "Starting instance",
        "stop" => "Stopping instance",
        "restart" => "Restarting instance",
        "freeze" => "Freezing instance",
        "unfreeze" => "Unfreezing instance",
        other => return Err(ApiError::bad_request(format!("Unknown action {other:?}"))),
    };
    if req.stateful {
        check_stateful(&st, &rec, &action).await?;
    }
    let lock = st.instances.lock(&name);
    let state = st.clone();
    let op = st.ops.start(spec(description, &name), move |_| async move {
        let _guard = lock.lock_owned().await;
        let st: Arc<crate::state::State> = state;
        change_state(&st, &rec, &req).await
    });
    Ok(async_operation(op.render()))
}

/// Refuses a stateful state change that cannot work, before anything happens. `dump`
/// (a stateful stop or snapshot) checks that the instance can be checkpointed now.
pub(crate) async fn check_stateful(
    st: &AppState,
    rec: &InstanceRecord,
    action: &str,
) -> Result<(), ApiError> {
    match action {
        "stop" | "snapshot" => {
            let profiles = profiles(st, &rec.project, &rec.profiles).await?;
            let (config, _) = inst::expand(&profiles, rec);
            if !inst::checkpoint::checkpointable(&config) {
                return Err(ApiError::bad_request(format!(
                    "Stateful {action} requires migration.stateful=true on the instance"
                )));
            }
            if rec.ephemeral && action == "stop" {
                return Err(ApiError::bad_request(
                    "Stateful stop is not possible for an ephemeral instance",
                ));
            }
            if status_of(st, &rec.name).await.0 == StatusCode::Stopped {
                return Err(ApiError::bad_request(if action == "stop" {
                    "The instance is already stopped"
                } else {
                    "A stateful snapshot needs a running instance"
                }));
            }
            if !inst::checkpoint::runs_with_keeper(st, &rec.name) {
                return Err(ApiError::bad_request(
                    "The instance was started before migration.stateful=true: restart it first",
                ));
            }
            inst::checkpoint::criu_check()
                .await
                .map_err(ApiError::bad_request)
        }
        "start" => {
            if !inst::checkpoint::has_state(st, &rec.name) {
                return Err(ApiError::bad_request(
                    "The instance has no saved state to restore",
                ));
            }
            inst::checkpoint::criu_check()
                .await
                .map_err(ApiError::bad_request)
        }
        other => Err(ApiError::bad_request(format!(
            "Action {other:?} cannot be stateful (only stop and start)"
        ))),
    }
}

pub(crate) async fn change_state(
    st: &AppState,
    rec: &InstanceRecord,
    req: &InstanceStatePut,
) -> Result<(), String> {
    let name = &rec.name;
    let source = url(name);
    let (status, _) = status_of(st, name).await;
    let running = status != StatusCode::Stopped;
    // The root disk may come from a profile: look at the expanded devices.
    let profiles = profiles(st, &rec.project, &rec.profiles)
        .await
        .map_err(|e| e.message)?;
    let (config, devices) = inst::expand(&profiles, rec);
    let pool = inst::root_pool(&devices).and_then(|p| st.pools.get(&p));
    let rootfs = || -> Result<std::path::PathBuf, String> {
        let pool = pool
            .as_ref()
            .ok_or("The pool of the root disk is not available")?;
        Ok(pool
            .volume_path(berth_storage::VolumeType::Container, name)
            .join("rootfs"))
    };
    match req.action.as_str() {
        "start" if status == StatusCode::Frozen => {
            // As in LXD, starting a frozen instance thaws it.
            let cg = format!("{}/{}", st.runtime.cgroup_parent, name);
            tokio::task::spawn_blocking(move || crate::host::cgroup::set_frozen(&cg, false))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("Failed to unfreeze the instance: {e}"))?;
            st.events.lifecycle("instance-resumed", &source, None);
        }
        "start" => {
            if running {
                return Err("The instance is already running".to_owned());
            }
            if req.stateful {
                inst::checkpoint::restore(st, rec, &config, &devices, &rootfs()?).await?;
            } else {
                // As in LXD, a stateless start discards a saved state (the start does).
                inst::start(st, rec, &config, &devices, &rootfs()?).await?;
            }
            set_power(st, name, "RUNNING").await;
            st.events.lifecycle("instance-started", &source, None);
        }
        "stop" if req.stateful => {
            if !running {
                return Err("The instance is already stopped".to_owned());
            }
            inst::checkpoint::checkpoint(st, rec).await?;
            crate::host::cgroup::remove_parent(&st.runtime.cgroup_parent);
            set_power(st, name, "STOPPED").await;
            st.events.lifecycle("instance-stopped", &source, None);
        }
        "stop" => {
            if !running {
                let dir = inst::container_dir(st, name);
                let _ = tokio::task::spawn_blocking(move || inst::console::quit(&dir)).await;
                return Err("The instance is already stopped".to_owned());
            }
            inst::stop(st, name, req.timeout, req.force).await?;
            let dir = inst::container_dir(st, name);
            let _ = tokio::task::spawn_blocking(move || inst::console::quit(&dir)).await;
            crate::host::cgroup::remove_parent(&st.runtime.cgroup_parent);
            set_power(st, name, "STOPPED").await;
            st.events.lifecycle("instance-stopped", &source, None);
            if rec.ephemeral {
                remove(st, rec).await?;
            }
        }
        "restart" => {
            if running {
                inst::stop(st, name, req.timeout, req.force).await?;
            }
            inst::start(st, rec, &config, &devices, &rootfs()?).await?;
            set_power(st, name, "RUNNING").await;
            st.events.lifecycle("instance-restarted", &source, None);
        }
        "freeze" | "unfreeze" => {
            let freeze = req.action == "freeze";
            if !running {
                return Err("The instance is not running".to_owned());
            }
            let cg = format!("{}/{}", st.runtime.cgroup_parent, name);
            tokio::task::spawn_blocking(move || crate::host::cgroup::set_frozen(&cg, freeze))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| {
                    format!(
                        "Failed to {} the instance: {e}",
                        if freeze { "freeze" } else { "unfreeze" }
                    )
                })?;
            st.events.lifecycle(
                if freeze {
                    "instance-paused"
                } else {
                    "instance-resumed"
                },
                &source,
                None,
            );
        }
        _ => {}
    }
    Ok(())
}

/// Called when berthd starts: instances whose container stopped while no berthd ran are
/// recorded as stopped and their host leftovers (cgroups, recorded init pid) removed.
pub async fn sweep(st: &AppState) {
    let Ok(recs) = st.db.call(|c| crate::db::instances::list(c)).await else {
        return;
    };
    for rec in recs {
        let _guard = st.instances.lock(&rec.name).lock_owned().await;
        if status_of(st, &rec.name).await.0 != StatusCode::Stopped {
            continue;
        }
        let (parent, name) = (st.runtime.cgroup_parent.clone(), rec.name.clone());
        // A restore's root left mounted by a crash, and the console keeper of a container
        // that powered itself off (one with a saved state keeps its keeper and its log).
        let has_state = inst::checkpoint::has_state(st, &rec.name);
        let dir = inst::container_dir(st, &rec.name);
        let state = st.clone();
        let _ = tokio::task::spawn_blocking(move || {
            crate::host::cgroup::remove_leftovers(&parent, &name);
            inst::checkpoint::unstage(&state, &name);
            if !has_state {
                inst::console::quit(&dir);
            }
        })
        .await;
        if rec
            .config
            .get("volatile.last_state.power")
            .map(String::as_str)
            == Some("RUNNING")
        {
            tracing::info!(instance = %rec.name, "Instance stopped while berthd was down");
            set_power(st, &rec.name, "STOPPED").await;
        }
    }
    crate::host::cgroup::remove_parent(&st.runtime.cgroup_parent);
}

/// Starts every stopped instance with `boot.autostart=true` (called when berthd starts).
pub async fn autostart(st: AppState) {
    let Ok(recs) = st.db.call(|c| crate::db::instances::list(c)).await else {
        return;
    };
    for rec in recs {
        let Ok(profiles) = profiles(&st, &rec.project, &rec.profiles).await else {
            continue;
        };
        let (config, _) = inst::expand(&profiles, &rec);
        if config.get("boot.autostart").map(String::as_str) != Some("true") {
            continue;
        }
        let _guard = st.instances.lock(&rec.name).lock_owned().await;
        if status_of(&st, &rec.name).await.0 != StatusCode::Stopped {
            continue;
        }
        // A saved state is restored, not discarded.
        let req = InstanceStatePut {
            action: "start".to_owned(),
            stateful: inst::checkpoint::has_state(&st, &rec.name),
            ..Default::default()
        };
        if let Err(e) = change_state(&st, &rec, &req).await {
            tracing::warn!(instance = %rec.name, error = %e, "Autostart failed");
        }
    }
}
