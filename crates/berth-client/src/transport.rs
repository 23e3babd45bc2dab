//! The byte streams requests travel over: a unix socket now, TLS later.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST, IF_MATCH, USER_AGENT};
use hyper::{HeaderMap, Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio_tungstenite::WebSocketStream;

use crate::ClientError;

/// A client websocket.
pub type WebSocket = WebSocketStream<UnixStream>;

/// Where the server is.
#[derive(Debug, Clone)]
pub enum Transport {
    Unix(PathBuf),
}

/// A reply before its body is decoded.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

const USER_AGENT_VALUE: &str = concat!("berth ", env!("CARGO_PKG_VERSION"));

impl Transport {
    async fn connect(&self) -> Result<UnixStream, ClientError> {
        match self {
            Transport::Unix(path) => {
                UnixStream::connect(path)
                    .await
                    .map_err(|source| ClientError::Connect {
                        address: path.display().to_string(),
                        source,
                    })
            }
        }
    }

    /// One HTTP/1.1 request on a fresh connection.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        if_match: Option<&str>,
    ) -> Result<Reply, ClientError> {
        let mut headers = Vec::new();
        if body.is_some() {
            headers.push((
                CONTENT_TYPE.as_str().to_owned(),
                "application/json".to_owned(),
            ));
        }
        if let Some(etag) = if_match {
            headers.push((IF_MATCH.as_str().to_owned(), format!("\"{etag}\"")));
        }
        let resp = self
            .send(method, path, &headers, Full::new(body.unwrap_or_default()))
            .await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(ClientError::Http)?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Sends a request with any body and extra headers; returns the response unread.
    pub async fn send<B>(
        &self,
        method: Method,
        path: &str,
        headers: &[(String, String)],
        body: B,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ClientError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "Connection ended with an error");
            }
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "unix.socket")
            .header(USER_AGENT, USER_AGENT_VALUE);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(body).map_err(|e| ClientError::Connect {
            address: path.to_owned(),
            source: std::io::Error::other(e),
        })?;
        sender.send_request(req).await.map_err(ClientError::Http)
    }

    /// Opens a websocket on `path`.
    pub async fn websocket(&self, path: &str) -> Result<WebSocket, ClientError> {
        let stream = self.connect().await?;
        let url = format!("ws://unix.socket{path}");
        match tokio_tungstenite::client_async(url, stream).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let message = resp
                    .body()
                    .as_ref()
                    .and_then(|b| serde_json::from_slice::<berth_api::Response>(b).ok())
                    .map(|r| r.error)
                    .unwrap_or_else(|| format!("Websocket refused with status {status}"));
                Err(ClientError::api(status, message))
            }
            Err(e) => Err(ClientError::WebSocket(Box::new(e))),
        }
    }
}
