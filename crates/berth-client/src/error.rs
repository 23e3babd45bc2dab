//! Client errors: each carries what a caller needs to react, an API error its HTTP status.

use berth_api::ErrorKind;

/// A failed call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error envelope.
    #[error("{message}")]
    Api {
        status: u16,
        kind: ErrorKind,
        message: String,
    },
    /// The server could not be reached.
    #[error("Failed to connect to {address}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// TLS with a remote failed (its certificate is not the one saved, say).
    #[error("{0}")]
    Tls(String),
    /// The HTTP exchange failed.
    #[error("HTTP request failed")]
    Http(#[source] hyper::Error),
    /// The websocket handshake or stream failed.
    #[error("Websocket failed")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The reply was not what the API promises.
    #[error("Invalid reply to {path}")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// A request body could not be encoded.
    #[error("Failed to encode request")]
    Encode(#[source] serde_json::Error),
    /// A local file could not be read or written.
    #[error("Failed to access {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A transfer broke off.
    #[error("Transfer failed: {0}")]
    Transfer(String),
    /// An operation finished without success.
    #[error("{message}")]
    OperationFailed { id: String, message: String },
}

impl ClientError {
    pub(crate) fn api(status: u16, message: String) -> Self {
        ClientError::Api {
            status,
            kind: ErrorKind::from_http_status(status),
            message,
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The kind of an API error.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Api { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}
