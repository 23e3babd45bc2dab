//! Managed bridge networks through the real `lxc` client and the API: create, inspect,
//! edit, rename, delete; bad input; restarts; a flushed ruleset; a held port 53; the
//! host's firewall warned about. Each daemon lives in a network namespace of its own, so
//! nothing here reaches the host's links, rules or sysctls.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::time::{Duration, Instant};

use berth_api::network::{Network, NetworkLease, NetworkState};
use berth_api::warning::Warning;
use berth_e2e::{Daemon, fails, ok};

/// The text of berthd's nft table, as `nft list table` shows it.
fn table(d: &Daemon) -> String {
    let tables = d.netns().run("nft", &["list", "tables"]);
    let name = tables
        .lines()
        .find_map(|l| l.strip_prefix("table inet berth_"))
        .map(|id| format!("berth_{id}"));
    match name {
        Some(n) => d.netns().run("nft", &["list", "table", "inet", &n]),
        None => String::new(),
    }
}

fn links(d: &Daemon) -> String {
    d.netns().run("ip", &["-br", "link"])
}

#[tokio::test]
async fn the_lxc_client_manages_bridges() {
    let d = Daemon::start();
    let c = d.client();
    ok(&d.lxc(&["network", "create", "lxcbr1"]));
    let n: Network = c.get("/1.0/networks/lxcbr1").await.unwrap();
    assert_eq!(
        (n.kind.as_str(), n.managed, n.status.as_str()),
        ("bridge", true, "Created")
    );
    let v4 = n.config["ipv4.address"].clone();
    assert!(v4.starts_with("10.") && v4.ends_with(".1/24"), "{v4}");
    assert!(n.config["ipv6.address"].starts_with("fd"), "{:?}", n.config);
    assert_eq!(n.config["ipv4.nat"], "true");

    let list = ok(&d.lxc(&["network", "list", "-f", "csv"]));
    assert!(list.contains(&format!("lxcbr1,bridge,YES,{v4}")), "{list}");
    let all: Vec<Network> = c.get("/1.0/networks?recursion=1").await.unwrap();
    assert!(
        all.iter()
            .any(|n| n.name == "lo" && !n.managed && n.kind == "loopback"),
        "host interfaces listed unmanaged: {all:?}"
    );
    let show = ok(&d.lxc(&["network", "show", "lxcbr1"]));
    assert!(show.contains(&format!("ipv4.address: {v4}")), "{show}");
    let info = ok(&d.lxc(&["network", "info", "lxcbr1"]));
    assert!(
        info.contains("State: up") && info.contains(&v4.replace("/24", "/24 (global)")),
        "{info}"
    );
    let leases = ok(&d.lxc(&["network", "list-leases", "lxcbr1", "-f", "csv"]));
    assert!(leases.contains("GATEWAY"), "{leases}");
    let state: NetworkState = c.get("/1.0/networks/lxcbr1/state").await.unwrap();
    assert_eq!(state.state, "up");
    assert_eq!(state.bridge.unwrap().upper_devices, Vec::<String>::new());

    // dnsmasq serves the bridge's addresses only, one per network.
    assert_eq!(d.dnsmasqs().len(), 1);
    let udp = d.netns().run("ss", &["-Hlnu", "sport", "= :53"]);
    let gateway = v4.trim_end_matches("/24");
    assert!(udp.contains(&format!("{gateway}:53")), "{udp}");
    assert!(
        !udp.contains("0.0.0.0:53") && !udp.contains("127.0.0.1:53"),
        "{udp}"
    );
    assert!(table(&d).contains("masquerade"));

    // Edit: set, get, unset, a PUT through `edit`.
    ok(&d.lxc(&["network", "set", "lxcbr1", "ipv4.nat", "false"]));
    assert_eq!(
        ok(&d.lxc(&["network", "get", "lxcbr1", "ipv4.nat"])),
        "false\n"
    );
    let rules = table(&d);
    assert!(!rules.contains("ip saddr"), "no IPv4 NAT: {rules}");
    let yaml = "description: edited\nconfig:\n  ipv4.address: 10.99.1.1/24\n  ipv6.address: none\n";
    ok(&d
        .lxc_command(&["network", "edit", "lxcbr1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(yaml.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap());
    let n: Network = c.get("/1.0/networks/lxcbr1").await.unwrap();
    assert_eq!(n.description, "edited");
    assert_eq!(
        n.config.get("ipv6.address").map(String::as_str),
        Some("none")
    );
    let addrs = d.netns().run("ip", &["-br", "addr", "show", "lxcbr1"]);
    assert!(
        addrs.contains("10.99.1.1/24") && !addrs.contains(gateway),
        "{addrs}"
    );

    ok(&d.lxc(&["network", "rename", "lxcbr1", "lxcbr2"]));
    assert!(!links(&d).contains("lxcbr1 "));
    let n: Network = c.get("/1.0/networks/lxcbr2").await.unwrap();
    assert_eq!(n.config["ipv4.address"], "10.99.1.1/24");
    assert_eq!(d.dnsmasqs().len(), 1);

    ok(&d.lxc(&["network", "delete", "lxcbr2"]));
    assert!(!links(&d).contains("lxcbr2"), "{}", links(&d));
    assert!(d.dnsmasqs().is_empty());
    assert_eq!(table(&d), "", "the table goes with the last network");
    assert!(!d.dir().join("networks/lxcbr2").exists());
}

#[tokio::test]
async fn bad_input_names_the_key_and_changes_nothing() {
    let d = Daemon::start();
    ok(&d.lxc(&[
        "network",
        "create",
        "good0",
        "ipv4.address=10.98.0.1/24",
        "ipv6.address=none",
    ]));
    let before = (links(&d), table(&d));
    for (args, key) in [
        (vec!["bad1", "ipv4.address=10.98.0.1/16"], "ipv4.address"),
        (
            vec!["bad1", "raw.dnsmasq=dhcp-script=/bin/sh"],
            "raw.dnsmasq",
        ),
        (
            vec!["bad1", "raw.dnsmasq=conf-file=/etc/shadow"],
            "raw.dnsmasq",
        ),
        (
            vec!["bad1", "bridge.hwaddr=01:00:5e:00:00:01"],
            "bridge.hwaddr",
        ),
        (
            vec![
                "bad1",
                "ipv4.dhcp.ranges=10.1.1.2-10.1.1.9",
                "ipv4.address=10.97.0.1/24",
            ],
            "ipv4.dhcp.ranges",
        ),
        (vec!["bad1", "bogus.key=1"], "bogus.key"),
        (vec!["a-name-far-too-long"], "a-name-far-too-long"),
    ] {
        let mut full = vec!["network", "create"];
        full.extend(args);
        let err = fails(&d.lxc(&full));
        assert!(err.contains(key), "{full:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    let err = fails(&d.lxc(&["network", "set", "good0", "ipv4.nat", "maybe"]));
    assert!(err.contains("ipv4.nat"), "{err}");
    assert_eq!((links(&d), table(&d)), before, "nothing made or changed");
    let list = ok(&d.lxc(&["network", "list", "-f", "csv"]));
    assert!(!list.contains("bad1"), "{list}");

    // A restricted project may not touch the host's networks.
    ok(&d.lxc(&["project", "create", "tight", "-c", "restricted=true"]));
    let out = d.lxc(&["network", "create", "sneaky", "--project", "tight"]);
    let err = fails(&out);
    assert!(err.contains("restricted"), "{err}");
    let c = d.client();
    let r = c
        .raw(
            berth_client::Method::DELETE,
            "/1.0/networks/good0?project=tight",
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert!(links(&d).contains("good0"));
}

#[tokio::test]
async fn restarts_keep_networks_as_they_are() {
    let mut d = Daemon::start();
    ok(&d.lxc(&["network", "create", "keep0"]));
    let before = table(&d);
    let dnsmasq = d.dnsmasqs();
    assert_eq!(dnsmasq.len(), 1);
    for _ in 0..3 {
        d.kill();
        assert_eq!(d.dnsmasqs(), dnsmasq, "dnsmasq outlives berthd");
        d.restart();
        assert_eq!(d.dnsmasqs(), dnsmasq, "the same dnsmasq, and only it");
        assert_eq!(table(&d), before, "the same rules");
    }
    let n: Network = d.client().get("/1.0/networks/keep0").await.unwrap();
    assert_eq!(n.status, "Created");
    let leases: Vec<NetworkLease> = d.client().get("/1.0/networks/keep0/leases").await.unwrap();
    assert_eq!(leases.iter().filter(|l| l.kind == "gateway").count(), 2);

    // Someone flushes the ruleset: berthd puts its table back.
    d.netns().run("nft", &["flush", "ruleset"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while table(&d) != before {
        assert!(Instant::now() < deadline, "the table did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn a_network_that_cannot_start_is_errored_and_named() {
    let mut d = Daemon::start();
    ok(&d.lxc(&[
        "network",
        "create",
        "held0",
        "ipv4.address=10.96.0.1/24",
        "ipv6.address=none",
    ]));
    d.stop();
    for pid in d.dnsmasqs() {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    }
    while !d.dnsmasqs().is_empty() {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Someone else takes port 53 on every address.
    let (mut holder, line) = d.netns().spawn_ready("python3", &["-c", "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',53))\nprint('ready',flush=True)\ntime.sleep(600)"]);
    assert_eq!(line.trim(), "ready");
    d.restart();
    let c = d.client();
    let n: Network = c.get("/1.0/networks/held0").await.unwrap();
    assert_eq!(n.status, "Errored");
    let warnings: Vec<Warning> = c.get("/1.0/warnings?recursion=1").await.unwrap();
    let w = warnings
        .iter()
        .find(|w| w.entity_url == "/1.0/networks/held0" && w.kind == "Network unavailable")
        .unwrap_or_else(|| panic!("{warnings:?}"));
    assert!(
        w.last_message.contains("port 53 is held by python3"),
        "{}",
        w.last_message
    );
    let listed = ok(&d.lxc(&["warning", "list", "-f", "csv"]));
    assert!(listed.contains("Network unavailable"), "{listed}");

    // Freed, the next change starts it; the warning is resolved.
    let _ = holder.kill();
    let _ = holder.wait();
    ok(&d.lxc(&["network", "set", "held0", "user.note", "retry"]));
    let n: Network = c.get("/1.0/networks/held0").await.unwrap();
    assert_eq!(n.status, "Created");
    let w: Warning = c.get(&format!("/1.0/warnings/{}", w.uuid)).await.unwrap();
    assert_eq!(w.status, "resolved");
    ok(&d.lxc(&["warning", "delete", &w.uuid]));
}

#[tokio::test]
async fn a_foreign_dropping_forward_chain_is_warned_about() {
    let d = Daemon::start();
    d.netns().run(
        "nft",
        &["add table ip filter; add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }"],
    );
    ok(&d.lxc(&[
        "network",
        "create",
        "warned0",
        "ipv4.address=10.95.0.1/24",
        "ipv6.address=none",
    ]));
    let warnings: Vec<Warning> = d.client().get("/1.0/warnings?recursion=1").await.unwrap();
    let w = warnings
        .iter()
        .find(|w| {
            w.entity_url == "/1.0/networks/warned0"
                && w.kind == "Host firewall drops network traffic"
        })
        .unwrap_or_else(|| panic!("{warnings:?}"));
    assert!(
        w.last_message.contains("chain FORWARD of table ip filter"),
        "{}",
        w.last_message
    );
    assert!(
        w.last_message
            .contains("nft insert rule ip filter FORWARD iifname \"warned0\" accept"),
        "{}",
        w.last_message
    );
    ok(&d.lxc(&["warning", "ack", &w.uuid]));
    let w: Warning = d
        .client()
        .get(&format!("/1.0/warnings/{}", w.uuid))
        .await
        .unwrap();
    assert_eq!(w.status, "acknowledged");
    // berthd wrote nothing into the foreign table.
    let foreign = d.netns().run("nft", &["list", "table", "ip", "filter"]);
    assert!(!foreign.contains("warned0"), "{foreign}");

    // Opted in, berthd puts its accept rules there, tagged, and the finding is resolved;
    // once more changes nothing; opted out, the table is as it was.
    let warning = |d: &Daemon| {
        let d = d.client();
        async move {
            let all: Vec<Warning> = d.get("/1.0/warnings?recursion=1").await.unwrap();
            all.into_iter()
                .find(|w| {
                    w.entity_url == "/1.0/networks/warned0"
                        && w.kind == "Host firewall drops network traffic"
                })
                .unwrap()
                .status
        }
    };
    let chain = || {
        d.netns()
            .run("nft", &["list", "chain", "ip", "filter", "FORWARD"])
    };
    ok(&d.lxc(&["config", "set", "network.host_firewall.accept", "true"]));
    let opened = chain();
    assert!(
        opened.contains("iifname \"warned0\" accept comment \"berth_")
            && opened.contains("oifname \"warned0\" accept comment"),
        "{opened}"
    );
    assert_eq!(warning(&d).await, "resolved");
    ok(&d.lxc(&[
        "network",
        "create",
        "warned1",
        "ipv4.address=10.96.0.1/24",
        "ipv6.address=none",
    ]));
    ok(&d.lxc(&["config", "set", "network.host_firewall.accept", "true"]));
    let both = chain();
    assert_eq!(both.matches(":warned0\"").count(), 2, "{both}");
    assert_eq!(both.matches(":warned1\"").count(), 2, "{both}");
    ok(&d.lxc(&["network", "delete", "warned1"]));
    assert_eq!(chain(), opened, "a deleted network's rules go with it");
    let err = fails(&d.lxc(&["config", "set", "network.host_firewall.accept", "maybe"]));
    assert!(err.contains("network.host_firewall.accept"), "{err}");
    ok(&d.lxc(&["config", "unset", "network.host_firewall.accept"]));
    assert_eq!(
        d.netns().run("nft", &["list", "table", "ip", "filter"]),
        foreign,
        "opted out: the foreign table as it was"
    );
    assert_eq!(warning(&d).await, "new");

    // On a Docker host the rules go into DOCKER-USER, where Docker's FORWARD jumps first;
    // the berth CLI sets and reads the server key.
    d.netns().run("nft", &["add chain ip filter DOCKER-USER"]);
    ok(&d.berth(&["config", "set", "network.host_firewall.accept=true"]));
    assert_eq!(
        ok(&d.berth(&["config", "get", "network.host_firewall.accept"])).trim(),
        "true"
    );
    let user = d
        .netns()
        .run("nft", &["list", "chain", "ip", "filter", "DOCKER-USER"]);
    assert_eq!(user.matches(":warned0\"").count(), 2, "{user}");
    assert!(!chain().contains("warned0"), "{}", chain());
    assert_eq!(warning(&d).await, "resolved");
    ok(&d.berth(&["config", "unset", "network.host_firewall.accept"]));
    let user = d
        .netns()
        .run("nft", &["list", "chain", "ip", "filter", "DOCKER-USER"]);
    assert!(!user.contains("warned0"), "{user}");
}

#[tokio::test]
async fn auto_sends_no_probe() {
    let d = Daemon::start();
    // Counters on what Incus and LXD send to pick a subnet: echo requests and SYNs.
    d.netns().run(
        "nft",
        &["add table inet probe; add chain inet probe out { type filter hook output priority 0; policy accept; }; add rule inet probe out icmp type echo-request counter; add rule inet probe out icmpv6 type echo-request counter; add rule inet probe out tcp flags syn counter"],
    );
    // A route the first pick must avoid, as a host would have.
    d.netns()
        .run("ip", &["link", "add", "taken0", "type", "bridge"]);
    d.netns()
        .run("ip", &["addr", "add", "10.0.0.1/8", "dev", "taken0"]);
    let err = fails(&d.lxc(&["network", "create", "auto0", "ipv6.address=none"]));
    assert!(
        err.contains("No free subnet"),
        "all of 10/8 is taken: {err}"
    );
    d.netns().run("ip", &["addr", "flush", "dev", "taken0"]);
    d.netns()
        .run("ip", &["addr", "add", "10.0.0.1/9", "dev", "taken0"]);
    ok(&d.lxc(&["network", "create", "auto0"]));
    ok(&d.lxc(&["network", "create", "auto1"]));
    let c = d.client();
    let a: Network = c.get("/1.0/networks/auto0").await.unwrap();
    let b: Network = c.get("/1.0/networks/auto1").await.unwrap();
    let (a4, b4) = (&a.config["ipv4.address"], &b.config["ipv4.address"]);
    assert_ne!(
        a4.rsplit_once('.').unwrap().0,
        b4.rsplit_once('.').unwrap().0,
        "{a4} {b4}"
    );
    for v in [a4, b4] {
        let second: u8 = v.split('.').nth(1).unwrap().parse().unwrap();
        assert!(second >= 128, "outside the taken 10.0.0.0/9: {v}");
    }
    let counters = d.netns().run("nft", &["list", "table", "inet", "probe"]);
    assert_eq!(
        counters.matches("counter packets 0 bytes 0").count(),
        3,
        "nothing probed: {counters}"
    );
}

#[tokio::test]
async fn the_berth_cli_manages_networks_and_warnings() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    // admin init --auto: storage, berthbr0 with automatic addresses, eth0 on the default
    // profile; twice changes nothing.
    ok(&d.berth(&["admin", "init", "--auto"]));
    let before = table(&d);
    ok(&d.berth(&["admin", "init", "--auto"]));
    assert_eq!(table(&d), before);
    let list = ok(&d.berth(&["network", "list", "-f", "csv"]));
    assert!(list.contains("berthbr0,bridge,YES,10."), "{list}");
    let profile = ok(&d.berth(&["profile", "show", "default"]));
    assert!(profile.contains("network: berthbr0"), "{profile}");

    ok(&d.berth(&[
        "network",
        "create",
        "cli0",
        "ipv4.address=10.94.0.1/24",
        "ipv6.address=none",
        "--description",
        "mine",
    ]));
    let show = ok(&d.berth(&["network", "show", "cli0"]));
    assert!(
        show.contains("description: mine") && show.contains("10.94.0.1/24"),
        "{show}"
    );
    ok(&d.berth(&["network", "set", "cli0", "dns.domain=lab"]));
    assert_eq!(
        ok(&d.berth(&["network", "get", "cli0", "dns.domain"])),
        "lab\n"
    );
    ok(&d.berth(&["network", "unset", "cli0", "dns.domain"]));
    assert_eq!(
        ok(&d.berth(&["network", "get", "cli0", "dns.domain"])),
        "\n"
    );
    let info = ok(&d.berth(&["network", "info", "cli0"]));
    assert!(
        info.contains("State: up") && info.contains("10.94.0.1/24 (global)"),
        "{info}"
    );

    // Attach an instance and a profile; the instance gets a lease there.
    ok(&d.berth(&["init", "bb", "cl1"]));
    // Its own eth0, on cli0 instead of the profile's berthbr0.
    ok(&d.berth(&["network", "attach", "cli0", "cl1", "eth0", "eth0"]));
    ok(&d.berth(&["profile", "create", "extra"]));
    ok(&d.berth(&["network", "attach-profile", "cli0", "extra", "eth2"]));
    let p = ok(&d.berth(&["profile", "show", "extra"]));
    assert!(p.contains("network: cli0"), "{p}");
    let n: Network = d.client().get("/1.0/networks/cli0").await.unwrap();
    assert_eq!(n.used_by.len(), 2, "{:?}", n.used_by);
    ok(&d.berth(&["start", "cl1"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leases = ok(&d.berth(&["network", "list-leases", "cli0", "-f", "csv"]));
        if leases.contains("cl1,") {
            break;
        }
        assert!(Instant::now() < deadline, "no lease: {leases}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = fails(&d.berth(&["network", "delete", "cli0"]));
    assert!(err.contains("in use"), "{err}");
    ok(&d.berth(&["network", "detach", "cli0", "cl1"]));
    ok(&d.berth(&["network", "detach-profile", "cli0", "extra"]));
    ok(&d.berth(&["network", "rename", "cli0", "cli1"]));
    ok(&d.berth(&["network", "delete", "cli1"]));
    assert!(!links(&d).contains("cli"), "{}", links(&d));

    // Warnings: a foreign dropping chain, listed, shown, acknowledged, deleted.
    d.netns().run(
        "nft",
        &["add table inet hostfw; add chain inet hostfw forwarding { type filter hook forward priority 0; policy drop; }"],
    );
    ok(&d.berth(&["network", "create", "cli2", "ipv6.address=none"]));
    let listed = ok(&d.berth(&["warning", "list", "-f", "csv"]));
    let line = listed
        .lines()
        .find(|l| l.contains("Host firewall drops network traffic") && l.contains("cli2"))
        .unwrap_or_else(|| panic!("{listed}"));
    let uuid = line.split(',').next().unwrap().to_owned();
    let shown = ok(&d.berth(&["warning", "show", &uuid]));
    assert!(
        shown.contains("chain forwarding of table inet hostfw"),
        "{shown}"
    );
    ok(&d.berth(&["warning", "ack", &uuid]));
    assert!(!ok(&d.berth(&["warning", "list", "-f", "csv"])).contains(&uuid));
    assert!(ok(&d.berth(&["warning", "list", "--all", "-f", "csv"])).contains(&uuid));
    ok(&d.berth(&["warning", "delete", &uuid]));
    assert!(!ok(&d.berth(&["warning", "list", "--all", "-f", "csv"])).contains(&uuid));
}

/// The real incus client against this daemon.
fn incus(d: &Daemon, args: &[&str]) -> std::process::Output {
    std::process::Command::new("incus")
        .args(args)
        .env("INCUS_DIR", d.dir())
        .env("INCUS_CONF", d.dir().join("incus-client"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run incus")
}

#[tokio::test]
async fn the_incus_client_manages_bridges_and_launches_on_them() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&incus(
        &d,
        &[
            "network",
            "create",
            "inc0",
            "ipv4.address=10.93.0.1/24",
            "ipv6.address=none",
        ],
    ));
    let list = ok(&incus(&d, &["network", "list", "-f", "csv"]));
    assert!(list.contains("inc0,bridge,YES,10.93.0.1/24"), "{list}");
    assert!(ok(&incus(&d, &["network", "show", "inc0"])).contains("ipv4.address: 10.93.0.1/24"));
    assert!(ok(&incus(&d, &["network", "info", "inc0"])).contains("10.93.0.1/24"));
    ok(&incus(
        &d,
        &[
            "profile",
            "device",
            "add",
            "default",
            "eth0",
            "nic",
            "network=inc0",
        ],
    ));
    ok(&incus(&d, &["launch", "bb", "i1"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leases = ok(&incus(&d, &["network", "list-leases", "inc0", "-f", "csv"]));
        if leases.contains("i1,") && leases.contains("10.93.0.") {
            break;
        }
        assert!(Instant::now() < deadline, "no lease: {leases}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The lease is written when dnsmasq acknowledges it; the container sets the address
    // a moment later.
    loop {
        let listed = ok(&incus(&d, &["list", "i1", "-c", "n4", "-f", "csv"]));
        if listed.contains("10.93.0.") {
            break;
        }
        assert!(Instant::now() < deadline, "no address listed: {listed}");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(&incus(&d, &["delete", "-f", "i1"]));
    ok(&incus(
        &d,
        &["profile", "device", "remove", "default", "eth0"],
    ));
    ok(&incus(&d, &["network", "delete", "inc0"]));
    assert!(!links(&d).contains("inc0"));
}
