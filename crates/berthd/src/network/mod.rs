//! Managed networks: the network layer over `berth-network`'s drivers, the twin of
//! [`crate::storage`]. It validates requests, records networks in the database, keeps the
//! loaded drivers ([`crate::ctx::Networks`]) and undoes half-made changes; a driver only
//! touches the host.
//!
//! Networks are the host's, not a project's: every project sees them, and a restricted
//! project may not create, change or delete one (its keys reach the host). A network that
//! cannot start at daemon start is kept, marked `Errored` with a warning, and retried by
//! [`watch`], which also puts back rules someone else flushed. The host's own interfaces
//! are listed beside managed networks as unmanaged.

pub mod firewall;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_api::network::NetworkPut;
use berth_network::{Driver, Env, Lease, NetworkState};

use crate::ctx::Ctx;
use crate::db::DbError;
use crate::error::{Failure, Result};
use crate::model::records::NetworkRecord;
use crate::revert::Reverter;

/// The warning a network that cannot start raises.
const UNAVAILABLE: &str = "Network unavailable";

fn not_found(name: &str) -> Failure {
    Failure::not_found(format!("Network {name:?} not found"))
}

/// A network's URL.
pub fn url(name: &str) -> String {
    format!("/1.0/networks/{name}")
}

/// A network as the API shows it: managed (with its record) or one of the host's own.
#[derive(Debug, Clone)]
pub struct View {
    pub rec: NetworkRecord,
    pub managed: bool,
    /// `Created` or `Errored` for a managed network; empty for a host interface.
    pub status: String,
}

/// Where network `name` lives and what it must avoid.
fn env(cx: &Ctx, name: &str, others: &[NetworkRecord]) -> Env {
    Env {
        dir: cx.paths.networks().join(name),
        id: cx.paths.daemon_id(),
        taken: others
            .iter()
            .filter(|o| o.name != name)
            .flat_map(|o| ["ipv4.address", "ipv6.address"].map(|k| o.config.get(k)))
            .flatten()
            .filter_map(|v| v.parse().ok())
            .collect(),
    }
}

/// Loads the driver of a network, validating its configuration and resolving `auto`.
fn load(
    cx: &Ctx,
    name: &str,
    kind: &str,
    config: BTreeMap<String, String>,
    others: &[NetworkRecord],
) -> Result<Arc<dyn Driver>> {
    let env = env(cx, name, others);
    Ok(berth_network::load(kind, name, config, env).map(Arc::from)?)
}

/// Starts a network on a blocking thread; its failure names the network.
async fn start(driver: Arc<dyn Driver>) -> Result<()> {
    Ok(tokio::task::spawn_blocking(move || driver.start()).await??)
}

/// Takes a network down; an undo step, so its failure is only logged.
fn stop_quietly(driver: &dyn Driver) {
    if let Err(e) = driver.stop() {
        tracing::warn!(network = %driver.name(), error = %crate::error::chain(&e), "Network not taken down");
    }
}

/// Records whether network `name` runs, raising or resolving its warning.
fn mark(cx: &Ctx, name: &str, result: std::result::Result<(), String>) {
    match result {
        Ok(()) => {
            if cx.networks.error(name).is_some() {
                tracing::info!(network = %name, "Network started");
            }
            cx.networks.set_error(name, None);
            crate::warning::resolve(cx, UNAVAILABLE, &url(name));
        }
        Err(e) => {
            crate::warning::raise(
                cx,
                UNAVAILABLE,
                &url(name),
                "high",
                &format!("Network {name:?} could not start: {e}"),
            );
            cx.networks.set_error(name, Some(e));
        }
    }
}

/// Loads and starts every stored network (daemon start). Each start is idempotent: what
/// runs is kept. One that fails is marked `Errored`, warned about and retried by
/// [`watch`]; it never keeps the daemon or the other networks down.
pub fn start_all(cx: &Ctx) -> Result<()> {
    let recs = cx.db.read_sync(crate::db::networks::list_readable)?;
    for rec in &recs {
        let result = load(cx, &rec.name, &rec.kind, rec.config.clone(), &recs)
            .and_then(|d| {
                cx.networks.drivers.insert(&rec.name, d.clone());
                d.start().map_err(Failure::from)
            })
            .map_err(|e| crate::error::chain(&e));
        mark(cx, &rec.name, result);
    }
    let names: Vec<String> = recs.iter().map(|r| r.name.clone()).collect();
    let accept = cx.networks.accepts_foreign();
    firewall::record(cx, &firewall::scan(&cx.paths.daemon_id(), &names, accept));
    Ok(())
}

/// Every 10 s: puts back the rules of networks whose rules someone flushed; every minute,
/// restarts networks that are down and checks the host's firewall again.
pub async fn watch(cx: Arc<Ctx>) {
    let mut tick: u64 = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        tick += 1;
        let _guard = cx.locks.networks.lock().await;
        let c = cx.clone();
        let pass = tokio::task::spawn_blocking(move || {
            let drivers = c.networks.drivers.all();
            if tick.is_multiple_of(6) {
                let names: Vec<String> = drivers.iter().map(|d| d.name().to_owned()).collect();
                let accept = c.networks.accepts_foreign();
                firewall::record(&c, &firewall::scan(&c.paths.daemon_id(), &names, accept));
            }
            for driver in drivers {
                let name = driver.name().to_owned();
                if c.networks.error(&name).is_some() {
                    if tick.is_multiple_of(6) {
                        let result = driver.start().map_err(|e| crate::error::chain(&e));
                        mark(&c, &name, result);
                    }
                    continue;
                }
                match driver.check() {
                    Ok(true) => {
                        tracing::warn!(network = %name, "Firewall rules were removed by someone else; put back");
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(network = %name, error = %crate::error::chain(&e), "Firewall rules not checked");
                    }
                }
            }
        });
        let _ = pass.await;
    }
}

/// Refuses a change to networks from a restricted project (403): networks reach the host.
async fn check_project(cx: &Ctx, project: &str) -> Result<()> {
    if crate::project::is_restricted(cx, project).await {
        return Err(Failure::forbidden(format!(
            "Project {project:?} is restricted: networks are the host's, so they are changed from an unrestricted project"
        )));
    }
    Ok(())
}

fn status(cx: &Ctx, name: &str) -> String {
    if cx.networks.error(name).is_some() {
        "Errored"
    } else {
        "Created"
    }
    .to_owned()
}

/// Every managed network, then every host interface that is not one.
pub async fn list(cx: &Ctx) -> Result<Vec<View>> {
    let recs = cx.db.read(crate::db::networks::list).await?;
    let links = tokio::task::spawn_blocking(berth_network::host::links).await??;
    let mut out: Vec<View> = recs
        .iter()
        .map(|rec| View {
            status: status(cx, &rec.name),
            rec: rec.clone(),
            managed: true,
        })
        .collect();
    for link in links {
        if recs.iter().any(|r| r.name == link.name) {
            continue;
        }
        out.push(unmanaged(link));
    }
    Ok(out)
}

/// A host interface as a network berth does not manage.
fn unmanaged(link: berth_network::host::Link) -> View {
    View {
        rec: NetworkRecord {
            kind: berth_network::host::link_type(&link).to_owned(),
            name: link.name,
            ..NetworkRecord::default()
        },
        managed: false,
        status: String::new(),
    }
}

/// Managed network `name`, if there is one.
async fn record(cx: &Ctx, name: &str) -> Result<Option<NetworkRecord>> {
    let n = name.to_owned();
    Ok(cx.db.read(move |c| crate::db::networks::get(c, &n)).await?)
}

/// Network `name`: managed, or a host interface.
pub async fn get(cx: &Ctx, name: &str) -> Result<View> {
    if let Some(rec) = record(cx, name).await? {
        return Ok(View {
            status: status(cx, name),
            rec,
            managed: true,
        });
    }
    let n = name.to_owned();
    let link = tokio::task::spawn_blocking(move || berth_network::host::link(&n))
        .await??
        .ok_or_else(|| not_found(name))?;
    Ok(unmanaged(link))
}

/// Managed network `name`, or 404 (a host interface cannot be changed through berth).
async fn managed(cx: &Ctx, name: &str) -> Result<NetworkRecord> {
    match record(cx, name).await? {
        Some(rec) => Ok(rec),
        None if get(cx, name).await.is_ok() => Err(Failure::invalid(format!(
            "Network {name:?} is not managed by berth"
        ))),
        None => Err(not_found(name)),
    }
}

/// The URLs of the instances and profiles whose nics use network `name`.
pub async fn used_by(cx: &Ctx, name: &str) -> Result<Vec<String>> {
    let n = name.to_owned();
    Ok(cx.db.read(move |c| users(c, &n)).await?)
}

/// [`used_by`] within a read or a write.
fn users(c: &rusqlite::Connection, name: &str) -> std::result::Result<Vec<String>, DbError> {
    let (instances, profiles, projects) = (
        crate::db::instances::list(c)?,
        crate::db::profiles::list(c)?,
        crate::db::projects::list(c)?,
    );
    let uses = |devices: &BTreeMap<String, berth_api::instance::Device>| {
        devices
            .values()
            .any(|d| crate::model::nic::network_of(d) == Some(name))
    };
    let mut out: Vec<String> = crate::model::expand::expand_all(instances, &profiles, &projects)
        .into_iter()
        .filter(|e| uses(&e.devices))
        .map(|e| crate::model::names::instance_url(&e.rec.name))
        .collect();
    out.extend(profiles.iter().filter(|p| uses(&p.devices)).map(|p| {
        let mut u = format!("/1.0/profiles/{}", p.name);
        if p.project != berth_api::DEFAULT_PROJECT {
            u += &format!("?project={}", p.project);
        }
        u
    }));
    Ok(out)
}

/// What a new network is.
#[derive(Debug)]
pub struct NewNetwork {
    pub name: String,
    /// Its driver; empty means `bridge`.
    pub kind: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
}

fn exists(name: &str) -> Failure {
    Failure::exists(format!("Network {name:?} already exists"))
}

/// Creates a network, brings it up on the host and records it.
pub async fn create(cx: &Ctx, project: &str, new: NewNetwork) -> Result<()> {
    check_project(cx, project).await?;
    let kind = if new.kind.is_empty() {
        berth_network::bridge::NAME.to_owned()
    } else {
        new.kind
    };
    let name = new.name;
    berth_network::validate_name(&name)?;
    let _guard = cx.locks.networks.lock().await;
    if record(cx, &name).await?.is_some() {
        return Err(exists(&name));
    }
    let others = cx.db.read(crate::db::networks::list).await?;
    let config = berth_network::with_defaults(&kind, new.config)?;
    let driver = load(cx, &name, &kind, config, &others)?;
    let mut undo = Reverter::new();
    let d = driver.clone();
    undo.add("take the new network down", move || {
        stop_quietly(d.as_ref());
        Ok(d.delete()?)
    });
    start(driver.clone()).await?;
    let rec = NetworkRecord {
        name: name.clone(),
        kind,
        description: new.description,
        config: driver.config().clone(),
    };
    cx.db
        .write(move |tx| crate::db::networks::insert(tx, &rec))
        .await
        .map_err(|e| match e {
            DbError::Exists { .. } => exists(&name),
            other => other.into(),
        })?;
    cx.networks.drivers.insert(&name, driver.clone());
    cx.networks.set_error(&name, None);
    undo.success();
    let (own, names) = (cx.paths.daemon_id(), vec![name.clone()]);
    let accept = cx.networks.accepts_foreign();
    let found = tokio::task::spawn_blocking(move || firewall::scan(&own, &names, accept)).await?;
    firewall::record(cx, &found);
    tracing::info!(network = %name, "Network created");
    cx.events.lifecycle("network-created", &url(&name), None);
    Ok(())
}

/// Replaces (`replace`) or merges a network's description and config, and applies it on
/// the host; if the host refuses, the network comes back as it was. `precondition` sees
/// the network as it is, under the network lock (an ETag check).
pub async fn update(
    cx: &Ctx,
    project: &str,
    name: &str,
    precondition: impl FnOnce(&NetworkRecord) -> Result<()>,
    req: NetworkPut,
    replace: bool,
) -> Result<()> {
    check_project(cx, project).await?;
    let _guard = cx.locks.networks.lock().await;
    let rec = managed(cx, name).await?;
    precondition(&rec)?;
    // An empty value unsets a key (PATCH); PUT replaces, empty values left out.
    let mut config = rec.config.clone();
    crate::model::merge_config(&mut config, Some(req.config), replace);
    config.retain(|_, v| !v.is_empty());
    let others = cx.db.read(crate::db::networks::list).await?;
    let driver = load(cx, name, &rec.kind, config, &others)?;
    let old = load(cx, name, &rec.kind, rec.config.clone(), &others)?;
    let mut undo = Reverter::new();
    let o = old.clone();
    undo.add("bring the network back as it was", move || Ok(o.start()?));
    start(driver.clone()).await?;
    let new = NetworkRecord {
        description: {
            let mut d = rec.description.clone();
            crate::model::merge_description(&mut d, req.description, replace);
            d
        },
        config: driver.config().clone(),
        ..rec
    };
    cx.db
        .write(move |tx| crate::db::networks::update(tx, &new))
        .await?;
    cx.networks.drivers.insert(name, driver);
    mark(cx, name, Ok(()));
    undo.success();
    cx.events.lifecycle("network-updated", &url(name), None);
    Ok(())
}

/// Renames a network nothing uses: down under its old name, its directory moved, up
/// under the new one.
pub async fn rename(cx: &Ctx, project: &str, name: &str, to: &str) -> Result<()> {
    check_project(cx, project).await?;
    berth_network::validate_name(to)?;
    let _guard = cx.locks.networks.lock().await;
    let rec = managed(cx, name).await?;
    if name == to || record(cx, to).await?.is_some() {
        return Err(exists(to));
    }
    if !used_by(cx, name).await?.is_empty() {
        return Err(Failure::conflict(format!(
            "Network {name:?} is in use: it cannot be renamed"
        )));
    }
    let mut others = cx.db.read(crate::db::networks::list).await?;
    others.retain(|o| o.name != name);
    let old = load(cx, name, &rec.kind, rec.config.clone(), &others)?;
    let mut undo = Reverter::new();
    let o = old.clone();
    tokio::task::spawn_blocking(move || o.stop()).await??;
    let o = old.clone();
    undo.add("bring the network back under its old name", move || {
        Ok(o.start()?)
    });
    // Loaded once the old bridge is gone, so its subnets are free for the new name.
    let new = load(cx, to, &rec.kind, rec.config.clone(), &others)?;
    let (from_dir, to_dir) = (cx.paths.networks().join(name), cx.paths.networks().join(to));
    if from_dir.exists() {
        std::fs::rename(&from_dir, &to_dir)
            .map_err(|e| Failure::failed(format!("Failed to move {}", from_dir.display()), e))?;
        undo.add("move the network's directory back", move || {
            std::fs::rename(&to_dir, &from_dir)
                .map_err(|e| Failure::failed("Failed to move the network's directory back", e))
        });
    }
    let n = new.clone();
    undo.add("take the renamed network down", move || Ok(n.stop()?));
    start(new.clone()).await?;
    let (from, dest) = (name.to_owned(), to.to_owned());
    cx.db
        .write(move |tx| crate::db::networks::rename(tx, &from, &dest))
        .await
        .map_err(|e| match e {
            DbError::Exists { .. } => exists(to),
            other => other.into(),
        })?;
    cx.networks.drivers.remove(name);
    cx.networks.set_error(name, None);
    crate::warning::resolve(cx, UNAVAILABLE, &url(name));
    cx.networks.drivers.insert(to, new);
    undo.success();
    // Foreign accept rules and findings follow the new name.
    let (own, old_name, names) = (cx.paths.daemon_id(), name.to_owned(), vec![to.to_owned()]);
    let accept = cx.networks.accepts_foreign();
    let found = tokio::task::spawn_blocking(move || {
        firewall::forget(&own, &old_name);
        firewall::scan(&own, &names, accept)
    })
    .await?;
    firewall::record(cx, &[(name.to_owned(), Vec::new())]);
    firewall::record(cx, &found);
    cx.events.lifecycle("network-renamed", &url(to), None);
    Ok(())
}

/// Deletes a network nothing uses: its row first (in the write that checks its users),
/// then the host's side; a failure there brings the row back.
pub async fn delete(cx: &Ctx, project: &str, name: &str) -> Result<()> {
    check_project(cx, project).await?;
    let _guard = cx.locks.networks.lock().await;
    let rec = managed(cx, name).await?;
    let n = name.to_owned();
    cx.db
        .write(move |tx| {
            let users = users(tx, &n)?;
            if !users.is_empty() {
                return Err(Failure::conflict(format!(
                    "Network {n:?} is in use by {}",
                    users.join(", ")
                )));
            }
            Ok(crate::db::networks::delete(tx, &n)?)
        })
        .await?;
    let mut undo = Reverter::new();
    let (db, row) = (cx.db.clone(), rec.clone());
    undo.add("record the network again", move || {
        Ok(db.write_sync(|tx| crate::db::networks::insert(tx, &row))?)
    });
    let driver = match cx.networks.drivers.get(name) {
        Some(d) => d,
        None => {
            let others = cx.db.read(crate::db::networks::list).await?;
            load(cx, name, &rec.kind, rec.config.clone(), &others)?
        }
    };
    tokio::task::spawn_blocking(move || driver.stop().and_then(|()| driver.delete())).await??;
    cx.networks.drivers.remove(name);
    cx.networks.set_error(name, None);
    crate::warning::resolve(cx, UNAVAILABLE, &url(name));
    // What berthd put in the host's other tables for it goes, and so do its findings.
    let (own, n) = (cx.paths.daemon_id(), name.to_owned());
    tokio::task::spawn_blocking(move || firewall::forget(&own, &n)).await?;
    firewall::record(cx, &[(name.to_owned(), Vec::new())]);
    undo.success();
    tracing::info!(network = %name, "Network deleted");
    cx.events.lifecycle("network-deleted", &url(name), None);
    Ok(())
}

/// Applies a new value of the server key `network.host_firewall.accept`: the accept rules
/// in the host's other tables are put or taken away at once, and the warnings follow.
pub async fn host_firewall_changed(cx: &Ctx, accept: bool) -> Result<()> {
    if !cx.networks.set_accepts_foreign(accept) {
        return Ok(());
    }
    let _guard = cx.locks.networks.lock().await;
    let own = cx.paths.daemon_id();
    let names: Vec<String> = cx
        .networks
        .drivers
        .all()
        .iter()
        .map(|d| d.name().to_owned())
        .collect();
    let found = tokio::task::spawn_blocking(move || firewall::scan(&own, &names, accept)).await?;
    firewall::record(cx, &found);
    Ok(())
}

/// What the host says of network `name`'s interface (managed or not).
pub async fn state(cx: &Ctx, name: &str) -> Result<NetworkState> {
    let view = get(cx, name).await?;
    let n = name.to_owned();
    let state = tokio::task::spawn_blocking(move || berth_network::host::state(&n)).await??;
    match state {
        Some(s) => Ok(s),
        None if view.managed => Ok(NetworkState {
            state: "down".to_owned(),
            ..NetworkState::default()
        }),
        None => Err(not_found(name)),
    }
}

/// A managed network's leases: its addresses, static allocations and DHCP leases.
pub async fn leases(cx: &Ctx, name: &str) -> Result<Vec<Lease>> {
    managed(cx, name).await?;
    let driver = driver(cx, name)?;
    Ok(tokio::task::spawn_blocking(move || driver.leases()).await??)
}

/// The loaded driver of managed network `name`.
pub fn driver(cx: &Ctx, name: &str) -> Result<Arc<dyn Driver>> {
    cx.networks
        .drivers
        .get(name)
        .ok_or_else(|| Failure::unavailable(format!("Network {name:?} is not available")))
}

/// The addresses (`IP:PORT`) a listener on `addr` is reached at: `addr` itself, or for a
/// wildcard every address of the host but loopback and link-local ones, IPv4 first.
pub fn listen_addresses(addr: std::net::SocketAddr) -> Vec<String> {
    if !addr.ip().is_unspecified() {
        return vec![addr.to_string()];
    }
    let v4_only = addr.is_ipv4();
    let mut found: Vec<std::net::SocketAddr> = berth_network::host::addresses()
        .unwrap_or_default()
        .into_iter()
        .map(|(_, net)| net)
        .filter(|net| !net.addr().is_loopback() && !berth_network::host::is_link_local(net))
        .filter(|net| !v4_only || net.addr().is_ipv4())
        .map(|net| std::net::SocketAddr::new(net.addr(), addr.port()))
        .collect();
    found.sort_by_key(|a| (a.is_ipv6(), *a));
    found.dedup();
    found.into_iter().map(|a| a.to_string()).collect()
}
