//! Unix devices at start and live: the node berthd makes on the host under
//! `DIR/devices/NAME/` (owned through the container's id map: a user namespace cannot
//! mknod), bound in, and allowed in the device cgroup.

use std::collections::BTreeMap;
use std::path::Path;

use berth_api::instance::Device;

use crate::error::{Failure, Result};
use crate::model::devices::{flag, is_unix};

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
pub fn resolve(name: &str, d: &Device) -> Result<Option<UnixNode>> {
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
                    return Err(Failure::invalid(format!(
                        "Device {name:?}: missing source {source:?}: {e}"
                    )));
                }
            };
            let kind_ok = if char {
                m.file_type().is_char_device()
            } else {
                m.file_type().is_block_device()
            };
            if !kind_ok {
                return Err(Failure::invalid(format!(
                    "Device {name:?}: {source:?} is not a {} device",
                    if char { "character" } else { "block" }
                )));
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
fn make_nodes_dir(nodes: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for d in [nodes.parent(), Some(nodes)].into_iter().flatten() {
        std::fs::create_dir_all(d)
            .and_then(|()| std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)))
            .map_err(|e| Failure::failed(format!("Failed to create {}", d.display()), e))?;
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
) -> Result<std::path::PathBuf> {
    use rustix::fs::{FileType, Mode};
    if let Some((_, _, size)) = ids
        && (node.uid >= size || node.gid >= size)
    {
        return Err(Failure::invalid(format!(
            "Device {name:?}: uid and gid must be below {size}, the size of the instance's id map"
        )));
    }
    make_nodes_dir(nodes)?;
    let path = node_path(nodes, name);
    let _ = std::fs::remove_file(&path);
    let kind = if node.char {
        FileType::CharacterDevice
    } else {
        FileType::BlockDevice
    };
    let fail = |e: rustix::io::Errno| {
        Failure::failed(format!("Failed to create the node of device {name:?}"), e)
    };
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
) -> Result<(Vec<String>, Vec<String>)> {
    let _ = std::fs::remove_dir_all(nodes);
    let mut mounts = Vec::new();
    let mut rules = Vec::new();
    for (name, d) in devices.iter().filter(|(_, d)| is_unix(d)) {
        let Some(node) = resolve(name, d)? else {
            continue;
        };
        let host = make_node(nodes, name, &node, ids)?;
        mounts.push(format!(
            "{} {} none bind,create=file 0 0",
            super::escape(&host.to_string_lossy()),
            super::escape(node.path.trim_start_matches('/'))
        ));
        rules.push(node.rule());
    }
    Ok((mounts, rules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::devices::dev;

    #[test]
    fn resolves_unix_devices() {
        let zero = dev(&[
            ("type", "unix-char"),
            ("source", "/dev/zero"),
            ("path", "/dev/z"),
            ("uid", "1000"),
            ("mode", "0640"),
        ]);
        let node = resolve("z", &zero).unwrap().unwrap();
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
            resolve("b", &numbered).unwrap().unwrap().rule(),
            "b 7:1 rwm"
        );
        let block_from_char = dev(&[("type", "unix-block"), ("source", "/dev/zero")]);
        assert!(
            resolve("x", &block_from_char)
                .unwrap_err()
                .message()
                .contains("block")
        );
        let optional = dev(&[
            ("type", "unix-char"),
            ("source", "/nonexistent/d"),
            ("required", "false"),
        ]);
        assert_eq!(resolve("o", &optional).unwrap(), None);
    }
}
