//! Project rules: which configuration keys a project takes, what `restricted=true`
//! forbids its instances, and how `limits.*` sum over them.
//!
//! `limits.*` cap the sums over a project's instances (each instance must then set the
//! limited key, as LXD requires), and `restricted=true` turns on the `restricted.*` keys,
//! whose defaults block privileged containers, nesting, low-level keys (`raw.*`) and
//! host-path disks and unix devices. A refusal is a 403 naming the restriction, a limit a
//! 400 naming it. The only I/O here: a restricted host-path disk's source is resolved, so
//! that no symlink can lead the mount elsewhere than the path checked.

use std::collections::BTreeMap;

use berth_api::instance::Device;

use super::limits::Host;
use super::records::ProjectRecord;
use crate::error::{Failure, Result};

/// An instance as project limits see it: host-wide name, expanded config and devices.
pub type Candidate = (String, BTreeMap<String, String>, BTreeMap<String, Device>);

pub const FEATURES: [&str; 6] = [
    "features.images",
    "features.networks",
    "features.networks.zones",
    "features.profiles",
    "features.storage.buckets",
    "features.storage.volumes",
];

/// The limits that sum over instances, and the instance key each sums.
pub const SUMMED: [(&str, &str); 4] = [
    ("limits.cpu", "limits.cpu"),
    ("limits.memory", "limits.memory"),
    ("limits.processes", "limits.processes"),
    ("limits.disk", "size"),
];

/// `restricted.*` keys, their allowed values and their default under `restricted=true`.
pub const RESTRICTIONS: [(&str, &[&str], &str); 18] = [
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

/// Checks one project config key and value; the error names both.
pub fn check_key(key: &str, value: &str) -> Result<()> {
    let bad = |why: &str| Failure::invalid(format!("Invalid value {value:?} for {key:?}: {why}"));
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
        "limits.memory" | "limits.disk" => super::limits::parse_size(value)
            .map(drop)
            .ok_or_else(|| bad("expected a size such as 2GiB")),
        "restricted.devices.disk.paths" | "restricted.idmap.uid" | "restricted.idmap.gid" => Ok(()),
        k if k.starts_with("user.") => Ok(()),
        _ => Err(Failure::invalid(format!(
            "Unknown project configuration key {key:?}"
        ))),
    }
}

pub fn check_config(config: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in config {
        check_key(k, v)?;
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

fn forbidden(project: &ProjectRecord, what: &str, key: &str) -> Failure {
    Failure::forbidden(format!(
        "{what} is forbidden in project {:?} ({key}={})",
        project.name,
        restriction(project, key)
    ))
}

/// Refuses (403) an instance configuration that project `p`'s restrictions forbid.
pub fn check_restrictions(
    p: &ProjectRecord,
    config: &BTreeMap<String, String>,
    devices: &BTreeMap<String, Device>,
) -> Result<()> {
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
            "proxy" if restriction(p, "restricted.devices.proxy") != "allow" => {
                return Err(forbidden(
                    p,
                    &format!("Proxy device {name:?}"),
                    "restricted.devices.proxy",
                ));
            }
            "nic" => {
                // `managed`: only nics on a managed network; what reaches the host (a
                // host bridge, a host name) needs `allow`.
                let mode = restriction(p, "restricted.devices.nic");
                let host_side = d.contains_key("parent") || d.contains_key("host_name");
                let allowed = match mode {
                    "allow" => true,
                    "managed" => d.contains_key("network") && !host_side,
                    _ => false,
                };
                if !allowed {
                    return Err(forbidden(
                        p,
                        &format!("Nic device {name:?} (parent or host_name)"),
                        "restricted.devices.nic",
                    ));
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
pub fn usage(
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
                None => super::limits::parse_size(v),
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
            .and_then(|s| super::limits::parse_size(s)),
        _ => None,
    }
}

/// Refuses (400) when the project's instances, with `candidate` (host-wide name, config,
/// devices) added or replacing its old self, would exceed a limit of `p`.
pub fn check_limits(
    p: &ProjectRecord,
    others: &[Candidate],
    candidate: Option<&Candidate>,
    host: Host,
) -> Result<()> {
    let all: Vec<&Candidate> = others
        .iter()
        .filter(|(n, _, _)| candidate.is_none_or(|c| &c.0 != n))
        .chain(candidate)
        .collect();
    for key in ["limits.instances", "limits.containers"] {
        if let Some(max) = p.config.get(key).and_then(|v| v.parse::<usize>().ok())
            && all.len() > max
        {
            return Err(Failure::invalid(format!(
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
            super::limits::parse_size(max)
        }
        .unwrap_or(0);
        let mut total = 0u64;
        for (name, config, devices) in &all {
            let Some(n) = usage(limit, config, devices, host) else {
                return Err(Failure::invalid(format!(
                    "Instance {:?} must set {instance_key:?}: project {:?} limits {limit}",
                    super::names::api_name(name),
                    p.name
                )));
            };
            total = total.saturating_add(n);
        }
        if total > max {
            return Err(Failure::invalid(format!(
                "Project {:?} would use {total} of {limit}={} (over its limit)",
                p.name, p.config[limit]
            )));
        }
    }
    Ok(())
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
        assert_eq!(e.kind(), crate::error::Kind::Forbidden);
        assert!(
            e.message().contains("restricted.containers.privilege"),
            "{}",
            e.message()
        );
        let e = check_restrictions(&p, &map(&[("raw.lxc", "lxc.x = 1")]), &no_devices).unwrap_err();
        assert!(e.message().contains("restricted.containers.lowlevel"));
        let mut devices = BTreeMap::new();
        devices.insert(
            "d".to_owned(),
            map(&[("type", "disk"), ("source", "/srv"), ("path", "/x")]),
        );
        let e = check_restrictions(&p, &none, &devices).unwrap_err();
        assert!(e.message().contains("restricted.devices.disk"));
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
        assert!(e.message().contains("limits.cpu"), "{}", e.message());
        let unset = ("c".to_owned(), BTreeMap::new(), BTreeMap::new());
        let e = check_limits(&p, &[], Some(&unset), host).unwrap_err();
        assert!(e.message().contains("must set"), "{}", e.message());
        let three = ("d".to_owned(), map(&[("limits.cpu", "0")]), BTreeMap::new());
        let e = check_limits(&p, &[one.clone(), three], Some(&unset), host).unwrap_err();
        assert!(e.message().contains("limits.instances"), "{}", e.message());
        assert!(check_key("limits.memory", "2GiB").is_ok());
        assert!(check_key("limits.memory", "lots").is_err());
        assert!(check_key("restricted.devices.disk", "maybe").is_err());
        assert!(check_key("bogus", "1").is_err());
    }
}
