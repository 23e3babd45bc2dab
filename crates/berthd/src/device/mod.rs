//! Devices on the host: what starting a container needs for its disks, unix devices and
//! nics (LXC entries, device nodes, cgroup rules, veth pairs), and the live changes of a running one
//! ([`hotplug`]). What each device type accepts is configuration, checked in
//! [`crate::model::devices`]; what touches the container goes through the instance
//! driver.

pub mod disk;
pub mod hotplug;
pub mod nic;
pub mod proxy;
pub mod unix;

use std::collections::BTreeMap;
use std::path::Path;

use berth_api::instance::Device;

use crate::error::Result;
use crate::model::devices::DEFAULT_RULES;

/// The LXC entries of a container's devices at start: host-path disk mounts, the device
/// cgroup (deny all, then the standard nodes and the unix devices), and the unix devices'
/// nodes, made afresh under `nodes`. `ids`: the container's id map (uid base, gid base,
/// size), `None` when privileged.
pub fn start_entries(
    nodes: &Path,
    devices: &BTreeMap<String, Device>,
    ids: Option<unix::Ids>,
    cgroup_v2: bool,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in disk::disk_mounts(devices, ids.is_some())? {
        out.push(("lxc.mount.entry".to_owned(), entry));
    }
    let (mounts, rules) = unix::unix_at_start(nodes, devices, ids)?;
    let key = if cgroup_v2 {
        "lxc.cgroup2.devices"
    } else {
        "lxc.cgroup.devices"
    };
    out.push((format!("{key}.deny"), "a".to_owned()));
    for rule in DEFAULT_RULES.iter().map(|r| (*r).to_owned()).chain(rules) {
        out.push((format!("{key}.allow"), rule));
    }
    for entry in mounts {
        out.push(("lxc.mount.entry".to_owned(), entry));
    }
    Ok(out)
}

/// fstab escapes for a path in a mount entry.
fn escape(p: &str) -> String {
    p.replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
}
