//! The typed async client of the berth API (and of any LXD/Incus-compatible server).
//!
//! Used by the `berth` CLI, by the end-to-end tests and, later, by berthd itself for
//! host-to-host migration; it must never depend on a daemon crate. It talks HTTP/1.1 and
//! websockets over one kind of stream, so the unix socket today and TLS later share one path.
//! Operations are waited for through the events websocket, with `/wait` as the fallback.

mod backups;
mod error;
mod events;
mod files;
mod images;
pub mod simplestreams;
mod tls;
mod transport;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use berth_api::{EventType, Operation, Response, Server, ServerPut, StatusCode};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use backups::{BackupOptions, ImportTarget};
pub use error::ClientError;
pub use events::EventStream;
pub use files::{Fetched, FileMeta, copy_stream};
pub use hyper::Method;
pub use images::{ImportOptions, Progress};
pub use tls::{ClientIdentity, certificate_pem, generate_certificate, server_certificate};
pub use tokio_tungstenite::tungstenite::Message as WebSocketMessage;
pub use transport::{Stream, WebSocket};

use transport::Transport;

/// A reply as the server sent it: HTTP status, ETag and the decoded envelope, its
/// metadata as `M`.
#[derive(Debug, Clone)]
pub struct RawResponse<M = serde_json::Value> {
    pub status: u16,
    pub etag: Option<String>,
    pub location: Option<String>,
    pub body: Response<M>,
}

/// A connection to one server.
#[derive(Debug, Clone)]
pub struct Client {
    transport: Transport,
    /// The project every request names (`?project=`), when not the server's default.
    project: Option<String>,
}

impl Client {
    /// A client of the server listening on the unix socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Client {
            transport: Transport::Unix(path.into()),
            project: None,
        }
    }

    /// A client of the server at `addr` (`host:port`) over HTTPS, whose certificate
    /// (DER) is `server_cert`, presenting `identity`.
    pub fn https(
        addr: impl Into<String>,
        server_cert: Vec<u8>,
        identity: Option<&ClientIdentity>,
    ) -> Result<Self, ClientError> {
        Ok(Client {
            transport: Transport::Https {
                addr: addr.into(),
                tls: tls::config(Some(server_cert.clone()), identity)?,
                cert: std::sync::Arc::new(server_cert),
            },
            project: None,
        })
    }

    /// A connection to the server, for a caller that speaks HTTP over it itself and keeps
    /// it open (a benchmark's keep-alive client).
    pub async fn open_stream(&self) -> Result<Stream, ClientError> {
        self.transport.connect().await
    }

    /// Where another server reaches this one, and the certificate it presents (PEM), as
    /// LXD's clients hand them to a migration's peer: the address this client uses (when
    /// HTTPS) first, then the server's own `environment.addresses`.
    pub async fn connection_info(&self) -> Result<(Vec<String>, String), ClientError> {
        let server = self.server().await?;
        let env = server.environment.unwrap_or_default();
        let mut addresses = Vec::new();
        let certificate = match &self.transport {
            Transport::Https { addr, cert, .. } => {
                addresses.push(format!("https://{addr}"));
                tls::certificate_pem(cert)
            }
            Transport::Unix(_) => env.certificate.clone(),
        };
        for a in &env.addresses {
            let url = format!("https://{a}");
            if !a.starts_with(':') && !addresses.contains(&url) {
                addresses.push(url);
            }
        }
        Ok((addresses, certificate))
    }

    /// The socket of the daemon whose state directory is `$BERTH_SOCKET`, or
    /// `$BERTH_DIR/unix.socket`, or `/var/lib/berth/unix.socket`.
    pub fn from_env() -> Self {
        if let Some(s) = std::env::var_os("BERTH_SOCKET") {
            return Self::unix(PathBuf::from(s));
        }
        let dir = std::env::var_os("BERTH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/lib/berth"));
        Self::unix(dir.join("unix.socket"))
    }

    /// The same server, with every request naming `project`.
    #[must_use]
    pub fn with_project(mut self, project: Option<String>) -> Self {
        self.project = project.filter(|p| !p.is_empty());
        self
    }

    /// `path` with the client's project added to its query.
    pub(crate) fn scoped<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.project {
            Some(p) if !path.contains("project=") && !path.starts_with("/1.0/operations") => {
                let sep = if path.contains('?') { '&' } else { '?' };
                std::borrow::Cow::Owned(format!("{path}{sep}project={p}"))
            }
            _ => std::borrow::Cow::Borrowed(path),
        }
    }

    /// Sends a request and returns the reply whatever its status; fails only when the
    /// server cannot be reached or does not answer with an LXD envelope.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        if_match: Option<&str>,
    ) -> Result<RawResponse, ClientError> {
        self.raw_as(method, path, body, if_match).await
    }

    /// [`Client::raw`], decoding the metadata as `M` straight from the body.
    async fn raw_as<M: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        if_match: Option<&str>,
    ) -> Result<RawResponse<M>, ClientError> {
        let reply = self
            .transport
            .request(method, &self.scoped(path), body, if_match)
            .await?;
        let header = |name: &str| {
            reply
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim_matches('"').to_owned())
        };
        let envelope: Response<M> =
            serde_json::from_slice(&reply.body).map_err(|source| ClientError::Decode {
                path: path.to_owned(),
                source,
            })?;
        Ok(RawResponse {
            status: reply.status,
            etag: header("etag"),
            location: header("location"),
            body: envelope,
        })
    }

    /// `GET path`'s reply body as is: a file the server serves outside an envelope (an
    /// instance's log), or an envelope the caller decodes in place (a list of thousands,
    /// without copying its metadata out first); an error reply becomes
    /// [`ClientError::Api`].
    pub async fn get_file(&self, path: &str) -> Result<Bytes, ClientError> {
        let reply = self
            .transport
            .request(Method::GET, &self.scoped(path), None, None)
            .await?;
        if reply.status >= 400 {
            let envelope: Response<serde_json::Value> = serde_json::from_slice(&reply.body)
                .map_err(|source| ClientError::Decode {
                    path: path.to_owned(),
                    source,
                })?;
            return Err(ClientError::api(reply.status, envelope.error));
        }
        Ok(reply.body)
    }

    /// Sends a request; an error reply becomes [`ClientError::Api`].
    pub async fn query(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<RawResponse, ClientError> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let r = self.raw(method, path, body, None).await?;
        check(r)
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        if_match: Option<&str>,
    ) -> Result<RawResponse, ClientError> {
        let body = match body {
            Some(b) => Some(Bytes::from(
                serde_json::to_vec(b).map_err(ClientError::Encode)?,
            )),
            None => None,
        };
        check(self.raw(method, path, body, if_match).await?)
    }

    /// `GET path`, decoding `metadata` as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        Ok(self.get_with_etag(path).await?.0)
    }

    /// `GET path`, decoding `metadata` as `T`, with the object's ETag. The metadata is
    /// kept raw until the envelope says it is no error, then decoded once.
    pub async fn get_with_etag<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(T, Option<String>), ClientError> {
        let r = self
            .raw_as::<Box<serde_json::value::RawValue>>(Method::GET, path, None, None)
            .await?;
        let r = check(r)?;
        let metadata =
            serde_json::from_str(r.body.metadata.get()).map_err(|source| ClientError::Decode {
                path: path.to_owned(),
                source,
            })?;
        Ok((metadata, r.etag))
    }

    /// `GET /1.0`.
    pub async fn server(&self) -> Result<Server, ClientError> {
        self.get("/1.0").await
    }

    /// `PUT /1.0`: replaces the server configuration; `etag` makes it conditional.
    pub async fn update_server(
        &self,
        put: &ServerPut,
        etag: Option<&str>,
    ) -> Result<(), ClientError> {
        self.send(Method::PUT, "/1.0", Some(put), etag)
            .await
            .map(drop)
    }

    /// `PATCH /1.0`: merges into the server configuration.
    pub async fn patch_server(&self, put: &ServerPut) -> Result<(), ClientError> {
        self.send(Method::PATCH, "/1.0", Some(put), None)
            .await
            .map(drop)
    }

    /// Every operation, grouped by lower-case status.
    pub async fn operations(&self) -> Result<BTreeMap<String, Vec<Operation>>, ClientError> {
        self.get("/1.0/operations?recursion=1").await
    }

    /// One operation.
    pub async fn operation(&self, id: &str) -> Result<Operation, ClientError> {
        self.get(&format!("/1.0/operations/{id}")).await
    }

    /// Cancels an operation.
    pub async fn cancel_operation(&self, id: &str) -> Result<(), ClientError> {
        self.send::<()>(Method::DELETE, &format!("/1.0/operations/{id}"), None, None)
            .await
            .map(drop)
    }

    /// Subscribes to events of the given types (all types when empty).
    pub async fn events(&self, types: &[EventType]) -> Result<EventStream, ClientError> {
        let list: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        let path = if list.is_empty() {
            "/1.0/events".to_owned()
        } else {
            format!("/1.0/events?type={}", list.join(","))
        };
        Ok(EventStream::new(self.transport.websocket(&path).await?))
    }

    /// Connects to stream `secret` of a websocket operation.
    pub async fn operation_websocket(
        &self,
        id: &str,
        secret: &str,
    ) -> Result<WebSocket, ClientError> {
        self.transport
            .websocket(&format!("/1.0/operations/{id}/websocket?secret={secret}"))
            .await
    }

    /// Waits until operation `id` finishes (or `timeout` passes) and returns it.
    ///
    /// Listens on the events websocket, as the LXD clients do; if that fails, falls back to
    /// `GET /1.0/operations/{id}/wait`.
    pub async fn wait_operation(
        &self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<Operation, ClientError> {
        let fut = self.wait_inner(id);
        match timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => self.operation(id).await,
            },
            None => fut.await,
        }
    }

    async fn wait_inner(&self, id: &str) -> Result<Operation, ClientError> {
        // Subscribe first, then look: an operation that finishes in between is still seen.
        let events = self.events(&[EventType::Operation]).await;
        let op = self.operation(id).await?;
        if op.status_code.is_final() {
            return Ok(op);
        }
        if let Ok(mut events) = events {
            while let Some(Ok(ev)) = events.next().await {
                if ev.metadata.get("id").and_then(|v| v.as_str()) != Some(id) {
                    continue;
                }
                if let Ok(op) = serde_json::from_value::<Operation>(ev.metadata)
                    && op.status_code.is_final()
                {
                    return Ok(op);
                }
            }
            tracing::debug!(operation = id, "Event stream ended, falling back to /wait");
        }
        loop {
            let op: Operation = self
                .get(&format!("/1.0/operations/{id}/wait?timeout=30"))
                .await?;
            if op.status_code.is_final() {
                return Ok(op);
            }
        }
    }

    /// Waits for operation `id` and turns a failed or cancelled one into an error.
    pub async fn wait_success(&self, id: &str) -> Result<Operation, ClientError> {
        let op = self.wait_operation(id, None).await?;
        match op.status_code {
            StatusCode::Success => Ok(op),
            StatusCode::Cancelled => Err(ClientError::OperationFailed {
                id: id.to_owned(),
                message: "Operation cancelled".to_owned(),
            }),
            _ => Err(ClientError::OperationFailed {
                id: id.to_owned(),
                message: op.err,
            }),
        }
    }
}

fn check<M>(r: RawResponse<M>) -> Result<RawResponse<M>, ClientError> {
    if r.status >= 400 || r.body.kind == berth_api::ResponseType::Error {
        let status = if r.status >= 400 {
            r.status
        } else {
            r.body.error_code
        };
        return Err(ClientError::api(status, r.body.error));
    }
    Ok(r)
}
