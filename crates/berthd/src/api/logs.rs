//! `/1.0/instances/{name}/logs`: the instance's LXC log and configuration, and the
//! recorded output of `exec` (see [`crate::instance::logs`]).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::IntoResponse;

use super::{ApiError, ApiResult, AppState, InstanceName, sync, sync_empty};
use crate::instance::logs;

/// `GET /1.0/instances/{name}/logs`.
pub async fn list(State(st): State<AppState>, InstanceName(name): InstanceName) -> ApiResult {
    let files = logs::list(&st.cx, &name).await?;
    Ok(sync(
        files
            .iter()
            .map(|f| logs::url(&name, f))
            .collect::<Vec<_>>(),
    ))
}

/// `GET /1.0/instances/{name}/logs/{file}`: the file itself, streamed.
pub async fn get(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Path((_, file)): Path<(String, String)>,
) -> ApiResult {
    let path = logs::path(&st.cx, &name, &file).await?;
    let f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        // An instance that never started has an empty LXC log, not a missing one.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && file == "lxc.log" => {
            return Ok(Body::empty().into_response());
        }
        Err(_) => return Err(ApiError::not_found(format!("Log file {file:?} not found"))),
    };
    let len = f
        .metadata()
        .await
        .map_err(|e| ApiError::internal(&e))?
        .len();
    let resp = super::inline_file(
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 16)),
        len,
        &file,
    );
    logs::retrieved(&st.cx, &name, &file);
    Ok(resp)
}

/// `DELETE /1.0/instances/{name}/logs/{file}`.
pub async fn delete(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Path((_, file)): Path<(String, String)>,
) -> ApiResult {
    logs::delete(&st.cx, &name, &file).await?;
    Ok(sync_empty())
}
