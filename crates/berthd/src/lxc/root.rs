//! The root and user namespace an unprivileged container starts (or is restored) with.
//!
//! berthd makes the container's user namespace itself, owned by the map's root (host id
//! `uid_base`): the kernel charges the per-user counts of what is made inside (inotify
//! instances and watches) to a namespace's owner, so with a range of its own a container
//! has counts of its own instead of sharing root's. liblxc joins it
//! (`lxc.namespace.share.user`, a `/proc/<berthd>/fd/N` path berthd keeps open until the
//! start returns) and writes no map of its own; because liblxc then leaves the rootfs
//! unmapped, berthd hands it one mapped already: an idmapped bind of the volume through
//! the same namespace, which the container's mount namespace copies at its start and the
//! host's detaches right after. liblxc opens it from inside the namespace, as the
//! container's root, so it is at `LXCPATH/NAME.root/rootfs` (instance names have no
//! dots): `NAME.root` is 0700 and the container root's, which no other host user can
//! pass, where the container's own directory is root's alone. A restore from a saved
//! state uses the same mapped root (CRIU makes its own namespaces).
//!
//! CRIU reads a container's resource limits as root, which the kernel allows in a
//! namespace of another owner only with CAP_SYS_RESOURCE: where berthd lacks it (some
//! VMs' root does), a checkpointable container (`migration.stateful`) keeps the
//! namespace liblxc makes, owned by root, and shares root's counts.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{Failure, Result};
use crate::model::idmap::IdMap;

/// The directory of container `name`'s mapped root, beside its own in `lxcpath`.
fn home(lxcpath: &Path, name: &str) -> PathBuf {
    lxcpath.join(format!("{name}.root"))
}

/// A container's user namespace and mapped root, for the time of a start; dropping it
/// detaches the root (the started container keeps its own copy) and closes the
/// namespace (the container's processes keep it alive).
#[derive(Debug)]
pub struct MappedRoot {
    ns: OwnedFd,
    at: PathBuf,
}

impl MappedRoot {
    /// Makes the namespace of map `m` and mounts `rootfs` through it for container
    /// `name` of `lxcpath`.
    pub fn make(
        rootfs: &Path,
        lxcpath: &Path,
        name: &str,
        m: IdMap,
    ) -> std::io::Result<MappedRoot> {
        use rustix::mount::{MoveMountFlags, OpenTreeFlags};
        use std::os::unix::fs::DirBuilderExt;
        let home = home(lxcpath, name);
        unstage(&home);
        std::fs::DirBuilder::new().mode(0o700).create(&home)?;
        rustix::fs::chown(
            &home,
            Some(rustix::fs::Uid::from_raw(m.uid_base)),
            Some(rustix::fs::Gid::from_raw(m.gid_base)),
        )?;
        let at = home.join("rootfs");
        std::fs::DirBuilder::new().mode(0o700).create(&at)?;
        let root = MappedRoot {
            ns: berth_host::userns_with_map(m.uid_base, m.gid_base, m.size)?,
            at,
        };
        // AT_SYMLINK_NOFOLLOW: a rootfs that is a link (planted by an import or a
        // peer) is not followed to the host's files.
        let tree = rustix::mount::open_tree(
            rustix::fs::CWD,
            rootfs,
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        let attr = berth_host::MountAttr {
            idmap: Some(root.ns.as_fd()),
            propagation: berth_host::MS_PRIVATE,
            ..Default::default()
        };
        berth_host::mount_setattr(tree.as_fd(), &attr)?;
        rustix::mount::move_mount(
            &tree,
            "",
            rustix::fs::CWD,
            &root.at,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )?;
        Ok(root)
    }

    /// The mapped root of an unprivileged container `spec` (`None` for a privileged one)
    /// of `lxcpath`.
    pub async fn of(spec: &super::StartSpec, lxcpath: &Path) -> Result<Option<MappedRoot>> {
        let Some(m) = spec.idmap else {
            return Ok(None);
        };
        let (from, lxcpath, name) = (spec.rootfs.clone(), lxcpath.to_owned(), spec.name.clone());
        let root = tokio::task::spawn_blocking(move || MappedRoot::make(&from, &lxcpath, &name, m))
            .await?
            .map_err(|e| Failure::failed("Failed to prepare the container's root", e))?;
        Ok(Some(root))
    }

    /// The mapped root's path.
    pub fn path(&self) -> &Path {
        &self.at
    }

    /// The path liblxc opens the namespace by, valid while this lives.
    pub fn userns_path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.ns.as_raw_fd())
    }
}

impl Drop for MappedRoot {
    fn drop(&mut self) {
        if let Some(home) = self.at.parent() {
            unstage(home);
        }
    }
}

/// Whether container `spec` starts in a namespace of berthd's making (not for a
/// checkpointable one where berthd lacks CAP_SYS_RESOURCE).
pub fn own_namespace(spec: &super::StartSpec) -> bool {
    spec.idmap.is_some() && (!spec.checkpointable || may_set_limits())
}

/// Whether berthd has CAP_SYS_RESOURCE (bit 24 of its effective set).
fn may_set_limits() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                let hex = s
                    .lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))?
                    .trim()
                    .to_owned();
                u64::from_str_radix(&hex, 16).ok()
            })
            .is_some_and(|caps| caps & (1 << 24) != 0)
    })
}

/// Detaches a mapped root container `name` of `lxcpath` was left with (by a daemon
/// killed during a start).
pub fn sweep(lxcpath: &Path, name: &str) {
    unstage(&home(lxcpath, name));
}

/// Detaches the mapped root in `home` and removes it.
fn unstage(home: &Path) {
    let at = home.join("rootfs");
    let _ = rustix::mount::unmount(&at, rustix::mount::UnmountFlags::DETACH);
    let _ = std::fs::remove_dir(&at);
    let _ = std::fs::remove_dir(home);
}
