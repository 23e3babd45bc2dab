//! Files inside instances, through LXD's files API: streamed uploads and downloads with the
//! owner, mode and type carried in `X-LXD-*` headers.

use std::path::Path;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::Method;
use hyper::body::Frame;

use crate::images::{Progress, envelope};
use crate::{Client, ClientError};

/// What a path inside an instance is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileMeta {
    /// `file`, `directory` or `symlink`.
    pub kind: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
}

/// A downloaded path: a file's bytes as a stream, a directory's entries, a symlink's target.
pub enum Fetched {
    File(
        FileMeta,
        std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>,
        Option<u64>,
    ),
    Directory(FileMeta, Vec<String>),
    Symlink(FileMeta, String),
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fetched::File(m, _, len) => write!(f, "File({m:?}, {len:?})"),
            Fetched::Directory(m, e) => write!(f, "Directory({m:?}, {e:?})"),
            Fetched::Symlink(m, t) => write!(f, "Symlink({m:?}, {t:?})"),
        }
    }
}

fn files_path(instance: &str, path: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
    format!("/1.0/instances/{instance}/files?path={encoded}")
}

fn headers_of(meta: &FileMeta, write: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![("X-LXD-type".to_owned(), meta.kind.clone())];
    if let Some(u) = meta.uid {
        h.push(("X-LXD-uid".to_owned(), u.to_string()));
    }
    if let Some(g) = meta.gid {
        h.push(("X-LXD-gid".to_owned(), g.to_string()));
    }
    if let Some(m) = meta.mode {
        h.push(("X-LXD-mode".to_owned(), format!("{m:04o}")));
    }
    if let Some(w) = write {
        h.push(("X-LXD-write".to_owned(), w.to_owned()));
    }
    h
}

fn meta_of(headers: &hyper::HeaderMap) -> FileMeta {
    let get = |k: &str| {
        headers
            .get(format!("X-LXD-{k}"))
            .or_else(|| headers.get(format!("X-Incus-{k}")))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    FileMeta {
        kind: get("type").unwrap_or_else(|| "file".to_owned()),
        uid: get("uid").and_then(|v| v.parse().ok()),
        gid: get("gid").and_then(|v| v.parse().ok()),
        mode: get("mode").and_then(|v| u32::from_str_radix(&v, 8).ok()),
    }
}

impl Client {
    /// Sends `method` on file `path` of `instance`; an error reply becomes
    /// [`ClientError::Api`].
    async fn send_path<B>(
        &self,
        method: Method,
        instance: &str,
        path: &str,
        headers: &[(String, String)],
        body: B,
    ) -> Result<(), ClientError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let p = files_path(instance, path);
        let resp = self
            .transport
            .send(method, &self.scoped(&p), headers, body)
            .await?;
        let status = resp.status().as_u16();
        let env = envelope(&p, resp).await?;
        if status >= 400 || env.kind == berth_api::ResponseType::Error {
            return Err(ClientError::api(status, env.error));
        }
        Ok(())
    }

    /// Uploads local file `local` to `path` in `instance` (overwriting, or appending with
    /// `append`), streamed; `progress` sees the bytes sent.
    pub async fn push_file(
        &self,
        instance: &str,
        path: &str,
        local: &Path,
        meta: &FileMeta,
        append: bool,
        progress: Option<Progress>,
    ) -> Result<(), ClientError> {
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| ClientError::File {
                path: local.display().to_string(),
                source: e,
            })?;
        let mut sent = 0u64;
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, 1 << 18).inspect_ok(move |b| {
                sent += b.len() as u64;
                if let Some(p) = &progress {
                    p(sent);
                }
            });
        let meta = FileMeta {
            kind: "file".to_owned(),
            ..meta.clone()
        };
        let write = if append { "append" } else { "overwrite" };
        let body = StreamBody::new(stream.map_ok(Frame::data));
        self.send_path(
            Method::POST,
            instance,
            path,
            &headers_of(&meta, Some(write)),
            body,
        )
        .await
    }

    /// Writes `data` to `path` in `instance`.
    pub async fn write_file(
        &self,
        instance: &str,
        path: &str,
        data: Bytes,
        meta: &FileMeta,
    ) -> Result<(), ClientError> {
        let meta = FileMeta {
            kind: "file".to_owned(),
            ..meta.clone()
        };
        self.send_path(
            Method::POST,
            instance,
            path,
            &headers_of(&meta, Some("overwrite")),
            http_body_util::Full::new(data),
        )
        .await
    }

    /// Creates directory `path` in `instance` (nothing happens if it exists).
    pub async fn make_dir(
        &self,
        instance: &str,
        path: &str,
        meta: &FileMeta,
    ) -> Result<(), ClientError> {
        let meta = FileMeta {
            kind: "directory".to_owned(),
            ..meta.clone()
        };
        self.send_path(
            Method::POST,
            instance,
            path,
            &headers_of(&meta, None),
            Empty::<Bytes>::new(),
        )
        .await
    }

    /// Creates symlink `path` in `instance` pointing to `target`.
    pub async fn make_symlink(
        &self,
        instance: &str,
        path: &str,
        target: &str,
        meta: &FileMeta,
    ) -> Result<(), ClientError> {
        let meta = FileMeta {
            kind: "symlink".to_owned(),
            ..meta.clone()
        };
        self.send_path(
            Method::POST,
            instance,
            path,
            &headers_of(&meta, None),
            http_body_util::Full::new(Bytes::from(target.to_owned())),
        )
        .await
    }

    /// Fetches `path` from `instance`.
    pub async fn fetch_file(&self, instance: &str, path: &str) -> Result<Fetched, ClientError> {
        let p = files_path(instance, path);
        let resp = self
            .transport
            .send(Method::GET, &self.scoped(&p), &[], Empty::<Bytes>::new())
            .await?;
        let status = resp.status().as_u16();
        let meta = meta_of(resp.headers());
        if status >= 400 {
            return Err(ClientError::api(status, envelope(&p, resp).await?.error));
        }
        let len = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        match meta.kind.as_str() {
            "directory" => {
                let env = envelope(&p, resp).await?;
                let names: Vec<String> =
                    serde_json::from_value(env.metadata).map_err(|source| ClientError::Decode {
                        path: p.clone(),
                        source,
                    })?;
                Ok(Fetched::Directory(meta, names))
            }
            "symlink" => {
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(ClientError::Http)?
                    .to_bytes();
                Ok(Fetched::Symlink(
                    meta,
                    String::from_utf8_lossy(&body).into_owned(),
                ))
            }
            _ => {
                let stream = resp
                    .into_body()
                    .into_data_stream()
                    .map_err(std::io::Error::other);
                Ok(Fetched::File(meta, Box::pin(stream), len))
            }
        }
    }

    /// Deletes `path` in `instance` (a whole tree with `force`).
    pub async fn delete_file(
        &self,
        instance: &str,
        path: &str,
        force: bool,
    ) -> Result<(), ClientError> {
        let headers = if force {
            vec![("X-LXD-force".to_owned(), "true".to_owned())]
        } else {
            vec![]
        };
        self.send_path(
            Method::DELETE,
            instance,
            path,
            &headers,
            Empty::<Bytes>::new(),
        )
        .await
    }
}

/// Drains a fetched file's stream into `out`, calling `progress` with the bytes so far.
pub async fn copy_stream(
    mut stream: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>,
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
    progress: Option<Progress>,
) -> std::io::Result<u64> {
    use tokio::io::AsyncWriteExt;
    // Chunks arrive as the connection delivers them (often 16 KiB); a file written per
    // chunk costs a blocking task each, so gather them into large writes.
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, out);
    let mut done = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        out.write_all(&chunk).await?;
        done += chunk.len() as u64;
        if let Some(p) = &progress {
            p(done);
        }
    }
    out.flush().await?;
    Ok(done)
}
