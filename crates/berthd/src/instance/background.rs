//! What runs besides requests, started by the daemon: the sweep before serving, the
//! autostart after, and for as long as berthd runs the snapshot scheduler and the watch on
//! containers dying at boot.

use std::sync::Arc;

use berth_api::instance::InstanceStatePut;

use super::query::is_stopped;
use super::state::set_power;
use super::{blocking, expanded};
use crate::ctx::Ctx;
use crate::lxc::checkpoint;
use crate::model::expand::flag;

/// Called when berthd starts, before it serves: instances whose container stopped while
/// no berthd ran are recorded as stopped and their host leftovers removed (cgroups, a
/// restore's root; the console keeper, unless a saved state needs it); instances still
/// being made (created, copied, imported or arriving by migration) are removed.
pub async fn sweep(cx: &Ctx) {
    let recs = match cx.db.read(crate::db::instances::list_readable).await {
        Ok(recs) => recs,
        Err(e) => {
            tracing::error!(error = %crate::error::chain(&e), "Instances not swept");
            return;
        }
    };
    for rec in recs {
        let lock = cx.locks.instance(&rec.name);
        let _guard = lock.lock().await;
        if rec.config.contains_key(super::migrate::INCOMING) {
            // A migration that berthd's end did not see through: a live one may have
            // restored the container already, which the source resumed meanwhile.
            if !is_stopped(cx, &rec.name).await {
                let _ = cx.driver.stop(&rec.name, 0, true).await;
                let name = rec.name.clone();
                let _ = blocking(cx, move |d| d.release(&name)).await;
            }
            match super::create::remove(cx, &rec).await {
                Ok(()) => {
                    tracing::warn!(instance = %rec.name, "Removed an instance whose making was cut short");
                }
                Err(e) => {
                    tracing::error!(instance = %rec.name, error = %e, "Failed to remove a half-made instance");
                }
            }
            continue;
        }
        if !is_stopped(cx, &rec.name).await {
            continue;
        }
        let has_state = checkpoint::has_state(cx.driver.lxcpath(), &rec.name);
        let name = rec.name.clone();
        let _ = blocking(cx, move |d| d.cleanup(&name, has_state)).await;
        if rec
            .config
            .get("volatile.last_state.power")
            .map(String::as_str)
            == Some("RUNNING")
        {
            tracing::info!(instance = %rec.name, "Instance stopped while berthd was down");
            set_power(cx, &rec.name, "STOPPED").await;
        }
    }
}

/// How long after a start an init that exits on its own counts as dying at boot.
const BOOT_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Watches instances for [`BOOT_WINDOW`] after each start: one whose init exits on its
/// own meanwhile (berthd did not stop or restart it) gets the reason — the host limit its
/// console names, its last console lines — in `volatile.last_state.stop_reason`, which
/// `GET …/state` and `berth info` show, and in an `instance-stopped` lifecycle event.
/// A status is one poll of the init's pidfd, so the watch costs nothing that matters.
pub async fn boots(cx: Arc<Ctx>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        // Every watched init in one blocking call: after a burst of launches, hundreds.
        let watched = cx.starts.within(BOOT_WINDOW);
        if watched.is_empty() {
            continue;
        }
        let Ok(stopped) = super::blocking(&cx, move |d| {
            watched
                .into_iter()
                .filter(|(name, _)| d.is_stopped(name))
                .collect::<Vec<_>>()
        })
        .await
        else {
            continue;
        };
        for (name, after) in stopped {
            cx.starts.forget(&name);
            // Under the instance's lock: a stop or restart berthd was making is over, and
            // has recorded the power state it left.
            let lock = cx.locks.instance(&name);
            let _guard = lock.lock().await;
            let Ok(rec) = super::find(&cx, &name).await else {
                continue;
            };
            let power = rec.config.get("volatile.last_state.power");
            if power.map(String::as_str) != Some("RUNNING") || !is_stopped(&cx, &name).await {
                continue;
            }
            let (path, n) = (cx.driver.lxcpath().to_owned(), name.clone());
            let console =
                tokio::task::spawn_blocking(move || crate::lxc::console::log(&path, &n, false))
                    .await
                    .unwrap_or_default();
            let console = String::from_utf8_lossy(&console);
            let reason = crate::model::boot::reason(&console, after.as_secs(), |sysctl| {
                let path = format!("/proc/sys/{}", sysctl.replace('.', "/"));
                std::fs::read_to_string(path)
                    .ok()
                    .map(|v| v.trim().to_owned())
            });
            tracing::warn!(instance = %rec.api_name(), %reason, "Instance stopped at boot");
            let (n, r) = (name.clone(), reason.clone());
            let stored = cx
                .db
                .write(move |tx| {
                    let Some(mut rec) = crate::db::instances::get(tx, &n)? else {
                        return Ok(());
                    };
                    rec.config
                        .insert(crate::model::boot::STOP_REASON.to_owned(), r);
                    crate::db::instances::set_config(tx, &n, &rec.config)
                })
                .await;
            if let Err(e) = stored {
                tracing::error!(error = %crate::error::chain(&e), "Stop reason not recorded");
            }
            let mut context = serde_json::Map::new();
            context.insert("reason".to_owned(), reason.into());
            cx.events.lifecycle(
                "instance-stopped",
                &crate::model::names::instance_url(&name),
                Some(context),
            );
        }
    }
}

/// Starts every stopped instance with `boot.autostart=true` (called when berthd starts).
pub async fn autostart(cx: Arc<Ctx>) {
    let recs = match cx.db.read(crate::db::instances::list_readable).await {
        Ok(recs) => recs,
        Err(e) => {
            tracing::error!(error = %crate::error::chain(&e), "No instance autostarted");
            return;
        }
    };
    for rec in recs {
        let Ok((config, _)) = expanded(&cx, &rec).await else {
            continue;
        };
        if !flag(&config, "boot.autostart") {
            continue;
        }
        let lock = cx.locks.instance(&rec.name);
        let _guard = lock.lock().await;
        if !is_stopped(&cx, &rec.name).await {
            continue;
        }
        // A saved state is restored, not discarded.
        let req = InstanceStatePut {
            action: "start".to_owned(),
            stateful: checkpoint::has_state(cx.driver.lxcpath(), &rec.name),
            ..Default::default()
        };
        if let Err(e) = super::state::change(&cx, &rec, &req).await {
            tracing::warn!(instance = %rec.name, error = %e, "Autostart failed");
        }
    }
}

/// Runs a pass of the snapshot scheduler at the start of every minute, for as long as
/// berthd runs.
pub async fn scheduler(cx: Arc<Ctx>) {
    loop {
        let now = chrono::Utc::now();
        let into_minute = u64::from(chrono::Timelike::second(&now));
        tokio::time::sleep(std::time::Duration::from_secs(60 - into_minute.min(59))).await;
        super::snapshot::scheduled_pass(&cx, chrono::Utc::now()).await;
    }
}
