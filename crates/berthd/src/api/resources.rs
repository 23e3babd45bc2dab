//! `GET /1.0/resources`: the host's hardware.

use std::path::Path;

use super::{ApiError, ApiResult, sync};

/// `GET /1.0/resources`.
pub async fn get() -> ApiResult {
    let res = tokio::task::spawn_blocking(|| crate::host::resources::read(Path::new("/")))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    Ok(sync(res))
}
