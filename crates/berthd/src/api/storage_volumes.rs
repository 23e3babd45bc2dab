//! `/1.0/storage-pools/{pool}/volumes…`: the volumes of a pool, and custom volumes made,
//! copied, changed, renamed, moved and deleted, with their snapshots (see
//! [`crate::storage::volume`]). Instances' volumes are shown here and managed through
//! their instance.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use berth_api::storage::{
    StorageVolumePost, StorageVolumePut, StorageVolumeSnapshot, StorageVolumeSnapshotPut,
    StorageVolumeSnapshotsPost, StorageVolumeState, StorageVolumeStateUsage, StorageVolumesPost,
};
use serde::Deserialize;

use super::ops::OpSpec;
use super::{
    ApiError, ApiResult, AppState, Json, async_operation, etag_of, if_match, parse, project_param,
    query_param, recursion, sync, sync_created, sync_empty, sync_etag,
};
use crate::model::names::{SnapshotName, VolumeName};
use crate::model::records::{VolumeRecord, VolumeSnapshotRecord};
use crate::storage::volume::{self, CUSTOM, NewVolume, Scope};
use crate::storage::volume_copy::{self, Source};
use crate::storage::volume_snapshot::{self, snapshot_url};
use crate::time::NEVER;

/// `/storage-pools/{name}/volumes/{type}/{vol}[/snapshots/{snap}]`.
#[derive(Debug, Deserialize)]
pub struct VolumePath {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    vol: String,
    #[serde(default)]
    snap: String,
}

/// `/storage-pools/{name}/volumes[/{type}]`.
#[derive(Debug, Deserialize)]
pub struct PoolPath {
    name: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

fn custom_only(kind: &str) -> Result<(), ApiError> {
    match kind {
        CUSTOM => Ok(()),
        "container" | "image" | "virtual-machine" => Err(ApiError::bad_request(format!(
            "Storage volumes of type {kind:?} are managed through their instance or image"
        ))),
        other => Err(ApiError::bad_request(format!(
            "Invalid storage volume type {other:?}"
        ))),
    }
}

async fn scope_of(st: &AppState, pool: &str, q: Option<&str>) -> Result<Scope, ApiError> {
    Ok(volume::scope(&st.cx, pool, &project_param(q)).await?)
}

fn etag(v: &VolumeRecord) -> String {
    etag_of(&(&v.description, &v.config))
}

fn snapshot_etag(s: &VolumeSnapshotRecord) -> String {
    etag_of(&(&s.description, &s.expires_at))
}

/// `GET /1.0/storage-pools/{name}/volumes[/{type}]`.
pub async fn list(
    State(st): State<AppState>,
    Path(path): Path<PoolPath>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let q = q.as_deref();
    let every = query_param(q, "all-projects") == Some("true");
    let project = (!every).then(|| project_param(q));
    let vols = volume::list(&st.cx, &path.name, project.as_deref(), path.kind).await?;
    if recursion(q)? > 0 {
        return Ok(sync(vols));
    }
    Ok(sync(
        vols.iter()
            .map(|v| {
                crate::model::names::with_project(
                    &format!(
                        "/1.0/storage-pools/{}/volumes/{}/{}",
                        path.name, v.kind, v.name
                    ),
                    &v.project,
                )
            })
            .collect::<Vec<_>>(),
    ))
}

/// `POST /1.0/storage-pools/{name}/volumes[/{type}]`: an empty custom volume (sync), or
/// a copy of one or of its snapshot (`source.type=copy`, an operation).
pub async fn post(
    State(st): State<AppState>,
    Path(path): Path<PoolPath>,
    RawQuery(q): RawQuery,
    Json(req): Json<StorageVolumesPost>,
) -> ApiResult {
    let kind = path.kind.clone().unwrap_or_else(|| req.kind.clone());
    custom_only(if kind.is_empty() { CUSTOM } else { &kind })?;
    volume::check_content_type(&req.content_type)?;
    let name = parse(VolumeName::parse, &req.name)?;
    let scope = scope_of(&st, &path.name, q.as_deref()).await?;
    let new = NewVolume {
        name,
        description: req.description,
        config: req.config,
    };
    match req.source.kind.as_str() {
        "" | "none" => {
            volume::create(&st.cx, &scope, new).await?;
            Ok(sync_empty())
        }
        "copy" => {
            if req.source.refresh {
                return Err(ApiError::bad_request(
                    "Refreshing a copied storage volume is not supported yet",
                ));
            }
            let from_pool = if req.source.pool.is_empty() {
                path.name.clone()
            } else {
                req.source.pool.clone()
            };
            let from_project = if req.source.project.is_empty() {
                project_param(q.as_deref())
            } else {
                req.source.project.clone()
            };
            let from_scope = volume::scope(&st.cx, &from_pool, &from_project).await?;
            let (vol, snapshot) = match req.source.name.split_once('/') {
                Some((v, s)) => (v.to_owned(), Some(s.to_owned())),
                None => (req.source.name.clone(), None),
            };
            // Checked now, so a bad request gets its answer at once.
            volume::get(&st.cx, &from_scope, &vol).await?;
            if volume::get(&st.cx, &scope, &new.name).await.is_ok() {
                return Err(volume::exists(&scope, &new.name).into());
            }
            let source = Source {
                scope: from_scope,
                name: vol,
                snapshot,
                volume_only: req.source.volume_only,
            };
            let target = crate::model::names::with_project(
                &format!(
                    "/1.0/storage-pools/{}/volumes/custom/{}",
                    scope.pool, new.name
                ),
                &scope.project,
            );
            let cx = st.cx.clone();
            let op = st.ops.start(
                OpSpec::task("Copying storage volume", &[("storage_volumes", target)]),
                move |_| async move { volume_copy::copy(&cx, &scope, new, source).await },
            );
            Ok(async_operation(op.render()))
        }
        "migration" => Err(ApiError::bad_request(
            "Storage volume migration between servers is not supported yet",
        )),
        other => Err(ApiError::bad_request(format!(
            "Invalid storage volume source type {other:?}"
        ))),
    }
}

/// `GET /1.0/storage-pools/{name}/volumes/{type}/{vol}`.
pub async fn get(
    State(st): State<AppState>,
    Path(path): Path<VolumePath>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let scope = scope_of(&st, &path.name, q.as_deref()).await?;
    let rec = if path.kind == CUSTOM {
        volume::get(&st.cx, &scope, &path.vol).await?
    } else {
        let host = crate::model::names::host_name(&project_param(q.as_deref()), &path.vol);
        let (p, k) = (path.name.clone(), path.kind.clone());
        st.cx
            .db
            .read(move |c| crate::db::volumes::get(c, &p, &k, &host))
            .await
            .map_err(crate::error::Failure::from)?
            .ok_or_else(|| volume::not_found(&scope, &path.vol))?
    };
    let used_by = if rec.kind == CUSTOM {
        volume::used_by(&st.cx, &rec).await?
    } else {
        vec![crate::model::names::instance_url(&rec.name)]
    };
    let tag = etag(&rec);
    Ok(sync_etag(volume::render(&rec, used_by), &tag))
}

async fn put_or_patch(
    st: AppState,
    path: VolumePath,
    q: Option<String>,
    headers: HeaderMap,
    req: StorageVolumePut,
    replace: bool,
) -> ApiResult {
    custom_only(&path.kind)?;
    let scope = scope_of(&st, &path.name, q.as_deref()).await?;
    if !req.restore.is_empty() {
        volume_snapshot::restore(&st.cx, &scope, &path.vol, &req.restore).await?;
        return Ok(sync_empty());
    }
    volume::update(
        &st.cx,
        &scope,
        &path.vol,
        if_match(&headers, etag),
        req,
        replace,
    )
    .await?;
    Ok(sync_empty())
}

/// `PUT /1.0/storage-pools/{name}/volumes/{type}/{vol}` (`restore` rolls it back).
pub async fn put(
    State(st): State<AppState>,
    Path(path): Path<VolumePath>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Json(req): Json<StorageVolumePut>,
) -> ApiResult {
    put_or_patch(st, path, q, headers, req, true).await
}

/// `PATCH /1.0/storage-pools/{name}/volumes/{type}/{vol}`.
pub async fn patch(
    State(st): State<AppState>,
    Path(path): Path<VolumePath>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Json(req): Json<StorageVolumePut>,
) -> ApiResult {
    put_or_patch(st, path, q, headers, req, false).await
}

/// `POST /1.0/storage-pools/{name}/volumes/{type}/{vol}`: a rename (sync), or a move to
/// another pool or project (an operation).
pub async fn rename(
    State(st): State<AppState>,
    Path(path): Path<VolumePath>,
    RawQuery(q): RawQuery,
    Json(req): Json<StorageVolumePost>,
) -> ApiResult {
    custom_only(&path.kind)?;
    if req.migration {
        return Err(ApiError::bad_request(
            "Storage volume migration between servers is not supported yet",
        ));
    }
    let scope = scope_of(&st, &path.name, q.as_deref()).await?;
    let to = if req.name.is_empty() {
        path.vol.clone()
    } else {
        parse(VolumeName::parse, &req.name)?.to_string()
    };
    let pool = if req.pool.is_empty() {
        path.name.clone()
    } else {
        req.pool.clone()
    };
    let project = if req.project.is_empty() {
        project_param(q.as_deref())
    } else {
        req.project.clone()
    };
    let target = volume::scope(&st.cx, &pool, &project).await?;
    volume::get(&st.cx, &scope, &path.vol).await?;
    if target.pool == scope.pool && target.project == scope.project {
        if to == path.vol {
            return Ok(sync_empty());
        }
        volume_copy::rename(&st.cx, &scope, &path.vol, &to).await?;
        let rec = volume::get(&st.cx, &scope, &to).await?;
        return Ok(sync_created(&volume::url(&rec)));
    }
    if !req.project.is_empty() && target.project != req.project {
        return Err(ApiError::bad_request(format!(
            "Project {:?} does not have features.storage.volumes enabled",
            req.project
        )));
    }
    let url = crate::model::names::with_project(
        &format!("/1.0/storage-pools/{}/volumes/custom/{to}", target.pool),
        &target.project,
    );
    let cx = st.cx.clone();
    let vol = path.vol.clone();
    let volume_only = req.volume_only;
    let op =
        st.ops.start(
            OpSpec::task("Moving storage volume", &[("storage_volumes", url)]),
            move |_| async move {
                volume_copy::move_to(&cx, &scope, &vol, &target, &to, volume_only).await
            },
        );
    Ok(async_operation(op.render()))
}

/// `DELETE /1.0/storage-pools/{name}/volumes/{type}/{vol}`.
pub async fn delete(
    State(st): State<AppState>,
    Path(path): Path<VolumePath>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    custom_only(&path.kind)?;
    let scope = scope_of(&st, &path.name, q.as_deref()).await?;
    volume::delete(&st.cx, &scope, &path.vol).await?;
    Ok(sync_empty())
}

/// `GET /1.0/storage-pools/{name}/volumes/{type}/{vol}/state`: bytes used, and the
/// size when it has one (`usage` is null where the pool's driver does not count).
pub async fn state(
    State(st): State<AppState>,
    Path(path): Path<VolumePath>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    custom_only(&path.kind)?;
    let scope = scope_of(&st, &path.name, q.as_deref()).await?;
    let rec = volume::get(&st.cx, &scope, &path.vol).await?;
    let driver = crate::storage::driver(&st.cx, &scope.pool)?;
    let host = rec.name.clone();
    let used =
        tokio::task::spawn_blocking(move || driver.usage(berth_storage::VolumeType::Custom, &host))
            .await
            .map_err(crate::error::Failure::from)?;
    let total = volume::size_of(&rec.config).map_or(-1, |n| n as i64);
    Ok(sync(StorageVolumeState {
        usage: used.map(|used| StorageVolumeStateUsage { used, total }),
    }))
}

fn render_snapshot(s: &VolumeSnapshotRecord) -> StorageVolumeSnapshot {
    StorageVolumeSnapshot {
        name: s.name.clone(),
        description: s.description.clone(),
        config: s.config.clone(),
        content_type: "filesystem".to_owned(),
        created_at: s.created_at.clone(),
        // No expiry is null, as LXD shows it.
        expires_at: (!s.expires_at.is_empty() && s.expires_at != NEVER)
            .then(|| s.expires_at.clone()),
    }
}

/// `GET …/volumes/{type}/{vol}/snapshots`.
pub async fn snapshots(
    State(st): State<AppState>,
    Path(path): Path<VolumePath>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    custom_only(&path.kind)?;
    let scope = scope_of(&st, &path.name, q.as_deref()).await?;
    let all = volume_snapshot::list(&st.cx, &scope, &path.vol).await?;
    if recursion(q.as_deref())? > 0 {
        return Ok(sync(all.iter().map(render_snapshot).collect::<Vec<_>>()));
    }
    let v = volume::get(&st.cx, &scope, &path.vol).await?;
    Ok(sync(
        all.iter()
            .map(|s| snapshot_url(&v, &s.name))
            .collect::<Vec<_>>(),
    ))
}

/// `POST …/volumes/{type}/{vol}/snapshots`: an operation, as LXD answers.
pub async fn take_snapshot(
    State(st): State<AppState>,
    Path(path): Path<VolumePath>,
    RawQuery(q): RawQuery,
    Json(req): Json<StorageVolumeSnapshotsPost>,
) -> ApiResult {
    custom_only(&path.kind)?;
    let scope = scope_of(&st, &path.name, q.as_deref()).await?;
    let v = volume::get(&st.cx, &scope, &path.vol).await?;
    let name = (!req.name.is_empty())
        .then(|| parse(SnapshotName::parse, &req.name))
        .transpose()?;
    if let Some(n) = &name
        && volume_snapshot::find(&st.cx, &scope, &path.vol, n)
            .await
            .is_ok()
    {
        return Err(ApiError::from(crate::error::Failure::exists(format!(
            "Snapshot {:?} already exists",
            n.to_string()
        ))));
    }
    let cx = st.cx.clone();
    let vol = path.vol.clone();
    let op = st.ops.start(
        OpSpec::task(
            "Snapshotting storage volume",
            &[("storage_volumes", volume::url(&v))],
        ),
        move |_| async move {
            volume_snapshot::take(&cx, &scope, &vol, name, req.expires_at)
                .await
                .map(drop)
        },
    );
    Ok(async_operation(op.render()))
}

/// `GET …/snapshots/{snap}`.
pub async fn get_snapshot(
    State(st): State<AppState>,
    Path(path): Path<VolumePath>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    custom_only(&path.kind)?;
    let scope = scope_of(&st, &path.name, q.as_deref()).await?;
    let (_, s) = volume_snapshot::find(&st.cx, &scope, &path.vol, &path.snap).await?;
    Ok(sync_etag(render_snapshot(&s), &snapshot_etag(&s)))
}

/// `PUT|PATCH …/snapshots/{snap}`: description and expiry.
pub async fn put_snapshot(
    State(st): State<AppState>,
    Path(path): Path<VolumePath>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Json(req): Json<StorageVolumeSnapshotPut>,
) -> ApiResult {
    custom_only(&path.kind)?;
    let scope = scope_of(&st, &path.name, q.as_deref()).await?;
    volume_snapshot::update(
        &st.cx,
        &scope,
        &path.vol,
        &path.snap,
        if_match(&headers, snapshot_etag),
        req.description,
        req.expires_at,
    )
    .await?;
    Ok(sync_empty())
}

/// `POST …/snapshots/{snap}`: a rename (an operation, as LXD answers).
pub async fn rename_snapshot(
    State(st): State<AppState>,
    Path(path): Path<VolumePath>,
    RawQuery(q): RawQuery,
    Json(req): Json<StorageVolumePost>,
) -> ApiResult {
    custom_only(&path.kind)?;
    let scope = scope_of(&st, &path.name, q.as_deref()).await?;
    let to = parse(SnapshotName::parse, &req.name)?;
    let (v, _) = volume_snapshot::find(&st.cx, &scope, &path.vol, &path.snap).await?;
    let cx = st.cx.clone();
    let op =
        st.ops.start(
            OpSpec::task(
                "Renaming storage volume snapshot",
                &[("storage_volumes", volume::url(&v))],
            ),
            move |_| async move {
                volume_snapshot::rename(&cx, &scope, &path.vol, &path.snap, &to).await
            },
        );
    Ok(async_operation(op.render()))
}

/// `DELETE …/snapshots/{snap}`: an operation, as LXD answers.
pub async fn delete_snapshot(
    State(st): State<AppState>,
    Path(path): Path<VolumePath>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    custom_only(&path.kind)?;
    let scope = scope_of(&st, &path.name, q.as_deref()).await?;
    let (v, _) = volume_snapshot::find(&st.cx, &scope, &path.vol, &path.snap).await?;
    let cx = st.cx.clone();
    let op = st.ops.start(
        OpSpec::task(
            "Deleting storage volume snapshot",
            &[("storage_volumes", volume::url(&v))],
        ),
        move |_| async move { volume_snapshot::delete(&cx, &scope, &path.vol, &path.snap).await },
    );
    Ok(async_operation(op.render()))
}
