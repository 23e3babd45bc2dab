//! Operations: the record of a background task, a websocket session or a token.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::status::StatusCode;

/// What kind of operation it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationClass {
    /// A background task; the client waits for it.
    Task,
    /// A task that talks to the client over websockets (exec, console, migration).
    Websocket,
    /// A secret handed to a third party (trust and join tokens).
    Token,
}

/// An operation as `GET /1.0/operations/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    pub class: OperationClass,
    #[serde(default)]
    pub description: String,
    pub created_at: String,
    pub updated_at: String,
    pub status: String,
    pub status_code: StatusCode,
    /// Objects the operation acts on, by type: `{"instances": ["/1.0/instances/c1"]}`.
    #[serde(default)]
    pub resources: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub may_cancel: bool,
    #[serde(default)]
    pub err: String,
    #[serde(default)]
    pub location: String,
}

impl Operation {
    /// The operation's path, as sent in `operation` fields and `Location` headers.
    pub fn url(&self) -> String {
        format!("/1.0/operations/{}", self.id)
    }
}
