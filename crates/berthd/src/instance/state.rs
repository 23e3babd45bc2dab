//! Power changes: start, stop, restart, freeze, unfreeze, and their stateful forms
//! (checkpoint and restore with CRIU).
//!
//! A stateful stop needs `migration.stateful=true` in effect (the console must be the
//! keeper's, see `lxc::checkpoint`); a stateless start, restart or snapshot restore
//! discards a saved state, as LXD does. `volatile.last_state.power` records what berthd
//! last made of an instance, for the sweep after a crash.

use berth_api::StatusCode;
use berth_api::instance::InstanceStatePut;

use super::query::status;
use super::{blocking, expanded, pool_of_devices, start_spec, volume};
use crate::ctx::Ctx;
use crate::error::{Failure, Result};
use crate::lxc::checkpoint;
use crate::model::expand::flag;
use crate::model::names::instance_url;
use crate::model::records::InstanceRecord;

/// What a power change does, and the operation's description.
pub fn describe(action: &str) -> Result<&'static str> {
    Ok(match action {
        "start" => "Starting instance",
        "stop" => "Stopping instance",
        "restart" => "Restarting instance",
        "freeze" => "Freezing instance",
        "unfreeze" => "Unfreezing instance",
        other => return Err(Failure::invalid(format!("Unknown action {other:?}"))),
    })
}

/// Refuses a stateful state change that cannot work, before anything happens. `stop`,
/// `snapshot` and `migrate` (a live migration) check that the instance can be
/// checkpointed now.
pub async fn check_stateful(cx: &Ctx, rec: &InstanceRecord, action: &str) -> Result<()> {
    match action {
        "stop" | "snapshot" | "migrate" => {
            let (config, _) = expanded(cx, rec).await?;
            if !flag(&config, "migration.stateful") {
                return Err(Failure::invalid(if action == "migrate" {
                    "Live migration requires migration.stateful=true on the instance (set it \
                     and restart the instance), or move it with --stateless"
                        .to_owned()
                } else {
                    format!("Stateful {action} requires migration.stateful=true on the instance")
                }));
            }
            if rec.ephemeral && action == "stop" {
                return Err(Failure::invalid(
                    "Stateful stop is not possible for an ephemeral instance",
                ));
            }
            if status(cx, &rec.name).await.0 == StatusCode::Stopped {
                return Err(Failure::invalid(if action == "stop" {
                    "The instance is already stopped"
                } else {
                    "A stateful snapshot needs a running instance"
                }));
            }
            if !checkpoint::runs_with_keeper(cx.driver.lxcpath(), &rec.name) {
                return Err(Failure::invalid(
                    "The instance was started before migration.stateful=true: restart it first",
                ));
            }
            checkpoint::criu_check().await
        }
        "start" => {
            if !checkpoint::has_state(cx.driver.lxcpath(), &rec.name) {
                return Err(Failure::invalid(
                    "The instance has no saved state to restore",
                ));
            }
            checkpoint::criu_check().await
        }
        other => Err(Failure::invalid(format!(
            "Action {other:?} cannot be stateful (only stop and start)"
        ))),
    }
}

/// Starts instance `rec` (stopped): its configuration written, its `start` templates
/// rendered (not on a restore, which resumes it), then the driver's start or, with
/// `stateful`, its restore from the saved state.
pub async fn start(cx: &Ctx, rec: &InstanceRecord, stateful: bool) -> Result<()> {
    let (config, devices) = expanded(cx, rec).await?;
    let rec = &super::nic::with_volatile(cx, rec, &devices).await?;
    let pool = pool_of_devices(cx, &devices)
        .map_err(|_| Failure::internal("The pool of the root disk is not available"))?;
    let vol = volume(pool.as_ref(), &rec.name);
    // Its volume may be new since (a restore, a migration): the size goes on again.
    super::quota::apply(cx, &rec.name, None, &devices).await?;
    let mut spec = start_spec(cx, rec, &config, &devices, &vol)?;
    let nics = super::nic::make_all(cx, rec, (&config, &devices), &mut spec).await?;
    let started = if stateful {
        cx.driver.restore(&spec).await
    } else {
        match crate::image::volume_templates(rec, &vol, "start") {
            Ok(()) => cx.driver.start(&spec).await,
            Err(e) => Err(e),
        }
    };
    if started.is_err() {
        super::nic::unmake_all(cx, nics).await;
        return started;
    }
    // Proxies once the container runs; one that cannot listen fails the start.
    if let Err(e) = super::proxy::start_all(cx, rec, &devices).await {
        let _ = cx.driver.stop(&rec.name, 0, true).await;
        let n = rec.name.clone();
        let _ = blocking(cx, move |d| d.release(&n)).await;
        return Err(e);
    }
    cx.starts.note(&rec.name);
    Ok(())
}

/// Applies a power change to instance `rec` under its lock.
pub async fn change_locked(cx: &Ctx, rec: &InstanceRecord, req: &InstanceStatePut) -> Result<()> {
    let lock = cx.locks.instance(&rec.name);
    let _guard = lock.lock().await;
    change(cx, rec, req).await
}

/// Applies a power change to instance `rec`, whose lock the caller holds.
pub async fn change(cx: &Ctx, rec: &InstanceRecord, req: &InstanceStatePut) -> Result<()> {
    let name = &rec.name;
    let source = instance_url(name);
    let (status, _) = status(cx, name).await;
    let running = status != StatusCode::Stopped;
    match req.action.as_str() {
        "start" if status == StatusCode::Frozen => {
            // As in LXD, starting a frozen instance thaws it.
            let n = name.clone();
            blocking(cx, move |d| d.set_frozen(&n, false)).await??;
            cx.events.lifecycle("instance-resumed", &source, None);
        }
        "start" => {
            if running {
                return Err(Failure::conflict("The instance is already running"));
            }
            // As in LXD, a stateless start discards a saved state (the start does).
            start(cx, rec, req.stateful).await?;
            set_power(cx, name, "RUNNING").await;
            cx.events.lifecycle("instance-started", &source, None);
        }
        "stop" if req.stateful => {
            if !running {
                return Err(Failure::conflict("The instance is already stopped"));
            }
            cx.driver.checkpoint(name, true).await?;
            set_power(cx, name, "STOPPED").await;
            cx.events.lifecycle("instance-stopped", &source, None);
        }
        "stop" => {
            let n = name.clone();
            if !running {
                blocking(cx, move |d| d.release(&n)).await?;
                return Err(Failure::conflict("The instance is already stopped"));
            }
            cx.driver.stop(name, req.timeout, req.force).await?;
            blocking(cx, move |d| d.release(&n)).await?;
            stop_proxies(cx, rec).await;
            set_power(cx, name, "STOPPED").await;
            cx.events.lifecycle("instance-stopped", &source, None);
            if rec.ephemeral {
                super::create::remove(cx, rec).await?;
            }
        }
        "restart" => {
            if running {
                cx.driver.stop(name, req.timeout, req.force).await?;
                let n = name.clone();
                blocking(cx, move |d| d.release(&n)).await?;
                stop_proxies(cx, rec).await;
            }
            start(cx, rec, false).await?;
            set_power(cx, name, "RUNNING").await;
            cx.events.lifecycle("instance-restarted", &source, None);
        }
        "freeze" | "unfreeze" => {
            let freeze = req.action == "freeze";
            if !running {
                return Err(Failure::conflict("The instance is not running"));
            }
            let n = name.clone();
            blocking(cx, move |d| d.set_frozen(&n, freeze)).await??;
            let event = if freeze {
                "instance-paused"
            } else {
                "instance-resumed"
            };
            cx.events.lifecycle(event, &source, None);
        }
        other => return Err(Failure::invalid(format!("Unknown action {other:?}"))),
    }
    Ok(())
}

/// After a live migration handed instance `rec` over to its target: its container
/// ended here, as after a stop.
pub async fn handed_over(cx: &Ctx, rec: &InstanceRecord) {
    let n = rec.name.clone();
    let _ = blocking(cx, move |d| d.release(&n)).await;
    stop_proxies(cx, rec).await;
    set_power(cx, &rec.name, "STOPPED").await;
    cx.events
        .lifecycle("instance-stopped", &instance_url(&rec.name), None);
}

/// Stops the proxies of instance `rec` (its container stopped).
async fn stop_proxies(cx: &Ctx, rec: &InstanceRecord) {
    if let Ok((_, devices)) = expanded(cx, rec).await {
        super::proxy::stop_all(cx, &rec.name, &devices).await;
    }
}

/// Records what berthd last made of an instance (`volatile.last_state.power`); a start
/// also makes its next id map current and its `last_used_at` now.
pub async fn set_power(cx: &Ctx, name: &str, power: &str) {
    let (n, p) = (name.to_owned(), power.to_owned());
    let stored = cx
        .db
        .write(move |tx| {
            let Some(mut rec) = crate::db::instances::get(tx, &n)? else {
                return Ok(());
            };
            let running = p == "RUNNING";
            rec.config.insert("volatile.last_state.power".to_owned(), p);
            if running {
                rec.config.remove(crate::model::boot::STOP_REASON);
                if let Some(next) = rec.config.get("volatile.idmap.next").cloned() {
                    rec.config
                        .insert("volatile.idmap.current".to_owned(), next.clone());
                    rec.config
                        .insert("volatile.last_state.idmap".to_owned(), next);
                }
                crate::db::instances::set_last_used(tx, &n, &crate::time::now_rfc3339())?;
            }
            crate::db::instances::set_config(tx, &n, &rec.config)
        })
        .await;
    if let Err(e) = stored {
        tracing::warn!(instance = name, power, error = %crate::error::chain(&e), "Power state not recorded");
    }
}
