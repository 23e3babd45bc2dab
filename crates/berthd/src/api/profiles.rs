//! `/1.0/profiles`: profiles, which instances expand in order with their own values last.
//!
//! A profile change is checked against every instance using it before anything is
//! written (an instance that would become invalid refuses the whole change, naming it);
//! then limits and devices reach running instances live. `default` always exists: it can
//! be edited, not deleted or renamed.
//!
//! Profiles belong to a project: `?project=P` works on P's own profiles when P has
//! `features.profiles=true`, else on the `default` project's, which P's instances then use.

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

/// Checks a profile or snapshot name (`what`): one path component, no spaces, at most
/// 63 characters.
pub(crate) fn check_object_name(what: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 63
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', ' ', '\n', '\t', '\0', '?', '#', '%'])
    {
        return Err(ApiError::bad_request(format!(
            "Invalid {what} name {name:?}: no slash, space, ?, # or %, at most 63 characters"
        )));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ApiError> {
    check_object_name("profile", name)
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Profile {name:?} not found"))
}

/// Whose profiles a request works on.
#[derive(Debug)]
pub(crate) struct Scope {
    /// The project the request names.
    project: String,
    /// The project whose profiles those are.
    profiles: String,
    /// Every project whose instances use these profiles.
    users: Vec<String>,
}

impl Scope {
    fn url(&self, name: &str) -> String {
        if self.project == berth_api::DEFAULT_PROJECT {
            format!("/1.0/profiles/{name}")
        } else {
            format!("/1.0/profiles/{name}?project={}", self.project)
        }
    }
}

async fn scope(st: &AppState, q: Option<&str>) -> Result<Scope, ApiError> {
    let project = super::project_param(q);
    let projects = st.db.call(|c| crate::db::instances::projects(c)).await?;
    let profiles = projects
        .iter()
        .find(|p| p.name == project)
        .map_or_else(|| project.clone(), |p| p.profiles_project().to_owned());
    let users = projects
        .iter()
        .filter(|p| p.profiles_project() == profiles)
        .map(|p| p.name.clone())
        .collect();
    Ok(Scope {
        project,
        profiles,
        users,
    })
}

fn etag(p: &ProfileRecord) -> String {
    crate::state::etag_of(&(&p.name, &p.description, &p.config, &p.devices))
}

async fn find(st: &AppState, scope: &Scope, name: &str) -> Result<ProfileRecord, ApiError> {
    let n = name.to_owned();
    let p = scope.profiles.clone();
    st.db
        .call(move |c| crate::db::instances::profile(c, &p, &n))
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
        .map(|i| super::instances::url(&i.name))
        .collect()
}

/// The instances that use the scope's profiles.
async fn all_instances(st: &AppState, scope: &Scope) -> Result<Vec<InstanceRecord>, ApiError> {
    let mut all = st.db.call(|c| crate::db::instances::list(c)).await?;
    all.retain(|i| scope.users.contains(&i.project));
    Ok(all)
}

/// `GET /1.0/profiles`.
pub async fn list(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let level = recursion(q.as_deref())?;
    let scope = scope(&st, q.as_deref()).await?;
    let mut profiles = st
        .db
        .call(|c| crate::db::instances::all_profiles(c))
        .await?;
    profiles.retain(|p| p.project == scope.profiles);
    if level == 0 {
        return Ok(sync(
            profiles
                .iter()
                .map(|p| scope.url(&p.name))
                .collect::<Vec<_>>(),
        ));
    }
    let instances = all_instances(&st, &scope).await?;
    Ok(sync(
        profiles
            .iter()
            .map(|p| render(p, &used_by(&p.name, &instances)))
            .collect::<Vec<_>>(),
    ))
}

/// `GET /1.0/profiles/{name}`.
pub async fn get(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let scope = scope(&st, q.as_deref()).await?;
    let p = find(&st, &scope, &name).await?;
    let instances = all_instances(&st, &scope).await?;
    Ok(super::sync_etag(
        render(&p, &used_by(&name, &instances)),
        &etag(&p),
    ))
}

/// `POST /1.0/profiles`.
pub async fn post(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    Json(req): Json<ProfilesPost>,
) -> ApiResult {
    check_name(&req.name)?;
    let scope = scope(&st, q.as_deref()).await?;
    let config = req.config.unwrap_or_default();
    let devices = req.devices.unwrap_or_default();
    validate_config(&config, st.runtime.host)?;
    validate_devices(&devices)?;
    let _guard = st.profile_lock.lock().await;
    let rec = ProfileRecord {
        project: scope.profiles.clone(),
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
    st.events
        .lifecycle("profile-created", &scope.url(&req.name), None);
    Ok(super::sync_created(&scope.url(&req.name)))
}

/// `PUT /1.0/profiles/{name}`: replaces description, config and devices.
pub async fn put(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Json(req): Json<serde_json::Value>,
) -> ApiResult {
    let scope = scope(&st, q.as_deref()).await?;
    update(&st, &scope, &name, &headers, req, true).await
}

/// `PATCH /1.0/profiles/{name}`: merges; an empty config value unsets the key.
pub async fn patch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Json(req): Json<serde_json::Value>,
) -> ApiResult {
    let scope = scope(&st, q.as_deref()).await?;
    update(&st, &scope, &name, &headers, req, false).await
}

async fn update(
    st: &AppState,
    scope: &Scope,
    name: &str,
    headers: &HeaderMap,
    body: serde_json::Value,
    replace: bool,
) -> ApiResult {
    let guard = st.profile_lock.lock().await;
    let old = find(st, scope, name).await?;
    super::check_if_match(headers, &etag(&old))?;
    let mut new = old.clone();
    super::instances::merge_config(&mut new.config, &body, replace)?;
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
    let instances = all_instances(st, scope).await?;
    let mut all = st
        .db
        .call(|c| crate::db::instances::all_profiles(c))
        .await?;
    all.retain(|p| p.project == scope.profiles);
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
    let mut by_project: BTreeMap<String, Vec<super::projects::Expanded>> = BTreeMap::new();
    for rec in &users {
        let (config, devices) = expand_with(rec, &new);
        let candidate = (rec.name.clone(), config.clone(), devices.clone());
        let naming = |e: ApiError| {
            ApiError::new(
                e.kind,
                format!("Instance {:?}: {}", rec.api_name(), e.message),
            )
        };
        super::projects::check_allowed(st, &rec.project, &candidate)
            .await
            .map_err(naming)?;
        validate_config(&config, st.runtime.host).map_err(naming)?;
        by_project
            .entry(rec.project.clone())
            .or_default()
            .push(candidate);
        let (old_config, old_devices) = expand_with(rec, &old);
        if status_of(st, &rec.name).await.1.is_some() {
            let change = inst::hotplug::diff(&old_devices, &devices);
            inst::hotplug::check(&change).map_err(|e| {
                ApiError::bad_request(format!("Instance {:?}: {e}", rec.api_name()))
            })?;
            let privileged = old_config
                .get("security.privileged")
                .is_some_and(|v| v == "true");
            running.push((rec.name.clone(), change, devices.clone(), privileged));
        }
        if inst::root_pool(&devices) != inst::root_pool(&old_devices) {
            return Err(ApiError::bad_request(format!(
                "Instance {:?}: the root disk's pool cannot be changed",
                rec.api_name()
            )));
        }
        if inst::root_pool(&devices).is_none() {
            return Err(ApiError::bad_request(format!(
                "Instance {:?} would have no root disk",
                rec.api_name()
            )));
        }
    }
    // Limits are summed over each project with all its users changed at once.
    for (project, candidates) in &by_project {
        super::projects::check_limits_many(st, project, candidates).await?;
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
                    return Ok(Err(format!("Instance {:?}: {e}", rec.api_name())));
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
    // Running users get the changed limits and devices now, each under its own lock
    // (taken after the profile lock is let go: instance updates take them the other way).
    drop(guard);
    for (instance, change, devices, privileged) in running {
        let Some(rec) = users.iter().find(|r| r.name == instance) else {
            continue;
        };
        let lock = st.instances.lock(&rec.name);
        let _instance_guard = lock.lock().await;
        let Some(pid) = status_of(st, &rec.name).await.1 else {
            continue;
        };
        let (before, _) = expand_with(rec, &old);
        let (after, _) = expand_with(rec, &new);
        let mut applied = apply_live(st, &rec.name, &before, &after);
        if applied.is_ok() && !change.is_empty() {
            let target = inst::hotplug::Target {
                pid,
                privileged,
                no_symlinks: super::projects::is_restricted(st, &rec.project).await,
            };
            applied = inst::hotplug::apply(st, &rec.name, target, &change, &devices).await;
        }
        if let Err(e) = applied {
            tracing::warn!(instance = %rec.name, error = %e, "Profile change not applied live");
        }
    }
    st.events
        .lifecycle("profile-updated", &scope.url(name), None);
    Ok(super::sync_empty())
}

/// `DELETE /1.0/profiles/{name}`: not `default`, not while instances use it.
pub async fn delete(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let scope = scope(&st, q.as_deref()).await?;
    if name == "default" {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "The \"default\" profile cannot be deleted",
        ));
    }
    let _guard = st.profile_lock.lock().await;
    find(&st, &scope, &name).await?;
    let instances = all_instances(&st, &scope).await?;
    if !used_by(&name, &instances).is_empty() {
        return Err(ApiError::bad_request(format!(
            "Profile {name:?} is currently in use"
        )));
    }
    let (p, n) = (scope.profiles.clone(), name.clone());
    st.db
        .call(move |c| crate::db::instances::delete_profile(c, &p, &n))
        .await?;
    st.events
        .lifecycle("profile-deleted", &scope.url(&name), None);
    Ok(super::sync_empty())
}

/// `POST /1.0/profiles/{name}`: renames a profile and every instance's reference to it.
pub async fn rename(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    Json(req): Json<ProfilePost>,
) -> ApiResult {
    let scope = scope(&st, q.as_deref()).await?;
    if name == "default" {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "The \"default\" profile cannot be renamed",
        ));
    }
    check_name(&req.name)?;
    let _guard = st.profile_lock.lock().await;
    find(&st, &scope, &name).await?;
    let (from, to) = (name.clone(), req.name.clone());
    let (p, users) = (scope.profiles.clone(), scope.users.clone());
    let renamed = st
        .db
        .call(move |c| crate::db::instances::rename_profile(c, &p, &users, &from, &to))
        .await?;
    if !renamed {
        return Err(ApiError::new(
            ErrorKind::AlreadyExists,
            format!("Profile {:?} already exists", req.name),
        ));
    }
    let mut ctx = serde_json::Map::new();
    ctx.insert("old_name".into(), name.into());
    st.events
        .lifecycle("profile-renamed", &scope.url(&req.name), Some(ctx));
    Ok(super::sync_created(&scope.url(&req.name)))
}
