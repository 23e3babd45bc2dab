//! A bridge's rules in berthd's own nftables table (`inet berth_ID`): NAT out of its
//! subnets, accepting its traffic through the host, and the services dnsmasq offers on it.
//!
//! Each network owns four chains named after its bridge: `pstrt.NAME` (masquerade or
//! SNAT), `fwd.NAME`, `in.NAME` (DNS, DHCP, DHCPv6, ICMP) and `out.NAME` (DHCP replies
//! with a zero UDP checksum, which guests behind checksum offload otherwise drop). They
//! are written in one `nft -f` batch that creates, flushes and fills them, so a start
//! replaces them atomically and leaves the table byte-identical when nothing changed.
//! No other table is read or written here.

use std::collections::BTreeMap;

use ipnet::IpNet;

use crate::error::NetworkError;

/// The chain names of network `name`.
fn chains(name: &str) -> [String; 4] {
    [
        format!("pstrt.{name}"),
        format!("fwd.{name}"),
        format!("in.{name}"),
        format!("out.{name}"),
    ]
}

/// The batch that makes network `name`'s chains hold exactly its rules.
pub fn batch(table: &str, name: &str, config: &BTreeMap<String, String>) -> String {
    let get = |k: &str| config.get(k).map(String::as_str);
    let on = |k: &str, default: bool| get(k).map_or(default, |v| v == "true");
    let [pstrt, fwd, input, output] = chains(name);
    let mut b = format!("add table inet {table}\n");
    for (chain, hook, prio) in [
        (&pstrt, "type nat hook postrouting", 100),
        (&fwd, "type filter hook forward", 0),
        (&input, "type filter hook input", 0),
        (&output, "type filter hook output", 0),
    ] {
        b += &format!(
            "add chain inet {table} {chain} {{ {hook} priority {prio}; policy accept; }}\n\
             flush chain inet {table} {chain}\n"
        );
    }
    let rule = |chain: &str, r: &str| format!("add rule inet {table} {chain} {r}\n");
    let iif = format!("iifname \"{name}\"");
    let oif = format!("oifname \"{name}\"");
    for (key, fam, nat, nat_addr) in [
        ("ipv4.address", "ip", "ipv4.nat", "ipv4.nat.address"),
        ("ipv6.address", "ip6", "ipv6.nat", "ipv6.nat.address"),
    ] {
        let Some(net) = get(key).and_then(|v| v.parse::<IpNet>().ok()) else {
            continue;
        };
        let net = net.trunc();
        if on(nat, false) {
            let action = match get(nat_addr) {
                Some(a) => format!("snat {fam} to {a}"),
                None => "masquerade".to_owned(),
            };
            b += &rule(
                &pstrt,
                &format!("{fam} saddr {net} {fam} daddr != {net} {action}"),
            );
        }
    }
    if on("ipv4.routing", true) {
        b += &rule(&fwd, &format!("{iif} accept"));
        b += &rule(&fwd, &format!("{oif} accept"));
    }
    for r in [
        "udp dport { 53, 67, 547 } accept",
        "tcp dport 53 accept",
        "icmp type { echo-request, destination-unreachable, time-exceeded } accept",
        "icmpv6 type { echo-request, destination-unreachable, packet-too-big, time-exceeded, parameter-problem, nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept",
    ] {
        b += &rule(&input, &format!("{iif} {r}"));
    }
    b += &rule(&output, &format!("{oif} udp sport 67 udp checksum set 0"));
    b += &rule(
        &output,
        &format!("{oif} udp sport {{ 53, 67, 547 }} accept"),
    );
    b += &rule(&output, &format!("{oif} tcp sport 53 accept"));
    b
}

fn nft(network: &str, what: &'static str, input: &str) -> Result<String, NetworkError> {
    berth_host::run_command_with_input("nft", &["-f", "-"], input.as_bytes()).map_err(|source| {
        NetworkError::Command {
            network: network.to_owned(),
            what,
            source,
        }
    })
}

/// Writes network `name`'s rules, replacing what its chains held.
pub fn apply(
    table: &str,
    name: &str,
    config: &BTreeMap<String, String>,
) -> Result<(), NetworkError> {
    nft(
        name,
        "Writing the firewall rules",
        &batch(table, name, config),
    )
    .map(drop)
}

/// Whether network `name`'s chains are all in place (someone may have flushed the ruleset).
pub fn present(table: &str, name: &str) -> Result<bool, NetworkError> {
    let Some(have) = crate::host::nft_chains("inet", table) else {
        return Ok(false);
    };
    Ok(chains(name).iter().all(|c| have.contains(c)))
}

/// Removes network `name`'s chains, and the table when nothing else is left in it.
pub fn remove(table: &str, name: &str) -> Result<(), NetworkError> {
    let Some(have) = crate::host::nft_chains("inet", table) else {
        return Ok(());
    };
    let mine = chains(name);
    let mut b = String::new();
    for c in mine.iter().filter(|c| have.contains(c)) {
        b += &format!("delete chain inet {table} {c}\n");
    }
    if have.iter().all(|c| mine.contains(c)) {
        b = format!("delete table inet {table}\n");
    }
    if b.is_empty() {
        return Ok(());
    }
    nft(name, "Removing the firewall rules", &b).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_follows_the_configuration() {
        let mut c = BTreeMap::new();
        c.insert("ipv4.address".to_owned(), "10.9.8.1/24".to_owned());
        c.insert("ipv6.address".to_owned(), "none".to_owned());
        let b = batch("berth_x", "br0", &c);
        assert!(!b.contains("masquerade"), "{b}");
        assert!(b.contains("flush chain inet berth_x pstrt.br0"), "{b}");
        c.insert("ipv4.nat".to_owned(), "true".to_owned());
        let b = batch("berth_x", "br0", &c);
        assert!(
            b.contains("add rule inet berth_x pstrt.br0 ip saddr 10.9.8.0/24 ip daddr != 10.9.8.0/24 masquerade"),
            "{b}"
        );
        c.insert("ipv4.nat.address".to_owned(), "198.51.100.7".to_owned());
        let b = batch("berth_x", "br0", &c);
        assert!(b.contains("snat ip to 198.51.100.7"), "{b}");
    }
}
