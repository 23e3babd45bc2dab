//! The REST API: transport only. A handler parses the request (names into
//! [`crate::model::names`] newtypes at the edge), makes one call into a service, and
//! renders the reply in LXD's envelopes ([`reply`]); a service's error becomes a status in
//! one place ([`error`]). Operations ([`ops`]) and websockets ([`ws`]) are the API's own
//! machinery. One file per resource; nothing below this module names axum or hyper.

mod auth;
mod backups;
mod body;
mod certificates;
mod cluster;
mod console;
mod error;
mod events;
mod exec;
mod files;
mod filter;
mod image_aliases;
mod image_transfer;
mod images;
mod instance_list;
mod instance_state;
mod instances;
mod internal;
mod logs;
mod metadata;
mod migration;
mod networks;
mod operations;
pub mod ops;
mod profiles;
mod projects;
mod reply;
mod resources;
pub mod server;
mod sftp;
mod snapshots;
mod storage_pools;
mod storage_volumes;
mod streams;
pub mod tls;
mod warnings;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_api::ErrorKind;

pub use body::{Json, field, project_param, query_param, query_value, recursion, recursion_fields};
pub use error::ApiError;
pub use reply::{
    ApiResult, async_operation, check_if_match, etag_of, if_match, inline_file, octet_stream, sync,
    sync_created, sync_empty, sync_etag, sync_raw,
};

use crate::ctx::Ctx;
use ops::Operations;

/// What handlers share: the services' context, the operations, the server's own state.
#[derive(Debug)]
pub struct Api {
    pub cx: Arc<Ctx>,
    pub ops: Operations,
    pub server: server::ServerState,
    /// The HTTPS listener and the server's certificate.
    pub https: tls::Https,
    /// Whether the `/internal/testing` endpoints are served.
    pub testing: bool,
}

/// Shared state as handlers see it.
pub type AppState = Arc<Api>;

async fn not_found() -> ApiError {
    ApiError::not_found("not found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorKind::MethodNotAllowed, "method not allowed")
}

/// `?project=` naming a project that does not exist is a 404 everywhere.
async fn check_project(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let p = project_param(req.uri().query());
    if p != berth_api::DEFAULT_PROJECT
        && let Err(e) = crate::project::get(&st.cx, &p).await
    {
        return ApiError::from(e).into_response();
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
        crate::image::images_project(&st.cx, &project)
            .await
            .map(ImageProject)
            .map_err(|e| ApiError::from(e).into_response())
    }
}

/// The host-wide name of the instance a request's path names, in the request's project
/// (see [`crate::model::names`]). A name that is no instance name (`p_c`, say) is not
/// found: it never reaches another project's instance.
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
        let raw = params
            .iter()
            .find(|(k, _)| *k == "name")
            .map(|(_, v)| v.to_owned())
            .unwrap_or_default();
        let name = crate::model::names::InstanceName::parse(&raw).map_err(|_| {
            ApiError::not_found(format!("Instance {raw:?} not found")).into_response()
        })?;
        let project = project_param(parts.uri.query());
        Ok(InstanceName(crate::model::names::host_name(
            &project, &name,
        )))
    }
}

/// A name from a request body, parsed into its newtype (a 400 naming it).
pub fn parse<T>(parse: fn(&str) -> crate::error::Result<T>, raw: &str) -> Result<T, ApiError> {
    parse(raw).map_err(ApiError::from)
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
        .route(
            "/1.0/certificates",
            get(certificates::list).post(certificates::post),
        )
        .route(
            "/1.0/certificates/{fp}",
            get(certificates::get)
                .put(certificates::put)
                .patch(certificates::patch)
                .delete(certificates::delete),
        )
        .route("/1.0/warnings", get(warnings::list))
        .route(
            "/1.0/warnings/{uuid}",
            get(warnings::get)
                .put(warnings::put)
                .patch(warnings::put)
                .delete(warnings::delete),
        )
        .route("/1.0/networks", get(networks::list).post(networks::post))
        .route(
            "/1.0/networks/{name}",
            get(networks::get)
                .put(networks::put)
                .patch(networks::patch)
                .post(networks::rename)
                .delete(networks::delete),
        )
        .route("/1.0/networks/{name}/state", get(networks::state))
        .route("/1.0/networks/{name}/leases", get(networks::leases))
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
        .route("/streams/v1/index.json", get(streams::index))
        .route("/streams/v1/images.json", get(streams::images))
        .route("/streams/v1/files/{fp}/{part}", get(streams::file))
        .route("/1.0/images/{fp}/secret", post(image_transfer::secret))
        .route(
            "/1.0/instances",
            get(instance_list::list).post(instances::post),
        )
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
            get(instance_state::get).put(instance_state::put),
        )
        .route(
            "/1.0/instances/{name}/backups",
            get(backups::list).post(backups::post),
        )
        .route(
            "/1.0/instances/{name}/backups/{backup}",
            get(backups::get)
                .post(backups::rename)
                .delete(backups::delete),
        )
        .route(
            "/1.0/instances/{name}/backups/{backup}/export",
            get(backups::export),
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
            get(files::get).post(files::post).delete(files::delete),
        )
        .route("/1.0/instances/{name}/sftp", get(files::sftp))
        .route(
            "/1.0/instances/{name}/console",
            get(console::get_log)
                .post(console::post)
                .delete(console::clear_log),
        )
        .route("/1.0/instances/{name}/logs", get(logs::list))
        .route(
            "/1.0/instances/{name}/logs/{file}",
            get(logs::get).delete(logs::delete),
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
            get(storage_volumes::list).post(storage_volumes::post),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{type}",
            get(storage_volumes::list).post(storage_volumes::post),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{type}/{vol}",
            get(storage_volumes::get)
                .put(storage_volumes::put)
                .patch(storage_volumes::patch)
                .post(storage_volumes::rename)
                .delete(storage_volumes::delete),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{type}/{vol}/state",
            get(storage_volumes::state),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{type}/{vol}/snapshots",
            get(storage_volumes::snapshots).post(storage_volumes::take_snapshot),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{type}/{vol}/snapshots/{snap}",
            get(storage_volumes::get_snapshot)
                .put(storage_volumes::put_snapshot)
                .patch(storage_volumes::put_snapshot)
                .post(storage_volumes::rename_snapshot)
                .delete(storage_volumes::delete_snapshot),
        );
    r = r
        .route(
            "/internal/recover/validate",
            post(internal::recover_validate),
        )
        .route("/internal/recover/import", post(internal::recover_import));
    if state.testing {
        r = r
            .route(
                "/internal/testing/operations",
                post(internal::create_operation),
            )
            .route(
                "/internal/testing/snapshot-schedule",
                post(internal::snapshot_schedule),
            )
            .route(
                "/internal/testing/image-cache-flush",
                post(internal::image_cache_flush),
            );
    }
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), check_project))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state)
}
