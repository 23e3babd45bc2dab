//! `GET /1.0`: the server and its environment; `PUT|PATCH /1.0`: its configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The server as `GET /1.0` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub config: BTreeMap<String, String>,
    pub api_extensions: Vec<String>,
    pub api_status: String,
    pub api_version: String,
    pub auth: String,
    #[serde(default)]
    pub auth_methods: Vec<String>,
    pub public: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<ServerEnvironment>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_user_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_user_method: String,
}

/// The writable part of the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerPut {
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// What the server runs on; sent to trusted clients only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerEnvironment {
    pub addresses: Vec<String>,
    pub architectures: Vec<String>,
    pub certificate: String,
    pub certificate_fingerprint: String,
    pub driver: String,
    pub driver_version: String,
    pub firewall: String,
    pub kernel: String,
    pub kernel_architecture: String,
    pub kernel_features: BTreeMap<String, String>,
    pub kernel_version: String,
    pub lxc_features: BTreeMap<String, String>,
    pub os_name: String,
    pub os_version: String,
    pub project: String,
    pub server: String,
    pub server_clustered: bool,
    pub server_event_mode: String,
    pub server_name: String,
    pub server_pid: u32,
    pub server_version: String,
    pub storage: String,
    pub storage_version: String,
    pub storage_supported_drivers: Vec<ServerStorageDriverInfo>,
    /// berth's own: the host's kernel limits checked for `instances.expected` containers,
    /// and what berthd raised.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_limits: Vec<HostLimit>,
}

/// berth's own: one kernel limit of the host as berthd found (and maybe raised) it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostLimit {
    /// The sysctl (`fs.inotify.max_user_instances`), or `subordinate ids`.
    pub name: String,
    pub value: u64,
    /// What the expected containers need.
    pub needed: u64,
    /// The value before berthd raised it, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raised_from: Option<u64>,
}

/// A storage driver the server can use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerStorageDriverInfo {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "Remote")]
    pub remote: bool,
}
