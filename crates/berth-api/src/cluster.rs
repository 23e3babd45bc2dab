//! `GET /1.0/cluster`: berth is not clustered (yet).

use serde::{Deserialize, Serialize};

/// The cluster state of the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub server_name: String,
    pub enabled: bool,
    #[serde(default)]
    pub member_config: Vec<serde_json::Value>,
}
