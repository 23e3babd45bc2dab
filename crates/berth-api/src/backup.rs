//! Instance backups: the API's objects, and the `backup/index.yaml` at the head of a backup
//! tarball as LXD and Incus write and read it.

use serde::{Deserialize, Serialize};

/// A backup as `GET /1.0/instances/{name}/backups/{backup}` returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceBackup {
    pub name: String,
    pub created_at: String,
    pub expires_at: String,
    pub instance_only: bool,
    pub container_only: bool,
    pub optimized_storage: bool,
}

/// `POST /1.0/instances/{name}/backups`. Unknown fields are ignored (clients of every
/// release send what theirs knows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceBackupsPost {
    pub name: String,
    pub expires_at: Option<String>,
    pub instance_only: bool,
    pub container_only: bool,
    pub optimized_storage: bool,
    pub compression_algorithm: String,
}

/// `POST /1.0/instances/{name}/backups/{backup}`: a rename.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceBackupPost {
    pub name: String,
}

/// `backup/index.yaml`: what the tarball holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackupIndex {
    #[serde(deserialize_with = "crate::null_as_default")]
    pub name: String,
    #[serde(deserialize_with = "crate::null_as_default")]
    pub backend: String,
    #[serde(deserialize_with = "crate::null_as_default")]
    pub pool: String,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub snapshots: Vec<String>,
    pub optimized: Option<bool>,
    pub optimized_header: Option<bool>,
    #[serde(rename = "type", deserialize_with = "crate::null_as_default")]
    pub kind: String,
    pub config: Option<BackupFileConfig>,
}

/// The instance, its snapshots, its pool and volume, as `backup.yaml` has them (the API's
/// objects, kept as they are).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackupFileConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<serde_json::Value>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub snapshots: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<serde_json::Value>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub profiles: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<serde_json::Value>,
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::null_as_default"
    )]
    pub volume_snapshots: Vec<serde_json::Value>,
}

/// `POST /internal/recover/validate` and `…/import`: the pools to scan (known ones, and
/// ones the database lost, with their driver and `source`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecoverPost {
    #[serde(deserialize_with = "crate::null_as_default")]
    pub pools: Vec<RecoverPool>,
}

/// A pool to scan: a known one by its name (clients send its other fields empty or null),
/// a lost one with its driver and configuration (`source`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecoverPool {
    #[serde(deserialize_with = "crate::null_as_default")]
    pub name: String,
    #[serde(deserialize_with = "crate::null_as_default")]
    pub driver: String,
    #[serde(deserialize_with = "crate::null_as_default")]
    pub description: String,
    #[serde(deserialize_with = "crate::null_as_default")]
    pub config: std::collections::BTreeMap<String, String>,
}

/// A volume found on a pool that the database does not know.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecoverVolume {
    pub name: String,
    /// `container` or `custom`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "snapshotCount")]
    pub snapshot_count: usize,
    pub project: String,
    pub pool: String,
}

/// What a validation scan found (the field names are Go's: LXD and Incus give them no
/// JSON tags).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecoverResult {
    #[serde(rename = "UnknownVolumes", deserialize_with = "crate::null_as_default")]
    pub unknown_volumes: Vec<RecoverVolume>,
    #[serde(
        rename = "DependencyErrors",
        deserialize_with = "crate::null_as_default"
    )]
    pub dependency_errors: Vec<String>,
}
