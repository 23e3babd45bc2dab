//! `GET /1.0/warnings`: the server's warnings.

use serde::{Deserialize, Serialize};

/// A warning the server raised about itself or an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    pub uuid: String,
    pub location: String,
    pub project: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub count: u64,
    pub first_seen_at: String,
    pub last_seen_at: String,
    pub last_message: String,
    pub severity: String,
    pub status: String,
    pub entity_url: String,
}
