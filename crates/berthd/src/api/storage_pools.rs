//! `/1.0/storage-pools`: pools, their resources and the volumes they hold.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use berth_api::ErrorKind;
use berth_api::storage::{
    ResourcesUsage, StoragePool, StoragePoolPut, StoragePoolResources, StoragePoolsPost,
};
use berth_storage::{Driver, StorageError, StorageErrorKind, VolumeType};

use super::{
    ApiError, ApiResult, AppState, Json, check_if_match, recursion, sync, sync_empty, sync_etag,
};
use crate::db::pools::PoolRecord;
use crate::state::etag_of;

fn storage_error(e: &StorageError) -> ApiError {
    let kind = match e.kind() {
        StorageErrorKind::InvalidConfig => ErrorKind::InvalidRequest,
        StorageErrorKind::NotFound => ErrorKind::NotFound,
        StorageErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        StorageErrorKind::Busy => ErrorKind::Conflict,
        _ => return ApiError::internal(e),
    };
    ApiError::new(kind, crate::logging::chain(e))
}

fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Invalid storage pool name {name:?}"
        )))
    }
}

async fn find(st: &AppState, name: &str) -> Result<PoolRecord, ApiError> {
    let n = name.to_owned();
    st.db
        .call(move |c| crate::db::pools::get(c, &n))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Storage pool {name:?} not found")))
}

fn render(rec: PoolRecord) -> StoragePool {
    StoragePool {
        name: rec.name,
        description: rec.description,
        driver: rec.driver,
        status: "Created".to_owned(),
        config: rec.config,
        used_by: vec![],
        locations: vec!["none".to_owned()],
    }
}

fn pool_etag(p: &StoragePool) -> String {
    etag_of(&(&p.description, &p.config))
}

/// Loads the driver for a pool, validating its configuration.
pub fn load(
    st: &AppState,
    name: &str,
    driver: &str,
    config: BTreeMap<String, String>,
) -> Result<Arc<dyn Driver>, ApiError> {
    let default = crate::storage::default_source(&st.paths, name);
    berth_storage::load(driver, name, config, &default)
        .map(Arc::from)
        .map_err(|e| storage_error(&e))
}

/// `GET /1.0/storage-pools`.
pub async fn list(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let recursive = recursion(q.as_deref())? > 0;
    let pools = st.db.call(|c| crate::db::pools::list(c)).await?;
    if recursive {
        Ok(sync(pools.into_iter().map(render).collect::<Vec<_>>()))
    } else {
        Ok(sync(
            pools
                .iter()
                .map(|p| format!("/1.0/storage-pools/{}", p.name))
                .collect::<Vec<_>>(),
        ))
    }
}

/// `POST /1.0/storage-pools`.
pub async fn post(State(st): State<AppState>, Json(req): Json<StoragePoolsPost>) -> ApiResult {
    validate_name(&req.name)?;
    let _guard = st.pool_lock.lock().await;
    let n = req.name.clone();
    if st
        .db
        .call(move |c| crate::db::pools::get(c, &n))
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            ErrorKind::AlreadyExists,
            format!("Storage pool {:?} already exists", req.name),
        ));
    }
    let driver = load(&st, &req.name, &req.driver, req.config)?;
    let d = driver.clone();
    tokio::task::spawn_blocking(move || d.create().and_then(|()| d.mount()))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| storage_error(&e))?;
    let rec = PoolRecord {
        name: req.name.clone(),
        driver: req.driver.clone(),
        description: req.description,
        config: driver.config().clone(),
    };
    if let Err(e) = st.db.call(move |c| crate::db::pools::put(c, &rec)).await {
        let _ = driver.delete();
        return Err(e.into());
    }
    st.pools.insert(&req.name, driver);
    tracing::info!(pool = %req.name, driver = %req.driver, "Storage pool created");
    st.events.lifecycle(
        "storage-pool-created",
        &format!("/1.0/storage-pools/{}", req.name),
        None,
    );
    Ok(sync_empty())
}

/// `GET /1.0/storage-pools/{name}`.
pub async fn get(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let p = render(find(&st, &name).await?);
    let etag = pool_etag(&p);
    Ok(sync_etag(p, &etag))
}

async fn update(
    st: &AppState,
    name: &str,
    headers: &HeaderMap,
    req: StoragePoolPut,
    replace: bool,
) -> ApiResult {
    let _guard = st.pool_lock.lock().await;
    let rec = find(st, name).await?;
    check_if_match(headers, &pool_etag(&render(rec.clone())))?;
    let mut config = if replace {
        BTreeMap::new()
    } else {
        rec.config.clone()
    };
    for (k, v) in req.config {
        if v.is_empty() {
            config.remove(&k);
        } else {
            config.insert(k, v);
        }
    }
    // `source` is where the data is: it cannot move under a live pool.
    let old_source = rec.config.get("source").cloned().unwrap_or_default();
    match config.get("source") {
        Some(s) if *s != old_source => {
            return Err(ApiError::bad_request(
                "Storage pool key \"source\" cannot be changed",
            ));
        }
        _ => {
            config.insert("source".to_owned(), old_source);
        }
    }
    let driver = load(st, name, &rec.driver, config)?;
    let new = PoolRecord {
        name: rec.name.clone(),
        driver: rec.driver.clone(),
        description: match req.description {
            Some(d) => d,
            None if replace => String::new(),
            None => rec.description.clone(),
        },
        config: driver.config().clone(),
    };
    st.db.call(move |c| crate::db::pools::put(c, &new)).await?;
    st.pools.insert(name, driver);
    st.events.lifecycle(
        "storage-pool-updated",
        &format!("/1.0/storage-pools/{name}"),
        None,
    );
    Ok(sync_empty())
}

/// `PUT /1.0/storage-pools/{name}`.
pub async fn put(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<StoragePoolPut>,
) -> ApiResult {
    update(&st, &name, &headers, req, true).await
}

/// `PATCH /1.0/storage-pools/{name}`.
pub async fn patch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<StoragePoolPut>,
) -> ApiResult {
    update(&st, &name, &headers, req, false).await
}

/// `DELETE /1.0/storage-pools/{name}`.
pub async fn delete(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let _guard = st.pool_lock.lock().await;
    let rec = find(&st, &name).await?;
    let n = name.clone();
    let volumes = st
        .db
        .call(move |c| crate::db::pools::volumes(c, &n, None))
        .await?;
    if !volumes.is_empty() {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!("Storage pool {name:?} is in use"),
        ));
    }
    let driver = match st.pools.get(&name) {
        Some(d) => d,
        None => load(&st, &name, &rec.driver, rec.config.clone())?,
    };
    // Spare volumes are berthd's own, not a user's: they go first.
    crate::instances::spares::clear(driver.as_ref());
    tokio::task::spawn_blocking(move || driver.unmount().and_then(|()| driver.delete()))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| storage_error(&e))?;
    let n = name.clone();
    st.db.call(move |c| crate::db::pools::delete(c, &n)).await?;
    st.pools.remove(&name);
    st.events.lifecycle(
        "storage-pool-deleted",
        &format!("/1.0/storage-pools/{name}"),
        None,
    );
    Ok(sync_empty())
}

/// `GET /1.0/storage-pools/{name}/resources`.
pub async fn resources(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    find(&st, &name).await?;
    let driver = st.pools.get(&name).ok_or_else(|| {
        ApiError::new(
            ErrorKind::Unavailable,
            format!("Storage pool {name:?} is not available"),
        )
    })?;
    let r = tokio::task::spawn_blocking(move || driver.resources())
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| storage_error(&e))?;
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

/// `GET /1.0/storage-pools/{name}/volumes[/{type}]`.
pub async fn volumes(
    State(st): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let name = get("name").unwrap_or_default();
    let kind = get("type");
    if let Some(k) = &kind
        && VolumeType::parse(k).is_none()
        && k != "virtual-machine"
    {
        return Err(ApiError::bad_request(format!(
            "Invalid storage volume type {k:?}"
        )));
    }
    let recursive = recursion(q.as_deref())? > 0;
    find(&st, &name).await?;
    let n = name.clone();
    let vols = st
        .db
        .call(move |c| crate::db::pools::volumes(c, &n, kind.as_deref()))
        .await?;
    if recursive {
        Ok(sync(vols))
    } else {
        Ok(sync(
            vols.iter()
                .map(|v| format!("/1.0/storage-pools/{name}/volumes/{}/{}", v.kind, v.name))
                .collect::<Vec<_>>(),
        ))
    }
}
