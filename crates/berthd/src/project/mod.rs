//! Projects: their CRUD, features and usage, and the checks every instance change goes
//! through (the rules themselves are in [`crate::model::restrictions`]).
//!
//! Instances always belong to one project (names are unique within it). With
//! `features.profiles=true` a project has its own profiles (a new one starts with an empty
//! `default`), else its instances use the `default` project's; the same with
//! `features.images` for images and their aliases, and `features.storage.volumes` for
//! custom volumes (a project holding any is in use). Every change that could break a
//! project's rules is checked: an instance's creation or update, a profile change (for
//! every instance using it) and a project change (for every instance in it).

use std::collections::BTreeMap;

use berth_api::DEFAULT_PROJECT;
use rusqlite::Connection;

use crate::ctx::Ctx;
use crate::db::DbError;
use crate::error::{Failure, Result};
use crate::model::expand::{Expanded, expand_all};
use crate::model::names::{ProjectName, instance_url, with_project};
use crate::model::records::{ProfileRecord, ProjectRecord};
use crate::model::restrictions::{self, Candidate, FEATURES};

fn not_found(name: &str) -> Failure {
    Failure::not_found(format!("Project {name:?} not found"))
}

fn exists(name: &str) -> Failure {
    Failure::exists(format!("Project {name:?} already exists"))
}

/// A project's URL.
pub fn url(name: &str) -> String {
    format!("/1.0/projects/{name}")
}

/// Project `name`.
pub async fn get(cx: &Ctx, name: &str) -> Result<ProjectRecord> {
    let n = name.to_owned();
    cx.db
        .read(move |c| crate::db::projects::get(c, &n))
        .await?
        .ok_or_else(|| not_found(name))
}

/// Every project.
pub async fn list(cx: &Ctx) -> Result<Vec<ProjectRecord>> {
    Ok(cx.db.read(crate::db::projects::list).await?)
}

/// What uses project `p`: its instances and profiles, as URLs.
pub async fn used_by(cx: &Ctx, p: &ProjectRecord) -> Result<Vec<String>> {
    let name = p.name.clone();
    let n = name.clone();
    let (instances, profiles, images, volumes) = cx
        .db
        .read(move |c| {
            Ok::<_, DbError>((
                crate::db::instances::list(c)?,
                crate::db::profiles::list(c)?,
                crate::db::images::list(c, &n)?,
                crate::db::volumes::list(c, None, Some("custom"))?,
            ))
        })
        .await?;
    let mut used_by: Vec<String> = instances
        .iter()
        .filter(|i| i.project == name)
        .map(|i| instance_url(&i.name))
        .collect();
    used_by.extend(
        profiles
            .iter()
            .filter(|q| q.project == name)
            .map(|q| with_project(&format!("/1.0/profiles/{}", q.name), &name)),
    );
    // A project without its own images or volumes sees the default project's: they are
    // not its own to list.
    if p.images_project() == name {
        used_by.extend(
            images
                .iter()
                .map(|i| with_project(&format!("/1.0/images/{}", i.image.fingerprint), &name)),
        );
    }
    used_by.extend(
        volumes
            .iter()
            .filter(|v| v.project == name)
            .map(crate::model::records::VolumeRecord::url),
    );
    Ok(used_by)
}

/// Gives project `p`, when it has its own profiles, an empty `default` profile unless it
/// has one.
fn own_default_profile(c: &Connection, p: &ProjectRecord) -> Result<(), DbError> {
    if p.profiles_project() != p.name || crate::db::profiles::get(c, &p.name, "default")?.is_some()
    {
        return Ok(());
    }
    crate::db::profiles::insert(
        c,
        &ProfileRecord {
            project: p.name.clone(),
            name: "default".to_owned(),
            description: format!("Default berth profile for project {}", p.name),
            ..ProfileRecord::default()
        },
    )
}

/// Creates a project; its features default to true, as LXD's.
pub async fn create(
    cx: &Ctx,
    name: &ProjectName,
    description: String,
    mut config: BTreeMap<String, String>,
) -> Result<()> {
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
    restrictions::check_config(&config)?;
    let rec = ProjectRecord {
        name: name.to_string(),
        description,
        config,
    };
    let _guard = cx.locks.profiles.lock().await;
    cx.db
        .write(move |tx| {
            crate::db::projects::insert(tx, &rec)?;
            own_default_profile(tx, &rec)
        })
        .await
        .map_err(|e| match e {
            DbError::Exists { .. } => exists(name),
            other => other.into(),
        })?;
    cx.events.lifecycle("project-created", &url(name), None);
    Ok(())
}

/// The change a PUT (`replace`) or PATCH makes to a project.
#[derive(Debug, Default)]
pub struct ProjectChange {
    pub config: Option<BTreeMap<String, String>>,
    pub description: Option<String>,
}

/// Changes a project: every instance in it must stay within its new rules, and its
/// features change only while it is empty. `precondition` sees the project as it is,
/// under the profile lock (an ETag check).
pub async fn update(
    cx: &Ctx,
    name: &str,
    precondition: impl FnOnce(&ProjectRecord) -> Result<()>,
    change: ProjectChange,
    replace: bool,
) -> Result<()> {
    // Instances and profiles cannot change while the project's rules are checked.
    let _guard = cx.locks.profiles.lock().await;
    let old = get(cx, name).await?;
    precondition(&old)?;
    let mut new = old.clone();
    crate::model::merge_config(&mut new.config, change.config, replace);
    crate::model::merge_description(&mut new.description, change.description, replace);
    restrictions::check_config(&new.config)?;
    let instances = expanded(cx, name).await?;
    if let Some(f) = FEATURES.iter().find(|f| old.flag(f) != new.flag(f))
        && (!instances.is_empty() || in_use(cx, name).await?)
    {
        return Err(Failure::invalid(format!(
            "{f} can only be changed on an empty project (no instances, images, volumes or profiles but default)"
        )));
    }
    // Every instance in it must stay within the new rules.
    for (_, config, devices) in &instances {
        restrictions::check_restrictions(&new, config, devices)?;
    }
    restrictions::check_limits(&new, &instances, None, cx.host)?;
    cx.db
        .write(move |tx| {
            crate::db::projects::update(tx, &new)?;
            own_default_profile(tx, &new)
        })
        .await?;
    cx.events.lifecycle("project-updated", &url(name), None);
    Ok(())
}

/// Whether anything but its `default` profile lives in project `name`: instances, other
/// profiles, images, custom volumes.
async fn in_use(cx: &Ctx, name: &str) -> Result<bool> {
    let n = name.to_owned();
    Ok(cx
        .db
        .read(move |c| {
            let instances = crate::db::instances::list(c)?;
            let profiles = crate::db::profiles::list(c)?;
            let images = !crate::db::images::list(c, &n)?.is_empty();
            let volumes = crate::db::volumes::list(c, None, Some("custom"))?;
            Ok::<_, DbError>(
                instances.iter().any(|i| i.project == n)
                    || images
                    || volumes.iter().any(|v| v.project == n)
                    || profiles
                        .iter()
                        .any(|p| p.project == n && p.name != "default"),
            )
        })
        .await?)
}

/// Deletes an empty project (not `default`).
pub async fn delete(cx: &Ctx, name: &str) -> Result<()> {
    if name == DEFAULT_PROJECT {
        return Err(Failure::forbidden(
            "The \"default\" project cannot be deleted",
        ));
    }
    let _guard = cx.locks.profiles.lock().await;
    get(cx, name).await?;
    if in_use(cx, name).await? {
        return Err(Failure::invalid(format!(
            "Project {name:?} is not empty (delete its instances, images, storage volumes and profiles first)"
        )));
    }
    let n = name.to_owned();
    cx.db
        .write(move |tx| {
            crate::db::profiles::delete_all(tx, &n)?;
            crate::db::projects::delete(tx, &n)
        })
        .await?;
    cx.events.lifecycle("project-deleted", &url(name), None);
    Ok(())
}

/// Refuses to rename `default`.
pub fn check_renamable(name: &str) -> Result<()> {
    if name == DEFAULT_PROJECT {
        return Err(Failure::forbidden(
            "The \"default\" project cannot be renamed",
        ));
    }
    Ok(())
}

/// Renames an empty project (not `default`).
pub async fn rename(cx: &Ctx, name: &str, to: &ProjectName) -> Result<()> {
    check_renamable(name)?;
    let _guard = cx.locks.profiles.lock().await;
    get(cx, name).await?;
    if in_use(cx, name).await? {
        return Err(Failure::invalid(format!(
            "Project {name:?} is not empty (only empty projects can be renamed)"
        )));
    }
    if name == &**to {
        return Err(exists(to));
    }
    let (from, t) = (name.to_owned(), to.to_string());
    cx.db
        .write(move |tx| crate::db::projects::rename(tx, &from, &t))
        .await
        .map_err(|e| match e {
            DbError::Exists { .. } => exists(to),
            other => other.into(),
        })?;
    let mut ctx = serde_json::Map::new();
    ctx.insert("old_name".into(), name.into());
    cx.events.lifecycle("project-renamed", &url(to), Some(ctx));
    Ok(())
}

/// Each limited resource of project `name`: (resource, limit or -1, usage).
pub async fn state(cx: &Ctx, name: &str) -> Result<Vec<(&'static str, i64, i64)>> {
    let p = get(cx, name).await?;
    let instances = expanded(cx, name).await?;
    let limit = |key: &str| -> i64 {
        p.config
            .get(key)
            .and_then(|v| {
                if key == "limits.memory" || key == "limits.disk" {
                    crate::model::limits::parse_size(v)
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
            .filter_map(|(_, c, d)| restrictions::usage(key, c, d, cx.host))
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
            .sum()
    };
    let count = i64::try_from(instances.len()).unwrap_or(i64::MAX);
    Ok(vec![
        ("containers", limit("limits.containers"), count),
        ("instances", limit("limits.instances"), count),
        ("virtual-machines", limit("limits.virtual-machines"), 0),
        ("cpu", limit("limits.cpu"), sum("limits.cpu")),
        ("memory", limit("limits.memory"), sum("limits.memory")),
        (
            "processes",
            limit("limits.processes"),
            sum("limits.processes"),
        ),
        ("disk", limit("limits.disk"), sum("limits.disk")),
        ("networks", limit("limits.networks"), 0),
    ])
}

/// Every instance, expanded, from one database read: for checks over all of them.
pub async fn expand_every(cx: &Ctx) -> Result<Vec<Expanded>> {
    expand_with(cx, crate::db::instances::list).await
}

/// [`expand_every`] for a background pass: an instance whose row does not read is left
/// out (and logged), not the end of the pass.
pub async fn expand_readable(cx: &Ctx) -> Result<Vec<Expanded>> {
    expand_with(cx, crate::db::instances::list_readable).await
}

async fn expand_with(
    cx: &Ctx,
    instances: fn(&Connection) -> Result<Vec<crate::model::records::InstanceRecord>, DbError>,
) -> Result<Vec<Expanded>> {
    let (recs, profiles, projects) = cx
        .db
        .read(move |c| {
            Ok::<_, DbError>((
                instances(c)?,
                crate::db::profiles::list(c)?,
                crate::db::projects::list(c)?,
            ))
        })
        .await?;
    Ok(expand_all(recs, &profiles, &projects))
}

/// Project `project`'s instances, expanded, as its limits see them.
async fn expanded(cx: &Ctx, project: &str) -> Result<Vec<Candidate>> {
    Ok(expand_every(cx)
        .await?
        .into_iter()
        .filter(|e| e.rec.project == project)
        .map(|e| (e.rec.name, e.config, e.devices))
        .collect())
}

/// Refuses (403) instance `candidate` of `project` when the project's restrictions forbid
/// it: checked first, so a forbidden key is reported as such whatever its value.
pub async fn check_allowed(cx: &Ctx, project: &str, candidate: &Candidate) -> Result<()> {
    let p = get(cx, project).await?;
    restrictions::check_restrictions(&p, &candidate.1, &candidate.2)
}

/// Refuses (400) when `project`'s instances, with each of `candidates` replacing its old
/// self (or added), would exceed a limit (a profile change moves several at once).
pub async fn check_limits(cx: &Ctx, project: &str, candidates: &[Candidate]) -> Result<()> {
    let p = get(cx, project).await?;
    if !p.config.keys().any(|k| k.starts_with("limits.")) {
        return Ok(());
    }
    let mut all = expanded(cx, project).await?;
    for c in candidates {
        match all.iter_mut().find(|i| i.0 == c.0) {
            Some(i) => *i = c.clone(),
            None => all.push(c.clone()),
        }
    }
    restrictions::check_limits(&p, &all, None, cx.host)
}

/// Whether `project` has `restricted=true` (false when it cannot be read).
pub async fn is_restricted(cx: &Ctx, project: &str) -> bool {
    get(cx, project).await.is_ok_and(|p| p.restricted())
}

/// Refuses snapshots in a project with `restricted.snapshots=block` (403).
pub async fn check_snapshots(cx: &Ctx, project: &str) -> Result<()> {
    let p = cx
        .db
        .read({
            let p = project.to_owned();
            move |c| crate::db::projects::get(c, &p)
        })
        .await?;
    if let Some(p) = p
        && p.restricted()
        && p.config.get("restricted.snapshots").map(String::as_str) == Some("block")
    {
        return Err(Failure::forbidden(format!(
            "Snapshots are forbidden in project {project:?} (restricted.snapshots=block)"
        )));
    }
    Ok(())
}
