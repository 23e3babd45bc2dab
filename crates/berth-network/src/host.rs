//! What the host knows of its links, addresses and routes, read with iproute2's JSON
//! output (`ip -j`). Reading sends nothing on any network.

use ipnet::IpNet;
use serde_json::Value;

use crate::error::NetworkError;

/// One link of the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    /// Its `linkinfo` kind (`bridge`, `veth`…); empty for a plain device.
    pub kind: String,
    /// The bridge it is attached to.
    pub master: Option<String>,
    pub mtu: u32,
    pub address: String,
    /// `UP`, `DOWN`, `UNKNOWN`…: whether it carries traffic.
    pub operstate: String,
    /// Whether it is administratively up (a bridge without ports is up but `DOWN`).
    pub up: bool,
    /// Its `ifalias`.
    pub alias: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

fn ip(args: &[&str], network: &str) -> Result<Value, NetworkError> {
    let out = berth_host::run_command("ip", args).map_err(|source| NetworkError::Command {
        network: network.to_owned(),
        what: "Reading the host's links",
        source,
    })?;
    if out.trim().is_empty() {
        return Ok(Value::Array(vec![]));
    }
    serde_json::from_str(&out).map_err(|e| NetworkError::Io {
        what: "read the output of ip",
        path: "ip -j".into(),
        source: std::io::Error::other(e),
    })
}

fn link_of(v: &Value) -> Link {
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let stat = |dir: &str, k: &str| {
        v.pointer(&format!("/stats64/{dir}/{k}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Link {
        name: s("ifname"),
        kind: v
            .pointer("/linkinfo/info_kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        master: v.get("master").and_then(Value::as_str).map(str::to_owned),
        mtu: u32::try_from(v.get("mtu").and_then(Value::as_u64).unwrap_or(0)).unwrap_or(0),
        address: s("address"),
        operstate: s("operstate"),
        up: v
            .get("flags")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|f| f.as_str() == Some("UP"))),
        alias: s("ifalias"),
        rx_bytes: stat("rx", "bytes"),
        tx_bytes: stat("tx", "bytes"),
        rx_packets: stat("rx", "packets"),
        tx_packets: stat("tx", "packets"),
    }
}

/// Every link of the host.
pub fn links() -> Result<Vec<Link>, NetworkError> {
    let v = ip(&["-j", "-d", "-s", "link", "show"], "")?;
    Ok(v.as_array()
        .map(|a| a.iter().map(link_of).collect())
        .unwrap_or_default())
}

/// Link `name`, if the host has it.
pub fn link(name: &str) -> Result<Option<Link>, NetworkError> {
    Ok(links()?.into_iter().find(|l| l.name == name))
}

/// The index of link `name` in this network namespace.
pub fn index(name: &str) -> Result<u32, NetworkError> {
    let v = ip(&["-j", "link", "show", "dev", name], name)?;
    v.get(0)
        .and_then(|l| l.get("ifindex"))
        .and_then(Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| NetworkError::invalid("link", name, "ip shows no index for it"))
}

/// Every address of the host's links: (link, address with its prefix).
pub fn addresses() -> Result<Vec<(String, IpNet)>, NetworkError> {
    let v = ip(&["-j", "addr", "show"], "")?;
    let mut out = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        let name = link
            .get("ifname")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for a in link
            .get("addr_info")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(local), Some(len)) = (
                a.get("local").and_then(Value::as_str),
                a.get("prefixlen").and_then(Value::as_u64),
            ) else {
                continue;
            };
            if let Ok(net) = format!("{local}/{len}").parse() {
                out.push((name.to_owned(), net));
            }
        }
    }
    Ok(out)
}

/// Every route's device and destination, in every table, IPv4 and IPv6 (default routes
/// left out: they overlap everything).
pub fn routes() -> Result<Vec<(String, IpNet)>, NetworkError> {
    let mut out = Vec::new();
    for family in ["-4", "-6"] {
        let v = ip(&["-j", family, "route", "show", "table", "all"], "")?;
        for r in v.as_array().into_iter().flatten() {
            let Some(dst) = r.get("dst").and_then(Value::as_str) else {
                continue;
            };
            if dst == "default" {
                continue;
            }
            let with_len = if dst.contains('/') {
                dst.to_owned()
            } else if dst.contains(':') {
                format!("{dst}/128")
            } else {
                format!("{dst}/32")
            };
            let dev = r.get("dev").and_then(Value::as_str).unwrap_or_default();
            if let Ok(net) = with_len.parse() {
                out.push((dev.to_owned(), net));
            }
        }
    }
    Ok(out)
}

/// What the host says of interface `name`, if it has it.
pub fn state(name: &str) -> Result<Option<crate::NetworkState>, NetworkError> {
    let links = links()?;
    let Some(l) = links.iter().find(|l| l.name == name) else {
        return Ok(None);
    };
    let addresses = addresses()?
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, a)| crate::Address {
            family: if a.addr().is_ipv4() { "inet" } else { "inet6" }.to_owned(),
            address: a.addr().to_string(),
            netmask: a.prefix_len().to_string(),
            scope: if is_link_local(&a) { "link" } else { "global" }.to_owned(),
        })
        .collect();
    Ok(Some(crate::NetworkState {
        addresses,
        bytes_received: l.rx_bytes,
        bytes_sent: l.tx_bytes,
        packets_received: l.rx_packets,
        packets_sent: l.tx_packets,
        hwaddr: l.address.clone(),
        mtu: l.mtu,
        state: if l.up { "up" } else { "down" }.to_owned(),
        upper_devices: links
            .iter()
            .filter(|u| u.master.as_deref() == Some(name))
            .map(|u| u.name.clone())
            .collect(),
    }))
}

/// The network type LXD shows for a host interface: `loopback`, `bridge`, `bond`,
/// `vlan`, `physical` (a device behind it) or `unknown`.
pub fn link_type(link: &Link) -> &'static str {
    match link.kind.as_str() {
        _ if link.name == "lo" => "loopback",
        "bridge" => "bridge",
        "bond" => "bond",
        "vlan" => "vlan",
        "" if std::path::Path::new("/sys/class/net")
            .join(&link.name)
            .join("device")
            .exists() =>
        {
            "physical"
        }
        _ => "unknown",
    }
}

/// Whether an address is link-local (fe80::/10, 169.254.0.0/16).
pub fn is_link_local(a: &IpNet) -> bool {
    match a {
        IpNet::V6(n) => n.addr().segments()[0] & 0xffc0 == 0xfe80,
        IpNet::V4(n) => n.addr().is_link_local(),
    }
}

/// The chains of nftables table `family table` (`inet berth_ID`), or `None` when the
/// table does not exist. Reads that table only, never the rest of the ruleset.
pub fn nft_chains(family: &str, table: &str) -> Option<Vec<String>> {
    let out = berth_host::run_command("nft", &["-j", "list", "table", family, table]).ok()?;
    let v: Value = serde_json::from_str(&out).unwrap_or_default();
    Some(
        v.get("nftables")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("chain")?.get("name")?.as_str().map(str::to_owned))
            .collect(),
    )
}

/// Whether two subnets share an address.
pub fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        assert!(overlap(&net("10.0.0.0/8"), &net("10.1.2.0/24")));
        assert!(overlap(&net("10.1.2.0/24"), &net("10.0.0.0/8")));
        assert!(!overlap(&net("10.1.2.0/24"), &net("10.1.3.0/24")));
        assert!(!overlap(&net("10.1.2.0/24"), &net("fd00::/8")));
    }

    #[test]
    fn reads_links_addresses_and_routes() {
        let lo = link("lo").unwrap().unwrap();
        assert_eq!(lo.name, "lo");
        assert!(
            addresses()
                .unwrap()
                .iter()
                .any(|(l, a)| l == "lo" && a.addr() == std::net::IpAddr::from([127, 0, 0, 1]))
        );
        // The local table has 127.0.0.0/8.
        assert!(
            routes()
                .unwrap()
                .iter()
                .any(|(_, r)| r.contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap()))
        );
    }
}
