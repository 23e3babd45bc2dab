//! The `btrfs` driver: a pool is a btrfs filesystem, laid out as a `dir` pool is
//! (`{containers,containers-snapshots,images,custom,custom-snapshots}/NAME`), and every
//! volume and snapshot is a subvolume: a snapshot, a restore and a copy within the pool are
//! subvolume snapshots, instant whatever the volume's size.
//!
//! The filesystem is, by `source`:
//! - unset: a loop file berthd makes, `DIR/disks/POOL.img` (`size`, default a fifth of the
//!   free space, 5 GiB to 30 GiB, as LXD), recorded as the pool's `source`;
//! - a block device (`/dev/…`), formatted at create (one holding a filesystem is refused);
//! - a directory on a mounted btrfs, used in place.
//!
//! A loop file or device is mounted on the pool's directory (`DIR/storage-pools/POOL`) by
//! `create` and again by `mount` at each start; `unmount` releases it (the loop device
//! goes with it). A loop file grows, live, when its `size` is raised; it never shrinks. Volumes made by copying from elsewhere are subvolumes too (made empty,
//! then filled by `cp -a --reflink=auto`). Images are optimized: the pool service keeps
//! one unpacked copy of each image (its spare volume) and makes each instance a snapshot
//! of it. Quotas are btrfs's qgroups (turned on at the first size asked for): a volume's
//! limit caps what its subvolume references.

mod config;
mod send_check;
mod streams;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::dir::{Dir, POOL_DIR_MODE, Trees, VOLUME_MODE, set_mode};
use crate::{
    Driver, DriverInfo, PoolResources, Receiver, Sender, StorageError, VolumeType,
    validate_volume_name,
};

pub use config::Backing;

/// The driver name, as in a pool's `driver` field.
pub const NAME: &str = "btrfs";

/// The inode number of a subvolume's root on btrfs.
const SUBVOLUME_INODE: u64 = 256;

/// btrfs's `statfs` magic number.
const BTRFS_MAGIC: i64 = 0x9123_683e;

/// What the `btrfs` driver is and can do.
pub fn info() -> DriverInfo {
    DriverInfo {
        name: NAME,
        version: btrfs_version().unwrap_or_else(|| "unknown".to_owned()),
        remote: false,
        optimized_images: true,
        instant_snapshots: true,
        quotas: true,
        quota_hidden_from_statfs: true,
        optimized_backups: true,
    }
}

/// `btrfs --version`'s number (`6.2`), when btrfs-progs is installed; asked once.
fn btrfs_version() -> Option<String> {
    static VERSION: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    VERSION
        .get_or_init(|| {
            let out = Command::new("btrfs").arg("--version").output().ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            text.split_whitespace()
                .find(|w| w.starts_with('v'))
                .map(|v| v.trim_start_matches('v').to_owned())
        })
        .clone()
}

/// The registry's constructor.
pub(crate) fn load(
    pool_name: &str,
    config: BTreeMap<String, String>,
    default_source: &Path,
) -> Result<Box<dyn Driver>, StorageError> {
    Ok(Box::new(Btrfs::new(pool_name, config, default_source)?))
}

/// A `btrfs` pool.
#[derive(Debug)]
pub struct Btrfs {
    pool: String,
    config: BTreeMap<String, String>,
    backing: Backing,
    /// Where the filesystem's pool directory is: the mount point of a loop file or device,
    /// or the directory given.
    root: PathBuf,
    /// The layout and what a subvolume does not change, over `root`.
    dir: Dir,
}

impl Btrfs {
    /// Validates `config` and binds the driver to pool `pool_name`; the host is not
    /// touched (a loop file's default size reads the free space of its directory).
    pub fn new(
        pool_name: &str,
        config: BTreeMap<String, String>,
        default_source: &Path,
    ) -> Result<Self, StorageError> {
        let (config, backing) = config::validate(pool_name, config, default_source)?;
        let root = match &backing {
            Backing::Directory(path) => path.clone(),
            Backing::LoopFile { .. } | Backing::Device(_) => default_source.to_owned(),
        };
        let layout = BTreeMap::from([("source".to_owned(), root.display().to_string())]);
        // The pool's own directory as `dir`'s default source: a directory the user gave
        // is emptied but kept when the pool goes, as for `dir`.
        let dir = Dir::new(pool_name, layout, default_source)?;
        Ok(Btrfs {
            pool: pool_name.to_owned(),
            config,
            backing,
            root,
            dir,
        })
    }

    /// Whether the pool's filesystem is mounted on its directory.
    fn mounted(&self) -> bool {
        on_btrfs(&self.root)
            && !matches!(self.backing, Backing::Directory(_))
            && is_mount_point(&self.root)
    }

    /// Mounts the loop file or device on the pool's directory (made 0711 if missing).
    fn attach(&self) -> Result<(), StorageError> {
        let (what, loop_file) = match &self.backing {
            Backing::Directory(_) => return Ok(()),
            Backing::LoopFile { path, .. } => (path, true),
            Backing::Device(path) => (path, false),
        };
        if self.mounted() {
            return Ok(());
        }
        if fs::metadata(what).is_err() {
            return Err(StorageError::SourceMissing {
                pool: self.pool.clone(),
                path: what.clone(),
            });
        }
        DirBuilder::new()
            .recursive(true)
            .mode(POOL_DIR_MODE)
            .create(&self.root)
            .map_err(|source| StorageError::Mount {
                path: self.root.clone(),
                source,
            })?;
        let options = if loop_file { "loop,discard" } else { "discard" };
        let root = self.root.display().to_string();
        run_tool(
            "mount",
            &[
                "-t",
                "btrfs",
                "-o",
                options,
                &what.display().to_string(),
                &root,
            ],
        )
        .map_err(|detail| mount_error(&self.root, detail))
    }

    /// Grows loop file `path` to `size` bytes and the mounted filesystem with it; a
    /// smaller size is refused (btrfs could shrink, the data past the end could not stay).
    fn grow(&self, path: &Path, size: u64) -> Result<(), StorageError> {
        let io = |e: std::io::Error| mount_error(path, e.to_string());
        let file = fs::OpenOptions::new().write(true).open(path).map_err(io)?;
        let current = file.metadata().map_err(io)?.len();
        if size < current {
            return Err(StorageError::InvalidValue {
                key: "size".to_owned(),
                value: self.config.get("size").cloned().unwrap_or_default(),
                reason: "Must not be smaller than the pool's loop file (it cannot shrink)",
            });
        }
        // An equal size still goes on: a grow that failed half-way is finished.
        if size > current {
            file.set_len(size).map_err(io)?;
        }
        drop(file);
        if !self.mounted() {
            return Ok(());
        }
        // The loop device reads its file's new length, then btrfs takes the space.
        let shown = path.display().to_string();
        let devices = tool_output(
            "losetup",
            &["--noheadings", "--output", "NAME", "--associated", &shown],
        )
        .map_err(|d| mount_error(path, d))?;
        for device in devices.lines().map(str::trim).filter(|l| !l.is_empty()) {
            run_tool("losetup", &["--set-capacity", device]).map_err(|d| mount_error(path, d))?;
        }
        run_tool(
            "btrfs",
            &[
                "filesystem",
                "resize",
                "max",
                &self.root.display().to_string(),
            ],
        )
        .map_err(|d| mount_error(&self.root, d))
    }

    /// Makes a subvolume at `path`, reachable by root only.
    fn new_subvolume(path: &Path) -> Result<(), StorageError> {
        run_tool(
            "btrfs",
            &["subvolume", "create", &path.display().to_string()],
        )
        .map_err(|detail| StorageError::CreateVolume {
            path: path.to_owned(),
            source: std::io::Error::other(detail),
        })?;
        set_mode(path, VOLUME_MODE).map_err(|source| StorageError::CreateVolume {
            path: path.to_owned(),
            source,
        })
    }

    /// Makes `to` (absent) a copy of `from`: a writable snapshot when `from` is a
    /// subvolume of this filesystem, else a new subvolume filled by a copy.
    fn clone_into(from: &Path, to: &Path) -> Result<(), StorageError> {
        let (f, t) = (from.display().to_string(), to.display().to_string());
        // A snapshot leaves out the subvolumes nested inside (systemd's /var/lib/machines,
        // a container's own): such a volume is copied whole instead.
        if is_subvolume(from)
            && !has_nested(from)
            && run_tool("btrfs", &["subvolume", "snapshot", &f, &t]).is_ok()
        {
            // The kernel gives a snapshot the limit of the subvolume it was taken of: a
            // clone starts with none (its user's size, if any, is set on it after). Without
            // quotas on the filesystem there is nothing to lift.
            let _ = limit_qgroup(to, "none");
            return set_mode(to, VOLUME_MODE).map_err(|e| StorageError::Copy {
                from: from.to_owned(),
                to: to.to_owned(),
                detail: e.to_string(),
            });
        }
        Self::new_subvolume(to)?;
        let mut cmd = Command::new("cp");
        berth_host::die_with_parent(&mut cmd);
        let out = cmd
            .args(["-a", "--reflink=auto", "--no-target-directory"])
            .arg(from)
            .arg(to)
            .stdin(Stdio::null())
            .output();
        let failed = match out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(first_line(&o.stderr, "cp failed")),
            Err(e) => Some(format!("cannot run cp: {e}")),
        };
        match failed {
            None => set_mode(to, VOLUME_MODE).map_err(|e| StorageError::Copy {
                from: from.to_owned(),
                to: to.to_owned(),
                detail: e.to_string(),
            }),
            Some(detail) => {
                let _ = remove_subvolume(to);
                Err(StorageError::Copy {
                    from: from.to_owned(),
                    to: to.to_owned(),
                    detail,
                })
            }
        }
    }
}

/// btrfs's trees: subvolume snapshots ([`Btrfs::clone_into`]) and subvolume deletes.
struct Subvolumes;

impl Trees for Subvolumes {
    fn copy(&self, from: &Path, to: &Path) -> Result<(), StorageError> {
        Btrfs::clone_into(from, to)
    }

    fn make(&self, path: &Path) -> Result<(), StorageError> {
        Btrfs::new_subvolume(path)
    }

    fn remove(&self, path: &Path) -> std::io::Result<()> {
        remove_subvolume(path)
    }
}

/// Whether `path` is on a btrfs filesystem.
#[allow(clippy::unnecessary_cast)] // f_type's type differs between architectures
fn on_btrfs(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as i64 == BTRFS_MAGIC)
}

/// Whether `path` is the root of a subvolume (or of a btrfs filesystem).
fn is_subvolume(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == SUBVOLUME_INODE)
        && on_btrfs(path)
}

/// Sets the limit (`none`, or bytes) of subvolume `path`'s qgroup. Named by its id and
/// asked of the directory holding it: asked of the subvolume itself, the change fails
/// (EDQUOT) once the subvolume is over its limit, which could then never be raised.
fn limit_qgroup(path: &Path, limit: &str) -> Result<(), String> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let id = rustix::fs::open(path, flags, Mode::empty())
        .map_err(std::io::Error::from)
        .and_then(berth_host::btrfs::subvolume_id)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let holder = path.parent().unwrap_or(path).display().to_string();
    run_tool(
        "btrfs",
        &["qgroup", "limit", limit, &format!("0/{id}"), &holder],
    )
}

/// Whether subvolume `path` holds subvolumes of its own.
fn has_nested(path: &Path) -> bool {
    tool_output(
        "btrfs",
        &["subvolume", "list", "-o", &path.display().to_string()],
    )
    .is_ok_and(|out| out.lines().any(|l| !l.trim().is_empty()))
}

/// Whether something is mounted right on `path`.
fn is_mount_point(path: &Path) -> bool {
    fs::canonicalize(path).is_ok_and(|c| crate::mounts::is_mount_point(&c).unwrap_or(false))
}

/// Removes the tree at `path`, a subvolume or a directory, with every subvolume nested in
/// it at any depth, walking by descriptor and never through a link (a received stream or
/// a container may have left links, or swap directories for them, under it).
fn remove_subvolume(path: &Path) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(rustix::io::Errno::INVAL.into());
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let parent = rustix::fs::open(parent, flags, Mode::empty())?;
    remove_at(&parent, name)
}

/// Removes entry `name` of directory `parent` and everything below it (see
/// [`remove_subvolume`]). A subvolume goes whole (`BTRFS_IOC_SNAP_DESTROY`, even a
/// read-only one) once the subvolumes below it are gone; a plain directory entry by entry.
fn remove_at(parent: &rustix::fd::OwnedFd, name: &std::ffi::OsStr) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let st = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(rustix::fs::unlinkat(parent, name, AtFlags::empty())?);
    }
    let subvolume = st.st_ino == SUBVOLUME_INODE;
    if subvolume && berth_host::btrfs::destroy_subvolume(parent, name).is_ok() {
        return Ok(());
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir = rustix::fs::openat(parent, name, flags, Mode::empty())?;
    let opened = rustix::fs::fstat(&dir)?;
    if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) {
        return Err(std::io::Error::other(
            "the directory changed while it was removed",
        ));
    }
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            use std::os::unix::ffi::OsStrExt;
            names.push(std::ffi::OsStr::from_bytes(n).to_owned());
        }
    }
    // A read-only subvolume's files cannot go one by one: its nested subvolumes do, then
    // it goes whole; the last step says whether the tree is gone.
    for n in &names {
        let _ = remove_at(&dir, n);
    }
    drop(dir);
    if subvolume {
        Ok(berth_host::btrfs::destroy_subvolume(parent, name)?)
    } else {
        Ok(rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?)
    }
}

/// Runs a host tool; its first line of error output when it fails.
fn run_tool(program: &str, args: &[&str]) -> Result<(), String> {
    tool_output(program, args).map(drop)
}

/// Runs a host tool; its output, or its first line of error output when it fails.
fn tool_output(program: &str, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(program);
    berth_host::die_with_parent(&mut cmd);
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(first_line(&out.stderr, &format!("{program} failed")))
    }
}

/// The bytes subvolume `path` references, as its level-0 qgroup counts them, read from
/// `/sys/fs/btrfs/FSID/qgroups/0_ID/referenced` (kernel 5.9 and later): no tool runs, so
/// a list of many instances stays fast. `None` without quotas on the filesystem.
fn referenced_bytes(path: &Path) -> Option<u64> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty()).ok()?;
    let fsid = berth_host::btrfs::fsid(&fd).ok()?;
    let id = berth_host::btrfs::subvolume_id(&fd).ok()?;
    let file = format!("/sys/fs/btrfs/{fsid}/qgroups/0_{id}/referenced");
    fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn first_line(text: &[u8], default: &str) -> String {
    String::from_utf8_lossy(text)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(default)
        .to_owned()
}

fn mount_error(path: &Path, detail: String) -> StorageError {
    StorageError::Mount {
        path: path.to_owned(),
        source: std::io::Error::other(detail),
    }
}

impl Driver for Btrfs {
    fn info(&self) -> DriverInfo {
        info()
    }

    fn config(&self) -> &BTreeMap<String, String> {
        &self.config
    }

    fn create(&self) -> Result<(), StorageError> {
        let fail = |path: &Path, detail: String| StorageError::CreatePool {
            path: path.to_owned(),
            source: std::io::Error::other(detail),
        };
        match &self.backing {
            Backing::LoopFile { path, size } => {
                if fs::symlink_metadata(path).is_ok() {
                    return Err(StorageError::SourceNotEmpty {
                        pool: self.pool.clone(),
                        path: path.clone(),
                    });
                }
                // The image holds every container's files: root's alone.
                if let Some(parent) = path.parent() {
                    DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(parent)
                        .and_then(|()| set_mode(parent, 0o700))
                        .map_err(|e| fail(parent, e.to_string()))?;
                }
                let made = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .and_then(|f| f.set_len(*size))
                    .and_then(|()| set_mode(path, 0o600))
                    .map_err(|e| fail(path, e.to_string()))
                    .and_then(|()| {
                        run_tool("mkfs.btrfs", &["-q", &path.display().to_string()])
                            .map_err(|d| fail(path, d))
                    });
                if let Err(e) = made {
                    let _ = fs::remove_file(path);
                    return Err(e);
                }
            }
            Backing::Device(path) => {
                // mkfs.btrfs refuses a device holding a filesystem unless forced: never.
                run_tool("mkfs.btrfs", &["-q", &path.display().to_string()])
                    .map_err(|d| fail(path, d))?;
            }
            Backing::Directory(path) => {
                if !on_btrfs(path) {
                    return Err(StorageError::InvalidValue {
                        key: "source".to_owned(),
                        value: path.display().to_string(),
                        reason: "Must be a directory on a btrfs filesystem",
                    });
                }
            }
        }
        // A fresh filesystem's root holds nothing; a directory given must be empty, as for
        // `dir` (the layout's create checks). A failure takes back the mount and the image.
        let made = self.attach().and_then(|()| self.dir.create());
        if made.is_err()
            && let Backing::LoopFile { path, .. } = &self.backing
        {
            let _ = self.unmount();
            let _ = fs::remove_dir(&self.root);
            let _ = fs::remove_file(path);
        }
        made
    }

    fn delete(&self) -> Result<(), StorageError> {
        if let Backing::Directory(_) = self.backing {
            return self.dir.delete();
        }
        let image = match &self.backing {
            Backing::LoopFile { path, .. } => Some(path.clone()),
            _ => None,
        };
        match self.attach() {
            Ok(()) => {
                self.dir.delete_layout()?;
                self.unmount()?;
            }
            // Its file or device is gone already: nothing is left to keep.
            Err(StorageError::SourceMissing { .. }) => {}
            Err(e) => return Err(e),
        }
        let _ = fs::remove_dir(&self.root);
        if let Some(image) = image {
            match fs::remove_file(&image) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(StorageError::DeletePool {
                        path: image,
                        source: e,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn mount(&self) -> Result<(), StorageError> {
        self.attach()?;
        // A loop file grown while its filesystem was not mounted, or half-way: the
        // filesystem takes the whole file (nothing to do when it has it).
        if matches!(self.backing, Backing::LoopFile { .. }) {
            let root = self.root.display().to_string();
            let _ = run_tool("btrfs", &["filesystem", "resize", "max", &root]);
        }
        self.dir.mount()?;
        // A directory source whose filesystem is not mounted (yet) is not this pool.
        if !on_btrfs(&self.root) || !self.root.join("containers").is_dir() {
            return Err(StorageError::SourceMissing {
                pool: self.pool.clone(),
                path: self.root.clone(),
            });
        }
        Ok(())
    }

    fn unmount(&self) -> Result<(), StorageError> {
        if !self.mounted() {
            return Ok(());
        }
        run_tool("umount", &[&self.root.display().to_string()])
            .map_err(|detail| mount_error(&self.root, detail))
    }

    fn update(&self, old: &BTreeMap<String, String>) -> Result<(), StorageError> {
        let Backing::LoopFile { path, size } = &self.backing else {
            return Ok(());
        };
        if self.config.get("size") == old.get("size") {
            return Ok(());
        }
        self.grow(path, *size)
    }

    fn resources(&self) -> Result<PoolResources, StorageError> {
        let mut r = self.dir.resources()?;
        // btrfs allocates inodes on demand: it reports none.
        r.inodes_used = 0;
        r.inodes_total = 0;
        Ok(r)
    }

    fn volume_path(&self, vtype: VolumeType, name: &str) -> PathBuf {
        self.dir.volume_path(vtype, name)
    }

    fn create_volume(&self, vtype: VolumeType, name: &str) -> Result<PathBuf, StorageError> {
        validate_volume_name(name)?;
        let path = self.volume_path(vtype, name);
        if fs::symlink_metadata(&path).is_ok() {
            return Err(StorageError::VolumeExists {
                vtype,
                name: name.to_owned(),
            });
        }
        Self::new_subvolume(&path)?;
        Ok(path)
    }

    fn delete_volume(&self, vtype: VolumeType, name: &str) -> Result<(), StorageError> {
        validate_volume_name(name)?;
        let path = self.volume_path(vtype, name);
        if !is_subvolume(&path) {
            return self.dir.delete_volume(vtype, name);
        }
        let canonical = fs::canonicalize(&path).map_err(|source| StorageError::DeleteVolume {
            path: path.clone(),
            source,
        })?;
        if let Some(mount) = crate::mounts::first_mount_under(&canonical).map_err(|source| {
            StorageError::DeleteVolume {
                path: path.clone(),
                source,
            }
        })? {
            return Err(StorageError::VolumeMounted {
                vtype,
                name: name.to_owned(),
                mount,
            });
        }
        remove_subvolume(&path).map_err(|source| StorageError::DeleteVolume { path, source })
    }

    fn rename_volume(&self, vtype: VolumeType, from: &str, to: &str) -> Result<(), StorageError> {
        self.dir.rename_volume(vtype, from, to)
    }

    fn list_volumes(&self, vtype: VolumeType) -> Result<Vec<String>, StorageError> {
        self.dir.list_volumes(vtype)
    }

    fn snapshot_path(&self, vtype: VolumeType, name: &str, snap: &str) -> PathBuf {
        self.dir.snapshot_path(vtype, name, snap)
    }

    fn create_snapshot(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<(), StorageError> {
        self.dir.snapshot_with(&Subvolumes, vtype, name, snap)
    }

    fn delete_snapshot(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<(), StorageError> {
        self.dir
            .delete_snapshot_with(&Subvolumes, vtype, name, snap)
    }

    fn rename_snapshot(
        &self,
        vtype: VolumeType,
        name: &str,
        from: &str,
        to: &str,
    ) -> Result<(), StorageError> {
        self.dir.rename_snapshot(vtype, name, from, to)
    }

    fn restore_snapshot(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<(), StorageError> {
        self.dir.restore_with(&Subvolumes, vtype, name, snap)
    }

    fn delete_snapshots(&self, vtype: VolumeType, name: &str) -> Result<(), StorageError> {
        self.dir.delete_snapshots_with(&Subvolumes, vtype, name)
    }

    fn create_volume_from(
        &self,
        vtype: VolumeType,
        name: &str,
        from: &Path,
    ) -> Result<(), StorageError> {
        self.dir.volume_from_with(&Subvolumes, vtype, name, from)
    }

    fn create_snapshot_from(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
        from: &Path,
    ) -> Result<(), StorageError> {
        self.dir
            .snapshot_from_with(&Subvolumes, vtype, name, snap, from)
    }

    fn create_empty_snapshot(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<PathBuf, StorageError> {
        self.dir.empty_snapshot_with(&Subvolumes, vtype, name, snap)
    }

    fn remove_leftovers(&self) -> Result<(), StorageError> {
        self.dir.remove_leftovers_with(&Subvolumes)
    }

    fn rename_snapshots(
        &self,
        vtype: VolumeType,
        from: &str,
        to: &str,
    ) -> Result<(), StorageError> {
        self.dir.rename_snapshots(vtype, from, to)
    }

    fn sender(
        &self,
        vtype: VolumeType,
        name: &str,
        snapshots: &[String],
    ) -> Result<Box<dyn Sender>, StorageError> {
        validate_volume_name(name)?;
        let mut sources = Vec::with_capacity(snapshots.len() + 1);
        for s in snapshots {
            validate_volume_name(s)?;
            sources.push(self.snapshot_path(vtype, name, s));
        }
        sources.push(self.volume_path(vtype, name));
        Ok(Box::new(streams::Frozen::new(&self.dir, vtype, &sources)?))
    }

    fn receiver(&self, vtype: VolumeType, name: &str) -> Result<Box<dyn Receiver>, StorageError> {
        validate_volume_name(name)?;
        if fs::symlink_metadata(self.volume_path(vtype, name)).is_ok() {
            return Err(StorageError::VolumeExists {
                vtype,
                name: name.to_owned(),
            });
        }
        Ok(Box::new(streams::Received::new(&self.dir, vtype, name)?))
    }

    fn usage(&self, vtype: VolumeType, name: &str) -> Option<u64> {
        validate_volume_name(name).ok()?;
        referenced_bytes(&self.volume_path(vtype, name))
    }

    fn set_quota(
        &self,
        vtype: VolumeType,
        name: &str,
        bytes: Option<u64>,
    ) -> Result<(), StorageError> {
        validate_volume_name(name)?;
        let path = self.volume_path(vtype, name);
        let limit = bytes.map_or_else(|| "none".to_owned(), |b| b.to_string());
        let limited = match limit_qgroup(&path, &limit) {
            // Quotas (qgroups) are turned on at the first size asked for, as LXD does.
            Err(_) if bytes.is_some() => {
                let root = self.root.display().to_string();
                run_tool("btrfs", &["quota", "enable", &root])
                    .and_then(|()| limit_qgroup(&path, &limit))
            }
            // No quotas on the filesystem: nothing to lift.
            Err(_) => Ok(()),
            ok => ok,
        };
        limited.map_err(|detail| StorageError::Quota { path, detail })
    }
}
