//! Instance backups as streams: exported straight into a writer (Incus's `direct_backup`,
//! or a backup file made, fetched and deleted on servers without it) and imported from a
//! stream, with an optional progress callback.

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::Method;
use hyper::body::Frame;
use tokio::io::AsyncWrite;

use crate::images::envelope;
use crate::{Client, ClientError, Progress, copy_stream};

/// What a backup holds and how it is compressed.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Leave the snapshots out.
    pub instance_only: bool,
    /// The pool driver's own streams (btrfs send) rather than trees, where it has them.
    pub optimized_storage: bool,
    /// `none`, `gzip`, `zstd`, `xz`, `bzip2`; empty: the server's default.
    pub compression: String,
}

/// Where an imported backup goes.
#[derive(Debug, Clone, Default)]
pub struct ImportTarget {
    /// The new instance's name; the backup's when `None`.
    pub name: Option<String>,
    /// Its pool; the backup's (or the default profile's) when `None`.
    pub pool: Option<String>,
}

type ByteStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

impl Client {
    /// Writes a backup of `instance` into `out` as the server makes it; returns the bytes
    /// written.
    pub async fn export_backup(
        &self,
        instance: &str,
        opts: &BackupOptions,
        out: &mut (impl AsyncWrite + Unpin),
        progress: Option<Progress>,
    ) -> Result<u64, ClientError> {
        let server = self.server().await?;
        let body = serde_json::json!({
            "instance_only": opts.instance_only,
            "container_only": opts.instance_only,
            "optimized_storage": opts.optimized_storage,
            "compression_algorithm": opts.compression,
        });
        let path = format!("/1.0/instances/{instance}/backups");
        if !server.api_extensions.iter().any(|e| e == "direct_backup") {
            return self.export_via_file(instance, body, out, progress).await;
        }
        let headers = vec![
            ("Accept".to_owned(), "application/octet-stream".to_owned()),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ];
        let resp = self
            .transport
            .send(
                Method::POST,
                &self.scoped(&path),
                &headers,
                http_body_util::Full::new(Bytes::from(body.to_string())),
            )
            .await?;
        let status = resp.status().as_u16();
        if status >= 400 {
            return Err(ClientError::api(status, envelope(&path, resp).await?.error));
        }
        let stream: ByteStream = Box::pin(
            resp.into_body()
                .into_data_stream()
                .map_err(std::io::Error::other),
        );
        copy_stream(stream, out, progress)
            .await
            .map_err(|e| ClientError::Transfer(e.to_string()))
    }

    /// LXD's way: a backup file made by an operation, downloaded, then deleted.
    async fn export_via_file(
        &self,
        instance: &str,
        mut body: serde_json::Value,
        out: &mut (impl AsyncWrite + Unpin),
        progress: Option<Progress>,
    ) -> Result<u64, ClientError> {
        let name = format!("export-{:x}", std::process::id());
        body["name"] = serde_json::json!(name);
        // Should the delete below never come, the server drops it in a day.
        let expiry = (chrono::Utc::now() + chrono::Duration::days(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        body["expires_at"] = serde_json::json!(expiry);
        let path = format!("/1.0/instances/{instance}/backups");
        let r = self.query(Method::POST, &path, Some(&body)).await?;
        if let Some(id) = r.body.operation_id() {
            self.wait_success(id).await?;
        }
        let file = format!("{path}/{name}/export");
        let resp = self
            .transport
            .send(
                Method::GET,
                &self.scoped(&file),
                &[],
                http_body_util::Empty::<Bytes>::new(),
            )
            .await?;
        let status = resp.status().as_u16();
        let copied = if status >= 400 {
            Err(ClientError::api(status, envelope(&file, resp).await?.error))
        } else {
            let stream: ByteStream = Box::pin(
                resp.into_body()
                    .into_data_stream()
                    .map_err(std::io::Error::other),
            );
            copy_stream(stream, out, progress)
                .await
                .map_err(|e| ClientError::Transfer(e.to_string()))
        };
        if let Ok(r) = self
            .query(Method::DELETE, &format!("{path}/{name}"), None)
            .await
            && let Some(id) = r.body.operation_id()
        {
            let _ = self.wait_success(id).await;
        }
        copied
    }

    /// Imports the backup `input` streams as a new instance; returns once it is made.
    pub async fn import_backup(
        &self,
        input: ByteStream,
        target: &ImportTarget,
        progress: Option<Progress>,
    ) -> Result<(), ClientError> {
        let mut headers = vec![(
            "Content-Type".to_owned(),
            "application/octet-stream".to_owned(),
        )];
        for prefix in ["X-LXD-", "X-Incus-"] {
            if let Some(n) = &target.name {
                headers.push((format!("{prefix}name"), n.clone()));
            }
            if let Some(p) = &target.pool {
                headers.push((format!("{prefix}pool"), p.clone()));
            }
        }
        let mut sent = 0u64;
        let counted = input.inspect_ok(move |b| {
            sent += b.len() as u64;
            if let Some(p) = &progress {
                p(sent);
            }
        });
        let body = StreamBody::new(counted.map_ok(Frame::data));
        let resp = self
            .transport
            .send(Method::POST, &self.scoped("/1.0/instances"), &headers, body)
            .await?;
        let status = resp.status().as_u16();
        let env = envelope("/1.0/instances", resp).await?;
        if status >= 400 || env.kind == berth_api::ResponseType::Error {
            return Err(ClientError::api(status, env.error));
        }
        if let Some(id) = env.operation_id() {
            self.wait_success(id).await?;
        }
        Ok(())
    }
}
