//! The root disk's `size`: enforced by the pool's driver where it has quotas (btrfs
//! qgroups), refused with one line where it has none (a `dir` pool), never accepted and
//! ignored. It is applied when the instance is made and at each start (a restore or a
//! migration makes its volume anew), and at once when the instance's or a profile's
//! root disk changes, running or not. A volume cloned by the driver carries no limit of
//! the volume it came from (the btrfs driver lifts the one the kernel copies).

use std::collections::BTreeMap;

use berth_api::instance::Device;
use berth_storage::VolumeType;

use crate::ctx::Ctx;
use crate::error::{Failure, Result};
use crate::model::expand::{root_disk, root_pool};

/// The root disk's size in bytes, if it has one (0 is none, as in LXD).
pub fn root_size(devices: &BTreeMap<String, Device>) -> Option<u64> {
    root_disk(devices)
        .and_then(|d| d.get("size"))
        .and_then(|s| crate::model::limits::parse_size(s))
        .filter(|n| *n > 0)
}

/// Refuses a root disk `size` the root disk's pool cannot enforce, when it is new or
/// changed (`old`: the devices before; an instance recorded with one before sizes were
/// checked keeps it through unrelated changes).
pub fn check(
    cx: &Ctx,
    old: Option<&BTreeMap<String, Device>>,
    devices: &BTreeMap<String, Device>,
) -> Result<()> {
    let size = root_size(devices);
    if size.is_none() || old.is_some_and(|o| root_size(o) == size) {
        return Ok(());
    }
    let Some(name) = root_pool(devices) else {
        return Ok(());
    };
    match cx.pools.get(&name) {
        Some(pool) if !pool.info().quotas => Err(Failure::invalid(format!(
            "The root disk's size cannot be enforced on storage pool {name:?}: its {} driver has no quotas (a btrfs pool has)",
            pool.info().name
        ))),
        _ => Ok(()),
    }
}

/// Gives instance `name`'s volume the root disk's size: when there is one and `old` is
/// none (a new instance, a start: the volume may be new since, and a driver's clone
/// starts without a limit), or when it changed from `old` (lifted when gone).
pub async fn apply(
    cx: &Ctx,
    name: &str,
    old: Option<&BTreeMap<String, Device>>,
    devices: &BTreeMap<String, Device>,
) -> Result<()> {
    let size = root_size(devices);
    let unchanged = match old {
        Some(o) => root_size(o) == size,
        None => size.is_none(),
    };
    if unchanged {
        return Ok(());
    }
    let Some(pool) = root_pool(devices).and_then(|p| cx.pools.get(&p)) else {
        return Ok(());
    };
    if !pool.info().quotas {
        // Only an instance recorded before sizes were checked gets here with a size
        // (`check` refuses the rest): it starts as it used to; the log says it does not hold.
        if size.is_some() {
            tracing::warn!(instance = %name, "The root disk's size cannot be enforced on its pool");
        }
        return Ok(());
    }
    let n = name.to_owned();
    tokio::task::spawn_blocking(move || pool.set_quota(VolumeType::Container, &n, size))
        .await?
        .map_err(|e| Failure::from(e).about(format_args!("Instance {name:?}")))
}

/// The root disk's usage (and size, as `total`) in `state.disk`, as LXD shows it, where
/// the pool counts it.
pub async fn fill_usage(
    cx: &Ctx,
    rec: &crate::model::records::InstanceRecord,
    state: &mut berth_api::instance::InstanceState,
) {
    let Ok((_, devices)) = super::expanded(cx, rec).await else {
        return;
    };
    let Some((device, _)) = devices.iter().find(|(_, d)| {
        d.get("type").map(String::as_str) == Some("disk")
            && d.get("path").map(String::as_str) == Some("/")
    }) else {
        return;
    };
    let Some(pool) = root_pool(&devices).and_then(|p| cx.pools.get(&p)) else {
        return;
    };
    if !pool.info().quotas {
        return;
    }
    let n = rec.name.clone();
    let usage = tokio::task::spawn_blocking(move || pool.usage(VolumeType::Container, &n))
        .await
        .ok()
        .flatten();
    if let Some(usage) = usage {
        state.disk.insert(
            device.clone(),
            serde_json::json!({ "usage": usage, "total": root_size(&devices).unwrap_or(0) }),
        );
    }
}
