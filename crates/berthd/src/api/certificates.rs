//! `/1.0/certificates`: the trust store (see [`crate::trust`]) and trust tokens.
//!
//! A token is an operation of class `token` whose metadata holds a secret, the server's
//! fingerprint and addresses and the request it will admit (name, restriction, projects);
//! the client assembles the token from that metadata. An untrusted client redeems it with
//! `POST /1.0/certificates` over HTTPS, `{"password": TOKEN}` (LXD's client) or
//! `{"trust_token": TOKEN}` (Incus's): the operation is found by its secret, checked for
//! expiry, cancelled (a token works once), and the client's own certificate is stored with
//! what the token's request said.

use axum::Extension;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use base64::Engine as _;
use berth_api::ErrorKind;
use berth_api::certificate::{Certificate, CertificateAddToken, CertificatePut, CertificatesPost};

use super::ops::OpSpec;
use super::tls::Peer;
use super::{
    ApiError, ApiResult, AppState, Json, async_operation, check_if_match, etag_of, recursion, sync,
    sync_created, sync_empty, sync_etag,
};
use crate::model::trust::{Identity, TrustedCert};
use crate::trust::{self, Change, NewCert};

/// Why a token past its expiry is refused.
const EXPIRED: &str = "Trust token has expired";

/// A certificate's URL.
fn url(fp: &str) -> String {
    format!("/1.0/certificates/{fp}")
}

/// DER as PEM.
pub fn pem(der: &[u8]) -> String {
    berth_client::certificate_pem(der)
}

fn render(c: TrustedCert) -> Certificate {
    Certificate {
        certificate: pem(&c.der),
        name: c.name,
        kind: c.kind,
        restricted: c.restricted,
        projects: c.projects,
        fingerprint: c.fingerprint,
        description: c.description,
    }
}

fn etag(c: &TrustedCert) -> String {
    etag_of(&(&c.name, &c.kind, c.restricted, &c.projects, &c.fingerprint))
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(ErrorKind::Forbidden, message)
}

/// What a client that is not an administrator may see: its own certificate.
fn visible(identity: &Identity, c: &TrustedCert) -> bool {
    match identity {
        Identity::Certificate {
            fingerprint,
            restricted: Some(_),
            ..
        } => *fingerprint == c.fingerprint,
        other => other.is_admin(),
    }
}

/// `GET /1.0/certificates`.
pub async fn list(
    State(st): State<AppState>,
    Extension(identity): Extension<Identity>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let certs: Vec<TrustedCert> = trust::list(&st.cx)
        .await?
        .into_iter()
        .filter(|c| visible(&identity, c))
        .collect();
    if recursion(q.as_deref())? == 0 {
        return Ok(sync(
            certs
                .iter()
                .map(|c| url(&c.fingerprint))
                .collect::<Vec<_>>(),
        ));
    }
    Ok(sync(certs.into_iter().map(render).collect::<Vec<_>>()))
}

async fn find(st: &AppState, identity: &Identity, fp: &str) -> Result<TrustedCert, ApiError> {
    let c = trust::get(&st.cx, fp).await?;
    if !visible(identity, &c) {
        return Err(ApiError::not_found(format!("Certificate {fp:?} not found")));
    }
    Ok(c)
}

/// `GET /1.0/certificates/{fingerprint}` (a unique prefix will do).
pub async fn get(
    State(st): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(fp): Path<String>,
) -> ApiResult {
    let c = find(&st, &identity, &fp).await?;
    let tag = etag(&c);
    Ok(sync_etag(render(c), &tag))
}

/// `PUT /1.0/certificates/{fingerprint}`.
pub async fn put(
    st: State<AppState>,
    identity: Extension<Identity>,
    fp: Path<String>,
    headers: HeaderMap,
    Json(req): Json<CertificatePut>,
) -> ApiResult {
    update(st, identity, fp, headers, req, true).await
}

/// `PATCH /1.0/certificates/{fingerprint}`.
pub async fn patch(
    st: State<AppState>,
    identity: Extension<Identity>,
    fp: Path<String>,
    headers: HeaderMap,
    Json(req): Json<CertificatePut>,
) -> ApiResult {
    update(st, identity, fp, headers, req, false).await
}

async fn update(
    State(st): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(fp): Path<String>,
    headers: HeaderMap,
    req: CertificatePut,
    replace: bool,
) -> ApiResult {
    if !identity.is_admin() {
        return Err(forbidden("not authorized"));
    }
    let c = find(&st, &identity, &fp).await?;
    check_if_match(&headers, &etag(&c))?;
    let change = Change {
        name: req.name,
        kind: req.kind,
        description: req.description,
        restricted: req.restricted,
        projects: req.projects,
        certificate: req.certificate,
    };
    trust::update(&st.cx, &c.fingerprint, change, replace).await?;
    Ok(sync_empty())
}

/// `DELETE /1.0/certificates/{fingerprint}`.
pub async fn delete(
    State(st): State<AppState>,
    Extension(identity): Extension<Identity>,
    Path(fp): Path<String>,
) -> ApiResult {
    if !identity.is_admin() {
        return Err(forbidden("not authorized"));
    }
    let c = find(&st, &identity, &fp).await?;
    trust::delete(&st.cx, &c.fingerprint).await?;
    Ok(sync_empty())
}

/// `POST /1.0/certificates`: trust a given certificate, issue a token, or redeem one.
pub async fn post(
    State(st): State<AppState>,
    Extension(identity): Extension<Identity>,
    peer: Option<Extension<ConnectInfo<Peer>>>,
    Json(req): Json<CertificatesPost>,
) -> ApiResult {
    let peer = peer.map(|Extension(ConnectInfo(p))| p);
    if req.token && !req.certificate.is_empty() {
        return Err(ApiError::bad_request(
            "Can't use certificate if token is requested",
        ));
    }
    if identity.is_admin() {
        if req.token {
            return issue_token(&st, req).await;
        }
        if !req.certificate.is_empty() {
            let der = trust::parse_certificate(&req.certificate)?;
            let name = if req.name.is_empty() {
                trust::common_name(&der).unwrap_or_else(|| "unnamed".to_owned())
            } else {
                req.name
            };
            let c = trust::add(
                &st.cx,
                new_cert(
                    der,
                    name,
                    &req.kind,
                    req.description,
                    req.restricted,
                    req.projects,
                ),
            )
            .await?;
            return Ok(sync_created(&url(&c.fingerprint)));
        }
    } else if req.token || !req.certificate.is_empty() {
        return Err(forbidden("not authorized"));
    }
    if identity.trusted() {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            "Client is already trusted",
        ));
    }
    redeem(&st, peer, req).await
}

fn new_cert(
    der: Vec<u8>,
    name: String,
    kind: &str,
    description: String,
    restricted: bool,
    projects: Vec<String>,
) -> NewCert {
    NewCert {
        der,
        name,
        kind: if kind.is_empty() { "client" } else { kind }.to_owned(),
        description,
        restricted,
        projects,
    }
}

async fn issue_token(st: &AppState, mut req: CertificatesPost) -> ApiResult {
    if req.kind.is_empty() {
        req.kind = "client".to_owned();
    }
    if req.kind != "client" {
        return Err(ApiError::bad_request(
            "Tokens can only be issued for client certificates",
        ));
    }
    let addresses = st.server.addresses();
    if addresses.is_empty() {
        return Err(ApiError::bad_request(
            "Can't issue token when server isn't listening on network (set core.https_address)",
        ));
    }
    trust::check_request(&st.cx, &req.kind, &req.projects).await?;
    let config = st.server.snapshot().config.clone();
    let expiry = crate::config::get(&config, crate::config::TOKEN_EXPIRY);
    let expires_at = crate::model::schedule::expiry(expiry, chrono::Utc::now())?;
    let mut metadata = serde_json::Map::new();
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    metadata.insert("secret".into(), secret.into());
    metadata.insert(
        "fingerprint".into(),
        st.https.identity().fingerprint.clone().into(),
    );
    metadata.insert("addresses".into(), addresses.into());
    if let Some(at) = expires_at {
        metadata.insert(
            "expiresAt".into(),
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into(),
        );
    }
    let (name, restricted) = (req.name.clone(), req.restricted);
    req.password.clear();
    req.trust_token.clear();
    metadata.insert(
        "request".into(),
        serde_json::to_value(&req).unwrap_or_default(),
    );
    let spec = OpSpec {
        class: berth_api::OperationClass::Token,
        description: "Certificate add token".to_owned(),
        resources: None,
        may_cancel: true,
        metadata,
        fds: vec![],
        fds_at_top: false,
    };
    // The operation runs until it is redeemed or revoked (cancelled), or until it
    // expires: then it fails with "expired" and goes, so that unused tokens don't pile up.
    let left = expires_at.map(|at| (at - chrono::Utc::now()).to_std().unwrap_or_default());
    let op = st.ops.start(spec, move |_| async move {
        match left {
            Some(d) => {
                tokio::time::sleep(d).await;
                Err(crate::error::Failure::forbidden(EXPIRED))
            }
            None => std::future::pending().await,
        }
    });
    tracing::info!(name = %name, restricted, operation = %op.id(), "Trust token issued");
    Ok(async_operation(op.render()))
}

/// The secret a token carries: the token is base64 of JSON.
fn token_secret(token: &str) -> Option<String> {
    let compact: String = token.split_whitespace().collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&compact))
        .ok()?;
    let t: CertificateAddToken = serde_json::from_slice(&raw).ok()?;
    (!t.secret.is_empty()).then_some(t.secret)
}

async fn redeem(st: &AppState, peer: Option<Peer>, req: CertificatesPost) -> ApiResult {
    let token = if req.trust_token.is_empty() {
        &req.password
    } else {
        &req.trust_token
    };
    if token.is_empty() {
        return Err(forbidden("not authorized: a trust token is needed"));
    }
    let secret = token_secret(token).ok_or_else(|| forbidden("Invalid trust token"))?;
    // What a redemption needs is checked before the token is spent.
    let peer = peer.ok_or_else(|| ApiError::bad_request("Can't use TLS data on non-TLS link"))?;
    let der = peer
        .cert
        .as_ref()
        .ok_or_else(|| ApiError::bad_request("No client certificate provided"))?
        .to_vec();
    trust::check_valid(&der)?;
    let found = st.ops.list().into_iter().find(|op| {
        // A trust token's operation carries its request (an image secret's does not).
        op.class() == berth_api::OperationClass::Token
            && op.metadata().contains_key("request")
            && op.metadata().get("secret").and_then(|s| s.as_str()) == Some(secret.as_str())
    });
    if found.as_ref().is_some_and(|op| op.render().err == EXPIRED) {
        return Err(forbidden(EXPIRED));
    }
    let op = found
        .filter(|op| op.take_token())
        .ok_or_else(|| forbidden("Unknown, revoked or already used trust token"))?;
    let meta = op.metadata();
    let _ = op.cancel();
    if let Some(at) = meta.get("expiresAt").and_then(|v| v.as_str())
        && chrono::DateTime::parse_from_rfc3339(at).is_ok_and(|t| t < chrono::Utc::now())
    {
        return Err(forbidden(EXPIRED));
    }
    let issued: CertificatesPost = meta
        .get("request")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let name = if !issued.name.is_empty() {
        issued.name
    } else {
        trust::common_name(&der).unwrap_or_else(|| peer.addr.ip().to_string())
    };
    let c = trust::add(
        &st.cx,
        new_cert(
            der,
            name,
            &issued.kind,
            issued.description,
            issued.restricted,
            issued.projects,
        ),
    )
    .await?;
    Ok(sync_created(&url(&c.fingerprint)))
}
