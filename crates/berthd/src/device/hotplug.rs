//! Adding and removing devices on a running container: host-path disks and unix devices.
//!
//! A change is split into what goes and what comes ([`diff`]), checked before anything is
//! stored ([`check`]), then applied ([`apply`]): each mount or unmount runs in a
//! `berthd forkmount` helper, which must be single-threaded to join the container's user
//! and mount namespaces; device cgroup rules go through the container's monitor.

use std::collections::BTreeMap;
use std::path::Path;

use berth_api::instance::Device;

use super::unix;
use crate::error::{Failure, Result};
use crate::lxc::{InstanceDriver, MountSpec};
use crate::model::devices::{DEFAULT_RULES, is_host_disk, is_unix};

/// Devices leaving and joining a running container (a changed device does both).
#[derive(Debug, Default)]
pub struct Change {
    pub remove: Vec<(String, Device)>,
    pub add: Vec<(String, Device)>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }
}

/// What changes between two expanded device sets, among the devices that apply live.
pub fn diff(old: &BTreeMap<String, Device>, new: &BTreeMap<String, Device>) -> Change {
    let live = |d: &Device| is_host_disk(d) || is_unix(d);
    Change {
        remove: old
            .iter()
            .filter(|(n, d)| live(d) && new.get(*n) != Some(d))
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect(),
        add: new
            .iter()
            .filter(|(n, d)| live(d) && old.get(*n) != Some(d))
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect(),
    }
}

/// Refuses additions that cannot be made (a missing required source, a host node of the
/// wrong kind), naming the device.
pub fn check(change: &Change) -> Result<()> {
    for (name, d) in &change.add {
        if is_unix(d) {
            unix::resolve(name, d)?;
        } else if let Some(source) = d.get("source")
            && d.get("required").is_none_or(|v| v == "true")
            && std::fs::metadata(source).is_err()
        {
            return Err(Failure::invalid(format!(
                "Device {name:?}: missing source {source:?}"
            )));
        }
    }
    Ok(())
}

/// The id map of a running container's user namespace (uid base, gid base, size).
fn running_ids(pid: i32) -> Option<unix::Ids> {
    let first = |file: &str| -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
        let mut f = text.split_whitespace();
        let (_, outside, count) = (f.next()?, f.next()?, f.next()?);
        Some((outside.parse().ok()?, count.parse().ok()?))
    };
    let (uid, size) = first("uid_map")?;
    let (gid, _) = first("gid_map")?;
    Some((uid, gid, size))
}

/// The running container a change applies to.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its init.
    pub pid: i32,
    /// It runs without a user namespace (`security.privileged`).
    pub privileged: bool,
    /// Host-path sources must hold no symlink (its project is restricted).
    pub no_symlinks: bool,
}

/// Applies `change` to running container `name`, whose devices become `now`.
/// `nodes`: the container's node directory.
pub async fn apply(
    driver: &dyn InstanceDriver,
    nodes: &Path,
    name: &str,
    target: Target,
    change: &Change,
    now: &BTreeMap<String, Device>,
) -> Result<()> {
    let pid = target.pid;
    let start_time = crate::lxc::lifecycle::start_time(pid)
        .ok_or_else(|| Failure::conflict("The instance is not running"))?;
    let ids = if target.privileged {
        None
    } else {
        Some(
            running_ids(pid)
                .ok_or_else(|| Failure::internal("The instance's id map is unreadable"))?,
        )
    };
    let base = MountSpec {
        pid,
        start_time,
        userns: !target.privileged,
        no_symlinks: target.no_symlinks,
        ..MountSpec::default()
    };
    for (dev, d) in &change.remove {
        let Some(path) = d.get("path").or_else(|| d.get("source")) else {
            continue;
        };
        let spec = MountSpec {
            target: path.clone(),
            remove: is_unix(d),
            ..base.clone()
        };
        // An optional disk whose source was missing was never mounted: nothing to undo.
        let unmounted = driver.mount(&spec).await;
        if !is_unix(d) {
            if let Err(e) = unmounted {
                tracing::debug!(instance = name, device = dev, error = %e, "Nothing to unmount");
            }
            continue;
        }
        let _ = std::fs::remove_file(unix::node_path(nodes, dev));
        if let Ok(Some(node)) = unix::resolve(dev, d) {
            let rule = node.rule();
            let still_used = DEFAULT_RULES.contains(&rule.as_str())
                || now.iter().filter(|(_, d)| is_unix(d)).any(|(n, d)| {
                    unix::resolve(n, d).is_ok_and(|o| o.is_some_and(|o| o.rule() == rule))
                });
            if !still_used {
                driver.device_rule(name, "devices.deny", rule).await?;
            }
        }
    }
    for (dev, d) in &change.add {
        if is_unix(d) {
            let Some(node) = unix::resolve(dev, d)? else {
                continue;
            };
            let host = unix::make_node(nodes, dev, &node, ids)?;
            let spec = MountSpec {
                source: Some(host.to_string_lossy().into_owned()),
                target: node.path.clone(),
                ..base.clone()
            };
            let added = match driver.device_rule(name, "devices.allow", node.rule()).await {
                Ok(()) => driver.mount(&spec).await,
                Err(e) => Err(e),
            };
            if let Err(e) = added {
                // Undo this device: its node, and its rule unless something else needs it.
                let _ = std::fs::remove_file(&host);
                if !DEFAULT_RULES.contains(&node.rule().as_str())
                    && let Err(undo) = driver.device_rule(name, "devices.deny", node.rule()).await
                {
                    tracing::warn!(instance = name, device = dev, error = %undo, "Undo step failed");
                }
                return Err(e.about(format_args!("Device {dev:?}")));
            }
            continue;
        }
        let (Some(source), Some(path)) = (d.get("source"), d.get("path")) else {
            continue;
        };
        let flag = |k: &str| d.get(k).is_some_and(|v| v == "true");
        let dir_source = match std::fs::metadata(source) {
            Ok(m) => m.is_dir(),
            Err(_) if d.get("required").is_some_and(|v| v == "false") => continue,
            Err(e) => {
                return Err(Failure::invalid(format!(
                    "Device {dev:?}: missing source {source:?}: {e}"
                )));
            }
        };
        let spec = MountSpec {
            source: Some(source.clone()),
            target: path.clone(),
            dir: dir_source,
            readonly: flag("readonly"),
            recursive: flag("recursive"),
            shift: flag("shift") && !target.privileged,
            propagation: d.get("propagation").cloned(),
            ..base.clone()
        };
        driver
            .mount(&spec)
            .await
            .map_err(|e| e.about(format_args!("Device {dev:?}")))?;
    }
    Ok(())
}
