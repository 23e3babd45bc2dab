//! The trust store's records and who a request comes from.
//!
//! A client over HTTPS is known by the SHA-256 of its certificate's DER, compared with the
//! stored certificates; over the unix socket it is the host's administrator. A restricted
//! certificate reaches only its projects.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// A trusted certificate as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedCert {
    /// SHA-256 of `der`, lower-case hex.
    pub fingerprint: String,
    /// `client`, the only type berth issues (`metrics` and `server` are kept as given).
    pub kind: String,
    pub name: String,
    pub description: String,
    pub der: Vec<u8>,
    pub restricted: bool,
    pub projects: Vec<String>,
}

/// The certificate types LXD knows.
pub const TYPES: &[&str] = &["client", "metrics", "server"];

/// SHA-256 of a certificate's DER, as LXD prints fingerprints.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The unix socket: root or a member of `berth-admin`.
    Local,
    /// A trusted certificate, with the projects it is held to when restricted.
    Certificate {
        fingerprint: String,
        name: String,
        restricted: Option<Vec<String>>,
    },
    /// An HTTPS client whose certificate (if any) is not in the trust store.
    Untrusted,
}

impl Identity {
    /// Whether the client is trusted at all.
    pub fn trusted(&self) -> bool {
        !matches!(self, Identity::Untrusted)
    }

    /// Whether the client may act on everything (not restricted to projects).
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Identity::Local
                | Identity::Certificate {
                    restricted: None,
                    ..
                }
        )
    }

    /// Whether the client may reach `project`.
    pub fn allows(&self, project: &str) -> bool {
        match self {
            Identity::Local => true,
            Identity::Certificate { restricted, .. } => restricted
                .as_ref()
                .is_none_or(|p| p.iter().any(|x| x == project)),
            Identity::Untrusted => false,
        }
    }

    /// The projects a restricted client is held to; `None` for the others.
    pub fn projects(&self) -> Option<&[String]> {
        match self {
            Identity::Certificate {
                restricted: Some(p),
                ..
            } => Some(p),
            _ => None,
        }
    }
}

/// The trust store as requests look it up: by fingerprint, each certificate with the
/// end of its validity (Unix seconds), replaced whole on each change.
#[derive(Debug, Default, Clone)]
pub struct TrustStore {
    by_fingerprint: HashMap<String, (Arc<TrustedCert>, i64)>,
}

impl TrustStore {
    /// The store of `certs`, each with its `notAfter` (Unix seconds).
    pub fn new(certs: Vec<(TrustedCert, i64)>) -> Self {
        TrustStore {
            by_fingerprint: certs
                .into_iter()
                .map(|(c, until)| (c.fingerprint.clone(), (Arc::new(c), until)))
                .collect(),
        }
    }

    /// Who a client presenting `der` (or nothing) is. Only `client` certificates admit a
    /// client (`metrics` ones would only reach `/1.0/metrics`, which berth does not
    /// serve; `server` ones belong to cluster members).
    /// A certificate past its validity at `now` (Unix seconds) admits nobody.
    pub fn identify(&self, der: Option<&[u8]>, now: i64) -> Identity {
        let Some(der) = der else {
            return Identity::Untrusted;
        };
        match self.by_fingerprint.get(&fingerprint(der)) {
            Some((c, until)) if c.kind == "client" && c.der == der && now <= *until => {
                Identity::Certificate {
                    fingerprint: c.fingerprint.clone(),
                    name: c.name.clone(),
                    restricted: c.restricted.then(|| c.projects.clone()),
                }
            }
            _ => Identity::Untrusted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(der: &[u8], restricted: bool) -> TrustedCert {
        TrustedCert {
            fingerprint: fingerprint(der),
            kind: "client".to_owned(),
            name: "c".to_owned(),
            description: String::new(),
            der: der.to_vec(),
            restricted,
            projects: vec!["p".to_owned()],
        }
    }

    #[test]
    fn identifies_by_exact_certificate() {
        let store = TrustStore::new(vec![
            (cert(b"admin", false), 100),
            (cert(b"limited", true), 100),
        ]);
        assert!(store.identify(Some(b"admin"), 50).is_admin());
        assert_eq!(store.identify(Some(b"admin"), 101), Identity::Untrusted);
        let limited = store.identify(Some(b"limited"), 50);
        assert!(limited.trusted() && !limited.is_admin());
        assert!(limited.allows("p") && !limited.allows("default"));
        assert_eq!(store.identify(Some(b"other"), 50), Identity::Untrusted);
        assert_eq!(store.identify(None, 50), Identity::Untrusted);
        assert!(Identity::Local.allows("anything"));
        assert_eq!(
            fingerprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
