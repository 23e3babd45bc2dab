//! The HTTPS edge: the server's certificate, TLS 1.3 with client certificates requested
//! (never required, never checked against a CA: trust is the trust store's), and the
//! listener on `core.https_address`, replaced live when the key changes.
//!
//! ```text
//!   TcpListener ─► handshake (a task per connection, 10 s) ─► channel ─► TlsListener
//!                                                                  └─► axum::serve, each
//!                                                                      request with its Peer
//! ```
//!
//! The server certificate is made at first start (`DIR/server.crt`, `DIR/server.key`,
//! 0600): self-signed ECDSA P-384, ten years, a DNS name (the host's name; Go clients
//! check the name they pin), for server and client use (it is also what berthd presents
//! when it dials another host).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::{Failure, Result};

/// The server's own certificate and key.
#[derive(Debug)]
pub struct ServerIdentity {
    pub pem: String,
    pub der: CertificateDer<'static>,
    pub fingerprint: String,
    key: PrivateKeyDer<'static>,
}

impl ServerIdentity {
    /// Loads `DIR/server.crt` and `DIR/server.key`, making them first when missing.
    pub fn load_or_create(dir: &Path, host_name: &str) -> anyhow::Result<Self> {
        let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
        if !crt.exists() || !key.exists() {
            let name = if host_name.is_empty() {
                "unspecified"
            } else {
                host_name
            };
            let (cert_pem, key_pem) =
                berth_client::generate_certificate(&format!("root@{name}"), name)
                    .context("Failed to make the server certificate")?;
            write_private(&key, key_pem.as_bytes())?;
            write_private(&crt, cert_pem.as_bytes())?;
            tracing::info!(path = %crt.display(), "Made the server certificate");
        }
        let pem = std::fs::read_to_string(&crt)
            .with_context(|| format!("Failed to read {}", crt.display()))?;
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .with_context(|| format!("No certificate in {}", crt.display()))?;
        let key = PrivateKeyDer::from_pem_file(&key)
            .with_context(|| format!("No private key in {}", key.display()))?;
        Ok(ServerIdentity {
            fingerprint: crate::model::trust::fingerprint(&der),
            pem,
            der,
            key,
        })
    }

    /// The key, for a TLS config of this server's or of its outgoing connections.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

/// Writes `bytes` to `path` (0600) through a temporary file, so a crash leaves either
/// nothing or the whole file.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("Failed to create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("Failed to write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("Failed to create {}", path.display()))
}

/// Accepts any client certificate whose handshake signature holds: who is trusted is the
/// trust store's business, per request. No CA names are sent (Go clients send their
/// certificate only then).
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The cryptography berth uses: *ring* (design.md). rustls 0.23.48 deprecates its
/// constructor for lack of post-quantum key exchange; the Go clients fall back to X25519,
/// which it has.
#[allow(deprecated)]
fn crypto_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The TLS settings of the HTTPS listener: TLS 1.3 only, as LXD and Incus.
fn server_config(id: &ServerIdentity) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(crypto_provider());
    let verifier = Arc::new(AnyClientCert {
        algorithms: provider.signature_verification_algorithms,
    });
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 is not available")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![id.der.clone()], id.key())
        .context("The server certificate does not match its key")?;
    Ok(config)
}

/// Who is on the other end of an HTTPS connection: its address and the certificate it
/// presented. Requests over the unix socket carry none.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub cert: Option<Arc<[u8]>>,
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// The connections whose handshake is done, as axum takes them.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The acceptor is gone: the server is being shut down.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer {
            addr: self.local,
            cert: None,
        })
    }
}

/// How long a client has to finish its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Takes TCP connections and hands on those whose TLS handshake succeeds.
async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, Peer)>,
) {
    loop {
        let (stream, addr) = match tcp.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, say: wait rather than spin.
                tracing::warn!(error = %e, "HTTPS accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| Arc::<[u8]>::from(c.as_ref()));
                    let _ = ready.send((tls, Peer { addr, cert })).await;
                }
                Ok(Err(e)) => tracing::debug!(peer = %addr, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(peer = %addr, "TLS handshake timed out"),
            }
        });
    }
}

/// The HTTPS listener, if `core.https_address` is set.
#[derive(Debug)]
pub struct Https {
    identity: Arc<ServerIdentity>,
    config: Arc<rustls::ServerConfig>,
    current: Mutex<Option<Listening>>,
}

#[derive(Debug)]
struct Listening {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Https {
    pub fn new(identity: ServerIdentity) -> anyhow::Result<Self> {
        Ok(Https {
            config: Arc::new(server_config(&identity)?),
            identity: Arc::new(identity),
            current: Mutex::new(None),
        })
    }

    pub fn identity(&self) -> &Arc<ServerIdentity> {
        &self.identity
    }

    /// The address listened on.
    pub fn address(&self) -> Option<SocketAddr> {
        self.lock().as_ref().map(|l| l.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Listening>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Listens on `addr` (nothing when `None`), serving `app`; the listener before is
    /// closed once the new one is bound. A bind failure changes nothing.
    pub async fn listen(&self, addr: Option<SocketAddr>, app: Router) -> Result<()> {
        if self.address() == addr {
            return Ok(());
        }
        let Some(addr) = addr else {
            self.stop();
            return Ok(());
        };
        // Binding the same port again (another host part of the address) needs the old
        // listener closed first; try the new one alone first.
        let tcp = match bind(addr) {
            Ok(t) => t,
            Err(_) if self.address().is_some_and(|a| a.port() == addr.port()) => {
                let old = self.address();
                self.stop();
                match bind(addr) {
                    Ok(t) => t,
                    Err(e) => {
                        if let Some(old) = old
                            && let Ok(t) = bind(old)
                        {
                            self.serve(old, t, app);
                        }
                        return Err(e);
                    }
                }
            }
            Err(e) => return Err(e),
        };
        self.stop();
        self.serve(addr, tcp, app);
        tracing::info!(address = %addr, "Listening on HTTPS");
        Ok(())
    }

    fn serve(&self, addr: SocketAddr, tcp: TcpListener, app: Router) {
        let (tx, rx) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(self.config.clone()), tx));
        let (stop, stopped) = oneshot::channel::<()>();
        let listener = TlsListener {
            ready: rx,
            local: addr,
        };
        tokio::spawn(async move {
            let served = axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTPS server failed");
            }
        });
        *self.lock() = Some(Listening {
            addr,
            stop,
            acceptor,
        });
    }

    /// Closes the listener; requests under way finish.
    pub fn stop(&self) {
        if let Some(l) = self.lock().take() {
            l.acceptor.abort();
            let _ = l.stop.send(());
            tracing::info!(address = %l.addr, "Stopped listening on HTTPS");
        }
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    };
    socket
        .and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            s.listen(1024)
        })
        .map_err(|e| {
            Failure::invalid(format!(
                "Invalid value for \"core.https_address\": cannot listen on {addr}: {e}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_loads() {
        let dir = tempfile::tempdir().unwrap();
        let a = ServerIdentity::load_or_create(dir.path(), "host1").unwrap();
        let b = ServerIdentity::load_or_create(dir.path(), "other").unwrap();
        assert_eq!(a.fingerprint, b.fingerprint, "made once, then loaded");
        assert!(a.pem.starts_with("-----BEGIN CERTIFICATE-----"));
        server_config(&a).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
