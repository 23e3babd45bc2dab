//! `/1.0/instances/{name}/files?path=…` (LXD's files API) and `/1.0/instances/{name}/sftp`
//! (the SFTP stream incus uses), on running and stopped containers alike.
//!
//! Both go through [`RootFs`], which resolves every path inside the container's root. The
//! headers of the files API come in both spellings, `X-LXD-*` and `X-Incus-*`: requests
//! may use either, replies carry both. Ids are the container's own.

use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode as Http, header};
use axum::response::IntoResponse;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use berth_api::ErrorKind;

use super::{ApiError, ApiResult, AppState, sync};
use crate::instance::files::{Kind, Meta, Owner, RootFs, Write};

fn path_param(q: Option<&str>) -> Result<String, ApiError> {
    super::query_value(q, "path")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request("Missing path argument"))
}

fn io_error(path: &str, e: &std::io::Error) -> ApiError {
    match e.kind() {
        std::io::ErrorKind::NotFound => ApiError::not_found(format!("Path {path:?} not found")),
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::AlreadyExists => {
            ApiError::bad_request(format!("{path}: {e}"))
        }
        _ if e.raw_os_error() == Some(rustix::io::Errno::NOTEMPTY.raw_os_error()) => {
            ApiError::bad_request(format!("{path}: directory not empty"))
        }
        _ if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            ApiError::bad_request(format!("{path} is a symlink"))
        }
        _ if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
            ApiError::bad_request(format!("{path}: not a directory"))
        }
        _ => ApiError::new(ErrorKind::Internal, format!("{path}: {e}")),
    }
}

/// The instance's root filesystem, opened.
async fn open(st: &AppState, name: &str) -> Result<std::sync::Arc<RootFs>, ApiError> {
    Ok(crate::instance::files::open(&st.cx, name).await?)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<std::io::Result<T>, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(&e))
}

/// Go's `time.Time.String()` in UTC, as LXD sends `X-LXD-modified`.
fn modified(m: &Meta) -> String {
    chrono::DateTime::from_timestamp(m.mtime, u32::try_from(m.mtime_nsec).unwrap_or(0))
        .map(|t| {
            let s = t.format("%Y-%m-%d %H:%M:%S%.f").to_string();
            format!("{s} +0000 UTC")
        })
        .unwrap_or_default()
}

fn with_headers(mut resp: axum::response::Response, m: &Meta) -> axum::response::Response {
    let h = resp.headers_mut();
    for prefix in ["X-LXD", "X-Incus"] {
        for (k, v) in [
            ("uid", m.uid.to_string()),
            ("gid", m.gid.to_string()),
            ("mode", format!("{:04o}", m.mode)),
            ("type", m.kind.name().to_owned()),
            ("modified", modified(m)),
        ] {
            if let (Ok(name), Ok(value)) = (
                header::HeaderName::try_from(format!("{prefix}-{k}")),
                HeaderValue::from_str(&v),
            ) {
                h.insert(name, value);
            }
        }
    }
    resp
}

/// A request header in either spelling (`X-Incus-…` first).
fn header_value<'a>(headers: &'a HeaderMap, key: &str) -> Option<&'a str> {
    ["X-Incus", "X-LXD"]
        .iter()
        .find_map(|p| headers.get(format!("{p}-{key}")))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// An id header: absent or -1 leaves the id alone.
fn id_header(headers: &HeaderMap, key: &str) -> Result<Option<u32>, ApiError> {
    match header_value(headers, key) {
        None | Some("-1") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "Invalid X-LXD-{key} header {v:?}: expected a number"
            ))
        }),
    }
}

/// The mode header as LXD reads it: decimal digits, octal when they start with 0.
fn mode_header(headers: &HeaderMap) -> Result<Option<u32>, ApiError> {
    let Some(v) = header_value(headers, "mode") else {
        return Ok(None);
    };
    let bad = || ApiError::bad_request(format!("Invalid X-LXD-mode header {v:?}"));
    if v == "-1" {
        return Ok(None);
    }
    if !v.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let mode = if v.len() > 1 && v.starts_with('0') {
        u32::from_str_radix(v, 8).map_err(|_| bad())?
    } else {
        v.parse().map_err(|_| bad())?
    };
    if mode > 0o7777 {
        return Err(bad());
    }
    Ok(Some(mode))
}

/// `GET /1.0/instances/{name}/files?path=…` (and `HEAD`): a file's content, a directory's
/// entries, or where a symlink points; metadata in the headers.
pub async fn get(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let path = path_param(q.as_deref())?;
    let fs = open(&st, &name).await?;
    let p = path.clone();
    let f2 = fs.clone();
    let m = blocking(move || f2.lstat(&p))
        .await?
        .map_err(|e| io_error(&path, &e))?;
    let resp = match m.kind {
        Kind::Directory => {
            let p = path.clone();
            let entries = blocking(move || fs.read_dir(&p))
                .await?
                .map_err(|e| io_error(&path, &e))?;
            let names: Vec<String> = entries.into_iter().map(|(n, _)| n).collect();
            sync(names).into_response()
        }
        Kind::Symlink => {
            let p = path.clone();
            let target = blocking(move || fs.link_target(&p))
                .await?
                .map_err(|e| io_error(&path, &e))?;
            raw_response(Body::from(target.clone()), target.len() as u64, &path)
        }
        Kind::File => {
            let p = path.clone();
            let (file, m) = blocking(move || fs.open_read(&p, false))
                .await?
                .map_err(|e| io_error(&path, &e))?;
            // Exactly the announced length, even if the file changes meanwhile.
            let file = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), m.size);
            let body =
                Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
            raw_response(body, m.size, &path)
        }
        Kind::Other => {
            return Err(ApiError::bad_request(format!(
                "{path} is not a regular file, directory or symlink"
            )));
        }
    };
    Ok(with_headers(resp, &m))
}

fn raw_response(body: Body, len: u64, path: &str) -> axum::response::Response {
    let base = std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    super::inline_file(body, len, &base)
}

/// `POST /1.0/instances/{name}/files?path=…`: writes a file (overwrite or append), creates
/// a directory, or creates a symlink (the body is its target).
pub async fn post(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let path = path_param(q.as_deref())?;
    let owner = Owner {
        uid: id_header(&headers, "uid")?,
        gid: id_header(&headers, "gid")?,
        mode: mode_header(&headers)?,
    };
    let kind = header_value(&headers, "type").unwrap_or("file").to_owned();
    let how = match header_value(&headers, "write").unwrap_or("overwrite") {
        "overwrite" => Write::Overwrite,
        "append" => Write::Append,
        other => {
            return Err(ApiError::bad_request(format!(
                "Bad file write mode: {other}"
            )));
        }
    };
    let fs = open(&st, &name).await?;
    match kind.as_str() {
        "file" => {
            let p = path.clone();
            let (file, _) = blocking(move || fs.write_file(&p, how, owner))
                .await?
                .map_err(|e| io_error(&path, &e))?;
            let mut file = tokio::fs::File::from_std(file);
            let mut stream = body.into_data_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk
                    .map_err(|e| ApiError::bad_request(format!("Failed to read the body: {e}")))?;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io_error(&path, &e))?;
            }
            file.flush().await.map_err(|e| io_error(&path, &e))?;
        }
        "directory" => {
            let p = path.clone();
            blocking(move || fs.mkdir(&p, owner))
                .await?
                .map_err(|e| io_error(&path, &e))?;
        }
        "symlink" => {
            let target = axum::body::to_bytes(body, 64 * 1024)
                .await
                .map_err(|e| ApiError::bad_request(format!("Invalid symlink target: {e}")))?;
            let target = String::from_utf8(target.to_vec())
                .map_err(|_| ApiError::bad_request("Invalid symlink target: not UTF-8"))?;
            if target.is_empty() || target.contains('\0') {
                return Err(ApiError::bad_request("Invalid symlink target"));
            }
            let p = path.clone();
            blocking(move || fs.symlink(&p, &target, owner))
                .await?
                .map_err(|e| io_error(&path, &e))?;
        }
        other => return Err(ApiError::bad_request(format!("Bad file type: {other}"))),
    }
    Ok(super::sync_empty())
}

/// `DELETE /1.0/instances/{name}/files?path=…`: a file, symlink or empty directory; with
/// `X-Incus-force: true` (or `X-LXD-force`) a whole tree.
pub async fn delete(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let path = path_param(q.as_deref())?;
    if crate::instance::files::normalize(&path) == "/" {
        return Err(ApiError::bad_request(
            "The root directory cannot be deleted",
        ));
    }
    let force = header_value(&headers, "force") == Some("true");
    let fs = open(&st, &name).await?;
    let p = path.clone();
    blocking(move || {
        if force {
            fs.remove_all(&p)
        } else {
            fs.remove(&p)
        }
    })
    .await?
    .map_err(|e| io_error(&path, &e))?;
    Ok(super::sync_empty())
}

/// `GET /1.0/instances/{name}/sftp` with `Upgrade: sftp`: switches the connection to an
/// SFTP session rooted in the container.
pub async fn sftp(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
    mut req: Request,
) -> ApiResult {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("sftp"));
    if !upgrade {
        return Err(ApiError::bad_request("Missing or invalid upgrade header"));
    }
    let fs = open(&st, &name).await?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let (r, w) = tokio::io::split(io);
        let result = tokio::task::spawn_blocking(move || {
            let r = tokio_util::io::SyncIoBridge::new(r);
            let w = tokio_util::io::SyncIoBridge::new(w);
            super::sftp::serve(&fs, r, w)
        })
        .await;
        if let Ok(Err(e)) = result {
            tracing::debug!(instance = %name, error = %e, "SFTP session ended");
        }
    });
    let mut resp = Http::SWITCHING_PROTOCOLS.into_response();
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("sftp"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    Ok(resp)
}
