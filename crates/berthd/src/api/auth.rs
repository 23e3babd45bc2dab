//! Who a request comes from, and what it may reach; checked before any handler runs.
//!
//! Over the unix socket a client is the host's administrator. Over HTTPS it is the
//! certificate it presented, looked up in the trust store ([`crate::ctx::Trust`]):
//!
//! ```text
//!   untrusted   GET /, GET /1.0 (the short form), POST /1.0/certificates (redeem a token),
//!               the simplestreams tree of public images (`/streams/v1/`),
//!               an operation's websocket (its secret is the key), an image's record
//!               and export with the secret its server issued (`?secret=`)
//!   restricted  its projects only (`?project=`, `default` when absent; a copy's source
//!               project too); reads of the project list (filtered), its projects'
//!               operations and events, networks and pools; never the server's
//!               configuration, the trust store's writes, warnings, resources, leases,
//!               volumes, logs or another project
//!   trusted     everything
//! ```
//!
//! The handler finds the [`Identity`] in the request's extensions.

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_api::ErrorKind;

use super::tls::Peer;
use super::{ApiError, AppState, project_param};
use crate::model::trust::Identity;

/// Finds who sent the request and refuses what it may not reach.
pub async fn authenticate(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let identity = match req.extensions().get::<ConnectInfo<Peer>>() {
        None => Identity::Local,
        Some(ConnectInfo(peer)) => st
            .cx
            .trust
            .get()
            .identify(peer.cert.as_deref(), chrono::Utc::now().timestamp()),
    };
    let https = identity != Identity::Local;
    let mut resp = match check(&identity, req.method(), req.uri()) {
        Err(e) => e.into_response(),
        Ok(()) => {
            req.extensions_mut().insert(identity);
            next.run(req).await
        }
    };
    if https {
        cors(&st, resp.headers_mut());
    }
    resp
}

/// The `core.https_allowed_*` headers, on HTTPS replies when set.
fn cors(st: &AppState, headers: &mut axum::http::HeaderMap) {
    use axum::http::HeaderValue;
    let snap = st.server.snapshot();
    let keys = [
        ("core.https_allowed_origin", "access-control-allow-origin"),
        ("core.https_allowed_methods", "access-control-allow-methods"),
        ("core.https_allowed_headers", "access-control-allow-headers"),
    ];
    for (key, header) in keys {
        if let Some(v) = snap
            .config
            .get(key)
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(header, v);
        }
    }
    if snap
        .config
        .get("core.https_allowed_credentials")
        .map(String::as_str)
        == Some("true")
    {
        headers.insert(
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        );
    }
}

fn forbidden() -> ApiError {
    ApiError::new(ErrorKind::Forbidden, "not authorized")
}

/// Whether `identity` may send `method path?query`.
pub fn check(identity: &Identity, method: &Method, uri: &axum::http::Uri) -> Result<(), ApiError> {
    let path = uri.path().trim_end_matches('/');
    let get = method == Method::GET;
    let websocket = get && path.starts_with("/1.0/operations/") && path.ends_with("/websocket");
    // An untrusted server may read an image's record and files with a secret issued for
    // it (the handler checks the secret; trusted clients go through the usual checks).
    let image_secret = get
        && path.starts_with("/1.0/images/")
        && !path.starts_with("/1.0/images/aliases")
        && super::query_param(uri.query(), "secret").is_some();
    let open = (get && (path.is_empty() || path == "/1.0" || path.starts_with("/streams/v1/")))
        || (method == Method::POST && path == "/1.0/certificates");
    if !identity.trusted() {
        return if open || websocket || image_secret {
            Ok(())
        } else {
            Err(forbidden())
        };
    }
    let Some(projects) = identity.projects() else {
        return Ok(());
    };
    if open || websocket || (get && path == "/1.0/projects") {
        return Ok(());
    }
    if path == "/1.0/projects" {
        return Err(forbidden_for(projects));
    }
    let refuse = || forbidden_for(projects);
    let query = uri.query();
    if super::query_param(query, "all-projects") == Some("true") {
        return Err(refuse());
    }
    if let Some(rest) = path.strip_prefix("/1.0/projects/") {
        let name = rest.split('/').next().unwrap_or_default();
        return if get && identity.allows(name) {
            Ok(())
        } else {
            Err(refuse())
        };
    }
    // What lists every project's instances is not theirs to read.
    let across = path.ends_with("/leases") || path.contains("/volumes");
    let server_wide = ["/1.0/certificates", "/1.0/networks", "/1.0/storage-pools"];
    if across {
        return Err(refuse());
    }
    if server_wide.iter().any(|p| under(path, p)) || path.starts_with("/1.0/operations") {
        // Reads only; handlers show a restricted client its own certificate and no token.
        return if get || (path.starts_with("/1.0/operations") && method == Method::DELETE) {
            Ok(())
        } else {
            Err(refuse())
        };
    }
    let elsewhere = [
        "/1.0/warnings",
        "/1.0/resources",
        "/1.0/cluster",
        "/internal",
    ];
    if path == "/1.0" || elsewhere.iter().any(|p| under(path, p)) {
        return Err(refuse());
    }
    if identity.allows(&project_param(query)) {
        Ok(())
    } else {
        Err(refuse())
    }
}

fn forbidden_for(projects: &[String]) -> ApiError {
    ApiError::new(
        ErrorKind::Forbidden,
        format!(
            "not authorized: the certificate is restricted to project(s) {}",
            projects.join(", ")
        ),
    )
}

/// Whether `path` is `prefix` or below it.
fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|r| r.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn may(identity: &Identity, method: &Method, uri: &str) -> bool {
        check(identity, method, &uri.parse().unwrap()).is_ok()
    }

    #[test]
    fn untrusted_reaches_only_the_open_endpoints() {
        let u = Identity::Untrusted;
        assert!(may(&u, &Method::GET, "/1.0"));
        assert!(may(&u, &Method::GET, "/"));
        assert!(may(&u, &Method::POST, "/1.0/certificates"));
        assert!(may(
            &u,
            &Method::GET,
            "/1.0/operations/x/websocket?secret=s"
        ));
        assert!(!may(&u, &Method::GET, "/1.0/certificates"));
        assert!(!may(&u, &Method::GET, "/1.0/instances"));
        assert!(!may(&u, &Method::PUT, "/1.0"));
        assert!(!may(&u, &Method::GET, "/1.0/operations/x"));
        assert!(may(&Identity::Local, &Method::PUT, "/1.0"));
    }

    #[test]
    fn restricted_reaches_its_projects() {
        let r = Identity::Certificate {
            fingerprint: "f".into(),
            name: "n".into(),
            restricted: Some(vec!["p".into()]),
        };
        assert!(may(&r, &Method::GET, "/1.0/instances?project=p"));
        assert!(may(&r, &Method::POST, "/1.0/instances/c/exec?project=p"));
        assert!(!may(&r, &Method::GET, "/1.0/instances"));
        assert!(!may(&r, &Method::GET, "/1.0/instances?project=q"));
        assert!(!may(
            &r,
            &Method::GET,
            "/1.0/instances?project=p&all-projects=true"
        ));
        assert!(may(&r, &Method::GET, "/1.0/projects"));
        assert!(may(&r, &Method::GET, "/1.0/projects/p"));
        assert!(!may(&r, &Method::GET, "/1.0/projects/default"));
        assert!(!may(&r, &Method::PUT, "/1.0/projects/p"));
        assert!(!may(&r, &Method::PATCH, "/1.0"));
        assert!(may(&r, &Method::GET, "/1.0"));
        assert!(!may(&r, &Method::POST, "/1.0/networks"));
        assert!(!may(&r, &Method::DELETE, "/1.0/certificates/f"));
        assert!(!may(&r, &Method::GET, "/1.0/warnings"));
        assert!(!may(&r, &Method::GET, "/1.0/resources"));
        assert!(!may(&r, &Method::POST, "/1.0/projects"));
        assert!(!may(&r, &Method::GET, "/1.0/networks/n/leases"));
        assert!(!may(&r, &Method::GET, "/1.0/storage-pools/default/volumes"));
        assert!(may(&r, &Method::GET, "/1.0/networks"));
    }
}
