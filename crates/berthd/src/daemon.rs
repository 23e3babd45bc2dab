//! Daemon start-up and shutdown.
//!
//! Start-up: make the state directory, take its lock (one daemon per directory), open the
//! logs and the database, bind `DIR/unix.socket` (0660, group `berth-admin` when it exists)
//! and serve the API. Shutdown on SIGTERM or SIGINT: stop accepting requests, give running
//! operations `core.shutdown_timeout` minutes, cancel what is left, remove the socket.
//! A second signal ends the wait at once.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::db::Db;
use crate::events::Events;
use crate::lock::DaemonLock;
use crate::paths::Paths;
use crate::state::State;

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
    crate::db::create_private_dir(&paths.logs())
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
        tracing::error!(error = %crate::logging::chain(e.as_ref()), "berthd failed");
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

/// On the very first start, creates what a fresh berthd needs to launch a container: the
/// `default` dir pool (the `default` profile's root disk points at it). Later starts never
/// recreate what a user deleted.
fn apply_defaults(paths: &Paths, db: &Db) -> anyhow::Result<()> {
    if db
        .call_sync(|c| crate::db::instances::internal(c, "defaults"))?
        .is_some()
    {
        return Ok(());
    }
    if db
        .call_sync(|c| crate::db::pools::get(c, "default"))?
        .is_none()
    {
        let source = crate::storage::default_source(paths, "default");
        let driver = berth_storage::load("dir", "default", Default::default(), &source)
            .context("Failed to set up the default storage pool")?;
        driver
            .create()
            .context("Failed to create the default storage pool")?;
        let rec = crate::db::pools::PoolRecord {
            name: "default".to_owned(),
            driver: "dir".to_owned(),
            description: "Default storage pool".to_owned(),
            config: driver.config().clone(),
        };
        db.call_sync(|c| crate::db::pools::put(c, &rec))?;
    }
    db.call_sync(|c| crate::db::instances::set_internal(c, "defaults", "1"))?;
    Ok(())
}

/// Loads and mounts every stored pool. A pool that fails is logged and left out, so one
/// broken pool does not keep the daemon (and every other pool) down.
fn load_pools(paths: &Paths, db: &Db) -> anyhow::Result<crate::storage::Pools> {
    let pools = crate::storage::Pools::default();
    for rec in db.call_sync(|c| crate::db::pools::list(c))? {
        let default = crate::storage::default_source(paths, &rec.name);
        match berth_storage::load(&rec.driver, &rec.name, rec.config, &default)
            .and_then(|d| d.mount().map(|()| d))
        {
            Ok(d) => pools.insert(&rec.name, Arc::from(d)),
            Err(e) => {
                let error = crate::logging::chain(&e);
                tracing::error!(pool = %rec.name, %error, "Storage pool unavailable");
            }
        }
    }
    Ok(pools)
}

async fn serve(paths: Paths, events: Events, testing: bool) -> anyhow::Result<()> {
    let db = Db::open(&paths.database())?;
    let config = db.call_sync(|c| crate::db::config::load(c))?;
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
    crate::db::create_private_dir(&paths.images())
        .with_context(|| format!("Failed to create {}", paths.images().display()))?;
    std::fs::create_dir_all(paths.containers())
        .and_then(|()| {
            std::fs::set_permissions(paths.containers(), std::fs::Permissions::from_mode(0o711))
        })
        .with_context(|| format!("Failed to create {}", paths.containers().display()))?;
    apply_defaults(&paths, &db)?;
    let pools = load_pools(&paths, &db)?;
    if let Some(d) = pools.get("default") {
        environment.storage = d.info().name.to_owned();
        environment.storage_version = d.info().version;
    }
    let state = Arc::new(State::new(
        paths.clone(),
        pools,
        db,
        events,
        environment,
        config,
        testing,
    ));

    // Before serving: what died while no berthd ran is reported stopped from the first
    // request on.
    for pool in state.pools.all() {
        if let Err(e) = pool.remove_leftovers() {
            tracing::warn!(error = %crate::logging::chain(&e), "Leftovers not removed");
        }
    }
    crate::api::snapshots::recover(&state).await;
    crate::api::instances::sweep(&state).await;

    let mut sigterm = signal(SignalKind::terminate()).context("Failed to watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("Failed to watch SIGINT")?;
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

    tokio::spawn(crate::api::instances::autostart(state.clone()));
    tokio::spawn(crate::api::snapshots::scheduler(state.clone()));

    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = sigint.recv() => tracing::info!("SIGINT received, shutting down"),
    }
    let _ = stop_tx.send(());
    let _ = std::fs::remove_file(paths.socket());

    let minutes: u64 = crate::config::get(&state.server().config, "core.shutdown_timeout")
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
