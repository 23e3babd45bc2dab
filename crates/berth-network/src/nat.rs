//! Kernel DNAT for proxy devices with `nat=true`: traffic to a host address and port is
//! rewritten to an instance's address, in berthd's `inet` table, three chains per device
//! (`prert.KEY` for traffic arriving, `out.KEY` for the host's own, `pstrt.KEY` so that
//! the host's loopback and the instance itself, hairpinning, get answers). Written in one
//! `nft -f` batch like the networks' rules; removed with the device.

use std::net::SocketAddr;

use crate::error::NetworkError;

/// One forwarded port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnat {
    pub udp: bool,
    /// The host address and port (an unspecified address: every local address).
    pub listen: SocketAddr,
    /// The instance's address and port.
    pub connect: SocketAddr,
}

fn chains(key: &str) -> [String; 3] {
    [
        format!("prert.{key}"),
        format!("out.{key}"),
        format!("pstrt.{key}"),
    ]
}

/// The batch that gives device `key` exactly `rules`.
pub fn batch(table: &str, key: &str, rules: &[Dnat]) -> String {
    let [pre, out, post] = chains(key);
    let mut b = format!("add table inet {table}\n");
    for (chain, hook, prio) in [
        (&pre, "prerouting", -100),
        (&out, "output", -100),
        (&post, "postrouting", 100),
    ] {
        b += &format!(
            "add chain inet {table} {chain} {{ type nat hook {hook} priority {prio}; policy accept; }}\n\
             flush chain inet {table} {chain}\n"
        );
    }
    for r in rules {
        let fam = if r.connect.is_ipv4() { "ip" } else { "ip6" };
        let proto = if r.udp { "udp" } else { "tcp" };
        let to = match r.connect {
            SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        let dst = if r.listen.ip().is_unspecified() {
            "fib daddr type local".to_owned()
        } else {
            format!("{fam} daddr {}", r.listen.ip())
        };
        let rule = format!(
            "meta l4proto {proto} {dst} {proto} dport {} dnat {fam} to {to}",
            r.listen.port()
        );
        for chain in [&pre, &out] {
            b += &format!("add rule inet {table} {chain} {rule}\n");
        }
        let back = format!(
            "{fam} daddr {} {proto} dport {}",
            r.connect.ip(),
            r.connect.port()
        );
        // Connections from the host's loopback, and from the instance to itself, need a
        // source the instance can answer.
        let lo = if r.connect.is_ipv4() {
            "127.0.0.0/8"
        } else {
            "::1"
        };
        b += &format!("add rule inet {table} {post} {fam} saddr {lo} {back} masquerade\n");
        b += &format!(
            "add rule inet {table} {post} {fam} saddr {} {back} masquerade\n",
            r.connect.ip()
        );
    }
    b
}

fn nft(key: &str, what: &'static str, input: &str) -> Result<(), NetworkError> {
    berth_host::run_command_with_input("nft", &["-f", "-"], input.as_bytes())
        .map(drop)
        .map_err(|source| NetworkError::Command {
            network: key.to_owned(),
            what,
            source,
        })
}

/// Gives device `key` its DNAT rules; `bridge`, the instance's bridge, accepts routing
/// the host's loopback addresses so the host itself reaches a loopback listener.
pub fn apply(table: &str, key: &str, rules: &[Dnat], bridge: &str) -> Result<(), NetworkError> {
    if rules.iter().any(|r| r.listen.ip().is_loopback()) {
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"),
            "1",
        );
    }
    nft(
        key,
        "Writing the proxy's NAT rules",
        &batch(table, key, rules),
    )
}

/// Removes device `key`'s rules.
pub fn remove(table: &str, key: &str) -> Result<(), NetworkError> {
    let Some(have) = crate::host::nft_chains("inet", table) else {
        return Ok(());
    };
    let mut b = String::new();
    for c in chains(key).iter().filter(|c| have.contains(c)) {
        b += &format!("delete chain inet {table} {c}\n");
    }
    if b.is_empty() {
        return Ok(());
    }
    nft(key, "Removing the proxy's NAT rules", &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_forward_the_port_and_answer_loopback() {
        let b = batch(
            "berth_x",
            "c1.web",
            &[Dnat {
                udp: false,
                listen: "127.0.0.1:8080".parse().unwrap(),
                connect: "10.1.2.3:80".parse().unwrap(),
            }],
        );
        assert!(b.contains("add rule inet berth_x prert.c1.web meta l4proto tcp ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 10.1.2.3:80"), "{b}");
        assert!(
            b.contains(
                "pstrt.c1.web ip saddr 127.0.0.0/8 ip daddr 10.1.2.3 tcp dport 80 masquerade"
            ),
            "{b}"
        );
    }
}
