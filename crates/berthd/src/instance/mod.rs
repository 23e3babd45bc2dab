//! The instance service: every instance state change, on top of the instance driver
//! ([`crate::lxc`]), the storage pools, the images and the project rules.
//!
//! ```text
//!   create ──► STOPPED ──start──► RUNNING ──freeze──► FROZEN
//!                 ▲                  │  ◄──start/unfreeze─┘
//!                 └──stop (clean: shutdown with timeout; force: SIGKILL)
//!   delete: only when STOPPED; ephemeral instances are deleted when they stop
//! ```
//!
//! - [`create`]: from an image, empty, or a copy; rename; delete.
//! - [`state`]: start, stop, restart, freeze, stateful stop and start.
//! - [`config`]: PUT/PATCH, validation, id maps, limits applied live, hotplug.
//! - [`snapshot`]: take, delete, rename, restore, scheduled passes.
//! - [`query`]: find, status, state, rendering, lists.
//! - [`background`]: what runs besides requests (sweep, autostart, the scheduler).
//! - [`exec`], [`console`], [`files`], [`logs`]: what the API's streams work on.
//!
//! Each instance has a lock (`ctx::Locks::instance`) held across whole operations, so
//! requests on one instance serialise while different instances proceed in parallel; the
//! lock order is written in [`crate::ctx`]. An instance is named by its host-wide name
//! here (see [`crate::model::names`]).

pub mod background;
pub mod backup;
pub mod config;
pub mod console;
pub mod create;
pub mod exec;
pub mod files;
pub mod logs;
pub mod migrate;
pub mod nic;
pub mod proxy;
pub mod query;
pub mod quota;
pub mod recover;
pub mod snapshot;
pub mod state;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_api::instance::Device;

use crate::ctx::Ctx;
use crate::db::DbError;
use crate::error::{Failure, Result};
use crate::lxc::StartSpec;
use crate::model::expand::{expand, flag, profiles_project, root_pool};
use crate::model::names::api_name;
use crate::model::records::{InstanceRecord, ProfileRecord};

/// "Instance not found", naming it as the API knows it.
pub fn not_found(name: &str) -> Failure {
    Failure::not_found(format!("Instance {:?} not found", api_name(name)))
}

/// An instance's record, or not found.
pub async fn find(cx: &Ctx, name: &str) -> Result<InstanceRecord> {
    let n = name.to_owned();
    cx.db
        .read(move |c| crate::db::instances::get(c, &n))
        .await?
        .ok_or_else(|| not_found(name))
}

/// Profiles `names` as the instances of `project` see them: the project's own, or
/// `default`'s when it does not have `features.profiles`.
pub async fn profiles(cx: &Ctx, project: &str, names: &[String]) -> Result<Vec<ProfileRecord>> {
    let names = names.to_vec();
    let project = project.to_owned();
    let found = cx
        .db
        .read(move |c| {
            let projects = crate::db::projects::list(c)?;
            let from = profiles_project(&projects, &project).to_owned();
            names
                .iter()
                .map(|n| Ok((n.clone(), crate::db::profiles::get(c, &from, n)?)))
                .collect::<Result<Vec<_>, DbError>>()
        })
        .await?;
    found
        .into_iter()
        .map(|(n, p)| p.ok_or_else(|| Failure::not_found(format!("Profile {n:?} not found"))))
        .collect()
}

/// An instance's expanded configuration and devices.
pub async fn expanded(
    cx: &Ctx,
    rec: &InstanceRecord,
) -> Result<(BTreeMap<String, String>, BTreeMap<String, Device>)> {
    let profiles = profiles(cx, &rec.project, &rec.profiles).await?;
    Ok(expand(&profiles, rec))
}

/// The pool of an instance's root disk (from its expanded devices).
pub fn pool_of_devices(
    cx: &Ctx,
    devices: &BTreeMap<String, Device>,
) -> Result<std::sync::Arc<dyn berth_storage::Driver>> {
    root_pool(devices)
        .and_then(|p| cx.pools.get(&p))
        .ok_or_else(|| Failure::internal("The pool of the instance's root disk is not available"))
}

/// The pool of an instance's root disk.
pub async fn pool_of(
    cx: &Ctx,
    rec: &InstanceRecord,
) -> Result<std::sync::Arc<dyn berth_storage::Driver>> {
    let (_, devices) = expanded(cx, rec).await?;
    pool_of_devices(cx, &devices)
}

/// The volume of instance `name` on `pool`.
pub fn volume(pool: &dyn berth_storage::Driver, name: &str) -> PathBuf {
    pool.volume_path(berth_storage::VolumeType::Container, name)
}

/// The user-namespace map the instance runs with; `None` when privileged.
pub fn idmap_of(
    cx: &Ctx,
    rec: &InstanceRecord,
    config: &BTreeMap<String, String>,
) -> Option<crate::model::idmap::IdMap> {
    if flag(config, "security.privileged") {
        return None;
    }
    Some(
        crate::model::idmap::IdMap::from_volatile(&rec.config)
            .flatten()
            .unwrap_or_else(|| cx.ids.shared()),
    )
}

/// What the driver needs to start (or restore) instance `rec` with its expanded
/// `config` and `devices` on the volume `volume`: id map, limits, device entries (made
/// now: unix device nodes are created afresh) and `raw.lxc`.
pub fn start_spec(
    cx: &Ctx,
    rec: &InstanceRecord,
    config: &BTreeMap<String, String>,
    devices: &BTreeMap<String, Device>,
    volume: &std::path::Path,
) -> Result<StartSpec> {
    let idmap = idmap_of(cx, rec, config);
    if let Some(m) = &idmap {
        cx.ids.check_usable(m)?;
    }
    let prefix = if cx.host.cgroup_v2 {
        "lxc.cgroup2"
    } else {
        "lxc.cgroup"
    };
    let mut limits: Vec<(String, String)> = crate::model::limits::cgroup_settings(config, cx.host)?
        .into_iter()
        .map(|(_, file, value)| (format!("{prefix}.{file}"), value))
        .collect();
    limits.extend(crate::model::limits::prlimits(config)?);
    let bound = crate::storage::disks::resolve(cx, &rec.project, devices)?;
    let nesting = flag(config, "security.nesting");
    let checkpointable = flag(config, "migration.stateful");
    // Not for these: see `lxc::syscalls`.
    let quota_view = !nesting && !checkpointable && quota_hidden(cx, &rec.project, devices);
    if let Some(m) = &idmap {
        // liblxc reaches each attached custom volume as the container's root.
        for (pool, _) in devices
            .values()
            .filter_map(crate::storage::disks::volume_of)
        {
            let custom = crate::storage::driver(cx, pool)?
                .volume_path(berth_storage::VolumeType::Custom, "_")
                .with_file_name("");
            crate::storage::disks::grant_traversal(&custom, m.uid_base).map_err(|e| {
                Failure::failed("Failed to let the container reach its custom volumes", e)
            })?;
        }
    }
    let devices = crate::device::start_entries(
        &cx.paths.nodes(&rec.name),
        &bound,
        idmap.map(|m| (m.uid_base, m.gid_base, m.size)),
        cx.host.cgroup_v2,
    )?;
    let raw = match config.get("raw.lxc") {
        Some(raw) => crate::model::raw_lxc::parse(raw)?,
        None => Vec::new(),
    };
    Ok(StartSpec {
        name: rec.name.clone(),
        hostname: rec.api_name().to_owned(),
        rootfs: volume.join("rootfs"),
        idmap,
        nesting,
        checkpointable,
        quota_view,
        limits,
        devices,
        host_links: Vec::new(),
        raw,
    })
}

/// Whether a volume the instance starts with (its root, a custom volume disk) has a size
/// on a pool whose filesystem leaves quotas out of its own figures.
fn quota_hidden(cx: &Ctx, project: &str, devices: &BTreeMap<String, Device>) -> bool {
    let hides = |pool: &str| {
        cx.pools
            .get(pool)
            .is_some_and(|d| d.info().quota_hidden_from_statfs)
    };
    let root_sized =
        quota::root_size(devices).is_some() && root_pool(devices).is_some_and(|p| hides(&p));
    root_sized || crate::storage::disks::any_sized(cx, project, devices, hides)
}

/// Runs `f` on a blocking thread with the driver (calls that may ask a container's
/// monitor).
pub async fn blocking<R: Send + 'static>(
    cx: &Ctx,
    f: impl FnOnce(&dyn crate::lxc::InstanceDriver) -> R + Send + 'static,
) -> Result<R> {
    let driver = cx.driver.clone();
    Ok(tokio::task::spawn_blocking(move || f(driver.as_ref())).await?)
}
