//! The one error type of the network drivers, and the kind the daemon maps to a status.
//!
//! Messages are one line naming the key, value, network or link at fault; a failed host
//! command keeps the command, its status and its stderr in `#[source]`.

use berth_host::CommandError;

/// What class of failure a [`NetworkError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkErrorKind {
    /// The request or the network's configuration is wrong (HTTP 400).
    InvalidConfig,
    /// Something the network needs is taken by someone else (a link, port 53).
    Conflict,
    /// The host refused an operation (HTTP 500).
    Host,
}

/// A network driver failure.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("Unknown network type {kind:?}")]
    UnknownType { kind: String },
    #[error("Unknown configuration key {key:?} for network type {kind:?}")]
    UnknownKey { kind: &'static str, key: String },
    #[error("Invalid value {value:?} for {key:?}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("Invalid network name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("No free subnet for {key:?}: every candidate overlaps a route or an address")]
    NoFreeSubnet { key: &'static str },
    #[error("A link named {name:?} exists already and is not this network's")]
    LinkTaken { name: String },
    #[error("{what} of network {network:?} failed")]
    Command {
        network: String,
        what: &'static str,
        #[source]
        source: CommandError,
    },
    #[error("dnsmasq of network {network:?} did not start: {detail}")]
    Dnsmasq { network: String, detail: String },
    #[error("Failed to {what} {}", .path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl NetworkError {
    /// The class of failure, for the daemon's mapping to a status.
    pub fn kind(&self) -> NetworkErrorKind {
        match self {
            NetworkError::UnknownType { .. }
            | NetworkError::UnknownKey { .. }
            | NetworkError::InvalidValue { .. }
            | NetworkError::InvalidName { .. }
            | NetworkError::NoFreeSubnet { .. } => NetworkErrorKind::InvalidConfig,
            NetworkError::LinkTaken { .. } | NetworkError::Dnsmasq { .. } => {
                NetworkErrorKind::Conflict
            }
            NetworkError::Command { .. } | NetworkError::Io { .. } => NetworkErrorKind::Host,
        }
    }

    pub(crate) fn invalid(key: &str, value: &str, reason: impl Into<String>) -> Self {
        NetworkError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}
