//! The source's side of a migration: the offer, the index header, the volume and its
//! snapshots by rsync, and for a live migration the CRIU dump, held frozen until the
//! target answers (see [`crate::lxc::handoff`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::migration::{
    BackupConfig, Config as KeyValue, CriuType, Device as ProtoDevice, MigrationControl,
    MigrationFsType, MigrationHeader, MigrationInfo, Snapshot, VolumeInfo, VolumeSnapshotInfo,
    architecture_id,
};
use berth_storage::VolumeType;

use super::rsync::rsync_send;
use super::{Conns, FINISH, Frame, STEP, negotiate, our_features};
use crate::ctx::Ctx;
use crate::error::{Failure, Result};
use crate::instance::{find, pool_of};
use crate::model::names::api_name;
use crate::model::records::{InstanceRecord, SnapshotRecord};

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

/// What the source may send, refused before the operation starts; whether it goes live
/// (`live` asked, as LXD's clients do unless `--stateless`, and the instance running).
pub async fn check_send(cx: &Ctx, name: &str, live: bool) -> Result<bool> {
    let rec = find(cx, name).await?;
    if !live || crate::instance::query::is_stopped(cx, name).await {
        return Ok(false);
    }
    crate::instance::state::check_stateful(cx, &rec, "migrate").await?;
    Ok(true)
}

/// The source's side: sends instance `name` (with its snapshots unless `instance_only`).
/// A running instance is frozen while its volume goes for the last time; a live one
/// (`conns.criu` given) is dumped, and stops here once the target runs it.
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
    let live = conns.criu.is_some();
    if live && crate::instance::query::is_stopped(cx, name).await {
        return Err(Failure::invalid(
            "The instance stopped: it can no longer migrate live",
        ));
    }
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
        criu: live.then_some(CriuType::CriuRsync as i32),
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
    if live && answer.criu != Some(CriuType::CriuRsync as i32) {
        return Err(Failure::invalid(
            "The target cannot take a live migration (it answered without CRIU)",
        ));
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
        let reply: berth_api::migration::InfoResponse = serde_json::from_slice(&reply)
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
    let volume = pool.volume_path(t, name);
    let end = if live {
        // The volume goes while the instance runs, then once more while CRIU holds it.
        rsync_send(&volume, &features, &mut conns.fs).await?;
        send_live(cx, &rec, &volume, &features, conns).await?
    } else {
        send_frozen(cx, name, &volume, &features, conns).await?
    };
    if !end.success {
        return Err(Failure::invalid(format!(
            "The target failed: {}",
            end.message.unwrap_or_default()
        )));
    }
    tracing::info!(instance = %name, snapshots = sent.len(), live, "Instance sent");
    Ok(())
}

/// The volume's last pass, then the target's answer.
async fn last_sync(
    volume: &std::path::Path,
    features: &berth_api::migration::RsyncFeatures,
    conns: &mut Conns,
) -> Result<MigrationControl> {
    rsync_send(volume, features, &mut conns.fs).await?;
    conns
        .control
        .recv_proto_within::<MigrationControl>(FINISH)
        .await
}

/// The volume of a stateless migration, the instance frozen meanwhile when it runs;
/// the target's answer.
async fn send_frozen(
    cx: &Arc<Ctx>,
    name: &str,
    volume: &std::path::Path,
    features: &berth_api::migration::RsyncFeatures,
    conns: &mut Conns,
) -> Result<MigrationControl> {
    let running = !crate::instance::query::is_stopped(cx, name).await;
    let freeze = running && !cx.driver.is_frozen(name);
    if freeze {
        cx.driver
            .set_frozen(name, true)
            .map_err(|e| e.about("Failed to freeze the instance for its migration"))?;
    }
    // Frozen until the target has it all: a move stops the source right after, so
    // nothing written meanwhile may be lost.
    let finished = last_sync(volume, features, conns).await;
    if freeze && let Err(e) = cx.driver.set_frozen(name, false) {
        tracing::error!(instance = %name, error = %e, "Failed to thaw after the migration");
    }
    finished
}

/// The live part: CRIU dumps and holds the processes; the dump goes over `criu`, the
/// volume over `fs` once more; the target's answer decides whether the processes end
/// here (it runs them now) or run on.
async fn send_live(
    cx: &Arc<Ctx>,
    rec: &InstanceRecord,
    volume: &std::path::Path,
    features: &berth_api::migration::RsyncFeatures,
    conns: &mut Conns,
) -> Result<MigrationControl> {
    let (dumped_tx, dumped_rx) = tokio::sync::oneshot::channel();
    let (verdict_tx, verdict_rx) = tokio::sync::oneshot::channel();
    let name = rec.name.as_str();
    let dump = cx.driver.migration_dump(name, dumped_tx, verdict_rx);
    tokio::pin!(dump);
    let work = tokio::select! {
        r = &mut dump => {
            r?;
            return Err(Failure::internal("The dump ended before it was sent"));
        }
        w = dumped_rx => w.map_err(|_| Failure::internal("The dump ended before it was sent"))?,
    };
    let criu = conns
        .criu
        .as_mut()
        .ok_or_else(|| Failure::internal("No criu stream"))?;
    let finished = match rsync_send(&work, features, criu).await {
        Ok(()) => last_sync(volume, features, conns).await,
        Err(e) => Err(e),
    };
    let moved = matches!(&finished, Ok(m) if m.success);
    let _ = verdict_tx.send(moved);
    let held = dump.await;
    let _ = std::fs::remove_dir_all(&work);
    if moved {
        // The target runs it: here it stopped, and stays so across restarts. If CRIU did
        // not hear so and let the processes run on, they are ended here.
        if let Err(e) = held {
            tracing::error!(instance = %rec.name, error = %e, "After the target took the instance over");
            if !crate::instance::query::is_stopped(cx, name).await {
                let _ = cx.driver.stop(name, 0, true).await;
            }
        }
        crate::instance::state::handed_over(cx, rec).await;
    } else if let Err(e) = held {
        tracing::error!(instance = %name, error = %e, "After a failed live migration");
    }
    finished
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
                    .map(crate::instance::backup::snapshot_json)
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
