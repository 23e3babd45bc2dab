//! proxy devices with a real busybox container serving HTTP: a host port on 127.0.0.1
//! forwarded by a relay and by kernel NAT, a unix socket on the host, a port inside
//! forwarded to the host (`bind=instance`), live removal, bad input, and a SIGKILLed
//! berthd. The daemon lives in a network namespace of its own.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::time::{Duration, Instant};

use berth_e2e::{Daemon, fails, ok, with_busybox};

/// What `GET /` answers through `how` (`tcp:HOST:PORT` or `unix:PATH`), fetched from the
/// daemon's namespace; empty when nothing answers.
fn fetch(d: &Daemon, how: &str) -> String {
    let script = format!(
        "import socket,sys\nhow={how:?}\ntry:\n if how.startswith('unix:'):\n  s=socket.socket(socket.AF_UNIX)\n  s.settimeout(5)\n  s.connect(how[5:])\n else:\n  _,h,p=how.split(':')\n  s=socket.create_connection((h,int(p)),timeout=5)\n s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n out=b''\n while True:\n  b=s.recv(4096)\n  if not b: break\n  out+=b\n print(out.decode().split('\\r\\n\\r\\n',1)[-1],end='')\nexcept Exception as e:\n print('',end='')\n"
    );
    let out = d
        .netns()
        .command("python3", &["-c", &script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A daemon with a container `web` (static 10.88.0.10 on `br0`) serving "hello" on :80.
async fn serving() -> Daemon {
    let d = Daemon::start();
    with_busybox(&d).await;
    ok(&d.lxc(&[
        "network",
        "create",
        "br0",
        "ipv4.address=10.88.0.1/24",
        "ipv6.address=none",
    ]));
    ok(&d.lxc(&["init", "bb", "web"]));
    ok(&d.lxc(&[
        "config",
        "device",
        "add",
        "web",
        "eth0",
        "nic",
        "network=br0",
        "ipv4.address=10.88.0.10",
    ]));
    ok(&d.lxc(&["start", "web"]));
    ok(&d.lxc(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "mkdir -p /www && echo hello > /www/index.html && httpd -p 80 -h /www",
    ]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while fetch(&d, "tcp:10.88.0.10:80") != "hello\n" {
        assert!(Instant::now() < deadline, "the container does not serve");
        std::thread::sleep(Duration::from_millis(200));
    }
    d
}

/// The relays serving container `web` (their spec names its init).
fn relays(d: &Daemon) -> Vec<i32> {
    let state: serde_json::Value =
        serde_json::from_str(&ok(&d.lxc(&["query", "/1.0/instances/web/state"]))).unwrap();
    let needle = format!("\"pid\":{},", state["pid"]);
    let mut found: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.get(1) == Some(&b"forkproxy".as_slice())
                && args
                    .get(2)
                    .is_some_and(|a| String::from_utf8_lossy(a).contains(&needle))
        })
        .collect();
    found.sort_unstable();
    found
}

#[tokio::test]
async fn proxies_forward_host_ports_and_sockets_into_the_container() {
    let mut d = serving().await;
    // A relay, and kernel NAT, on the host's loopback.
    ok(&d.lxc(&[
        "config",
        "device",
        "add",
        "web",
        "relay",
        "proxy",
        "listen=tcp:127.0.0.1:8080",
        "connect=tcp:127.0.0.1:80",
    ]));
    assert_eq!(fetch(&d, "tcp:127.0.0.1:8080"), "hello\n");
    ok(&d.lxc(&[
        "config",
        "device",
        "add",
        "web",
        "nat",
        "proxy",
        "listen=tcp:127.0.0.1:8081",
        "connect=tcp:10.88.0.10:80",
        "nat=true",
    ]));
    assert_eq!(fetch(&d, "tcp:127.0.0.1:8081"), "hello\n");
    // A unix socket on the host, with its mode.
    let sock = d.dir().join("web.sock");
    ok(&d.lxc(&[
        "config",
        "device",
        "add",
        "web",
        "sock",
        "proxy",
        &format!("listen=unix:{}", sock.display()),
        "connect=tcp:127.0.0.1:80",
        "mode=0600",
    ]));
    assert_eq!(fetch(&d, &format!("unix:{}", sock.display())), "hello\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The container's side listening, the host's serving.
    let (mut host, _) = d.netns().spawn_ready("python3", &["-c", "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',7002))\ns.listen()\nprint('ready',flush=True)\nwhile True:\n c,_=s.accept()\n c.sendall(b'from the host\\n')\n c.close()\n"]);
    ok(&d.lxc(&[
        "config",
        "device",
        "add",
        "web",
        "back",
        "proxy",
        "listen=tcp:127.0.0.1:9000",
        "connect=tcp:127.0.0.1:7002",
        "bind=instance",
    ]));
    let got = ok(&d.lxc(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "nc 127.0.0.1 9000 </dev/null",
    ]));
    assert_eq!(got, "from the host\n");
    // UDP: the container asks the network's DNS through a port of its own.
    ok(&d.lxc(&[
        "config",
        "device",
        "add",
        "web",
        "dns",
        "proxy",
        "listen=udp:127.0.0.1:5353",
        "connect=udp:10.88.0.1:53",
        "bind=instance",
    ]));
    let answer = ok(&d.lxc(&[
        "exec",
        "web",
        "--",
        "nslookup",
        "web.berth",
        "127.0.0.1:5353",
    ]));
    assert!(answer.contains("10.88.0.10"), "{answer}");

    // berthd killed and started again: the relays and the rules keep working.
    let before = relays(&d);
    assert_eq!(before.len(), 4, "one relay per relayed device");
    d.kill();
    assert_eq!(
        fetch(&d, "tcp:127.0.0.1:8080"),
        "hello\n",
        "relays outlive berthd"
    );
    d.restart();
    assert_eq!(relays(&d), before, "the same relays, kept");
    assert_eq!(fetch(&d, "tcp:127.0.0.1:8080"), "hello\n");
    assert_eq!(fetch(&d, "tcp:127.0.0.1:8081"), "hello\n");

    // Removed with the device.
    ok(&d.lxc(&["config", "device", "remove", "web", "relay", "nat"]));
    assert_eq!(fetch(&d, "tcp:127.0.0.1:8080"), "");
    assert_eq!(fetch(&d, "tcp:127.0.0.1:8081"), "");
    assert_eq!(relays(&d).len(), 3);
    // And with the container: its relays end when it stops.
    let left = relays(&d);
    ok(&d.lxc(&["stop", "web", "--force"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while left
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(Instant::now() < deadline, "relays outlived their container");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = host.kill();
    let _ = host.wait();
}

#[tokio::test]
async fn bad_proxies_are_refused_naming_the_key() {
    let d = serving().await;
    ok(&d.lxc(&[
        "config",
        "device",
        "add",
        "web",
        "first",
        "proxy",
        "listen=tcp:127.0.0.1:8090",
        "connect=tcp:127.0.0.1:80",
    ]));
    for (args, key) in [
        (
            vec![
                "listen=tcp:127.0.0.1:8091-8092",
                "connect=tcp:127.0.0.1:80-82",
            ],
            "connect",
        ),
        (
            vec![
                "listen=tcp:127.0.0.1:8093",
                "connect=tcp:10.88.0.99:80",
                "nat=true",
            ],
            "nat",
        ),
        (
            vec!["listen=tcp:nowhere:1", "connect=tcp:127.0.0.1:80"],
            "listen",
        ),
        (
            vec!["listen=tcp:127.0.0.1:8090", "connect=tcp:127.0.0.1:80"],
            "Address already in use",
        ),
    ] {
        let mut full = vec!["config", "device", "add", "web", "bad", "proxy"];
        full.extend(args);
        let err = fails(&d.lxc(&full));
        assert!(err.contains(key), "{full:?}: {err}");
    }
    let shown = ok(&d.lxc(&["config", "device", "show", "web"]));
    assert!(!shown.contains("bad:"), "{shown}");
    assert_eq!(relays(&d).len(), 1);
    assert_eq!(fetch(&d, "tcp:127.0.0.1:8090"), "hello\n");
}
