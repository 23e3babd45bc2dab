//! `/1.0/warnings`: berth raises no warnings yet, so the list is empty.

use axum::extract::{Path, RawQuery};
use berth_api::warning::Warning;

use super::{ApiError, ApiResult, recursion, sync};

/// `GET /1.0/warnings`.
pub async fn list(RawQuery(q): RawQuery) -> ApiResult {
    recursion(q.as_deref())?;
    Ok(sync(Vec::<Warning>::new()))
}

/// `GET /1.0/warnings/{uuid}`.
pub async fn get(Path(_uuid): Path<String>) -> ApiResult {
    Err(ApiError::not_found("Warning not found"))
}
