//! Profiles, which instances expand in order with their own values last.
//!
//! A profile change is checked against every instance using it before anything is
//! written (an instance that would become invalid refuses the whole change, naming it);
//! then limits and devices reach running instances live. `default` always exists: it can
//! be edited, not deleted or renamed.
//!
//! Profiles belong to a project: a request naming project P works on P's own profiles
//! when P has `features.profiles=true`, else on the `default` project's, which P's
//! instances then use ([`Scope`]).

use std::collections::BTreeMap;

use berth_api::instance::Device;

use crate::ctx::Ctx;
use crate::db::DbError;
use crate::device::hotplug;
use crate::error::{Failure, Result};
use crate::instance::config::{apply_live, assign_idmap};
use crate::instance::query::status;
use crate::model::expand::{expand, flag, root_pool};
use crate::model::names::{ProfileName, instance_url, with_project};
use crate::model::records::{InstanceRecord, ProfileRecord};
use crate::model::restrictions::Candidate;

fn not_found(name: &str) -> Failure {
    Failure::not_found(format!("Profile {name:?} not found"))
}

fn exists(name: &str) -> Failure {
    Failure::exists(format!("Profile {name:?} already exists"))
}

/// Whose profiles a request works on.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The project the request names.
    pub project: String,
    /// The project whose profiles those are.
    pub profiles: String,
    /// Every project whose instances use these profiles.
    pub users: Vec<String>,
}

impl Scope {
    /// A profile's URL as the request's project sees it.
    pub fn url(&self, name: &str) -> String {
        with_project(&format!("/1.0/profiles/{name}"), &self.project)
    }
}

/// The profiles a request naming `project` works on.
pub async fn scope(cx: &Ctx, project: &str) -> Result<Scope> {
    let projects = cx.db.read(crate::db::projects::list).await?;
    let profiles = crate::model::expand::profiles_project(&projects, project).to_owned();
    let users = projects
        .iter()
        .filter(|p| p.profiles_project() == profiles)
        .map(|p| p.name.clone())
        .collect();
    Ok(Scope {
        project: project.to_owned(),
        profiles,
        users,
    })
}

/// Profile `name` of the scope.
pub async fn get(cx: &Ctx, scope: &Scope, name: &str) -> Result<ProfileRecord> {
    let (p, n) = (scope.profiles.clone(), name.to_owned());
    cx.db
        .read(move |c| crate::db::profiles::get(c, &p, &n))
        .await?
        .ok_or_else(|| not_found(name))
}

/// The scope's profiles.
pub async fn list(cx: &Ctx, scope: &Scope) -> Result<Vec<ProfileRecord>> {
    let mut all = cx.db.read(crate::db::profiles::list).await?;
    all.retain(|p| p.project == scope.profiles);
    Ok(all)
}

/// The instances that use the scope's profiles.
async fn users(cx: &Ctx, scope: &Scope) -> Result<Vec<InstanceRecord>> {
    let mut all = cx.db.read(crate::db::instances::list).await?;
    all.retain(|i| scope.users.contains(&i.project));
    Ok(all)
}

/// The URLs of the instances using profile `name`, for each of `names`.
pub async fn used_by(cx: &Ctx, scope: &Scope, names: &[&str]) -> Result<Vec<Vec<String>>> {
    let instances = users(cx, scope).await?;
    Ok(names
        .iter()
        .map(|name| {
            instances
                .iter()
                .filter(|i| i.profiles.iter().any(|p| p == name))
                .map(|i| instance_url(&i.name))
                .collect()
        })
        .collect())
}

/// Creates a profile in the scope.
pub async fn create(
    cx: &Ctx,
    scope: &Scope,
    name: &ProfileName,
    description: String,
    config: BTreeMap<String, String>,
    devices: BTreeMap<String, Device>,
) -> Result<()> {
    crate::model::validate_config(&config, cx.host)?;
    crate::model::devices::validate(&devices)?;
    let _guard = cx.locks.profiles.lock().await;
    let rec = ProfileRecord {
        project: scope.profiles.clone(),
        name: name.to_string(),
        description,
        config,
        devices,
    };
    cx.db
        .write(move |tx| crate::db::profiles::insert(tx, &rec))
        .await
        .map_err(|e| match e {
            DbError::Exists { .. } => exists(name),
            other => other.into(),
        })?;
    cx.events
        .lifecycle("profile-created", &scope.url(name), None);
    Ok(())
}

/// The change a PUT (`replace`) or PATCH makes to a profile.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub config: Option<BTreeMap<String, String>>,
    pub devices: Option<BTreeMap<String, Device>>,
    pub description: Option<String>,
}

/// Changes profile `name`: checked against every instance using it, stored with those
/// instances' id maps in one write, then applied live to the running ones.
/// `precondition` sees the profile as it is, under the profile lock (an ETag check).
pub async fn update(
    cx: &Ctx,
    scope: &Scope,
    name: &str,
    precondition: impl FnOnce(&ProfileRecord) -> Result<()>,
    change: ProfileChange,
    replace: bool,
) -> Result<()> {
    let guard = cx.locks.profiles.lock().await;
    let old = get(cx, scope, name).await?;
    precondition(&old)?;
    let mut new = old.clone();
    crate::model::merge_config(&mut new.config, change.config, replace);
    match change.devices {
        Some(devices) if replace => new.devices = devices,
        Some(devices) => new.devices.extend(devices),
        None if replace => new.devices.clear(),
        None => {}
    }
    crate::model::merge_description(&mut new.description, change.description, replace);
    crate::model::validate_config(&new.config, cx.host)?;
    crate::model::devices::validate(&new.devices)?;
    // Every instance using the profile must stay valid; its root disk must not move.
    let instances = users(cx, scope).await?;
    let all = list(cx, scope).await?;
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
        expand(&profiles, rec)
    };
    let users: Vec<&InstanceRecord> = instances
        .iter()
        .filter(|i| i.profiles.iter().any(|p| p == name))
        .collect();
    let mut running = Vec::new();
    let mut by_project: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for rec in &users {
        let naming = |e: Failure| e.about(format_args!("Instance {:?}", rec.api_name()));
        let (config, devices) = expand_with(rec, &new);
        let candidate = (rec.name.clone(), config.clone(), devices.clone());
        crate::project::check_allowed(cx, &rec.project, &candidate)
            .await
            .map_err(naming)?;
        crate::model::validate_config(&config, cx.host).map_err(naming)?;
        crate::instance::nic::check(cx, &rec.config, &devices)
            .await
            .map_err(naming)?;
        crate::storage::disks::check(cx, &rec.project, &devices)
            .await
            .map_err(naming)?;
        by_project
            .entry(rec.project.clone())
            .or_default()
            .push(candidate);
        let (_, old_devices) = expand_with(rec, &old);
        crate::instance::quota::check(cx, Some(&old_devices), &devices).map_err(naming)?;
        if let Some(pid) = status(cx, &rec.name).await.1 {
            // Checked now; applied from the record as it is then (see below).
            live_devices(cx, rec, &old_devices, &devices).map_err(naming)?;
            running.push(((*rec).clone(), pid));
        }
        if root_pool(&devices) != root_pool(&old_devices) {
            return Err(naming(Failure::invalid(
                "the root disk's pool cannot be changed",
            )));
        }
        if root_pool(&devices).is_none() {
            return Err(Failure::invalid(format!(
                "Instance {:?} would have no root disk",
                rec.api_name()
            )));
        }
    }
    // Limits are summed over each project with all its users changed at once.
    for (project, candidates) in &by_project {
        crate::project::check_limits(cx, project, candidates).await?;
    }
    // The profile and its users' id maps (a profile may make them isolated, privileged…)
    // are written together; new maps apply at each user's next start.
    let stored = new.clone();
    let ids = cx.ids;
    // Each user's nics keep their volatile keys: those of nics gone go, new ones get theirs.
    let remapped: Vec<(InstanceRecord, BTreeMap<String, String>)> = users
        .iter()
        .map(|rec| {
            let mut rec = (*rec).clone();
            let (_, old_devices) = expand_with(&rec, &old);
            let (config, devices) = expand_with(&rec, &new);
            crate::instance::nic::update_volatile(
                cx,
                &rec.name.clone(),
                &mut rec.config,
                &old_devices,
                &devices,
            );
            (rec, config)
        })
        .collect();
    // The users' nic keys as this change writes them.
    let written: BTreeMap<String, BTreeMap<String, String>> = remapped
        .iter()
        .map(|(rec, _)| (rec.name.clone(), crate::model::volatile_keys(&rec.config)))
        .collect();
    cx.db
        .write(move |tx| {
            crate::db::profiles::update(tx, &stored)?;
            for (mut rec, expanded) in remapped {
                assign_idmap(tx, &mut rec, &expanded, ids, false)
                    .map_err(|e| e.about(format_args!("Instance {:?}", rec.api_name())))?;
                crate::db::instances::set_config(tx, &rec.name, &rec.config)?;
            }
            Ok::<_, Failure>(())
        })
        .await?;
    // The root disk's size of every user holds at once, running or not.
    for rec in &users {
        let (_, old_devices) = expand_with(rec, &old);
        let (_, devices) = expand_with(rec, &new);
        crate::instance::quota::apply(cx, &rec.name, Some(&old_devices), &devices).await?;
    }
    // Running users get the changed limits and devices now, each under its own lock
    // (taken after the profile lock is let go: instance updates take them the other way).
    drop(guard);
    // Their records from before the change: their nics' volatile keys name the host ends
    // of the nics that go.
    for (user, pid_then) in running {
        let name = &user.name;
        let lock = cx.locks.instance(name);
        let _instance_guard = lock.lock().await;
        // Stopped, or restarted (its start took the new profile whole) meanwhile.
        if status(cx, name).await.1 != Some(pid_then) {
            continue;
        }
        // Everything from the record as it is now: an instance update may have run since
        // the profile lock was let go, and applied its own change live with this
        // profile's new content; the instance's own keys and devices win over the
        // profile's.
        let Ok(rec) = crate::instance::find(cx, name).await else {
            continue;
        };
        let (before, old_devices) = expand_with(&rec, &old);
        let (after, devices) = expand_with(&rec, &new);
        // The host ends live now: a key as this change wrote it stands for the one before
        // (what runs); one changed since (by an instance update, which made it live) is
        // taken as it is now.
        let (fresh, pre) = (
            crate::model::volatile_keys(&rec.config),
            crate::model::volatile_keys(&user.config),
        );
        let post = written.get(name).cloned().unwrap_or_default();
        let old_volatile: BTreeMap<String, String> = fresh
            .keys()
            .chain(pre.keys())
            .filter_map(|k| {
                let live = if fresh.get(k) == post.get(k) {
                    pre.get(k)
                } else {
                    fresh.get(k)
                };
                live.map(|v| (k.clone(), v.clone()))
            })
            .collect();
        let pid = pid_then;
        let applied: Result<()> = async {
            apply_live(cx.driver.as_ref(), cx.host, name, &before, &after)?;
            let (change, old_devices, devices) = live_devices(cx, &rec, &old_devices, &devices)?;
            if !change.is_empty() {
                let target = hotplug::Target {
                    pid,
                    privileged: flag(&before, "security.privileged"),
                    no_symlinks: crate::project::is_restricted(cx, &rec.project).await,
                };
                let nodes = cx.paths.nodes(name);
                hotplug::apply(
                    &cx.driver,
                    &nodes,
                    name,
                    target,
                    &change,
                    &old_devices,
                    &devices,
                )
                .await?;
            }
            let nics_before = crate::instance::nic::plan_config(&before, &old_volatile);
            let nics_after = crate::instance::nic::plan_config(&after, &rec.config);
            crate::instance::nic::apply_live(
                cx,
                &rec,
                pid,
                (&nics_before, &old_devices),
                (&nics_after, &devices),
            )
            .await?;
            crate::instance::proxy::apply_live(cx, &rec, &old_devices, &devices).await
        }
        .await;
        if let Err(e) = applied {
            tracing::warn!(instance = %name, error = %e, "Profile change not applied live");
        }
    }
    // The users' backup.yaml carry the profile.
    for rec in &users {
        crate::instance::backup::save_file(cx, &rec.name).await;
    }
    cx.events
        .lifecycle("profile-updated", &scope.url(name), None);
    Ok(())
}

/// Devices by name.
type Devices = BTreeMap<String, Device>;

/// What of a running instance's devices changes live from `old` to `new` (its expanded
/// devices before and after), with both resolved: custom volumes are bound by their host
/// paths. Refused when a change cannot be made live.
fn live_devices(
    cx: &Ctx,
    rec: &InstanceRecord,
    old: &Devices,
    new: &Devices,
) -> Result<(hotplug::Change, Devices, Devices)> {
    let old = crate::storage::disks::resolve_present(cx, &rec.project, old)?;
    let new = crate::storage::disks::resolve(cx, &rec.project, new)?;
    let change = hotplug::diff(&old, &new);
    hotplug::check(&change)?;
    Ok((change, old, new))
}

/// Deletes a profile no instance uses (not `default`).
pub async fn delete(cx: &Ctx, scope: &Scope, name: &str) -> Result<()> {
    if name == "default" {
        return Err(Failure::forbidden(
            "The \"default\" profile cannot be deleted",
        ));
    }
    let _guard = cx.locks.profiles.lock().await;
    get(cx, scope, name).await?;
    if !used_by(cx, scope, &[name]).await?.concat().is_empty() {
        return Err(Failure::invalid(format!(
            "Profile {name:?} is currently in use"
        )));
    }
    let (p, n) = (scope.profiles.clone(), name.to_owned());
    cx.db
        .write(move |tx| crate::db::profiles::delete(tx, &p, &n))
        .await?;
    cx.events
        .lifecycle("profile-deleted", &scope.url(name), None);
    Ok(())
}

/// Refuses to rename `default`.
pub fn check_renamable(name: &str) -> Result<()> {
    if name == "default" {
        return Err(Failure::forbidden(
            "The \"default\" profile cannot be renamed",
        ));
    }
    Ok(())
}

/// Renames a profile (not `default`) and every instance's reference to it, in one write.
pub async fn rename(cx: &Ctx, scope: &Scope, name: &str, to: &ProfileName) -> Result<()> {
    check_renamable(name)?;
    let _guard = cx.locks.profiles.lock().await;
    get(cx, scope, name).await?;
    if name == &**to {
        return Err(exists(to));
    }
    let (from, t) = (name.to_owned(), to.to_string());
    let (p, projects) = (scope.profiles.clone(), scope.users.clone());
    cx.db
        .write(move |tx| {
            crate::db::profiles::rename(tx, &p, &from, &t)?;
            for mut i in crate::db::instances::list(tx)? {
                if projects.contains(&i.project) && i.profiles.contains(&from) {
                    for p in &mut i.profiles {
                        if *p == from {
                            p.clone_from(&t);
                        }
                    }
                    crate::db::instances::set_profiles(tx, &i.name, &i.profiles)?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| match e {
            DbError::Exists { .. } => exists(to),
            other => other.into(),
        })?;
    let mut ctx = serde_json::Map::new();
    ctx.insert("old_name".into(), name.into());
    cx.events
        .lifecycle("profile-renamed", &scope.url(to), Some(ctx));
    Ok(())
}
