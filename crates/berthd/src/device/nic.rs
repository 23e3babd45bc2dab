//! nic devices on the host: what starting a container needs for each (its veth pair made
//! by berthd, limits, filters, a static DHCP entry on a managed network, the LXC keys that
//! hand the pair's other end to liblxc), and a nic added to or removed from a running one.
//!
//! The host-side links a container's nics use are listed for the instance driver
//! ([`crate::lxc::StartSpec::host_links`]), which deletes them whenever the container
//! stops, by berthd's hand or its own (liblxc's post-stop hook), and at the sweep after a
//! crash: no pair outlives its container.

use std::collections::BTreeMap;

use berth_api::instance::Device;
use berth_network::nic::{Filter, Limits, Veth};

use crate::ctx::{Ctx, Networks};
use crate::error::{Failure, Result};
use crate::model::nic::{is_nic, volatile};

/// One nic, resolved for the host.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Its name inside the container.
    pub inside: String,
    pub veth: Veth,
    pub limits: Limits,
    pub filter: Filter,
    /// On a managed network: the network, the static entry's key, its addresses.
    pub managed: Option<(String, String, Vec<String>)>,
    /// The name the static entry gives the instance (its name in its project).
    pub hostname: String,
}

impl Plan {
    /// The host-side links this nic makes (its host end, and the IFB of an egress limit).
    pub fn links(&self) -> Vec<String> {
        let mut out = vec![self.veth.host_name.clone()];
        if self.limits.egress.is_some() {
            out.push(berth_network::nic::ifb_of(&self.veth.host_name));
        }
        out
    }
}

/// The static-entry key of nic `dev` of instance `name` (host-wide).
pub fn static_key(name: &str, dev: &str) -> String {
    format!("{name}.{dev}")
}

/// Resolves the nics of instance `name` (host-wide; `hostname` its name in its project)
/// from its expanded `devices` and its `config` (whose volatile keys are set): which
/// bridge, MTU, MAC and names each uses. A missing network or bridge is refused, naming
/// the device.
pub fn plan(
    cx: &Ctx,
    name: &str,
    hostname: &str,
    config: &BTreeMap<String, String>,
    devices: &BTreeMap<String, Device>,
) -> Result<Vec<Plan>> {
    let mut out = Vec::new();
    for (dev, d) in devices.iter().filter(|(_, d)| is_nic(d)) {
        let get = |k: &str| d.get(k).cloned();
        let vol = |what: &str| config.get(&volatile(dev, what)).cloned();
        let hwaddr = get("hwaddr").or_else(|| vol("hwaddr")).unwrap_or_default();
        let host_name = vol("host_name").unwrap_or_default();
        if hwaddr.is_empty() || host_name.is_empty() {
            return Err(Failure::internal(format!(
                "Device {dev:?} has no volatile hwaddr or host_name"
            )));
        }
        let (bridge, managed, bridge_mtu) = match d.get("network") {
            Some(net) => {
                let driver = crate::network::driver(cx, net).map_err(|_| {
                    Failure::invalid(format!(
                        "Device {dev:?}: network {net:?} does not exist or is not available"
                    ))
                })?;
                let mtu = driver.config().get("bridge.mtu").cloned();
                let addresses: Vec<String> = ["ipv4.address", "ipv6.address"]
                    .iter()
                    .filter_map(|k| d.get(*k).cloned())
                    .collect();
                let managed = (net.clone(), static_key(name, dev), addresses);
                (net.clone(), Some(managed), mtu)
            }
            None => {
                let parent = get("parent").unwrap_or_default();
                let link = berth_network::host::link(&parent)?;
                if link.as_ref().is_none_or(|l| l.kind != "bridge") {
                    return Err(Failure::invalid(format!(
                        "Device {dev:?}: parent {parent:?} is not a bridge on the host"
                    )));
                }
                let mtu = link.map(|l| l.mtu.to_string());
                (parent, None, mtu)
            }
        };
        let mtu = get("mtu")
            .or(bridge_mtu)
            .and_then(|m| m.parse().ok())
            .unwrap_or(1500);
        let (ingress, egress) = crate::model::nic::limits(d);
        let on = |k: &str| d.get(k).is_some_and(|v| v == "true");
        let filter = Filter {
            mac: on("security.mac_filtering").then(|| hwaddr.clone()),
            ipv4: on("security.ipv4_filtering")
                .then(|| get("ipv4.address"))
                .flatten(),
            ipv6: on("security.ipv6_filtering")
                .then(|| get("ipv6.address"))
                .flatten(),
        };
        out.push(Plan {
            inside: vol("name").unwrap_or_else(|| dev.clone()),
            veth: Veth {
                peer: peer_name(&host_name),
                host_name,
                hwaddr,
                mtu,
                bridge,
            },
            limits: Limits { ingress, egress },
            filter,
            managed,
            hostname: hostname.to_owned(),
        });
    }
    Ok(out)
}

/// The name of a pair's other end while it is on the host: the host name and `p`, cut to
/// the last 15 bytes (interface names are ASCII).
fn peer_name(host_name: &str) -> String {
    let full = format!("{host_name}p");
    full[full.len().saturating_sub(15)..].to_owned()
}

/// What making and unmaking nics needs, owned, for a blocking thread: the loaded
/// networks and the name of this daemon's nft bridge table (of the nics' filters).
#[derive(Debug, Clone)]
pub struct Host {
    pub networks: Networks,
    pub table: String,
}

impl Host {
    pub fn of(cx: &Ctx) -> Host {
        Host {
            networks: cx.networks.clone(),
            table: format!("berth_{}", cx.paths.daemon_id()),
        }
    }

    /// Makes nic `p` on the host: its static entry, its pair, limits and filters.
    /// Blocking. On failure what it made is taken away.
    pub fn make(&self, p: &Plan) -> Result<()> {
        if let Some((net, key, addresses)) = &p.managed {
            let driver =
                self.networks.drivers.get(net).ok_or_else(|| {
                    Failure::unavailable(format!("Network {net:?} is not available"))
                })?;
            driver.set_static(key, &p.veth.hwaddr, addresses, &p.hostname)?;
        }
        // A new pair has no limits or filters: only those asked for are set.
        let result = (|| -> Result<()> {
            berth_network::nic::create(&p.veth)?;
            if p.limits != Limits::default() {
                berth_network::nic::set_limits(&p.veth.host_name, p.limits)?;
            }
            if !p.filter.is_empty() {
                berth_network::nic::set_filter(&self.table, &p.veth.host_name, &p.filter)?;
            }
            Ok(())
        })();
        if result.is_err() {
            self.unmake(p);
        }
        result
    }

    /// Takes nic `p` away from the host (its pair, IFB and filters; its static entry
    /// stays for its next start). Blocking; what is gone already is fine.
    pub fn unmake(&self, p: &Plan) {
        for link in p.links() {
            if let Err(e) = berth_network::nic::delete(&link) {
                tracing::warn!(link = %link, error = %crate::error::chain(&e), "Link not deleted");
            }
        }
        if !p.filter.is_empty() {
            let _ = berth_network::nic::remove_filter(&self.table, &p.veth.host_name);
        }
    }

    /// Forgets nic `dev` of instance `name` on its managed network (its static entry),
    /// when the nic or the instance goes.
    pub fn forget(&self, name: &str, dev: &str, d: &Device) {
        if let Some(net) = d.get("network")
            && let Some(driver) = self.networks.drivers.get(net)
        {
            driver.remove_static(&static_key(name, dev));
        }
    }

    /// Gives running container `pid` nic `p`: made on the host, its peer moved in.
    /// Blocking.
    pub fn attach(&self, pid: i32, p: &Plan) -> Result<()> {
        self.make(p)?;
        if let Err(e) = berth_network::nic::move_into(&p.veth, pid, &p.inside) {
            self.unmake(p);
            return Err(e.into());
        }
        Ok(())
    }
}

/// The LXC keys that hand nic `p` to liblxc as the container's interface `index`
/// (from 1: `lxc.net.0` is the empty loopback-only network).
pub fn lxc_entries(index: usize, p: &Plan) -> Vec<(String, String)> {
    let key = |k: &str| format!("lxc.net.{index}.{k}");
    vec![
        (key("type"), "phys".to_owned()),
        (key("link"), p.veth.peer.clone()),
        (key("name"), p.inside.clone()),
        (key("hwaddr"), p.veth.hwaddr.clone()),
        (key("mtu"), p.veth.mtu.to_string()),
        (key("flags"), "up".to_owned()),
    ]
}
