//! The bridge driver on a real kernel: each test moves its thread into a network namespace
//! of its own, so bridges, addresses, sysctls, dnsmasq and nftables tables it makes are
//! invisible to the host and vanish with the test.

use std::collections::BTreeMap;

use super::*;

fn netns() {
    berth_host::unshare_netns().expect("unshare a network namespace (run as root)");
    berth_host::run_command("ip", &["link", "set", "lo", "up"]).unwrap();
}

fn env(dir: &Path) -> Env {
    Env {
        dir: dir.join("net"),
        id: "0badcafe".to_owned(),
        taken: vec![],
    }
}

fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Takes a network down when the test ends, passed or not: no dnsmasq outlives it.
struct Down<'a>(&'a dyn Driver);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

fn auto() -> BTreeMap<String, String> {
    crate::with_defaults(NAME, BTreeMap::new()).unwrap()
}

fn nft_table(table: &str) -> String {
    berth_host::run_command("nft", &["list", "table", "inet", table]).unwrap_or_default()
}

/// The local addresses something listens on port 53 at, from `ss`.
fn listening_53() -> Vec<String> {
    let out = berth_host::run_command("ss", &["-Hlnu", "sport", "= :53"]).unwrap();
    out.lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
        .collect()
}

#[test]
fn a_bridge_comes_up_idempotently_and_goes_away() {
    netns();
    let dir = tempfile::tempdir().unwrap();
    let net = load(
        "berthtest0",
        config(&[
            ("ipv4.address", "10.9.8.1/24"),
            ("ipv4.nat", "true"),
            ("ipv6.address", "auto"),
        ]),
        env(dir.path()),
    )
    .unwrap();
    let v6 = net.config()["ipv6.address"].clone();
    assert!(v6.starts_with("fd") && v6.ends_with("::1/64"), "{v6}");
    let _down = Down(net.as_ref());
    net.start().unwrap();

    let link = host::link("berthtest0")
        .unwrap()
        .expect("the bridge exists");
    assert_eq!(link.kind, "bridge");
    assert_eq!(link.alias, "berth:0badcafe");
    let state = net.state().unwrap();
    assert_eq!(state.state, "up");
    let addrs: Vec<String> = state
        .addresses
        .iter()
        .filter(|a| a.scope == "global")
        .map(|a| format!("{}/{}", a.address, a.netmask))
        .collect();
    assert_eq!(addrs, vec!["10.9.8.1/24".to_owned(), v6.clone()]);
    // dnsmasq answers on the bridge's addresses only.
    let listen = listening_53();
    assert!(listen.contains(&"10.9.8.1:53".to_owned()), "{listen:?}");
    assert!(
        !listen
            .iter()
            .any(|l| l.starts_with("0.0.0.0") || l.starts_with("127.")),
        "{listen:?}"
    );
    let files = dnsmasq::Files {
        dir: dir.path().join("net"),
    };
    let (pid, _) = dnsmasq::running(&files).expect("dnsmasq runs");
    let table = nft_table("berth_0badcafe");
    assert!(table.contains("masquerade"), "{table}");
    assert_eq!(
        net.leases()
            .unwrap()
            .iter()
            .filter(|l| l.kind == "gateway")
            .count(),
        2
    );

    // A second start keeps everything as it is.
    net.start().unwrap();
    assert_eq!(dnsmasq::running(&files).unwrap().0, pid, "the same dnsmasq");
    assert_eq!(nft_table("berth_0badcafe"), table, "the same rules");
    assert!(!net.check().unwrap(), "nothing was missing");

    // Someone flushes the ruleset: check puts it back.
    berth_host::run_command("nft", &["flush", "ruleset"]).unwrap();
    assert!(net.check().unwrap());
    assert_eq!(nft_table("berth_0badcafe"), table);

    // A new configuration replaces dnsmasq and the rules.
    let net = load(
        "berthtest0",
        config(&[("ipv4.address", "10.9.7.1/24"), ("ipv6.address", "none")]),
        env(dir.path()),
    )
    .unwrap();
    let _down2 = Down(net.as_ref());
    net.start().unwrap();
    let state = net.state().unwrap();
    let globals: Vec<&str> = state
        .addresses
        .iter()
        .filter(|a| a.scope == "global")
        .map(|a| a.address.as_str())
        .collect();
    assert_eq!(globals, vec!["10.9.7.1"]);
    assert_ne!(dnsmasq::running(&files).unwrap().0, pid);
    assert!(!nft_table("berth_0badcafe").contains("masquerade"));

    net.stop().unwrap();
    assert!(host::link("berthtest0").unwrap().is_none());
    assert!(dnsmasq::running(&files).is_none());
    assert_eq!(nft_table("berth_0badcafe"), "", "the table is gone");
    net.stop().unwrap();
    net.delete().unwrap();
    assert!(!dir.path().join("net").exists());
}

#[test]
fn a_foreign_link_is_not_taken_over() {
    netns();
    let dir = tempfile::tempdir().unwrap();
    berth_host::run_command("ip", &["link", "add", "berthtest1", "type", "bridge"]).unwrap();
    let net = load(
        "berthtest1",
        config(&[("ipv4.address", "10.9.6.1/24"), ("ipv6.address", "none")]),
        env(dir.path()),
    )
    .unwrap();
    let err = net.start().unwrap_err();
    assert!(matches!(err, NetworkError::LinkTaken { .. }), "{err}");
    net.stop().unwrap();
    assert!(host::link("berthtest1").unwrap().is_some(), "left alone");
}

#[test]
fn auto_avoids_what_the_host_uses() {
    netns();
    let dir = tempfile::tempdir().unwrap();
    let first = load("berthtest2", auto(), env(dir.path())).unwrap();
    let want: IpNet = first.config()["ipv4.address"].parse().unwrap();
    assert_eq!(first.config()["ipv4.nat"], "true");
    // The same subnet, on another link: auto moves on.
    berth_host::run_command("ip", &["link", "add", "other9", "type", "bridge"]).unwrap();
    berth_host::run_command(
        "ip",
        &["addr", "add", &want.trunc().to_string(), "dev", "other9"],
    )
    .unwrap();
    let second = load("berthtest2", auto(), env(dir.path())).unwrap();
    let got: IpNet = second.config()["ipv4.address"].parse().unwrap();
    assert!(!host::overlap(&got, &want), "{got} overlaps {want}");
    // Or taken by another managed network.
    let mut e = env(dir.path());
    e.taken = vec![got];
    let third = load("berthtest2", auto(), e).unwrap();
    let other: IpNet = third.config()["ipv4.address"].parse().unwrap();
    assert!(!host::overlap(&other, &got) && !host::overlap(&other, &want));
    // An explicit subnet that overlaps either is refused, naming the key and the link.
    let err = load(
        "berthtest2",
        config(&[("ipv4.address", &format!("{}/16", want.addr()))]),
        env(dir.path()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("ipv4.address") && err.contains("other9"),
        "{err}"
    );
    let mut e = env(dir.path());
    e.taken = vec![got];
    let err = load(
        "berthtest2",
        config(&[("ipv4.address", &got.to_string())]),
        e,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("another managed network"), "{err}");
}

#[test]
fn a_held_port_53_is_named() {
    netns();
    let dir = tempfile::tempdir().unwrap();
    let _held = std::net::UdpSocket::bind("0.0.0.0:53").unwrap();
    let net = load(
        "berthtest3",
        config(&[("ipv4.address", "10.9.5.1/24"), ("ipv6.address", "none")]),
        env(dir.path()),
    )
    .unwrap();
    let err = net.start().unwrap_err().to_string();
    assert!(err.contains("Address already in use"), "{err}");
    assert!(err.contains("port 53 is held by"), "{err}");
    net.stop().unwrap();
    assert!(host::link("berthtest3").unwrap().is_none());
    assert_eq!(nft_table("berth_0badcafe"), "");
}
