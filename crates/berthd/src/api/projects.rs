//! `/1.0/projects`: projects, their features, limits and restrictions.
//!
//! Instances always belong to one project (names are unique within it). With
//! `features.profiles=true` a project has its own profiles (a new one starts with an empty
//! `default`), else its instances use the `default` project's; the same with
//! `features.images` for images and their aliases (an image file is stored once, held by
//! every project that imported it). Custom storage volumes do not exist yet, so
//! `features.storage.volumes` is recorded only.
//!
//! `limits.*` cap the sums over a project's instances (each instance must then set the
//! limited key, as LXD requires), and `restricted=true` turns on the `restricted.*` keys,
//! whose defaults block privileged containers, nesting, low-level keys (`raw.*`) and
//! host-path disks and unix devices. Every change that could break them is checked: an
//! instance's creation or update, a profile change (for every instance using it) and a
//! project change (for every instance in it); a refusal is a 403 naming the restriction,
//! a limit a 400 naming it.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use berth_api::instance::Device;
use berth_api::project::Project;
use berth_api::{DEFAULT_PROJECT, ErrorKind};
use serde::Deserialize;

use super::instances::field;
use super::{ApiError, ApiResult, AppState, Json, recursion, sync};
use crate::db::instances::ProjectRecord;
use crate::instances::{self as inst, limits::Host};

/// The body of `POST /1.0/projects`.
#[derive(Debug, Deserialize)]
pub struct ProjectsPost {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

/// The body of `POST /1.0/projects/{name}` (rename).
#[derive(Debug, Deserialize)]
pub struct ProjectPost {
    name: String,
}

const FEATURES: [&str; 6] = [
    "features.images",
    "features.networks",
    "features.networks.zones",
    "features.profiles",
    "features.storage.buckets",
    "features.storage.volumes",
];

/// The limits that sum over instances, and the instance key each sums.
const SUMMED: [(&str, &str); 4] = [
    ("limits.cpu", "limits.cpu"),
    ("limits.memory", "limits.memory"),
    ("limits.processes", "limits.processes"),
    ("limits.disk", "size"),
];

/// `restricted.*` keys, their allowed values and their default under `restricted=true`.
const RESTRICTIONS: [(&str, &[&str], &str); 18] = [
    (
        "restricted.containers.privilege",
        &["unprivileged", "isolated", "allow"],
        "unprivileged",
    ),
    (
        "restricted.containers.nesting",
        &["block", "allow"],
        "block",
    ),
    (
        "restricted.containers.lowlevel",
        &["block", "allow"],
        "block",
    ),
    (
        "restricted.containers.interception",
        &["block", "allow"],
        "block",
    ),
    (
        "restricted.devices.disk",
        &["block", "managed", "allow"],
        "managed",
    ),
    ("restricted.devices.unix-char", &["block", "allow"], "block"),
    (
        "restricted.devices.unix-block",
        &["block", "allow"],
        "block",
    ),
    (
        "restricted.devices.unix-hotplug",
        &["block", "allow"],
        "block",
    ),
    ("restricted.devices.gpu", &["block", "allow"], "block"),
    ("restricted.devices.usb", &["block", "allow"], "block"),
    ("restricted.devices.pci", &["block", "allow"], "block"),
    (
        "restricted.devices.infiniband",
        &["block", "allow"],
        "block",
    ),
    (
        "restricted.devices.nic",
        &["block", "managed", "allow"],
        "managed",
    ),
    ("restricted.devices.proxy", &["block", "allow"], "block"),
    ("restricted.snapshots", &["block", "allow"], "allow"),
    ("restricted.backups", &["block", "allow"], "allow"),
    ("restricted.cluster.target", &["block", "allow"], "block"),
    (
        "restricted.virtual-machines.lowlevel",
        &["block", "allow"],
        "block",
    ),
];

/// Checks a project name: it becomes part of host-wide instance names.
fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphabetic());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Invalid project name {name:?}: use letters, digits and hyphens, starting with a letter, at most 63 characters"
        )))
    }
}

/// Checks one project config key and value; the error names both.
fn check_key(key: &str, value: &str) -> Result<(), String> {
    let bad = |why: &str| format!("Invalid value {value:?} for {key:?}: {why}");
    if FEATURES.contains(&key) || key == "restricted" {
        return matches!(value, "true" | "false")
            .then_some(())
            .ok_or_else(|| bad("expected true or false"));
    }
    if let Some((_, allowed, _)) = RESTRICTIONS.iter().find(|(k, _, _)| *k == key) {
        return allowed
            .contains(&value)
            .then_some(())
            .ok_or_else(|| bad(&format!("expected one of {}", allowed.join(", "))));
    }
    match key {
        "limits.instances"
        | "limits.containers"
        | "limits.virtual-machines"
        | "limits.processes"
        | "limits.networks"
        | "limits.cpu" => value
            .parse::<u64>()
            .map(drop)
            .map_err(|_| bad("expected a whole number")),
        "limits.memory" | "limits.disk" => inst::limits::parse_size(value)
            .map(drop)
            .ok_or_else(|| bad("expected a size such as 2GiB")),
        "restricted.devices.disk.paths" | "restricted.idmap.uid" | "restricted.idmap.gid" => Ok(()),
        k if k.starts_with("user.") => Ok(()),
        _ => Err(format!("Unknown project configuration key {key:?}")),
    }
}

fn check_config(config: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (k, v) in config {
        check_key(k, v).map_err(ApiError::bad_request)?;
    }
    Ok(())
}

/// A restriction's value in force: `allow` when the project is not restricted.
fn restriction<'a>(project: &'a ProjectRecord, key: &str) -> &'a str {
    if !project.restricted() {
        return "allow";
    }
    project.config.get(key).map_or_else(
        || {
            RESTRICTIONS
                .iter()
                .find(|(k, _, _)| *k == key)
                .map_or("block", |(_, _, d)| *d)
        },
        String::as_str,
    )
}

fn forbidden(project: &ProjectRecord, what: &str, key: &str) -> ApiError {
    ApiError::new(
        ErrorKind::Forbidden,
        format!(
            "{what} is forbidden in project {:?} ({key}={})",
            project.name,
            restriction(project, key)
        ),
    )
}

/// Refuses (403) an instance configuration that project `p`'s restrictions forbid.
pub(crate) fn check_restrictions(
    p: &ProjectRecord,
    config: &BTreeMap<String, String>,
    devices: &BTreeMap<String, Device>,
) -> Result<(), ApiError> {
    if !p.restricted() {
        return Ok(());
    }
    let on = |k: &str| config.get(k).is_some_and(|v| v == "true");
    let privilege = restriction(p, "restricted.containers.privilege");
    if privilege != "allow" && on("security.privileged") {
        return Err(forbidden(
            p,
            "security.privileged=true",
            "restricted.containers.privilege",
        ));
    }
    if privilege == "isolated" && !on("security.idmap.isolated") {
        return Err(forbidden(
            p,
            "A container without security.idmap.isolated=true",
            "restricted.containers.privilege",
        ));
    }
    if restriction(p, "restricted.containers.nesting") != "allow" && on("security.nesting") {
        return Err(forbidden(
            p,
            "security.nesting=true",
            "restricted.containers.nesting",
        ));
    }
    if restriction(p, "restricted.containers.lowlevel") != "allow"
        && let Some(k) = config
            .keys()
            .find(|k| k.starts_with("raw.") || k.starts_with("security.idmap.base"))
    {
        return Err(forbidden(
            p,
            &format!("Low-level key {k:?}"),
            "restricted.containers.lowlevel",
        ));
    }
    for (name, d) in devices {
        let kind = d.get("type").map(String::as_str).unwrap_or_default();
        match kind {
            "disk" if d.get("path").map(String::as_str) == Some("/") => {}
            "disk" => {
                let mode = restriction(p, "restricted.devices.disk");
                let host_path = !d.contains_key("pool");
                let allowed = match mode {
                    "allow" => !host_path || disk_path_allowed(p, d),
                    "managed" => !host_path,
                    _ => false,
                };
                if !allowed {
                    return Err(forbidden(
                        p,
                        &format!("Disk device {name:?} (a host path)"),
                        "restricted.devices.disk",
                    ));
                }
            }
            "unix-char" | "unix-block" => {
                let key = format!("restricted.devices.{kind}");
                if restriction(p, &key) != "allow" {
                    return Err(forbidden(p, &format!("Device {name:?} ({kind})"), &key));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether a host-path disk's source lies under `restricted.devices.disk.paths`, when set.
/// The source must hold no symlink (it is opened so when mounted live), so that what the
/// check sees is what gets mounted.
fn disk_path_allowed(p: &ProjectRecord, d: &Device) -> bool {
    let raw = d.get("source").map(String::as_str).unwrap_or_default();
    let source = std::path::Path::new(raw);
    if std::fs::canonicalize(source).is_ok_and(|c| c != source) {
        return false;
    }
    let Some(paths) = p.config.get("restricted.devices.disk.paths") else {
        return true;
    };
    paths
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .any(|allowed| source.starts_with(allowed))
}

/// How much of a summed limit one instance uses; `None` when it does not set the key.
fn usage(
    limit: &str,
    config: &BTreeMap<String, String>,
    devices: &BTreeMap<String, Device>,
    host: Host,
) -> Option<u64> {
    match limit {
        "limits.cpu" => {
            let v = config.get("limits.cpu")?;
            v.parse::<u64>().ok().or_else(|| {
                // A set like 0-1,3: its size.
                let mut n = 0u64;
                for part in v.split(',') {
                    let (a, b) = part.split_once('-').unwrap_or((part, part));
                    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                    n += b.checked_sub(a)? + 1;
                }
                Some(n)
            })
        }
        "limits.memory" => {
            let v = config.get("limits.memory")?;
            match v.strip_suffix('%') {
                Some(pct) => Some(host.memory / 100 * pct.trim().parse::<u64>().ok()?),
                None => inst::limits::parse_size(v),
            }
        }
        "limits.processes" => config.get("limits.processes")?.parse().ok(),
        "limits.disk" => devices
            .values()
            .find(|d| {
                d.get("type").map(String::as_str) == Some("disk")
                    && d.get("path").map(String::as_str) == Some("/")
            })
            .and_then(|d| d.get("size"))
            .and_then(|s| inst::limits::parse_size(s)),
        _ => None,
    }
}

/// A project's instances, expanded: (host-wide name, config, devices).
pub(crate) type Expanded = (String, BTreeMap<String, String>, BTreeMap<String, Device>);

async fn expanded_instances(st: &AppState, project: &str) -> Result<Vec<Expanded>, ApiError> {
    Ok(super::instances::expand_all(st)
        .await?
        .into_iter()
        .filter(|(rec, _, _)| rec.project == project)
        .map(|(rec, config, devices)| (rec.name, config, devices))
        .collect())
}

/// Refuses (400) when the project's instances, with `candidate` (host-wide name, config,
/// devices) added or replacing its old self, would exceed a limit of `p`.
fn check_limits(
    p: &ProjectRecord,
    others: &[Expanded],
    candidate: Option<&Expanded>,
    host: Host,
) -> Result<(), ApiError> {
    let all: Vec<&Expanded> = others
        .iter()
        .filter(|(n, _, _)| candidate.is_none_or(|c| &c.0 != n))
        .chain(candidate)
        .collect();
    for key in ["limits.instances", "limits.containers"] {
        if let Some(max) = p.config.get(key).and_then(|v| v.parse::<usize>().ok())
            && all.len() > max
        {
            return Err(ApiError::bad_request(format!(
                "Reached the maximum number of instances in project {:?} ({key}={max})",
                p.name
            )));
        }
    }
    for (limit, instance_key) in SUMMED {
        let Some(max) = p.config.get(limit) else {
            continue;
        };
        let max = if limit == "limits.cpu" || limit == "limits.processes" {
            max.parse::<u64>().ok()
        } else {
            inst::limits::parse_size(max)
        }
        .unwrap_or(0);
        let mut total = 0u64;
        for (name, config, devices) in &all {
            let Some(n) = usage(limit, config, devices, host) else {
                return Err(ApiError::bad_request(format!(
                    "Instance {:?} must set {instance_key:?}: project {:?} limits {limit}",
                    crate::db::instances::api_name(name),
                    p.name
                )));
            };
            total = total.saturating_add(n);
        }
        if total > max {
            return Err(ApiError::bad_request(format!(
                "Project {:?} would use {total} of {limit}={} (over its limit)",
                p.name, p.config[limit]
            )));
        }
    }
    Ok(())
}

async fn find(st: &AppState, name: &str) -> Result<ProjectRecord, ApiError> {
    let n = name.to_owned();
    st.db
        .call(move |c| crate::db::instances::project(c, &n))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Project {name:?} not found")))
}

/// Refuses (403) instance `candidate` of `project` when the project's restrictions forbid
/// it: checked first, so a forbidden key is reported as such whatever its value.
pub(crate) async fn check_allowed(
    st: &AppState,
    project: &str,
    candidate: &Expanded,
) -> Result<(), ApiError> {
    let p = find(st, project).await?;
    check_restrictions(&p, &candidate.1, &candidate.2)
}

/// Refuses (400) when `project`'s instances, with each of `candidates` replacing its old
/// self, would exceed a limit (a profile change moves several at once).
pub(crate) async fn check_limits_many(
    st: &AppState,
    project: &str,
    candidates: &[Expanded],
) -> Result<(), ApiError> {
    let p = find(st, project).await?;
    if !p.config.keys().any(|k| k.starts_with("limits.")) {
        return Ok(());
    }
    let mut all = expanded_instances(st, project).await?;
    for c in candidates {
        match all.iter_mut().find(|i| i.0 == c.0) {
            Some(i) => *i = c.clone(),
            None => all.push(c.clone()),
        }
    }
    check_limits(&p, &all, None, st.runtime.host)
}

/// Whether `project` has `restricted=true` (false when it cannot be read).
pub(crate) async fn is_restricted(st: &AppState, project: &str) -> bool {
    find(st, project).await.is_ok_and(|p| p.restricted())
}

/// Refuses (400) instance `candidate` of `project` (valid by now) when the project's
/// instances would exceed its limits with it.
pub(crate) async fn check_limits_with(
    st: &AppState,
    project: &str,
    candidate: &Expanded,
) -> Result<(), ApiError> {
    let p = find(st, project).await?;
    if p.config.keys().any(|k| k.starts_with("limits.")) {
        let others = expanded_instances(st, project).await?;
        check_limits(&p, &others, Some(candidate), st.runtime.host)?;
    }
    Ok(())
}

fn etag(p: &ProjectRecord) -> String {
    crate::state::etag_of(&(&p.name, &p.description, &p.config))
}

fn url(name: &str) -> String {
    format!("/1.0/projects/{name}")
}

async fn render(st: &AppState, p: &ProjectRecord) -> Result<Project, ApiError> {
    let name = p.name.clone();
    let (instances, profiles) = st
        .db
        .call(move |c| {
            Ok((
                crate::db::instances::list(c)?,
                crate::db::instances::all_profiles(c)?,
            ))
        })
        .await?;
    let mut used_by: Vec<String> = instances
        .iter()
        .filter(|i| i.project == name)
        .map(|i| super::instances::url(&i.name))
        .collect();
    used_by.extend(profiles.iter().filter(|q| q.project == name).map(|q| {
        if name == DEFAULT_PROJECT {
            format!("/1.0/profiles/{}", q.name)
        } else {
            format!("/1.0/profiles/{}?project={name}", q.name)
        }
    }));
    Ok(Project {
        name: p.name.clone(),
        description: p.description.clone(),
        config: p.config.clone(),
        used_by,
    })
}

/// `GET /1.0/projects`.
pub async fn list(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let all = st.db.call(|c| crate::db::instances::projects(c)).await?;
    if recursion(q.as_deref())? == 0 {
        return Ok(sync(all.iter().map(|p| url(&p.name)).collect::<Vec<_>>()));
    }
    let mut out = Vec::new();
    for p in &all {
        out.push(render(&st, p).await?);
    }
    Ok(sync(out))
}

/// `GET /1.0/projects/{name}`.
pub async fn get(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let p = find(&st, &name).await?;
    Ok(super::sync_etag(render(&st, &p).await?, &etag(&p)))
}

/// `POST /1.0/projects`: features default to true, as LXD's.
pub async fn post(State(st): State<AppState>, Json(req): Json<ProjectsPost>) -> ApiResult {
    check_name(&req.name)?;
    let mut config = req.config;
    for f in [
        "features.images",
        "features.profiles",
        "features.storage.volumes",
        "features.storage.buckets",
    ] {
        config
            .entry(f.to_owned())
            .or_insert_with(|| "true".to_owned());
    }
    check_config(&config)?;
    let rec = ProjectRecord {
        name: req.name.clone(),
        description: req.description,
        config,
    };
    let _guard = st.profile_lock.lock().await;
    let created = st
        .db
        .call(move |c| crate::db::instances::insert_project(c, &rec))
        .await?;
    if !created {
        return Err(ApiError::new(
            ErrorKind::AlreadyExists,
            format!("Project {:?} already exists", req.name),
        ));
    }
    st.events
        .lifecycle("project-created", &url(&req.name), None);
    Ok(super::sync_created(&url(&req.name)))
}

/// `PUT /1.0/projects/{name}`.
pub async fn put(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<serde_json::Value>,
) -> ApiResult {
    update(&st, &name, &headers, &req, true).await
}

/// `PATCH /1.0/projects/{name}`.
pub async fn patch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<serde_json::Value>,
) -> ApiResult {
    update(&st, &name, &headers, &req, false).await
}

async fn update(
    st: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: &serde_json::Value,
    replace: bool,
) -> ApiResult {
    // Instances and profiles cannot change while the project's rules are checked.
    let _guard = st.profile_lock.lock().await;
    let old = find(st, name).await?;
    super::check_if_match(headers, &etag(&old))?;
    let mut new = old.clone();
    super::instances::merge_config(&mut new.config, body, replace)?;
    if let Some(d) = field(body, "description")? {
        new.description = d;
    } else if replace {
        new.description.clear();
    }
    check_config(&new.config)?;
    let instances = expanded_instances(st, name).await?;
    let feature = |p: &ProjectRecord, f: &str| p.config.get(f).is_some_and(|v| v == "true");
    if let Some(f) = FEATURES
        .iter()
        .find(|f| feature(&old, f) != feature(&new, f))
        && (!instances.is_empty() || in_use(st, name).await?)
    {
        return Err(ApiError::bad_request(format!(
            "{f} can only be changed on an empty project (no instances, images or profiles but default)"
        )));
    }
    // Every instance in it must stay within the new rules.
    for (_, config, devices) in &instances {
        check_restrictions(&new, config, devices)?;
    }
    check_limits(&new, &instances, None, st.runtime.host)?;
    let stored = new.clone();
    st.db
        .call(move |c| crate::db::instances::update_project(c, &stored))
        .await?;
    st.events.lifecycle("project-updated", &url(name), None);
    Ok(super::sync_empty())
}

/// Whether anything but its `default` profile lives in project `name`: instances, other
/// profiles, images.
async fn in_use(st: &AppState, name: &str) -> Result<bool, ApiError> {
    let n = name.to_owned();
    Ok(st
        .db
        .call(move |c| {
            let instances = crate::db::instances::list(c)?;
            let profiles = crate::db::instances::all_profiles(c)?;
            let images = !crate::db::images::list(c, &n)?.is_empty();
            Ok(instances.iter().any(|i| i.project == n)
                || images
                || profiles
                    .iter()
                    .any(|p| p.project == n && p.name != "default"))
        })
        .await?)
}

/// `DELETE /1.0/projects/{name}`: not `default`, only when empty.
pub async fn delete(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    if name == DEFAULT_PROJECT {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "The \"default\" project cannot be deleted",
        ));
    }
    let _guard = st.profile_lock.lock().await;
    find(&st, &name).await?;
    if in_use(&st, &name).await? {
        return Err(ApiError::bad_request(format!(
            "Project {name:?} is not empty (delete its instances, images and profiles first)"
        )));
    }
    let n = name.clone();
    st.db
        .call(move |c| crate::db::instances::delete_project(c, &n))
        .await?;
    st.events.lifecycle("project-deleted", &url(&name), None);
    Ok(super::sync_empty())
}

/// `POST /1.0/projects/{name}`: renames an empty project.
pub async fn rename(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<ProjectPost>,
) -> ApiResult {
    if name == DEFAULT_PROJECT {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "The \"default\" project cannot be renamed",
        ));
    }
    check_name(&req.name)?;
    let _guard = st.profile_lock.lock().await;
    find(&st, &name).await?;
    if in_use(&st, &name).await? {
        return Err(ApiError::bad_request(format!(
            "Project {name:?} is not empty (only empty projects can be renamed)"
        )));
    }
    let (from, to) = (name.clone(), req.name.clone());
    let renamed = st
        .db
        .call(move |c| crate::db::instances::rename_project(c, &from, &to))
        .await?;
    if !renamed {
        return Err(ApiError::new(
            ErrorKind::AlreadyExists,
            format!("Project {:?} already exists", req.name),
        ));
    }
    let mut ctx = serde_json::Map::new();
    ctx.insert("old_name".into(), name.into());
    st.events
        .lifecycle("project-renamed", &url(&req.name), Some(ctx));
    // LXD answers a rename with an operation (its client waits on one).
    let mut resources = BTreeMap::new();
    resources.insert("projects".to_owned(), vec![url(&req.name)]);
    let op = st.ops.start(
        crate::operations::OpSpec {
            class: berth_api::OperationClass::Task,
            description: "Renaming project".to_owned(),
            resources: Some(resources),
            may_cancel: false,
            metadata: serde_json::Map::new(),
            fds: vec![],
        },
        |_| async { Ok(()) },
    );
    Ok(super::async_operation(op.render()))
}

/// `GET /1.0/projects/{name}/state`: each limited resource's limit and usage.
pub async fn state(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let p = find(&st, &name).await?;
    let instances = expanded_instances(&st, &name).await?;
    let host = st.runtime.host;
    let limit = |key: &str| -> i64 {
        p.config
            .get(key)
            .and_then(|v| {
                if key == "limits.memory" || key == "limits.disk" {
                    inst::limits::parse_size(v)
                } else {
                    v.parse().ok()
                }
            })
            .and_then(|v| i64::try_from(v).ok())
            .unwrap_or(-1)
    };
    let sum = |key: &str| -> i64 {
        instances
            .iter()
            .filter_map(|(_, c, d)| usage(key, c, d, host))
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
            .sum()
    };
    let count = i64::try_from(instances.len()).unwrap_or(i64::MAX);
    let entry = |l: i64, u: i64| serde_json::json!({"limit": l, "usage": u});
    Ok(sync(serde_json::json!({
        "resources": {
            "containers": entry(limit("limits.containers"), count),
            "instances": entry(limit("limits.instances"), count),
            "virtual-machines": entry(limit("limits.virtual-machines"), 0),
            "cpu": entry(limit("limits.cpu"), sum("limits.cpu")),
            "memory": entry(limit("limits.memory"), sum("limits.memory")),
            "processes": entry(limit("limits.processes"), sum("limits.processes")),
            "disk": entry(limit("limits.disk"), sum("limits.disk")),
            "networks": entry(limit("limits.networks"), 0),
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(pairs: &[(&str, &str)]) -> ProjectRecord {
        ProjectRecord {
            name: "p".into(),
            description: String::new(),
            config: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn restrictions_name_the_key() {
        let none: BTreeMap<String, String> = BTreeMap::new();
        let no_devices: BTreeMap<String, Device> = BTreeMap::new();
        let p = project(&[("restricted", "true")]);
        let e = check_restrictions(&p, &map(&[("security.privileged", "true")]), &no_devices)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden);
        assert!(
            e.message.contains("restricted.containers.privilege"),
            "{}",
            e.message
        );
        let e = check_restrictions(&p, &map(&[("raw.lxc", "lxc.x = 1")]), &no_devices).unwrap_err();
        assert!(e.message.contains("restricted.containers.lowlevel"));
        let mut devices = BTreeMap::new();
        devices.insert(
            "d".to_owned(),
            map(&[("type", "disk"), ("source", "/srv"), ("path", "/x")]),
        );
        let e = check_restrictions(&p, &none, &devices).unwrap_err();
        assert!(e.message.contains("restricted.devices.disk"));
        let allowed = project(&[
            ("restricted", "true"),
            ("restricted.devices.disk", "allow"),
            ("restricted.devices.disk.paths", "/srv"),
        ]);
        check_restrictions(&allowed, &none, &devices).unwrap();
        // Not restricted: anything goes.
        check_restrictions(
            &project(&[]),
            &map(&[("security.privileged", "true")]),
            &devices,
        )
        .unwrap();
    }

    #[test]
    fn limits_sum_and_require_the_key() {
        let host = Host {
            memory: 1 << 30,
            cpus: 2,
            cgroup_v2: false,
        };
        let p = project(&[("limits.cpu", "3"), ("limits.instances", "2")]);
        let one = ("a".to_owned(), map(&[("limits.cpu", "2")]), BTreeMap::new());
        check_limits(&p, &[], Some(&one), host).unwrap();
        let two = (
            "b".to_owned(),
            map(&[("limits.cpu", "0-1")]),
            BTreeMap::new(),
        );
        let e = check_limits(&p, std::slice::from_ref(&one), Some(&two), host).unwrap_err();
        assert!(e.message.contains("limits.cpu"), "{}", e.message);
        let unset = ("c".to_owned(), BTreeMap::new(), BTreeMap::new());
        let e = check_limits(&p, &[], Some(&unset), host).unwrap_err();
        assert!(e.message.contains("must set"), "{}", e.message);
        let three = ("d".to_owned(), map(&[("limits.cpu", "0")]), BTreeMap::new());
        let e = check_limits(&p, &[one.clone(), three], Some(&unset), host).unwrap_err();
        assert!(e.message.contains("limits.instances"), "{}", e.message);
        assert!(check_key("limits.memory", "2GiB").is_ok());
        assert!(check_key("limits.memory", "lots").is_err());
        assert!(check_key("restricted.devices.disk", "maybe").is_err());
        assert!(check_key("bogus", "1").is_err());
    }
}
