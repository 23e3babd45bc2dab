//! The REST API: routes, the response envelopes, request parsing and error mapping.
//!
//! One file per resource. Handlers return [`ApiResult`]; [`ApiError`] is the one place where
//! an error kind becomes an HTTP status and LXD's error envelope. Bodies are parsed with
//! [`Json`], which refuses bodies over [`BODY_LIMIT`] with 413 and names the offending field
//! on a type error.

mod cluster;
mod events;
mod exec;
mod filter;
mod image_aliases;
mod images;
pub mod instance_console;
pub mod instance_files;
pub mod instance_logs;
pub mod instances;
mod internal;
pub mod metadata;
mod operations;
pub mod profiles;
mod projects;
mod resources;
mod server;
pub mod snapshots;
mod storage_pools;
mod warnings;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_api::{ErrorKind, Operation};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::state::State;

/// The largest JSON body berthd accepts.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// How much of an oversized body is read (and dropped) before replying 413. Replying while the
/// client still writes makes it see a broken pipe instead of the error, so a moderately
/// oversized body is drained first; beyond this the connection is simply closed.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Shared state as handlers see it.
pub type AppState = Arc<State>;

/// What handlers return.
pub type ApiResult = Result<Response, ApiError>;

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

    /// An internal failure: logged in full, reported as one line.
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        let message = crate::logging::chain(err);
        tracing::error!(error = %message, "Request failed");
        Self::new(ErrorKind::Internal, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.kind.http_status();
        let body = berth_api::Response::error(code, self.message);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(status, &body)
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        ApiError::internal(&e)
    }
}

fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
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

/// A file served as is (not in an envelope), as LXD serves logs and instance files:
/// `application/octet-stream`, its length, `inline;filename=NAME`.
pub fn inline_file(body: axum::body::Body, len: u64, filename: &str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("inline;filename={filename}")) {
        h.insert(header::CONTENT_DISPOSITION, v);
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

/// Refuses a write whose `If-Match` does not name the current ETag (412).
pub fn check_if_match(headers: &HeaderMap, current: &str) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let value = value.to_str().unwrap_or_default().trim();
    if value == "*" || value.trim_matches('"') == current {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorKind::PreconditionFailed,
        "ETag doesn't match",
    ))
}

/// The value of query parameter `name`, if given.
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// A query parameter's value, URL-decoded (`%2F`, `+`).
pub fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query_param(query, name).map(|raw| {
        url::form_urlencoded::parse(format!("v={raw}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    })
}

/// `?recursion=N`, 0 when absent.
pub fn recursion(query: Option<&str>) -> Result<u8, ApiError> {
    match query_param(query, "recursion") {
        None | Some("") => Ok(0),
        Some(v) => v.parse().map_err(|_| {
            ApiError::bad_request(format!("Invalid value {v:?} for parameter \"recursion\""))
        }),
    }
}

/// A JSON request body, at most [`BODY_LIMIT`] bytes.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let too_large = || {
            ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!("Request body is larger than {BODY_LIMIT} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut body = req.into_body();
        if declared.is_some_and(|n| n > DRAIN_LIMIT) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::bad_request(format!("Failed to read request: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            total += data.len();
            if total > DRAIN_LIMIT {
                return Err(too_large());
            }
            if total <= BODY_LIMIT {
                bytes.extend_from_slice(&data);
            }
        }
        if total > BODY_LIMIT {
            return Err(too_large());
        }
        parse_json(&bytes).map(Json)
    }
}

/// Parses JSON, naming the field at fault when a value has the wrong type.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = if inner.is_syntax() || inner.is_eof() {
            format!("Invalid JSON: {inner}")
        } else if path == "." || path.is_empty() {
            format!("Invalid request: {inner}")
        } else {
            format!("Invalid value for field \"{path}\": {inner}")
        };
        ApiError::bad_request(msg)
    })
}

async fn not_found() -> ApiError {
    ApiError::not_found("not found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorKind::MethodNotAllowed, "method not allowed")
}

/// The project a request names with `?project=` (`default` when absent).
pub fn project_param(query: Option<&str>) -> String {
    query_param(query, "project")
        .map(str::to_owned)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| berth_api::DEFAULT_PROJECT.to_owned())
}

/// `?project=` naming a project that does not exist is a 404 everywhere.
async fn check_project(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let p = project_param(req.uri().query());
    if p != berth_api::DEFAULT_PROJECT {
        let name = p.clone();
        match st
            .db
            .call(move |c| crate::db::instances::project(c, &name))
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => {
                return ApiError::not_found(format!("Project \"{p}\" not found")).into_response();
            }
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    next.run(req).await
}

/// The project whose images a request works on: the request's own with
/// `features.images=true`, else `default`.
#[derive(Debug)]
pub struct ImageProject(pub String);

impl axum::extract::FromRequestParts<AppState> for ImageProject {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let project = project_param(parts.uri.query());
        images_project_of(st, &project)
            .await
            .map(ImageProject)
            .map_err(IntoResponse::into_response)
    }
}

/// The project whose images `project`'s requests and instances use.
pub async fn images_project_of(st: &AppState, project: &str) -> Result<String, ApiError> {
    if project == berth_api::DEFAULT_PROJECT {
        return Ok(project.to_owned());
    }
    let p = project.to_owned();
    let rec = st
        .db
        .call(move |c| crate::db::instances::project(c, &p))
        .await?;
    Ok(rec.map_or_else(
        || berth_api::DEFAULT_PROJECT.to_owned(),
        |r| r.images_project().to_owned(),
    ))
}

/// The URL of an image (or alias) of `project`: `/1.0/images/FP` plus `?project=` when
/// not `default`.
pub fn image_url(path: &str, project: &str) -> String {
    if project == berth_api::DEFAULT_PROJECT {
        path.to_owned()
    } else {
        format!("{path}?project={project}")
    }
}

/// The host-wide name of the instance a request's path names, in the request's project
/// (see [`crate::db::instances`]).
#[derive(Debug)]
pub struct InstanceName(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for InstanceName {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let params = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let name = params
            .iter()
            .find(|(k, _)| *k == "name")
            .map(|(_, v)| v.to_owned())
            .unwrap_or_default();
        // A name that is no instance name (`p_c`, say) never reaches another project's
        // instance.
        if crate::instances::validate_name(&name).is_err() {
            return Err(ApiError::not_found(format!("Instance {name:?} not found")).into_response());
        }
        let project = project_param(parts.uri.query());
        Ok(InstanceName(crate::db::instances::host_name(
            &project, &name,
        )))
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let mut r = Router::new()
        .route("/", get(server::get_root))
        .route(
            "/1.0",
            get(server::get).put(server::put).patch(server::patch),
        )
        .route("/1.0/operations", get(operations::list))
        .route(
            "/1.0/operations/{id}",
            get(operations::get).delete(operations::delete),
        )
        .route("/1.0/operations/{id}/wait", get(operations::wait))
        .route("/1.0/operations/{id}/websocket", get(operations::websocket))
        .route("/1.0/events", get(events::get))
        .route("/1.0/projects", get(projects::list).post(projects::post))
        .route(
            "/1.0/projects/{name}",
            get(projects::get)
                .put(projects::put)
                .patch(projects::patch)
                .delete(projects::delete)
                .post(projects::rename),
        )
        .route("/1.0/projects/{name}/state", get(projects::state))
        .route("/1.0/cluster", get(cluster::get))
        .route("/1.0/warnings", get(warnings::list))
        .route("/1.0/warnings/{uuid}", get(warnings::get))
        .route("/1.0/resources", get(resources::get))
        .route(
            "/1.0/images",
            get(images::list)
                .post(images::post)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/1.0/images/aliases",
            get(image_aliases::list).post(image_aliases::post),
        )
        .route(
            // Alias names may hold slashes (`debian/12`), as LXD's.
            "/1.0/images/aliases/{*name}",
            get(image_aliases::get)
                .put(image_aliases::put)
                .patch(image_aliases::patch)
                .post(image_aliases::rename)
                .delete(image_aliases::delete),
        )
        .route(
            "/1.0/images/{fp}",
            get(images::get)
                .put(images::put)
                .patch(images::patch)
                .delete(images::delete),
        )
        .route("/1.0/images/{fp}/export", get(images::export))
        .route("/1.0/instances", get(instances::list).post(instances::post))
        .route(
            "/1.0/instances/{name}",
            get(instances::get)
                .put(instances::put)
                .patch(instances::patch)
                .post(instances::rename)
                .delete(instances::delete),
        )
        .route(
            "/1.0/instances/{name}/state",
            get(instances::get_state).put(instances::put_state),
        )
        .route(
            "/1.0/instances/{name}/snapshots",
            get(snapshots::list).post(snapshots::post),
        )
        .route(
            "/1.0/instances/{name}/snapshots/{snap}",
            get(snapshots::get)
                .put(snapshots::put)
                .patch(snapshots::put)
                .post(snapshots::rename)
                .delete(snapshots::delete),
        )
        .route("/1.0/instances/{name}/exec", post(exec::post))
        .route(
            "/1.0/instances/{name}/files",
            get(instance_files::get)
                .post(instance_files::post)
                .delete(instance_files::delete),
        )
        .route("/1.0/instances/{name}/sftp", get(instance_files::sftp))
        .route(
            "/1.0/instances/{name}/console",
            get(instance_console::get_log)
                .post(instance_console::post)
                .delete(instance_console::clear_log),
        )
        .route("/1.0/instances/{name}/logs", get(instance_logs::list))
        .route(
            "/1.0/instances/{name}/logs/{file}",
            get(instance_logs::get).delete(instance_logs::delete),
        )
        .route("/1.0/metadata/configuration", get(metadata::configuration))
        .route("/1.0/profiles", get(profiles::list).post(profiles::post))
        .route(
            "/1.0/profiles/{name}",
            get(profiles::get)
                .put(profiles::put)
                .patch(profiles::patch)
                .delete(profiles::delete)
                .post(profiles::rename),
        )
        .route(
            "/1.0/storage-pools",
            get(storage_pools::list).post(storage_pools::post),
        )
        .route(
            "/1.0/storage-pools/{name}",
            get(storage_pools::get)
                .put(storage_pools::put)
                .patch(storage_pools::patch)
                .delete(storage_pools::delete),
        )
        .route(
            "/1.0/storage-pools/{name}/resources",
            get(storage_pools::resources),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes",
            get(storage_pools::volumes),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{type}",
            get(storage_pools::volumes),
        );
    if state.testing {
        r = r
            .route(
                "/internal/testing/operations",
                post(internal::create_operation),
            )
            .route(
                "/internal/testing/snapshot-schedule",
                post(internal::snapshot_schedule),
            );
    }
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), check_project))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Put {
        config: std::collections::BTreeMap<String, String>,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Put>(br#"{"config": {"a": 1}}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(e.message.contains("\"config.a\""), "{}", e.message);
        let e = parse_json::<Put>(b"{not json").unwrap_err();
        assert!(e.message.starts_with("Invalid JSON"), "{}", e.message);
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("a=1&recursion=2"), "recursion"), Some("2"));
        assert_eq!(query_param(Some("project"), "project"), Some(""));
        assert_eq!(query_param(None, "x"), None);
        assert_eq!(recursion(Some("recursion=1")).unwrap(), 1);
        assert!(recursion(Some("recursion=x")).is_err());
    }
}
