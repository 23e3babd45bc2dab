//! `/1.0/instances/{name}/state`: an instance's state, and power changes (start, stop,
//! restart, freeze, unfreeze; stateful stop and start). See [`crate::instance::state`].

use axum::extract::State;
use berth_api::instance::InstanceStatePut;

use super::instances::spec;
use super::{ApiResult, AppState, InstanceName, Json, async_operation, sync};
use crate::instance::{self, query, state};

/// `GET /1.0/instances/{name}/state`.
pub async fn get(State(st): State<AppState>, InstanceName(name): InstanceName) -> ApiResult {
    let rec = instance::find(&st.cx, &name).await?;
    Ok(sync(query::state(&st.cx, &rec).await))
}

/// `PUT /1.0/instances/{name}/state`: the change runs in an operation; a stateful one is
/// checked before the reply.
pub async fn put(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Json(req): Json<InstanceStatePut>,
) -> ApiResult {
    let rec = instance::find(&st.cx, &name).await?;
    let description = state::describe(&req.action)?;
    if req.stateful {
        state::check_stateful(&st.cx, &rec, &req.action).await?;
    }
    let cx = st.cx.clone();
    let op = st.ops.start(spec(description, &name), move |_| async move {
        state::change_locked(&cx, &rec, &req).await
    });
    Ok(async_operation(op.render()))
}
