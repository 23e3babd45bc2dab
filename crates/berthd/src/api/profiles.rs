//! `/1.0/profiles`: profiles of a project (see [`crate::profile`]).

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use berth_api::instance::Device;
use serde::Deserialize;

use super::{
    ApiResult, AppState, Json, etag_of, field, if_match, parse, project_param, recursion, sync,
    sync_created, sync_empty, sync_etag,
};
use crate::model::names::ProfileName;
use crate::model::records::ProfileRecord;
use crate::profile::{self, ProfileChange};

/// The body of `POST /1.0/profiles`.
#[derive(Debug, Deserialize)]
pub struct ProfilesPost {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    config: Option<BTreeMap<String, String>>,
    #[serde(default)]
    devices: Option<BTreeMap<String, Device>>,
}

/// The body of `POST /1.0/profiles/{name}` (rename).
#[derive(Debug, Deserialize)]
pub struct ProfilePost {
    name: String,
}

fn etag(p: &ProfileRecord) -> String {
    etag_of(&(&p.name, &p.description, &p.config, &p.devices))
}

fn render(p: &ProfileRecord, used_by: &[String]) -> serde_json::Value {
    serde_json::json!({
        "name": p.name, "description": p.description, "config": p.config,
        "devices": p.devices, "used_by": used_by,
    })
}

async fn scope(st: &AppState, q: Option<&str>) -> Result<profile::Scope, super::ApiError> {
    Ok(profile::scope(&st.cx, &project_param(q)).await?)
}

/// `GET /1.0/profiles`.
pub async fn list(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult {
    let level = recursion(q.as_deref())?;
    let scope = scope(&st, q.as_deref()).await?;
    let profiles = profile::list(&st.cx, &scope).await?;
    if level == 0 {
        return Ok(sync(
            profiles
                .iter()
                .map(|p| scope.url(&p.name))
                .collect::<Vec<_>>(),
        ));
    }
    let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
    let used_by = profile::used_by(&st.cx, &scope, &names).await?;
    Ok(sync(
        profiles
            .iter()
            .zip(&used_by)
            .map(|(p, u)| render(p, u))
            .collect::<Vec<_>>(),
    ))
}

/// `GET /1.0/profiles/{name}`.
pub async fn get(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let scope = scope(&st, q.as_deref()).await?;
    let p = profile::get(&st.cx, &scope, &name).await?;
    let used_by = profile::used_by(&st.cx, &scope, &[&name]).await?.concat();
    Ok(sync_etag(render(&p, &used_by), &etag(&p)))
}

/// `POST /1.0/profiles`.
pub async fn post(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    Json(req): Json<ProfilesPost>,
) -> ApiResult {
    let name = parse(ProfileName::parse, &req.name)?;
    let scope = scope(&st, q.as_deref()).await?;
    profile::create(
        &st.cx,
        &scope,
        &name,
        req.description.unwrap_or_default(),
        req.config.unwrap_or_default(),
        req.devices.unwrap_or_default(),
    )
    .await?;
    Ok(sync_created(&scope.url(&name)))
}

/// `PUT /1.0/profiles/{name}`: replaces description, config and devices.
pub async fn put(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Json(req): Json<serde_json::Value>,
) -> ApiResult {
    update(&st, q.as_deref(), &name, &headers, &req, true).await
}

/// `PATCH /1.0/profiles/{name}`: merges; an empty config value unsets the key.
pub async fn patch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    Json(req): Json<serde_json::Value>,
) -> ApiResult {
    update(&st, q.as_deref(), &name, &headers, &req, false).await
}

async fn update(
    st: &AppState,
    q: Option<&str>,
    name: &str,
    headers: &HeaderMap,
    body: &serde_json::Value,
    replace: bool,
) -> ApiResult {
    let scope = scope(st, q).await?;
    profile::get(&st.cx, &scope, name).await?;
    let change = ProfileChange {
        config: field(body, "config")?,
        devices: field(body, "devices")?,
        description: field(body, "description")?,
    };
    profile::update(
        &st.cx,
        &scope,
        name,
        if_match(headers, etag),
        change,
        replace,
    )
    .await?;
    Ok(sync_empty())
}

/// `DELETE /1.0/profiles/{name}`: not `default`, not while instances use it.
pub async fn delete(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let scope = scope(&st, q.as_deref()).await?;
    profile::delete(&st.cx, &scope, &name).await?;
    Ok(sync_empty())
}

/// `POST /1.0/profiles/{name}`: renames a profile and every instance's reference to it.
pub async fn rename(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    Json(req): Json<ProfilePost>,
) -> ApiResult {
    let scope = scope(&st, q.as_deref()).await?;
    profile::check_renamable(&name)?;
    let to = parse(ProfileName::parse, &req.name)?;
    profile::rename(&st.cx, &scope, &name, &to).await?;
    Ok(sync_created(&scope.url(&to)))
}
