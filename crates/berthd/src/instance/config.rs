//! Changing an instance's configuration (PUT replaces, PATCH merges): checked as a whole
//! (project restrictions first, as a 403; then keys, devices and limits), stored with its
//! id map in one write, then applied to a running instance: limits into its cgroup,
//! devices added and removed live. A live change that fails is taken back and the old
//! record stored again.

use std::collections::BTreeMap;

use berth_api::StatusCode;
use berth_api::instance::Device;
use rusqlite::Connection;

use super::query::status;
use super::{find, profiles};
use crate::ctx::Ctx;
use crate::device::hotplug;
use crate::error::{Failure, Result};
use crate::model::expand::{expand, flag, root_pool};
use crate::model::idmap::{HostIds, IdMap};
use crate::model::names::instance_url;
use crate::model::records::InstanceRecord;
use crate::revert::Reverter;

/// What a PUT (`replace`) or PATCH changes; an absent field is kept by PATCH and emptied
/// by PUT (but for `profiles`, `description` and `ephemeral`, which PUT keeps too).
#[derive(Debug, Default)]
pub struct InstanceChange {
    pub config: Option<BTreeMap<String, String>>,
    pub devices: Option<BTreeMap<String, Device>>,
    pub profiles: Option<Vec<String>>,
    pub description: Option<String>,
    pub ephemeral: Option<bool>,
}

/// Checks a configuration (expanded or an instance's own) and devices, as instance
/// creation, updates, profile changes and restores all do.
pub fn validate(cx: &Ctx, own: &InstanceRecord, expanded: &BTreeMap<String, String>) -> Result<()> {
    crate::model::validate_config(&own.config, cx.host)?;
    crate::model::devices::validate(&own.devices)?;
    crate::model::validate_config(expanded, cx.host)
}

/// Changes instance `name`. `precondition` sees the record as it is, under the
/// instance's lock (an ETag check).
pub async fn update(
    cx: &Ctx,
    name: &str,
    precondition: impl FnOnce(&InstanceRecord) -> Result<()>,
    change: InstanceChange,
    replace: bool,
) -> Result<()> {
    let lock = cx.locks.instance(name);
    let _guard = lock.lock().await;
    // Profiles cannot change or go while this instance's expansion is checked and stored.
    let _profiles_guard = cx.locks.profiles.lock().await;
    let old = find(cx, name).await?;
    precondition(&old)?;
    let mut rec = old.clone();
    // volatile.* keys are berthd's: a client's are ignored, berthd's kept.
    let volatile = crate::model::volatile_keys(&old.config);
    let user = change.config.map(|c| {
        c.into_iter()
            .filter(|(k, _)| !k.starts_with("volatile."))
            .collect()
    });
    crate::model::merge_config(&mut rec.config, user, replace);
    rec.config.retain(|k, _| !k.starts_with("volatile."));
    rec.config.extend(volatile);
    match change.devices {
        Some(devices) if replace => rec.devices = devices,
        Some(devices) => rec.devices.extend(devices),
        None if replace => rec.devices.clear(),
        None => {}
    }
    if let Some(p) = change.profiles {
        rec.profiles = p;
    }
    if let Some(d) = change.description {
        rec.description = d;
    }
    if let Some(e) = change.ephemeral {
        rec.ephemeral = e;
    }
    let new_profiles = profiles(cx, &rec.project, &rec.profiles).await?;
    let (expanded, devices) = expand(&new_profiles, &rec);
    let candidate = (rec.name.clone(), expanded.clone(), devices.clone());
    crate::project::check_allowed(cx, &rec.project, &candidate).await?;
    validate(cx, &rec, &expanded)?;
    super::nic::check(cx, &rec.config, &devices).await?;
    crate::storage::disks::check(cx, &rec.project, &devices).await?;
    crate::project::check_limits(cx, &rec.project, std::slice::from_ref(&candidate)).await?;
    let old_profiles = profiles(cx, &old.project, &old.profiles).await?;
    let (old_expanded, old_devices) = expand(&old_profiles, &old);
    super::quota::check(cx, Some(&old_devices), &devices)?;
    if root_pool(&devices) != root_pool(&old_devices) {
        return Err(Failure::invalid("The root disk's pool cannot be changed"));
    }
    let (state, pid) = status(cx, name).await;
    // Custom volumes are bound by their host paths.
    let (bound_before, bound_after) = if state == StatusCode::Stopped {
        (BTreeMap::new(), BTreeMap::new())
    } else {
        (
            crate::storage::disks::resolve_present(cx, &rec.project, &old_devices)?,
            crate::storage::disks::resolve(cx, &rec.project, &devices)?,
        )
    };
    let change = hotplug::diff(&bound_before, &bound_after);
    if state != StatusCode::Stopped {
        hotplug::check(&change)?;
    }
    super::nic::update_volatile(cx, name, &mut rec.config, &old_devices, &devices);
    let mut stored = rec.clone();
    let ids = cx.ids;
    let map_config = expanded.clone();
    cx.db
        .write(move |tx| {
            assign_idmap(tx, &mut stored, &map_config, ids, false)?;
            Ok::<_, Failure>(crate::db::instances::update(tx, &stored)?)
        })
        .await?;
    // The root disk's size holds at once, running or not; one that cannot be set is not
    // kept.
    if let Err(e) = super::quota::apply(cx, name, Some(&old_devices), &devices).await {
        let back = old.clone();
        let _ = cx
            .db
            .write(move |tx| Ok::<_, Failure>(crate::db::instances::update(tx, &back)?))
            .await;
        return Err(e);
    }
    if state != StatusCode::Stopped {
        // A live change that fails takes back what it did, and the old record goes back.
        let mut undo = Reverter::new();
        let db = cx.db.clone();
        let old_config = old.config.clone();
        undo.add("store the old record again", move || {
            Ok(db.write_sync(|tx| crate::db::instances::update(tx, &old))?)
        });
        // Registered first: a change that fails half-way has written some files.
        let (driver, host, n) = (cx.driver.clone(), cx.host, name.to_owned());
        let (before, after) = (old_expanded.clone(), expanded.clone());
        undo.add("apply the old limits", move || {
            apply_live(driver.as_ref(), host, &n, &after, &before)
        });
        apply_live(cx.driver.as_ref(), cx.host, name, &old_expanded, &expanded)
            .map_err(|e| Failure::internal(e.message()).with_source(e))?;
        if let (Some(pid), false) = (pid, change.is_empty()) {
            let target = hotplug::Target {
                pid,
                privileged: flag(&old_expanded, "security.privileged"),
                no_symlinks: crate::project::is_restricted(cx, &rec.project).await,
            };
            let nodes = cx.paths.nodes(name);
            hotplug::apply(
                &cx.driver,
                &nodes,
                name,
                target,
                &change,
                &bound_before,
                &bound_after,
            )
            .await
            .map_err(|e| Failure::internal(e.message()).with_source(e))?;
        }
        if let Some(pid) = pid {
            let before = super::nic::plan_config(&old_expanded, &old_config);
            let after = super::nic::plan_config(&expanded, &rec.config);
            let (before, after) = ((&before, &old_devices), (&after, &devices));
            super::nic::apply_live(cx, &rec, pid, before, after).await?;
            super::proxy::apply_live(cx, &rec, &old_devices, &devices).await?;
        }
        undo.success();
    }
    cx.events
        .lifecycle("instance-updated", &instance_url(name), None);
    super::backup::save_file(cx, name).await;
    Ok(())
}

/// Writes changed limits into a running container's cgroup; removed limits go back to
/// the unlimited value.
pub fn apply_live(
    driver: &dyn crate::lxc::InstanceDriver,
    host: crate::model::limits::Host,
    name: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Result<()> {
    let before = crate::model::limits::cgroup_settings(old, host)?;
    let after = crate::model::limits::cgroup_settings(new, host)?;
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
        driver
            .set_cgroup(name, controller, file, &reset)
            .map_err(|e| e.about(format_args!("Failed to reset {file}")))?;
    }
    for (controller, file, value) in &after {
        driver.set_cgroup(name, controller, file, value)?;
    }
    Ok(())
}

/// Chooses the instance's id map from its expanded config (keeping its current isolated
/// range while free) and stores it in its `volatile.idmap.*` keys. Runs inside the write
/// that stores the record, so the ranges of the other instances cannot change meanwhile.
/// The map takes effect at the next start.
pub fn assign_idmap(
    c: &Connection,
    rec: &mut InstanceRecord,
    expanded: &BTreeMap<String, String>,
    ids: HostIds,
    new: bool,
) -> Result<()> {
    let others = crate::db::instances::idmaps(c, &rec.name)?;
    let taken = IdMap::taken_by(others.iter(), ids);
    let current = if new {
        None
    } else {
        rec.config
            .get("volatile.idmap.base")
            .and_then(|b| b.parse().ok())
    };
    let server = crate::db::config::load(c)?;
    let shared_default = crate::config::get(&server, crate::model::idmap::DEFAULT_KEY) == "shared";
    let own = crate::model::idmap::own_by_default(ids, current, shared_default);
    let map = crate::model::idmap::choose(expanded, ids, current, &taken, own)?;
    IdMap::store(map, &mut rec.config);
    if new && let Some(json) = rec.config.get("volatile.idmap.next").cloned() {
        rec.config
            .insert("volatile.idmap.current".to_owned(), json.clone());
        rec.config
            .insert("volatile.last_state.idmap".to_owned(), json);
    }
    Ok(())
}
