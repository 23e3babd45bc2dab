//! `/1.0/projects`: only the `default` project exists for now.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery};
use berth_api::DEFAULT_PROJECT;
use berth_api::project::Project;

use super::{ApiError, ApiResult, recursion, sync};

fn default_project() -> Project {
    let config: BTreeMap<String, String> = [
        ("features.images", "true"),
        ("features.networks", "true"),
        ("features.profiles", "true"),
        ("features.storage.buckets", "true"),
        ("features.storage.volumes", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Project {
        name: DEFAULT_PROJECT.to_owned(),
        description: "Default berth project".to_owned(),
        config,
        used_by: vec![],
    }
}

/// `GET /1.0/projects`.
pub async fn list(RawQuery(q): RawQuery) -> ApiResult {
    if recursion(q.as_deref())? > 0 {
        Ok(sync([default_project()]))
    } else {
        Ok(sync([format!("/1.0/projects/{DEFAULT_PROJECT}")]))
    }
}

/// `GET /1.0/projects/{name}`.
pub async fn get(Path(name): Path<String>) -> ApiResult {
    if name != DEFAULT_PROJECT {
        return Err(ApiError::not_found(format!("Project \"{name}\" not found")));
    }
    Ok(sync(default_project()))
}
