//! Instances (system containers) and their state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A device: its type and options, all strings.
pub type Device = BTreeMap<String, String>;

/// An instance as `GET /1.0/instances/{name}` returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Instance {
    pub name: String,
    pub description: String,
    pub status: String,
    pub status_code: u16,
    pub created_at: String,
    pub last_used_at: String,
    pub location: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub project: String,
    pub architecture: String,
    pub ephemeral: bool,
    pub stateful: bool,
    pub profiles: Vec<String>,
    pub config: BTreeMap<String, String>,
    pub devices: BTreeMap<String, Device>,
    pub expanded_config: BTreeMap<String, String>,
    pub expanded_devices: BTreeMap<String, Device>,
}

/// The top-level keys of an instance listed with its state (`recursion=2`): those of
/// [`Instance`], in its order, then `state`, `snapshots` and `backups`. berthd's lists
/// select among them (`fields=`).
pub const FULL_KEYS: &[&str] = &[
    "name",
    "description",
    "status",
    "status_code",
    "created_at",
    "last_used_at",
    "location",
    "type",
    "project",
    "architecture",
    "ephemeral",
    "stateful",
    "profiles",
    "config",
    "devices",
    "expanded_config",
    "expanded_devices",
    "state",
    "snapshots",
    "backups",
];

/// `POST /1.0/instances`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstancesPost {
    pub name: String,
    #[serde(default)]
    pub source: InstanceSource,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub devices: BTreeMap<String, Device>,
    #[serde(default)]
    pub profiles: Option<Vec<String>>,
    #[serde(default)]
    pub ephemeral: bool,
    #[serde(default)]
    pub start: bool,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub stateful: bool,
    #[serde(default)]
    pub instance_type: String,
}

/// Where a new instance comes from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceSource {
    /// `image`, `copy` or `none`.
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub fingerprint: String,
    #[serde(default)]
    pub alias: String,
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    pub allow_inconsistent: bool,
    /// `copy`: the instance (`NAME`) or snapshot (`NAME/SNAP`) copied.
    #[serde(default)]
    pub source: String,
    /// `copy`: leave the source's snapshots behind.
    #[serde(default)]
    pub instance_only: bool,
    /// `copy`: the source's project, when not the new instance's.
    #[serde(default)]
    pub project: String,
    #[serde(default)]
    pub live: bool,
    #[serde(rename = "base-image", default)]
    pub base_image: String,
    /// `migration`, pull: the source's operation (`https://HOST:PORT/1.0/operations/ID`).
    #[serde(default)]
    pub operation: String,
    /// `migration`: the peer's certificate (PEM), pinned when dialling it; `image` from
    /// another `server`: that server's.
    #[serde(default)]
    pub certificate: String,
    /// `image` from another `server`: the secret it issued for the image.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
    /// `migration`, pull: the secrets of the source's streams (`control`, `fs`).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// `migration`: only bring what changed since an earlier copy.
    #[serde(default)]
    pub refresh: bool,
    /// LXD's older name of `instance_only`.
    #[serde(default)]
    pub container_only: bool,
}

/// `PUT /1.0/instances/{name}/state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatePut {
    pub action: String,
    #[serde(default)]
    pub timeout: i64,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub stateful: bool,
}

/// `GET /1.0/instances/{name}/state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceState {
    pub status: String,
    pub status_code: u16,
    pub disk: BTreeMap<String, serde_json::Value>,
    pub memory: InstanceStateMemory,
    pub network: Option<BTreeMap<String, serde_json::Value>>,
    pub pid: i64,
    pub processes: i64,
    pub cpu: InstanceStateCpu,
    pub started_at: String,
    /// berth's own: why the init exited on its own soon after the last start (the host
    /// limit its console names, its last console lines); absent otherwise.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stop_reason: String,
}

/// Memory use in bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStateMemory {
    pub usage: i64,
    pub usage_peak: i64,
    pub swap_usage: i64,
    pub swap_usage_peak: i64,
    pub total: i64,
}

/// CPU time used, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStateCpu {
    pub usage: i64,
}
