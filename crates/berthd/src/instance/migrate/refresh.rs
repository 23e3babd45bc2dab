//! The target's side of a refresh (`lxc copy --refresh`, `berth copy --refresh`): an
//! instance the target holds already is brought up to date with its source, stopped. The
//! answer to the offer names the snapshots to send: those the target lacks, and those it
//! holds under the same name with another creation date (deleted first, as are those the
//! source no longer has); then they and the volume come by rsync over what is here, so
//! only what changed travels. A failure leaves the instance as far as it got, never
//! deleted.

use std::sync::Arc;

use berth_api::migration::{
    IdMapType, MigrationControl, MigrationFsType, MigrationHeader, Snapshot,
};
use berth_storage::VolumeType;

use super::receive::{check_offer, index_header, snapshot_record, unshift};
use super::rsync::rsync_receive;
use super::{Conns, STEP, negotiate, our_features};
use crate::ctx::Ctx;
use crate::error::{Failure, Result};
use crate::instance::{find, pool_of};
use crate::model::records::{InstanceRecord, SnapshotRecord};

/// Refuses a refresh of instance `name` (its host name) before anything starts: it must
/// be stopped.
pub async fn check_refresh(cx: &Ctx, name: &str) -> Result<()> {
    find(cx, name).await?;
    if !crate::instance::query::is_stopped(cx, name).await {
        return Err(Failure::invalid(
            "The instance runs: stop it before refreshing it",
        ));
    }
    Ok(())
}

/// Refreshes instance `name` from the source `connect` reaches; `instance_only` leaves
/// the snapshots here as they are (the source offers none).
pub async fn receive_refresh(
    cx: &Arc<Ctx>,
    name: &str,
    instance_only: bool,
    connect: impl std::future::Future<Output = Result<Conns>>,
) -> Result<()> {
    let _lock = cx.locks.instance(name).lock_owned().await;
    check_refresh(cx, name).await?;
    let rec = find(cx, name).await?;
    let mut conns = connect.await?;
    let result = refresh_inner(cx, &rec, instance_only, &mut conns).await;
    let end = MigrationControl {
        success: result.is_ok(),
        message: Some(match &result {
            Ok(()) => String::new(),
            Err(e) => format!("Failed migration on target: {}", e.message()),
        }),
    };
    if result
        .as_ref()
        .err()
        .is_none_or(|e| e.kind() != crate::error::Kind::Unavailable)
    {
        conns.control.send_proto(&end).await?;
    }
    result?;
    crate::instance::backup::save_file(cx, name).await;
    let url = crate::model::names::instance_url(name);
    cx.events.lifecycle("instance-updated", &url, None);
    tracing::info!(instance = %name, "Instance refreshed");
    Ok(())
}

/// The snapshots the source must send (in its order) and those to delete here first.
fn compare(offered: &[Snapshot], held: &[SnapshotRecord]) -> (Vec<Snapshot>, Vec<String>) {
    let created = |r: &SnapshotRecord| {
        chrono::DateTime::parse_from_rfc3339(&r.created_at)
            .map(|d| d.timestamp())
            .ok()
    };
    let mut send = Vec::new();
    let mut delete = Vec::new();
    for s in offered {
        match held.iter().find(|h| h.name == s.name) {
            Some(h) if created(h) == s.creation_date.filter(|d| *d > 0) => {}
            Some(h) => {
                delete.push(h.name.clone());
                send.push(s.clone());
            }
            None => send.push(s.clone()),
        }
    }
    for h in held {
        if !offered.iter().any(|s| s.name == h.name) {
            delete.push(h.name.clone());
        }
    }
    (send, delete)
}

async fn refresh_inner(
    cx: &Arc<Ctx>,
    rec: &InstanceRecord,
    instance_only: bool,
    conns: &mut Conns,
) -> Result<()> {
    let offer: MigrationHeader = conns.control.recv_proto_within(STEP).await?;
    if check_offer(&offer, conns)? {
        return Err(Failure::invalid(
            "A refresh updates a stopped instance: the source offers a live migration",
        ));
    }
    let pool = pool_of(cx, rec).await?;
    let features = negotiate(offer.rsync_features.as_ref(), &our_features());
    let index = offer.index_header_version.unwrap_or(0).min(1);
    let n = rec.name.clone();
    let held = cx
        .db
        .read(move |c| crate::db::snapshots::list(c, &n))
        .await?;
    let (send, delete) = if instance_only {
        (vec![], vec![])
    } else {
        compare(&offer.snapshots, &held)
    };
    // Every snapshot asked for is checked before anything here changes.
    let records: Vec<SnapshotRecord> = send
        .iter()
        .map(|s| snapshot_record(rec, s, None))
        .collect::<Result<_>>()?;
    let answer = MigrationHeader {
        fs: MigrationFsType::Rsync as i32,
        criu: offer.criu,
        snapshot_names: send.iter().map(|s| s.name.clone()).collect(),
        snapshots: send.clone(),
        predump: Some(false),
        rsync_features: Some(features.clone()),
        refresh: Some(true),
        index_header_version: Some(index),
        ..Default::default()
    };
    conns.control.send_proto(&answer).await?;
    let volume_info = if index >= 1 {
        index_header(conns, true, |_| async { Ok(()) }).await?
    } else {
        Default::default()
    };
    for snap in &delete {
        crate::instance::snapshot::remove(cx, pool.clone(), &rec.name, snap).await?;
    }
    let t = VolumeType::Container;
    let vol = pool.volume_path(t, &rec.name);
    let mut made = Vec::new();
    for (s, mut record) in send.iter().zip(records) {
        if let Some(v) = volume_info.get(&s.name) {
            record.description = v.description.clone();
        }
        rsync_receive(&vol, &features, &mut conns.fs).await?;
        let (p, n, sn) = (pool.clone(), rec.name.clone(), s.name.clone());
        tokio::task::spawn_blocking(move || p.create_snapshot(t, &n, &sn)).await??;
        cx.db
            .write(move |tx| crate::db::snapshots::insert(tx, &record))
            .await?;
        made.push(s.name.clone());
    }
    rsync_receive(&vol, &features, &mut conns.fs).await?;
    if offer.criu == Some(berth_api::migration::CriuType::None as i32) {
        // A running source sent its volume twice: while running, then frozen.
        rsync_receive(&vol, &features, &mut conns.fs).await?;
    }
    let maps: Vec<IdMapType> = offer.idmap.clone();
    let (p, n) = (pool.clone(), rec.name.clone());
    tokio::task::spawn_blocking(move || {
        let mut dirs = vec![p.volume_path(t, &n)];
        dirs.extend(made.iter().map(|s| p.snapshot_path(t, &n, s)));
        for d in &dirs {
            crate::lxc::checkpoint::strip_volume(d)?;
            if !maps.is_empty() {
                unshift(d, &maps)?;
            }
        }
        Ok::<_, Failure>(())
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(name: &str, created: &str) -> SnapshotRecord {
        SnapshotRecord {
            name: name.into(),
            created_at: created.into(),
            ..Default::default()
        }
    }

    fn offered(name: &str, created: i64) -> Snapshot {
        Snapshot {
            name: name.into(),
            creation_date: Some(created),
            ..Default::default()
        }
    }

    #[test]
    fn only_new_and_changed_snapshots_are_asked_for() {
        let here = [
            held("s1", "2026-12-01T00:00:00Z"),
            held("s2", "2026-12-02T00:00:00Z"),
            held("gone", "2026-12-02T00:00:00Z"),
        ];
        let there = [
            offered("s1", 1_796_083_200),
            offered("s2", 1_796_169_601),
            offered("s3", 1_796_169_602),
        ];
        let (send, delete) = compare(&there, &here);
        let names: Vec<&str> = send.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["s2", "s3"]);
        assert_eq!(delete, ["s2", "gone"]);
    }
}
