//! `/1.0/images`: import, list, inspect, edit, delete and export images.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use berth_api::image::{Image, ImageAlias, ImagePut};
use berth_api::{ErrorKind, OperationClass};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{
    ApiError, ApiResult, AppState, Json, async_operation, check_if_match, recursion, sync,
    sync_etag,
};
use crate::db::images::ImageRecord;
use crate::images::{InspectError, Upload, inspect, temp_path};
use crate::operations::OpSpec;
use crate::state::{etag_of, now_rfc3339};

/// Reads an `X-LXD-*` or `X-Incus-*` header.
pub fn lxd_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    ["X-Incus-", "X-LXD-"]
        .iter()
        .find_map(|p| headers.get(format!("{p}{name}")))
        .and_then(|v| v.to_str().ok())
}

/// The full fingerprint of the one image whose fingerprint starts with `prefix`.
pub async fn resolve(st: &AppState, project: &str, prefix: &str) -> Result<ImageRecord, ApiError> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found("Image not found"));
    }
    let p = prefix.to_ascii_lowercase();
    let project = project.to_owned();
    let rec = st
        .db
        .call(move |c| {
            let fps = crate::db::images::matching(c, &project, &p)?;
            match fps.as_slice() {
                [one] => Ok(Ok(crate::db::images::get(c, &project, one)?)),
                [] => Ok(Ok(None)),
                _ => Ok(Err(())),
            }
        })
        .await?
        .map_err(|()| {
            ApiError::bad_request(format!("Image fingerprint prefix {prefix:?} is ambiguous"))
        })?;
    rec.ok_or_else(|| ApiError::not_found("Image not found"))
}

/// `GET /1.0/images`.
pub async fn list(
    State(st): State<AppState>,
    super::ImageProject(project): super::ImageProject,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let recursive = recursion(q.as_deref())? > 0;
    let p = project.clone();
    let recs = st.db.call(move |c| crate::db::images::list(c, &p)).await?;
    if recursive {
        Ok(sync(recs.into_iter().map(|r| r.image).collect::<Vec<_>>()))
    } else {
        Ok(sync(
            recs.iter()
                .map(|r| {
                    super::image_url(&format!("/1.0/images/{}", r.image.fingerprint), &project)
                })
                .collect::<Vec<_>>(),
        ))
    }
}

fn image_etag(i: &Image) -> String {
    etag_of(&(
        i.auto_update,
        &i.properties,
        i.public,
        &i.expires_at,
        &i.profiles,
    ))
}

/// `GET /1.0/images/{fingerprint}`.
pub async fn get(
    State(st): State<AppState>,
    super::ImageProject(project): super::ImageProject,
    Path(fp): Path<String>,
) -> ApiResult {
    let rec = resolve(&st, &project, &fp).await?;
    let etag = image_etag(&rec.image);
    Ok(sync_etag(rec.image, &etag))
}

/// `PUT /1.0/images/{fingerprint}`.
pub async fn put(
    State(st): State<AppState>,
    super::ImageProject(project): super::ImageProject,
    Path(fp): Path<String>,
    headers: HeaderMap,
    Json(req): Json<ImagePut>,
) -> ApiResult {
    update(&st, &project, &fp, &headers, req).await
}

/// `PATCH /1.0/images/{fingerprint}`.
pub async fn patch(
    State(st): State<AppState>,
    super::ImageProject(project): super::ImageProject,
    Path(fp): Path<String>,
    headers: HeaderMap,
    Json(req): Json<serde_json::Value>,
) -> ApiResult {
    let _guard = st.image_lock.lock().await;
    let rec = resolve(&st, &project, &fp).await?;
    let i = &rec.image;
    let mut merged = ImagePut {
        auto_update: i.auto_update,
        properties: i.properties.clone(),
        public: i.public,
        expires_at: Some(i.expires_at.clone()),
        profiles: Some(i.profiles.clone()),
    };
    let obj = req
        .as_object()
        .ok_or_else(|| ApiError::bad_request("Invalid request: expected an object"))?;
    let field = |k: &str| obj.get(k).cloned();
    let bad = |k: &str, e: serde_json::Error| {
        ApiError::bad_request(format!("Invalid value for field \"{k}\": {e}"))
    };
    if let Some(v) = field("auto_update") {
        merged.auto_update = serde_json::from_value(v).map_err(|e| bad("auto_update", e))?;
    }
    if let Some(v) = field("public") {
        merged.public = serde_json::from_value(v).map_err(|e| bad("public", e))?;
    }
    if let Some(v) = field("properties") {
        let p: BTreeMap<String, String> =
            serde_json::from_value(v).map_err(|e| bad("properties", e))?;
        merged.properties.extend(p);
    }
    if let Some(v) = field("expires_at") {
        merged.expires_at = serde_json::from_value(v).map_err(|e| bad("expires_at", e))?;
    }
    if let Some(v) = field("profiles") {
        merged.profiles = serde_json::from_value(v).map_err(|e| bad("profiles", e))?;
    }
    drop(_guard);
    update(&st, &project, &fp, &headers, merged).await
}

async fn update(
    st: &AppState,
    project: &str,
    fp: &str,
    headers: &HeaderMap,
    req: ImagePut,
) -> ApiResult {
    let _guard = st.image_lock.lock().await;
    let rec = resolve(st, project, fp).await?;
    check_if_match(headers, &image_etag(&rec.image))?;
    let fingerprint = rec.image.fingerprint.clone();
    let expires = req.expires_at.unwrap_or_default();
    let profiles = req.profiles.unwrap_or_else(|| vec!["default".to_owned()]);
    let (f, p) = (fingerprint.clone(), project.to_owned());
    st.db
        .call(move |c| {
            crate::db::images::update(
                c,
                &p,
                &f,
                req.public,
                req.auto_update,
                &req.properties,
                &profiles,
                &expires,
            )
        })
        .await?;
    st.events.lifecycle(
        "image-updated",
        &super::image_url(&format!("/1.0/images/{fingerprint}"), project),
        None,
    );
    Ok(super::sync_empty())
}

/// `DELETE /1.0/images/{fingerprint}`: an operation, as in LXD.
pub async fn delete(
    State(st): State<AppState>,
    super::ImageProject(project): super::ImageProject,
    Path(fp): Path<String>,
) -> ApiResult {
    let _guard = st.image_lock.lock().await;
    let rec = resolve(&st, &project, &fp).await?;
    let fingerprint = rec.image.fingerprint.clone();
    let (f, p) = (fingerprint.clone(), project.clone());
    let last = st
        .db
        .call(move |c| crate::db::images::delete(c, &p, &f))
        .await?;
    // The files go with the last project holding the image.
    if last {
        let dir = st.paths.images();
        let _ = std::fs::remove_file(dir.join(&fingerprint));
        let _ = std::fs::remove_file(dir.join(format!("{fingerprint}.rootfs")));
        crate::instances::spares::drop_image(&st, &fingerprint);
    }
    st.events.lifecycle(
        "image-deleted",
        &super::image_url(&format!("/1.0/images/{fingerprint}"), &project),
        None,
    );
    let mut resources = BTreeMap::new();
    resources.insert(
        "images".to_owned(),
        vec![format!("/1.0/images/{fingerprint}")],
    );
    let spec = OpSpec {
        class: OperationClass::Task,
        description: "Deleting image".to_owned(),
        resources: Some(resources),
        may_cancel: false,
        metadata: serde_json::Map::new(),
        fds: vec![],
    };
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
    let dir = st.paths.images();
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if ctype.starts_with("application/json") {
        return Err(ApiError::bad_request(
            "Creating images from a source (remote copy, publish) is not supported yet",
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
    super::ImageProject(project): super::ImageProject,
    headers: HeaderMap,
    req: Request,
) -> ApiResult {
    let mut upload = receive(&st, req).await?;
    if upload.meta_name.is_empty() {
        upload.meta_name = lxd_header(&headers, "filename")
            .unwrap_or_default()
            .to_owned();
    }
    let limits = st.image_limits;
    let (upload, found) = tokio::task::spawn_blocking(move || {
        let r = inspect(&upload, &limits);
        (upload, r)
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    let found = found.map_err(|e| match e {
        InspectError::Io(io) => ApiError::internal(&io),
        other => ApiError::bad_request(crate::logging::chain(&other)),
    })?;
    let fp = found.fingerprint.clone();
    if let Some(expected) = lxd_header(&headers, "fingerprint")
        && !expected.is_empty()
        && expected != fp
    {
        return Err(ApiError::bad_request(format!(
            "Fingerprint mismatch: got {fp}, expected {expected}"
        )));
    }
    let public = matches!(lxd_header(&headers, "public"), Some("1" | "true"));
    let mut properties = found.metadata.properties.clone();
    if let Some(raw) = lxd_header(&headers, "properties") {
        properties.extend(parse_properties(raw));
    }
    let alias_names: Vec<String> = headers
        .get_all("X-Incus-aliases")
        .iter()
        .chain(headers.get_all("X-LXD-aliases").iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    for a in &alias_names {
        super::image_aliases::validate_name(a)?;
    }
    let now = now_rfc3339();
    let created = chrono::DateTime::from_timestamp(found.metadata.creation_date, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| now.clone());
    let expires = chrono::DateTime::from_timestamp(found.metadata.expiry_date, 0)
        .filter(|_| found.metadata.expiry_date > 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_owned());
    let filename = if upload.meta_name.is_empty() {
        format!("{}{}", &fp, found.compression.tar_suffix())
    } else {
        upload.meta_name.clone()
    };
    let rec = ImageRecord {
        image: Image {
            fingerprint: fp.clone(),
            filename,
            size: found.size,
            public,
            architecture: found.metadata.architecture.clone(),
            kind: "container".to_owned(),
            properties,
            profiles: vec!["default".to_owned()],
            created_at: created,
            uploaded_at: now,
            expires_at: expires,
            last_used_at: "0001-01-01T00:00:00Z".to_owned(),
            project: project.clone(),
            ..Default::default()
        },
        split: upload.rootfs.is_some(),
        metadata: serde_json::to_string(&found.metadata).unwrap_or_default(),
    };
    let aliases: Vec<ImageAlias> = alias_names
        .iter()
        .map(|n| ImageAlias {
            name: n.clone(),
            description: String::new(),
            target: fp.clone(),
            kind: "container".to_owned(),
        })
        .collect();

    let _guard = st.image_lock.lock().await;
    let f = fp.clone();
    let names = alias_names.clone();
    let p = project.clone();
    let conflict = st
        .db
        .call(move |c| {
            if crate::db::images::get(c, &p, &f)?.is_some() {
                return Ok(Some(
                    "Image with same fingerprint already exists".to_owned(),
                ));
            }
            for n in &names {
                if crate::db::images::get_alias(c, &p, n)?.is_some() {
                    return Ok(Some(format!("Alias {n:?} already exists")));
                }
            }
            Ok(None)
        })
        .await?;
    if let Some(msg) = conflict {
        return Err(ApiError::new(ErrorKind::Conflict, msg));
    }
    let dir = st.paths.images();
    // An image another project holds is stored already: its files stay as they are (the
    // upload is dropped) and this project only gains its holding.
    let f = fp.clone();
    let held_elsewhere = st
        .db
        .call(move |c| crate::db::images::stored(c, &f))
        .await?;
    if held_elsewhere {
        drop(upload);
    } else {
        let (d, f) = (dir.clone(), fp.clone());
        tokio::task::spawn_blocking(move || upload.commit(&d, &f))
            .await
            .map_err(|e| ApiError::internal(&e))?
            .map_err(|e| ApiError::internal(&e))?;
    }
    let stored = rec.clone();
    let p = project.clone();
    if let Err(e) = st
        .db
        .call(move |c| crate::db::images::insert(c, &p, &stored, &aliases))
        .await
    {
        if !held_elsewhere {
            let _ = std::fs::remove_file(dir.join(&fp));
            let _ = std::fs::remove_file(dir.join(format!("{fp}.rootfs")));
        }
        return Err(e.into());
    }
    tracing::info!(fingerprint = %fp, size = rec.image.size, "Image imported");
    st.events.lifecycle(
        "image-created",
        &super::image_url(&format!("/1.0/images/{fp}"), &project),
        None,
    );
    for a in &alias_names {
        st.events.lifecycle(
            "image-alias-created",
            &super::image_url(&format!("/1.0/images/aliases/{a}"), &project),
            None,
        );
    }
    let mut metadata = serde_json::Map::new();
    metadata.insert("fingerprint".to_owned(), fp.clone().into());
    metadata.insert("size".to_owned(), rec.image.size.into());
    let mut resources = BTreeMap::new();
    resources.insert("images".to_owned(), vec![format!("/1.0/images/{fp}")]);
    let spec = OpSpec {
        class: OperationClass::Task,
        description: "Importing image".to_owned(),
        resources: Some(resources),
        may_cancel: false,
        metadata,
        fds: vec![],
    };
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

async fn file_stream(path: std::path::PathBuf) -> Result<(u64, Body), ApiError> {
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
) -> ApiResult {
    let rec = resolve(&st, &project, &fp).await?;
    let fp = rec.image.fingerprint.clone();
    let dir = st.paths.images();
    if !rec.split {
        let (len, body) = file_stream(dir.join(&fp)).await?;
        let mut resp = body.into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(header::CONTENT_DISPOSITION, attachment(&rec.image.filename));
        return Ok(resp);
    }
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
    let (_, meta) = file_stream(dir.join(&fp)).await?;
    let (_, rootfs) = file_stream(dir.join(format!("{fp}.rootfs"))).await?;
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
