//! The bridge driver's configuration keys: each checked, defaults filled in, and `auto`
//! addresses resolved to a subnet that overlaps no route (in any table), no address of the
//! host and no other managed network; nothing is sent on any network to find one.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::Env;
use crate::error::NetworkError;
use crate::host::overlap;

/// Every key a bridge takes, besides `user.*`.
const KEYS: &[&str] = &[
    "bridge.hwaddr",
    "bridge.mtu",
    "dns.domain",
    "dns.mode",
    "dns.nameservers",
    "dns.search",
    "ipv4.address",
    "ipv4.dhcp",
    "ipv4.dhcp.expiry",
    "ipv4.dhcp.gateway",
    "ipv4.dhcp.ranges",
    "ipv4.nat",
    "ipv4.nat.address",
    "ipv4.routes",
    "ipv4.routing",
    "ipv6.address",
    "ipv6.dhcp",
    "ipv6.dhcp.stateful",
    "ipv6.nat",
    "raw.dnsmasq",
];

/// Options of `raw.dnsmasq` that run a program or read a file berth did not write.
const RAW_DENIED: &[&str] = &[
    "dhcp-script",
    "dhcp-luascript",
    "conf-file",
    "conf-dir",
    "conf-script",
    "addn-hosts",
    "hostsdir",
    "dhcp-hostsfile",
    "dhcp-optsfile",
    "dhcp-hostsdir",
    "dhcp-optsdir",
    "read-ethers",
    "servers-file",
    "resolv-file",
    "dhcp-leasefile",
    "pid-file",
    "user",
    "group",
    "interface",
    "listen-address",
    "except-interface",
    "bind-interfaces",
    "bind-dynamic",
    "tftp-root",
    "enable-tftp",
    "log-facility",
];

/// The domain instances' names are answered in unless `dns.domain` says otherwise.
pub const DEFAULT_DOMAIN: &str = "berth";

fn is_bool(v: &str) -> bool {
    matches!(v, "true" | "false")
}

/// An address and prefix naming the bridge's own address (`10.1.2.1/24`).
fn host_cidr(key: &str, value: &str, v6: bool) -> Result<IpNet, NetworkError> {
    let net: IpNet = value.parse().map_err(|_| {
        NetworkError::invalid(
            key,
            value,
            "expected an address with its prefix, such as 10.1.2.1/24, or auto or none",
        )
    })?;
    if net.addr().is_ipv6() != v6 {
        return Err(NetworkError::invalid(
            key,
            value,
            if v6 {
                "expected an IPv6 address"
            } else {
                "expected an IPv4 address"
            },
        ));
    }
    if net.addr() == net.network() || (!v6 && net.addr() == net.broadcast()) {
        return Err(NetworkError::invalid(
            key,
            value,
            "the bridge's own address, not the subnet's",
        ));
    }
    let max = if v6 { 126 } else { 30 };
    if net.prefix_len() > max || net.prefix_len() < 8 {
        return Err(NetworkError::invalid(
            key,
            value,
            format!("expected a prefix from 8 to {max}"),
        ));
    }
    Ok(net)
}

fn is_mac(v: &str) -> bool {
    let parts: Vec<&str> = v.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a MAC is multicast (the low bit of its first byte).
pub fn is_multicast_mac(v: &str) -> bool {
    u8::from_str_radix(v.get(..2).unwrap_or("00"), 16).is_ok_and(|b| b & 1 == 1)
}

/// Checks `ipv4.dhcp.ranges`: `A-B[,C-D]` inside `net`.
fn dhcp_ranges(key: &str, value: &str, net: Option<&IpNet>) -> Result<(), NetworkError> {
    for part in value.split(',') {
        let (a, b) = part.split_once('-').ok_or_else(|| {
            NetworkError::invalid(key, value, "expected ranges such as 10.1.2.10-10.1.2.100")
        })?;
        let (a, b): (Ipv4Addr, Ipv4Addr) = match (a.trim().parse(), b.trim().parse()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(NetworkError::invalid(key, value, "expected IPv4 addresses")),
        };
        if a > b {
            return Err(NetworkError::invalid(
                key,
                value,
                "a range ends before it starts",
            ));
        }
        if let Some(net) = net
            && !(net.contains(&IpAddr::V4(a)) && net.contains(&IpAddr::V4(b)))
        {
            return Err(NetworkError::invalid(
                key,
                value,
                format!("outside the network's subnet {}", net.trunc()),
            ));
        }
    }
    Ok(())
}

/// Checks `raw.dnsmasq`: `option[=value]` lines, none that runs a program or reads a file.
fn raw_dnsmasq(value: &str) -> Result<(), NetworkError> {
    for line in value.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let option = line
            .split('=')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_start_matches("--");
        if RAW_DENIED.contains(&option) {
            return Err(NetworkError::invalid(
                "raw.dnsmasq",
                line,
                format!(
                    "{option} may not be set (it runs a program, reads a file or rebinds dnsmasq)"
                ),
            ));
        }
        if line.contains('\0') {
            return Err(NetworkError::invalid(
                "raw.dnsmasq",
                line,
                "NUL is not allowed",
            ));
        }
    }
    Ok(())
}

/// A subnet for `auto` of `family`, free of `used`: a /24 in 10.0.0.0/8, or a /64 of a
/// random unique local prefix. The first candidate is chosen from `seed` (the network's
/// name and the daemon's id), so a network keeps wanting the same subnet.
fn free_subnet(v6: bool, seed: &[u8], used: &[IpNet]) -> Option<IpNet> {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(seed);
    if v6 {
        // fdXX:XXXX:XXXX:YYYY::/64, the global id from the seed.
        for i in 0..1024u16 {
            let seg = |a: usize| u16::from_be_bytes([h[a], h[a + 1]]);
            let addr = Ipv6Addr::new(
                0xfd00 | u16::from(h[0]),
                seg(1),
                seg(3),
                seg(5).wrapping_add(i),
                0,
                0,
                0,
                1,
            );
            let net = IpNet::new(IpAddr::V6(addr), 64).ok()?;
            if !used.iter().any(|u| overlap(u, &net)) {
                return Some(net);
            }
        }
        return None;
    }
    let start = u32::from(u16::from_be_bytes([h[0], h[1]]));
    for i in 0..65536u32 {
        let n = (start + i) % 65536;
        let (b, c) = ((n >> 8) as u8, (n & 0xff) as u8);
        let net = IpNet::new(IpAddr::V4(Ipv4Addr::new(10, b, c, 1)), 24).ok()?;
        if !used.iter().any(|u| overlap(u, &net)) {
            return Some(net);
        }
    }
    None
}

/// What the host uses already, but bridge `name` itself: its routes (every table) and
/// addresses, with the link each is on.
fn host_subnets(name: &str) -> Result<Vec<(String, IpNet)>, NetworkError> {
    let mut used = crate::host::routes()?;
    used.extend(
        crate::host::addresses()?
            .into_iter()
            .map(|(l, a)| (l, a.trunc())),
    );
    used.retain(|(l, _)| l != name);
    Ok(used)
}

/// What is wrong with value `v` of key `k`, if anything (keys with their own checks and
/// `user.*` pass).
fn wrong(k: &str, v: &str) -> Option<&'static str> {
    let domain = |v: &str| {
        !v.is_empty()
            && v.split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    };
    let ipv4_subnets = |v: &str| {
        v.split(',')
            .all(|r| r.trim().parse::<IpNet>().is_ok_and(|n| n.addr().is_ipv4()))
    };
    match k {
        "ipv4.nat" | "ipv4.dhcp" | "ipv4.routing" | "ipv6.nat" | "ipv6.dhcp"
        | "ipv6.dhcp.stateful"
            if !is_bool(v) =>
        {
            Some("expected true or false")
        }
        "ipv4.nat.address" | "ipv4.dhcp.gateway" if v.parse::<Ipv4Addr>().is_err() => {
            Some("expected an IPv4 address")
        }
        "ipv4.dhcp.expiry"
            if v != "infinite"
                && v.trim_end_matches(['s', 'm', 'h', 'd'])
                    .parse::<u32>()
                    .is_err() =>
        {
            Some("expected a duration such as 1h or infinite")
        }
        "ipv4.routes" if !ipv4_subnets(v) => Some("expected IPv4 subnets such as 10.9.0.0/16"),
        "bridge.mtu" if !v.parse::<u32>().is_ok_and(|m| (1280..=9000).contains(&m)) => {
            Some("expected an MTU from 1280 to 9000")
        }
        "bridge.hwaddr" if !is_mac(v) => Some("expected a MAC address such as 00:16:3e:00:00:01"),
        "bridge.hwaddr" if is_multicast_mac(v) => {
            Some("a multicast MAC address cannot name an interface")
        }
        "dns.mode" if !matches!(v, "managed" | "dynamic" | "none") => {
            Some("expected managed, dynamic or none")
        }
        "dns.domain" if !domain(v) => Some("expected a domain name"),
        "dns.search" if !v.split(',').all(|d| domain(d.trim())) => {
            Some("expected domain names separated by commas")
        }
        "dns.nameservers" if !v.split(',').all(|n| n.trim().parse::<IpAddr>().is_ok()) => {
            Some("expected IP addresses")
        }
        _ => None,
    }
}

/// Checks every key of a bridge's configuration and returns the effective one: `auto`
/// resolved (with NAT on unless set), explicit subnets checked against the host's routes
/// and addresses (but the bridge's own) and the other networks.
pub fn validate(
    name: &str,
    mut config: BTreeMap<String, String>,
    env: &Env,
) -> Result<BTreeMap<String, String>, NetworkError> {
    for (k, v) in &config {
        if k.starts_with("user.") {
            continue;
        }
        if !KEYS.contains(&k.as_str()) {
            return Err(NetworkError::UnknownKey {
                kind: super::NAME,
                key: k.clone(),
            });
        }
        if k != "raw.dnsmasq" && v.contains(['\n', '\r', '\0']) {
            return Err(NetworkError::invalid(k, v, "line breaks are not allowed"));
        }
    }
    let mut host: Option<Vec<(String, IpNet)>> = None;
    for (key, v6) in [("ipv4.address", false), ("ipv6.address", true)] {
        let Some(value) = config.get(key).cloned() else {
            continue;
        };
        if value != "none" && host.is_none() {
            host = Some(host_subnets(name)?);
        }
        let host = host.as_deref().unwrap_or_default();
        match value.as_str() {
            "none" => {}
            "auto" => {
                let mut used: Vec<IpNet> = host.iter().map(|(_, n)| *n).collect();
                used.extend(env.taken.iter().map(IpNet::trunc));
                let seed = format!("{}/{name}", env.id);
                let net = free_subnet(v6, seed.as_bytes(), &used)
                    .ok_or(NetworkError::NoFreeSubnet { key })?;
                config.insert(key.to_owned(), net.to_string());
                let nat = if v6 { "ipv6.nat" } else { "ipv4.nat" };
                config
                    .entry(nat.to_owned())
                    .or_insert_with(|| "true".to_owned());
            }
            other => {
                let net = host_cidr(key, other, v6)?;
                if env.taken.iter().any(|t| overlap(t, &net)) {
                    return Err(NetworkError::invalid(
                        key,
                        other,
                        "overlaps the subnet of another managed network",
                    ));
                }
                if let Some((link, used)) = host.iter().find(|(_, u)| overlap(u, &net)) {
                    return Err(NetworkError::invalid(
                        key,
                        other,
                        format!("overlaps {used} on {link}"),
                    ));
                }
            }
        }
    }
    let v4 = config
        .get("ipv4.address")
        .and_then(|v| v.parse::<IpNet>().ok());
    for (k, v) in &config {
        if k == "raw.dnsmasq" {
            raw_dnsmasq(v)?;
        } else if k == "ipv4.dhcp.ranges" {
            dhcp_ranges(k, v, v4.as_ref())?;
        } else if let Some(reason) = wrong(k, v) {
            return Err(NetworkError::invalid(k, v, reason));
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn env() -> Env {
        Env {
            dir: "/nonexistent".into(),
            id: "0123abcd".into(),
            taken: vec!["10.200.0.0/16".parse().unwrap()],
        }
    }

    #[test]
    fn free_subnets_avoid_what_is_used() {
        let used: Vec<IpNet> = vec!["10.0.0.0/9".parse().unwrap()];
        for seed in ["a", "b", "c"] {
            let net = free_subnet(false, seed.as_bytes(), &used).unwrap();
            assert!(!overlap(&net, &used[0]), "{net}");
            assert_eq!(net.prefix_len(), 24);
            assert!(net.to_string().ends_with(".1/24"), "{net}");
        }
        assert_eq!(
            free_subnet(false, b"x", &["10.0.0.0/8".parse().unwrap()]),
            None,
            "all of 10/8 taken"
        );
        let v6 = free_subnet(true, b"x", &[]).unwrap();
        assert!(
            v6.to_string().starts_with("fd") && v6.to_string().ends_with("::1/64"),
            "{v6}"
        );
        // The same seed wants the same subnet.
        assert_eq!(
            free_subnet(false, b"a", &used),
            free_subnet(false, b"a", &used)
        );
    }

    #[test]
    fn keys_are_checked_naming_them() {
        let e = env();
        let ok = validate(
            "br0",
            map(&[
                ("ipv4.address", "10.9.8.1/24"),
                ("ipv6.address", "none"),
                ("ipv4.dhcp.ranges", "10.9.8.10-10.9.8.20"),
                ("bridge.mtu", "1500"),
                ("raw.dnsmasq", "dhcp-option=42,10.9.8.1\n# comment"),
                ("user.x", "y"),
            ]),
            &e,
        )
        .unwrap();
        assert_eq!(ok["ipv4.address"], "10.9.8.1/24");
        assert!(!ok.contains_key("ipv4.nat"), "NAT defaults only with auto");
        for (k, v) in [
            ("ipv4.address", "10.9.8.0/24"),
            ("ipv4.address", "10.9.8.1"),
            ("ipv4.address", "fd00::1/64"),
            ("ipv4.nat", "yes"),
            ("ipv4.dhcp.ranges", "10.9.9.10-10.9.9.20"),
            ("bridge.hwaddr", "01:00:5e:00:00:01"),
            ("bridge.mtu", "100"),
            ("raw.dnsmasq", "dhcp-script=/bin/sh"),
            ("raw.dnsmasq", "conf-file=/etc/shadow"),
            ("dns.mode", "loud"),
            ("bogus", "1"),
        ] {
            let mut c = map(&[("ipv4.address", "10.9.8.1/24"), ("ipv6.address", "none")]);
            c.insert(k.to_owned(), v.to_owned());
            let err = validate("br0", c, &e).unwrap_err();
            assert!(err.to_string().contains(k), "{k}={v}: {err}");
        }
    }
}
