//! nic devices on the host: what starting a container needs for each (its veth pair made
//! by berthd on a bridge, alone (p2p) or routed, or a macvlan; limits, filters, a static
//! DHCP entry on a managed network, the LXC keys that hand the link to liblxc), and a nic
//! added to or removed from a running one.
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

/// How a nic reaches the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    /// A veth pair on a bridge (`veth.bridge`); on a managed network, the network, the
    /// static entry's key and its addresses.
    Bridge {
        managed: Option<(String, String, Vec<String>)>,
    },
    /// A veth pair whose host end stands alone, with routes to the instance.
    P2p { routes: Vec<String> },
    /// A veth pair routed by the host: host routes to the instance's addresses, the host
    /// end's 169.254.0.1 and fe80::1 its gateways, and the addresses answered for on
    /// `parent` (proxy ARP and NDP entries; no probe is sent).
    Routed {
        addresses: Vec<String>,
        parent: Option<String>,
    },
    /// A macvlan on host interface `parent` (the link made is `veth.host_name` until
    /// liblxc moves it); nothing of it stays on the host.
    Macvlan { parent: String },
}

/// One nic, resolved for the host.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Its name inside the container.
    pub inside: String,
    /// The pair (or, for a macvlan, the link made on the host: `host_name`).
    pub veth: Veth,
    pub attach: Attach,
    pub limits: Limits,
    pub filter: Filter,
    /// The instance's `limits.conntrack` (see [`Plan::conntrack_limit`]).
    pub conntrack: Option<u32>,
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

    /// What the instance driver undoes when the container stops
    /// ([`crate::lxc::StartSpec::host_links`]): its links, `neigh ADDR PARENT` for each
    /// proxy neighbour entry of a routed nic, and `conntrack TABLE LINK` for a conntrack
    /// limit in nft table `table`.
    pub fn host_entries(&self, table: &str) -> Vec<String> {
        let mut out = self.links();
        if self.conntrack_limit().is_some() {
            out.push(format!("conntrack {table} {}", self.veth.host_name));
        }
        if let Attach::Routed {
            addresses,
            parent: Some(parent),
        } = &self.attach
        {
            out.extend(addresses.iter().map(|a| format!("neigh {a} {parent}")));
        }
        out
    }

    /// The conntrack limit of this nic: the instance's, for a veth pair's host end (a
    /// macvlan's traffic does not pass the host's netfilter).
    pub fn conntrack_limit(&self) -> Option<u32> {
        self.conntrack
            .filter(|_| !matches!(self.attach, Attach::Macvlan { .. }))
    }

    /// The link handed to liblxc (moved into the container).
    pub fn handed(&self) -> &str {
        match self.attach {
            Attach::Macvlan { .. } => &self.veth.host_name,
            _ => &self.veth.peer,
        }
    }
}

/// The gateways a routed nic's instance uses: the host end's own addresses.
const ROUTED_GW4: &str = "169.254.0.1";
const ROUTED_GW6: &str = "fe80::1";

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
        let kind = crate::model::nic::kind(d);
        let link_of = |parent: &str| -> Result<berth_network::host::Link> {
            berth_network::host::link(parent)?.ok_or_else(|| {
                Failure::invalid(format!(
                    "Device {dev:?}: parent {parent:?} does not exist on the host"
                ))
            })
        };
        let (bridge, attach, parent_mtu) = match (kind, d.get("network")) {
            (_, Some(net)) => {
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
                let managed = Some((net.clone(), static_key(name, dev), addresses));
                (Some(net.clone()), Attach::Bridge { managed }, mtu)
            }
            ("bridged", None) => {
                let parent = get("parent").unwrap_or_default();
                let link = link_of(&parent)?;
                if link.kind != "bridge" {
                    return Err(Failure::invalid(format!(
                        "Device {dev:?}: parent {parent:?} is not a bridge on the host"
                    )));
                }
                let mtu = Some(link.mtu.to_string());
                (Some(parent), Attach::Bridge { managed: None }, mtu)
            }
            ("macvlan", None) => {
                let mut parent = get("parent").unwrap_or_default();
                let link = link_of(&parent)?;
                if let Some(vlan) = get("vlan") {
                    parent = format!("{parent}.{vlan}");
                }
                (None, Attach::Macvlan { parent }, Some(link.mtu.to_string()))
            }
            ("p2p", None) => {
                let routes = ["ipv4.routes", "ipv6.routes"]
                    .iter()
                    .filter_map(|k| d.get(*k))
                    .flat_map(|v| v.split(',').map(|r| r.trim().to_owned()))
                    .collect();
                (None, Attach::P2p { routes }, None)
            }
            (_, None) => {
                let parent = get("parent");
                if let Some(p) = &parent {
                    link_of(p)?;
                }
                let addresses = ["ipv4.address", "ipv6.address"]
                    .iter()
                    .filter_map(|k| d.get(*k).cloned())
                    .collect();
                (None, Attach::Routed { addresses, parent }, None)
            }
        };
        let mtu = get("mtu")
            .or(parent_mtu)
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
            attach,
            limits: Limits { ingress, egress },
            filter,
            conntrack: crate::model::limits::conntrack(config)?,
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
        if let Attach::Bridge {
            managed: Some((net, key, addresses)),
        } = &p.attach
        {
            let driver =
                self.networks.drivers.get(net).ok_or_else(|| {
                    Failure::unavailable(format!("Network {net:?} is not available"))
                })?;
            driver.set_static(key, &p.veth.hwaddr, addresses, &p.hostname)?;
        }
        // A new pair has no limits or filters: only those asked for are set.
        let result = (|| -> Result<()> {
            match &p.attach {
                Attach::Macvlan { parent } => {
                    berth_network::nic::create_macvlan(&p.veth, parent)?;
                    return Ok(());
                }
                Attach::Bridge { .. } => berth_network::nic::create(&p.veth)?,
                Attach::P2p { routes } => {
                    berth_network::nic::create(&p.veth)?;
                    berth_network::nic::route(&p.veth.host_name, routes)?;
                }
                Attach::Routed { addresses, parent } => {
                    berth_network::nic::create(&p.veth)?;
                    berth_network::nic::route_instance(
                        &p.veth.host_name,
                        addresses,
                        parent.as_deref(),
                        (ROUTED_GW4, ROUTED_GW6),
                    )?;
                }
            }
            if p.limits != Limits::default() {
                berth_network::nic::set_limits(&p.veth.host_name, p.limits)?;
            }
            if !p.filter.is_empty() {
                berth_network::nic::set_filter(&self.table, &p.veth.host_name, &p.filter)?;
            }
            if let Some(limit) = p.conntrack_limit() {
                let bridged = matches!(p.attach, Attach::Bridge { .. });
                berth_network::nic::set_conntrack(&self.table, &p.veth.host_name, bridged, limit)?;
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
        if p.conntrack_limit().is_some() {
            let _ = berth_network::nic::remove_conntrack(&self.table, &p.veth.host_name);
        }
        if let Attach::Routed {
            addresses,
            parent: Some(parent),
        } = &p.attach
        {
            berth_network::nic::unproxy(addresses, parent);
        }
    }

    /// Writes nic `p`'s conntrack limit as its plan says (removed when it has none), for a
    /// running container whose `limits.conntrack` changed. Blocking.
    pub fn limit_conntrack(&self, p: &Plan) -> Result<()> {
        match p.conntrack_limit() {
            // No host end (deleted by hand, or a live change that failed): nothing passes
            // through it to count, and the next start makes it with its limit.
            Some(_) if berth_network::host::link(&p.veth.host_name)?.is_none() => {
                tracing::warn!(link = %p.veth.host_name, "No such link: its conntrack limit waits for the next start");
            }
            Some(limit) => {
                let bridged = matches!(p.attach, Attach::Bridge { .. });
                berth_network::nic::set_conntrack(&self.table, &p.veth.host_name, bridged, limit)?;
            }
            None => berth_network::nic::remove_conntrack(&self.table, &p.veth.host_name)?,
        }
        Ok(())
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
        let mut then = Vec::new();
        if let Attach::Routed { addresses, .. } = &p.attach {
            for a in addresses {
                let (fam, len, gw) = if a.contains(':') {
                    ("-6 ", 128, ROUTED_GW6)
                } else {
                    ("", 32, ROUTED_GW4)
                };
                then.push(format!("{fam}addr add {a}/{len} dev {}", p.inside));
                then.push(format!("{fam}route replace {gw} dev {}", p.inside));
                then.push(format!(
                    "{fam}route replace default via {gw} dev {}",
                    p.inside
                ));
            }
        }
        if let Err(e) = berth_network::nic::move_into(p.handed(), pid, &p.inside, &then) {
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
    let mut out = vec![
        (key("type"), "phys".to_owned()),
        (key("link"), p.handed().to_owned()),
        (key("name"), p.inside.clone()),
        (key("hwaddr"), p.veth.hwaddr.clone()),
        (key("mtu"), p.veth.mtu.to_string()),
        (key("flags"), "up".to_owned()),
    ];
    if let Attach::Routed { addresses, .. } = &p.attach {
        for a in addresses {
            if a.contains(':') {
                out.push((key("ipv6.address"), format!("{a}/128")));
                out.push((key("ipv6.gateway"), ROUTED_GW6.to_owned()));
            } else {
                out.push((key("ipv4.address"), format!("{a}/32")));
                out.push((key("ipv4.gateway"), ROUTED_GW4.to_owned()));
            }
        }
    }
    out
}
