//! Projects. Only `default` exists for now.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A project as `GET /1.0/projects/{name}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub used_by: Vec<String>,
}
