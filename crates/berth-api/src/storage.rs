//! Storage pools and volumes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A pool as `GET /1.0/storage-pools/{name}` returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoragePool {
    pub name: String,
    pub description: String,
    pub driver: String,
    pub status: String,
    pub config: BTreeMap<String, String>,
    pub used_by: Vec<String>,
    pub locations: Vec<String>,
}

/// `POST /1.0/storage-pools`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoragePoolsPost {
    pub name: String,
    pub driver: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// `PUT|PATCH /1.0/storage-pools/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoragePoolPut {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// `GET /1.0/storage-pools/{name}/resources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoragePoolResources {
    pub space: ResourcesUsage,
    pub inodes: ResourcesUsage,
}

/// Used and total amounts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourcesUsage {
    pub used: u64,
    pub total: u64,
}

/// A volume of a pool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolume {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
    pub used_by: Vec<String>,
    pub location: String,
    pub content_type: String,
    pub project: String,
    pub created_at: String,
}

/// `POST /1.0/storage-pools/{pool}/volumes[/{type}]`: a new volume, empty or copied.
///
/// Unknown fields are ignored: the clients of every LXD and Incus release send the fields
/// their release knows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumesPost {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    #[serde(deserialize_with = "crate::null_as_default")]
    pub config: BTreeMap<String, String>,
    pub content_type: String,
    pub source: StorageVolumeSource,
}

/// Where a new volume's content comes from (`type`: empty for an empty volume, `copy`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeSource {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub pool: String,
    pub project: String,
    pub volume_only: bool,
    pub refresh: bool,
    pub mode: String,
}

/// `PUT|PATCH /1.0/storage-pools/{pool}/volumes/{type}/{name}`; `restore` names a
/// snapshot to roll the volume back to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumePut {
    pub description: Option<String>,
    #[serde(deserialize_with = "crate::null_as_default")]
    pub config: BTreeMap<String, String>,
    pub restore: String,
}

/// `POST /1.0/storage-pools/{pool}/volumes/{type}/{name}`: rename, or move to another
/// pool (`pool`) or project (`project`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumePost {
    pub name: String,
    pub pool: String,
    pub project: String,
    pub migration: bool,
    pub volume_only: bool,
}

/// A volume's snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeSnapshot {
    pub name: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
    pub content_type: String,
    pub created_at: String,
    pub expires_at: Option<String>,
}

/// `POST /1.0/storage-pools/{pool}/volumes/{type}/{name}/snapshots`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeSnapshotsPost {
    pub name: String,
    pub expires_at: Option<String>,
}

/// `PUT|PATCH …/snapshots/{snap}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeSnapshotPut {
    pub description: Option<String>,
    pub expires_at: Option<String>,
}

/// `GET /1.0/storage-pools/{pool}/volumes/{type}/{name}/state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeState {
    pub usage: Option<StorageVolumeStateUsage>,
}

/// A volume's usage: bytes used and, with a quota, its limit (0 without).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeStateUsage {
    pub used: u64,
    pub total: i64,
}
