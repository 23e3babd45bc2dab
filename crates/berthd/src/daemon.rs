//! Daemon start-up and shutdown: wiring only.
//!
//! Start-up: make the state directory, take its lock (one daemon per directory), open the
//! logs and the database, load the storage pools, build the services' context and the
//! API's state, run what must happen before serving (recover interrupted restores, sweep
//! instances that died), bind `DIR/unix.socket` (0660, group `berth-admin` when it
//! exists), serve the API and start the background tasks (autostart, the snapshot
//! scheduler). Shutdown on SIGTERM or SIGINT: stop accepting requests, give running
//! operations `core.shutdown_timeout` minutes, cancel what is left, remove the socket.
//! A second signal ends the wait at once.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::api::{Api, ops::Operations, server::ServerState};
use crate::ctx::{Ctx, Locks, Pools};
use crate::db::Db;
use crate::events::Events;
use crate::lock::DaemonLock;
use crate::paths::Paths;

/// How berthd was asked to run.
#[derive(Debug)]
pub struct Options {
    pub dir: PathBuf,
    pub level: tracing::Level,
    pub testing: bool,
}

/// Runs the daemon until it is told to stop.
pub fn run(opts: Options) -> anyhow::Result<()> {
    // Descriptors inherited from whoever started berthd must not reach its helpers, lxcfs,
    // console keepers or the commands run in containers.
    berth_host::cloexec_from_3().context("Failed to mark inherited descriptors close-on-exec")?;
    let paths = Paths::new(opts.dir);
    make_state_dir(paths.dir())?;
    let lock = DaemonLock::acquire(paths.dir(), &paths.lock())?;
    crate::paths::create_private_dir(&paths.logs())
        .with_context(|| format!("Failed to create {}", paths.logs().display()))?;
    let events = Events::new();
    crate::logging::init(opts.level, &paths.log_file(), events.clone())
        .with_context(|| format!("Failed to open {}", paths.log_file().display()))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berthd")
        .build()
        .context("Failed to start the async runtime")?;
    let result = runtime.block_on(serve(paths, events, opts.testing));
    runtime.shutdown_timeout(Duration::from_secs(1));
    drop(lock);
    if let Err(e) = &result {
        tracing::error!(error = %crate::error::chain(e.as_ref()), "berthd failed");
    }
    result
}

/// Creates the state directory: 0711, so that members of `berth-admin` can reach the socket
/// but nobody else can list what is inside.
fn make_state_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("Failed to create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .with_context(|| format!("Failed to set permissions of {}", dir.display()))
}

/// The gid of group `name` from /etc/group.
fn group_id(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok())?
    })
}

fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    // We hold the directory lock, so a socket file left here belongs to a dead daemon.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("Failed to remove {}", path.display())),
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("Failed to listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("Failed to set permissions of {}", path.display()))?;
    if let Some(gid) = group_id("berth-admin") {
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)))
            .with_context(|| format!("Failed to give {} to group berth-admin", path.display()))?;
    }
    Ok(listener)
}

async fn serve(paths: Paths, events: Events, testing: bool) -> anyhow::Result<()> {
    let db = Db::open(&paths.database())?;
    let config = db.read_sync(crate::db::config::load)?;
    let mut environment = crate::host::environment::read(Path::new("/"));
    environment.driver_version = berth_lxc::version();
    environment.storage_supported_drivers = berth_storage::supported()
        .into_iter()
        .map(|d| berth_api::server::ServerStorageDriverInfo {
            name: d.name.to_owned(),
            version: d.version,
            remote: d.remote,
        })
        .collect();
    crate::paths::create_private_dir(&paths.images())
        .with_context(|| format!("Failed to create {}", paths.images().display()))?;
    std::fs::create_dir_all(paths.containers())
        .and_then(|()| {
            std::fs::set_permissions(paths.containers(), std::fs::Permissions::from_mode(0o711))
        })
        .with_context(|| format!("Failed to create {}", paths.containers().display()))?;
    let cgroups = crate::host::cgroup::Cgroups::host();
    let host = crate::model::limits::Host {
        memory: crate::host::resources::read(Path::new("/")).memory.total,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cgroup_v2: cgroups.is_v2(),
    };
    let driver = crate::lxc::Liblxc::new(&paths, cgroups, host.memory);
    tokio::task::block_in_place(|| driver.resume_syscall_proxy());
    let cx = Arc::new(Ctx {
        ids: host_ids(),
        driver: Arc::new(driver),
        pools: Pools::default(),
        networks: Default::default(),
        locks: Locks::default(),
        image_limits: berth_image::Limits::default(),
        spares: Default::default(),
        busy_volumes: Default::default(),
        starts: Default::default(),
        trust: Default::default(),
        host,
        paths: paths.clone(),
        db,
        events: events.clone(),
    });
    crate::storage::apply_defaults(&cx)?;
    crate::storage::load_all(&cx)?;
    cx.networks
        .set_accepts_foreign(crate::config::get(&config, crate::config::ACCEPT_FOREIGN) == "true");
    crate::network::start_all(&cx)?;
    if let Some(d) = cx.pools.get("default") {
        environment.storage = d.info().name.to_owned();
        environment.storage_version = d.info().version;
    }
    environment.host_limits = crate::capacity::check(&cx, &config);
    crate::trust::load(&cx).await?;
    let identity =
        crate::api::tls::ServerIdentity::load_or_create(paths.dir(), &environment.server_name)?;
    environment.certificate = identity.pem.clone();
    environment.certificate_fingerprint = identity.fingerprint.clone();
    let https_address =
        crate::config::https_address(crate::config::get(&config, crate::config::HTTPS_ADDRESS))
            .ok()
            .flatten();
    let state = Arc::new(Api {
        cx: cx.clone(),
        ops: Operations::new(events),
        server: ServerState::new(environment, config),
        https: crate::api::tls::Https::new(identity)?,
        testing,
    });

    // Before serving: what died while no berthd ran is reported stopped from the first
    // request on.
    crate::storage::remove_leftovers(&cx);
    crate::instance::snapshot::recover(&cx).await;
    crate::instance::backup::sweep(&cx).await;
    crate::instance::background::sweep(&cx).await;
    crate::instance::proxy::resume(&cx).await;

    let mut sigterm = signal(SignalKind::terminate()).context("Failed to watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("Failed to watch SIGINT")?;
    // HTTPS first: once the unix socket answers, the whole API does. A stored address
    // that can't be bound now (gone from the host) leaves the unix socket serving; the
    // key stays, to be fixed or to work at the next start.
    if let Err(e) = crate::api::server::listen(&state, https_address).await {
        tracing::error!(error = %e, "Not serving HTTPS");
    }
    let listener = bind_socket(&paths.socket())?;
    tracing::info!(dir = %paths.dir().display(), pid = std::process::id(), "berthd started");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = crate::api::router(state.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });

    tokio::spawn(crate::instance::background::autostart(cx.clone()));
    tokio::spawn(crate::instance::background::scheduler(cx.clone()));
    tokio::spawn(crate::image::cache::flusher(cx.clone()));
    tokio::spawn(crate::instance::background::boots(cx.clone()));
    tokio::spawn(crate::network::watch(cx.clone()));

    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = sigint.recv() => tracing::info!("SIGINT received, shutting down"),
    }
    let _ = stop_tx.send(());
    state.https.stop();
    let _ = std::fs::remove_file(paths.socket());

    let minutes: u64 = crate::config::get(&state.server.snapshot().config, "core.shutdown_timeout")
        .parse()
        .unwrap_or(5);
    tokio::select! {
        idle = state.ops.wait_idle(Duration::from_secs(minutes * 60)) => {
            if !idle {
                tracing::warn!("Operations still running after core.shutdown_timeout, cancelling");
            }
        }
        _ = sigterm.recv() => tracing::warn!("Second signal, cancelling running operations"),
        _ = sigint.recv() => tracing::warn!("Second signal, cancelling running operations"),
    }
    state.ops.cancel_all();
    // Give in-flight requests a moment to finish; upgraded websockets are simply dropped.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    tracing::info!("berthd stopped");
    Ok(())
}

/// The host ids containers' maps come from: root's subordinate ids, registered in
/// /etc/subuid and /etc/subgid first when root has none.
fn host_ids() -> crate::model::idmap::HostIds {
    let etc = Path::new("/etc");
    match crate::host::ids::register(etc) {
        Ok(true) => tracing::info!(
            "Registered root:{}:{} in /etc/subuid and /etc/subgid, the ids containers get",
            crate::model::idmap::FALLBACK_BASE,
            crate::model::idmap::FALLBACK_COUNT
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!("Failed to register root's subordinate ids: {e}"),
    }
    crate::host::ids::read(etc, Path::new("/"))
}
