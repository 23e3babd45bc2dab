//! The `dir` driver: a pool is a plain directory on the host, a volume a directory in it.
//!
//! The layout is LXD's: `SOURCE/{containers,containers-snapshots,images,custom,
//! custom-snapshots}/NAME`. The pool directories are 0711 so that nobody else can list them
//! (`custom/` is 0700, see [`subdir_mode`]); every volume is 0700 and owned by root, because idmapped containers leave host-uid-0 files
//! (setuid binaries included) on disk that no other host user may reach. No quotas, no
//! cheap snapshots (a snapshot is a full copy made by `cp -a`, reflinked where the
//! filesystem can), nothing to mount: `mount` only checks that the source is there.

mod config;
#[cfg(test)]
mod tests;
mod trees;

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, Permissions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub(crate) use trees::{Copies, Trees};

use crate::{
    Driver, DriverInfo, PoolResources, StorageError, VolumeType, mounts, validate_volume_name,
};

/// The driver name, as in a pool's `driver` field.
pub const NAME: &str = "dir";

/// The driver version reported in `storage_supported_drivers`.
const VERSION: &str = "1";

/// Mode of the pool directory and of the per-type directories: traversable, not listable.
pub(crate) const POOL_DIR_MODE: u32 = 0o711;

/// Mode of every volume directory: root only.
pub(crate) const VOLUME_MODE: u32 = 0o700;

/// The mode of a per-type directory: custom volumes' are root's only. Their files keep
/// the containers' numbering (a set-user-ID file made by a container's root is one of the
/// host's root), and a container may change its volume's own mode: nothing but root may
/// reach them.
pub(crate) fn subdir_mode(sub: &str) -> u32 {
    if sub.starts_with("custom") {
        VOLUME_MODE
    } else {
        POOL_DIR_MODE
    }
}

/// The directories `create` makes inside the source, and the only ones `delete` removes.
pub(crate) const POOL_SUBDIRS: [&str; 5] = [
    "containers",
    "containers-snapshots",
    "images",
    "custom",
    "custom-snapshots",
];

/// What the `dir` driver is and can do.
pub fn info() -> DriverInfo {
    DriverInfo {
        name: NAME,
        version: VERSION.to_owned(),
        remote: false,
        optimized_images: false,
        instant_snapshots: false,
        quotas: false,
        quota_hidden_from_statfs: false,
        optimized_backups: false,
    }
}

/// The registry's constructor.
pub(crate) fn load(
    pool_name: &str,
    config: BTreeMap<String, String>,
    default_source: &Path,
) -> Result<Box<dyn Driver>, StorageError> {
    Ok(Box::new(Dir::new(pool_name, config, default_source)?))
}

/// A `dir` pool.
#[derive(Debug, Clone)]
pub struct Dir {
    pool: String,
    config: BTreeMap<String, String>,
    source: PathBuf,
    default_source: PathBuf,
}

impl Dir {
    /// Validates `config` (see [`crate::load`]) and binds the driver to pool `pool_name`.
    pub fn new(
        pool_name: &str,
        config: BTreeMap<String, String>,
        default_source: &Path,
    ) -> Result<Self, StorageError> {
        let (config, source) = config::validate(config, default_source)?;
        Ok(Dir {
            pool: pool_name.to_owned(),
            config,
            source,
            default_source: default_source.to_owned(),
        })
    }

    /// The pool's directory on the host.
    pub fn source(&self) -> &Path {
        &self.source
    }

    fn create_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
        move |source| StorageError::CreatePool {
            path: path.to_owned(),
            source,
        }
    }

    fn delete_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
        move |source| StorageError::DeletePool {
            path: path.to_owned(),
            source,
        }
    }

    /// Removes `path` if it is an empty directory; an entry inside makes the pool busy.
    fn remove_empty_dir(&self, path: &Path) -> Result<(), StorageError> {
        match fs::remove_dir(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => Err(StorageError::PoolInUse {
                pool: self.pool.clone(),
                entry: first_entry(path)
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| path.to_owned()),
            }),
            Err(source) => Err(Self::delete_err(path)(source)),
        }
    }
}

impl Dir {
    /// Removes the per-type directories `create` made, refusing (and removing nothing)
    /// while any holds an entry.
    pub(crate) fn delete_layout(&self) -> Result<(), StorageError> {
        // Check everything before removing anything, so a refusal leaves the pool whole.
        for sub in POOL_SUBDIRS {
            let path = self.source.join(sub);
            match first_entry(&path) {
                Ok(None) => {}
                Ok(Some(entry)) => {
                    return Err(StorageError::PoolInUse {
                        pool: self.pool.clone(),
                        entry,
                    });
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Self::delete_err(&path)(e)),
            }
        }
        // Only empty directories are removed (rmdir), so no volume data can be lost here.
        for sub in POOL_SUBDIRS {
            self.remove_empty_dir(&self.source.join(sub))?;
        }
        Ok(())
    }

    /// What an interrupted operation left: dot names ending `.restore` or `.tmp`, half-made
    /// copies of a restore or a volume fill.
    pub(crate) fn leftovers(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        // Half-made volumes and the snapshot directories made for them.
        let dirs = VolumeType::ALL
            .into_iter()
            .flat_map(|t| [t.dir_name(), t.snapshots_dir_name()]);
        for dir in dirs {
            let dir = self.source.join(dir);
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && (name.ends_with(".restore") || name.ends_with(".tmp")) {
                    out.push(entry.path());
                }
            }
        }
        out
    }

    /// The directory of volume `name`'s snapshots.
    pub(crate) fn snapshots_of(&self, vtype: VolumeType, name: &str) -> PathBuf {
        self.source.join(vtype.snapshots_dir_name()).join(name)
    }
}

/// Copies directory `from` to the new directory `to` with `cp -a` (owners, modes, links,
/// device nodes, extended attributes); a partial copy is removed.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<(), StorageError> {
    let fail = |detail: String| StorageError::Copy {
        from: from.to_owned(),
        to: to.to_owned(),
        detail,
    };
    let mut cmd = std::process::Command::new("cp");
    berth_host::die_with_parent(&mut cmd);
    let out = cmd
        .arg("-a")
        .arg("--reflink=auto")
        .arg("--no-target-directory")
        .arg(from)
        .arg(to)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| fail(format!("cannot run cp: {e}")))?;
    if out.status.success() {
        return set_mode(to, VOLUME_MODE).map_err(|e| fail(e.to_string()));
    }
    let _ = fs::remove_dir_all(to);
    let err = String::from_utf8_lossy(&out.stderr);
    Err(fail(err.lines().next().unwrap_or("cp failed").to_owned()))
}

impl Driver for Dir {
    fn info(&self) -> DriverInfo {
        info()
    }

    fn config(&self) -> &BTreeMap<String, String> {
        &self.config
    }

    fn create(&self) -> Result<(), StorageError> {
        let source = &self.source;
        match fs::metadata(source) {
            Ok(meta) if !meta.is_dir() => {
                return Err(StorageError::SourceNotDirectory {
                    pool: self.pool.clone(),
                    path: source.clone(),
                });
            }
            Ok(_) => {
                // Pools never share a directory with anything else: delete must be able to
                // tell what is ours.
                if first_entry(source)
                    .map_err(Self::create_err(source))?
                    .is_some()
                {
                    return Err(StorageError::SourceNotEmpty {
                        pool: self.pool.clone(),
                        path: source.clone(),
                    });
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => DirBuilder::new()
                .recursive(true)
                .mode(POOL_DIR_MODE)
                .create(source)
                .map_err(Self::create_err(source))?,
            Err(e) => return Err(Self::create_err(source)(e)),
        }
        set_mode(source, POOL_DIR_MODE).map_err(Self::create_err(source))?;
        for sub in POOL_SUBDIRS {
            let path = source.join(sub);
            DirBuilder::new()
                .mode(subdir_mode(sub))
                .create(&path)
                .and_then(|()| set_mode(&path, subdir_mode(sub)))
                .map_err(Self::create_err(&path))?;
        }
        Ok(())
    }

    fn delete(&self) -> Result<(), StorageError> {
        match fs::symlink_metadata(&self.source) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Self::delete_err(&self.source)(e)),
            Ok(_) => {}
        }
        self.delete_layout()?;
        // A source the user chose stays (empty), as in LXD; ours under berthd's dir goes.
        if self.source == self.default_source {
            self.remove_empty_dir(&self.source)?;
        }
        Ok(())
    }

    fn mount(&self) -> Result<(), StorageError> {
        match fs::metadata(&self.source) {
            Ok(meta) if meta.is_dir() => {
                // Pools made before custom volumes had them traversable.
                for sub in POOL_SUBDIRS {
                    let path = self.source.join(sub);
                    if path.is_dir() {
                        set_mode(&path, subdir_mode(sub))
                            .map_err(|source| StorageError::Mount { path, source })?;
                    }
                }
                Ok(())
            }
            Ok(_) => Err(StorageError::SourceNotDirectory {
                pool: self.pool.clone(),
                path: self.source.clone(),
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(StorageError::SourceMissing {
                pool: self.pool.clone(),
                path: self.source.clone(),
            }),
            Err(source) => Err(StorageError::Mount {
                path: self.source.clone(),
                source,
            }),
        }
    }

    fn unmount(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn resources(&self) -> Result<PoolResources, StorageError> {
        let st = rustix::fs::statvfs(&self.source).map_err(|errno| StorageError::Resources {
            path: self.source.clone(),
            source: errno.into(),
        })?;
        // Block counts are in fragment-size units; some filesystems leave f_frsize zero.
        let block = if st.f_frsize == 0 {
            st.f_bsize
        } else {
            st.f_frsize
        };
        Ok(PoolResources {
            space_used: st.f_blocks.saturating_sub(st.f_bfree).saturating_mul(block),
            space_total: st.f_blocks.saturating_mul(block),
            inodes_used: st.f_files.saturating_sub(st.f_ffree),
            inodes_total: st.f_files,
        })
    }

    fn volume_path(&self, vtype: VolumeType, name: &str) -> PathBuf {
        self.source.join(vtype.dir_name()).join(name)
    }

    fn create_volume(&self, vtype: VolumeType, name: &str) -> Result<PathBuf, StorageError> {
        validate_volume_name(name)?;
        let path = self.volume_path(vtype, name);
        match DirBuilder::new().mode(VOLUME_MODE).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(StorageError::VolumeExists {
                    vtype,
                    name: name.to_owned(),
                });
            }
            Err(source) => return Err(StorageError::CreateVolume { path, source }),
        }
        // mkdir's mode passes through the umask; set it exactly (this also drops a setgid
        // bit inherited from the parent).
        if let Err(source) = set_mode(&path, VOLUME_MODE) {
            // Best effort: the directory is empty and ours; the chmod failure is what matters.
            let _ = fs::remove_dir(&path);
            return Err(StorageError::CreateVolume { path, source });
        }
        Ok(path)
    }

    fn rename_volume(&self, vtype: VolumeType, from: &str, to: &str) -> Result<(), StorageError> {
        validate_volume_name(from)?;
        validate_volume_name(to)?;
        let (src, dst) = (self.volume_path(vtype, from), self.volume_path(vtype, to));
        if fs::symlink_metadata(&src).is_err() {
            return Err(StorageError::VolumeNotFound {
                vtype,
                name: from.to_owned(),
            });
        }
        // Never replaces a volume that exists under `to`.
        match rename_noreplace(&src, &dst) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => Err(StorageError::VolumeExists {
                vtype,
                name: to.to_owned(),
            }),
            Err(e) => Err(StorageError::RenameVolume {
                from: src,
                to: dst,
                source: e.into(),
            }),
        }
    }

    fn delete_volume(&self, vtype: VolumeType, name: &str) -> Result<(), StorageError> {
        validate_volume_name(name)?;
        let path = self.volume_path(vtype, name);
        let delete_err = |source| StorageError::DeleteVolume {
            path: path.clone(),
            source,
        };
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StorageError::VolumeNotFound {
                    vtype,
                    name: name.to_owned(),
                });
            }
            Err(e) => return Err(delete_err(e)),
        };
        if !meta.is_dir() {
            // Not made by create_volume: remove the entry itself, never what it points to.
            return fs::remove_file(&path).map_err(delete_err);
        }
        let canonical = fs::canonicalize(&path).map_err(delete_err)?;
        if let Some(mount) = mounts::first_mount_under(&canonical).map_err(delete_err)? {
            return Err(StorageError::VolumeMounted {
                vtype,
                name: name.to_owned(),
                mount,
            });
        }
        // remove_dir_all does not follow symlinks, so links planted inside stay harmless.
        fs::remove_dir_all(&path).map_err(delete_err)
    }

    fn snapshot_path(&self, vtype: VolumeType, name: &str, snap: &str) -> PathBuf {
        self.snapshots_of(vtype, name).join(snap)
    }

    fn create_snapshot(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<(), StorageError> {
        self.snapshot_with(&Copies, vtype, name, snap)
    }

    fn create_volume_from(
        &self,
        vtype: VolumeType,
        name: &str,
        from: &Path,
    ) -> Result<(), StorageError> {
        self.volume_from_with(&Copies, vtype, name, from)
    }

    fn create_snapshot_from(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
        from: &Path,
    ) -> Result<(), StorageError> {
        self.snapshot_from_with(&Copies, vtype, name, snap, from)
    }

    fn create_empty_snapshot(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<PathBuf, StorageError> {
        self.empty_snapshot_with(&Copies, vtype, name, snap)
    }

    fn delete_snapshot(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<(), StorageError> {
        self.delete_snapshot_with(&Copies, vtype, name, snap)
    }

    fn rename_snapshot(
        &self,
        vtype: VolumeType,
        name: &str,
        from: &str,
        to: &str,
    ) -> Result<(), StorageError> {
        validate_volume_name(name)?;
        validate_volume_name(from)?;
        validate_volume_name(to)?;
        let (src, dst) = (
            self.snapshot_path(vtype, name, from),
            self.snapshot_path(vtype, name, to),
        );
        match rename_noreplace(&src, &dst) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => Err(snapshot_taken(name, to)),
            Err(rustix::io::Errno::NOENT) => Err(no_snapshot(name, from)),
            Err(e) => Err(StorageError::RenameVolume {
                from: src,
                to: dst,
                source: e.into(),
            }),
        }
    }

    fn restore_snapshot(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<(), StorageError> {
        self.restore_with(&Copies, vtype, name, snap)
    }

    fn delete_snapshots(&self, vtype: VolumeType, name: &str) -> Result<(), StorageError> {
        self.delete_snapshots_with(&Copies, vtype, name)
    }

    fn rename_snapshots(
        &self,
        vtype: VolumeType,
        from: &str,
        to: &str,
    ) -> Result<(), StorageError> {
        validate_volume_name(from)?;
        validate_volume_name(to)?;
        let (src, dst) = (self.snapshots_of(vtype, from), self.snapshots_of(vtype, to));
        match fs::rename(&src, &dst) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(StorageError::RenameVolume {
                from: src,
                to: dst,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    fn remove_leftovers(&self) -> Result<(), StorageError> {
        self.remove_leftovers_with(&Copies)
    }

    fn list_volumes(&self, vtype: VolumeType) -> Result<Vec<String>, StorageError> {
        let dir = self.source.join(vtype.dir_name());
        let list_err = |source| StorageError::ListVolumes {
            path: dir.clone(),
            source,
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            if !entry.file_type().map_err(list_err)?.is_dir() {
                continue;
            }
            // Volume names come from the API as UTF-8; anything else is not a berth volume,
            // nor is a dot name (a restore in progress).
            if let Ok(name) = entry.file_name().into_string()
                && !name.starts_with('.')
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

pub(crate) fn no_snapshot(name: &str, snap: &str) -> StorageError {
    StorageError::SnapshotNotFound {
        name: name.to_owned(),
        snap: snap.to_owned(),
    }
}

pub(crate) fn snapshot_taken(name: &str, snap: &str) -> StorageError {
    StorageError::SnapshotExists {
        name: name.to_owned(),
        snap: snap.to_owned(),
    }
}

/// `renameat2(RENAME_NOREPLACE)`: `EEXIST` when `to` exists.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> Result<(), rustix::io::Errno> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )
}

/// Sets the permission bits of `path` exactly.
pub(crate) fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, Permissions::from_mode(mode))
}

/// The first entry of directory `dir`, if it has one.
pub(crate) fn first_entry(dir: &Path) -> io::Result<Option<PathBuf>> {
    fs::read_dir(dir)?
        .next()
        .transpose()
        .map(|entry| entry.map(|e| e.path()))
}
