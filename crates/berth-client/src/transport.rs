//! The byte streams requests travel over: a unix socket, or TLS over TCP to a remote.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST, IF_MATCH, USER_AGENT};
use hyper::{HeaderMap, Method, Request};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;

use crate::ClientError;

/// A client websocket.
pub type WebSocket = WebSocketStream<Stream>;

/// A connection to a server.
#[derive(Debug)]
pub enum Stream {
    Unix(UnixStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Where the server is.
#[derive(Debug, Clone)]
pub enum Transport {
    Unix(PathBuf),
    /// `host:port`, and the TLS settings (the server's certificate pinned).
    Https {
        addr: String,
        tls: Arc<rustls::ClientConfig>,
        /// The server's certificate (DER), as pinned.
        cert: Arc<Vec<u8>>,
    },
}

/// Opens a TLS connection to `addr` (`host:port`).
pub(crate) async fn dial(
    addr: &str,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, ClientError> {
    let failed = |source| ClientError::Connect {
        address: addr.to_owned(),
        source,
    };
    let tcp = tokio::time::timeout(std::time::Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .map_err(|_| failed(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
        .map_err(failed)?;
    let _ = tcp.set_nodelay(true);
    // The certificate is pinned, not checked against the name; the name only rides along.
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls_pki_types::ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| rustls_pki_types::ServerName::try_from("berth").expect("a DNS name"));
    let handshake = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp);
    tokio::time::timeout(std::time::Duration::from_secs(10), handshake)
        .await
        .map_err(|_| ClientError::Tls(format!("TLS with {addr} timed out")))?
        .map_err(|e| ClientError::Tls(format!("TLS with {addr} failed: {e}")))
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
    pub(crate) async fn connect(&self) -> Result<Stream, ClientError> {
        match self {
            Transport::Unix(path) => {
                UnixStream::connect(path)
                    .await
                    .map(Stream::Unix)
                    .map_err(|source| ClientError::Connect {
                        address: path.display().to_string(),
                        source,
                    })
            }
            Transport::Https { addr, tls, .. } => Ok(Stream::Tls(Box::new(dial(addr, tls).await?))),
        }
    }

    /// What the Host header and websocket URLs name.
    fn host(&self) -> &str {
        match self {
            Transport::Unix(_) => "unix.socket",
            Transport::Https { addr, .. } => addr,
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
            .header(HOST, self.host())
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
        let url = match self {
            Transport::Unix(_) => format!("ws://unix.socket{path}"),
            Transport::Https { addr, .. } => format!("wss://{addr}{path}"),
        };
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
