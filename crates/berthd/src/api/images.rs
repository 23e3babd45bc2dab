//! `/1.0/images`: import, list, inspect, edit, delete and export images (see
//! [`crate::image`]). Uploads are streamed to temporary files (never held in memory), and
//! exports streamed from disk.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Extension, FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use berth_api::image::{Image, ImagePut};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::ops::OpSpec;
use super::{
    ApiError, ApiResult, AppState, ImageProject, Json, async_operation, etag_of, if_match, parse,
    recursion, sync, sync_empty, sync_etag,
};
use crate::image::import::ImportOptions;
use crate::image::store::{Upload, temp_path};
use crate::image::{self, url};
use crate::model::names::AliasName;
use crate::model::trust::Identity;

/// Reads an `X-LXD-*` or `X-Incus-*` header.
pub fn lxd_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    ["X-Incus-", "X-LXD-"]
        .iter()
        .find_map(|p| headers.get(format!("{p}{name}")))
        .and_then(|v| v.to_str().ok())
}

/// `GET /1.0/images`.
pub async fn list(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let recs = image::list(&st.cx, &project).await?;
    if recursion(q.as_deref())? > 0 {
        return Ok(sync(recs.into_iter().map(|r| r.image).collect::<Vec<_>>()));
    }
    Ok(sync(
        recs.iter()
            .map(|r| url(&r.image.fingerprint, &project))
            .collect::<Vec<_>>(),
    ))
}

fn etag(i: &Image) -> String {
    etag_of(&(
        i.auto_update,
        &i.properties,
        i.public,
        &i.expires_at,
        &i.profiles,
    ))
}

/// `GET /1.0/images/{fingerprint}` (untrusted: with the image's secret).
pub async fn get(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Path(fp): Path<String>,
    RawQuery(q): RawQuery,
    identity: Option<Extension<Identity>>,
) -> ApiResult {
    super::image_transfer::allow(&st, identity.as_deref(), &project, &fp, q.as_deref(), false)?;
    let rec = image::resolve(&st.cx, &project, &fp).await?;
    let etag = etag(&rec.image);
    Ok(sync_etag(rec.image, &etag))
}

/// `PUT /1.0/images/{fingerprint}`.
pub async fn put(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Path(fp): Path<String>,
    headers: HeaderMap,
    Json(req): Json<ImagePut>,
) -> ApiResult {
    image::update(&st.cx, &project, &fp, if_match(&headers, etag), |_| Ok(req)).await?;
    Ok(sync_empty())
}

/// `PATCH /1.0/images/{fingerprint}`: the fields given replace the image's (a null
/// `expires_at` or `profiles` resets it, as PUT's absent one).
pub async fn patch(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Path(fp): Path<String>,
    headers: HeaderMap,
    Json(req): Json<serde_json::Value>,
) -> ApiResult {
    image::resolve(&st.cx, &project, &fp).await?;
    let obj = req
        .as_object()
        .ok_or_else(|| ApiError::bad_request("Invalid request: expected an object"))?;
    // A field given, null or not, as ImagePut has it.
    fn given<T: serde::de::DeserializeOwned>(
        obj: &serde_json::Map<String, serde_json::Value>,
        key: &str,
    ) -> Result<Option<T>, ApiError> {
        obj.get(key)
            .map(|v| {
                serde_json::from_value(v.clone()).map_err(|e| {
                    ApiError::bad_request(format!("Invalid value for field \"{key}\": {e}"))
                })
            })
            .transpose()
    }
    let auto_update = given::<bool>(obj, "auto_update")?;
    let public = given::<bool>(obj, "public")?;
    let properties = given::<BTreeMap<String, String>>(obj, "properties")?;
    let expires_at = given::<Option<String>>(obj, "expires_at")?;
    let profiles = given::<Option<Vec<String>>>(obj, "profiles")?;
    let merge = |i: &Image| {
        let mut merged = ImagePut {
            auto_update: auto_update.unwrap_or(i.auto_update),
            properties: i.properties.clone(),
            public: public.unwrap_or(i.public),
            expires_at: expires_at.unwrap_or_else(|| Some(i.expires_at.clone())),
            profiles: profiles.unwrap_or_else(|| Some(i.profiles.clone())),
        };
        merged.properties.extend(properties.unwrap_or_default());
        Ok(merged)
    };
    image::update(&st.cx, &project, &fp, if_match(&headers, etag), merge).await?;
    Ok(sync_empty())
}

/// `DELETE /1.0/images/{fingerprint}`: an operation, as in LXD.
pub async fn delete(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Path(fp): Path<String>,
) -> ApiResult {
    let fingerprint = image::delete(&st.cx, &project, &fp).await?;
    let spec = OpSpec::task(
        "Deleting image",
        &[("images", format!("/1.0/images/{fingerprint}"))],
    );
    Ok(async_operation(
        st.ops.start(spec, |_| async { Ok(()) }).render(),
    ))
}

async fn write_stream<S, E>(path: &std::path::Path, mut stream: S) -> Result<(), ApiError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let file = tokio::fs::File::create(path)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("Failed to read upload: {e}")))?;
        out.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(&e))?;
    }
    out.flush().await.map_err(|e| ApiError::internal(&e))?;
    Ok(())
}

/// Receives the upload into temporary files: one raw tarball, or the `metadata` and
/// `rootfs` parts of a multipart body.
async fn receive(st: &AppState, req: Request) -> Result<Upload, ApiError> {
    let dir = st.cx.paths.images();
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if ctype.starts_with("application/json") {
        return Err(ApiError::bad_request(
            "A JSON image request is a source to fetch, not an upload",
        ));
    }
    if !ctype.starts_with("multipart/form-data") {
        let upload = Upload::new(temp_path(&dir));
        write_stream(&upload.meta, req.into_body().into_data_stream()).await?;
        return Ok(upload);
    }
    let mut mp = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut upload: Option<Upload> = None;
    let mut rootfs: Option<(std::path::PathBuf, String)> = None;
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().unwrap_or_default().to_owned();
        let path = temp_path(&dir);
        match name.as_str() {
            "metadata" => {
                let mut u = Upload::new(path);
                u.meta_name = file_name;
                if let Some((p, n)) = rootfs.take() {
                    u.rootfs = Some(p);
                    u.rootfs_name = n;
                }
                write_stream(&u.meta, field).await?;
                upload = Some(u);
            }
            "rootfs" => {
                // Register the file for clean-up before writing it.
                match upload.as_mut() {
                    Some(u) => {
                        u.rootfs = Some(path.clone());
                        u.rootfs_name = file_name;
                    }
                    None => rootfs = Some((path.clone(), file_name)),
                }
                let r = write_stream(&path, field).await;
                if r.is_err() && upload.is_none() {
                    let _ = std::fs::remove_file(&path);
                }
                r?;
            }
            "rootfs.img" => {
                return Err(ApiError::bad_request(
                    "Virtual-machine images are not supported",
                ));
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "Unexpected part {other:?} in image upload"
                )));
            }
        }
    }
    if let Some((p, _)) = rootfs {
        let _ = std::fs::remove_file(p);
        return Err(ApiError::bad_request(
            "Image upload has a rootfs but no metadata part",
        ));
    }
    let upload =
        upload.ok_or_else(|| ApiError::bad_request("Image upload has no metadata part"))?;
    if upload.rootfs.is_none() {
        return Err(ApiError::bad_request(
            "Split image upload has no rootfs part",
        ));
    }
    Ok(upload)
}

/// Parses `k=v&k2=v2` (URL-encoded) as LXD clients send image properties.
fn parse_properties(raw: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `POST /1.0/images`: imports an uploaded image. The upload is checked before the reply, so
/// a bad image gets 400 and leaves nothing behind; the reply is an operation, as LXD sends.
pub async fn post(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    headers: HeaderMap,
    req: Request,
) -> ApiResult {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if json {
        let req_query = req.uri().query().map(str::to_owned);
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .map_err(|e| ApiError::bad_request(format!("Invalid image request: {e}")))?;
        // The instance a publish names is in the request's own project.
        let instance_project = super::project_param(req_query.as_deref());
        return super::image_transfer::create(&st, project, instance_project, &body).await;
    }
    let mut upload = receive(&st, req).await?;
    if upload.meta_name.is_empty() {
        upload.meta_name = lxd_header(&headers, "filename")
            .unwrap_or_default()
            .to_owned();
    }
    let aliases = headers
        .get_all("X-Incus-aliases")
        .iter()
        .chain(headers.get_all("X-LXD-aliases").iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|a| parse(AliasName::parse, a))
        .collect::<Result<Vec<_>, _>>()?;
    let opts = ImportOptions {
        fingerprint: lxd_header(&headers, "fingerprint").map(str::to_owned),
        public: matches!(lxd_header(&headers, "public"), Some("1" | "true")),
        properties: lxd_header(&headers, "properties")
            .map(parse_properties)
            .unwrap_or_default(),
        aliases,
        cached: false,
    };
    let imported = image::import::import(&st.cx, &project, upload, opts).await?;
    let fp = imported.fingerprint;
    let mut spec = OpSpec::task(
        "Importing image",
        &[("images", format!("/1.0/images/{fp}"))],
    );
    spec.metadata.insert("fingerprint".to_owned(), fp.into());
    spec.metadata
        .insert("size".to_owned(), imported.size.into());
    Ok(async_operation(
        st.ops.start(spec, |_| async { Ok(()) }).render(),
    ))
}

fn attachment(name: &str) -> HeaderValue {
    let safe: String = name
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .collect();
    HeaderValue::from_str(&format!("attachment; filename=\"{safe}\""))
        .unwrap_or(HeaderValue::from_static("attachment"))
}

pub(super) async fn file_stream(path: std::path::PathBuf) -> Result<(u64, Body), ApiError> {
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::not_found("Image file not found"))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::internal(&e))?
        .len();
    Ok((
        len,
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 16)),
    ))
}

/// `GET /1.0/images/{fingerprint}/export`: the file itself, or a multipart body with the
/// `metadata` and `rootfs` parts of a split image; streamed from disk.
pub async fn export(
    State(st): State<AppState>,
    super::ImageProject(project): super::ImageProject,
    Path(fp): Path<String>,
    RawQuery(q): RawQuery,
    identity: Option<Extension<Identity>>,
) -> ApiResult {
    super::image_transfer::allow(&st, identity.as_deref(), &project, &fp, q.as_deref(), true)?;
    let rec = image::resolve(&st.cx, &project, &fp).await?;
    let fp = rec.image.fingerprint.clone();
    let (meta, rootfs) = image::files(&st.cx, &rec);
    let Some(rootfs) = rootfs else {
        let (len, body) = file_stream(meta).await?;
        let mut resp = super::octet_stream(body, len);
        resp.headers_mut()
            .insert(header::CONTENT_DISPOSITION, attachment(&rec.image.filename));
        return Ok(resp);
    };
    let boundary = format!("berth-{}", uuid::Uuid::new_v4().simple());
    let meta_name = rec.image.filename.clone();
    let rootfs_name = format!(
        "{}.rootfs",
        rec.image.filename.split('.').next().unwrap_or(&fp)
    );
    let part = |field: &str, file: &str| {
        bytes::Bytes::from(format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        ))
    };
    let meta_head = part("metadata", &meta_name);
    let rootfs_head = bytes::Bytes::from(format!(
        "\r\n{}",
        String::from_utf8_lossy(&part("rootfs", &rootfs_name))
    ));
    let end = bytes::Bytes::from(format!("\r\n--{boundary}--\r\n"));
    let (_, meta) = file_stream(meta).await?;
    let (_, rootfs) = file_stream(rootfs).await?;
    let chunk =
        |b: bytes::Bytes| futures_util::stream::once(async move { Ok::<_, axum::Error>(b) });
    let stream = chunk(meta_head)
        .chain(meta.into_data_stream())
        .chain(chunk(rootfs_head))
        .chain(rootfs.into_data_stream())
        .chain(chunk(end));
    let mut resp = Body::from_stream(stream).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}")) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(resp)
}
