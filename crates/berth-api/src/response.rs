//! The response envelope every `/1.0` reply is wrapped in.
//!
//! LXD serialises all seven fields on every reply (no omitempty), so we do too: some clients
//! read `operation` or `error_code` on a sync reply.

use serde::{Deserialize, Serialize};

use crate::operation::Operation;
use crate::status::StatusCode;

/// The `type` of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseType {
    Sync,
    Async,
    Error,
}

/// The envelope: `{type, status, status_code, operation, error_code, error, metadata}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response<T = serde_json::Value> {
    #[serde(rename = "type")]
    pub kind: ResponseType,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub status_code: u16,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub error_code: u16,
    #[serde(default)]
    pub error: String,
    pub metadata: T,
}

impl<T> Response<T> {
    /// The id of the operation an async reply names.
    pub fn operation_id(&self) -> Option<&str> {
        self.operation
            .rsplit('/')
            .next()
            .filter(|id| !id.is_empty())
    }

    /// A sync success reply carrying `metadata`.
    pub fn sync(metadata: T) -> Self {
        Response {
            kind: ResponseType::Sync,
            status: StatusCode::Success.name().to_owned(),
            status_code: StatusCode::Success.code(),
            operation: String::new(),
            error_code: 0,
            error: String::new(),
            metadata,
        }
    }
}

impl Response<Operation> {
    /// An async reply for a just-created operation (HTTP 202, `Location` set by the server).
    pub fn async_operation(op: Operation) -> Self {
        Response {
            kind: ResponseType::Async,
            status: StatusCode::OperationCreated.name().to_owned(),
            status_code: StatusCode::OperationCreated.code(),
            operation: op.url(),
            error_code: 0,
            error: String::new(),
            metadata: op,
        }
    }
}

impl Response<serde_json::Value> {
    /// An error reply: `metadata` is null, as LXD sends it.
    pub fn error(code: u16, message: impl Into<String>) -> Self {
        Response {
            kind: ResponseType::Error,
            status: String::new(),
            status_code: 0,
            operation: String::new(),
            error_code: code,
            error: message.into(),
            metadata: serde_json::Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_envelope_has_every_field() {
        let v = serde_json::to_value(Response::sync(serde_json::json!({"a": 1}))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "sync", "status": "Success", "status_code": 200,
                "operation": "", "error_code": 0, "error": "", "metadata": {"a": 1}})
        );
    }

    #[test]
    fn error_envelope() {
        let v = serde_json::to_value(Response::error(404, "not found")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "error", "status": "", "status_code": 0,
                "operation": "", "error_code": 404, "error": "not found", "metadata": null})
        );
    }
}
