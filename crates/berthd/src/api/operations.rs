//! `/1.0/operations`: list, inspect, wait for and cancel operations; attach websockets.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Extension;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, RawQuery, State};

use crate::model::trust::Identity;
use axum::response::IntoResponse;
use berth_api::ErrorKind;

use super::ops::Op;
use super::{ApiError, ApiResult, AppState, query_param, recursion, sync, sync_empty};

/// Whether `identity` may see (and cancel) `op`: an administrator every one; a
/// restricted client those of its projects (never a token).
fn visible(identity: &Identity, op: &Op) -> bool {
    identity.is_admin() || identity.allows(crate::events::operation_project(&op.render()))
}

fn find(st: &AppState, identity: &Identity, id: &str) -> Result<std::sync::Arc<Op>, ApiError> {
    st.ops
        .get(id)
        .filter(|op| visible(identity, op))
        .ok_or_else(|| ApiError::not_found("Operation not found"))
}

/// `GET /1.0/operations`: operations grouped by lower-case status.
pub async fn list(
    State(st): State<AppState>,
    Extension(identity): Extension<Identity>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let recursive = recursion(q.as_deref())? > 0;
    let mut ops = st.ops.list();
    ops.retain(|op| visible(&identity, op));
    if recursive {
        let mut by_status: BTreeMap<String, Vec<berth_api::Operation>> = BTreeMap::new();
        for op in ops {
            let r = op.render();
            by_status
                .entry(r.status.to_lowercase())
                .or_default()
                .push(r);
        }
        Ok(sync(by_status))
    } else {
        let mut by_status: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for op in ops {
            let key = op.status().name().to_lowercase();
            by_status
                .entry(key)
                .or_default()
                .push(format!("/1.0/operations/{}", op.id()));
        }
        Ok(sync(by_status))
    }
}

/// `GET /1.0/operations/{id}`.
pub async fn get(
    State(st): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(sync(find(&st, &identity, &id)?.render()))
}

/// `DELETE /1.0/operations/{id}`: cancels the operation.
pub async fn delete(
    State(st): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
) -> ApiResult {
    let op = find(&st, &identity, &id)?;
    op.cancel()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(sync_empty())
}

/// `GET /1.0/operations/{id}/wait?timeout=N`: waits up to N seconds (-1: forever) for the
/// operation to finish, then returns it as it is.
pub async fn wait(
    State(st): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let op = find(&st, &identity, &id)?;
    let timeout = match query_param(q.as_deref(), "timeout") {
        None | Some("") | Some("-1") => None,
        Some(v) => {
            let secs: f64 = v.parse().ok().filter(|s: &f64| *s >= 0.0).ok_or_else(|| {
                ApiError::bad_request(format!("Invalid value {v:?} for parameter \"timeout\""))
            })?;
            Some(Duration::from_secs_f64(secs.min(1e9)))
        }
    };
    op.wait(timeout).await;
    Ok(sync(op.render()))
}

/// `GET /1.0/operations/{id}/websocket?secret=S`: attaches a stream of a websocket operation.
pub async fn websocket(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult {
    // The secret is the key here (an untrusted peer of a migration uses it).
    let op = find(&st, &Identity::Local, &id)?;
    let secret = query_param(q.as_deref(), "secret").unwrap_or_default();
    let ws = ws.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let fd = op
        .claim_secret(secret)
        .map_err(|e| ApiError::new(ErrorKind::Forbidden, e.to_string()))?;
    Ok(ws
        .on_upgrade(move |socket| async move {
            if let Err(e) = op.deliver(fd, socket).await {
                tracing::debug!(operation = op.id(), error = %e, "Websocket not delivered");
            }
        })
        .into_response())
}
