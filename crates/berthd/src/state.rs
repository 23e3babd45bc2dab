//! The daemon's shared state, handed to every API handler.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use berth_api::{Response, Server, ServerEnvironment};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::db::Db;
use crate::events::Events;
use crate::operations::Operations;
use crate::paths::Paths;
use crate::storage::Pools;

/// The current time as LXD formats timestamps (RFC 3339, nanoseconds, UTC).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The ETag of a JSON-serialisable value: the hex SHA-256 of its JSON.
pub fn etag_of<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&json);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /1.0` as last rendered: the reply is pre-serialised because it is the most
/// requested path (every client asks for it first).
#[derive(Debug)]
pub struct ServerSnapshot {
    pub config: BTreeMap<String, String>,
    pub etag: String,
    pub body: Bytes,
}

/// Host facts the container runtime needs.
#[derive(Debug)]
pub struct Runtime {
    pub cgroup_parent: String,
    /// The host ids containers' maps come from.
    pub ids: crate::instances::idmap::HostIds,
    pub host: crate::instances::limits::Host,
    /// Serialises finding or starting lxcfs.
    pub lxcfs: std::sync::Mutex<()>,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct State {
    pub paths: Paths,
    pub pools: Pools,
    /// Serialises image and alias writes.
    pub image_lock: tokio::sync::Mutex<()>,
    /// Serialises storage pool writes.
    pub pool_lock: tokio::sync::Mutex<()>,
    /// Serialises profile writes.
    pub profile_lock: tokio::sync::Mutex<()>,
    pub image_limits: berth_image::Limits,
    pub instances: crate::instances::Instances,
    /// Spare volumes being unpacked.
    pub spares: crate::instances::spares::Refills,
    pub runtime: Runtime,
    pub db: Db,
    pub ops: Operations,
    pub events: Events,
    /// Whether the `/internal/testing` endpoints are served.
    pub testing: bool,
    environment: ServerEnvironment,
    server: RwLock<Arc<ServerSnapshot>>,
    /// Serialises server configuration changes so ETag checks and writes are atomic.
    pub config_lock: tokio::sync::Mutex<()>,
}

impl State {
    pub fn new(
        paths: Paths,
        pools: Pools,
        db: Db,
        events: Events,
        environment: ServerEnvironment,
        config: BTreeMap<String, String>,
        testing: bool,
    ) -> Self {
        let snapshot = render_server(&environment, config);
        let cgroup_parent = crate::instances::cgroup_parent(&paths.dir);
        State {
            paths,
            pools,
            image_lock: tokio::sync::Mutex::new(()),
            pool_lock: tokio::sync::Mutex::new(()),
            profile_lock: tokio::sync::Mutex::new(()),
            image_limits: berth_image::Limits::default(),
            instances: crate::instances::Instances::default(),
            spares: crate::instances::spares::Refills::default(),
            runtime: Runtime {
                cgroup_parent,
                ids: crate::instances::idmap::HostIds::read(std::path::Path::new("/etc")),
                host: crate::instances::limits::Host {
                    memory: crate::host::resources::read(std::path::Path::new("/"))
                        .memory
                        .total,
                    cpus: std::thread::available_parallelism()
                        .map(|n| n.get())
                        .unwrap_or(1),
                    cgroup_v2: crate::host::cgroup::is_v2(),
                },
                lxcfs: std::sync::Mutex::new(()),
            },
            db,
            ops: Operations::new(events.clone()),
            events,
            testing,
            environment,
            server: RwLock::new(Arc::new(snapshot)),
            config_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The current server snapshot.
    pub fn server(&self) -> Arc<ServerSnapshot> {
        self.server
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Installs a new server configuration (already validated and stored).
    pub fn set_config(&self, config: BTreeMap<String, String>) {
        let snapshot = Arc::new(render_server(&self.environment, config));
        *self.server.write().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }
}

fn render_server(env: &ServerEnvironment, config: BTreeMap<String, String>) -> ServerSnapshot {
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
