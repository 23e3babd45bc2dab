//! `/1.0/projects`: projects, their features, limits and restrictions (see
//! [`crate::project`]).

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use berth_api::project::Project;
use serde::Deserialize;

use super::ops::OpSpec;
use super::{
    ApiResult, AppState, Json, async_operation, etag_of, field, if_match, parse, recursion, sync,
    sync_created, sync_empty, sync_etag,
};
use crate::model::names::ProjectName;
use crate::model::records::ProjectRecord;
use crate::model::trust::Identity;
use crate::project::{self, ProjectChange};

/// The body of `POST /1.0/projects`.
#[derive(Debug, Deserialize)]
pub struct ProjectsPost {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

/// The body of `POST /1.0/projects/{name}` (rename).
#[derive(Debug, Deserialize)]
pub struct ProjectPost {
    name: String,
}

fn etag(p: &ProjectRecord) -> String {
    etag_of(&(&p.name, &p.description, &p.config))
}

async fn render(st: &AppState, p: ProjectRecord) -> Result<Project, super::ApiError> {
    let used_by = project::used_by(&st.cx, &p).await?;
    Ok(Project {
        name: p.name,
        description: p.description,
        config: p.config,
        used_by,
    })
}

/// `GET /1.0/projects`: a restricted client sees its own.
pub async fn list(
    State(st): State<AppState>,
    Extension(identity): Extension<Identity>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let mut all = project::list(&st.cx).await?;
    all.retain(|p| identity.allows(&p.name));
    if recursion(q.as_deref())? == 0 {
        return Ok(sync(
            all.iter()
                .map(|p| project::url(&p.name))
                .collect::<Vec<_>>(),
        ));
    }
    let mut out = Vec::new();
    for p in all {
        out.push(render(&st, p).await?);
    }
    Ok(sync(out))
}

/// `GET /1.0/projects/{name}`.
pub async fn get(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let p = project::get(&st.cx, &name).await?;
    let etag = etag(&p);
    Ok(sync_etag(render(&st, p).await?, &etag))
}

/// `POST /1.0/projects`.
pub async fn post(State(st): State<AppState>, Json(req): Json<ProjectsPost>) -> ApiResult {
    let name = parse(ProjectName::parse, &req.name)?;
    project::create(&st.cx, &name, req.description, req.config).await?;
    Ok(sync_created(&project::url(&name)))
}

/// `PUT /1.0/projects/{name}`.
pub async fn put(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<serde_json::Value>,
) -> ApiResult {
    update(&st, &name, &headers, &req, true).await
}

/// `PATCH /1.0/projects/{name}`.
pub async fn patch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<serde_json::Value>,
) -> ApiResult {
    update(&st, &name, &headers, &req, false).await
}

async fn update(
    st: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: &serde_json::Value,
    replace: bool,
) -> ApiResult {
    project::get(&st.cx, name).await?;
    let change = ProjectChange {
        config: field(body, "config")?,
        description: field(body, "description")?,
    };
    project::update(&st.cx, name, if_match(headers, etag), change, replace).await?;
    Ok(sync_empty())
}

/// `DELETE /1.0/projects/{name}`.
pub async fn delete(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    project::delete(&st.cx, &name).await?;
    Ok(sync_empty())
}

/// `POST /1.0/projects/{name}`: renames an empty project; an operation, as LXD answers
/// (its client waits on one).
pub async fn rename(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<ProjectPost>,
) -> ApiResult {
    project::check_renamable(&name)?;
    let to = parse(ProjectName::parse, &req.name)?;
    project::rename(&st.cx, &name, &to).await?;
    let spec = OpSpec::task("Renaming project", &[("projects", project::url(&to))]);
    Ok(async_operation(
        st.ops.start(spec, |_| async { Ok(()) }).render(),
    ))
}

/// `GET /1.0/projects/{name}/state`: each limited resource's limit and usage.
pub async fn state(State(st): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let resources: serde_json::Map<String, serde_json::Value> = project::state(&st.cx, &name)
        .await?
        .into_iter()
        .map(|(k, limit, usage)| {
            (
                k.to_owned(),
                serde_json::json!({"limit": limit, "usage": usage}),
            )
        })
        .collect();
    Ok(sync(serde_json::json!({ "resources": resources })))
}
