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
