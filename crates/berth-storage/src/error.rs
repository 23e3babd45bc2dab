//! The one error type of the storage drivers, and the kind the daemon maps to an HTTP status.
//!
//! Messages are one line naming the key, value, pool, volume or path at fault; an underlying
//! I/O failure stays in `#[source]` and is never repeated in the message.

use std::io;
use std::path::PathBuf;

use crate::VolumeType;

/// What class of failure a [`StorageError`] is, for the daemon's error-to-HTTP mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageErrorKind {
    /// The request or the pool configuration is wrong (HTTP 400).
    InvalidConfig,
    /// The pool source or the volume does not exist (HTTP 404).
    NotFound,
    /// The volume already exists (HTTP 409).
    AlreadyExists,
    /// The pool or volume is in use and was left untouched (HTTP 409).
    Busy,
    /// The host refused an operation (HTTP 500).
    Io,
}

/// A storage driver failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("Unknown storage driver {driver:?}")]
    UnknownDriver { driver: String },
    #[error("Unknown configuration key {key:?} for storage driver {driver:?}")]
    UnknownKey { driver: &'static str, key: String },
    #[error("Invalid value {value:?} for {key:?}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: &'static str,
    },
    #[error("Invalid storage volume name {name:?}: {reason}")]
    InvalidVolumeName { name: String, reason: &'static str },
    #[error("Storage pool {pool:?} source {} is not empty", .path.display())]
    SourceNotEmpty { pool: String, path: PathBuf },
    #[error("Storage pool {pool:?} source {} is not a directory", .path.display())]
    SourceNotDirectory { pool: String, path: PathBuf },
    #[error("Storage pool {pool:?} source {} does not exist", .path.display())]
    SourceMissing { pool: String, path: PathBuf },
    #[error("Failed to create storage pool directory {}", .path.display())]
    CreatePool {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Failed to delete storage pool directory {}", .path.display())]
    DeletePool {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Storage pool {pool:?} is in use: {} remains", .entry.display())]
    PoolInUse { pool: String, entry: PathBuf },
    #[error("Failed to access storage pool source {}", .path.display())]
    Mount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Failed to get the space used on {}", .path.display())]
    Resources {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Storage volume {name:?} of type {vtype} already exists")]
    VolumeExists { vtype: VolumeType, name: String },
    #[error("Storage volume {name:?} of type {vtype} not found")]
    VolumeNotFound { vtype: VolumeType, name: String },
    #[error("Storage volume {name:?} of type {vtype} is in use: {} is mounted", .mount.display())]
    VolumeMounted {
        vtype: VolumeType,
        name: String,
        mount: PathBuf,
    },
    #[error("Failed to create storage volume {}", .path.display())]
    CreateVolume {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Failed to delete storage volume {}", .path.display())]
    DeleteVolume {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Failed to rename storage volume {} to {}", .from.display(), .to.display())]
    RenameVolume {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Snapshot {snap:?} of storage volume {name:?} already exists")]
    SnapshotExists { name: String, snap: String },
    #[error("Snapshot {snap:?} of storage volume {name:?} not found")]
    SnapshotNotFound { name: String, snap: String },
    #[error("Failed to copy {} to {}: {detail}", .from.display(), .to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        detail: String,
    },
    #[error("Failed to list storage volumes in {}", .path.display())]
    ListVolumes {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("The {driver} driver cannot enforce a volume size (a btrfs pool can)")]
    QuotaUnsupported { driver: &'static str },
    #[error("Failed to set the size of storage volume {}: {detail}", .path.display())]
    Quota { path: PathBuf, detail: String },
    #[error("The {driver} driver has no volume streams (a btrfs pool has)")]
    StreamsUnsupported { driver: &'static str },
    #[error("Failed to {what} a volume stream at {}: {detail}", .path.display())]
    Stream {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
}

impl StorageError {
    /// The class of this failure.
    pub fn kind(&self) -> StorageErrorKind {
        use StorageError as E;
        match self {
            E::UnknownDriver { .. }
            | E::UnknownKey { .. }
            | E::InvalidValue { .. }
            | E::InvalidVolumeName { .. }
            | E::SourceNotEmpty { .. }
            | E::SourceNotDirectory { .. }
            | E::QuotaUnsupported { .. }
            | E::StreamsUnsupported { .. } => StorageErrorKind::InvalidConfig,
            E::SourceMissing { .. } | E::VolumeNotFound { .. } | E::SnapshotNotFound { .. } => {
                StorageErrorKind::NotFound
            }
            E::VolumeExists { .. } | E::SnapshotExists { .. } => StorageErrorKind::AlreadyExists,
            E::PoolInUse { .. } | E::VolumeMounted { .. } => StorageErrorKind::Busy,
            E::CreatePool { .. }
            | E::DeletePool { .. }
            | E::Mount { .. }
            | E::Resources { .. }
            | E::CreateVolume { .. }
            | E::DeleteVolume { .. }
            | E::RenameVolume { .. }
            | E::Copy { .. }
            | E::ListVolumes { .. }
            | E::Quota { .. }
            | E::Stream { .. } => StorageErrorKind::Io,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_culprit_and_kinds_map() {
        let e = StorageError::InvalidValue {
            key: "rsync.bwlimit".into(),
            value: "abc".into(),
            reason: "Expected a size",
        };
        assert_eq!(
            e.to_string(),
            r#"Invalid value "abc" for "rsync.bwlimit": Expected a size"#
        );
        assert_eq!(e.kind(), StorageErrorKind::InvalidConfig);
        let e = StorageError::VolumeExists {
            vtype: VolumeType::Container,
            name: "c1".into(),
        };
        assert_eq!(
            e.to_string(),
            r#"Storage volume "c1" of type container already exists"#
        );
        assert_eq!(e.kind(), StorageErrorKind::AlreadyExists);
        let e = StorageError::CreateVolume {
            path: "/p/custom/v".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert_eq!(e.to_string(), "Failed to create storage volume /p/custom/v");
        assert_eq!(e.kind(), StorageErrorKind::Io);
    }
}
