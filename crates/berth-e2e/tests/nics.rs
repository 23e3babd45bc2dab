//! nic devices on managed bridges, with real busybox containers: DHCP leases, DNS names,
//! static addresses, NAT to "the outside" (a network namespace joined by a veth, on
//! 198.51.100.0/24), filters, limits, nics added and removed live, restarts and crashes.
//! Every daemon lives in a network namespace of its own; nothing here reaches the host.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::time::{Duration, Instant};

use berth_api::instance::InstanceState;
use berth_e2e::{Daemon, Netns, fails, ok, with_busybox};

/// A daemon with the busybox image and a bridge `br0` (IPv4 `subnet`.1/24, no IPv6) on
/// which the default profile puts `eth0`.
async fn networked(subnet: &str) -> Daemon {
    let d = Daemon::start();
    with_busybox(&d).await;
    ok(&d.lxc(&[
        "network",
        "create",
        "br0",
        &format!("ipv4.address={subnet}.1/24"),
        "ipv6.address=none",
    ]));
    ok(&d.lxc(&[
        "profile",
        "device",
        "add",
        "default",
        "eth0",
        "nic",
        "network=br0",
    ]));
    d
}

/// The IPv4 address of `name`'s `iface`, once it has one (DHCP).
async fn ipv4(d: &Daemon, name: &str, iface: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s: InstanceState = d
            .client()
            .get(&format!("/1.0/instances/{name}/state"))
            .await
            .unwrap();
        let found = s
            .network
            .as_ref()
            .and_then(|n| n.get(iface))
            .and_then(|i| i["addresses"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .find(|a| a["family"] == "inet")
            .and_then(|a| a["address"].as_str().map(str::to_owned));
        if let Some(a) = found {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "{name} got no address on {iface}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn links(d: &Daemon) -> String {
    d.netns().run("ip", &["-br", "link"])
}

fn exec(d: &Daemon, name: &str, cmd: &str) -> String {
    ok(&d.lxc(&["exec", name, "--", "sh", "-c", cmd]))
}

#[tokio::test]
async fn containers_get_leases_and_reach_each_other_by_name() {
    let d = networked("10.81.0").await;
    let c = d.client();
    ok(&d.lxc(&["launch", "bb", "c1"]));
    ok(&d.lxc(&["launch", "bb", "c2"]));
    let a1 = ipv4(&d, "c1", "eth0").await;
    let a2 = ipv4(&d, "c2", "eth0").await;
    assert!(
        a1.starts_with("10.81.0.") && a2.starts_with("10.81.0."),
        "{a1} {a2}"
    );
    // By address, by name in the network's domain, by bare name, and the host.
    exec(&d, "c1", &format!("ping -c1 -W2 {a2}"));
    exec(&d, "c1", "ping -c1 -W2 c2.berth");
    exec(&d, "c2", "ping -c1 -W2 c1");
    exec(&d, "c2", "ping -c1 -W2 10.81.0.1");

    // What users see: the list's IPv4 column, the host name, the leases.
    let list = ok(&d.lxc(&["list", "-c", "n4", "-f", "csv"]));
    assert!(list.contains(&format!("c1,{a1} (eth0)")), "{list}");
    let s: InstanceState = c.get("/1.0/instances/c1/state").await.unwrap();
    let eth0 = &s.network.as_ref().unwrap()["eth0"];
    let config: serde_json::Value = c.get("/1.0/instances/c1").await.unwrap();
    let host_name = config["config"]["volatile.eth0.host_name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(eth0["host_name"], host_name.as_str());
    assert_eq!(eth0["hwaddr"], config["config"]["volatile.eth0.hwaddr"]);
    assert!(links(&d).contains(&host_name));
    let leases = ok(&d.lxc(&["network", "list-leases", "br0", "-f", "csv"]));
    assert!(leases.contains("c1,") && leases.contains(&a1), "{leases}");
    let network: serde_json::Value = c.get("/1.0/networks/br0").await.unwrap();
    let used_by = network["used_by"].to_string();
    assert!(
        used_by.contains("/1.0/instances/c1") && used_by.contains("/1.0/profiles/default"),
        "{used_by}"
    );

    // A static address is served on the first boot after it is set.
    ok(&d.lxc(&["stop", "c2", "--force"]));
    ok(&d.lxc(&[
        "config",
        "device",
        "override",
        "c2",
        "eth0",
        "ipv4.address=10.81.0.50",
    ]));
    ok(&d.lxc(&["start", "c2"]));
    assert_eq!(ipv4(&d, "c2", "eth0").await, "10.81.0.50");
    exec(&d, "c1", "ping -c1 -W2 c2");

    // The pair goes when the container stops: by berthd, or on its own.
    ok(&d.lxc(&["stop", "c1", "--force"]));
    assert!(!links(&d).contains(&host_name), "{}", links(&d));
    let host2 = config_key(&d, "c2", "volatile.eth0.host_name").await;
    // The shutdown may end the exec's own shell before it returns (status 143): its
    // status says nothing; the container going away does.
    let _ = d.lxc(&["exec", "c2", "--", "sh", "-c", "poweroff"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while links(&d).contains(&host2) {
        assert!(Instant::now() < deadline, "the pair outlived its container");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A network in use is not deleted.
    let err = fails(&d.lxc(&["network", "delete", "br0"]));
    assert!(err.contains("in use"), "{err}");
    assert!(links(&d).contains("br0"));
}

/// A Debian container (systemd-networkd asking DHCP, systemd-resolved answering names)
/// beside a busybox one: both get leases and reach each other and the host, by address and
/// by name.
#[tokio::test]
async fn a_debian_container_gets_a_lease_and_names_resolve() {
    let d = networked("10.87.0").await;
    berth_e2e::with_debian(&d).await;
    ok(&d.lxc(&["launch", "bb", "b1"]));
    ok(&d.lxc(&["launch", "deb", "d1"]));
    let ab = ipv4(&d, "b1", "eth0").await;
    let ad = ipv4(&d, "d1", "eth0").await;
    assert!(ad.starts_with("10.87.0."), "{ad}");
    exec(
        &d,
        "b1",
        "mkdir -p /www && echo hello > /www/index.html && httpd -p 80 -h /www",
    );
    // systemd-resolved learns the lease's DNS server and domain from networkd a moment
    // after the address shows: a user's first lookup waits for that, as here.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d
        .lxc(&["exec", "d1", "--", "getent", "hosts", "b1"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "d1 never resolved b1");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Debian reaches busybox by address, bare name and name in the network's domain
    // (glibc, systemd-resolved, dnsmasq), and the host's DNS on the bridge address, by
    // address and as `_gateway.berth`.
    for target in [ab.as_str(), "b1", "b1.berth"] {
        exec(
            &d,
            "d1",
            &format!("timeout 10 bash -c 'echo > /dev/tcp/{target}/80'"),
        );
    }
    for target in ["10.87.0.1", "_gateway.berth"] {
        exec(
            &d,
            "d1",
            &format!("timeout 10 bash -c 'echo > /dev/tcp/{target}/53'"),
        );
    }
    let got = exec(&d, "d1", "getent hosts b1.berth _gateway.berth");
    assert!(got.contains(&ab) && got.contains("10.87.0.1"), "{got}");
    // And busybox reaches Debian.
    exec(&d, "b1", &format!("ping -c1 -W2 {ad}"));
    exec(&d, "b1", "ping -c1 -W2 d1");
    exec(&d, "b1", "ping -c1 -W2 d1.berth");
    let leases = ok(&d.lxc(&["network", "list-leases", "br0", "-f", "csv"]));
    assert!(leases.contains("d1,") && leases.contains(&ad), "{leases}");
}

async fn config_key(d: &Daemon, name: &str, key: &str) -> String {
    let v: serde_json::Value = d
        .client()
        .get(&format!("/1.0/instances/{name}"))
        .await
        .unwrap();
    v["config"][key].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn nics_come_and_go_live() {
    let d = networked("10.82.0").await;
    ok(&d.lxc(&["launch", "bb", "live"]));
    ipv4(&d, "live", "eth0").await;
    ok(&d.lxc(&[
        "config",
        "device",
        "add",
        "live",
        "eth1",
        "nic",
        "network=br0",
        "name=eth1",
    ]));
    let host = config_key(&d, "live", "volatile.eth1.host_name").await;
    assert!(links(&d).contains(&host));
    let inside = exec(&d, "live", "ip link show eth1");
    assert!(
        inside.contains(&config_key(&d, "live", "volatile.eth1.hwaddr").await),
        "{inside}"
    );
    exec(
        &d,
        "live",
        "udhcpc -n -q -i eth1 -s /usr/share/udhcpc/default.script",
    );
    assert!(ipv4(&d, "live", "eth1").await.starts_with("10.82.0."));
    ok(&d.lxc(&["config", "device", "remove", "live", "eth1"]));
    assert!(!links(&d).contains(&host));
    let gone = d.lxc(&["exec", "live", "--", "ip", "link", "show", "eth1"]);
    assert!(!gone.status.success(), "eth1 is gone inside");
    assert_eq!(config_key(&d, "live", "volatile.eth1.host_name").await, "");

    // Through a profile: its running users get the nic, and lose it, live.
    ok(&d.lxc(&[
        "profile",
        "device",
        "add",
        "default",
        "eth3",
        "nic",
        "network=br0",
        "name=eth3",
    ]));
    let host3 = config_key(&d, "live", "volatile.eth3.host_name").await;
    assert!(!host3.is_empty() && links(&d).contains(&host3), "{host3}");
    exec(&d, "live", "ip link show eth3");
    ok(&d.lxc(&["profile", "device", "remove", "default", "eth3"]));
    assert!(!links(&d).contains(&host3));
    assert!(
        !d.lxc(&["exec", "live", "--", "ip", "link", "show", "eth3"])
            .status
            .success()
    );

    // Bad nics are refused naming the device and key, and nothing is made.
    let before = links(&d);
    for (args, key) in [
        (vec!["network=nope"], "nope"),
        (
            vec!["network=br0", "host_name=a-name-longer-than-15"],
            "host_name",
        ),
        (vec!["network=br0", "host_name=br0"], "br0"),
        (vec!["network=br0", "hwaddr=01:00:5e:00:00:01"], "hwaddr"),
        (vec!["nictype=bridged", "parent=nosuchbr"], "nosuchbr"),
    ] {
        let mut full = vec!["config", "device", "add", "live", "bad", "nic"];
        full.extend(args);
        let err = fails(&d.lxc(&full));
        assert!(err.contains(key), "{full:?}: {err}");
    }
    assert_eq!(links(&d), before);
    let shown = ok(&d.lxc(&["config", "device", "show", "live"]));
    assert!(!shown.contains("bad"), "{shown}");
}

/// "The outside": a namespace joined to the daemon's by a veth, 198.51.100.1 there and
/// 198.51.100.2 on the daemon's side (its default route).
fn outside(d: &Daemon) -> Netns {
    let wan = Netns::new();
    let ns = d.netns();
    ns.run(
        "ip",
        &[
            "link", "add", "wan0", "type", "veth", "peer", "name", "wan1",
        ],
    );
    ns.run("ip", &["link", "set", "wan1", "netns", &wan.path()]);
    ns.run("ip", &["addr", "add", "198.51.100.2/24", "dev", "wan0"]);
    ns.run("ip", &["link", "set", "wan0", "up"]);
    ns.run("ip", &["route", "add", "default", "via", "198.51.100.1"]);
    wan.run("ip", &["addr", "add", "198.51.100.1/24", "dev", "wan1"]);
    wan.run("ip", &["link", "set", "wan1", "up"]);
    wan
}

/// Runs a TCP server in `ns` on `port` that answers each connection with the peer's
/// address; returns it (killed on drop by the caller).
fn peer_echo(ns: &Netns, port: u16) -> std::process::Child {
    let script = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',{port}))\ns.listen()\nprint('ready',flush=True)\nwhile True:\n c,a=s.accept()\n c.sendall((a[0]+'\\n').encode())\n c.close()\n"
    );
    let (child, line) = ns.spawn_ready("python3", &["-c", &script]);
    assert_eq!(line.trim(), "ready");
    child
}

#[tokio::test]
async fn nat_shows_the_host_and_routing_shows_the_container() {
    let d = networked("10.83.0").await;
    let wan = outside(&d);
    let mut server = peer_echo(&wan, 7000);
    ok(&d.lxc(&["network", "set", "br0", "ipv4.nat", "true"]));
    ok(&d.lxc(&["launch", "bb", "n1"]));
    let a = ipv4(&d, "n1", "eth0").await;
    let seen = exec(&d, "n1", "nc 198.51.100.1 7000 </dev/null");
    assert_eq!(
        seen.trim(),
        "198.51.100.2",
        "masqueraded to the host's address"
    );

    ok(&d.lxc(&["network", "set", "br0", "ipv4.nat", "false"]));
    wan.run(
        "ip",
        &["route", "add", "10.83.0.0/24", "via", "198.51.100.2"],
    );
    let seen = exec(&d, "n1", "nc 198.51.100.1 7000 </dev/null");
    assert_eq!(seen.trim(), a, "routed with its own address");
    let _ = server.kill();
    let _ = server.wait();
}

#[tokio::test]
async fn filters_drop_spoofed_sources_but_not_dhcp() {
    let d = networked("10.84.0").await;
    ok(&d.lxc(&["init", "bb", "f1"]));
    ok(&d.lxc(&[
        "config",
        "device",
        "override",
        "f1",
        "eth0",
        "ipv4.address=10.84.0.20",
        "security.mac_filtering=true",
        "security.ipv4_filtering=true",
    ]));
    ok(&d.lxc(&["start", "f1"]));
    assert_eq!(
        ipv4(&d, "f1", "eth0").await,
        "10.84.0.20",
        "DHCP goes through"
    );
    exec(&d, "f1", "ping -c1 -W2 10.84.0.1");
    let counters = |d: &Daemon| -> u64 {
        let t = d.netns().run("nft", &["list", "ruleset"]);
        t.lines()
            .filter(|l| l.contains("counter packets") && l.contains("drop"))
            .filter_map(|l| {
                l.split("counter packets ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    assert_eq!(counters(&d), 0);
    // Another source address: dropped, counted.
    exec(&d, "f1", "ip addr add 10.84.0.99/24 dev eth0");
    assert!(
        !d.lxc(&[
            "exec",
            "f1",
            "--",
            "ping",
            "-c2",
            "-W1",
            "-I",
            "10.84.0.99",
            "10.84.0.1"
        ])
        .status
        .success()
    );
    let after_ip = counters(&d);
    assert!(after_ip > 0, "spoofed IPv4 counted");
    // Another MAC: dropped, counted.
    exec(
        &d,
        "f1",
        "ip addr del 10.84.0.99/24 dev eth0; ip link set eth0 address 00:16:3e:ff:00:01",
    );
    assert!(
        !d.lxc(&["exec", "f1", "--", "ping", "-c2", "-W1", "10.84.0.1"])
            .status
            .success()
    );
    assert!(counters(&d) > after_ip, "spoofed MAC counted");
}

#[tokio::test]
async fn an_egress_limit_holds_the_rate() {
    let d = networked("10.85.0").await;
    ok(&d.lxc(&["init", "bb", "slow"]));
    ok(&d.lxc(&[
        "config",
        "device",
        "override",
        "slow",
        "eth0",
        "limits.egress=10Mbit",
    ]));
    ok(&d.lxc(&["start", "slow"]));
    ipv4(&d, "slow", "eth0").await;
    // A receiver on the bridge's address that reports bytes per second.
    let script = "import socket,time\ns=socket.socket()\ns.bind(('10.85.0.1',7001))\ns.listen()\nprint('ready',flush=True)\nc,_=s.accept()\nn=0\nt0=None\nwhile True:\n b=c.recv(65536)\n if not b: break\n if t0 is None: t0=time.time()\n n+=len(b)\nprint(n*8/(time.time()-t0),flush=True)\n";
    let mut rx = d
        .netns()
        .command("python3", &["-c", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(rx.stdout.take().unwrap());
    use std::io::BufRead;
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    exec(
        &d,
        "slow",
        "dd if=/dev/zero bs=1k count=5000 2>/dev/null | nc 10.85.0.1 7001",
    );
    line.clear();
    out.read_line(&mut line).unwrap();
    let _ = rx.wait();
    let bits: f64 = line.trim().parse().unwrap();
    assert!(
        (8e6..=12e6).contains(&bits),
        "{bits} bit/s for a 10 Mbit/s limit"
    );
}

#[tokio::test]
async fn restarts_and_crashes_leave_networking_working_and_no_orphan() {
    let mut d = networked("10.86.0").await;
    ok(&d.lxc(&["launch", "bb", "r1"]));
    ok(&d.lxc(&["launch", "bb", "r2"]));
    ipv4(&d, "r1", "eth0").await;
    ipv4(&d, "r2", "eth0").await;
    for _ in 0..3 {
        d.kill();
        d.restart();
        exec(&d, "r1", "ping -c1 -W2 r2");
        assert_eq!(d.dnsmasqs().len(), 1);
    }
    // berthd and r2 die together (a kill during a start leaves the same): r2's pair is
    // left on the host until berthd comes back and sweeps it.
    let host = config_key(&d, "r2", "volatile.eth0.host_name").await;
    d.kill();
    let cgroup = d
        .leftover_cgroups()
        .into_iter()
        .map(|p| p.join("r2"))
        .find(|p| p.exists())
        .unwrap();
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
    let monitor = std::fs::read_to_string(cgroup.with_file_name("r2.monitor").join("cgroup.procs"))
        .unwrap_or_default();
    for pid in procs.lines().chain(monitor.lines()) {
        let _ = std::process::Command::new("kill")
            .args(["-9", pid])
            .status();
    }
    std::thread::sleep(Duration::from_millis(300));
    d.restart();
    assert!(!links(&d).contains(&host), "{}", links(&d));
    // The killed init may still be winding its namespace down for a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = ok(&d.lxc(&["list", "r2", "-c", "ns", "-f", "csv"]));
        if list.trim() == "r2,STOPPED" {
            break;
        }
        assert!(Instant::now() < deadline, "{list}");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(&d.lxc(&["start", "r2"]));
    ipv4(&d, "r2", "eth0").await;
    exec(&d, "r1", "ping -c1 -W2 r2");
}

#[tokio::test]
async fn p2p_routed_and_macvlan_nics() {
    let d = Daemon::start();
    with_busybox(&d).await;
    let ns = d.netns();
    // p2p: a pair whose host end stands alone, with a route to the instance.
    ok(&d.lxc(&["init", "bb", "pp"]));
    ok(&d.lxc(&[
        "config",
        "device",
        "add",
        "pp",
        "eth0",
        "nic",
        "nictype=p2p",
        "ipv4.routes=192.0.2.10/32",
    ]));
    ok(&d.lxc(&["start", "pp"]));
    let host = config_key(&d, "pp", "volatile.eth0.host_name").await;
    let link = ns.run("ip", &["-d", "link", "show", &host]);
    assert!(!link.contains("master"), "{link}");
    assert!(
        ns.run("ip", &["route", "show", "192.0.2.10"])
            .contains(&host)
    );
    ns.run("ip", &["addr", "add", "192.0.2.1/32", "dev", &host]);
    exec(
        &d,
        "pp",
        "ip addr add 192.0.2.10/32 dev eth0 && ip route add 192.0.2.1 dev eth0 && ping -c1 -W2 192.0.2.1",
    );

    // routed: the instance's address and gateway set by liblxc, answered for on a parent
    // (as eth1: the image's DHCP client on eth0 would take them away).
    ns.run(
        "ip",
        &["link", "add", "up0", "type", "veth", "peer", "name", "up1"],
    );
    ns.run("ip", &["link", "set", "up0", "up"]);
    ok(&d.lxc(&["init", "bb", "rt"]));
    ok(&d.lxc(&[
        "config",
        "device",
        "add",
        "rt",
        "eth1",
        "nic",
        "nictype=routed",
        "name=eth1",
        "ipv4.address=192.0.2.20",
        "parent=up0",
    ]));
    ok(&d.lxc(&["start", "rt"]));
    let inside = exec(&d, "rt", "ip -4 addr show eth1; ip route");
    assert!(
        inside.contains("192.0.2.20/32") && inside.contains("default via 169.254.0.1"),
        "{inside}"
    );
    exec(&d, "rt", "ping -c1 -W2 169.254.0.1");
    assert!(
        ns.run("ip", &["neigh", "show", "proxy"])
            .contains("192.0.2.20 dev up0")
    );

    // macvlan: on a veth whose other end is "the outside".
    let wan = Netns::new();
    ns.run(
        "ip",
        &["link", "add", "mv0", "type", "veth", "peer", "name", "mv1"],
    );
    ns.run("ip", &["link", "set", "mv1", "netns", &wan.path()]);
    ns.run("ip", &["link", "set", "mv0", "up"]);
    wan.run("ip", &["addr", "add", "198.51.100.1/24", "dev", "mv1"]);
    wan.run("ip", &["link", "set", "mv1", "up"]);
    ok(&d.lxc(&["init", "bb", "mv"]));
    ok(&d.lxc(&[
        "config",
        "device",
        "add",
        "mv",
        "eth0",
        "nic",
        "nictype=macvlan",
        "parent=mv0",
    ]));
    ok(&d.lxc(&["start", "mv"]));
    exec(
        &d,
        "mv",
        "ip addr add 198.51.100.30/24 dev eth0 && ping -c1 -W2 198.51.100.1",
    );
    let mac = config_key(&d, "mv", "volatile.eth0.hwaddr").await;
    assert!(exec(&d, "mv", "ip link show eth0").contains(&mac));

    // Each kind's own keys are checked, naming the device.
    for (args, key) in [
        (vec!["nictype=macvlan"], "parent"),
        (vec!["nictype=routed"], "ipv4.address"),
        (vec!["nictype=p2p", "ipv4.routes=nonsense"], "ipv4.routes"),
        (
            vec!["nictype=macvlan", "parent=mv0", "limits.max=1Mbit"],
            "limits.max",
        ),
        (
            vec!["nictype=routed", "ipv4.address=192.0.2.21", "parent=nope0"],
            "nope0",
        ),
    ] {
        let mut full = vec!["config", "device", "add", "mv", "bad", "nic"];
        full.extend(args);
        let err = fails(&d.lxc(&full));
        assert!(err.contains(key), "{full:?}: {err}");
    }

    // Stopped, nothing of theirs stays on the host.
    for c in ["pp", "rt", "mv"] {
        ok(&d.lxc(&["stop", c, "--force"]));
    }
    let left = links(&d);
    assert!(!left.contains(&host) && !left.contains("veth"), "{left}");
    assert!(
        !ns.run("ip", &["neigh", "show", "proxy"])
            .contains("192.0.2.20")
    );
}

/// A container opening connections without end stops at its `limits.conntrack`; its
/// neighbour's new connections go on, and the limit goes with the container.
#[tokio::test]
async fn a_conntrack_flood_stops_at_the_containers_limit() {
    let d = networked("10.88.0").await;
    ok(&d.lxc(&["launch", "bb", "flood", "-c", "limits.conntrack=20"]));
    ok(&d.lxc(&["launch", "bb", "calm"]));
    ipv4(&d, "flood", "eth0").await;
    ipv4(&d, "calm", "eth0").await;
    // A TCP connection to the network's DNS (busybox's nc: connected, then stdin ends).
    let dns = "nc -w 3 10.88.0.1 53 </dev/null";
    for name in ["flood", "calm"] {
        exec(&d, name, dns);
    }
    // 100 pings of their own (busybox has no UDP client): each a new tracked connection,
    // which the host keeps for half a minute.
    exec(
        &d,
        "flood",
        "for i in $(seq 100); do ping -c 1 -W 1 10.88.0.1 >/dev/null 2>&1 & done; wait; true",
    );
    let out = d.lxc(&["exec", "flood", "--", "sh", "-c", dns]);
    assert!(
        !out.status.success(),
        "the flooder is at its limit: {out:?} {}",
        d.netns().run("nft", &["list", "ruleset"])
    );
    exec(&d, "calm", dns);
    let rules = d.netns().run("nft", &["list", "ruleset"]);
    assert!(rules.contains("ct count over 20"), "{rules}");
    // A bad value changes nothing.
    let err = fails(&d.lxc(&["config", "set", "flood", "limits.conntrack=none"]));
    assert!(err.contains("limits.conntrack"), "{err}");
    let rules = || d.netns().run("nft", &["list", "ruleset"]);
    assert!(rules().contains("ct count over 20"), "{}", rules());
    // Changed while running: raised, the flooder connects again; removed, its chain goes.
    ok(&d.lxc(&["config", "set", "flood", "limits.conntrack=500"]));
    let now = rules();
    assert!(
        now.contains("ct count over 500") && !now.contains("ct count over 20"),
        "{now}"
    );
    exec(&d, "flood", dns);
    ok(&d.lxc(&["config", "unset", "flood", "limits.conntrack"]));
    assert!(!rules().contains("ct count"), "{}", rules());
    // From a profile: added, changed, at a restart; the limit goes with the container.
    ok(&d.lxc(&["profile", "create", "ct"]));
    ok(&d.lxc(&["profile", "set", "ct", "limits.conntrack", "30"]));
    ok(&d.lxc(&["profile", "add", "calm", "ct"]));
    assert!(rules().contains("ct count over 30"), "{}", rules());
    ok(&d.lxc(&["profile", "set", "ct", "limits.conntrack", "40"]));
    assert!(rules().contains("ct count over 40"), "{}", rules());
    ok(&d.lxc(&["restart", "calm", "--force"]));
    let now = rules();
    assert!(
        now.contains("ct count over 40") && !now.contains("ct count over 30"),
        "{now}"
    );
    for name in ["flood", "calm"] {
        ok(&d.lxc(&["delete", "-f", name]));
    }
    assert!(!rules().contains("ct count"), "{}", rules());
}
