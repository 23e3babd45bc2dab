//! `/1.0/instances/{name}/snapshots`: take, list, inspect, change, rename and delete
//! snapshots; restoring one is `PUT /1.0/instances/{name}` with `restore`. See
//! [`crate::instance::snapshot`].

use axum::extract::{Path, RawQuery, State};
use serde::Deserialize;

use super::instances::render_snapshot;
use super::ops::OpSpec;
use super::{
    ApiError, ApiResult, AppState, InstanceName, Json, async_operation, etag_of, field, if_match,
    parse, recursion, sync, sync_etag,
};
use crate::instance::snapshot::{self, NewSnapshot, url};
use crate::model::names::{SnapshotName, api_name, instance_url};
use crate::model::records::{InstanceRecord, SnapshotRecord};

/// The body of `POST /1.0/instances/{name}/snapshots`.
#[derive(Debug, Default, Deserialize)]
pub struct SnapshotsPost {
    #[serde(default)]
    name: String,
    #[serde(default)]
    stateful: bool,
    #[serde(default)]
    expires_at: Option<String>,
}

/// The body of `POST /1.0/instances/{name}/snapshots/{snap}` (rename).
#[derive(Debug, Deserialize)]
pub struct SnapshotPost {
    #[serde(default)]
    name: String,
    #[serde(default)]
    migration: bool,
}

fn spec(description: &str, instance: &str, snap: &str) -> OpSpec {
    OpSpec::task(
        description,
        &[
            ("instances", instance_url(instance)),
            ("instances_snapshots", url(instance, snap)),
        ],
    )
}

fn etag(s: &SnapshotRecord) -> String {
    etag_of(&(&s.description, &s.expires_at))
}

/// A snapshot as LXD shows it, expanded through its profiles as they are now.
async fn render(st: &AppState, project: &str, s: &SnapshotRecord) -> serde_json::Value {
    let (expanded_config, expanded_devices) = snapshot::expansion(&st.cx, project, s).await;
    let mut v = render_snapshot(s);
    v["expanded_config"] = serde_json::json!(expanded_config);
    v["expanded_devices"] = serde_json::json!(expanded_devices);
    v
}

/// An instance's snapshots, rendered (for `recursion` on the instance).
pub(super) async fn rendered(
    st: &AppState,
    rec: &InstanceRecord,
) -> Result<serde_json::Value, ApiError> {
    let all = snapshot::list(&st.cx, &rec.name).await.unwrap_or_default();
    let mut out = Vec::new();
    for s in &all {
        out.push(render(st, &rec.project, s).await);
    }
    Ok(serde_json::Value::Array(out))
}

/// `GET /1.0/instances/{name}/snapshots`.
pub async fn list(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let rec = crate::instance::find(&st.cx, &name).await?;
    if recursion(q.as_deref())? > 0 {
        return Ok(sync(rendered(&st, &rec).await?));
    }
    let all = snapshot::list(&st.cx, &name).await?;
    Ok(sync(
        all.iter().map(|s| url(&name, &s.name)).collect::<Vec<_>>(),
    ))
}

/// `GET /1.0/instances/{name}/snapshots/{snap}`.
pub async fn get(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Path((_, snap)): Path<(String, String)>,
) -> ApiResult {
    let rec = crate::instance::find(&st.cx, &name).await?;
    let s = snapshot::find_snapshot(&st.cx, &name, &snap).await?;
    Ok(sync_etag(render(&st, &rec.project, &s).await, &etag(&s)))
}

/// `POST /1.0/instances/{name}/snapshots`: a copy of the instance's volume and
/// configuration, named by `snapshots.pattern` (default `snapN`, the first free N) when
/// no name is given.
pub async fn post(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Json(req): Json<SnapshotsPost>,
) -> ApiResult {
    crate::instance::find(&st.cx, &name).await?;
    let new = NewSnapshot {
        name: (!req.name.is_empty())
            .then(|| parse(SnapshotName::parse, &req.name))
            .transpose()?,
        expires_at: req.expires_at,
        stateful: req.stateful,
    };
    let uuid = snapshot::check_take(&st.cx, &name, &new).await?;
    let shown = new.name.as_deref().unwrap_or_default().to_owned();
    let cx = st.cx.clone();
    let op = st.ops.start(
        spec("Snapshotting instance", &name, &shown),
        move |_| async move {
            snapshot::take_locked(&cx, &name, &uuid, new)
                .await
                .map(drop)
        },
    );
    Ok(async_operation(op.render()))
}

/// `PUT`/`PATCH /1.0/instances/{name}/snapshots/{snap}`: description and expiry,
/// honouring `If-Match`; an operation, as LXD answers.
pub async fn put(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Path((_, snap)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> ApiResult {
    snapshot::find_snapshot(&st.cx, &name, &snap).await?;
    let description = field::<String>(&body, "description")?;
    let expires_at = field::<String>(&body, "expires_at")?;
    snapshot::update(
        &st.cx,
        &name,
        &snap,
        if_match(&headers, etag),
        description,
        expires_at,
    )
    .await?;
    let op = st
        .ops
        .start(spec("Updating snapshot", &name, &snap), |_| async {
            Ok(())
        });
    Ok(async_operation(op.render()))
}

/// `POST /1.0/instances/{name}/snapshots/{snap}`: renames a snapshot.
pub async fn rename(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Path((_, snap)): Path<(String, String)>,
    Json(req): Json<SnapshotPost>,
) -> ApiResult {
    if req.migration {
        return Err(ApiError::bad_request(
            "Migration between servers is not supported yet",
        ));
    }
    snapshot::check_exists(&st.cx, &name, &snap).await?;
    let to = parse(SnapshotName::parse, &req.name)?;
    snapshot::check_rename(&st.cx, &name, &snap, &to).await?;
    let cx = st.cx.clone();
    let op = st.ops.start(
        spec("Renaming snapshot", &name, &snap),
        move |_| async move { snapshot::rename(&cx, &name, &snap, &to).await },
    );
    Ok(async_operation(op.render()))
}

/// `DELETE /1.0/instances/{name}/snapshots/{snap}`.
pub async fn delete(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Path((_, snap)): Path<(String, String)>,
) -> ApiResult {
    snapshot::check_exists(&st.cx, &name, &snap).await?;
    let cx = st.cx.clone();
    let op = st.ops.start(
        spec("Deleting snapshot", &name, &snap),
        move |_| async move { snapshot::delete(&cx, &name, &snap).await },
    );
    Ok(async_operation(op.render()))
}

/// Restores snapshot `snap` of instance `name` (the `restore` field of a PUT): checked
/// here, so a refusal is the request's status, and again when the operation runs.
/// Clients send `SNAP` or `INSTANCE/SNAP`; another instance's snapshot is refused.
pub(super) async fn restore(st: &AppState, name: &str, snap: &str, stateful: bool) -> ApiResult {
    let snap = match snap.split_once('/') {
        Some((instance, s)) if instance == api_name(name) => s.to_owned(),
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "Snapshot {snap:?} is not one of this instance's"
            )));
        }
        None => snap.to_owned(),
    };
    snapshot::check_restore_request(&st.cx, name, &snap, stateful).await?;
    let (cx, name) = (st.cx.clone(), name.to_owned());
    let op = st.ops.start(
        spec("Restoring snapshot", &name, &snap),
        move |_| async move { snapshot::restore(&cx, &name, &snap, stateful).await },
    );
    Ok(async_operation(op.render()))
}
