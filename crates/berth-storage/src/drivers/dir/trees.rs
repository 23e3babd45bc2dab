//! How a driver makes and removes whole trees ([`Trees`]: `dir` copies, `btrfs`
//! subvolumes), and the layout's operations written once over them: snapshots, copies,
//! restores, empty snapshots to fill, deletes and the leftovers sweep.

use std::fs::{self, DirBuilder};
use std::io::{self, ErrorKind};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::{Dir, POOL_DIR_MODE, VOLUME_MODE, copy_tree, no_snapshot, set_mode, snapshot_taken};
use crate::{Driver, StorageError, VolumeType, validate_volume_name};

/// How a driver makes and removes whole volume trees: `dir` copies and deletes
/// directories, `btrfs` snapshots and deletes subvolumes. The layout's operations over
/// them (snapshots, restores, copies) are written once, in [`Dir`].
pub(crate) trait Trees {
    /// Makes `to` (absent) a copy of `from`.
    fn copy(&self, from: &Path, to: &Path) -> Result<(), StorageError>;
    /// Makes `path` (absent) an empty tree, reachable by root only.
    fn make(&self, path: &Path) -> Result<(), StorageError>;
    /// Removes `path` and everything in it.
    fn remove(&self, path: &Path) -> io::Result<()>;
}

/// `dir`'s trees: copies ([`copy_tree`]) and recursive deletes.
pub(crate) struct Copies;

impl Trees for Copies {
    fn copy(&self, from: &Path, to: &Path) -> Result<(), StorageError> {
        copy_tree(from, to)
    }

    fn make(&self, path: &Path) -> Result<(), StorageError> {
        let fail = |source| StorageError::CreateVolume {
            path: path.to_owned(),
            source,
        };
        DirBuilder::new()
            .mode(VOLUME_MODE)
            .create(path)
            .map_err(fail)?;
        set_mode(path, VOLUME_MODE).map_err(fail)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        // remove_dir_all does not follow symlinks: links planted inside stay harmless.
        fs::remove_dir_all(path)
    }
}

/// The layout's operations over a driver's [`Trees`].
impl Dir {
    pub(crate) fn snapshot_with(
        &self,
        t: &dyn Trees,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<(), StorageError> {
        validate_volume_name(name)?;
        let src = self.volume_path(vtype, name);
        if !src.is_dir() {
            return Err(StorageError::VolumeNotFound {
                vtype,
                name: name.to_owned(),
            });
        }
        self.snapshot_from_with(t, vtype, name, snap, &src)
    }

    pub(crate) fn volume_from_with(
        &self,
        t: &dyn Trees,
        vtype: VolumeType,
        name: &str,
        from: &Path,
    ) -> Result<(), StorageError> {
        validate_volume_name(name)?;
        let dst = self.volume_path(vtype, name);
        if fs::symlink_metadata(&dst).is_ok() {
            return Err(StorageError::VolumeExists {
                vtype,
                name: name.to_owned(),
            });
        }
        t.copy(from, &dst)
    }

    pub(crate) fn snapshot_from_with(
        &self,
        t: &dyn Trees,
        vtype: VolumeType,
        name: &str,
        snap: &str,
        from: &Path,
    ) -> Result<(), StorageError> {
        let dst = self.new_snapshot_path(vtype, name, snap)?;
        t.copy(from, &dst)
    }

    /// Where a new snapshot `snap` of volume `name` goes, its volume's snapshot
    /// directory made; [`StorageError`] when the names are bad or the snapshot exists.
    fn new_snapshot_path(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<PathBuf, StorageError> {
        validate_volume_name(name)?;
        validate_volume_name(snap)?;
        let parent = self.snapshots_of(vtype, name);
        DirBuilder::new()
            .recursive(true)
            .mode(POOL_DIR_MODE)
            .create(&parent)
            .map_err(|source| StorageError::CreateVolume {
                path: parent.clone(),
                source,
            })?;
        let dst = parent.join(snap);
        if fs::symlink_metadata(&dst).is_ok() {
            return Err(snapshot_taken(name, snap));
        }
        Ok(dst)
    }

    pub(crate) fn empty_snapshot_with(
        &self,
        t: &dyn Trees,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<PathBuf, StorageError> {
        let dst = self.new_snapshot_path(vtype, name, snap)?;
        t.make(&dst)?;
        Ok(dst)
    }

    pub(crate) fn delete_snapshot_with(
        &self,
        t: &dyn Trees,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<(), StorageError> {
        validate_volume_name(name)?;
        validate_volume_name(snap)?;
        let path = self.snapshot_path(vtype, name, snap);
        match fs::symlink_metadata(&path) {
            Ok(_) => t
                .remove(&path)
                .map_err(|source| StorageError::DeleteVolume { path, source }),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(no_snapshot(name, snap)),
            Err(source) => Err(StorageError::DeleteVolume { path, source }),
        }
    }

    pub(crate) fn restore_with(
        &self,
        t: &dyn Trees,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<(), StorageError> {
        validate_volume_name(name)?;
        validate_volume_name(snap)?;
        let snap_path = self.snapshot_path(vtype, name, snap);
        if !snap_path.is_dir() {
            return Err(no_snapshot(name, snap));
        }
        let vol = self.volume_path(vtype, name);
        // The copy is made beside the volume (dot names are never volumes), then swapped in
        // with one exchange, so the volume is whole at every moment.
        let dir = self.source.join(vtype.dir_name());
        let fresh = dir.join(format!(".{name}.restore"));
        if fs::symlink_metadata(&fresh).is_ok() {
            let _ = t.remove(&fresh);
        }
        t.copy(&snap_path, &fresh)?;
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &fresh,
            rustix::fs::CWD,
            &vol,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| {
            let _ = t.remove(&fresh);
            StorageError::RenameVolume {
                from: fresh.clone(),
                to: vol.clone(),
                source: e.into(),
            }
        })?;
        // `fresh` now holds the old content; the restore is done whether or not it can
        // be removed now (a leftover dot directory is removed by the next restore or
        // `remove_leftovers`).
        let _ = t.remove(&fresh);
        Ok(())
    }

    /// Deletes every snapshot of volume `name`.
    pub(crate) fn delete_snapshots_with(
        &self,
        t: &dyn Trees,
        vtype: VolumeType,
        name: &str,
    ) -> Result<(), StorageError> {
        validate_volume_name(name)?;
        let parent = self.snapshots_of(vtype, name);
        for entry in fs::read_dir(&parent).into_iter().flatten().flatten() {
            let path = entry.path();
            t.remove(&path)
                .map_err(|source| StorageError::DeleteVolume { path, source })?;
        }
        match fs::remove_dir(&parent) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(StorageError::DeleteVolume {
                path: parent,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Removes what an interrupted operation left ([`Dir::leftovers`]).
    /// One that cannot go does not keep the others: the first failure is returned once
    /// all were tried.
    pub(crate) fn remove_leftovers_with(&self, t: &dyn Trees) -> Result<(), StorageError> {
        let mut first = None;
        for path in self.leftovers() {
            let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            let removed = if is_dir {
                t.remove(&path)
            } else {
                // A half-written file (a volume's description).
                fs::remove_file(&path)
            };
            if let Err(source) = removed {
                first.get_or_insert(StorageError::DeleteVolume { path, source });
            }
        }
        first.map_or(Ok(()), Err)
    }
}
