//! A simplestreams image server (`--protocol simplestreams`): its index and products
//! read over HTTPS, its images listed ([`berth_api::simplestreams::images`]) and their
//! files downloaded with size and SHA-256 checked against what the tree says, and the
//! fingerprint against the files.
//!
//! A public server's certificate is checked against the system's roots (TLS 1.2 or 1.3);
//! a server whose certificate the user accepted (a berthd's own tree) is pinned instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::simplestreams::{File, Products, Stream, StreamImage};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::Method;
use sha2::Digest;
use tokio::io::AsyncWriteExt;

use crate::ClientError;
use crate::transport::Transport;

/// The largest index or products file read (images.linuxcontainers.org's is ~5 MB).
const MAX_JSON: usize = 64 << 20;

/// A simplestreams server.
#[derive(Debug, Clone)]
pub struct SimpleStreams {
    transport: Transport,
    /// The URL's path, without its trailing `/` (the tree's root).
    root: String,
    url: String,
}

impl SimpleStreams {
    /// The server at `url` (`https://HOST[:PORT][/PATH]`), its certificate pinned to
    /// `pinned` (DER) when given, else checked against the system's roots.
    pub fn new(url: &str, pinned: Option<Vec<u8>>) -> Result<Self, ClientError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| ClientError::Tls(format!("Invalid server URL {url:?}: {e}")))?;
        if parsed.scheme() != "https" {
            return Err(ClientError::Tls(format!(
                "Invalid server URL {url:?}: simplestreams servers are reached over https://"
            )));
        }
        let host = match parsed.host() {
            Some(url::Host::Ipv6(a)) => format!("[{a}]"),
            Some(h) => h.to_string(),
            None => return Err(ClientError::Tls(format!("Invalid server URL {url:?}"))),
        };
        let addr = format!("{host}:{}", parsed.port().unwrap_or(443));
        let tls = match &pinned {
            Some(der) => crate::tls::config(Some(der.clone()), None)?,
            None => crate::tls::public_config()?,
        };
        Ok(SimpleStreams {
            transport: Transport::Https {
                addr,
                tls,
                cert: Arc::new(pinned.unwrap_or_default()),
            },
            root: parsed.path().trim_end_matches('/').to_owned(),
            url: url.trim_end_matches('/').to_owned(),
        })
    }

    /// The server's URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's pinned certificate (DER), if it has one.
    pub fn certificate(&self) -> Option<&[u8]> {
        match &self.transport {
            Transport::Https { cert, .. } if !cert.is_empty() => Some(cert.as_slice()),
            _ => None,
        }
    }

    /// `GET` of `rel` under the tree's root; a reply other than 200 is an error.
    async fn open(&self, rel: &str) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let path = format!("{}/{rel}", self.root);
        let resp = self
            .transport
            .send(Method::GET, &path, &[], Empty::<Bytes>::new())
            .await?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(ClientError::api(
                status,
                format!("{}/{rel}: HTTP status {status}", self.url),
            ));
        }
        Ok(resp)
    }

    async fn get(&self, rel: &str, limit: usize) -> Result<Bytes, ClientError> {
        let resp = self.open(rel).await?;
        let body = http_body_util::Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| ClientError::Transfer(format!("{}/{rel}: {e}", self.url)))?;
        Ok(body.to_bytes())
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, rel: &str) -> Result<T, ClientError> {
        let body = self.get(rel, MAX_JSON).await?;
        serde_json::from_slice(&body).map_err(|source| ClientError::Decode {
            path: format!("{}/{rel}", self.url),
            source,
        })
    }

    /// Every container image the server offers, newest first, with the aliases the
    /// clients derive for this host.
    pub async fn images(&self) -> Result<Vec<StreamImage>, ClientError> {
        let stream: Stream = self.json("streams/v1/index.json").await?;
        let local = berth_api::simplestreams::local_arch();
        let mut out: Vec<StreamImage> = Vec::new();
        for entry in stream.index.values() {
            if entry.datatype != "image-downloads" || entry.products.is_empty() {
                continue;
            }
            let products: Products = self.json(entry.path.trim_start_matches('/')).await?;
            for img in berth_api::simplestreams::images(&products, local) {
                if !out
                    .iter()
                    .any(|o| o.image.fingerprint == img.image.fingerprint)
                {
                    out.push(img);
                }
            }
        }
        Ok(out)
    }

    /// The image `name` (an alias or a fingerprint prefix) names.
    pub async fn find(&self, name: &str) -> Result<StreamImage, ClientError> {
        let images = self.images().await?;
        berth_api::simplestreams::find(&images, name)
            .cloned()
            .ok_or_else(|| {
                ClientError::api(404, format!("Image {name:?} not found on {}", self.url))
            })
    }

    /// Downloads `img`'s files into `dir` (the metadata or unified tarball, then the
    /// rootfs), each checked against its size and SHA-256, and the whole against the
    /// fingerprint; `progress` gets the bytes read so far.
    pub async fn download(
        &self,
        img: &StreamImage,
        dir: &Path,
        progress: Option<crate::Progress>,
    ) -> Result<Vec<PathBuf>, ClientError> {
        let mut whole = sha2::Sha256::new();
        let mut done = 0u64;
        let mut files = Vec::new();
        let parts =
            std::iter::once(("meta", &img.meta)).chain(img.rootfs.iter().map(|r| ("rootfs", r)));
        for (name, file) in parts {
            let out = dir.join(name);
            let own = self
                .fetch(file, &out, &mut whole, &mut done, progress.as_ref())
                .await?;
            if !own.eq_ignore_ascii_case(&file.sha256) {
                return Err(ClientError::Transfer(format!(
                    "{}/{}: SHA-256 {own} is not the {} the server lists",
                    self.url, file.path, file.sha256
                )));
            }
            files.push(out);
        }
        let got = hex(&whole.finalize());
        let expected = img.image.fingerprint.to_ascii_lowercase();
        if got != expected {
            return Err(ClientError::Transfer(format!(
                "{}: the files of image {expected} hash to {got}, not to its fingerprint",
                self.url
            )));
        }
        Ok(files)
    }

    /// Streams `file` to `out`, feeding `whole` too; returns the file's own SHA-256.
    async fn fetch(
        &self,
        file: &File,
        out: &Path,
        whole: &mut sha2::Sha256,
        done: &mut u64,
        progress: Option<&crate::Progress>,
    ) -> Result<String, ClientError> {
        let rel = file.path.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") {
            return Err(ClientError::Transfer(format!("Invalid file path {rel:?}")));
        }
        let resp = self.open(rel).await?;
        let io = |e| ClientError::File {
            path: out.display().to_string(),
            source: e,
        };
        let mut w = tokio::io::BufWriter::with_capacity(
            1 << 20,
            tokio::fs::File::create(out).await.map_err(io)?,
        );
        let mut own = sha2::Sha256::new();
        let mut size = 0u64;
        let mut body = resp.into_body().into_data_stream();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| ClientError::Transfer(format!("{}/{rel}: {e}", self.url)))?;
            size += chunk.len() as u64;
            if size > file.size {
                return Err(ClientError::Transfer(format!(
                    "{}/{rel} is larger than the {} bytes the server lists",
                    self.url, file.size
                )));
            }
            own.update(&chunk);
            whole.update(&chunk);
            w.write_all(&chunk).await.map_err(io)?;
            *done += chunk.len() as u64;
            if let Some(p) = progress {
                p(*done);
            }
        }
        w.flush().await.map_err(io)?;
        if size != file.size {
            return Err(ClientError::Transfer(format!(
                "{}/{rel} ended after {size} of {} bytes",
                self.url, file.size
            )));
        }
        Ok(hex(&own.finalize()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
