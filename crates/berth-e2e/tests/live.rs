//! Live migration between two berthd "hosts", each in a network namespace of its own with
//! its own bridge `br0` on the same subnet (two hosts on one segment, as far as their
//! containers can tell), joined by a veth link their HTTPS APIs listen on: the processes,
//! the console's shell, the MAC and the address go along; a failed restore leaves the
//! container running where it was.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::process::Command;
use std::time::{Duration, Instant};

use berth_client::Client;
use berth_e2e::{Daemon, console, fails, ok, with_busybox};
use serde_json::Value;

fn last_line(out: &str) -> String {
    out.lines().last().unwrap_or_default().trim().to_owned()
}

fn berth_path() -> String {
    berth_e2e::bin("berth").to_string_lossy().into_owned()
}

/// Two hosts linked 192.0.2.1 ⇄ 192.0.2.2 (HTTPS on port 8443 of each), each with the
/// busybox image and a bridge `br0` on `subnet`.0/24 that the default profile's eth0 uses;
/// the berth and lxc clients run in h1's namespace with h1 and h2 as remotes.
async fn hosts(subnet: &str) -> (Daemon, Daemon) {
    let h1 = Daemon::start();
    let h2 = Daemon::start();
    let pid = |d: &Daemon| d.netns().path().split('/').nth(2).unwrap().to_owned();
    ok(&Command::new("ip")
        .args(["link", "add", "lm1", "netns", &pid(&h1), "type", "veth"])
        .args(["peer", "name", "lm2", "netns", &pid(&h2)])
        .output()
        .unwrap());
    for (d, link, addr) in [(&h1, "lm1", "192.0.2.1"), (&h2, "lm2", "192.0.2.2")] {
        d.netns()
            .run("ip", &["addr", "add", &format!("{addr}/30"), "dev", link]);
        d.netns().run("ip", &["link", "set", link, "up"]);
        with_busybox(d).await;
        ok(&d.berth(&[
            "network",
            "create",
            "br0",
            &format!("ipv4.address={subnet}.1/24"),
            "ipv6.address=none",
        ]));
        ok(&d.berth(&[
            "profile",
            "device",
            "add",
            "default",
            "eth0",
            "nic",
            "network=br0",
        ]));
        ok(&d.berth(&[
            "config",
            "set",
            "core.https_address",
            &format!("{addr}:8443"),
        ]));
    }
    for program in [berth_path(), "lxc".to_owned()] {
        let conf = format!("{}-conf", program.rsplit('/').next().unwrap());
        for (name, d) in [("h1", &h1), ("h2", &h2)] {
            let token = last_line(&ok(&d.berth(&["config", "trust", "add", &conf])));
            ok(&h1.remote(&program, &conf, &["remote", "add", name, &token]));
        }
    }
    (h1, h2)
}

fn berth(h1: &Daemon, args: &[&str]) -> std::process::Output {
    h1.remote(&berth_path(), "berth-conf", args)
}

fn lxc(h1: &Daemon, args: &[&str]) -> std::process::Output {
    h1.remote("lxc", "lxc-conf", args)
}

fn exec(d: &Daemon, name: &str, cmd: &str) -> String {
    ok(&d.berth(&["exec", name, "--", "sh", "-c", cmd]))
        .trim()
        .to_owned()
}

/// Runs a command that migrates `name` from `from`; on failure the panic shows criu's
/// logs on both sides.
fn migrated(out: &std::process::Output, name: &str, from: &Daemon, to: &Daemon) {
    if !out.status.success() {
        let log = |d: &Daemon, f: &str| {
            std::fs::read_to_string(d.dir().join("containers").join(name).join(f))
                .unwrap_or_default()
        };
        panic!(
            "{}\n--- source criu-dump.log\n{}\n--- target criu-restore.log\n{}\n--- target log\n{}",
            String::from_utf8_lossy(&out.stderr),
            log(from, "criu-dump.log"),
            log(to, "criu-restore.log") + &log(to, "lxc.log") + &log(to, "forkmigrate.log"),
            to.log()
        );
    }
}

async fn status(c: &Client, name: &str) -> Option<String> {
    c.get::<Value>(&format!("/1.0/instances/{name}"))
        .await
        .ok()
        .map(|v| v["status"].as_str().unwrap().to_owned())
}

/// The IPv4 address of `name`'s eth0, once it has one (DHCP).
async fn ipv4(d: &Daemon, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s: Value = d
            .client()
            .get(&format!("/1.0/instances/{name}/state"))
            .await
            .unwrap();
        let found = s["network"]["eth0"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["family"] == "inet")
            .and_then(|a| a["address"].as_str().map(str::to_owned));
        if let Some(a) = found {
            return a;
        }
        assert!(Instant::now() < deadline, "{name} got no address");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the web server at `addr` answers, asked from `d`'s namespace (a new connection).
fn fetch(d: &Daemon, addr: &str) -> String {
    let target = format!("{addr}:80");
    d.netns().block_on(move || {
        Box::pin(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::TcpStream::connect(&target),
            )
            .await
            .expect("connect in time")
            .expect("connect");
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        })
    })
}

/// The counter the loop writes, read twice half a second apart on `d`.
async fn counting(d: &Daemon, name: &str) -> (u64, u64) {
    // The loop rewrites the file (truncate, then write): a read may fall in between.
    let read = || {
        (0..20)
            .find_map(|_| exec(d, name, "cat /tmp/n").parse::<u64>().ok())
            .expect("the loop writes /tmp/n")
    };
    let n1 = read();
    tokio::time::sleep(Duration::from_millis(500)).await;
    (n1, read())
}

#[tokio::test]
async fn a_busybox_container_moves_live_and_back() {
    let (h1, h2) = hosts("10.92.0").await;
    // Its nic has a static address: the target serves it too.
    ok(&h1.berth(&["init", "bb", "c1", "-c", "migration.stateful=true"]));
    ok(&h1.berth(&[
        "config",
        "device",
        "override",
        "c1",
        "eth0",
        "ipv4.address=10.92.0.50",
    ]));
    ok(&h1.berth(&["start", "c1"]));
    let addr = ipv4(&h1, "c1").await;
    assert_eq!(addr, "10.92.0.50");
    berth_e2e::wait_for_boot(&h1.client(), "c1").await;
    // A loop started from the console, a web server started by exec.
    let out = console(
        &h1.client(),
        "c1",
        "X=kept-$((6*7)); (while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done) & echo loop-$!-$X",
        "-kept-42",
    )
    .await;
    let loop_pid = out.rsplit("loop-").next().unwrap();
    let loop_pid = loop_pid.split('-').next().unwrap().to_owned();
    exec(
        &h1,
        "c1",
        "mkdir -p /www && echo hello > /www/index.html && httpd -p 80 -h /www",
    );
    let httpd = exec(&h1, "c1", "pidof httpd");
    let mac = exec(&h1, "c1", "cat /sys/class/net/eth0/address");
    assert!(fetch(&h1, &addr).contains("hello"));

    let moved = berth(&h1, &["move", "h1:c1", "h2:c1"]);
    migrated(&moved, "c1", &h1, &h2);
    assert_eq!(status(&h2.client(), "c1").await.as_deref(), Some("Running"));
    assert_eq!(status(&h1.client(), "c1").await, None);
    // The same processes, going on; the same MAC and address; the server answers a new
    // connection made on the target's side, as after a VM's migration.
    exec(&h2, "c1", &format!("kill -0 {loop_pid}"));
    assert_eq!(exec(&h2, "c1", "pidof httpd"), httpd);
    let (n1, n2) = counting(&h2, "c1").await;
    assert!(n2 > n1, "the loop goes on: {n1} then {n2}");
    assert_eq!(exec(&h2, "c1", "cat /sys/class/net/eth0/address"), mac);
    assert!(exec(&h2, "c1", "ip -4 addr show eth0").contains(&addr));
    assert!(fetch(&h2, &addr).contains("hello"));
    let config: Value = h2.client().get("/1.0/instances/c1").await.unwrap();
    assert_eq!(config["config"]["volatile.eth0.hwaddr"], mac.as_str());
    assert_eq!(config["devices"]["eth0"]["ipv4.address"], "10.92.0.50");
    let leases = ok(&h2.berth(&["network", "list-leases", "br0", "-f", "csv"]));
    assert!(
        leases.contains("c1,") && leases.contains("10.92.0.50"),
        "{leases}"
    );
    let out = console(&h2.client(), "c1", "echo again-$X", "again-kept-42").await;
    assert!(out.contains("again-kept-42"), "{out}");

    // And back with the real lxc client, live by default for a running container.
    let back = lxc(&h1, &["move", "h2:c1", "h1:c1"]);
    migrated(&back, "c1", &h2, &h1);
    assert_eq!(status(&h1.client(), "c1").await.as_deref(), Some("Running"));
    assert_eq!(status(&h2.client(), "c1").await, None);
    exec(&h1, "c1", &format!("kill -0 {loop_pid}"));
    let (n3, n4) = counting(&h1, "c1").await;
    assert!(n3 > n2 && n4 > n3, "{n2} {n3} {n4}");
    assert!(fetch(&h1, &addr).contains("hello"));

    // A restore that fails on the target (its bridge went from under its berthd): one
    // line, and the container runs on at the source, its loop too; the target keeps
    // nothing.
    h2.netns().run("ip", &["link", "del", "br0"]);
    let e = fails(&berth(&h1, &["move", "h1:c1", "h2:c1"]));
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert_eq!(status(&h1.client(), "c1").await.as_deref(), Some("Running"));
    assert_eq!(status(&h2.client(), "c1").await, None);
    exec(&h1, "c1", &format!("kill -0 {loop_pid}"));
    let (n5, n6) = counting(&h1, "c1").await;
    assert!(n6 > n5, "the loop goes on at the source: {n5} then {n6}");
    assert!(fetch(&h1, &addr).contains("hello"));
    ok(&h1.berth(&["delete", "-f", "c1"]));
}

#[tokio::test]
async fn live_moves_that_cannot_work_are_refused() {
    let (h1, h2) = hosts("10.93.0").await;
    // Not checkpointable: the real client's live default is refused, naming the key and
    // --stateless; the container runs on, the target has nothing.
    ok(&h1.berth(&["launch", "bb", "plain"]));
    let e = fails(&lxc(&h1, &["move", "h1:plain", "h2:plain"]));
    assert!(
        e.contains("migration.stateful") && e.contains("--stateless"),
        "{e}"
    );
    assert_eq!(
        status(&h1.client(), "plain").await.as_deref(),
        Some("Running")
    );
    assert_eq!(status(&h2.client(), "plain").await, None);
    // berth moves it stateless instead (stopped, copied, started).
    ok(&berth(&h1, &["move", "h1:plain", "h2:plain"]));
    assert_eq!(
        status(&h2.client(), "plain").await.as_deref(),
        Some("Running")
    );
    ok(&h2.berth(&["delete", "-f", "plain"]));

    // The ids it runs with are held on the target by another instance: refused before
    // anything is dumped; the container runs on.
    ok(&h1.berth(&["launch", "bb", "c2", "-c", "migration.stateful=true"]));
    let c2: Value = h1.client().get("/1.0/instances/c2").await.unwrap();
    let base = c2["config"]["volatile.idmap.base"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&h2.berth(&[
        "init",
        "bb",
        "holder",
        "-c",
        &format!("security.idmap.base={base}"),
    ]));
    let e = fails(&berth(&h1, &["move", "h1:c2", "h2:c2"]));
    assert!(e.contains("another instance holds"), "{e}");
    assert_eq!(status(&h1.client(), "c2").await.as_deref(), Some("Running"));
    assert_eq!(status(&h2.client(), "c2").await, None);
    ok(&h1.berth(&["delete", "-f", "c2"]));
    ok(&h2.berth(&["delete", "holder"]));

    // Something CRIU cannot dump (a nested pid namespace): the source's reason, in one
    // line; the container runs on.
    ok(&h1.berth(&["launch", "bb", "c3", "-c", "migration.stateful=true"]));
    exec(
        &h1,
        "c3",
        "unshare -p -f sleep 1000 </dev/null >/dev/null 2>&1 &",
    );
    let e = fails(&berth(&h1, &["move", "h1:c3", "h2:c3"]));
    assert!(e.contains("nested pid namespace"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert_eq!(status(&h1.client(), "c3").await.as_deref(), Some("Running"));
    assert_eq!(status(&h2.client(), "c3").await, None);
    // Nested UTS and IPC namespaces, which CRIU cannot dump either, are refused in a
    // checkpointable container (systemd then does without them).
    let e = fails(&h1.berth(&["exec", "c3", "--", "unshare", "-u", "true"]));
    assert!(e.contains("Operation not permitted"), "{e}");
    ok(&h1.berth(&["delete", "-f", "c3"]));
}

/// Waits until systemd inside `name` on `d` has finished starting (`running`, or
/// `degraded` when a unit failed).
async fn booted(d: &Daemon, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = d.berth(&["exec", name, "--", "systemctl", "is-system-running"]);
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if state == "running" || state == "degraded" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never finished booting: {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_debian_container_moves_live() {
    let (h1, h2) = hosts("10.94.0").await;
    berth_e2e::with_debian(&h1).await;
    ok(&h1.berth(&["launch", "deb", "d1", "-c", "migration.stateful=true"]));
    let addr = ipv4(&h1, "d1").await;
    booted(&h1, "d1").await;
    // systemd's services, each sandboxed in mount namespaces of its own, and a loop
    // started by exec.
    let services = "pidof systemd-journald systemd-logind systemd-resolved systemd-networkd";
    let pids = exec(&h1, "d1", services);
    exec(
        &h1,
        "d1",
        "(while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done) >/dev/null 2>&1 &",
    );
    let mac = exec(&h1, "d1", "cat /sys/class/net/eth0/address");

    let moved = berth(&h1, &["move", "h1:d1", "h2:d1"]);
    migrated(&moved, "d1", &h1, &h2);
    assert_eq!(status(&h2.client(), "d1").await.as_deref(), Some("Running"));
    assert_eq!(status(&h1.client(), "d1").await, None);
    assert_eq!(exec(&h2, "d1", services), pids);
    let (n1, n2) = counting(&h2, "d1").await;
    assert!(n2 > n1, "the loop goes on: {n1} then {n2}");
    assert_eq!(exec(&h2, "d1", "cat /sys/class/net/eth0/address"), mac);
    assert!(exec(&h2, "d1", "ip -4 addr show eth0").contains(&addr));
    // systemd goes on managing its services on the target.
    booted(&h2, "d1").await;
    exec(&h2, "d1", "systemctl restart systemd-logind");
    exec(&h2, "d1", "systemctl is-active systemd-logind");
    ok(&h2.berth(&["delete", "-f", "d1"]));
}
