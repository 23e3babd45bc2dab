//! The trust store: which client certificates may use the HTTPS API, and to which projects
//! a restricted one is held.
//!
//! Certificates live in the database (`db::certificates`); [`crate::ctx::Trust`] holds the
//! copy requests are checked against, replaced after every change. A certificate arrives as
//! base64 DER (what LXD clients send) or PEM, and is refused unless it parses and is valid
//! now. Tokens are operations, the API's own machinery (`api/certificates.rs`): this module
//! only stores what a redeemed token admits.

use base64::Engine as _;

use crate::ctx::Ctx;
use crate::db::DbError;
use crate::error::{Failure, Result};
use crate::model::trust::{TYPES, TrustStore, TrustedCert, fingerprint};

/// Reads the trust store from the database into the context. Every change holds the
/// store's write lock across its write and this reload, so that two changes can't
/// install their reloads in the wrong order (a removed certificate coming back).
pub async fn load(cx: &Ctx) -> Result<()> {
    let certs = cx.db.read(crate::db::certificates::list).await?;
    let dated = certs
        .into_iter()
        .map(|c| {
            let until = not_after(&c.der).unwrap_or(i64::MIN);
            (c, until)
        })
        .collect();
    cx.trust.set(TrustStore::new(dated));
    Ok(())
}

/// The end of a certificate's validity, in Unix seconds.
fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Every trusted certificate.
pub async fn list(cx: &Ctx) -> Result<Vec<TrustedCert>> {
    Ok(cx.db.read(crate::db::certificates::list).await?)
}

fn not_found(fp: &str) -> Failure {
    Failure::not_found(format!("Certificate {fp:?} not found"))
}

/// The certificate whose fingerprint is, or starts with, `fp` (as LXD, a unique prefix
/// will do).
pub async fn get(cx: &Ctx, fp: &str) -> Result<TrustedCert> {
    let fp = fp.to_ascii_lowercase();
    if fp.is_empty() || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found(&fp));
    }
    let mut found: Vec<TrustedCert> = list(cx)
        .await?
        .into_iter()
        .filter(|c| c.fingerprint.starts_with(&fp))
        .collect();
    match found.len() {
        0 => Err(not_found(&fp)),
        1 => Ok(found.remove(0)),
        _ => Err(Failure::invalid(format!(
            "More than one certificate matches {fp:?}"
        ))),
    }
}

/// A certificate given as base64 DER or PEM, as DER; refused unless it parses and is
/// valid now.
pub fn parse_certificate(text: &str) -> Result<Vec<u8>> {
    let text = text.trim();
    let der = if text.starts_with("-----BEGIN") {
        use rustls_pki_types::pem::PemObject as _;
        rustls_pki_types::CertificateDer::from_pem_slice(text.as_bytes())
            .map(|c| c.to_vec())
            .map_err(|e| Failure::invalid(format!("Invalid certificate PEM: {e}")))?
    } else {
        let compact: String = text.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| Failure::invalid(format!("Invalid certificate: not base64: {e}")))?
    };
    check_valid(&der)?;
    Ok(der)
}

/// Refuses a certificate that does not parse or is not valid now.
pub fn check_valid(der: &[u8]) -> Result<()> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Failure::invalid(format!("Invalid certificate material: {e}")))?;
    if !cert.validity().is_valid() {
        return Err(Failure::invalid(format!(
            "Certificate is not valid now (valid from {} to {})",
            cert.validity().not_before,
            cert.validity().not_after
        )));
    }
    Ok(())
}

/// The subject's common name, LXD's default name for a certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str()
        .ok()
        .map(str::to_owned)
        .filter(|s| !s.is_empty())
}

/// What to trust.
#[derive(Debug, Clone)]
pub struct NewCert {
    pub der: Vec<u8>,
    pub name: String,
    pub kind: String,
    pub description: String,
    pub restricted: bool,
    pub projects: Vec<String>,
}

fn check_kind(kind: &str) -> Result<()> {
    if TYPES.contains(&kind) {
        Ok(())
    } else {
        Err(Failure::invalid(format!(
            "Invalid certificate type {kind:?}: must be one of {}",
            TYPES.join(", ")
        )))
    }
}

async fn check_projects(cx: &Ctx, projects: &[String]) -> Result<()> {
    for p in projects {
        crate::project::get(cx, p)
            .await
            .map_err(|_| Failure::invalid(format!("Project {p:?} in \"projects\" not found")))?;
    }
    Ok(())
}

/// Checks what a token will admit, before the token is issued.
pub async fn check_request(cx: &Ctx, kind: &str, projects: &[String]) -> Result<()> {
    check_kind(kind)?;
    check_projects(cx, projects).await
}

/// A write that found the certificate stored already: 409.
fn already_trusted(e: DbError) -> Failure {
    match e {
        DbError::Exists { .. } => Failure::exists("Certificate already in trust store"),
        e => e.into(),
    }
}

/// Trusts a certificate; 409 when it is trusted already.
pub async fn add(cx: &Ctx, new: NewCert) -> Result<TrustedCert> {
    check_kind(&new.kind)?;
    check_valid(&new.der)?;
    check_projects(cx, &new.projects).await?;
    if new.name.is_empty() || new.name.chars().any(char::is_control) {
        return Err(Failure::invalid(format!(
            "Invalid certificate name {:?}",
            new.name
        )));
    }
    let cert = TrustedCert {
        fingerprint: fingerprint(&new.der),
        kind: new.kind,
        name: new.name,
        description: new.description,
        der: new.der,
        restricted: new.restricted,
        projects: if new.restricted { new.projects } else { vec![] },
    };
    let row = cert.clone();
    let _writes = cx.trust.writes.lock().await;
    cx.db
        .write(move |tx| crate::db::certificates::insert(tx, &row))
        .await
        .map_err(already_trusted)?;
    load(cx).await?;
    tracing::info!(fingerprint = %cert.fingerprint, name = %cert.name, restricted = cert.restricted, "Certificate trusted");
    cx.events.lifecycle(
        "certificate-created",
        &format!("/1.0/certificates/{}", cert.fingerprint),
        None,
    );
    Ok(cert)
}

/// A change to a trusted certificate: fields left out keep their value (PATCH), or reset
/// to their defaults (PUT, `replace`).
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub description: Option<String>,
    pub restricted: Option<bool>,
    pub projects: Option<Vec<String>>,
    pub certificate: Option<String>,
}

/// Changes a trusted certificate; returns it as stored.
pub async fn update(cx: &Ctx, fp: &str, change: Change, replace: bool) -> Result<TrustedCert> {
    let old = get(cx, fp).await?;
    let mut new = old.clone();
    if let Some(n) = change.name {
        new.name = n;
    }
    if let Some(k) = change.kind {
        new.kind = k;
    }
    match change.description {
        Some(d) => new.description = d,
        None if replace => new.description.clear(),
        None => {}
    }
    match change.restricted {
        Some(r) => new.restricted = r,
        None if replace => new.restricted = false,
        None => {}
    }
    match change.projects {
        Some(p) => new.projects = p,
        None if replace => new.projects.clear(),
        None => {}
    }
    if let Some(text) = change.certificate.filter(|t| !t.is_empty()) {
        new.der = parse_certificate(&text)?;
        new.fingerprint = fingerprint(&new.der);
    }
    check_kind(&new.kind)?;
    check_projects(cx, &new.projects).await?;
    if new.name.is_empty() || new.name.chars().any(char::is_control) {
        return Err(Failure::invalid(format!(
            "Invalid certificate name {:?}",
            new.name
        )));
    }
    if !new.restricted {
        new.projects.clear();
    }
    let (row, old_fp) = (new.clone(), old.fingerprint.clone());
    let _writes = cx.trust.writes.lock().await;
    cx.db
        .write(move |tx| crate::db::certificates::replace(tx, &old_fp, &row))
        .await
        .map_err(already_trusted)?;
    load(cx).await?;
    cx.events.lifecycle(
        "certificate-updated",
        &format!("/1.0/certificates/{}", new.fingerprint),
        None,
    );
    Ok(new)
}

/// Removes a certificate from the trust store: its client is refused from its next
/// request on.
pub async fn delete(cx: &Ctx, fp: &str) -> Result<()> {
    let cert = get(cx, fp).await?;
    let key = cert.fingerprint.clone();
    let _writes = cx.trust.writes.lock().await;
    cx.db
        .write(move |tx| crate::db::certificates::delete(tx, &key))
        .await?;
    load(cx).await?;
    tracing::info!(fingerprint = %cert.fingerprint, name = %cert.name, "Certificate removed from the trust store");
    cx.events.lifecycle(
        "certificate-deleted",
        &format!("/1.0/certificates/{}", cert.fingerprint),
        None,
    );
    Ok(())
}
