//! nic devices, as configuration: which keys each kind takes, what each value must be,
//! and the `volatile.<dev>.*` keys berthd keeps for them.
//!
//! A nic with `network=NAME` is bridged onto that managed network; `nictype=bridged` with
//! `parent=BRIDGE` onto a host bridge berth does not manage. berthd makes the veth pair
//! itself (host end `volatile.<dev>.host_name`, `veth` and 8 hex digits unless
//! `host_name` says otherwise) and keeps its MAC (`volatile.<dev>.hwaddr`, in 00:16:3e)
//! and inside name (`volatile.<dev>.name`) across restarts.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use berth_api::instance::Device;

use crate::error::{Failure, Result};

/// Keys every nic takes.
const COMMON: &[&str] = &["type", "nictype", "name", "hwaddr", "mtu", "boot.priority"];

/// Keys of nics with a host end (a veth): bridged, p2p, routed.
const VETH: &[&str] = &["host_name", "limits.ingress", "limits.egress", "limits.max"];

/// What each kind adds.
const BRIDGED: &[&str] = &[
    "network",
    "parent",
    "ipv4.address",
    "ipv6.address",
    "security.mac_filtering",
    "security.ipv4_filtering",
    "security.ipv6_filtering",
];
const MACVLAN: &[&str] = &["parent", "vlan"];
const P2P: &[&str] = &["ipv4.routes", "ipv6.routes"];
const ROUTED: &[&str] = &["parent", "ipv4.address", "ipv6.address"];

/// The kinds berth runs, as `nictype` names them.
pub const KINDS: &[&str] = &["bridged", "macvlan", "p2p", "routed"];

/// A nic's kind: its `nictype`, or `bridged` for one with `network`.
pub fn kind(d: &Device) -> &str {
    match (d.get("nictype"), d.get("network")) {
        (Some(t), _) => t,
        (None, _) => "bridged",
    }
}

/// Whether `d` is a nic.
pub fn is_nic(d: &Device) -> bool {
    d.get("type").map(String::as_str) == Some("nic")
}

/// The managed network (or host bridge) a nic attaches to: its `network`, or the
/// `parent` of a bridged nic.
pub fn network_of(d: &Device) -> Option<&str> {
    if !is_nic(d) {
        return None;
    }
    if let Some(n) = d.get("network") {
        return Some(n);
    }
    match d.get("nictype").map(String::as_str) {
        Some("bridged") => d.get("parent").map(String::as_str),
        _ => None,
    }
}

/// The key `volatile.<dev>.<what>`.
pub fn volatile(dev: &str, what: &str) -> String {
    format!("volatile.{dev}.{what}")
}

/// Whether `v` may name a network interface: 1 to 15 bytes, no slash, space or colon.
pub fn is_ifname(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 15
        && v != "."
        && v != ".."
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b':' | b'%'))
}

/// Whether `v` is a MAC address (six hex pairs).
pub fn is_mac(v: &str) -> bool {
    let parts: Vec<&str> = v.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a MAC is multicast (the low bit of its first byte).
pub fn is_multicast(v: &str) -> bool {
    u8::from_str_radix(v.get(..2).unwrap_or("00"), 16).is_ok_and(|b| b & 1 == 1)
}

fn flag_ok(v: &str) -> bool {
    matches!(v, "true" | "false")
}

/// Checks a nic device; errors name the device and key.
pub fn validate(name: &str, d: &Device) -> Result<()> {
    let bad = |key: &str, why: &str| {
        Failure::invalid(format!(
            "Device {name:?}: invalid value {:?} for {key:?}: {why}",
            d.get(key).map_or("", String::as_str)
        ))
    };
    let nictype = match (d.get("nictype"), d.get("network")) {
        (Some(_), Some(_)) => {
            return Err(Failure::invalid(format!(
                "Device {name:?}: \"nictype\" cannot be set with \"network\" (the network decides)"
            )));
        }
        (None, Some(_)) => "bridged",
        (Some(t), None) => t.as_str(),
        (None, None) => {
            return Err(Failure::invalid(format!(
                "Device {name:?}: a nic needs \"network\" or \"nictype\""
            )));
        }
    };
    let own: &[&str] = match nictype {
        "bridged" => BRIDGED,
        "macvlan" => MACVLAN,
        "p2p" => P2P,
        "routed" => ROUTED,
        "physical" | "ipvlan" | "sriov" | "ovn" => {
            return Err(Failure::invalid(format!(
                "Device {name:?}: nictype {nictype:?} is not supported yet ({} are)",
                KINDS.join(", ")
            )));
        }
        other => {
            return Err(Failure::invalid(format!(
                "Device {name:?}: unknown nictype {other:?}"
            )));
        }
    };
    let veth = nictype != "macvlan";
    for (k, v) in d {
        let known = COMMON.contains(&k.as_str())
            || own.contains(&k.as_str())
            || (veth && VETH.contains(&k.as_str()));
        if !known {
            return Err(Failure::invalid(format!(
                "Device {name:?}: unknown key {k:?} for a {nictype} nic"
            )));
        }
        if v.contains(['\n', '\r', '\0']) {
            return Err(Failure::invalid(format!(
                "Device {name:?}: line breaks are not allowed in {k:?}"
            )));
        }
    }
    if d.contains_key("network") && d.contains_key("parent") {
        return Err(Failure::invalid(format!(
            "Device {name:?}: \"parent\" cannot be set with \"network\""
        )));
    }
    let needs =
        |what: &str| Failure::invalid(format!("Device {name:?}: a {nictype} nic needs {what}"));
    match nictype {
        "bridged" if !d.contains_key("network") && !d.contains_key("parent") => {
            return Err(needs("\"network\" or \"parent\""));
        }
        "macvlan" if !d.contains_key("parent") => return Err(needs("\"parent\"")),
        "routed" if !d.contains_key("ipv4.address") && !d.contains_key("ipv6.address") => {
            return Err(needs("\"ipv4.address\" or \"ipv6.address\""));
        }
        _ => {}
    }
    if d.get("vlan")
        .is_some_and(|v| !v.parse::<u16>().is_ok_and(|n| (1..=4094).contains(&n)))
    {
        return Err(bad("vlan", "expected a VLAN id from 1 to 4094"));
    }
    for key in ["ipv4.routes", "ipv6.routes"] {
        let v6 = key.starts_with("ipv6");
        let ok = |r: &str| {
            r.trim()
                .parse::<ipnet::IpNet>()
                .is_ok_and(|n| n.addr().is_ipv6() == v6)
        };
        if d.get(key).is_some_and(|v| !v.split(',').all(ok)) {
            return Err(bad(key, "expected subnets separated by commas"));
        }
    }
    for key in ["network", "parent"] {
        if d.get(key).is_some_and(|v| !is_ifname(v)) {
            return Err(bad(key, "expected an interface name"));
        }
    }
    for key in ["name", "host_name"] {
        if d.get(key).is_some_and(|v| !is_ifname(v)) {
            return Err(bad(key, "expected an interface name of at most 15 bytes"));
        }
    }
    if let Some(mac) = d.get("hwaddr") {
        if !is_mac(mac) {
            return Err(bad(
                "hwaddr",
                "expected a MAC address such as 00:16:3e:00:00:01",
            ));
        }
        if is_multicast(mac) {
            return Err(bad(
                "hwaddr",
                "a multicast MAC address cannot name an interface",
            ));
        }
    }
    if d.get("mtu")
        .is_some_and(|v| !v.parse::<u32>().is_ok_and(|m| (1280..=9000).contains(&m)))
    {
        return Err(bad("mtu", "expected an MTU from 1280 to 9000"));
    }
    if d.get("boot.priority")
        .is_some_and(|v| v.parse::<u32>().is_err())
    {
        return Err(bad("boot.priority", "expected a whole number"));
    }
    if d.get("ipv4.address")
        .is_some_and(|v| v.parse::<Ipv4Addr>().is_err())
    {
        return Err(bad("ipv4.address", "expected an IPv4 address"));
    }
    if d.get("ipv6.address")
        .is_some_and(|v| v.parse::<Ipv6Addr>().is_err())
    {
        return Err(bad("ipv6.address", "expected an IPv6 address"));
    }
    for key in [
        "security.mac_filtering",
        "security.ipv4_filtering",
        "security.ipv6_filtering",
    ] {
        if d.get(key).is_some_and(|v| !flag_ok(v)) {
            return Err(bad(key, "expected true or false"));
        }
    }
    for (key, needs) in [
        ("security.ipv4_filtering", "ipv4.address"),
        ("security.ipv6_filtering", "ipv6.address"),
    ] {
        if d.get(key).is_some_and(|v| v == "true") && !d.contains_key(needs) {
            return Err(Failure::invalid(format!(
                "Device {name:?}: {key:?} needs a static {needs:?}"
            )));
        }
    }
    for key in ["limits.ingress", "limits.egress", "limits.max"] {
        if d.get(key)
            .is_some_and(|v| berth_network::nic::parse_rate(v).is_none())
        {
            return Err(bad(key, "expected a bit rate such as 10Mbit"));
        }
    }
    Ok(())
}

/// A nic's limits in bits per second: (into the instance, out of it).
pub fn limits(d: &Device) -> (Option<u64>, Option<u64>) {
    let rate = |k: &str| d.get(k).and_then(|v| berth_network::nic::parse_rate(v));
    let max = rate("limits.max");
    (
        rate("limits.ingress").or(max),
        rate("limits.egress").or(max),
    )
}

/// A new MAC for a nic, in the 00:16:3e block.
pub fn new_mac() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    format!("00:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// A new host-side name: `veth` and 8 hex digits.
pub fn new_host_name() -> String {
    let b = uuid::Uuid::new_v4().into_bytes();
    format!("veth{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

/// The volatile keys instance `config` lacks for its nics `devices`: a MAC, an inside
/// name and a host name for each (none when all are there).
pub fn missing_volatile(
    config: &BTreeMap<String, String>,
    devices: &BTreeMap<String, Device>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (dev, d) in devices.iter().filter(|(_, d)| is_nic(d)) {
        let mac = volatile(dev, "hwaddr");
        if d.get("hwaddr").is_none() && !config.contains_key(&mac) {
            out.insert(mac, new_mac());
        }
        let inside = d.get("name").cloned().unwrap_or_else(|| dev.clone());
        if config.get(&volatile(dev, "name")) != Some(&inside) {
            out.insert(volatile(dev, "name"), inside);
        }
        let host = volatile(dev, "host_name");
        match d.get("host_name") {
            Some(h) if config.get(&host) != Some(h) => {
                out.insert(host, h.clone());
            }
            None if !config.contains_key(&host) => {
                out.insert(host, new_host_name());
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(pairs: &[(&str, &str)]) -> Device {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn nics_are_checked_naming_device_and_key() {
        validate("eth0", &dev(&[("type", "nic"), ("network", "br0")])).unwrap();
        validate(
            "eth0",
            &dev(&[
                ("type", "nic"),
                ("nictype", "bridged"),
                ("parent", "br0"),
                ("limits.max", "10Mbit"),
            ]),
        )
        .unwrap();
        for (d, key) in [
            (vec![("host_name", "a-name-longer-than-15")], "host_name"),
            (vec![("hwaddr", "01:00:5e:00:00:01")], "hwaddr"),
            (vec![("ipv4.address", "10.0.0.300")], "ipv4.address"),
            (vec![("limits.egress", "fast")], "limits.egress"),
            (vec![("security.ipv4_filtering", "true")], "ipv4.address"),
            (vec![("bogus", "1")], "bogus"),
            (vec![("parent", "br1")], "parent"),
        ] {
            let mut full = dev(&[("type", "nic"), ("network", "br0")]);
            for (k, v) in d {
                full.insert(k.to_owned(), v.to_owned());
            }
            let err = validate("eth0", &full).unwrap_err().to_string();
            assert!(err.contains("eth0") && err.contains(key), "{err}");
        }
        let err = validate(
            "eth0",
            &dev(&[("type", "nic"), ("nictype", "sriov"), ("parent", "x")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not supported yet"), "{err}");
        validate(
            "eth0",
            &dev(&[
                ("type", "nic"),
                ("nictype", "macvlan"),
                ("parent", "x"),
                ("vlan", "10"),
            ]),
        )
        .unwrap();
        validate(
            "eth0",
            &dev(&[
                ("type", "nic"),
                ("nictype", "routed"),
                ("ipv4.address", "192.0.2.1"),
            ]),
        )
        .unwrap();
    }

    #[test]
    fn volatile_keys_are_made_once() {
        let mut devices = BTreeMap::new();
        devices.insert(
            "eth0".to_owned(),
            dev(&[("type", "nic"), ("network", "br0")]),
        );
        let first = missing_volatile(&BTreeMap::new(), &devices);
        assert!(first["volatile.eth0.hwaddr"].starts_with("00:16:3e:"));
        assert_eq!(first["volatile.eth0.name"], "eth0");
        assert!(first["volatile.eth0.host_name"].starts_with("veth"));
        assert!(missing_volatile(&first, &devices).is_empty(), "kept");
    }
}
