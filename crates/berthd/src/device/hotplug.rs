//! Adding and removing devices on a running container: host-path disks and unix devices.
//!
//! A change is split into what goes and what comes ([`diff`]), checked before anything is
//! stored ([`check`]), then applied ([`apply`]): each mount or unmount runs in a
//! `berthd forkmount` helper, which must be single-threaded to join the container's user
//! and mount namespaces; device cgroup rules go through the container's monitor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::instance::Device;

use super::unix;
use crate::error::{Failure, Result};
use crate::lxc::{InstanceDriver, MountSpec};
use crate::model::devices::{DEFAULT_RULES, is_host_disk, is_unix};
use crate::revert::Reverter;

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

/// Applies `change` to running container `name`, whose devices go from `before` to
/// `after`. `nodes`: the container's node directory. Each device that went or came
/// registers its undo, so a failure half-way takes back what this call did.
pub async fn apply(
    driver: &Arc<dyn InstanceDriver>,
    nodes: &Path,
    name: &str,
    target: Target,
    change: &Change,
    before: &BTreeMap<String, Device>,
    after: &BTreeMap<String, Device>,
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
    let live = Arc::new(Live {
        driver: driver.clone(),
        nodes: nodes.to_owned(),
        name: name.to_owned(),
        base: MountSpec {
            pid,
            start_time,
            userns: !target.privileged,
            no_symlinks: target.no_symlinks,
            ..MountSpec::default()
        },
        ids,
        privileged: target.privileged,
    });
    let mut undo = Reverter::new();
    for (dev, d) in &change.remove {
        // Registered first: a removal failing half-way has taken some of it away.
        let (l, name, device) = (live.clone(), dev.clone(), d.clone());
        undo.add_async("add back a removed device", move || async move {
            l.add(&name, &device).await
        });
        live.remove(dev, d, after).await?;
    }
    for (dev, d) in &change.add {
        live.add(dev, d).await?;
        let (l, dev, d, before) = (live.clone(), dev.clone(), d.clone(), before.clone());
        undo.add_async("take an added device away", move || async move {
            l.remove(&dev, &d, &before).await
        });
    }
    undo.success();
    Ok(())
}

/// A running container's devices, changed one at a time.
struct Live {
    driver: Arc<dyn InstanceDriver>,
    nodes: PathBuf,
    name: String,
    /// What every mount in it shares (its init, namespaces).
    base: MountSpec,
    ids: Option<unix::Ids>,
    privileged: bool,
}

impl Live {
    /// Takes device `dev` away; its cgroup rule goes unless a device of `left` (or the
    /// defaults) needs it.
    async fn remove(&self, dev: &str, d: &Device, left: &BTreeMap<String, Device>) -> Result<()> {
        let Some(path) = d.get("path").or_else(|| d.get("source")) else {
            return Ok(());
        };
        let spec = MountSpec {
            target: path.clone(),
            remove: is_unix(d),
            ..self.base.clone()
        };
        // An optional disk whose source was missing was never mounted: nothing to undo.
        let unmounted = self.driver.mount(&spec).await;
        if !is_unix(d) {
            if let Err(e) = unmounted {
                tracing::debug!(instance = %self.name, device = dev, error = %e, "Nothing to unmount");
            }
            return Ok(());
        }
        let _ = std::fs::remove_file(unix::node_path(&self.nodes, dev));
        if let Ok(Some(node)) = unix::resolve(dev, d) {
            let rule = node.rule();
            let still_used = DEFAULT_RULES.contains(&rule.as_str())
                || left.iter().filter(|(_, d)| is_unix(d)).any(|(n, d)| {
                    unix::resolve(n, d).is_ok_and(|o| o.is_some_and(|o| o.rule() == rule))
                });
            if !still_used {
                self.driver
                    .device_rule(&self.name, "devices.deny", rule)
                    .await?;
            }
        }
        Ok(())
    }

    /// Gives it device `dev`.
    async fn add(&self, dev: &str, d: &Device) -> Result<()> {
        if is_unix(d) {
            return self.add_unix(dev, d).await;
        }
        let (Some(source), Some(path)) = (d.get("source"), d.get("path")) else {
            return Ok(());
        };
        let flag = |k: &str| d.get(k).is_some_and(|v| v == "true");
        let dir_source = match std::fs::metadata(source) {
            Ok(m) => m.is_dir(),
            Err(_) if d.get("required").is_some_and(|v| v == "false") => return Ok(()),
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
            shift: flag("shift") && !self.privileged,
            propagation: d.get("propagation").cloned(),
            ..self.base.clone()
        };
        self.driver
            .mount(&spec)
            .await
            .map_err(|e| e.about(format_args!("Device {dev:?}")))
    }

    /// Gives it unix device `dev`: its node made on the host, allowed in the device
    /// cgroup, bound in. A failure half-way takes back the node and the rule.
    async fn add_unix(&self, dev: &str, d: &Device) -> Result<()> {
        let Some(node) = unix::resolve(dev, d)? else {
            return Ok(());
        };
        let host = unix::make_node(&self.nodes, dev, &node, self.ids)?;
        let mut undo = Reverter::new();
        let h = host.clone();
        undo.add("remove the device's node", move || {
            std::fs::remove_file(&h).map_err(|e| Failure::failed("Failed to remove a node", e))
        });
        let about = |e: Failure| e.about(format_args!("Device {dev:?}"));
        self.driver
            .device_rule(&self.name, "devices.allow", node.rule())
            .await
            .map_err(about)?;
        if !DEFAULT_RULES.contains(&node.rule().as_str()) {
            let (driver, name, rule) = (self.driver.clone(), self.name.clone(), node.rule());
            undo.add_async("deny the device again", move || async move {
                driver.device_rule(&name, "devices.deny", rule).await
            });
        }
        let spec = MountSpec {
            source: Some(host.to_string_lossy().into_owned()),
            target: node.path.clone(),
            ..self.base.clone()
        };
        self.driver.mount(&spec).await.map_err(about)?;
        undo.success();
        Ok(())
    }
}
