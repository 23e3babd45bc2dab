//! An instance's proxy devices across its lifecycle: started once its container runs
//! (a relay each, or DNAT rules with `nat=true`), stopped with it, changed live, and
//! checked again when berthd starts (a relay that still runs is kept).

use std::collections::BTreeMap;
use std::net::IpAddr;

use berth_api::StatusCode;
use berth_api::instance::Device;

use crate::ctx::Ctx;
use crate::device::proxy::{self, Target};
use crate::error::Result;
use crate::model::proxy::{is_nat, is_proxy};
use crate::model::records::InstanceRecord;

/// The proxies among `devices`.
fn proxies(devices: &BTreeMap<String, Device>) -> Vec<(String, Device)> {
    devices
        .iter()
        .filter(|(_, d)| is_proxy(d))
        .map(|(n, d)| (n.clone(), d.clone()))
        .collect()
}

/// The static IPv4 addresses of the instance's nics on managed networks, with their
/// bridge: where `nat=true` may forward to.
fn static_nics(devices: &BTreeMap<String, Device>) -> BTreeMap<IpAddr, String> {
    devices
        .values()
        .filter(|d| crate::model::nic::is_nic(d))
        .filter_map(|d| {
            Some((
                d.get("ipv4.address")?.parse().ok()?,
                d.get("network")?.clone(),
            ))
        })
        .collect()
}

fn table(cx: &Ctx) -> String {
    format!("berth_{}", cx.paths.daemon_id())
}

/// Starts `list` (devices of instance `name` among `all`) for its running container.
async fn start_list(
    cx: &Ctx,
    name: &str,
    all: &BTreeMap<String, Device>,
    list: Vec<(String, Device)>,
) -> Result<()> {
    if list.is_empty() {
        return Ok(());
    }
    let (status, pid) = super::query::status(cx, name).await;
    let Some(pid) = pid.filter(|_| status != StatusCode::Stopped) else {
        return Ok(());
    };
    let start_time = crate::lxc::lifecycle::start_time(pid).unwrap_or(0);
    let dir = cx.driver.lxcpath().join(name);
    let (table, nics, name) = (table(cx), static_nics(all), name.to_owned());
    tokio::task::spawn_blocking(move || {
        let target = Target {
            dir: &dir,
            pid,
            start_time,
        };
        let mut done: Vec<&(String, Device)> = Vec::new();
        for item in &list {
            let (dev, d) = item;
            let result = if is_nat(d) {
                proxy::dnat(dev, d, &nics).and_then(|(rules, bridge)| {
                    Ok(berth_network::nat::apply(
                        &table,
                        &proxy::nat_key(&name, dev),
                        &rules,
                        &bridge,
                    )?)
                })
            } else {
                proxy::start(&target, dev, d)
            };
            if let Err(e) = result {
                for (dev, d) in done {
                    stop_one(&dir, &table, &name, dev, d);
                }
                return Err(e);
            }
            done.push(item);
        }
        Ok(())
    })
    .await?
}

fn stop_one(dir: &std::path::Path, table: &str, name: &str, dev: &str, d: &Device) {
    if is_nat(d) {
        let _ = berth_network::nat::remove(table, &proxy::nat_key(name, dev));
    } else {
        proxy::stop(dir, dev);
    }
}

/// Starts every proxy of running instance `rec` (its expanded `devices`); on failure none
/// stays.
pub async fn start_all(
    cx: &Ctx,
    rec: &InstanceRecord,
    devices: &BTreeMap<String, Device>,
) -> Result<()> {
    start_list(cx, &rec.name, devices, proxies(devices)).await
}

/// Stops every proxy of instance `name` among `devices`.
pub async fn stop_all(cx: &Ctx, name: &str, devices: &BTreeMap<String, Device>) {
    let list = proxies(devices);
    if list.is_empty() {
        return;
    }
    let (dir, table, name) = (cx.driver.lxcpath().join(name), table(cx), name.to_owned());
    let _ = tokio::task::spawn_blocking(move || {
        for (dev, d) in &list {
            stop_one(&dir, &table, &name, dev, d);
        }
    })
    .await;
}

/// Applies proxy changes to running instance `rec`: those gone stop, new ones start.
pub async fn apply_live(
    cx: &Ctx,
    rec: &InstanceRecord,
    old: &BTreeMap<String, Device>,
    new: &BTreeMap<String, Device>,
) -> Result<()> {
    let gone: BTreeMap<String, Device> = proxies(old)
        .into_iter()
        .filter(|(n, d)| new.get(n) != Some(d))
        .collect();
    stop_all(cx, &rec.name, &gone).await;
    let come: Vec<(String, Device)> = proxies(new)
        .into_iter()
        .filter(|(n, d)| old.get(n) != Some(d))
        .collect();
    start_list(cx, &rec.name, new, come).await
}

/// At daemon start: the proxies of every running instance, started where their relay
/// is gone, kept where it runs.
pub async fn resume(cx: &Ctx) {
    let Ok(all) = crate::project::expand_readable(cx).await else {
        return;
    };
    for e in all {
        if proxies(&e.devices).is_empty() {
            continue;
        }
        if let Err(err) = start_all(cx, &e.rec, &e.devices).await {
            tracing::warn!(instance = %e.rec.name, error = %crate::error::chain(&err), "Proxy devices not started");
        }
    }
}
