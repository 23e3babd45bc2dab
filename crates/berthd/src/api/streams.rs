//! `/streams/v1/`: the server's public images as a simplestreams tree (see
//! [`crate::image::streams`]), open to untrusted clients like public images are. The JSON
//! files are plain documents, not LXD envelopes; the image files are streamed from disk.

use axum::extract::{Path, State};

use super::{ApiError, ApiResult, AppState};
use crate::image::streams::{self, Part};

fn document<T: serde::Serialize>(value: &T) -> ApiResult {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(&e))?;
    Ok(super::sync_raw(body.into(), None))
}

/// `GET /streams/v1/index.json`.
pub async fn index(State(st): State<AppState>) -> ApiResult {
    let products = streams::products(&st.cx).await?;
    document(&streams::index(&products))
}

/// `GET /streams/v1/images.json`.
pub async fn images(State(st): State<AppState>) -> ApiResult {
    document(&streams::products(&st.cx).await?)
}

/// `GET /streams/v1/files/{fingerprint}/{meta|rootfs}`.
pub async fn file(
    State(st): State<AppState>,
    Path((fp, part)): Path<(String, String)>,
) -> ApiResult {
    let part = Part::parse(&part).ok_or_else(|| ApiError::not_found("Image file not found"))?;
    let path = streams::file(&st.cx, &fp, part).await?;
    let (len, body) = super::images::file_stream(path).await?;
    Ok(super::octet_stream(body, len))
}
