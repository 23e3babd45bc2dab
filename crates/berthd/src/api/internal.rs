//! `/internal/recover/*`: recovery of what the database lost (see
//! [`crate::instance::recover`]); and `/internal/testing/*`: endpoints the end-to-end
//! tests use to drive the operation machinery and the snapshot scheduler directly, served
//! only when berthd runs with `--testing`.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::Message;
use berth_api::OperationClass;
use serde::Deserialize;

use super::ops::OpSpec;
use super::{ApiResult, AppState, Json, async_operation};

/// What operation to create.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestOperation {
    #[serde(default = "task")]
    class: OperationClass,
    /// How long a task runs, in milliseconds.
    #[serde(default)]
    duration_ms: u64,
    #[serde(default)]
    may_cancel: bool,
    /// When set, the task fails with this message.
    #[serde(default)]
    fail: Option<String>,
}

fn task() -> OperationClass {
    OperationClass::Task
}

/// `POST /internal/testing/operations`: a task that sleeps then succeeds or fails, or a
/// websocket operation that echoes what it receives on stream `0` until that stream closes.
pub async fn create_operation(
    State(st): State<AppState>,
    Json(req): Json<TestOperation>,
) -> ApiResult {
    // A task says what it does from the start: a client asking right after the reply
    // sees it, however soon the task first runs.
    let mut metadata = serde_json::Map::new();
    if req.class != OperationClass::Websocket {
        metadata.insert("progress".to_owned(), "sleeping".into());
    }
    let spec = OpSpec {
        class: req.class,
        description: "Testing operation".to_owned(),
        resources: None,
        may_cancel: req.may_cancel,
        metadata,
        fds: if req.class == OperationClass::Websocket {
            vec!["0".to_owned(), "control".to_owned()]
        } else {
            vec![]
        },
        fds_at_top: false,
    };
    let op = st.ops.start(spec, move |mut ctx| async move {
        if req.class == OperationClass::Websocket {
            while let Some((fd, mut socket)) = ctx.accept().await {
                if fd != "0" {
                    continue;
                }
                while let Some(Ok(msg)) = socket.recv().await {
                    let echo = matches!(msg, Message::Binary(_) | Message::Text(_));
                    if matches!(msg, Message::Close(_)) || (echo && socket.send(msg).await.is_err())
                    {
                        break;
                    }
                }
                return Ok(());
            }
            return Err(crate::error::Failure::internal(
                "Websocket operation ended before stream 0 connected",
            ));
        }
        tokio::time::sleep(Duration::from_millis(req.duration_ms)).await;
        match req.fail {
            Some(msg) => Err(crate::error::Failure::internal(msg)),
            None => Ok(()),
        }
    });
    Ok(async_operation(op.render()))
}

/// The body of `POST /internal/testing/snapshot-schedule`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulePass {
    /// The minute to run the pass for (RFC 3339).
    at: String,
}

impl SchedulePass {
    fn at(&self) -> Result<chrono::DateTime<chrono::Utc>, super::ApiError> {
        chrono::DateTime::parse_from_rfc3339(&self.at)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| super::ApiError::bad_request(format!("Invalid \"at\": {e}")))
    }
}

/// `POST /internal/testing/snapshot-schedule`: runs one pass of the snapshot scheduler now,
/// as if at minute `at` (scheduled snapshots and expiry), and returns when it is done.
pub async fn snapshot_schedule(
    State(st): State<AppState>,
    Json(req): Json<SchedulePass>,
) -> ApiResult {
    crate::instance::snapshot::scheduled_pass(&st.cx, req.at()?).await;
    Ok(super::sync_empty())
}

/// `POST /internal/testing/image-cache-flush`: flushes the unused cached images now, as if
/// at `at`, and returns how many went.
pub async fn image_cache_flush(
    State(st): State<AppState>,
    Json(req): Json<SchedulePass>,
) -> ApiResult {
    let gone = crate::image::cache::flush(&st.cx, req.at()?).await?;
    Ok(super::sync(serde_json::json!({ "flushed": gone })))
}

/// `POST /internal/recover/validate`: the volumes the pools hold that the database does
/// not know, and what would keep them from coming back (`lxc admin recover`'s first step).
pub async fn recover_validate(
    State(st): State<AppState>,
    Json(req): Json<berth_api::backup::RecoverPost>,
) -> ApiResult {
    let found = crate::instance::recover::validate(&st.cx, &req.pools).await?;
    Ok(super::sync(found))
}

/// `POST /internal/recover/import`: brings them back.
pub async fn recover_import(
    State(st): State<AppState>,
    Json(req): Json<berth_api::backup::RecoverPost>,
) -> ApiResult {
    crate::instance::recover::import(&st.cx, &req.pools).await?;
    Ok(super::sync_empty())
}
