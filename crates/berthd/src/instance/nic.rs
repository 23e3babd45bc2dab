//! An instance's nics across its lifecycle: the volatile keys each keeps (made once,
//! recorded before anything exists on the host, so a crash leaves names berthd can find),
//! the pairs made before a start and taken away when it fails, the static entries
//! forgotten when an instance or a nic goes.

use std::collections::BTreeMap;

use berth_api::instance::{Device, InstanceState};

use crate::ctx::Ctx;
use crate::device::nic::{self, Host, Plan};
use crate::error::{Failure, Result};
use crate::lxc::StartSpec;
use crate::model::nic::{is_nic, missing_volatile, volatile};
use crate::model::records::InstanceRecord;

/// `rec` with the volatile keys its nics need, recorded first when any was missing.
pub async fn with_volatile(
    cx: &Ctx,
    rec: &InstanceRecord,
    devices: &BTreeMap<String, Device>,
) -> Result<InstanceRecord> {
    let missing = missing_volatile(&rec.config, devices);
    if missing.is_empty() {
        return Ok(rec.clone());
    }
    let mut rec = rec.clone();
    rec.config.extend(missing);
    let (name, config) = (rec.name.clone(), rec.config.clone());
    cx.db
        .write(move |tx| crate::db::instances::set_config(tx, &name, &config))
        .await?;
    Ok(rec)
}

/// The configuration a nic plan reads: the expanded one (a profile's `limits.conntrack`
/// counts), the instance's own keys over it (its volatile keys, which may be newer than
/// the expansion).
pub fn plan_config(
    expanded: &BTreeMap<String, String>,
    own: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut config = expanded.clone();
    config.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    config
}

/// Makes the nics of `rec` (expanded `config` and `devices`) on the host and adds what
/// liblxc needs of them to `spec`; returns them, for [`unmake_all`] if the start fails. On
/// failure nothing stays.
pub async fn make_all(
    cx: &Ctx,
    rec: &InstanceRecord,
    (config, devices): (&BTreeMap<String, String>, &BTreeMap<String, Device>),
    spec: &mut StartSpec,
) -> Result<Vec<Plan>> {
    let config = plan_config(config, &rec.config);
    let plans = nic::plan(cx, &rec.name, rec.api_name(), &config, devices)?;
    if plans.is_empty() {
        return Ok(plans);
    }
    for (i, p) in plans.iter().enumerate() {
        spec.devices.extend(nic::lxc_entries(i + 1, p));
        spec.host_links.extend(p.host_entries(&Host::of(cx).table));
    }
    let (work, host) = (plans.clone(), Host::of(cx));
    tokio::task::spawn_blocking(move || {
        for (i, p) in work.iter().enumerate() {
            if let Err(e) = host.make(p) {
                for done in &work[..i] {
                    host.unmake(done);
                }
                return Err(e);
            }
        }
        Ok(())
    })
    .await??;
    Ok(plans)
}

/// Takes nics made by [`make_all`] away again (a start that failed).
pub async fn unmake_all(cx: &Ctx, plans: Vec<Plan>) {
    if plans.is_empty() {
        return;
    }
    let host = Host::of(cx);
    let _ = tokio::task::spawn_blocking(move || {
        for p in &plans {
            host.unmake(p);
        }
    })
    .await;
}

/// Forgets the static entries of the nics of instance `name` among `devices` (the
/// instance is deleted or renamed).
pub fn forget_all(cx: &Ctx, name: &str, devices: &BTreeMap<String, Device>) {
    let host = Host::of(cx);
    for (dev, d) in devices.iter().filter(|(_, d)| is_nic(d)) {
        host.forget(name, dev, d);
    }
}

/// Fills in the host-side name of each nic in an instance's observed network.
pub fn fill_host_names(state: &mut InstanceState, config: &BTreeMap<String, String>) {
    let Some(network) = state.network.as_mut() else {
        return;
    };
    for (inside, iface) in network.iter_mut() {
        // The volatile keys only, not the whole configuration: a list does this for
        // every interface of thousands of instances.
        let host = config
            .range::<str, _>((
                std::ops::Bound::Included("volatile."),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with("volatile."))
            .filter_map(|(k, v)| {
                let dev = k.strip_prefix("volatile.")?.strip_suffix(".name")?;
                (v == inside).then(|| config.get(&volatile(dev, "host_name")))?
            })
            .next();
        if let (Some(host), Some(obj)) = (host, iface.as_object_mut()) {
            obj.insert("host_name".to_owned(), host.clone().into());
        }
    }
}

/// Devices with their names.
type Named = Vec<(String, Device)>;

/// The nics that differ between two expanded device sets: (gone, come). A changed nic is
/// both.
pub fn diff(old: &BTreeMap<String, Device>, new: &BTreeMap<String, Device>) -> (Named, Named) {
    let gone = old
        .iter()
        .filter(|(n, d)| is_nic(d) && new.get(*n) != Some(d))
        .map(|(n, d)| (n.clone(), d.clone()))
        .collect();
    let come = new
        .iter()
        .filter(|(n, d)| is_nic(d) && old.get(*n) != Some(d))
        .map(|(n, d)| (n.clone(), d.clone()))
        .collect();
    (gone, come)
}

/// Brings `config`'s nic volatile keys in line with `devices`: those of nics gone are
/// dropped (their static entries forgotten), those of new nics made.
pub fn update_volatile(
    cx: &Ctx,
    name: &str,
    config: &mut BTreeMap<String, String>,
    old: &BTreeMap<String, Device>,
    new: &BTreeMap<String, Device>,
) {
    let (gone, _) = diff(old, new);
    let host = Host::of(cx);
    for (dev, d) in &gone {
        host.forget(name, dev, d);
        if !new.get(dev).is_some_and(is_nic) {
            let prefix = format!("volatile.{dev}.");
            config.retain(|k, _| !k.starts_with(&prefix));
        }
    }
    config.extend(missing_volatile(config, new));
}

/// One side of a live change: the configuration nic plans read ([`plan_config`]) and the
/// expanded devices.
pub type Side<'a> = (&'a BTreeMap<String, String>, &'a BTreeMap<String, Device>);

/// Applies nic changes to running instance `rec` (init `pid`): nics gone are taken away,
/// new ones made and moved in, and the nics that stay get a changed `limits.conntrack`.
/// A failure takes back what this call did.
pub async fn apply_live(
    cx: &Ctx,
    rec: &InstanceRecord,
    pid: i32,
    (old_config, old): Side<'_>,
    (new_config, new): Side<'_>,
) -> Result<()> {
    let (gone, come) = diff(old, new);
    let limit = |c| crate::model::limits::conntrack(c).ok().flatten();
    let kept: BTreeMap<String, Device> = if limit(old_config) == limit(new_config) {
        BTreeMap::new()
    } else {
        new.iter()
            .filter(|(n, d)| is_nic(d) && old.get(*n) == Some(*d))
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect()
    };
    if gone.is_empty() && come.is_empty() && kept.is_empty() {
        return Ok(());
    }
    let only =
        |list: &[(String, Device)]| -> BTreeMap<String, Device> { list.iter().cloned().collect() };
    let old_plans =
        nic::plan(cx, &rec.name, rec.api_name(), old_config, &only(&gone)).unwrap_or_default();
    let new_plans = nic::plan(cx, &rec.name, rec.api_name(), new_config, &only(&come))?;
    // A nic that stays but cannot be planned (its network gone) keeps what it has.
    let kept_plans =
        nic::plan(cx, &rec.name, rec.api_name(), new_config, &kept).unwrap_or_else(|e| {
            tracing::warn!(instance = %rec.name, error = %e, "Conntrack limit not changed live");
            Vec::new()
        });
    let kept_before =
        nic::plan(cx, &rec.name, rec.api_name(), old_config, &kept).unwrap_or_default();
    let links_file = cx
        .driver
        .lxcpath()
        .join(&rec.name)
        .join(crate::lxc::lifecycle::HOST_LINKS);
    let host = Host::of(cx);
    tokio::task::spawn_blocking(move || -> Result<()> {
        // The nics that stay get the changed conntrack limit first (back to the old one
        // if one cannot).
        for (i, p) in kept_plans.iter().enumerate() {
            if let Err(e) = host.limit_conntrack(p) {
                for done in kept_before.iter().take(i) {
                    let _ = host.limit_conntrack(done);
                }
                return Err(e);
            }
        }
        // A changed nic (same host name) goes first, its filters with it; then the new
        // ones come, then the others go, so a failure leaves the unchanged as they were.
        for p in old_plans.iter().filter(|o| {
            new_plans
                .iter()
                .any(|n| n.veth.host_name == o.veth.host_name)
        }) {
            host.unmake(p);
        }
        for (i, p) in new_plans.iter().enumerate() {
            if let Err(e) = host.attach(pid, p) {
                for done in &new_plans[..i] {
                    host.unmake(done);
                }
                for before in &kept_before {
                    let _ = host.limit_conntrack(before);
                }
                return Err(e);
            }
        }
        for p in old_plans.iter().filter(|o| {
            !new_plans
                .iter()
                .any(|n| n.veth.host_name == o.veth.host_name)
        }) {
            host.unmake(p);
        }
        // The post-stop hook deletes these too (a limit removed: its entry finds nothing).
        let mut links = std::fs::read_to_string(&links_file).unwrap_or_default();
        for l in new_plans
            .iter()
            .chain(&kept_plans)
            .flat_map(|p| p.host_entries(&host.table))
        {
            if !links.lines().any(|have| have == l) {
                links.push('\n');
                links.push_str(&l);
            }
        }
        std::fs::write(&links_file, links)
            .map_err(|e| crate::error::Failure::failed("Failed to record the nics' host links", e))
    })
    .await?
}

/// Checks an instance's nics against the host and the networks: each `network` exists,
/// each `parent` exists (a bridge, for a bridged nic), and a `host_name` names no link but the instance's own
/// (`config`: its volatile keys). Errors name the device.
pub async fn check(
    cx: &Ctx,
    config: &BTreeMap<String, String>,
    devices: &BTreeMap<String, Device>,
) -> Result<()> {
    let nics: Vec<(String, Device)> = devices
        .iter()
        .filter(|(_, d)| is_nic(d))
        .map(|(n, d)| (n.clone(), d.clone()))
        .collect();
    if nics.is_empty() {
        return Ok(());
    }
    for (dev, d) in &nics {
        if let Some(net) = d.get("network")
            && cx.networks.drivers.get(net).is_none()
        {
            return Err(Failure::invalid(format!(
                "Device {dev:?}: network {net:?} does not exist"
            )));
        }
    }
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        for (dev, d) in &nics {
            if let Some(parent) = d.get("parent") {
                let link = berth_network::host::link(parent)?;
                let bridged = crate::model::nic::kind(d) == "bridged";
                match link {
                    None => {
                        return Err(Failure::invalid(format!(
                            "Device {dev:?}: parent {parent:?} does not exist on the host"
                        )));
                    }
                    Some(l) if bridged && l.kind != "bridge" => {
                        return Err(Failure::invalid(format!(
                            "Device {dev:?}: parent {parent:?} is not a bridge on the host"
                        )));
                    }
                    Some(_) => {}
                }
            }
            if let Some(h) = d.get("host_name")
                && config.get(&volatile(dev, "host_name")) != Some(h)
                && berth_network::nic::exists(h)
            {
                return Err(Failure::invalid(format!(
                    "Device {dev:?}: host_name {h:?} names a link that exists already"
                )));
            }
        }
        Ok(())
    })
    .await?
}
