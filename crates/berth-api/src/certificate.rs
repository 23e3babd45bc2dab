//! `/1.0/certificates`: the trust store, and the tokens that let a client into it.

use serde::{Deserialize, Serialize};

use crate::null_as_default;

/// A trusted certificate as `GET /1.0/certificates/{fingerprint}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    pub name: String,
    /// `client` (what berth stores), `metrics` or `server`.
    #[serde(rename = "type")]
    pub kind: String,
    pub restricted: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub projects: Vec<String>,
    /// PEM.
    pub certificate: String,
    /// SHA-256 of the DER, in hex.
    pub fingerprint: String,
    #[serde(default)]
    pub description: String,
}

/// The writable part of a certificate (`PUT`/`PATCH`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CertificatePut {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub restricted: Option<bool>,
    pub projects: Option<Vec<String>>,
    /// Base64 DER or PEM; PUT may replace it, as in LXD.
    pub certificate: Option<String>,
    pub description: Option<String>,
}

/// `POST /1.0/certificates`: add a certificate, issue a token, or redeem one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CertificatesPost {
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(rename = "type")]
    #[serde(deserialize_with = "null_as_default")]
    pub kind: String,
    #[serde(deserialize_with = "null_as_default")]
    pub restricted: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub projects: Vec<String>,
    /// Base64 DER (or PEM) of the certificate to trust; empty: the client's own.
    #[serde(deserialize_with = "null_as_default")]
    pub certificate: String,
    #[serde(default)]
    #[serde(deserialize_with = "null_as_default")]
    pub description: String,
    /// Ask for a token instead of adding a certificate.
    #[serde(deserialize_with = "null_as_default")]
    pub token: bool,
    /// A token, as the LXD 5.0 client sends it.
    #[serde(deserialize_with = "null_as_default")]
    pub password: String,
    /// A token, as the Incus client sends it.
    #[serde(deserialize_with = "null_as_default")]
    pub trust_token: String,
}

/// What a trust token holds: the client assembles it from the token operation's metadata
/// and hands it around as base64 of this JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CertificateAddToken {
    #[serde(deserialize_with = "null_as_default")]
    pub client_name: String,
    #[serde(deserialize_with = "null_as_default")]
    pub fingerprint: String,
    #[serde(deserialize_with = "null_as_default")]
    pub addresses: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub secret: String,
    #[serde(deserialize_with = "null_as_default")]
    pub expires_at: String,
}
