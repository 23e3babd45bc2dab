//! Storage pool drivers for berth, behind one [`Driver`] trait.
//!
//! A pool is a place on the host where volumes (container root filesystems, unpacked images,
//! custom volumes) live. Each driver (only `dir` so far) knows how to make, mount, measure and
//! tear down a pool and its volumes on the host, and nothing else: validation of requests,
//! the database and undo steps live in the daemon above. Drivers are found by name through
//! [`load`]; [`supported`] lists them for `GET /1.0`.
//!
//! This crate knows nothing of the daemon or of any database.

mod drivers;
mod error;
mod mounts;
mod streams;
mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use drivers::{btrfs, dir};
pub use error::{StorageError, StorageErrorKind};
pub use streams::{Exact, Receiver, Sender};

/// What a driver is and can do; `GET /1.0` reports it in `storage_supported_drivers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverInfo {
    /// The driver name, as in a pool's `driver` field (`dir`).
    pub name: &'static str,
    /// The version of the driver (or of the host tool it drives).
    pub version: String,
    /// Whether pools are shared between cluster members (ceph and the like).
    pub remote: bool,
    /// Whether an image can be unpacked once and cloned cheaply for each instance.
    pub optimized_images: bool,
    /// Whether snapshots cost no copy.
    pub instant_snapshots: bool,
    /// Whether volume sizes can be enforced.
    pub quotas: bool,
    /// Whether a volume's quota is missing from its filesystem's own figures (`statfs`,
    /// what `df` reads): berthd then answers a container's `statfs` itself, with the
    /// volume's size and usage.
    pub quota_hidden_from_statfs: bool,
    /// Whether volumes go as the driver's own streams ([`Sender`], [`Receiver`]): an
    /// optimized backup.
    pub optimized_backups: bool,
}

/// The kinds of volume a pool holds; each has its own directory in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolumeType {
    /// An instance's root filesystem.
    Container,
    /// An unpacked image, keyed by fingerprint.
    Image,
    /// A volume the user created.
    Custom,
}

impl VolumeType {
    /// Every volume type, in the order LXD lists them.
    pub const ALL: [VolumeType; 3] = [VolumeType::Container, VolumeType::Image, VolumeType::Custom];

    /// The name used in the API (`/1.0/storage-pools/P/volumes/TYPE/NAME`).
    pub fn api_name(self) -> &'static str {
        match self {
            VolumeType::Container => "container",
            VolumeType::Image => "image",
            VolumeType::Custom => "custom",
        }
    }

    /// The directory holding volumes of this type inside a pool (as LXD lays it out).
    pub fn dir_name(self) -> &'static str {
        match self {
            VolumeType::Container => "containers",
            VolumeType::Image => "images",
            VolumeType::Custom => "custom",
        }
    }

    /// The directory holding the snapshots of volumes of this type (one directory per
    /// volume, one per snapshot inside).
    pub fn snapshots_dir_name(self) -> &'static str {
        match self {
            VolumeType::Container => "containers-snapshots",
            VolumeType::Image => "images-snapshots",
            VolumeType::Custom => "custom-snapshots",
        }
    }

    /// The volume type of an API name, if it is one.
    pub fn parse(api_name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.api_name() == api_name)
    }
}

impl fmt::Display for VolumeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

/// Space and inodes of a pool, for `GET /1.0/storage-pools/NAME/resources`.
///
/// Inode counts are zero on filesystems that allocate inodes on demand (btrfs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolResources {
    pub space_used: u64,
    pub space_total: u64,
    pub inodes_used: u64,
    pub inodes_total: u64,
}

/// A storage pool driver, bound to one pool and its effective configuration.
///
/// # Lifecycle
///
/// 1. [`load`] validates the configuration (refusing unknown keys and bad values) and fills
///    in defaults, without touching the host.
/// 2. [`create`](Driver::create) makes the pool on the host, once, when the pool is defined.
/// 3. [`mount`](Driver::mount) makes an existing pool usable: at daemon start and after
///    `create`. Volume calls are valid only between `mount` and
///    [`unmount`](Driver::unmount).
/// 4. [`unmount`](Driver::unmount) releases the pool (daemon shutdown, before `delete`).
/// 5. [`delete`](Driver::delete) removes what `create` made; it refuses while any volume
///    remains and never removes volume data. It succeeds when the pool is already gone, so it
///    can serve as the undo step of a failed `create`.
///
/// Volume names are checked with [`validate_volume_name`] by every call that touches the
/// host. Drivers touch only the host: no database, no undo, no locking between calls for the
/// same volume (the daemon serialises those).
pub trait Driver: Send + Sync + fmt::Debug {
    /// What this driver is and can do.
    fn info(&self) -> DriverInfo;
    /// The effective pool configuration, defaults included; this is what the daemon stores.
    fn config(&self) -> &BTreeMap<String, String>;
    /// Makes the pool on the host; refuses an existing, non-empty `source`.
    fn create(&self) -> Result<(), StorageError>;
    /// Removes what [`create`](Driver::create) made; [`StorageErrorKind::Busy`] while any
    /// volume or snapshot remains.
    fn delete(&self) -> Result<(), StorageError>;
    /// Makes the pool usable; [`StorageErrorKind::NotFound`] if its source is gone.
    fn mount(&self) -> Result<(), StorageError>;
    /// Releases the pool.
    fn unmount(&self) -> Result<(), StorageError>;
    /// Brings the mounted pool to this driver's configuration after an update from `old`
    /// (a loop file grown to a larger `size`). What cannot change on the host is refused
    /// before anything is touched: by default, any change of `size`.
    fn update(&self, old: &BTreeMap<String, String>) -> Result<(), StorageError> {
        match self.config().get("size") {
            new if new == old.get("size") => Ok(()),
            new => Err(StorageError::InvalidValue {
                key: "size".to_owned(),
                value: new.cloned().unwrap_or_default(),
                reason: "Cannot be changed on this pool",
            }),
        }
    }
    /// Space and inodes used and available on the pool.
    fn resources(&self) -> Result<PoolResources, StorageError>;
    /// Where a volume lives on the host. Pure path arithmetic: `name` is not checked here, so
    /// check it with [`validate_volume_name`] before using the path.
    fn volume_path(&self, vtype: VolumeType, name: &str) -> PathBuf;
    /// Creates an empty volume, reachable by root only (mode 0700), and returns its path;
    /// [`StorageErrorKind::AlreadyExists`] if it exists.
    fn create_volume(&self, vtype: VolumeType, name: &str) -> Result<PathBuf, StorageError>;
    /// Deletes a volume and everything in it; [`StorageErrorKind::NotFound`] if absent,
    /// [`StorageErrorKind::Busy`] if anything is mounted inside it.
    fn delete_volume(&self, vtype: VolumeType, name: &str) -> Result<(), StorageError>;
    /// Renames a volume; [`StorageErrorKind::NotFound`] if absent,
    /// [`StorageErrorKind::AlreadyExists`] if `to` exists.
    fn rename_volume(&self, vtype: VolumeType, from: &str, to: &str) -> Result<(), StorageError>;
    /// The names of the volumes of one type found on disk, sorted.
    fn list_volumes(&self, vtype: VolumeType) -> Result<Vec<String>, StorageError>;
    /// Where snapshot `snap` of volume `name` lives on the host (pure path arithmetic).
    fn snapshot_path(&self, vtype: VolumeType, name: &str, snap: &str) -> PathBuf;
    /// Makes snapshot `snap` of volume `name`: a copy keeping owners, modes, links, device
    /// nodes and extended attributes; [`StorageErrorKind::AlreadyExists`] if it exists.
    fn create_snapshot(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<(), StorageError>;
    /// Deletes one snapshot; [`StorageErrorKind::NotFound`] if absent.
    fn delete_snapshot(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<(), StorageError>;
    /// Renames a snapshot of volume `name`.
    fn rename_snapshot(
        &self,
        vtype: VolumeType,
        name: &str,
        from: &str,
        to: &str,
    ) -> Result<(), StorageError>;
    /// Replaces volume `name`'s content with a copy of snapshot `snap`; the volume is left
    /// whole (old or new) if it fails.
    fn restore_snapshot(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<(), StorageError>;
    /// Deletes every snapshot of volume `name` (when the volume goes).
    fn delete_snapshots(&self, vtype: VolumeType, name: &str) -> Result<(), StorageError>;
    /// Makes volume `name` as a copy of the directory `from` (another volume or a
    /// snapshot, on any pool); [`StorageErrorKind::AlreadyExists`] if it exists.
    fn create_volume_from(
        &self,
        vtype: VolumeType,
        name: &str,
        from: &Path,
    ) -> Result<(), StorageError>;
    /// Makes snapshot `snap` of volume `name` as a copy of the directory `from`.
    fn create_snapshot_from(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
        from: &Path,
    ) -> Result<(), StorageError>;
    /// Makes an empty snapshot `snap` of volume `name`, to be filled (a backup's import),
    /// and returns its path; [`StorageErrorKind::AlreadyExists`] if it exists.
    fn create_empty_snapshot(
        &self,
        vtype: VolumeType,
        name: &str,
        snap: &str,
    ) -> Result<PathBuf, StorageError>;
    /// Removes what an interrupted operation left (half-made restore copies); at start.
    fn remove_leftovers(&self) -> Result<(), StorageError>;
    /// Moves every snapshot of volume `from` to volume `to` (when the volume is renamed).
    fn rename_snapshots(&self, vtype: VolumeType, from: &str, to: &str)
    -> Result<(), StorageError>;
    /// Freezes volume `name` and its snapshots `snapshots` (oldest first) for sending as
    /// the driver's own streams; [`StorageError::StreamsUnsupported`] where it has none.
    fn sender(
        &self,
        _vtype: VolumeType,
        _name: &str,
        _snapshots: &[String],
    ) -> Result<Box<dyn Sender>, StorageError> {
        Err(StorageError::StreamsUnsupported {
            driver: self.info().name,
        })
    }
    /// Starts receiving volume `name` (absent) and its snapshots as the driver's own
    /// streams; [`StorageError::StreamsUnsupported`] where it has none.
    fn receiver(&self, _vtype: VolumeType, _name: &str) -> Result<Box<dyn Receiver>, StorageError> {
        Err(StorageError::StreamsUnsupported {
            driver: self.info().name,
        })
    }
    /// The bytes volume `name` takes, where the driver counts them (btrfs: its qgroup's
    /// referenced bytes); `None` where it does not.
    fn usage(&self, _vtype: VolumeType, _name: &str) -> Option<u64> {
        None
    }
    /// Limits volume `name` to `bytes` (`None`: no limit). A driver without quotas
    /// refuses a limit ([`StorageError::QuotaUnsupported`]) and has nothing to lift.
    fn set_quota(
        &self,
        _vtype: VolumeType,
        _name: &str,
        bytes: Option<u64>,
    ) -> Result<(), StorageError> {
        match bytes {
            None => Ok(()),
            Some(_) => Err(StorageError::QuotaUnsupported {
                driver: self.info().name,
            }),
        }
    }
}

/// A driver constructor: pool name, configuration, default source.
type Constructor =
    fn(&str, BTreeMap<String, String>, &Path) -> Result<Box<dyn Driver>, StorageError>;

/// A registered driver: its name, its capabilities and its constructor.
struct Registration {
    name: &'static str,
    info: fn() -> DriverInfo,
    load: Constructor,
}

/// Every driver this build carries, by name.
const REGISTRY: &[Registration] = &[
    Registration {
        name: dir::NAME,
        info: dir::info,
        load: dir::load,
    },
    Registration {
        name: btrfs::NAME,
        info: btrfs::info,
        load: btrfs::load,
    },
];

/// Builds the driver `driver` for pool `pool_name`.
///
/// `default_source` is where the pool lives when `config` has no `source` (berthd passes
/// `DIR/storage-pools/NAME`; it must be absolute). The configuration is validated (unknown
/// keys refused) and defaults filled in; the host is not touched.
pub fn load(
    driver: &str,
    pool_name: &str,
    config: BTreeMap<String, String>,
    default_source: &Path,
) -> Result<Box<dyn Driver>, StorageError> {
    let registration =
        REGISTRY
            .iter()
            .find(|r| r.name == driver)
            .ok_or_else(|| StorageError::UnknownDriver {
                driver: driver.to_owned(),
            })?;
    (registration.load)(pool_name, config, default_source)
}

/// Every driver this build supports, with its version, for `storage_supported_drivers`.
pub fn supported() -> Vec<DriverInfo> {
    REGISTRY.iter().map(|r| (r.info)()).collect()
}

/// Checks that `name` can be a volume: one path component the kernel accepts.
pub fn validate_volume_name(name: &str) -> Result<(), StorageError> {
    let reason = if name.is_empty() {
        "Must not be empty"
    } else if name == "." || name == ".." {
        "Must not be \".\" or \"..\""
    } else if name.contains('/') {
        "Must not contain \"/\""
    } else if name.contains('\0') {
        "Must not contain a NUL byte"
    } else if name.len() > 255 {
        "Must be at most 255 bytes long"
    } else {
        return Ok(());
    };
    Err(StorageError::InvalidVolumeName {
        name: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_driver_is_invalid_config() {
        let err = load("zfs2", "p", BTreeMap::new(), Path::new("/tmp/p")).unwrap_err();
        assert_eq!(err.to_string(), r#"Unknown storage driver "zfs2""#);
        assert_eq!(err.kind(), StorageErrorKind::InvalidConfig);
    }

    #[test]
    fn supported_lists_dir_and_btrfs() {
        let drivers = supported();
        let names: Vec<&str> = drivers.iter().map(|d| d.name).collect();
        assert_eq!(names, ["dir", "btrfs"]);
        assert_eq!(drivers[0].version, "1");
        assert!(!drivers[0].remote && !drivers[1].remote);
        assert!(drivers[1].instant_snapshots);
    }

    #[test]
    fn volume_type_names_round_trip() {
        for t in VolumeType::ALL {
            assert_eq!(VolumeType::parse(t.api_name()), Some(t));
        }
        assert_eq!(VolumeType::Container.dir_name(), "containers");
        assert_eq!(VolumeType::Image.dir_name(), "images");
        assert_eq!(VolumeType::Custom.dir_name(), "custom");
        assert_eq!(VolumeType::parse("containers"), None);
        assert_eq!(VolumeType::parse("virtual-machine"), None);
    }

    #[test]
    fn volume_names_are_single_components() {
        for good in ["c1", "a.b", "...", "x y", &"n".repeat(255)] {
            assert!(validate_volume_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "/", "a\0b", &"n".repeat(256)] {
            let err = validate_volume_name(bad).unwrap_err();
            assert_eq!(err.kind(), StorageErrorKind::InvalidConfig, "{bad:?}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
