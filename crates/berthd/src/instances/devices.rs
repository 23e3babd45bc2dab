//! Devices beyond the root disk.
//!
//! - `disk` binds a host path into the container. Keys: `source` (absolute host path),
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
//! [`super::hotplug`] adds and removes them live.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use berth_api::instance::Device;

const PROPAGATION: [&str; 6] = [
    "private", "shared", "slave", "rprivate", "rshared", "rslave",
];

fn flag(d: &Device, key: &str, default: bool) -> bool {
    d.get(key).map_or(default, |v| v == "true")
}

/// Checks a non-root `disk` device; the error names the device and key.
pub fn check_disk(name: &str, d: &Device) -> Result<(), String> {
    for (k, v) in d {
        match k.as_str() {
            "type" | "path" | "source" => {}
            "readonly" | "shift" | "required" | "recursive" => {
                if !matches!(v.as_str(), "true" | "false") {
                    return Err(format!(
                        "Device {name:?}: invalid value {v:?} for {k:?}: expected true or false"
                    ));
                }
            }
            "propagation" => {
                if !PROPAGATION.contains(&v.as_str()) {
                    return Err(format!(
                        "Device {name:?}: invalid value {v:?} for \"propagation\": expected one of {}",
                        PROPAGATION.join(", ")
                    ));
                }
            }
            "pool" => {
                return Err(format!(
                    "Device {name:?}: custom storage volumes are not supported yet"
                ));
            }
            other => {
                return Err(format!("Device {name:?}: unknown key {other:?}"));
            }
        }
        if v.contains(['\n', '\r', '\0']) {
            return Err(format!(
                "Device {name:?}: line breaks are not allowed in {k:?}"
            ));
        }
    }
    let path = d.get("path").map(String::as_str).unwrap_or_default();
    let source = d.get("source").map(String::as_str).unwrap_or_default();
    if !plain(path) {
        return Err(format!(
            "Device {name:?}: \"path\" must be an absolute path inside the instance, without .."
        ));
    }
    if !plain(source) && source != "/" {
        return Err(format!(
            "Device {name:?}: \"source\" must be an absolute host path, without .."
        ));
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
pub fn check_unix(name: &str, d: &Device) -> Result<(), String> {
    for (k, v) in d {
        match k.as_str() {
            "type" => {}
            "source" | "path" => {
                if !plain(v) {
                    return Err(format!(
                        "Device {name:?}: {k:?} must be an absolute path, without .."
                    ));
                }
            }
            "major" | "minor" | "uid" | "gid" => {
                if v.parse::<u32>().is_err() {
                    return Err(format!(
                        "Device {name:?}: invalid value {v:?} for {k:?}: expected a number"
                    ));
                }
            }
            "mode" => {
                if !u32::from_str_radix(v, 8).is_ok_and(|m| m <= 0o7777) {
                    return Err(format!(
                        "Device {name:?}: invalid value {v:?} for \"mode\": expected an octal mode such as 0660"
                    ));
                }
            }
            "required" => {
                if !matches!(v.as_str(), "true" | "false") {
                    return Err(format!(
                        "Device {name:?}: invalid value {v:?} for {k:?}: expected true or false"
                    ));
                }
            }
            other => return Err(format!("Device {name:?}: unknown key {other:?}")),
        }
        if v.contains(['\n', '\r', '\0']) {
            return Err(format!(
                "Device {name:?}: line breaks are not allowed in {k:?}"
            ));
        }
    }
    if !d.contains_key("source") && !d.contains_key("path") {
        return Err(format!(
            "Device {name:?}: \"source\" or \"path\" is required"
        ));
    }
    Ok(())
}

/// A unix device resolved against the host: what node to make and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixNode {
    pub char: bool,
    pub major: u32,
    pub minor: u32,
    /// Owner and mode in the container's numbering.
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// Where, inside the container.
    pub path: String,
}

impl UnixNode {
    /// Its device cgroup rule.
    pub fn rule(&self) -> String {
        format!(
            "{} {}:{} rwm",
            if self.char { 'c' } else { 'b' },
            self.major,
            self.minor
        )
    }
}

/// Resolves a unix device: the numbers from `major`/`minor` or the host node at `source`
/// (else `path`). `None`: the host node is missing and the device is not required.
pub fn resolve_unix(name: &str, d: &Device) -> Result<Option<UnixNode>, String> {
    let char = d.get("type").map(String::as_str) == Some("unix-char");
    let source = d
        .get("source")
        .or_else(|| d.get("path"))
        .cloned()
        .unwrap_or_default();
    let path = d
        .get("path")
        .or_else(|| d.get("source"))
        .cloned()
        .unwrap_or_default();
    let num = |k: &str| d.get(k).and_then(|v| v.parse::<u32>().ok());
    let (major, minor) = match (num("major"), num("minor")) {
        (Some(major), Some(minor)) => (major, minor),
        (given_major, given_minor) => {
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            let m = match std::fs::metadata(&source) {
                Ok(m) => m,
                Err(_) if !flag(d, "required", true) => return Ok(None),
                Err(e) => {
                    return Err(format!("Device {name:?}: missing source {source:?}: {e}"));
                }
            };
            let kind_ok = if char {
                m.file_type().is_char_device()
            } else {
                m.file_type().is_block_device()
            };
            if !kind_ok {
                return Err(format!(
                    "Device {name:?}: {source:?} is not a {} device",
                    if char { "character" } else { "block" }
                ));
            }
            let rdev = m.rdev();
            (
                given_major.unwrap_or(rustix::fs::major(rdev)),
                given_minor.unwrap_or(rustix::fs::minor(rdev)),
            )
        }
    };
    Ok(Some(UnixNode {
        char,
        major,
        minor,
        uid: num("uid").unwrap_or(0),
        gid: num("gid").unwrap_or(0),
        mode: d
            .get("mode")
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o660),
        path,
    }))
}

/// The host node of device `name` in a container's node directory `nodes`.
pub fn node_path(nodes: &Path, name: &str) -> std::path::PathBuf {
    nodes.join(format!("unix.{name}"))
}

/// Creates a node directory (and its parent) searchable by a container's root.
fn make_nodes_dir(nodes: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    for d in [nodes.parent(), Some(nodes)].into_iter().flatten() {
        std::fs::create_dir_all(d)
            .and_then(|()| std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)))
            .map_err(|e| format!("Failed to create {}: {e}", d.display()))?;
    }
    Ok(())
}

/// A container's id map as device nodes need it: uid base, gid base, size.
pub type Ids = (u32, u32, u32);

/// Makes device `name`'s node on the host, owned by the host ids its owner maps to.
/// `ids`: the container's map, `None` for a privileged container; an owner outside the
/// map is refused (it would be another container's or a host user's id).
pub fn make_node(
    nodes: &Path,
    name: &str,
    node: &UnixNode,
    ids: Option<Ids>,
) -> Result<std::path::PathBuf, String> {
    use rustix::fs::{FileType, Mode};
    if let Some((_, _, size)) = ids
        && (node.uid >= size || node.gid >= size)
    {
        return Err(format!(
            "Device {name:?}: uid and gid must be below {size}, the size of the instance's id map"
        ));
    }
    make_nodes_dir(nodes)?;
    let path = node_path(nodes, name);
    let _ = std::fs::remove_file(&path);
    let kind = if node.char {
        FileType::CharacterDevice
    } else {
        FileType::BlockDevice
    };
    let fail = |e: rustix::io::Errno| format!("Failed to create the node of device {name:?}: {e}");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &path,
        kind,
        Mode::from_raw_mode(0o600),
        rustix::fs::makedev(node.major, node.minor),
    )
    .map_err(fail)?;
    let (uid, gid) = ids.map_or((node.uid, node.gid), |(u, g, _)| {
        (u.saturating_add(node.uid), g.saturating_add(node.gid))
    });
    rustix::fs::chown(
        &path,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .and_then(|()| rustix::fs::chmod(&path, Mode::from_raw_mode(node.mode)))
    .map_err(fail)?;
    Ok(path)
}

/// What starting a container needs for its unix devices: the nodes are made afresh (old
/// ones removed), and the mount entries and cgroup rules returned.
pub fn unix_at_start(
    nodes: &Path,
    devices: &BTreeMap<String, Device>,
    ids: Option<Ids>,
) -> Result<(Vec<String>, Vec<String>), String> {
    let _ = std::fs::remove_dir_all(nodes);
    let mut mounts = Vec::new();
    let mut rules = Vec::new();
    for (name, d) in devices.iter().filter(|(_, d)| is_unix(d)) {
        let Some(node) = resolve_unix(name, d)? else {
            continue;
        };
        let host = make_node(nodes, name, &node, ids)?;
        mounts.push(format!(
            "{} {} none bind,create=file 0 0",
            escape(&host.to_string_lossy()),
            escape(node.path.trim_start_matches('/'))
        ));
        rules.push(node.rule());
    }
    Ok((mounts, rules))
}

/// fstab escapes for a path in a mount entry.
fn escape(p: &str) -> String {
    p.replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
}

/// The mount entries of the expanded devices' host-path disks. `userns`: the container has
/// a user namespace (shift then makes an idmapped mount). A missing required source is an
/// error naming the device.
pub fn disk_mounts(
    devices: &BTreeMap<String, Device>,
    userns: bool,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (name, d) in devices.iter().filter(|(_, d)| is_host_disk(d)) {
        let (Some(source), Some(path)) = (d.get("source"), d.get("path")) else {
            continue;
        };
        let required = flag(d, "required", true);
        let kind = match std::fs::metadata(source) {
            Ok(m) if m.is_dir() => "dir",
            Ok(_) => "file",
            Err(_) if !required => continue,
            Err(e) => {
                return Err(format!("Device {name:?}: missing source {source:?}: {e}"));
            }
        };
        // The entry names the source with its symlinks resolved now, so one swapped in
        // later (say by a container writing to a directory another disk exposes) is not
        // followed at mount time.
        let source = std::fs::canonicalize(source)
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|e| format!("Device {name:?}: cannot resolve source {source:?}: {e}"))?;
        let source = &source;
        let mut opts = vec![
            if flag(d, "recursive", false) {
                "rbind"
            } else {
                "bind"
            }
            .to_owned(),
            format!("create={kind}"),
        ];
        if flag(d, "readonly", false) {
            opts.push("ro".to_owned());
        }
        if userns && flag(d, "shift", false) {
            opts.push("idmap=container".to_owned());
        }
        if let Some(p) = d.get("propagation") {
            opts.push(p.clone());
        }
        if !required {
            opts.push("optional".to_owned());
        }
        out.push(format!(
            "{} {} none {} 0 0",
            escape(source),
            escape(path.trim_start_matches('/')),
            opts.join(",")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(pairs: &[(&str, &str)]) -> Device {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn checks_and_renders_host_disks() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("my dir");
        std::fs::create_dir(&src).unwrap();
        let good = dev(&[
            ("type", "disk"),
            ("source", src.to_str().unwrap()),
            ("path", "/mnt/data"),
            ("readonly", "true"),
            ("shift", "true"),
        ]);
        check_disk("data", &good).unwrap();
        let mut all = BTreeMap::new();
        all.insert("data".to_owned(), good.clone());
        let m = disk_mounts(&all, true).unwrap();
        assert_eq!(m.len(), 1);
        assert!(
            m[0].contains("my\\040dir mnt/data none bind,create=dir,ro,idmap=container"),
            "{}",
            m[0]
        );
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
        let mut missing = BTreeMap::new();
        missing.insert(
            "gone".to_owned(),
            dev(&[
                ("type", "disk"),
                ("source", "/nonexistent/x"),
                ("path", "/x"),
            ]),
        );
        assert!(disk_mounts(&missing, true).unwrap_err().contains("gone"));
        missing
            .get_mut("gone")
            .unwrap()
            .insert("required".into(), "false".into());
        assert!(disk_mounts(&missing, true).unwrap().is_empty());
    }

    #[test]
    fn checks_and_resolves_unix_devices() {
        let zero = dev(&[
            ("type", "unix-char"),
            ("source", "/dev/zero"),
            ("path", "/dev/z"),
            ("uid", "1000"),
            ("mode", "0640"),
        ]);
        check_unix("z", &zero).unwrap();
        let node = resolve_unix("z", &zero).unwrap().unwrap();
        assert_eq!(
            (node.major, node.minor, node.uid, node.gid),
            (1, 5, 1000, 0)
        );
        assert_eq!((node.mode, node.rule().as_str()), (0o640, "c 1:5 rwm"));
        let numbered = dev(&[
            ("type", "unix-block"),
            ("path", "/dev/b"),
            ("major", "7"),
            ("minor", "1"),
        ]);
        assert_eq!(
            resolve_unix("b", &numbered).unwrap().unwrap().rule(),
            "b 7:1 rwm"
        );
        let block_from_char = dev(&[("type", "unix-block"), ("source", "/dev/zero")]);
        assert!(
            resolve_unix("x", &block_from_char)
                .unwrap_err()
                .contains("block")
        );
        let optional = dev(&[
            ("type", "unix-char"),
            ("source", "/nonexistent/d"),
            ("required", "false"),
        ]);
        assert_eq!(resolve_unix("o", &optional).unwrap(), None);
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
