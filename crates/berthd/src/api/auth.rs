//! Who a request comes from, and what it may reach; checked before any handler runs.
//!
//! Over the unix socket a client is the host's administrator. Over HTTPS it is the
//! certificate it presented, looked up in the trust store ([`crate::ctx::Trust`]):
//!
//! ```text
//!   untrusted   GET /, GET /1.0 (the short form), POST /1.0/certificates (redeem a token),
//!               an operation's websocket (its secret is the key)
//!   restricted  its projects only (`?project=`, `default` when absent); reads of the
//!               project list (filtered), operations (tokens hidden), networks and pools;
//!               never the server's configuration, the trust store's writes, warnings,
//!               resources or another project
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
        Some(ConnectInfo(peer)) => st.cx.trust.get().identify(peer.cert.as_deref()),
    };
    if let Err(e) = check(&identity, req.method(), req.uri()) {
        return e.into_response();
    }
    req.extensions_mut().insert(identity);
    next.run(req).await
}

fn forbidden() -> ApiError {
    ApiError::new(ErrorKind::Forbidden, "not authorized")
}

/// Whether `identity` may send `method path?query`.
pub fn check(identity: &Identity, method: &Method, uri: &axum::http::Uri) -> Result<(), ApiError> {
    let path = uri.path().trim_end_matches('/');
    let get = method == Method::GET;
    let websocket = get && path.starts_with("/1.0/operations/") && path.ends_with("/websocket");
    let open = (get && (path.is_empty() || path == "/1.0"))
        || (method == Method::POST && path == "/1.0/certificates");
    if !identity.trusted() {
        return if open || websocket {
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
    let refuse = || {
        ApiError::new(
            ErrorKind::Forbidden,
            format!(
                "not authorized: the certificate is restricted to project(s) {}",
                projects.join(", ")
            ),
        )
    };
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
    let server_wide = ["/1.0/certificates", "/1.0/networks", "/1.0/storage-pools"];
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
    }
}
