//! What runs besides requests, started by the daemon: the sweep before serving, the
//! autostart after, and the snapshot scheduler for as long as berthd runs.

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
/// restore's root; the console keeper, unless a saved state needs it).
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
