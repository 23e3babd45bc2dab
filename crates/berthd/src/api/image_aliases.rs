//! `/1.0/images/aliases`: names for images (see [`crate::image`]).

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use berth_api::image::{ImageAlias, ImageAliasPost, ImageAliasPut, ImageAliasesPost};

use super::{
    ApiResult, AppState, ImageProject, Json, etag_of, if_match, parse, recursion, sync, sync_empty,
    sync_etag,
};
use crate::image::{self, alias_url};
use crate::model::names::AliasName;

fn etag(a: &ImageAlias) -> String {
    etag_of(&(&a.name, &a.target, &a.description))
}

/// `GET /1.0/images/aliases`.
pub async fn list(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let all = image::list_aliases(&st.cx, &project).await?;
    if recursion(q.as_deref())? > 0 {
        return Ok(sync(all));
    }
    Ok(sync(
        all.iter()
            .map(|a| alias_url(&a.name, &project))
            .collect::<Vec<_>>(),
    ))
}

/// `POST /1.0/images/aliases`.
pub async fn post(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Json(req): Json<ImageAliasesPost>,
) -> ApiResult {
    let name = parse(AliasName::parse, &req.name)?;
    image::create_alias(
        &st.cx,
        &project,
        &name,
        &req.target,
        req.description,
        req.kind,
    )
    .await?;
    Ok(sync_empty())
}

/// `GET /1.0/images/aliases/{name}`.
pub async fn get(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Path(name): Path<String>,
) -> ApiResult {
    let a = image::get_alias(&st.cx, &project, &name).await?;
    let etag = etag(&a);
    Ok(sync_etag(a, &etag))
}

/// `PUT /1.0/images/aliases/{name}`.
pub async fn put(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<ImageAliasPut>,
) -> ApiResult {
    image::update_alias(&st.cx, &project, &name, if_match(&headers, etag), req, true).await?;
    Ok(sync_empty())
}

/// `PATCH /1.0/images/aliases/{name}`.
pub async fn patch(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<ImageAliasPut>,
) -> ApiResult {
    image::update_alias(
        &st.cx,
        &project,
        &name,
        if_match(&headers, etag),
        req,
        false,
    )
    .await?;
    Ok(sync_empty())
}

/// `POST /1.0/images/aliases/{name}`: rename.
pub async fn rename(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Path(name): Path<String>,
    Json(req): Json<ImageAliasPost>,
) -> ApiResult {
    let to = parse(AliasName::parse, &req.name)?;
    image::rename_alias(&st.cx, &project, &name, &to).await?;
    Ok(sync_empty())
}

/// `DELETE /1.0/images/aliases/{name}`.
pub async fn delete(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Path(name): Path<String>,
) -> ApiResult {
    image::delete_alias(&st.cx, &project, &name).await?;
    Ok(sync_empty())
}
