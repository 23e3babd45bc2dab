//! LXD's reply envelopes (`sync`, `async` with an operation, `error` in `error.rs`),
//! files served as they are, and ETags.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_api::{ErrorKind, Operation};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::error::{Failure, Kind};

/// What handlers return.
pub type ApiResult = Result<Response, ApiError>;

pub(super) fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A sync reply carrying `metadata`.
pub fn sync<T: serde::Serialize>(metadata: T) -> Response {
    json_response(StatusCode::OK, &berth_api::Response::sync(metadata))
}

/// A sync reply with an `ETag` header.
pub fn sync_etag<T: serde::Serialize>(metadata: T, etag: &str) -> Response {
    let mut resp = sync(metadata);
    set_etag(resp.headers_mut(), etag);
    resp
}

/// A sync reply with empty metadata (`{}`), as LXD sends for writes.
pub fn sync_empty() -> Response {
    sync(serde_json::Map::new())
}

/// A sync reply for a created object: `201 Created` with its `Location`, as LXD.
pub fn sync_created(location: &str) -> Response {
    let mut resp = json_response(
        StatusCode::CREATED,
        &berth_api::Response::sync(serde_json::Map::new()),
    );
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Bytes served as is (not in an envelope): `application/octet-stream` and its length.
pub fn octet_stream(body: axum::body::Body, len: u64) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// A file served as is (not in an envelope), as LXD serves logs and instance files:
/// `application/octet-stream`, its length, `inline;filename=NAME`.
pub fn inline_file(body: axum::body::Body, len: u64, filename: &str) -> Response {
    let mut resp = octet_stream(body, len);
    if let Ok(v) = HeaderValue::from_str(&format!("inline;filename={filename}")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// A pre-serialised sync reply.
pub fn sync_raw(body: bytes::Bytes, etag: Option<&str>) -> Response {
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if let Some(etag) = etag {
        set_etag(resp.headers_mut(), etag);
    }
    resp
}

/// The 202 reply for a new operation, with its `Location`.
pub fn async_operation(op: Operation) -> Response {
    let location = op.url();
    let mut resp = json_response(
        StatusCode::ACCEPTED,
        &berth_api::Response::async_operation(op),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn set_etag(headers: &mut HeaderMap, etag: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        headers.insert(header::ETAG, v);
    }
}

/// The ETag of a JSON-serialisable value: the hex SHA-256 of its JSON.
pub fn etag_of<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&json);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the request's `If-Match` (if any) names `current`.
fn matches(headers: &HeaderMap, current: &str) -> bool {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return true;
    };
    let value = value.to_str().unwrap_or_default().trim();
    value == "*" || value.trim_matches('"') == current
}

/// Refuses a write whose `If-Match` does not name the current ETag (412).
pub fn check_if_match(headers: &HeaderMap, current: &str) -> Result<(), ApiError> {
    if matches(headers, current) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorKind::PreconditionFailed,
        "ETag doesn't match",
    ))
}

/// A service precondition from the request's `If-Match`: `etag` gives an object's ETag
/// as the service sees it, under its lock.
pub fn if_match<'a, T>(
    headers: &'a HeaderMap,
    etag: impl Fn(&T) -> String + 'a,
) -> impl FnOnce(&T) -> crate::error::Result<()> + 'a {
    move |current| {
        if matches(headers, &etag(current)) {
            Ok(())
        } else {
            Err(Failure::new(Kind::Precondition, "ETag doesn't match"))
        }
    }
}
