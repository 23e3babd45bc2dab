//! The one place an error becomes an HTTP status and LXD's error envelope.
//!
//! Services return [`crate::error::Failure`]; its kind picks the status here. An internal
//! failure is logged in full (with its causes) and shown as its one line.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_api::ErrorKind;

use crate::error::{Failure, Kind};

/// An error reply: an error kind and one line for the user.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// A failure of the transport itself (a body that cannot be read, a task that died):
    /// logged in full, reported as one line.
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        let message = crate::error::chain(err);
        tracing::error!(error = %message, "Request failed");
        Self::new(ErrorKind::Internal, message)
    }
}

/// The HTTP error kind of a service error's kind.
fn kind(k: Kind) -> ErrorKind {
    match k {
        Kind::NotFound => ErrorKind::NotFound,
        Kind::AlreadyExists => ErrorKind::AlreadyExists,
        Kind::Conflict => ErrorKind::Conflict,
        Kind::Invalid => ErrorKind::InvalidRequest,
        Kind::Forbidden => ErrorKind::Forbidden,
        Kind::Precondition => ErrorKind::PreconditionFailed,
        Kind::Unavailable => ErrorKind::Unavailable,
        Kind::Internal => ErrorKind::Internal,
    }
}

impl From<Failure> for ApiError {
    fn from(e: Failure) -> Self {
        if e.kind() == Kind::Internal {
            tracing::error!(error = %crate::error::chain(&e), "Request failed");
        }
        ApiError::new(kind(e.kind()), e.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.kind.http_status();
        let body = berth_api::Response::error(code, self.message);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        super::reply::json_response(status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_statuses() {
        for (k, status) in [
            (Kind::NotFound, 404),
            (Kind::AlreadyExists, 409),
            (Kind::Conflict, 409),
            (Kind::Invalid, 400),
            (Kind::Forbidden, 403),
            (Kind::Precondition, 412),
            (Kind::Unavailable, 503),
            (Kind::Internal, 500),
        ] {
            let e: ApiError = Failure::new(k, "x").into();
            assert_eq!(e.kind.http_status(), status, "{k:?}");
        }
    }

    #[test]
    fn database_constraints_reach_users_as_conflicts() {
        let e: ApiError = Failure::from(crate::db::DbError::Exists {
            table: "image_aliases".into(),
        })
        .into();
        assert_eq!(e.kind.http_status(), 409);
        assert!(!e.message.contains("UNIQUE"), "{}", e.message);
    }
}
