//! Image upload and download: streamed from and to files, with an optional progress callback.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::Method;
use hyper::body::Frame;
use tokio::io::AsyncWriteExt;

use crate::{Client, ClientError};

/// Called with the number of bytes moved so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// How to import an image.
#[derive(Clone, Default)]
pub struct ImportOptions {
    pub public: bool,
    pub aliases: Vec<String>,
    pub progress: Option<Progress>,
}

impl std::fmt::Debug for ImportOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportOptions")
            .field("public", &self.public)
            .field("aliases", &self.aliases)
            .finish()
    }
}

fn io_err(path: &Path, source: std::io::Error) -> ClientError {
    ClientError::File {
        path: path.display().to_string(),
        source,
    }
}

type ByteStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

async fn file_stream(
    path: &Path,
    counter: Arc<AtomicU64>,
    progress: Option<Progress>,
) -> Result<ByteStream, ClientError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| io_err(path, e))?;
    let s = tokio_util::io::ReaderStream::with_capacity(file, 1 << 16).inspect_ok(move |b| {
        let n = counter.fetch_add(b.len() as u64, Ordering::Relaxed) + b.len() as u64;
        if let Some(p) = &progress {
            p(n);
        }
    });
    Ok(Box::pin(s))
}

fn once(b: Bytes) -> ByteStream {
    Box::pin(futures_util::stream::once(async move { Ok(b) }))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Client {
    /// Uploads a unified image (`rootfs` = None) or a split one, waits for the import and
    /// returns the fingerprint.
    pub async fn import_image(
        &self,
        meta: &Path,
        rootfs: Option<&Path>,
        opts: &ImportOptions,
    ) -> Result<String, ClientError> {
        let counter = Arc::new(AtomicU64::new(0));
        let mut headers = vec![];
        let name = file_name(meta);
        for prefix in ["X-LXD-", "X-Incus-"] {
            headers.push((format!("{prefix}filename"), name.clone()));
            if opts.public {
                headers.push((format!("{prefix}public"), "1".to_owned()));
            }
        }
        if !opts.aliases.is_empty() {
            headers.push(("X-Incus-aliases".to_owned(), opts.aliases.join(",")));
        }
        let body: ByteStream = match rootfs {
            None => {
                headers.push((
                    "Content-Type".to_owned(),
                    "application/octet-stream".to_owned(),
                ));
                file_stream(meta, counter.clone(), opts.progress.clone()).await?
            }
            Some(rootfs) => {
                let boundary = format!("berth-{:016x}", rand_u64());
                headers.push((
                    "Content-Type".to_owned(),
                    format!("multipart/form-data; boundary={boundary}"),
                ));
                let head = |field: &str, file: &str, lead: &str| {
                    Bytes::from(format!(
                        "{lead}--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                    ))
                };
                let parts = vec![
                    once(head("metadata", &name, "")),
                    file_stream(meta, counter.clone(), opts.progress.clone()).await?,
                    once(head("rootfs", &file_name(rootfs), "\r\n")),
                    file_stream(rootfs, counter.clone(), opts.progress.clone()).await?,
                    once(Bytes::from(format!("\r\n--{boundary}--\r\n"))),
                ];
                Box::pin(futures_util::stream::iter(parts).flatten())
            }
        };
        let body = StreamBody::new(body.map_ok(Frame::data));
        let resp = self
            .transport
            .send(Method::POST, &self.scoped("/1.0/images"), &headers, body)
            .await?;
        let status = resp.status().as_u16();
        let envelope = envelope("/1.0/images", resp).await?;
        if status >= 400 || envelope.kind == berth_api::ResponseType::Error {
            return Err(ClientError::api(status, envelope.error));
        }
        let id = envelope.operation_id().unwrap_or_default();
        let op = self.wait_success(id).await?;
        let fp = op
            .metadata
            .as_ref()
            .and_then(|m| m.get("fingerprint"))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        for alias in &opts.aliases {
            // Servers without alias headers support (older LXD) need the aliases made here.
            let exists = self
                .get::<serde_json::Value>(&format!("/1.0/images/aliases/{alias}"))
                .await
                .is_ok();
            if !exists {
                let body = serde_json::json!({"name": alias, "target": fp});
                self.query(Method::POST, "/1.0/images/aliases", Some(&body))
                    .await?;
            }
        }
        Ok(fp)
    }

    /// Downloads image `fingerprint` into `dir`; returns the files written (one, or the
    /// metadata and rootfs files of a split image).
    pub async fn export_image(
        &self,
        fingerprint: &str,
        dir: &Path,
        progress: Option<Progress>,
    ) -> Result<Vec<PathBuf>, ClientError> {
        self.fetch_image(fingerprint, None, dir, progress, None)
            .await
    }

    /// [`Client::export_image`] from a server that does not trust us, with the secret it
    /// issued for the image (`POST /1.0/images/FP/secret`); no secret for a public image.
    /// A server sending more than `limit` bytes of files (the size its record gave) is
    /// cut off.
    pub async fn download_image(
        &self,
        fingerprint: &str,
        secret: Option<&str>,
        dir: &Path,
        limit: Option<u64>,
    ) -> Result<Vec<PathBuf>, ClientError> {
        let secret = secret.filter(|s| !s.is_empty());
        self.fetch_image(fingerprint, secret, dir, None, limit)
            .await
    }

    async fn fetch_image(
        &self,
        fingerprint: &str,
        secret: Option<&str>,
        dir: &Path,
        progress: Option<Progress>,
        limit: Option<u64>,
    ) -> Result<Vec<PathBuf>, ClientError> {
        let mut path = format!("/1.0/images/{fingerprint}/export");
        if let Some(s) = secret {
            path.push_str(&format!("?secret={s}"));
        }
        let resp = self
            .transport
            .send(
                Method::GET,
                &self.scoped(&path),
                &[],
                http_body_util::Empty::<Bytes>::new(),
            )
            .await?;
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let disposition = resp
            .headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if status >= 400 {
            return Err(ClientError::api(status, envelope(&path, resp).await?.error));
        }
        let counter = Arc::new(AtomicU64::new(0));
        let body = resp
            .into_body()
            .into_data_stream()
            .map_err(std::io::Error::other);
        if let Some(boundary) = ctype.strip_prefix("multipart/form-data; boundary=") {
            let mut mp = multer::Multipart::new(body, boundary.to_owned());
            let mut files = vec![];
            while let Some(field) = mp
                .next_field()
                .await
                .map_err(|e| ClientError::Transfer(e.to_string()))?
            {
                // The server names the parts: a name that is empty or names a part
                // already written gets one of ours.
                let name = field
                    .file_name()
                    .map(sanitize)
                    .filter(|n| !n.is_empty() && !files.contains(&dir.join(n)))
                    .unwrap_or_else(|| format!("{fingerprint}.part{}", files.len()));
                let out = dir.join(name);
                let stream = field.map_err(std::io::Error::other);
                write_file(&out, stream, &counter, progress.as_ref(), limit).await?;
                files.push(out);
            }
            return Ok(files);
        }
        let name = disposition
            .split("filename=")
            .nth(1)
            .map(|n| sanitize(n.trim_matches('"')))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("{fingerprint}.tar"));
        let out = dir.join(name);
        write_file(&out, body, &counter, progress.as_ref(), limit).await?;
        Ok(vec![out])
    }
}

/// Reads and decodes a reply's envelope.
pub(crate) async fn envelope(
    path: &str,
    resp: hyper::Response<hyper::body::Incoming>,
) -> Result<berth_api::Response, ClientError> {
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(ClientError::Http)?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
        path: path.to_owned(),
        source,
    })
}

/// Keeps only the last path component of a server-supplied file name.
fn sanitize(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or_default();
    if base == ".." || base == "." {
        String::new()
    } else {
        base.to_owned()
    }
}

async fn write_file<S>(
    out: &Path,
    mut stream: S,
    counter: &AtomicU64,
    progress: Option<&Progress>,
    limit: Option<u64>,
) -> Result<(), ClientError>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
{
    let file = tokio::fs::File::create(out)
        .await
        .map_err(|e| io_err(out, e))?;
    let mut w = tokio::io::BufWriter::with_capacity(1 << 20, file);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ClientError::Transfer(e.to_string()))?;
        w.write_all(&chunk).await.map_err(|e| io_err(out, e))?;
        let n = counter.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
        if limit.is_some_and(|l| n > l) {
            return Err(ClientError::Transfer(format!(
                "the server sent more than the {} bytes its image record announced",
                limit.unwrap_or_default()
            )));
        }
        if let Some(p) = progress {
            p(n);
        }
    }
    w.flush().await.map_err(|e| io_err(out, e))
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
