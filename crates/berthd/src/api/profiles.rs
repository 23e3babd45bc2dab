//! `/1.0/profiles`: profiles, which instances expand in order with their own values last.
//!
//! A profile change is checked against every instance using it before anything is
//! written (an instance that would become invalid refuses the whole change, naming it);
//! then limits reach running instances live. `default` always exists: it can be edited,
//! not deleted or renamed.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use berth_api::ErrorKind;
use berth_api::instance::Device;
use serde::Deserialize;

use super::instances::{apply_live, field, status_of, validate_config, validate_devices};
use super::{ApiError, ApiResult, AppState, Json, recursion, sync};
use crate::db::instances::{InstanceRecord, ProfileRecord};
use crate::instances as inst;

/// The body of `POST /1.0/profiles`.
#[derive(Debug, Deserialize)]
pub struct ProfilesPost {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    config: Option<BTreeMap<String, String>>,
    #[serde(default)]
    devices: Option<BTreeMap<String, Device>>,
}

/// The body of `POST /1.0/profiles/{name}` (rename).
#[derive(Debug, Deserialize)]
pub struct ProfilePost {
    name: String,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 63
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', ' ', '\n', '\t', '\0'])
    {
        return Err(ApiError::bad_request(format!(
            "Invalid profile name {name:?}"
        )));
    }
    Ok(())
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Profile {name:?} not found"))
}

fn etag(p: &ProfileRecord) -> String {
    crate::state::etag_of(&(&p.name, &p.description, &p.config, &p.devices))
}

async fn find(st: &AppState, name: &str) -> Result<ProfileRecord, ApiError> {
    let n = name.to_owned();
    st.db
        .call(move |c| crate::db::instances::profile(c, &n))
        .await?
        .ok_or_else(|| not_found(name))
}

fn render(p: &ProfileRecord, used_by: &[String]) -> serde_json::Value {
    serde_json::json!({
        "name": p.name, "description": p.description, "config": p.config,
        "devices": p.devices, "used_by": used_by,
    })
}

fn used_by(name: &str, instances: &[InstanceRecord]) -> Vec<String> {
    instances
        .iter()
        .filter(|i| i.profiles.iter().any(|p| p == name))
        .map(|i| format!("/1.0/instances/{}", i.name))
        .collect()
}

async fn all_instances(st: &AppState) -> Result<Vec<InstanceRecord>, ApiError> {
    Ok(st.db.call(|c| crate::db::instances::list(c)).await?)
}

/// `GET /1.0/profiles`.
pub async fn list(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let level = recursion(q.as_deref())?;
    let profiles = st
        .db
        .call(|c| crate::db::instances::all_profiles(c))
        .await?;
    if level == 0 {
        return Ok(sync(
            profiles
                .iter()
                .map(|p| format!("/1.0/profiles/{}", p.name))
                .collect::<Vec<_>>(),
        ));
    }
    let instances = all_instances(&st).await?;
    Ok(sync(
        profiles
            .iter()
            .map(|p| render(p, &used_by(&p.name, &instances)))
            .collect::<Vec<_>>(),
    ))
}

/// `GET /1.0/profiles/{name}`.
pub async fn get(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let p = find(&st, &name).await?;
    let instances = all_instances(&st).await?;
    Ok(super::sync_etag(
        render(&p, &used_by(&name, &instances)),
        &etag(&p),
    ))
}

/// `POST /1.0/profiles`.
pub async fn post(State(st): State<AppState>, Json(req): Json<ProfilesPost>) -> ApiResult {
    check_name(&req.name)?;
    let config = req.config.unwrap_or_default();
    let devices = req.devices.unwrap_or_default();
    validate_config(&config, st.runtime.host)?;
    validate_devices(&devices)?;
    let _guard = st.profile_lock.lock().await;
    let rec = ProfileRecord {
        name: req.name.clone(),
        description: req.description.unwrap_or_default(),
        config,
        devices,
    };
    let stored = rec.clone();
    let created = st
        .db
        .call(move |c| crate::db::instances::insert_profile(c, &stored))
        .await?;
    if !created {
        return Err(ApiError::new(
            ErrorKind::AlreadyExists,
            format!("Profile {:?} already exists", req.name),
        ));
    }
    st.events.lifecycle(
        "profile-created",
        &format!("/1.0/profiles/{}", req.name),
        None,
    );
    Ok(super::sync_created(&format!("/1.0/profiles/{}", req.name)))
}

/// `PUT /1.0/profiles/{name}`: replaces description, config and devices.
pub async fn put(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<serde_json::Value>,
) -> ApiResult {
    update(&st, &name, &headers, req, true).await
}

/// `PATCH /1.0/profiles/{name}`: merges; an empty config value unsets the key.
pub async fn patch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<serde_json::Value>,
) -> ApiResult {
    update(&st, &name, &headers, req, false).await
}

async fn update(
    st: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: serde_json::Value,
    replace: bool,
) -> ApiResult {
    let _guard = st.profile_lock.lock().await;
    let old = find(st, name).await?;
    super::check_if_match(headers, &etag(&old))?;
    let mut new = old.clone();
    match field::<BTreeMap<String, String>>(&body, "config")? {
        Some(config) if replace => new.config = config,
        Some(config) => {
            for (k, v) in config {
                if v.is_empty() {
                    new.config.remove(&k);
                } else {
                    new.config.insert(k, v);
                }
            }
        }
        None if replace => new.config.clear(),
        None => {}
    }
    match field::<BTreeMap<String, Device>>(&body, "devices")? {
        Some(devices) if replace => new.devices = devices,
        Some(devices) => new.devices.extend(devices),
        None if replace => new.devices.clear(),
        None => {}
    }
    if let Some(d) = field(&body, "description")? {
        new.description = d;
    } else if replace {
        new.description.clear();
    }
    validate_config(&new.config, st.runtime.host)?;
    validate_devices(&new.devices)?;
    // Every instance using the profile must stay valid; its root disk must not move.
    let instances = all_instances(st).await?;
    let all = st
        .db
        .call(|c| crate::db::instances::all_profiles(c))
        .await?;
    let expand_with = |rec: &InstanceRecord, replacement: &ProfileRecord| {
        let profiles: Vec<ProfileRecord> = rec
            .profiles
            .iter()
            .filter_map(|p| {
                if p == name {
                    Some(replacement.clone())
                } else {
                    all.iter().find(|q| &q.name == p).cloned()
                }
            })
            .collect();
        inst::expand(&profiles, rec)
    };
    let users: Vec<&InstanceRecord> = instances
        .iter()
        .filter(|i| i.profiles.iter().any(|p| p == name))
        .collect();
    let mut running = Vec::new();
    for rec in &users {
        let (config, devices) = expand_with(rec, &new);
        validate_config(&config, st.runtime.host).map_err(|e| {
            ApiError::bad_request(format!("Instance {:?}: {}", rec.name, e.message))
        })?;
        let (_, old_devices) = expand_with(rec, &old);
        if let (_, Some(pid)) = status_of(st, &rec.name).await {
            let change = inst::hotplug::diff(&old_devices, &devices);
            inst::hotplug::check(&change)
                .map_err(|e| ApiError::bad_request(format!("Instance {:?}: {e}", rec.name)))?;
            running.push((rec.name.clone(), pid, change, devices.clone()));
        }
        if inst::root_pool(&devices) != inst::root_pool(&old_devices) {
            return Err(ApiError::bad_request(format!(
                "Instance {:?}: the root disk's pool cannot be changed",
                rec.name
            )));
        }
        if inst::root_pool(&devices).is_none() {
            return Err(ApiError::bad_request(format!(
                "Instance {:?} would have no root disk",
                rec.name
            )));
        }
    }
    // The profile and its users' id maps (a profile may make them isolated, privileged…)
    // are written together; new maps apply at each user's next start.
    let stored = new.clone();
    let ids = st.runtime.ids;
    let remapped: Vec<(InstanceRecord, BTreeMap<String, String>)> = users
        .iter()
        .map(|rec| ((*rec).clone(), expand_with(rec, &new).0))
        .collect();
    st.db
        .call(move |c| {
            let mut records = Vec::new();
            for (mut rec, expanded) in remapped {
                if let Err(e) = super::instances::assign_idmap(c, &mut rec, &expanded, ids, false) {
                    return Ok(Err(format!("Instance {:?}: {e}", rec.name)));
                }
                records.push(rec);
            }
            crate::db::instances::update_profile(c, &stored)?;
            for rec in records {
                crate::db::instances::set_config(c, &rec.name, &rec.config)?;
            }
            Ok(Ok(()))
        })
        .await?
        .map_err(ApiError::bad_request)?;
    // Running users get the changed limits and devices now.
    for (instance, pid, change, devices) in running {
        let Some(rec) = users.iter().find(|r| r.name == instance) else {
            continue;
        };
        let (before, _) = expand_with(rec, &old);
        let (after, _) = expand_with(rec, &new);
        let mut applied = apply_live(st, &rec.name, &before, &after);
        if applied.is_ok() && !change.is_empty() {
            applied = inst::hotplug::apply(st, &rec.name, pid, &change, &devices).await;
        }
        if let Err(e) = applied {
            tracing::warn!(instance = %rec.name, error = %e, "Profile change not applied live");
        }
    }
    st.events
        .lifecycle("profile-updated", &format!("/1.0/profiles/{name}"), None);
    Ok(super::sync_empty())
}

/// `DELETE /1.0/profiles/{name}`: not `default`, not while instances use it.
pub async fn delete(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    if name == "default" {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "The \"default\" profile cannot be deleted",
        ));
    }
    let _guard = st.profile_lock.lock().await;
    find(&st, &name).await?;
    let instances = all_instances(&st).await?;
    if !used_by(&name, &instances).is_empty() {
        return Err(ApiError::bad_request(format!(
            "Profile {name:?} is currently in use"
        )));
    }
    let n = name.clone();
    st.db
        .call(move |c| crate::db::instances::delete_profile(c, &n))
        .await?;
    st.events
        .lifecycle("profile-deleted", &format!("/1.0/profiles/{name}"), None);
    Ok(super::sync_empty())
}

/// `POST /1.0/profiles/{name}`: renames a profile and every instance's reference to it.
pub async fn rename(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<ProfilePost>,
) -> ApiResult {
    if name == "default" {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "The \"default\" profile cannot be renamed",
        ));
    }
    check_name(&req.name)?;
    let _guard = st.profile_lock.lock().await;
    find(&st, &name).await?;
    let (from, to) = (name.clone(), req.name.clone());
    let renamed = st
        .db
        .call(move |c| crate::db::instances::rename_profile(c, &from, &to))
        .await?;
    if !renamed {
        return Err(ApiError::new(
            ErrorKind::AlreadyExists,
            format!("Profile {:?} already exists", req.name),
        ));
    }
    let mut ctx = serde_json::Map::new();
    ctx.insert("old_name".into(), name.into());
    st.events.lifecycle(
        "profile-renamed",
        &format!("/1.0/profiles/{}", req.name),
        Some(ctx),
    );
    Ok(super::sync_created(&format!("/1.0/profiles/{}", req.name)))
}
