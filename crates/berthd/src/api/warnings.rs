//! `/1.0/warnings`: what the server raised about itself or its objects (see
//! [`crate::warning`]); a user acknowledges or deletes them.

use axum::extract::{Path, RawQuery, State};
use serde::Deserialize;

use super::{ApiResult, AppState, Json, query_param, recursion, sync, sync_empty};
use crate::warning;

/// The body of `PUT|PATCH /1.0/warnings/{uuid}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarningPut {
    status: String,
}

/// `GET /1.0/warnings`.
pub async fn list(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let recursive = recursion(q.as_deref())? > 0;
    let mut all = warning::list(&st.cx).await?;
    // `?project=` narrows the list; without it every project's are shown.
    if let Some(p) = query_param(q.as_deref(), "project").filter(|p| !p.is_empty()) {
        all.retain(|w| w.project == p);
    }
    if recursive {
        return Ok(sync(all));
    }
    Ok(sync(
        all.iter()
            .map(|w| format!("/1.0/warnings/{}", w.uuid))
            .collect::<Vec<_>>(),
    ))
}

/// `GET /1.0/warnings/{uuid}`.
pub async fn get(State(st): State<AppState>, Path(uuid): Path<String>) -> ApiResult {
    Ok(sync(warning::get(&st.cx, &uuid).await?))
}

/// `PUT|PATCH /1.0/warnings/{uuid}`: sets its status.
pub async fn put(
    State(st): State<AppState>,
    Path(uuid): Path<String>,
    Json(req): Json<WarningPut>,
) -> ApiResult {
    warning::set_status(&st.cx, &uuid, &req.status).await?;
    Ok(sync_empty())
}

/// `DELETE /1.0/warnings/{uuid}`.
pub async fn delete(State(st): State<AppState>, Path(uuid): Path<String>) -> ApiResult {
    warning::delete(&st.cx, &uuid).await?;
    Ok(sync_empty())
}
