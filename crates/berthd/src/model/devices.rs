//! Devices beyond the root disk, as configuration: what each type accepts.
//!
//! - `disk` binds a host path, or a custom volume (`pool` and `source` naming the volume),
//!   into the container. Keys: `source` (absolute host path, or volume name),
//!   `path` (where, inside), `readonly`, `shift` (an idmapped bind mount, so host ids show
//!   inside as the same numbers), `required` (default true: a missing source refuses the
//!   start), `propagation`, `recursive`.
//! - `unix-char` and `unix-block` give the container a device node. Keys: `source` (a host
//!   node to copy the numbers from), `path` (inside; defaults to `source`), `major` and
//!   `minor` (override the host node's, or stand without one), `uid`, `gid` (the
//!   container's numbering), `mode` (octal, default 0660), `required` (default true).
//!   berthd makes the node on the host under `DIR/devices/NAME/`, owned through
//!   the container's id map, binds it in (a user namespace cannot mknod) and allows it in
//!   the device cgroup.
//!
//! Every container's device cgroup denies all but [`DEFAULT_RULES`] and its unix devices.
//! At start the devices become `lxc.mount.entry` lines; on a running container
//! [`crate::device::hotplug`] adds and removes them live.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use berth_api::instance::Device;

use crate::error::{Failure, Result};

const PROPAGATION: [&str; 6] = [
    "private", "shared", "slave", "rprivate", "rshared", "rslave",
];

pub fn flag(d: &Device, key: &str, default: bool) -> bool {
    d.get(key).map_or(default, |v| v == "true")
}

/// Checks the devices an instance or profile gives: the root disk, host-path disks,
/// unix-char and unix-block devices, and `none` to mask one. Errors name the device.
pub fn validate(devices: &BTreeMap<String, Device>) -> Result<()> {
    for (name, d) in devices {
        if name.is_empty()
            || name.len() > 64
            || name.starts_with('.')
            || name.contains(['/', '\n', '\r', '\0'])
        {
            return Err(Failure::invalid(format!(
                "Invalid device name {name:?}: use at most 64 characters, no slash, not starting with a dot"
            )));
        }
        match d.get("type").map(String::as_str) {
            Some("none") => {}
            Some("disk") if d.get("path").map(String::as_str) == Some("/") => {
                if d.keys()
                    .any(|k| !matches!(k.as_str(), "type" | "path" | "pool" | "size"))
                {
                    return Err(Failure::invalid(format!(
                        "Device {name:?}: only type, path, pool and size are supported on the root disk yet"
                    )));
                }
                if let Some(size) = d.get("size")
                    && super::limits::parse_size(size).is_none()
                {
                    return Err(Failure::invalid(format!(
                        "Device {name:?}: invalid value {size:?} for \"size\": expected a size such as 10GiB"
                    )));
                }
            }
            Some("disk") => check_disk(name, d)?,
            Some("unix-char" | "unix-block") => check_unix(name, d)?,
            Some("nic") => super::nic::validate(name, d)?,
            Some("proxy") => super::proxy::validate(name, d)?,
            Some(t) => {
                return Err(Failure::invalid(format!(
                    "Device {name:?}: type {t:?} is not supported yet"
                )));
            }
            None => {
                return Err(Failure::invalid(format!("Device {name:?} has no type")));
            }
        }
    }
    check_disk_paths(devices)
}

/// Refuses two disks of one device set (an instance's own, or a profile's) at one path
/// in the container: one would hide the other, and which one from start to start is
/// chance. As LXD, sets are not checked against each other: profiles merged together may
/// share a path, and what an instance's own devices override is not mounted twice.
pub fn check_disk_paths(devices: &BTreeMap<String, Device>) -> Result<()> {
    let mut seen: BTreeMap<std::path::PathBuf, &str> = BTreeMap::new();
    for (name, d) in devices {
        if d.get("type").map(String::as_str) != Some("disk") {
            continue;
        }
        let Some(path) = d.get("path") else {
            continue;
        };
        // `/mnt/x/`, `/mnt//x` and `/mnt/./x` are one place.
        let place = Path::new(path).components().collect();
        if let Some(other) = seen.insert(place, name) {
            return Err(Failure::invalid(format!(
                "More than one disk device uses the same path {path:?} ({other:?} and {name:?})"
            )));
        }
    }
    Ok(())
}

/// Checks a non-root `disk` device; the error names the device and key.
pub fn check_disk(name: &str, d: &Device) -> Result<()> {
    for (k, v) in d {
        match k.as_str() {
            "type" | "path" | "source" => {}
            "readonly" | "shift" | "required" | "recursive" => {
                if !matches!(v.as_str(), "true" | "false") {
                    return Err(Failure::invalid(format!(
                        "Device {name:?}: invalid value {v:?} for {k:?}: expected true or false"
                    )));
                }
            }
            "propagation" => {
                if !PROPAGATION.contains(&v.as_str()) {
                    return Err(Failure::invalid(format!(
                        "Device {name:?}: invalid value {v:?} for \"propagation\": expected one of {}",
                        PROPAGATION.join(", ")
                    )));
                }
            }
            "pool" => {
                if v.is_empty() {
                    return Err(Failure::invalid(format!(
                        "Device {name:?}: \"pool\" must not be empty"
                    )));
                }
            }
            other => {
                return Err(Failure::invalid(format!(
                    "Device {name:?}: unknown key {other:?}"
                )));
            }
        }
        if v.contains(['\n', '\r', '\0']) {
            return Err(Failure::invalid(format!(
                "Device {name:?}: line breaks are not allowed in {k:?}"
            )));
        }
    }
    let path = d.get("path").map(String::as_str).unwrap_or_default();
    let source = d.get("source").map(String::as_str).unwrap_or_default();
    if d.contains_key("pool") {
        // A custom volume: `source` is its name; it is always bound through the
        // container's map (the volume's `security.unmapped` says otherwise).
        if let Err(e) = super::names::VolumeName::parse(source) {
            return Err(Failure::invalid(format!(
                "Device {name:?}: \"source\" must name a custom volume of the pool: {}",
                e.message()
            )));
        }
        if d.contains_key("shift") {
            return Err(Failure::invalid(format!(
                "Device {name:?}: \"shift\" does not apply to a custom volume (it is always mapped; see its security.unmapped)"
            )));
        }
    } else if !plain(source) && source != "/" {
        return Err(Failure::invalid(format!(
            "Device {name:?}: \"source\" must be an absolute host path, without .."
        )));
    }
    if !plain(path) {
        return Err(Failure::invalid(format!(
            "Device {name:?}: \"path\" must be an absolute path inside the instance, without .."
        )));
    }
    Ok(())
}

/// The device cgroup rules every container gets after `deny a`: creating any node (it
/// cannot be opened unless allowed), the standard /dev nodes, ptys, fuse and tun.
pub const DEFAULT_RULES: [&str; 13] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:229 rwm",
    "c 10:200 rwm",
];

/// Whether `d` is a `unix-char` or `unix-block` device.
pub fn is_unix(d: &Device) -> bool {
    matches!(
        d.get("type").map(String::as_str),
        Some("unix-char" | "unix-block")
    )
}

/// Whether `d` is a disk other than the root disk.
pub fn is_host_disk(d: &Device) -> bool {
    d.get("type").map(String::as_str) == Some("disk")
        && d.get("path").map(String::as_str) != Some("/")
}

/// An absolute path made of plain components only.
fn plain(p: &str) -> bool {
    p.starts_with('/')
        && p != "/"
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// Checks a `unix-char` or `unix-block` device; the error names the device and key.
pub fn check_unix(name: &str, d: &Device) -> Result<()> {
    for (k, v) in d {
        match k.as_str() {
            "type" => {}
            "source" | "path" => {
                if !plain(v) {
                    return Err(Failure::invalid(format!(
                        "Device {name:?}: {k:?} must be an absolute path, without .."
                    )));
                }
            }
            "major" | "minor" | "uid" | "gid" => {
                if v.parse::<u32>().is_err() {
                    return Err(Failure::invalid(format!(
                        "Device {name:?}: invalid value {v:?} for {k:?}: expected a number"
                    )));
                }
            }
            "mode" => {
                if !u32::from_str_radix(v, 8).is_ok_and(|m| m <= 0o7777) {
                    return Err(Failure::invalid(format!(
                        "Device {name:?}: invalid value {v:?} for \"mode\": expected an octal mode such as 0660"
                    )));
                }
            }
            "required" => {
                if !matches!(v.as_str(), "true" | "false") {
                    return Err(Failure::invalid(format!(
                        "Device {name:?}: invalid value {v:?} for {k:?}: expected true or false"
                    )));
                }
            }
            other => {
                return Err(Failure::invalid(format!(
                    "Device {name:?}: unknown key {other:?}"
                )));
            }
        }
        if v.contains(['\n', '\r', '\0']) {
            return Err(Failure::invalid(format!(
                "Device {name:?}: line breaks are not allowed in {k:?}"
            )));
        }
    }
    if !d.contains_key("source") && !d.contains_key("path") {
        return Err(Failure::invalid(format!(
            "Device {name:?}: \"source\" or \"path\" is required"
        )));
    }
    Ok(())
}

/// A device from its keys, for tests.
#[cfg(test)]
pub fn dev(pairs: &[(&str, &str)]) -> Device {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_disks_never_share_a_path() {
        let disk = |path: &str| dev(&[("type", "disk"), ("source", "/srv"), ("path", path)]);
        let two = |a: &str, b: &str| {
            BTreeMap::from([("d1".to_owned(), disk(a)), ("d2".to_owned(), disk(b))])
        };
        assert!(check_disk_paths(&two("/mnt/x", "/mnt/y")).is_ok());
        for (a, b) in [
            ("/mnt/x", "/mnt/x"),
            ("/mnt/x", "/mnt/x/"),
            ("/mnt//x", "/mnt/./x"),
        ] {
            let e = validate(&two(a, b)).unwrap_err();
            assert!(
                e.message().contains("same path") && e.message().contains("\"d2\""),
                "{e}"
            );
        }
        // Other devices' paths are theirs.
        let mut mixed = two("/mnt/x", "/mnt/y");
        mixed.insert(
            "n".to_owned(),
            dev(&[
                ("type", "unix-char"),
                ("path", "/mnt/x"),
                ("source", "/dev/null"),
            ]),
        );
        assert!(check_disk_paths(&mixed).is_ok());
    }

    #[test]
    fn checks_host_disks() {
        let good = dev(&[
            ("type", "disk"),
            ("source", "/srv/my dir"),
            ("path", "/mnt/data"),
            ("readonly", "true"),
            ("shift", "true"),
        ]);
        check_disk("data", &good).unwrap();
        for bad in [
            dev(&[("type", "disk"), ("source", "rel"), ("path", "/x")]),
            dev(&[("type", "disk"), ("source", "/a/../b"), ("path", "/x")]),
            dev(&[("type", "disk"), ("source", "/a"), ("path", "x")]),
            dev(&[
                ("type", "disk"),
                ("source", "/a"),
                ("path", "/x"),
                ("readonly", "yes"),
            ]),
            dev(&[
                ("type", "disk"),
                ("source", "/a"),
                ("path", "/x"),
                ("bogus", "1"),
            ]),
        ] {
            assert!(check_disk("d", &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn checks_unix_devices() {
        let zero = dev(&[
            ("type", "unix-char"),
            ("source", "/dev/zero"),
            ("path", "/dev/z"),
            ("uid", "1000"),
            ("mode", "0640"),
        ]);
        check_unix("z", &zero).unwrap();
        for bad in [
            dev(&[("type", "unix-char")]),
            dev(&[("type", "unix-char"), ("path", "dev/x")]),
            dev(&[("type", "unix-char"), ("path", "/dev/x"), ("mode", "999")]),
            dev(&[("type", "unix-char"), ("path", "/dev/x"), ("major", "-1")]),
            dev(&[("type", "unix-char"), ("path", "/dev/x"), ("color", "red")]),
        ] {
            assert!(check_unix("d", &bad).is_err(), "{bad:?}");
        }
    }
}
