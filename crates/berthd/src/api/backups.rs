//! `/1.0/instances/{name}/backups`: backups made, listed, renamed, deleted and exported;
//! a backup streamed straight to the client (`Accept: application/octet-stream`, Incus's
//! `direct_backup`); and `POST /1.0/instances` with a backup tarball as its body, imported
//! as it arrives. See [`crate::instance::backup`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::header;
use axum::response::IntoResponse;
use berth_api::backup::{InstanceBackupPost, InstanceBackupsPost};
use futures_util::{StreamExt, TryStreamExt};

use super::ops::{OpCtx, OpSpec};
use super::{
    ApiError, ApiResult, AppState, InstanceName, Json, async_operation, project_param, recursion,
    sync,
};
use crate::instance::backup::{self, NewBackup, import};
use crate::model::names::instance_url;

/// An operation on a backup. Its `backups` resource is `/1.0/backups/NAME`: LXD 5.0's
/// `lxc export` strips that prefix to find the name, Incus's takes the last component.
fn spec(description: &str, instance: &str, backup: &str) -> OpSpec {
    OpSpec::task(
        description,
        &[
            ("instances", instance_url(instance)),
            ("backups", format!("/1.0/backups/{backup}")),
        ],
    )
}

/// `GET /1.0/instances/{name}/backups`.
pub async fn list(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let all = backup::list(&st.cx, &name).await?;
    if recursion(q.as_deref())? > 0 {
        return Ok(sync(all.iter().map(backup::render).collect::<Vec<_>>()));
    }
    Ok(sync(
        all.iter()
            .map(|b| backup::url(&name, &b.name))
            .collect::<Vec<_>>(),
    ))
}

/// `POST /1.0/instances/{name}/backups`: a backup file made by an operation, or, when the
/// client accepts `application/octet-stream`, the tarball streamed in the reply and kept
/// nowhere.
pub async fn post(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    headers: axum::http::HeaderMap,
    Json(req): Json<InstanceBackupsPost>,
) -> ApiResult {
    let new = NewBackup {
        name: Some(req.name),
        expires_at: req.expires_at,
        instance_only: req.instance_only || req.container_only,
        optimized: req.optimized_storage,
        compression: req.compression_algorithm,
    };
    let direct = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/octet-stream"));
    let planned = backup::plan(&st.cx, &name, new).await?;
    if direct {
        return Ok(stream(&st, planned));
    }
    let cx = st.cx.clone();
    let shown = planned.record.name.clone();
    let op = st.ops.start(
        spec("Backing up instance", &name, &shown),
        move |ctx: OpCtx| async move {
            let set = ctx.metadata_setter();
            let progress = move |bytes: u64| {
                let mut md = serde_json::Map::new();
                md.insert(
                    "create_backup_progress".into(),
                    serde_json::json!(format!("{bytes} bytes")),
                );
                set(md);
            };
            backup::create(&cx, planned, progress).await
        },
    );
    Ok(async_operation(op.render()))
}

/// The backup written into the reply as it is made; a failure half-way ends the body
/// with an error, so the client sees a broken transfer rather than a short tarball.
fn stream(st: &AppState, planned: backup::Planned) -> axum::response::Response {
    let (reader, writer) = tokio::io::duplex(1 << 20);
    let cx = st.cx.clone();
    let task = tokio::spawn(async move {
        let out = tokio_util::io::SyncIoBridge::new(writer);
        backup::write_to(&cx, &planned, out, |_| {}).await
    });
    let tail = futures_util::stream::once(async move {
        match task.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Err(std::io::Error::other(e.message().to_owned()))),
            Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
        }
    })
    .filter_map(|x| async move { x });
    let body = tokio_util::io::ReaderStream::with_capacity(reader, 1 << 16).chain(tail);
    let mut resp = Body::from_stream(body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

/// `GET /1.0/instances/{name}/backups/{backup}`.
pub async fn get(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Path((_, b)): Path<(String, String)>,
) -> ApiResult {
    let rec = backup::get(&st.cx, &name, &b).await?;
    Ok(sync(backup::render(&rec)))
}

/// `POST /1.0/instances/{name}/backups/{backup}`: a rename (an operation, as LXD answers).
pub async fn rename(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Path((_, b)): Path<(String, String)>,
    Json(req): Json<InstanceBackupPost>,
) -> ApiResult {
    backup::get(&st.cx, &name, &b).await?;
    backup::check_name(&req.name)?;
    let cx = st.cx.clone();
    let op = st.ops.start(
        spec("Renaming instance backup", &name, &b),
        move |_| async move { backup::rename(&cx, &name, &b, &req.name).await },
    );
    Ok(async_operation(op.render()))
}

/// `DELETE /1.0/instances/{name}/backups/{backup}` (an operation, as LXD answers).
pub async fn delete(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Path((_, b)): Path<(String, String)>,
) -> ApiResult {
    backup::get(&st.cx, &name, &b).await?;
    let cx = st.cx.clone();
    let op = st.ops.start(
        spec("Deleting instance backup", &name, &b),
        move |_| async move { backup::delete(&cx, &name, &b).await },
    );
    Ok(async_operation(op.render()))
}

/// `GET /1.0/instances/{name}/backups/{backup}/export`: the tarball.
pub async fn export(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Path((_, b)): Path<(String, String)>,
) -> ApiResult {
    let (path, len) = backup::file(&st.cx, &name, &b).await?;
    let (_, body) = super::images::file_stream(path).await?;
    Ok(super::octet_stream(body, len))
}

/// The header naming the imported instance or its pool, as LXD or Incus clients send it.
fn header_value(headers: &axum::http::HeaderMap, what: &str) -> Option<String> {
    ["X-Incus-", "X-LXD-"]
        .iter()
        .find_map(|p| headers.get(format!("{p}{what}")))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|v| !v.is_empty())
}

/// `POST /1.0/instances` with `Content-Type: application/octet-stream`: the body is a
/// backup, imported as it is read (the whole body is read before the reply, which is an
/// operation that has already ended, as clients wait on one).
pub async fn import(st: &AppState, q: Option<&str>, req: Request) -> ApiResult {
    let project = project_param(q);
    let headers = req.headers().clone();
    let target = import::Target {
        project,
        name: header_value(&headers, "name"),
        pool: header_value(&headers, "pool"),
    };
    let body = req
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(body);
    let cx: Arc<crate::ctx::Ctx> = st.cx.clone();
    let rt = tokio::runtime::Handle::current();
    let name = tokio::task::spawn_blocking(move || {
        let mut input = tokio_util::io::SyncIoBridge::new(reader);
        let result = import::import(&cx, &rt, &target, &mut input);
        // Whatever the outcome, the client's upload is read to its end before the reply.
        let _ = std::io::copy(&mut input, &mut std::io::sink());
        result
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    let op = st.ops.start(
        super::instances::spec("Creating instance", &name),
        |_| async { Ok(()) },
    );
    Ok(async_operation(op.render()))
}
