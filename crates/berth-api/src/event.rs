//! Events sent on the `/1.0/events` websocket.

use serde::{Deserialize, Serialize};

/// The type of an event, also the values of `?type=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Logging,
    Operation,
    Lifecycle,
}

impl EventType {
    /// Every type, the default subscription.
    pub const ALL: [EventType; 3] = [Self::Logging, Self::Operation, Self::Lifecycle];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logging => "logging",
            Self::Operation => "operation",
            Self::Lifecycle => "lifecycle",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One event: `{type, timestamp, metadata, location, project}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub timestamp: String,
    pub metadata: serde_json::Value,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub project: String,
}

/// The metadata of a `lifecycle` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLifecycle {
    /// `instance-created`, `config-updated`, …
    pub action: String,
    /// The object's URL.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requestor: Option<EventLifecycleRequestor>,
}

/// Who asked for a lifecycle change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLifecycleRequestor {
    pub username: String,
    pub protocol: String,
    #[serde(default)]
    pub address: String,
}

/// The metadata of a `logging` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLogging {
    pub message: String,
    /// `debug`, `info`, `warning`, `error`.
    pub level: String,
    #[serde(default)]
    pub context: std::collections::BTreeMap<String, String>,
}
