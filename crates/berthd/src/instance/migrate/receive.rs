//! The target's side of a migration: the instance recorded first (marked
//! [`INCOMING`]), then the offer answered, the index header read, snapshots and the
//! volume received by rsync; for a live migration the CRIU dump too, restored before the
//! target says it succeeded. Anything failing takes everything back.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_api::migration::{
    CriuType, IdMapType, InfoResponse, MigrationControl, MigrationFsType, MigrationHeader,
    MigrationInfo, Snapshot, VolumeSnapshotInfo, architecture_name,
};
use berth_storage::VolumeType;

use super::rsync::rsync_receive;
use super::{Conns, Frame, INCOMING, STEP, negotiate, our_features};
use crate::ctx::Ctx;
use crate::error::{Failure, Result};
use crate::instance::create::{Creation, make_runtime, undo_volume};
use crate::model::idmap::IdMap;
use crate::model::records::{InstanceRecord, SnapshotRecord};
use crate::revert::Reverter;

/// The target's side: once `connect` gives the streams, builds the instance `creation`
/// recorded from what the source sends; takes everything back when anything fails. A
/// live migration's instance runs (restored) before the source hears of success.
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
    let live = match result {
        Ok(live) => live,
        Err(e) if e.kind() == crate::error::Kind::Unavailable => {
            // The source went away: it says why first when it failed itself.
            return Err(source_failure(&mut conns).await.unwrap_or(e));
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
            return Err(e);
        }
    };
    let n = rec.name.clone();
    let cleared = cx
        .db
        .write(move |tx| {
            if let Some(mut r) = crate::db::instances::get(tx, &n)? {
                r.config.remove(INCOMING);
                crate::db::instances::set_config(tx, &n, &r.config)?;
            }
            Ok::<_, Failure>(())
        })
        .await;
    let told = match cleared {
        Ok(()) => {
            conns
                .control
                .send_proto(&MigrationControl {
                    success: true,
                    message: Some(String::new()),
                })
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = told {
        if live {
            // The source never hears of it and resumes its own: this one must go.
            stop_restored(cx, &rec.name).await;
        }
        return Err(e);
    }
    undo.success();
    crate::instance::backup::save_file(cx, &rec.name).await;
    let url = crate::model::names::instance_url(&rec.name);
    cx.events.lifecycle("instance-created", &url, None);
    tracing::info!(instance = %rec.name, live, "Instance received");
    if live {
        crate::instance::state::set_power(cx, &rec.name, "RUNNING").await;
        cx.events.lifecycle("instance-started", &url, None);
    }
    // An Incus source closes the control stream once it has read the success. A source
    // that gave up meanwhile (it timed out, it resumed its own) says so: then this one goes.
    let gave_up = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(frame) = conns.control.rx.recv().await {
            if let Frame::Binary(b) = frame
                && <MigrationControl as prost::Message>::decode(&b[..]).is_ok_and(|m| !m.success)
            {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if live && gave_up {
        stop_restored(cx, &rec.name).await;
        crate::instance::state::set_power(cx, &rec.name, "STOPPED").await;
        return Err(Failure::unavailable(
            "The source gave up the migration after the restore: the copy here is stopped",
        ));
    }
    if start && !live {
        crate::instance::state::start(cx, &rec, false).await?;
        crate::instance::state::set_power(cx, &rec.name, "RUNNING").await;
    }
    Ok(())
}

/// Stops a container a live migration restored here, whose source runs it on.
async fn stop_restored(cx: &Arc<Ctx>, name: &str) {
    let _ = cx.driver.stop(name, 0, true).await;
    let n = name.to_owned();
    let _ = crate::instance::blocking(cx, move |d| d.release(&n)).await;
}

/// What the source said of its own failure, if it says so within a moment.
async fn source_failure(conns: &mut Conns) -> Option<Failure> {
    let wait = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(frame) = conns.control.rx.recv().await {
            if let Frame::Binary(b) = frame
                && let Ok(m) = <MigrationControl as prost::Message>::decode(&b[..])
                && !m.success
            {
                return Some(Failure::invalid(m.message.unwrap_or_default()));
            }
        }
        None
    });
    wait.await.ok().flatten()
}

/// Checks the source's offer against the streams asked for; whether it is live.
pub(super) fn check_offer(offer: &MigrationHeader, conns: &Conns) -> Result<bool> {
    let live = offer.criu == Some(CriuType::CriuRsync as i32);
    if live && conns.criu.is_none() {
        return Err(Failure::invalid(
            "The source offers a live migration, but the request named no criu stream",
        ));
    }
    if !live && conns.criu.is_some() {
        return Err(Failure::invalid(
            "The request asked for a live migration, but the source offers none",
        ));
    }
    if offer.snapshot_names.len() != offer.snapshots.len() {
        return Err(Failure::invalid(
            "The offer's snapshot names and snapshots differ",
        ));
    }
    Ok(live)
}

/// Reads the index header and answers it: `check` (given the source instance's config)
/// decides whether the migration goes on. Returns the snapshots' volume records.
pub(super) async fn index_header<F, Fut>(
    conns: &mut Conns,
    refresh: bool,
    check: F,
) -> Result<BTreeMap<String, VolumeSnapshotInfo>>
where
    F: FnOnce(serde_json::Value) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let raw = conns.fs.recv_until_barrier(64 << 20, STEP).await?;
    let info: MigrationInfo = serde_json::from_slice(&raw)
        .map_err(|e| Failure::invalid(format!("Invalid migration index header: {e}")))?;
    let config = info.config.unwrap_or_default();
    let source_config = config
        .container
        .as_ref()
        .map_or(serde_json::Value::Null, |c| c["config"].clone());
    let volume_info = config
        .volume_snapshots
        .unwrap_or_default()
        .into_iter()
        .map(|v| (v.name.clone(), v))
        .collect();
    let checked = check(source_config).await;
    let reply = InfoResponse {
        status_code: if checked.is_ok() { 200 } else { 400 },
        error: checked
            .as_ref()
            .err()
            .map(|e| e.message().to_owned())
            .unwrap_or_default(),
        refresh: Some(refresh),
    };
    let json = serde_json::to_vec(&reply)
        .map_err(|e| Failure::failed("Failed to encode the index header reply", e))?;
    conns.fs.send(Frame::Binary(json)).await?;
    conns.fs.send(Frame::Text(String::new())).await?;
    checked.map(|()| volume_info)
}

/// Receives everything; whether the instance came live (and runs now).
async fn receive_inner(
    cx: &Arc<Ctx>,
    rec: &InstanceRecord,
    pool: &Arc<dyn berth_storage::Driver>,
    conns: &mut Conns,
    undo: &mut Reverter,
) -> Result<bool> {
    let offer: MigrationHeader = conns.control.recv_proto_within(STEP).await?;
    let live = check_offer(&offer, conns)?;
    let features = negotiate(offer.rsync_features.as_ref(), &our_features());
    let index = offer.index_header_version.unwrap_or(0).min(1);
    if live && index < 1 {
        return Err(Failure::invalid(
            "A live migration needs the source's index header (LXD 4.x and older send none)",
        ));
    }
    let answer = MigrationHeader {
        fs: MigrationFsType::Rsync as i32,
        criu: if live {
            Some(CriuType::CriuRsync as i32)
        } else {
            offer.criu.filter(|c| *c == CriuType::None as i32)
        },
        snapshot_names: offer.snapshot_names.clone(),
        snapshots: offer.snapshots.clone(),
        predump: Some(false),
        rsync_features: Some(features.clone()),
        refresh: Some(false),
        index_header_version: Some(index),
        ..Default::default()
    };
    conns.control.send_proto(&answer).await?;
    let volume_info = if index >= 1 {
        // A live instance must run with the ids it ran with: refused here, before any
        // file moves, when this host cannot give them.
        index_header(conns, false, |source_config| async move {
            if live {
                adopt_idmap(cx, rec, &source_config).await
            } else {
                Ok(())
            }
        })
        .await?
    } else {
        BTreeMap::new()
    };

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
    if live {
        // The dump, then the volume once more, as it was when the dump was made.
        let work = crate::lxc::handoff::work_dir(cx.driver.lxcpath(), &rec.name);
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir(&work)
            .map_err(|e| Failure::failed("Failed to make the migration's directory", e))?;
        if let Some(criu) = conns.criu.as_mut() {
            rsync_receive(&work, &features, criu).await?;
        }
        rsync_receive(&vol, &features, &mut conns.fs).await?;
    } else if offer.criu == Some(CriuType::None as i32) {
        // A running source sent its volume twice: while running, then frozen.
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
    if !live {
        crate::image::volume_templates(rec, &vol, "copy")?;
        return Ok(false);
    }
    // The running system's files are left as they are; its processes come back.
    let (lxcpath, n) = (cx.driver.lxcpath().to_owned(), rec.name.clone());
    tokio::task::spawn_blocking(move || crate::lxc::handoff::adopt(&lxcpath, &n)).await??;
    let now = crate::instance::find(cx, &rec.name).await?;
    crate::instance::state::start(cx, &now, true).await?;
    Ok(true)
}

/// Gives instance `rec` the id map its source runs it with (`volatile.idmap.current` in
/// the source's `config`), which CRIU restores as it was.
async fn adopt_idmap(cx: &Ctx, rec: &InstanceRecord, config: &serde_json::Value) -> Result<()> {
    let json = config["volatile.idmap.current"].as_str().unwrap_or("[]");
    let source = IdMap::from_json(json)
        .ok_or_else(|| Failure::invalid("The source's volatile.idmap.current is not an id map"))?;
    let (n, ids) = (rec.name.clone(), cx.ids);
    cx.db
        .write(move |tx| {
            let mut r = crate::db::instances::get(tx, &n)?
                .ok_or_else(|| Failure::not_found("Instance not found"))?;
            let own = IdMap::from_volatile(&r.config).flatten();
            if source.is_none() != own.is_none() {
                return Err(Failure::invalid(
                    "The instance is privileged on one side only: set security.privileged alike, or move it with --stateless",
                ));
            }
            let others = crate::db::instances::idmaps(tx, &n)?;
            let taken = IdMap::taken_by(others.iter(), ids);
            let map = crate::model::idmap::adopt(source, ids, &taken)?;
            IdMap::store(map, &mut r.config);
            let json = r.config.get("volatile.idmap.next").cloned().unwrap_or_default();
            r.config
                .insert("volatile.idmap.current".to_owned(), json.clone());
            r.config.insert("volatile.last_state.idmap".to_owned(), json);
            crate::db::instances::set_config(tx, &n, &r.config)?;
            Ok(())
        })
        .await
}

pub(super) fn snapshot_record(
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
pub(in crate::instance) fn unshift(dir: &Path, maps: &[IdMapType]) -> Result<()> {
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
