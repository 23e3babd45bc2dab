//! `/` and `/1.0`: the server, its environment and its configuration.
//!
//! `GET /1.0` is served from bytes rendered when the configuration changes: it is the most
//! requested path (every client asks for it first).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::HeaderMap;
use berth_api::server::HostLimit;
use berth_api::{Response, Server, ServerEnvironment, ServerPut};
use bytes::Bytes;

use super::{ApiResult, AppState, Json, check_if_match, etag_of, sync, sync_empty, sync_raw};

/// `GET /1.0` as last rendered.
#[derive(Debug)]
pub struct ServerSnapshot {
    pub config: BTreeMap<String, String>,
    pub etag: String,
    pub body: Bytes,
}

/// The server's own state: its environment and its configuration as served.
#[derive(Debug)]
pub struct ServerState {
    /// The environment, whose `host_limits` change with the configuration.
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

    fn install(&self, config: BTreeMap<String, String>, host_limits: Vec<HostLimit>) {
        let mut env = self.environment.lock().unwrap_or_else(|p| p.into_inner());
        env.host_limits = host_limits;
        let snapshot = Arc::new(render(&env, config));
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }
}

fn render(env: &ServerEnvironment, config: BTreeMap<String, String>) -> ServerSnapshot {
    let server = Server {
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
    let body = serde_json::to_vec(&Response::sync(server)).unwrap_or_default();
    ServerSnapshot {
        etag: etag_of(&config),
        config,
        body: Bytes::from(body),
    }
}

/// `GET /`: the API versions served.
pub async fn get_root() -> axum::response::Response {
    sync(["/1.0"])
}

/// `GET /1.0`.
pub async fn get(State(st): State<AppState>) -> axum::response::Response {
    let snap = st.server.snapshot();
    sync_raw(snap.body.clone(), Some(&snap.etag))
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
    crate::config::store(&st.cx, new, |c| st.server.install(c, limits)).await?;
    crate::network::host_firewall_changed(&st.cx, accept).await?;
    Ok(sync_empty())
}
