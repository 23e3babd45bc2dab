//! `/` and `/1.0`: the server, its environment and its configuration.
//!
//! `GET /1.0` is served from bytes rendered when the configuration changes: it is the most
//! requested path (every client asks for it first).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use berth_api::server::HostLimit;
use berth_api::{Response, Server, ServerEnvironment, ServerPut};
use bytes::Bytes;

use crate::model::trust::Identity;

use super::{ApiResult, AppState, Json, check_if_match, etag_of, sync, sync_empty, sync_raw};

/// `GET /1.0` as last rendered, for each kind of client.
#[derive(Debug)]
pub struct ServerSnapshot {
    pub config: BTreeMap<String, String>,
    pub etag: String,
    /// For the unix socket.
    pub body: Bytes,
    /// For a trusted HTTPS client.
    pub tls_body: Bytes,
    /// For a restricted HTTPS client: no server configuration.
    pub restricted_body: Bytes,
    /// For an untrusted HTTPS client: no configuration, no environment.
    pub untrusted_body: Bytes,
}

/// The server's own state: its environment and its configuration as served.
#[derive(Debug)]
pub struct ServerState {
    /// The environment, whose `host_limits` change with the configuration and whose
    /// `addresses` with the HTTPS listener.
    environment: std::sync::Mutex<ServerEnvironment>,
    snapshot: RwLock<Arc<ServerSnapshot>>,
    /// Serialises configuration changes, so ETag checks and writes are atomic.
    lock: tokio::sync::Mutex<()>,
}

impl ServerState {
    pub fn new(environment: ServerEnvironment, config: BTreeMap<String, String>) -> Self {
        let snapshot = render(&environment, config);
        ServerState {
            environment: std::sync::Mutex::new(environment),
            snapshot: RwLock::new(Arc::new(snapshot)),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<ServerSnapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn env(&self) -> std::sync::MutexGuard<'_, ServerEnvironment> {
        self.environment.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn install(&self, config: BTreeMap<String, String>, host_limits: Vec<HostLimit>) {
        let mut env = self.env();
        env.host_limits = host_limits;
        let snapshot = Arc::new(render(&env, config));
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }

    /// The addresses the HTTPS API is reached at (`IP:PORT`), as tokens and migrations
    /// hand them to clients.
    pub fn addresses(&self) -> Vec<String> {
        self.env().addresses.clone()
    }

    /// Records the addresses the HTTPS API is reached at.
    pub fn set_addresses(&self, addresses: Vec<String>) {
        let mut env = self.env();
        env.addresses = addresses;
        let config = self.snapshot().config.clone();
        let snapshot = Arc::new(render(&env, config));
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }
}

fn render(env: &ServerEnvironment, config: BTreeMap<String, String>) -> ServerSnapshot {
    let mut server = Server {
        config: config.clone(),
        api_extensions: berth_api::extensions::API_EXTENSIONS
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        api_status: "stable".to_owned(),
        api_version: berth_api::API_VERSION.to_owned(),
        auth: "trusted".to_owned(),
        auth_methods: vec!["tls".to_owned()],
        public: false,
        environment: Some(env.clone()),
        auth_user_name: String::new(),
        auth_user_method: "unix".to_owned(),
    };
    let to_bytes =
        |s: &Server| Bytes::from(serde_json::to_vec(&Response::sync(s)).unwrap_or_default());
    let body = to_bytes(&server);
    server.auth_user_method = "tls".to_owned();
    let tls_body = to_bytes(&server);
    server.config = BTreeMap::new();
    let restricted_body = to_bytes(&server);
    server.auth = "untrusted".to_owned();
    server.auth_user_method.clear();
    server.environment = None;
    server.config = BTreeMap::new();
    let untrusted_body = to_bytes(&server);
    ServerSnapshot {
        etag: etag_of(&config),
        config,
        body,
        tls_body,
        restricted_body,
        untrusted_body,
    }
}

/// `GET /`: the API versions served.
pub async fn get_root() -> axum::response::Response {
    sync(["/1.0"])
}

/// `GET /1.0`.
pub async fn get(
    State(st): State<AppState>,
    Extension(identity): Extension<Identity>,
) -> axum::response::Response {
    let snap = st.server.snapshot();
    match identity {
        Identity::Local => sync_raw(snap.body.clone(), Some(&snap.etag)),
        Identity::Untrusted => sync_raw(snap.untrusted_body.clone(), None),
        Identity::Certificate {
            restricted: None, ..
        } => sync_raw(snap.tls_body.clone(), Some(&snap.etag)),
        Identity::Certificate { .. } => sync_raw(snap.restricted_body.clone(), None),
    }
}

/// `PUT /1.0`: replaces the server configuration.
pub async fn put(
    State(st): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<ServerPut>,
) -> ApiResult {
    update(&st, &headers, |_| req.config).await
}

/// `PATCH /1.0`: merges into the server configuration; an empty value unsets a key.
pub async fn patch(
    State(st): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<ServerPut>,
) -> ApiResult {
    update(&st, &headers, |current| {
        let mut merged = current.clone();
        crate::model::merge_config(&mut merged, Some(req.config), false);
        merged
    })
    .await
}

async fn update(
    st: &AppState,
    headers: &HeaderMap,
    make: impl FnOnce(&BTreeMap<String, String>) -> BTreeMap<String, String>,
) -> ApiResult {
    let _serialised = st.server.lock.lock().await;
    let current = st.server.snapshot();
    check_if_match(headers, &current.etag)?;
    let new = make(&current.config);
    let accept = crate::config::get(&new, crate::config::ACCEPT_FOREIGN) == "true";
    // The host's limits are checked again for the new configuration (expected
    // containers, their kind of id map) before it is stored.
    let mut checked = new.clone();
    checked.retain(|_, v| !v.is_empty());
    crate::config::validate(&checked).map_err(|e| crate::error::Failure::invalid(e.to_string()))?;
    let cx = st.cx.clone();
    let limits = tokio::task::spawn_blocking(move || crate::capacity::check(&cx, &checked))
        .await
        .map_err(crate::error::Failure::from)?;
    // The HTTPS listener moves first: an address it cannot bind is refused before
    // anything is stored.
    let old_https = crate::config::https_address(crate::config::get(
        &current.config,
        crate::config::HTTPS_ADDRESS,
    ))
    .ok()
    .flatten();
    let new_https =
        crate::config::https_address(crate::config::get(&new, crate::config::HTTPS_ADDRESS))
            .ok()
            .flatten();
    listen(st, new_https).await?;
    if let Err(e) = crate::config::store(&st.cx, new, |c| st.server.install(c, limits)).await {
        let _ = listen(st, old_https).await;
        return Err(e.into());
    }
    crate::network::host_firewall_changed(&st.cx, accept).await?;
    Ok(sync_empty())
}

/// Serves the API over HTTPS on `addr` (or nowhere), and records where it is reached.
pub async fn listen(st: &AppState, addr: Option<std::net::SocketAddr>) -> crate::error::Result<()> {
    st.https.listen(addr, super::router(st.clone())).await?;
    st.server.set_addresses(
        addr.map(crate::network::listen_addresses)
            .unwrap_or_default(),
    );
    Ok(())
}
