//! `GET /1.0/events`: the event websocket.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::IntoResponse;
use berth_api::EventType;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, ApiResult, AppState, query_param};
use crate::events::Subscription;

/// Parses `?type=a,b`; absent or empty means every type.
fn types(query: Option<&str>) -> Result<Vec<EventType>, ApiError> {
    let raw = query_param(query, "type").unwrap_or_default();
    let raw = raw.replace("%2C", ",").replace("%2c", ",");
    if raw.is_empty() {
        return Ok(EventType::ALL.to_vec());
    }
    raw.split(',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            EventType::parse(t)
                .ok_or_else(|| ApiError::bad_request(format!("Invalid event type \"{t}\"")))
        })
        .collect()
}

/// `GET /1.0/events?type=…`.
pub async fn get(
    State(st): State<AppState>,
    axum::Extension(identity): axum::Extension<crate::model::trust::Identity>,
    RawQuery(q): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult {
    let types = types(q.as_deref())?;
    let ws = ws.map_err(|e| ApiError::bad_request(e.body_text()))?;
    // Subscribe before the upgrade completes, so nothing sent after this reply is missed.
    let sub = st.cx.events.subscribe(types);
    // Lifecycle events of one project (`?project=`, default `default`), or of all with
    // `all-projects=true`. Operation events all go out: not every operation knows its
    // project yet, and clients wait on them.
    let project = (super::query_value(q.as_deref(), "all-projects").as_deref() != Some("true"))
        .then(|| super::project_param(q.as_deref()));
    Ok(ws
        .on_upgrade(move |socket| forward(socket, sub, project, identity))
        .into_response())
}

async fn forward(
    mut socket: WebSocket,
    mut sub: Subscription,
    project: Option<String>,
    identity: crate::model::trust::Identity,
) {
    // A restricted client hears of its projects only, and no server logs.
    let restricted = !identity.is_admin();
    loop {
        tokio::select! {
            msg = sub.rx.recv() => match msg {
                Ok(msg) => {
                    let elsewhere = (msg.kind == EventType::Lifecycle
                        && project.as_ref().is_some_and(|p| *p != msg.project))
                        || (restricted
                            && (msg.kind == EventType::Logging || !identity.allows(&msg.project)));
                    if sub.wants(&msg)
                        && !elsewhere
                        && socket.send(Message::Text(msg.json.clone().into())).await.is_err()
                    {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "Dropping slow event listener");
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_filter() {
        assert_eq!(types(None).unwrap().len(), 3);
        assert_eq!(
            types(Some("type=operation,lifecycle")).unwrap(),
            vec![EventType::Operation, EventType::Lifecycle]
        );
        assert_eq!(types(Some("type=logging%2Coperation")).unwrap().len(), 2);
        assert!(types(Some("type=bogus")).is_err());
    }
}
