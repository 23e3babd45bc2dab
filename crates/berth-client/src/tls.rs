//! TLS to a remote server, as LXD and Incus clients do it: TLS 1.3, the server's
//! certificate pinned (compared byte for byte with the one saved when the remote was
//! added, whatever name it carries), and the client's own certificate presented.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::ClientError;

/// The cryptography berth uses: *ring*. rustls 0.23.48 deprecates its constructor for
/// lack of post-quantum key exchange; LXD and Incus servers offer X25519, which it has.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client certificate and its key.
#[derive(Debug)]
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        ClientIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl ClientIdentity {
    /// From PEM text (a certificate, then its key).
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Self, ClientError> {
        let bad =
            |what: &str, e: rustls_pki_types::pem::Error| ClientError::Tls(format!("{what}: {e}"));
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("Invalid client certificate", e))?;
        if chain.is_empty() {
            return Err(ClientError::Tls("No client certificate found".to_owned()));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad("Invalid client key", e))?;
        Ok(ClientIdentity { chain, key })
    }
}

/// Trusts exactly one certificate, or (with none) any: the latter only to fetch a
/// server's certificate so that the user can check its fingerprint.
#[derive(Debug)]
struct Pinned {
    der: Option<Vec<u8>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.der {
            Some(der) if der.as_slice() != end_entity.as_ref() => Err(rustls::Error::General(
                "the server's certificate is not the one saved for it".to_owned(),
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// TLS settings for one server: its certificate pinned (`None`: any, to fetch it) and
/// our identity presented when we have one.
pub(crate) fn config(
    server: Option<Vec<u8>>,
    identity: Option<&ClientIdentity>,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let provider = provider();
    let verifier = Arc::new(Pinned {
        der: server,
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| ClientError::Tls(format!("Invalid client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// TLS settings for a public server (a simplestreams image server): its certificate
/// checked against the system's roots and its name, TLS 1.2 or 1.3, no identity.
pub(crate) fn public_config() -> Result<Arc<rustls::ClientConfig>, ClientError> {
    // Without any (no ca-certificates), every server is of an unknown issuer: one whose
    // certificate the user accepted is still reached, pinned.
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificate a server at `addr` (`host:port`) presents, DER.
pub async fn server_certificate(addr: &str) -> Result<Vec<u8>, ClientError> {
    let config = config(None, None)?;
    let tls = crate::transport::dial(addr, &config).await?;
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or_else(|| ClientError::Tls(format!("{addr} presented no certificate")))
}

/// A new self-signed certificate and its key, both PEM: ECDSA P-384, valid from yesterday
/// for ten years, `dns_name` as its DNS name (Go clients check a pinned certificate's
/// name), for server and client use, as LXD makes them.
pub fn generate_certificate(
    common_name: &str,
    dns_name: &str,
) -> Result<(String, String), ClientError> {
    use chrono::Datelike as _;
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose,
    };
    let failed = |e: rcgen::Error| ClientError::Tls(format!("Failed to make a certificate: {e}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(failed)?;
    let mut params = CertificateParams::new(vec![dns_name.to_owned()]).map_err(failed)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "berth");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let yesterday = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    let (y, m, d) = (
        yesterday.year(),
        u8::try_from(yesterday.month()).unwrap_or(1),
        u8::try_from(yesterday.day()).unwrap_or(1),
    );
    params.not_before = rcgen::date_time_ymd(y, m, d);
    params.not_after = rcgen::date_time_ymd(y + 10, m, d.min(28));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A certificate's DER as PEM.
pub fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
