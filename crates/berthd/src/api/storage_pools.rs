//! `/1.0/storage-pools`: pools, their resources and the volumes they hold (see
//! [`crate::storage`]).

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use berth_api::storage::{
    ResourcesUsage, StoragePool, StoragePoolPut, StoragePoolResources, StoragePoolsPost,
};

use super::{
    ApiResult, AppState, Json, etag_of, if_match, parse, recursion, sync, sync_empty, sync_etag,
};
use crate::model::names::PoolName;
use crate::model::records::PoolRecord;
use crate::storage::{self, NewPool};

fn render(rec: PoolRecord, used_by: Vec<String>) -> StoragePool {
    StoragePool {
        name: rec.name,
        description: rec.description,
        driver: rec.driver,
        status: "Created".to_owned(),
        config: rec.config,
        used_by,
        locations: vec!["none".to_owned()],
    }
}

fn etag(p: &PoolRecord) -> String {
    etag_of(&(&p.description, &p.config))
}

/// `GET /1.0/storage-pools`.
pub async fn list(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let pools = storage::list(&st.cx).await?;
    if recursion(q.as_deref())? > 0 {
        let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        let used_by = storage::used_by(&st.cx, &names).await?;
        return Ok(sync(
            pools
                .into_iter()
                .zip(used_by)
                .map(|(p, u)| render(p, u))
                .collect::<Vec<_>>(),
        ));
    }
    Ok(sync(
        pools
            .iter()
            .map(|p| storage::url(&p.name))
            .collect::<Vec<_>>(),
    ))
}

/// `POST /1.0/storage-pools`.
pub async fn post(State(st): State<AppState>, Json(req): Json<StoragePoolsPost>) -> ApiResult {
    let name = parse(PoolName::parse, &req.name)?;
    storage::create(
        &st.cx,
        NewPool {
            name,
            driver: req.driver,
            description: req.description,
            config: req.config,
        },
    )
    .await?;
    Ok(sync_empty())
}

/// `GET /1.0/storage-pools/{name}`.
pub async fn get(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let rec = storage::get(&st.cx, &name).await?;
    let etag = etag(&rec);
    let used_by = storage::used_by(&st.cx, &[&name]).await?.remove(0);
    Ok(sync_etag(render(rec, used_by), &etag))
}

/// `PUT /1.0/storage-pools/{name}`.
pub async fn put(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<StoragePoolPut>,
) -> ApiResult {
    storage::update(&st.cx, &name, if_match(&headers, etag), req, true).await?;
    Ok(sync_empty())
}

/// `PATCH /1.0/storage-pools/{name}`.
pub async fn patch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<StoragePoolPut>,
) -> ApiResult {
    storage::update(&st.cx, &name, if_match(&headers, etag), req, false).await?;
    Ok(sync_empty())
}

/// `DELETE /1.0/storage-pools/{name}`.
pub async fn delete(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    storage::delete(&st.cx, &name).await?;
    Ok(sync_empty())
}

/// `GET /1.0/storage-pools/{name}/resources`.
pub async fn resources(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let r = storage::resources(&st.cx, &name).await?;
    Ok(sync(StoragePoolResources {
        space: ResourcesUsage {
            used: r.space_used,
            total: r.space_total,
        },
        inodes: ResourcesUsage {
            used: r.inodes_used,
            total: r.inodes_total,
        },
    }))
}
