//! Instances between hosts: both ends of LXD's migration protocol, stateless, with rsync.
//!
//! ```text
//!   source                                     target
//!   control: MigrationHeader (offer) ────────►
//!            ◄──────── MigrationHeader (answer: rsync features, index header version)
//!   fs:      index header JSON, barrier ─────►
//!            ◄──────── InfoResponse JSON, barrier
//!            rsync of each snapshot, oldest first, then of the volume: the sender's bytes
//!            ─────►, the receiver's ◄─────, each direction ended by a barrier
//!   control: ◄──────── MigrationControl {success}        (a failure: either way)
//! ```
//!
//! The API hands this module two [`Conn`]s (`control`, `fs`): frames in and out, whichever
//! side dialled. A barrier is an empty text frame. The source runs rsync as a client whose
//! remote shell is `berthd forknetcat @SOCKET` (`berth_host::netcat`), joined here to the
//! `fs` frames; the target runs LXD's `rsync --server` line with its stdio joined to them.
//! Volumes are stored with the container's ids as it sees them (berth maps them at start),
//! so berth offers an empty id map; files from a source that stores them shifted (LXD,
//! Incus: the offer's map) are shifted back on arrival. The target records the instance
//! before anything arrives and takes everything back if the transfer fails.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_api::migration::{
    BackupConfig, Config as KeyValue, CriuType, Device as ProtoDevice, IdMapType, InfoResponse,
    MigrationControl, MigrationFsType, MigrationHeader, MigrationInfo, RsyncFeatures, Snapshot,
    VolumeInfo, VolumeSnapshotInfo, architecture_id, architecture_name,
};
use berth_storage::VolumeType;
use tokio::sync::mpsc;

use super::create::{Creation, make_runtime, undo_volume};
use super::{find, pool_of};
use crate::ctx::Ctx;
use crate::error::{Failure, Result};
use crate::model::names::api_name;
use crate::model::records::{InstanceRecord, SnapshotRecord};
use crate::revert::Reverter;
use rsync::{rsync_receive, rsync_send};

mod rsync;

/// One websocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Binary(Vec<u8>),
    Text(String),
}

/// A migration websocket as this module sees it: frames out and in. Dropping `tx` closes
/// it; `rx` ends when the peer closed it.
#[derive(Debug)]
pub struct Conn {
    pub tx: mpsc::Sender<Frame>,
    pub rx: mpsc::Receiver<Frame>,
}

/// The websockets of a stateless migration.
#[derive(Debug)]
pub struct Conns {
    pub control: Conn,
    pub fs: Conn,
}

/// Marks an instance still arriving: one found at start (berthd died meanwhile) is
/// removed, so no half-made instance outlives a failed migration.
pub const INCOMING: &str = "volatile.incoming";

/// The names of the websockets a stateless migration uses.
pub const STREAMS: &[&str] = &["control", "fs"];

fn gone(what: &str) -> Failure {
    Failure::unavailable(format!("The migration peer closed the {what} stream"))
}

/// How long a step of the protocol may wait for the peer (an answer, an index header).
const STEP: Duration = Duration::from_secs(60);

/// How long the source waits for the target to finish once everything is sent (its
/// snapshots made, ids shifted).
const FINISH: Duration = Duration::from_secs(600);

/// How long a stream may stay silent before the peer counts as gone.
pub(super) const IDLE: Duration = Duration::from_secs(300);

pub(super) fn silent(limit: Duration) -> Failure {
    Failure::unavailable(format!(
        "The migration peer said nothing for {} s",
        limit.as_secs()
    ))
}

impl Conn {
    async fn send(&self, f: Frame) -> Result<()> {
        self.tx.send(f).await.map_err(|_| gone("outgoing"))
    }

    async fn send_proto(&self, m: &impl prost::Message) -> Result<()> {
        self.send(Frame::Binary(m.encode_to_vec())).await
    }

    /// The next protobuf message (one binary frame), if it comes within `limit`.
    async fn recv_proto_within<M: prost::Message + Default>(
        &mut self,
        limit: Duration,
    ) -> Result<M> {
        let next = tokio::time::timeout(limit, self.rx.recv())
            .await
            .map_err(|_| silent(limit))?;
        match next {
            Some(Frame::Binary(b)) => M::decode(&b[..]).map_err(|e| {
                Failure::invalid(format!("Invalid migration message from the peer: {e}"))
            }),
            Some(Frame::Text(_)) => Err(Failure::invalid(
                "Invalid migration message from the peer: only binary messages allowed",
            )),
            None => Err(gone("control")),
        }
    }

    /// Everything up to the next barrier, each frame within `wait`.
    async fn recv_until_barrier(&mut self, limit: usize, wait: Duration) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let next = tokio::time::timeout(wait, self.rx.recv())
                .await
                .map_err(|_| silent(wait))?;
            match next {
                Some(Frame::Binary(b)) => {
                    out.extend_from_slice(&b);
                    if out.len() > limit {
                        return Err(Failure::invalid("The migration index header is too large"));
                    }
                }
                Some(Frame::Text(_)) => return Ok(out),
                None => return Err(gone("fs")),
            }
        }
    }
}

/// rsync features both sides use: the peer's (when it speaks of `bidirectional`, else
/// LXD's old three) and ours.
fn negotiate(peer: Option<&RsyncFeatures>, ours: &RsyncFeatures) -> RsyncFeatures {
    let theirs = peer.cloned().unwrap_or_default();
    let legacy = theirs.bidirectional != Some(true);
    let both =
        |t: Option<bool>, o: Option<bool>| Some((legacy || t == Some(true)) && o == Some(true));
    RsyncFeatures {
        xattrs: both(theirs.xattrs, ours.xattrs),
        delete: both(theirs.delete, ours.delete),
        compress: both(theirs.compress, ours.compress),
        bidirectional: Some(true),
    }
}

/// What berth offers: extended attributes and deletion; no compression (hosts that move
/// containers between them are close, and compressing costs more than it saves there).
fn our_features() -> RsyncFeatures {
    RsyncFeatures {
        xattrs: Some(true),
        delete: Some(true),
        compress: Some(false),
        bidirectional: Some(true),
    }
}

fn pairs(map: &BTreeMap<String, String>) -> Vec<KeyValue> {
    map.iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

fn unix_time(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts).map_or(-62_135_596_800, |t| t.timestamp())
}

fn snapshot_offer(s: &SnapshotRecord) -> Snapshot {
    Snapshot {
        name: s.name.clone(),
        local_config: pairs(&s.config),
        profiles: s.profiles.clone(),
        ephemeral: s.ephemeral,
        local_devices: s
            .devices
            .iter()
            .map(|(name, d)| ProtoDevice {
                name: name.clone(),
                config: pairs(d),
            })
            .collect(),
        architecture: architecture_id(&s.architecture),
        stateful: false,
        creation_date: Some(unix_time(&s.created_at)),
        last_used_date: Some(unix_time(crate::time::NEVER)),
        expiry_date: Some(unix_time(&s.expires_at)),
    }
}

/// What the source may send: refused before the operation starts.
pub async fn check_send(cx: &Ctx, name: &str, live: bool) -> Result<()> {
    find(cx, name).await?;
    if live && !super::query::is_stopped(cx, name).await {
        return Err(Failure::invalid(
            "Live migration of a running container is not supported yet: stop it first, or copy it with --stateless",
        ));
    }
    Ok(())
}

/// The source's side: sends instance `name` (with its snapshots unless `instance_only`).
/// A running instance is frozen while its files go.
pub async fn send(cx: &Arc<Ctx>, name: &str, instance_only: bool, mut conns: Conns) -> Result<()> {
    let result = send_inner(cx, name, instance_only, &mut conns).await;
    match &result {
        Err(e) if e.kind() != crate::error::Kind::Unavailable => {
            let _ = conns
                .control
                .send_proto(&MigrationControl {
                    success: false,
                    message: Some(format!("Failed migration on source: {}", e.message())),
                })
                .await;
        }
        _ => {}
    }
    result
}

async fn send_inner(
    cx: &Arc<Ctx>,
    name: &str,
    instance_only: bool,
    conns: &mut Conns,
) -> Result<()> {
    let _lock = cx.locks.instance(name).lock_owned().await;
    let rec = find(cx, name).await?;
    let pool = pool_of(cx, &rec).await?;
    let n = name.to_owned();
    let snapshots = if instance_only {
        vec![]
    } else {
        cx.db
            .read(move |c| crate::db::snapshots::list(c, &n))
            .await?
    };
    let offer = MigrationHeader {
        fs: MigrationFsType::Rsync as i32,
        criu: None,
        idmap: vec![],
        snapshot_names: snapshots.iter().map(|s| s.name.clone()).collect(),
        snapshots: snapshots.iter().map(snapshot_offer).collect(),
        predump: Some(false),
        rsync_features: Some(our_features()),
        index_header_version: Some(berth_api::migration::INDEX_HEADER_VERSION),
        ..Default::default()
    };
    conns.control.send_proto(&offer).await?;
    let answer: MigrationHeader = conns.control.recv_proto_within(STEP).await?;
    if answer.fs != MigrationFsType::Rsync as i32 {
        return Err(Failure::invalid(format!(
            "The target asks for volume transport {}; berth sends rsync only",
            answer.fs
        )));
    }
    let features = negotiate(answer.rsync_features.as_ref(), &our_features());
    let mut sent = snapshots.clone();
    if answer.refresh == Some(true) {
        sent.retain(|s| answer.snapshot_names.contains(&s.name));
    }
    if answer.index_header_version.unwrap_or(0) >= 1 {
        let info = index_header(&rec, &sent);
        let json = serde_json::to_vec(&info)
            .map_err(|e| Failure::failed("Failed to encode the index header", e))?;
        conns.fs.send(Frame::Binary(json)).await?;
        conns.fs.send(Frame::Text(String::new())).await?;
        let reply = conns.fs.recv_until_barrier(1 << 20, STEP).await?;
        let reply: InfoResponse = serde_json::from_slice(&reply)
            .map_err(|e| Failure::invalid(format!("Invalid index header reply: {e}")))?;
        if reply.status_code != 200 {
            return Err(Failure::invalid(format!(
                "The target refused the migration: {}",
                reply.error
            )));
        }
    }
    let t = VolumeType::Container;
    for s in &sent {
        rsync_send(
            &pool.snapshot_path(t, name, &s.name),
            &features,
            &mut conns.fs,
        )
        .await?;
    }
    let running = !super::query::is_stopped(cx, name).await;
    let freeze = running && !cx.driver.is_frozen(name);
    if freeze {
        cx.driver
            .set_frozen(name, true)
            .map_err(|e| e.about("Failed to freeze the instance for its migration"))?;
    }
    // Frozen until the target has it all: a move stops the source right after, so
    // nothing written meanwhile may be lost.
    let finished = async {
        rsync_send(&pool.volume_path(t, name), &features, &mut conns.fs).await?;
        conns
            .control
            .recv_proto_within::<MigrationControl>(FINISH)
            .await
    }
    .await;
    if freeze && let Err(e) = cx.driver.set_frozen(name, false) {
        tracing::error!(instance = %name, error = %e, "Failed to thaw after the migration");
    }
    let end = finished?;
    if !end.success {
        return Err(Failure::invalid(format!(
            "The target failed: {}",
            end.message.unwrap_or_default()
        )));
    }
    tracing::info!(instance = %name, snapshots = sent.len(), "Instance sent");
    Ok(())
}

/// The index header: the instance, its snapshots and their volumes, as LXD describes
/// them (the target uses the volumes' configuration and descriptions).
fn index_header(rec: &InstanceRecord, snapshots: &[SnapshotRecord]) -> MigrationInfo {
    let short = api_name(&rec.name).to_owned();
    let container = serde_json::json!({
        "name": short,
        "architecture": rec.architecture,
        "config": rec.config,
        "devices": rec.devices,
        "ephemeral": rec.ephemeral,
        "profiles": rec.profiles,
        "stateful": false,
        "description": rec.description,
        "created_at": rec.created_at,
        "type": "container",
        "project": rec.project,
    });
    MigrationInfo {
        config: Some(BackupConfig {
            container: Some(container),
            snapshots: Some(
                snapshots
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "name": s.name,
                            "architecture": s.architecture,
                            "config": s.config,
                            "devices": s.devices,
                            "ephemeral": s.ephemeral,
                            "profiles": s.profiles,
                            "stateful": false,
                            "created_at": s.created_at,
                            "expires_at": s.expires_at,
                        })
                    })
                    .collect(),
            ),
            pool: None,
            profiles: Some(vec![]),
            volume: Some(VolumeInfo {
                name: short,
                kind: "container".to_owned(),
                content_type: "filesystem".to_owned(),
                project: rec.project.clone(),
                created_at: rec.created_at.clone(),
                ..Default::default()
            }),
            volume_snapshots: Some(
                snapshots
                    .iter()
                    .map(|s| VolumeSnapshotInfo {
                        name: s.name.clone(),
                        description: s.description.clone(),
                        content_type: "filesystem".to_owned(),
                        created_at: s.created_at.clone(),
                        expires_at: Some(s.expires_at.clone()),
                        ..Default::default()
                    })
                    .collect(),
            ),
        }),
    }
}

/// The target's side: once `connect` gives the streams, builds the instance `creation`
/// recorded from what the source sends; takes everything back when anything fails.
pub async fn receive(
    cx: &Arc<Ctx>,
    creation: Creation,
    connect: impl std::future::Future<Output = Result<Conns>>,
) -> Result<()> {
    let (rec, pool, start, _guard) = creation.into_parts();
    let mut undo = Reverter::new();
    let (db, n) = (cx.db.clone(), rec.name.clone());
    undo.add("delete the instance's rows", move || {
        Ok(db.write_sync(|tx| crate::db::instances::delete(tx, &n))?)
    });
    let mut conns = connect.await?;
    let result = receive_inner(cx, &rec, &pool, &mut conns, &mut undo).await;
    match result {
        Ok(()) => {
            let n = rec.name.clone();
            cx.db
                .write(move |tx| {
                    if let Some(mut r) = crate::db::instances::get(tx, &n)? {
                        r.config.remove(INCOMING);
                        crate::db::instances::set_config(tx, &n, &r.config)?;
                    }
                    Ok::<_, Failure>(())
                })
                .await?;
            conns
                .control
                .send_proto(&MigrationControl {
                    success: true,
                    message: Some(String::new()),
                })
                .await?;
            undo.success();
            cx.events.lifecycle(
                "instance-created",
                &crate::model::names::instance_url(&rec.name),
                None,
            );
            tracing::info!(instance = %rec.name, "Instance received");
            // An Incus source closes the control stream once it has read the success.
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while conns.control.rx.recv().await.is_some() {}
            })
            .await;
            if start {
                super::state::start(cx, &rec, false).await?;
                super::state::set_power(cx, &rec.name, "RUNNING").await;
            }
            Ok(())
        }
        Err(e) => {
            if e.kind() != crate::error::Kind::Unavailable {
                let _ = conns
                    .control
                    .send_proto(&MigrationControl {
                        success: false,
                        message: Some(format!("Failed migration on target: {}", e.message())),
                    })
                    .await;
            }
            Err(e)
        }
    }
}

async fn receive_inner(
    cx: &Arc<Ctx>,
    rec: &InstanceRecord,
    pool: &Arc<dyn berth_storage::Driver>,
    conns: &mut Conns,
    undo: &mut Reverter,
) -> Result<()> {
    let offer: MigrationHeader = conns.control.recv_proto_within(STEP).await?;
    if offer.criu == Some(CriuType::CriuRsync as i32) {
        return Err(Failure::invalid(
            "Live migration is not supported yet: move the container stopped, or with --stateless",
        ));
    }
    if offer.snapshot_names.len() != offer.snapshots.len() {
        return Err(Failure::invalid(
            "The offer's snapshot names and snapshots differ",
        ));
    }
    let features = negotiate(offer.rsync_features.as_ref(), &our_features());
    let index = offer.index_header_version.unwrap_or(0).min(1);
    let answer = MigrationHeader {
        fs: MigrationFsType::Rsync as i32,
        criu: offer.criu.filter(|c| *c == CriuType::None as i32),
        snapshot_names: offer.snapshot_names.clone(),
        snapshots: offer.snapshots.clone(),
        predump: offer.predump,
        rsync_features: Some(features.clone()),
        refresh: Some(false),
        index_header_version: Some(index),
        ..Default::default()
    };
    conns.control.send_proto(&answer).await?;
    let mut volume_info: BTreeMap<String, VolumeSnapshotInfo> = BTreeMap::new();
    if index >= 1 {
        let raw = conns.fs.recv_until_barrier(64 << 20, STEP).await?;
        let info: MigrationInfo = serde_json::from_slice(&raw)
            .map_err(|e| Failure::invalid(format!("Invalid migration index header: {e}")))?;
        for v in info
            .config
            .and_then(|c| c.volume_snapshots)
            .unwrap_or_default()
        {
            volume_info.insert(v.name.clone(), v);
        }
        let reply = InfoResponse {
            status_code: 200,
            error: String::new(),
            refresh: Some(false),
        };
        let json = serde_json::to_vec(&reply)
            .map_err(|e| Failure::failed("Failed to encode the index header reply", e))?;
        conns.fs.send(Frame::Binary(json)).await?;
        conns.fs.send(Frame::Text(String::new())).await?;
    }

    make_runtime(cx, rec, undo)?;
    let t = VolumeType::Container;
    let vol = pool.create_volume(t, &rec.name)?;
    undo_volume(rec, pool, undo);
    let snapshots: Vec<SnapshotRecord> = offer
        .snapshots
        .iter()
        .map(|s| snapshot_record(rec, s, volume_info.get(&s.name)))
        .collect::<Result<_>>()?;
    let rows = snapshots.clone();
    cx.db
        .write(move |tx| {
            for s in &rows {
                crate::db::snapshots::insert(tx, s)?;
            }
            Ok::<_, Failure>(())
        })
        .await?;
    for s in &snapshots {
        rsync_receive(&vol, &features, &mut conns.fs).await?;
        let (p, n, sn) = (pool.clone(), rec.name.clone(), s.name.clone());
        tokio::task::spawn_blocking(move || p.create_snapshot(t, &n, &sn)).await??;
    }
    rsync_receive(&vol, &features, &mut conns.fs).await?;
    // A running source sent its volume twice: while running, then frozen.
    if offer.criu == Some(CriuType::None as i32) {
        rsync_receive(&vol, &features, &mut conns.fs).await?;
    }
    let maps: Vec<IdMapType> = offer.idmap.clone();
    let (p, n, names) = (
        pool.clone(),
        rec.name.clone(),
        snapshots.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || {
        let mut dirs = vec![p.volume_path(t, &n)];
        dirs.extend(names.iter().map(|s| p.snapshot_path(t, &n, s)));
        for d in &dirs {
            // Saved states stay with the source.
            crate::lxc::checkpoint::strip_volume(d)?;
            if !maps.is_empty() {
                unshift(d, &maps)?;
            }
        }
        Ok::<_, Failure>(())
    })
    .await??;
    crate::image::volume_templates(rec, &vol, "copy")
}

fn snapshot_record(
    rec: &InstanceRecord,
    s: &Snapshot,
    volume: Option<&VolumeSnapshotInfo>,
) -> Result<SnapshotRecord> {
    crate::model::names::SnapshotName::parse(&s.name)?;
    let date = |d: Option<i64>| {
        d.filter(|d| *d > 0)
            .and_then(|d| chrono::DateTime::from_timestamp(d, 0))
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    let mut config: BTreeMap<String, String> = s
        .local_config
        .iter()
        .map(|c| (c.key.clone(), c.value.clone()))
        .collect();
    config.retain(|k, _| {
        !k.starts_with("volatile.idmap") && !k.starts_with("volatile.last_state.idmap")
    });
    Ok(SnapshotRecord {
        instance: rec.name.clone(),
        name: s.name.clone(),
        description: volume.map(|v| v.description.clone()).unwrap_or_default(),
        architecture: match architecture_name(s.architecture) {
            "" => rec.architecture.clone(),
            a => a.to_owned(),
        },
        ephemeral: s.ephemeral,
        stateful: false,
        profiles: s.profiles.clone(),
        config,
        devices: s
            .local_devices
            .iter()
            .map(|d| {
                (
                    d.name.clone(),
                    d.config
                        .iter()
                        .map(|c| (c.key.clone(), c.value.clone()))
                        .collect(),
                )
            })
            .collect(),
        created_at: date(s.creation_date).unwrap_or_else(crate::time::now_rfc3339),
        expires_at: date(s.expiry_date).unwrap_or_else(|| crate::time::NEVER.to_owned()),
    })
}

/// Shifts the owners of every file under `dir` back from the source's map (host ids) to
/// the container's own ids, the way berth stores volumes.
fn unshift(dir: &Path, maps: &[IdMapType]) -> Result<()> {
    let back = |id: u32, uid: bool| -> u32 {
        for m in maps {
            let applies = if uid { m.isuid } else { m.isgid };
            let (host, ns, range) = (m.hostid as i64, m.nsid as i64, m.maprange as i64);
            let id = i64::from(id);
            if applies && id >= host && id < host + range {
                return u32::try_from(id - host + ns).unwrap_or(u32::MAX);
            }
        }
        id
    };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| Failure::failed(format!("Failed to read {}", d.display()), e))?;
        for e in entries.flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p)
                .map_err(|err| Failure::failed(format!("Failed to read {}", p.display()), err))?;
            use std::os::unix::fs::MetadataExt as _;
            let (uid, gid) = (back(meta.uid(), true), back(meta.gid(), false));
            if (uid, gid) != (meta.uid(), meta.gid()) {
                std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).map_err(|err| {
                    Failure::failed(format!("Failed to shift {}", p.display()), err)
                })?;
                // chown clears set-id bits; give them back.
                if !meta.file_type().is_symlink() && meta.mode() & 0o6000 != 0 {
                    use std::os::unix::fs::PermissionsExt as _;
                    let _ = std::fs::set_permissions(
                        &p,
                        std::fs::Permissions::from_mode(meta.mode() & 0o7777),
                    );
                }
            }
            if meta.is_dir() {
                stack.push(p);
            }
        }
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| Failure::failed("Failed to read the volume", e))?;
    use std::os::unix::fs::MetadataExt as _;
    let _ = std::os::unix::fs::lchown(
        dir,
        Some(back(meta.uid(), true)),
        Some(back(meta.gid(), false)),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::rsync::feature_args;
    use super::*;

    #[test]
    fn features_meet() {
        let lxd_default = RsyncFeatures {
            xattrs: Some(true),
            delete: Some(true),
            compress: Some(true),
            bidirectional: Some(true),
        };
        let f = negotiate(Some(&lxd_default), &our_features());
        assert_eq!(
            feature_args(&f),
            ["--xattrs", "--filter=-x security.selinux", "--delete"]
        );
        // A peer that never heard of `bidirectional` has LXD's old three.
        let f = negotiate(None, &our_features());
        assert_eq!(f.xattrs, Some(true));
        assert_eq!(f.bidirectional, Some(true));
    }

    #[test]
    fn unshifts_owners() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        std::os::unix::fs::lchown(&f, Some(1_000_005), Some(1_000_007)).unwrap();
        let maps = [
            IdMapType {
                isuid: true,
                isgid: false,
                hostid: 1_000_000,
                nsid: 0,
                maprange: 65536,
            },
            IdMapType {
                isuid: false,
                isgid: true,
                hostid: 1_000_000,
                nsid: 0,
                maprange: 65536,
            },
        ];
        unshift(dir.path(), &maps).unwrap();
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!((m.uid(), m.gid()), (5, 7));
    }
}
