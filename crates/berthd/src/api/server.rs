//! `/` and `/1.0`: the server, its environment and its configuration.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use berth_api::ServerPut;

use super::{ApiError, ApiResult, AppState, Json, check_if_match, sync, sync_empty, sync_raw};
use crate::config;

/// `GET /`: the API versions served.
pub async fn get_root() -> axum::response::Response {
    sync(["/1.0"])
}

/// `GET /1.0`.
pub async fn get(State(st): State<AppState>) -> axum::response::Response {
    let snap = st.server();
    sync_raw(snap.body.clone(), Some(&snap.etag))
}

/// `PUT /1.0`: replaces the server configuration.
pub async fn put(
    State(st): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<ServerPut>,
) -> ApiResult {
    update(&st, &headers, |_| req.config).await
}

/// `PATCH /1.0`: merges into the server configuration; an empty value unsets a key.
pub async fn patch(
    State(st): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<ServerPut>,
) -> ApiResult {
    update(&st, &headers, |current| {
        let mut merged = current.clone();
        for (k, v) in req.config {
            if v.is_empty() {
                merged.remove(&k);
            } else {
                merged.insert(k, v);
            }
        }
        merged
    })
    .await
}

async fn update(
    st: &AppState,
    headers: &HeaderMap,
    make: impl FnOnce(&BTreeMap<String, String>) -> BTreeMap<String, String>,
) -> ApiResult {
    let _serialised = st.config_lock.lock().await;
    let current = st.server();
    check_if_match(headers, &current.etag)?;
    let mut new = make(&current.config);
    new.retain(|_, v| !v.is_empty());
    config::validate(&new).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let stored = new.clone();
    st.db
        .call(move |c| crate::db::config::replace(c, &stored))
        .await?;
    tracing::info!(keys = ?new.keys().collect::<Vec<_>>(), "Server configuration updated");
    st.set_config(new);
    st.events.lifecycle("config-updated", "/1.0", None);
    Ok(sync_empty())
}
