//! `/1.0/images/aliases`: names for images.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use berth_api::ErrorKind;
use berth_api::image::{ImageAlias, ImageAliasPost, ImageAliasPut, ImageAliasesPost};

use super::{
    ApiError, ApiResult, AppState, ImageProject, Json, check_if_match, recursion, sync, sync_empty,
    sync_etag,
};
use crate::state::etag_of;

/// Checks an alias name: what LXD allows (slashes included, as in `debian/12`), minus
/// what breaks URLs and shells.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 255
        || name.starts_with('/')
        || name.ends_with('/')
        || name.contains("//")
        || name.split('/').any(|part| part == "." || part == "..")
        || name.contains(['?', '#', '%'])
        || name.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(ApiError::bad_request(format!(
            "Invalid alias name {name:?}"
        )));
    }
    Ok(())
}

async fn find(st: &AppState, project: &str, name: &str) -> Result<ImageAlias, ApiError> {
    let (p, n) = (project.to_owned(), name.to_owned());
    st.db
        .call(move |c| crate::db::images::get_alias(c, &p, &n))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Image alias {name:?} not found")))
}

fn source(name: &str, project: &str) -> String {
    super::image_url(&format!("/1.0/images/aliases/{name}"), project)
}

/// `GET /1.0/images/aliases`.
pub async fn list(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let recursive = recursion(q.as_deref())? > 0;
    let p = project.clone();
    let all = st
        .db
        .call(move |c| crate::db::images::list_aliases(c, &p))
        .await?;
    if recursive {
        Ok(sync(all))
    } else {
        Ok(sync(
            all.iter()
                .map(|a| source(&a.name, &project))
                .collect::<Vec<_>>(),
        ))
    }
}

/// `POST /1.0/images/aliases`.
pub async fn post(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Json(req): Json<ImageAliasesPost>,
) -> ApiResult {
    validate_name(&req.name)?;
    let _guard = st.image_lock.lock().await;
    let target = super::images::resolve(&st, &project, &req.target)
        .await?
        .image
        .fingerprint;
    let alias = ImageAlias {
        name: req.name.clone(),
        description: req.description,
        target,
        kind: if req.kind.is_empty() {
            "container".to_owned()
        } else {
            req.kind
        },
    };
    if alias.kind != "container" {
        return Err(ApiError::bad_request(format!(
            "Invalid alias type {:?}",
            alias.kind
        )));
    }
    let p = project.clone();
    let exists = st
        .db
        .call(move |c| {
            if crate::db::images::get_alias(c, &p, &alias.name)?.is_some() {
                return Ok(true);
            }
            crate::db::images::insert_alias(c, &p, &alias)?;
            Ok(false)
        })
        .await?;
    if exists {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!("Alias {:?} already exists", req.name),
        ));
    }
    st.events
        .lifecycle("image-alias-created", &source(&req.name, &project), None);
    Ok(sync_empty())
}

/// `GET /1.0/images/aliases/{name}`.
pub async fn get(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Path(name): Path<String>,
) -> ApiResult {
    let a = find(&st, &project, &name).await?;
    let etag = etag_of(&(&a.name, &a.target, &a.description));
    Ok(sync_etag(a, &etag))
}

async fn update(
    st: &AppState,
    project: &str,
    name: &str,
    headers: &HeaderMap,
    req: ImageAliasPut,
    replace: bool,
) -> ApiResult {
    let _guard = st.image_lock.lock().await;
    let mut a = find(st, project, name).await?;
    check_if_match(headers, &etag_of(&(&a.name, &a.target, &a.description)))?;
    match req.target {
        Some(t) => {
            a.target = super::images::resolve(st, project, &t)
                .await?
                .image
                .fingerprint;
        }
        None if replace => return Err(ApiError::bad_request("Missing field \"target\"")),
        None => {}
    }
    match req.description {
        Some(d) => a.description = d,
        None if replace => a.description.clear(),
        None => {}
    }
    let p = project.to_owned();
    st.db
        .call(move |c| crate::db::images::update_alias(c, &p, &a))
        .await?;
    st.events
        .lifecycle("image-alias-updated", &source(name, project), None);
    Ok(sync_empty())
}

/// `PUT /1.0/images/aliases/{name}`.
pub async fn put(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<ImageAliasPut>,
) -> ApiResult {
    update(&st, &project, &name, &headers, req, true).await
}

/// `PATCH /1.0/images/aliases/{name}`.
pub async fn patch(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<ImageAliasPut>,
) -> ApiResult {
    update(&st, &project, &name, &headers, req, false).await
}

/// `POST /1.0/images/aliases/{name}`: rename.
pub async fn rename(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Path(name): Path<String>,
    Json(req): Json<ImageAliasPost>,
) -> ApiResult {
    validate_name(&req.name)?;
    let _guard = st.image_lock.lock().await;
    find(&st, &project, &name).await?;
    let (from, to, p) = (name.clone(), req.name.clone(), project.clone());
    let taken = st
        .db
        .call(move |c| {
            if crate::db::images::get_alias(c, &p, &to)?.is_some() {
                return Ok(true);
            }
            crate::db::images::rename_alias(c, &p, &from, &to)?;
            Ok(false)
        })
        .await?;
    if taken {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!("Alias {:?} already exists", req.name),
        ));
    }
    let mut ctx = serde_json::Map::new();
    ctx.insert("old_name".to_owned(), name.clone().into());
    st.events.lifecycle(
        "image-alias-renamed",
        &source(&req.name, &project),
        Some(ctx),
    );
    Ok(sync_empty())
}

/// `DELETE /1.0/images/aliases/{name}`.
pub async fn delete(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Path(name): Path<String>,
) -> ApiResult {
    let _guard = st.image_lock.lock().await;
    find(&st, &project, &name).await?;
    let (p, n) = (project.clone(), name.clone());
    st.db
        .call(move |c| crate::db::images::delete_alias(c, &p, &n))
        .await?;
    st.events
        .lifecycle("image-alias-deleted", &source(&name, &project), None);
    Ok(sync_empty())
}
