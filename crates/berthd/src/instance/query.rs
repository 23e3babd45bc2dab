//! What an instance is and how it runs: its status and state, its rendering as LXD's
//! `Instance`, and lists of many at once.

use std::collections::BTreeMap;

use berth_api::StatusCode;
use berth_api::instance::{Instance, InstanceState};

use super::{blocking, find, profiles};
use crate::ctx::Ctx;
use crate::db::DbError;
use crate::error::Result;
use crate::lxc::Observe;
use crate::model::expand::{expand, with_profiles};
use crate::model::records::{InstanceRecord, ProfileRecord, SnapshotRecord};

/// An instance's status and init pid.
pub async fn status(cx: &Ctx, name: &str) -> (StatusCode, Option<i32>) {
    let n = name.to_owned();
    blocking(cx, move |d| d.status(&n))
        .await
        .unwrap_or((StatusCode::Error, None))
}

/// Whether the instance is stopped.
pub async fn is_stopped(cx: &Ctx, name: &str) -> bool {
    let n = name.to_owned();
    blocking(cx, move |d| d.is_stopped(&n))
        .await
        .unwrap_or(false)
}

/// What the host says of one instance: status, pid, counters, network (with each nic's
/// host-side name), disk usage.
pub async fn state(cx: &Ctx, rec: &InstanceRecord) -> InstanceState {
    state_with(cx, rec, Observe::FULL, true).await
}

/// As [`state`], reading what `how` asks for, and the disk usage when `disk`.
pub async fn state_with(cx: &Ctx, rec: &InstanceRecord, how: Observe, disk: bool) -> InstanceState {
    let n = rec.name.clone();
    let mut state = blocking(cx, move |d| d.observe(&n, how))
        .await
        .unwrap_or_default();
    super::nic::fill_host_names(&mut state, &rec.config);
    with_stop_reason(&mut state, rec);
    if disk {
        super::quota::fill_usage(cx, rec, &mut state).await;
    }
    state
}

/// A stopped instance's state says why it died at boot, when it did.
fn with_stop_reason(state: &mut InstanceState, rec: &InstanceRecord) {
    if state.status_code == StatusCode::Stopped.code()
        && let Some(r) = rec.config.get(crate::model::boot::STOP_REASON)
    {
        state.stop_reason = r.clone();
    }
}

/// An instance as LXD shows it, with `profiles` (its own, resolved) and `status`.
pub fn render(
    cx: &Ctx,
    rec: &InstanceRecord,
    profiles: &[ProfileRecord],
    status: StatusCode,
) -> Instance {
    render_as(rec, profiles, status, is_stateful(cx, rec, status))
}

/// Whether the instance is a stopped one holding a saved state.
fn is_stateful(cx: &Ctx, rec: &InstanceRecord, status: StatusCode) -> bool {
    status == StatusCode::Stopped
        && crate::lxc::checkpoint::has_state(cx.driver.lxcpath(), &rec.name)
}

/// [`render`], whether it is `stateful` known.
fn render_as(
    rec: &InstanceRecord,
    profiles: &[ProfileRecord],
    status: StatusCode,
    stateful: bool,
) -> Instance {
    let (expanded_config, expanded_devices) = expand(profiles, rec);
    Instance {
        name: rec.api_name().to_owned(),
        description: rec.description.clone(),
        status: status.name().to_owned(),
        status_code: status.code(),
        created_at: rec.created_at.clone(),
        last_used_at: rec.last_used_at.clone(),
        location: "none".to_owned(),
        kind: "container".to_owned(),
        project: rec.project.clone(),
        architecture: rec.architecture.clone(),
        ephemeral: rec.ephemeral,
        stateful,
        profiles: rec.profiles.clone(),
        config: rec.config.clone(),
        devices: rec.devices.clone(),
        expanded_config,
        expanded_devices,
    }
}

/// Instance `name` as LXD shows it, with its record.
pub async fn get(cx: &Ctx, name: &str) -> Result<(InstanceRecord, Instance)> {
    let rec = find(cx, name).await?;
    let profiles = profiles(cx, &rec.project, &rec.profiles).await?;
    let (status, _) = status(cx, name).await;
    let view = render(cx, &rec, &profiles, status);
    Ok((rec, view))
}

/// The host-wide names of the instances of `project` (of every project: `None`).
pub async fn names(cx: &Ctx, project: Option<&str>) -> Result<Vec<String>> {
    let mut recs = cx.db.read(crate::db::instances::list).await?;
    recs.retain(|r| project.is_none_or(|p| r.project == p));
    Ok(recs.into_iter().map(|r| r.name).collect())
}

/// What `recursion=N;fields=…` names of an instance's state (LXD's selective recursion):
/// `state.network` its interfaces, `state.disk` its disks (a list reports none yet);
/// berth's own `state.network.counters` the interfaces with their counters, and
/// `state.cpu`, `state.memory` and `state.processes` the cgroup counters, which come
/// together. The status, pid and start time always come. For LXD's clients, who name
/// state parts only, [`Observe::as_lxd`] adds what LXD always sends.
pub fn observation(fields: &[String]) -> Result<Observe> {
    let mut how = Observe::STATUS;
    for f in fields {
        match f.as_str() {
            "state.network" => how.network = true,
            "state.network.counters" => {
                how.network = true;
                how.network_counters = true;
            }
            "state.cpu" | "state.memory" | "state.processes" => how.counters = true,
            "state.disk" => {}
            other => {
                return Err(crate::error::Failure::invalid(format!(
                    "Invalid field {other:?} in parameter \"recursion\": expected state.network, state.network.counters, state.disk, state.cpu, state.memory or state.processes"
                )));
            }
        }
    }
    Ok(how)
}

/// Every instance with its profiles, as a list reads them (kept by the database handle
/// until it changes).
struct Listing(Vec<(InstanceRecord, Vec<ProfileRecord>)>);

impl crate::db::Kept for Listing {
    fn read(c: &rusqlite::Connection) -> std::result::Result<Listing, DbError> {
        let recs = crate::db::instances::list(c)?;
        let profiles = crate::db::profiles::list(c)?;
        let projects = crate::db::projects::list(c)?;
        Ok(Listing(with_profiles(recs, &profiles, &projects)))
    }
}

/// Every instance's snapshots, by instance, as a list with states reads them.
#[derive(Default)]
struct Snapshots(BTreeMap<String, Vec<SnapshotRecord>>);

impl crate::db::Kept for Snapshots {
    fn read(c: &rusqlite::Connection) -> std::result::Result<Snapshots, DbError> {
        Ok(Snapshots(crate::db::snapshots::all(c)?))
    }
}

/// One instance of a list, as the workers see it: what [`render`] makes of it, without
/// the copies (a list of thousands that shows a few keys makes none).
#[derive(Debug)]
pub struct Listed<'a> {
    pub rec: &'a InstanceRecord,
    /// Its profiles, resolved.
    pub profiles: &'a [ProfileRecord],
    pub status: StatusCode,
    /// A stopped instance holding a saved state.
    pub stateful: bool,
    /// Its state, when asked for.
    pub state: Option<InstanceState>,
    /// Its snapshots, when the state is asked for.
    pub snapshots: &'a [SnapshotRecord],
}

impl Listed<'_> {
    /// The instance as LXD shows it.
    pub fn view(&self) -> Instance {
        render_as(self.rec, self.profiles, self.status, self.stateful)
    }
}

/// Every instance of `project` (of every project: `None`), observed and turned into `T`
/// by `each` (which may drop one), by workers spread over the host's CPUs: a list of
/// hundreds costs no round trip per instance on one thread. With `state`, each comes with
/// its state (what `state` asks for beyond the status) and its snapshots.
pub async fn list<T, F>(
    cx: &std::sync::Arc<Ctx>,
    project: Option<String>,
    state: Option<Observe>,
    each: F,
) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(Listed<'_>) -> Option<T> + Send + Sync + 'static,
{
    // The records with their profiles, and the snapshots, as kept since the database
    // last changed; one blocking task for every container's state.
    let full = state.is_some();
    let listing = cx.db.read_kept::<Listing, crate::error::Failure>().await?;
    let snapshots = if full {
        cx.db
            .read_kept::<Snapshots, crate::error::Failure>()
            .await?
    } else {
        std::sync::Arc::new(Snapshots::default())
    };
    let cx = cx.clone();
    let out = tokio::task::spawn_blocking(move || {
        let work: Vec<&(InstanceRecord, Vec<ProfileRecord>)> = listing
            .0
            .iter()
            .filter(|(r, _)| project.as_ref().is_none_or(|p| r.project == *p))
            .collect();
        let one = |rec: &InstanceRecord, profiles: &[ProfileRecord]| -> Option<T> {
            let how = state.map_or(Observe::STATUS, |o| Observe {
                own_thread: true,
                ..o
            });
            let mut state = cx.driver.observe(&rec.name, how);
            super::nic::fill_host_names(&mut state, &rec.config);
            with_stop_reason(&mut state, rec);
            let status = StatusCode::from_code(state.status_code).unwrap_or(StatusCode::Error);
            each(Listed {
                rec,
                profiles,
                status,
                stateful: is_stateful(&cx, rec, status),
                snapshots: snapshots.0.get(&rec.name).map_or(&[], Vec::as_slice),
                state: full.then_some(state),
            })
        };
        // Workers take the next instance as they go (a thread that waits on the kernel
        // holds no share of the list back); twice the CPUs, as most of the time is in
        // system calls. The order of the records is kept.
        let threads = std::thread::available_parallelism()
            .map(|n| n.get() * 2)
            .unwrap_or(2)
            .min(work.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((rec, profiles)) = work.get(i).copied() else {
                                break mine;
                            };
                            if let Some(t) = one(rec, profiles) {
                                mine.push((i, t));
                            }
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        done.sort_unstable_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, t)| t).collect::<Vec<T>>()
    })
    .await?;
    Ok(out)
}
