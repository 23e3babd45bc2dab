//! The host side of an instance's nic: the veth pair berthd makes and hands to liblxc,
//! its traffic limits (tc), its source filters (berthd's `bridge` nftables table) and its
//! conntrack limit (a chain in the `inet` table of the same name).
//!
//! A pair is made with its host end attached to the bridge and up, its other end (the
//! "peer", named `PEER`) left on the host for liblxc to move into the container under its
//! inside name. Deleting the host end deletes the pair, wherever the peer is. Every
//! operation here is idempotent: a pair left by a crash under the same host name is
//! replaced, a missing link is already deleted.

use std::collections::BTreeMap;

use crate::error::NetworkError;

/// What a bridged nic is on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Veth {
    /// The host end's name (`volatile.<dev>.host_name`).
    pub host_name: String,
    /// The other end's name while it is on the host.
    pub peer: String,
    /// The MAC the container sees.
    pub hwaddr: String,
    pub mtu: u32,
    /// The bridge the host end joins (none: it stands alone, p2p or routed).
    pub bridge: Option<String>,
}

/// Limits in bits per second: `ingress` into the instance, `egress` out of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub ingress: Option<u64>,
    pub egress: Option<u64>,
}

/// Source filters on what the instance sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this MAC (`security.mac_filtering`).
    pub mac: Option<String>,
    /// Only this IPv4 address, besides DHCP (`security.ipv4_filtering`).
    pub ipv4: Option<String>,
    /// Only this IPv6 address and link-local ones, no router advertisements
    /// (`security.ipv6_filtering`).
    pub ipv6: Option<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.mac.is_none() && self.ipv4.is_none() && self.ipv6.is_none()
    }
}

fn ip(link: &str, what: &'static str, args: &[&str]) -> Result<String, NetworkError> {
    berth_host::run_command("ip", args).map_err(|source| NetworkError::Command {
        network: link.to_owned(),
        what,
        source,
    })
}

fn tc(link: &str, args: &[&str]) -> Result<String, NetworkError> {
    berth_host::run_command("tc", args).map_err(|source| NetworkError::Command {
        network: link.to_owned(),
        what: "Setting a traffic limit",
        source,
    })
}

/// Whether the host (the calling thread's network namespace) has a link named `name`.
pub fn exists(name: &str) -> bool {
    berth_host::run_command("ip", &["link", "show", "dev", name]).is_ok()
}

/// Deletes link `name` (and its peer, for a veth); nothing when it is gone.
pub fn delete(name: &str) -> Result<(), NetworkError> {
    if !exists(name) {
        return Ok(());
    }
    match ip(name, "Deleting a link", &["link", "del", name]) {
        Err(_) if !exists(name) => Ok(()),
        other => other.map(drop),
    }
}

/// Makes the pair: the host end joins the bridge, without IPv6 of its own, and comes
/// up; one `ip -batch` (a start makes no other process). A pair left under the same
/// names (a crash) is replaced.
pub fn create(v: &Veth) -> Result<(), NetworkError> {
    let mtu = v.mtu.to_string();
    let master = v
        .bridge
        .as_ref()
        .map(|b| format!(" master {b}"))
        .unwrap_or_default();
    let batch = format!(
        "link add name {h} mtu {mtu} type veth peer name {p} mtu {mtu} address {mac}\n\
         link set {h}{master} up\n",
        h = v.host_name,
        p = v.peer,
        mac = v.hwaddr,
    );
    let run = || {
        berth_host::run_command_with_input("ip", &["-batch", "-"], batch.as_bytes()).map_err(
            |source| NetworkError::Command {
                network: v.host_name.clone(),
                what: "Creating the veth pair",
                source,
            },
        )
    };
    let made = match run() {
        Err(_) if exists(&v.host_name) || exists(&v.peer) => {
            delete(&v.host_name)?;
            delete(&v.peer)?;
            run()
        }
        other => other,
    };
    if let Err(e) = made {
        let _ = delete(&v.host_name);
        return Err(e);
    }
    // The host end needs no address of its own.
    let _ = std::fs::write(
        format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", v.host_name),
        "1",
    );
    Ok(())
}

/// Makes a macvlan (mode bridge) on host interface `parent`, named `v.host_name` until
/// liblxc moves it; `parent` of the form `LINK.VLAN` is made as a VLAN of LINK first when
/// it does not exist (and left for the other instances on that VLAN).
pub fn create_macvlan(v: &Veth, parent: &str) -> Result<(), NetworkError> {
    if let Some((link, vlan)) = parent.rsplit_once('.')
        && vlan.parse::<u16>().is_ok()
        && !exists(parent)
    {
        let batch = format!(
            "link add link {link} name {parent} type vlan id {vlan}\nlink set {parent} up\n"
        );
        berth_host::run_command_with_input("ip", &["-batch", "-"], batch.as_bytes()).map_err(
            |source| NetworkError::Command {
                network: parent.to_owned(),
                what: "Creating the VLAN",
                source,
            },
        )?;
    }
    delete(&v.host_name)?;
    ip(
        &v.host_name,
        "Creating the macvlan",
        &[
            "link",
            "add",
            "link",
            parent,
            "name",
            &v.host_name,
            "mtu",
            &v.mtu.to_string(),
            "address",
            &v.hwaddr,
            "type",
            "macvlan",
            "mode",
            "bridge",
        ],
    )
    .map(drop)
}

/// Routes `routes` (subnets) to host end `link` (a p2p nic).
pub fn route(link: &str, routes: &[String]) -> Result<(), NetworkError> {
    for r in routes {
        ip(
            link,
            "Adding a route to the nic",
            &["route", "replace", r, "dev", link],
        )?;
    }
    Ok(())
}

/// Routes an instance's `addresses` through host end `link` (a routed nic): the host end
/// gets the instance's gateways (`gw`: IPv4, IPv6), each address a host route, and on
/// `parent` a proxy neighbour entry so the parent's network reaches it. Forwarding goes
/// on; nothing is sent to check an address.
pub fn route_instance(
    link: &str,
    addresses: &[String],
    parent: Option<&str>,
    gw: (&str, &str),
) -> Result<(), NetworkError> {
    let sysctl = |path: String, v: &str| {
        let _ = std::fs::write(format!("/proc/sys/net/{path}"), v);
    };
    let mut batch = String::new();
    for a in addresses {
        let v6 = a.contains(':');
        if v6 {
            batch += &format!("-6 addr replace {}/64 dev {link} scope link\n", gw.1);
            batch += &format!("-6 route replace {a}/128 dev {link}\n");
            sysctl(format!("ipv6/conf/{link}/forwarding"), "1");
            sysctl("ipv6/conf/all/forwarding".into(), "1");
        } else {
            batch += &format!("addr replace {}/32 dev {link}\n", gw.0);
            batch += &format!("route replace {a}/32 dev {link}\n");
            sysctl("ipv4/ip_forward".into(), "1");
        }
        if let Some(p) = parent {
            let fam = if v6 { "-6 " } else { "" };
            batch += &format!("{fam}neigh replace proxy {a} dev {p}\n");
            if v6 {
                sysctl(format!("ipv6/conf/{p}/proxy_ndp"), "1");
            }
        }
    }
    berth_host::run_command_with_input("ip", &["-batch", "-"], batch.as_bytes())
        .map(drop)
        .map_err(|source| NetworkError::Command {
            network: link.to_owned(),
            what: "Routing the instance",
            source,
        })
}

/// Removes the proxy neighbour entries of a routed nic's `addresses` on `parent`.
pub fn unproxy(addresses: &[String], parent: &str) {
    for a in addresses {
        let fam = if a.contains(':') { "-6" } else { "-4" };
        let _ = berth_host::run_command("ip", &[fam, "neigh", "del", "proxy", a, "dev", parent]);
    }
}

/// Moves host link `link` (a pair's peer, a macvlan) into the network namespace of
/// process `pid`, named `inside` there, brings it up and runs `then` there (`ip -batch`
/// lines: a routed nic's address and gateway); a nic added to a running instance.
pub fn move_into(link: &str, pid: i32, inside: &str, then: &[String]) -> Result<(), NetworkError> {
    let pid_s = pid.to_string();
    ip(
        link,
        "Moving the nic into the instance",
        &["link", "set", link, "netns", &pid_s],
    )?;
    let net = format!("--net=/proc/{pid}/ns/net");
    let mut batch = format!("link set {link} name {inside} up\n");
    for line in then {
        batch += line;
        batch.push('\n');
    }
    berth_host::run_command_with_input(
        "nsenter",
        &[net.as_str(), "--", "ip", "-batch", "-"],
        batch.as_bytes(),
    )
    .map_err(|source| NetworkError::Command {
        network: link.to_owned(),
        what: "Naming the nic in the instance",
        source,
    })
    .map(drop)
}

/// A rate for tc, in bits per second.
fn rate(bits: u64) -> String {
    format!("{bits}bit")
}

/// The IFB device that shapes what nic `link` sends (its egress limit): the kernel
/// polices nothing without `act_police`, so traffic entering the host end is redirected
/// to it and shaped there, as traffic into the instance is on the host end itself.
pub fn ifb_of(link: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(link.as_bytes());
    format!("bifb{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3])
}

/// Shapes the traffic leaving `link` to `bits` per second with one HTB class.
fn shape(link: &str, bits: u64) -> Result<(), NetworkError> {
    tc(
        link,
        &[
            "qdisc", "add", "dev", link, "root", "handle", "1:0", "htb", "default", "10",
        ],
    )?;
    tc(
        link,
        &[
            "class",
            "add",
            "dev",
            link,
            "parent",
            "1:0",
            "classid",
            "1:10",
            "htb",
            "rate",
            &rate(bits),
        ],
    )
    .map(drop)
}

/// Sets the limits of the host end `link` (and removes those no longer asked for):
/// traffic into the instance leaves the host end and is shaped there; traffic out of it
/// enters the host end and is shaped on its IFB device ([`ifb_of`]).
pub fn set_limits(link: &str, limits: Limits) -> Result<(), NetworkError> {
    let _ = berth_host::run_command("tc", &["qdisc", "del", "dev", link, "root"]);
    let _ = berth_host::run_command("tc", &["qdisc", "del", "dev", link, "ingress"]);
    let ifb = ifb_of(link);
    delete(&ifb)?;
    if let Some(bits) = limits.ingress {
        shape(link, bits)?;
    }
    if let Some(bits) = limits.egress {
        ip(
            link,
            "Creating the nic's IFB device",
            &["link", "add", "name", &ifb, "type", "ifb"],
        )?;
        ip(
            link,
            "Creating the nic's IFB device",
            &["link", "set", &ifb, "up"],
        )?;
        shape(&ifb, bits)?;
        tc(
            link,
            &["qdisc", "add", "dev", link, "handle", "ffff:", "ingress"],
        )?;
        tc(
            link,
            &[
                "filter", "add", "dev", link, "parent", "ffff:", "protocol", "all", "u32", "match",
                "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", &ifb,
            ],
        )?;
    }
    Ok(())
}

/// The chains of nic `link` in berthd's bridge table.
fn chains(link: &str) -> [String; 2] {
    [format!("in.{link}"), format!("fwd.{link}")]
}

/// The batch that gives nic `link` exactly the rules of `filter`.
pub fn filter_batch(table: &str, link: &str, filter: &Filter) -> String {
    let mut b = format!("add table bridge {table}\n");
    let [input, fwd] = chains(link);
    for (chain, hook) in [(&input, "input"), (&fwd, "forward")] {
        b += &format!(
            "add chain bridge {table} {chain} {{ type filter hook {hook} priority -200; policy accept; }}\n\
             flush chain bridge {table} {chain}\n"
        );
    }
    let iif = format!("iifname \"{link}\"");
    let mut rules: Vec<String> = Vec::new();
    if let Some(mac) = &filter.mac {
        rules.push(format!("{iif} ether saddr != {mac} counter drop"));
        rules.push(format!("{iif} arp saddr ether != {mac} counter drop"));
        rules.push(format!(
            "{iif} icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} ether saddr != {mac} counter drop"
        ));
    }
    if let Some(v4) = &filter.ipv4 {
        // DHCP from an address-less client, then only its own address.
        rules.push(format!(
            "{iif} ether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp dport 67 accept"
        ));
        rules.push(format!("{iif} arp saddr ip != {v4} counter drop"));
        rules.push(format!("{iif} ether type ip ip saddr != {v4} counter drop"));
    }
    if let Some(v6) = &filter.ipv6 {
        rules.push(format!("{iif} icmpv6 type nd-router-advert counter drop"));
        rules.push(format!(
            "{iif} ether type ip6 ip6 saddr != {{ {v6}, fe80::/10, :: }} counter drop"
        ));
    }
    if filter.ipv4.is_some() || filter.ipv6.is_some() {
        // Only IP, ARP and the VLAN-less rest stay possible ways out.
        rules.push(format!(
            "{iif} ether type != {{ ip, arp, ip6 }} counter drop"
        ));
    }
    for chain in [&input, &fwd] {
        for r in &rules {
            b += &format!("add rule bridge {table} {chain} {r}\n");
        }
    }
    b
}

fn nft(link: &str, what: &'static str, input: &str) -> Result<(), NetworkError> {
    berth_host::run_command_with_input("nft", &["-f", "-"], input.as_bytes())
        .map(drop)
        .map_err(|source| NetworkError::Command {
            network: link.to_owned(),
            what,
            source,
        })
}

/// Gives nic `link` the rules of `filter` (none: its chains go).
pub fn set_filter(table: &str, link: &str, filter: &Filter) -> Result<(), NetworkError> {
    if filter.is_empty() {
        return remove_filter(table, link);
    }
    nft(
        link,
        "Writing the nic's filters",
        &filter_batch(table, link, filter),
    )
}

/// Removes nic `link`'s chains, and the table when nothing else is left in it.
pub fn remove_filter(table: &str, link: &str) -> Result<(), NetworkError> {
    let Some(have) = crate::host::nft_chains("bridge", table) else {
        return Ok(());
    };
    let mine = chains(link);
    let mut b = String::new();
    for c in mine.iter().filter(|c| have.contains(c)) {
        b += &format!("delete chain bridge {table} {c}\n");
    }
    if !have.is_empty() && have.iter().all(|c| mine.contains(c)) {
        b = format!("delete table bridge {table}\n");
    }
    if b.is_empty() {
        return Ok(());
    }
    nft(link, "Removing the nic's filters", &b)
}

/// The chain of nic `link`'s conntrack limit, in both families.
fn ct_chain(link: &str) -> String {
    format!("ct.{link}")
}

/// The batch that limits nic `link` (ifindex `index`; `bridged` when its host end is a
/// bridge port) to `limit` tracked connections. What a bridge port sends reaches the IP
/// layer as the bridge's, so the bridge table marks it by port first (the mark carries
/// the link's index, and is cleared once counted); a lone host end is matched by name.
pub fn conntrack_batch(table: &str, link: &str, index: u32, bridged: bool, limit: u32) -> String {
    let chain = ct_chain(link);
    let mark = 0xb000_0000_u32 | (index & 0x0fff_ffff);
    let mut b = format!(
        "add table inet {table}
\
         add chain inet {table} {chain} {{ type filter hook prerouting priority -150; policy accept; }}
\
         flush chain inet {table} {chain}
"
    );
    let matching = if bridged {
        format!("meta mark {mark:#x}")
    } else {
        format!("iifname \"{link}\"")
    };
    b += &format!(
        "add rule inet {table} {chain} {matching} ct state new ct count over {limit} counter drop
"
    );
    if bridged {
        b += &format!(
            "add rule inet {table} {chain} meta mark {mark:#x} meta mark set 0
\
             add table bridge {table}
\
             add chain bridge {table} {chain} {{ type filter hook prerouting priority -300; policy accept; }}
\
             flush chain bridge {table} {chain}
\
             add rule bridge {table} {chain} iifname \"{link}\" meta mark set {mark:#x}
"
        );
    }
    b
}

/// Limits nic `link` to `limit` connections tracked at once, for what it sends to the
/// host or through it (routed or NATed); see [`conntrack_batch`].
pub fn set_conntrack(
    table: &str,
    link: &str,
    bridged: bool,
    limit: u32,
) -> Result<(), NetworkError> {
    // From ip, not /sys/class/net, which shows the links of whoever mounted sysfs.
    let index = crate::host::index(link)?;
    nft(
        link,
        "Writing the nic's conntrack limit",
        &conntrack_batch(table, link, index, bridged, limit),
    )
}

/// Removes nic `link`'s conntrack limit, and each table when nothing else is left in it.
pub fn remove_conntrack(table: &str, link: &str) -> Result<(), NetworkError> {
    let chain = ct_chain(link);
    let mut b = String::new();
    for family in ["inet", "bridge"] {
        let Some(have) = crate::host::nft_chains(family, table) else {
            continue;
        };
        if have.iter().all(|c| *c == chain) {
            b += &format!("delete table {family} {table}\n");
        } else if have.contains(&chain) {
            b += &format!("delete chain {family} {table} {chain}\n");
        }
    }
    if b.is_empty() {
        return Ok(());
    }
    nft(link, "Removing the nic's conntrack limit", &b)
}

/// Parses a bit rate as LXD writes it (`10Mbit`, `1Gbit`, `512kbit`, `100Mibit`, or
/// bytes: `10MB`): bits per second.
pub fn parse_rate(v: &str) -> Option<u64> {
    let split = v.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = v.split_at(split);
    let num: f64 = num.parse().ok()?;
    let units: BTreeMap<&str, f64> = [
        ("bit", 1.0),
        ("kbit", 1e3),
        ("Mbit", 1e6),
        ("Gbit", 1e9),
        ("Tbit", 1e12),
        ("Kibit", 1024.0),
        ("Mibit", 1_048_576.0),
        ("Gibit", 1_073_741_824.0),
        ("B", 8.0),
        ("kB", 8e3),
        ("MB", 8e6),
        ("GB", 8e9),
    ]
    .into_iter()
    .collect();
    let bits = num * units.get(unit)?;
    (1.0..1e15).contains(&bits).then_some(bits as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_lxd_writes_them() {
        assert_eq!(parse_rate("10Mbit"), Some(10_000_000));
        assert_eq!(parse_rate("1.5Gbit"), Some(1_500_000_000));
        assert_eq!(parse_rate("1MB"), Some(8_000_000));
        assert_eq!(parse_rate("10"), None);
        assert_eq!(parse_rate("10 parsecs"), None);
    }

    #[test]
    fn filters_name_the_link_and_let_dhcp_through() {
        let f = Filter {
            mac: Some("00:16:3e:00:00:01".into()),
            ipv4: Some("10.1.2.3".into()),
            ipv6: None,
        };
        let b = filter_batch("berth_x", "veth1", &f);
        assert!(b.contains("add rule bridge berth_x fwd.veth1 iifname \"veth1\" ether saddr != 00:16:3e:00:00:01 counter drop"), "{b}");
        assert!(b.contains("udp dport 67 accept"), "{b}");
        assert!(b.contains("ip saddr != 10.1.2.3 counter drop"), "{b}");
    }

    #[test]
    fn a_pair_is_made_and_deleted_in_a_namespace() {
        berth_host::unshare_netns().unwrap();
        berth_host::run_command("ip", &["link", "add", "brt0", "type", "bridge"]).unwrap();
        let v = Veth {
            host_name: "vethtest0".into(),
            peer: "vethtest0p".into(),
            hwaddr: "00:16:3e:12:34:56".into(),
            mtu: 1400,
            bridge: Some("brt0".into()),
        };
        create(&v).unwrap();
        create(&v).unwrap();
        let host = crate::host::link("vethtest0").unwrap().unwrap();
        assert_eq!((host.master.as_deref(), host.mtu), (Some("brt0"), 1400));
        assert_eq!(
            crate::host::link("vethtest0p").unwrap().unwrap().address,
            v.hwaddr
        );
        set_limits(
            "vethtest0",
            Limits {
                ingress: Some(10_000_000),
                egress: Some(5_000_000),
            },
        )
        .unwrap();
        let qdiscs = berth_host::run_command("tc", &["qdisc", "show", "dev", "vethtest0"]).unwrap();
        assert!(
            qdiscs.contains("htb") && qdiscs.contains("ingress"),
            "{qdiscs}"
        );
        let ifb = ifb_of("vethtest0");
        assert!(exists(&ifb));
        set_limits("vethtest0", Limits::default()).unwrap();
        assert!(!exists(&ifb));
        set_filter(
            "berth_t",
            "vethtest0",
            &Filter {
                mac: Some(v.hwaddr.clone()),
                ..Filter::default()
            },
        )
        .unwrap();
        assert!(
            berth_host::run_command("nft", &["list", "table", "bridge", "berth_t"])
                .unwrap()
                .contains("ether saddr != 00:16:3e:12:34:56")
        );
        remove_filter("berth_t", "vethtest0").unwrap();
        assert!(berth_host::run_command("nft", &["list", "table", "bridge", "berth_t"]).is_err());
        set_limits(
            "vethtest0",
            Limits {
                ingress: None,
                egress: Some(5_000_000),
            },
        )
        .unwrap();
        delete("vethtest0").unwrap();
        delete(&ifb).unwrap();
        assert!(!exists("vethtest0") && !exists("vethtest0p") && !exists(&ifb));
        delete("vethtest0").unwrap();
    }
}
