//! Containers between berthd and a real Incus daemon (incusd 6.0 from incus-base), both in
//! the test's network namespace on loopback ports, driven by the real `incus` client:
//! a stopped busybox container with two snapshots copied and moved each way, in pull and
//! push modes, and started where it lands.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::{Daemon, Netns, ok};

const INCUSD: &str = "/usr/libexec/incus/incusd";

/// An incusd of the test's own: its state in a temporary directory, in the berthd's
/// network namespace (so it reaches nothing beyond this machine); shut down, its
/// containers and mounts gone, when dropped.
struct Incus {
    dir: tempfile::TempDir,
    child: Child,
    netns: std::sync::Arc<Netns>,
}

impl Incus {
    fn start(beside: &Daemon) -> Incus {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-incus-")
            .tempdir()
            .unwrap();
        let netns = beside.netns_arc();
        let log = std::fs::File::create(dir.path().join("incusd.out")).unwrap();
        let child = netns
            .command(INCUSD, &["--group", ""])
            .env("INCUS_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start incusd");
        let incus = Incus { dir, child, netns };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !incus.local(&["info"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "incusd did not come up: {}",
                std::fs::read_to_string(incus.dir.path().join("incusd.out")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        incus
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The incus client on this daemon's unix socket.
    fn local(&self, args: &[&str]) -> Output {
        self.netns
            .command("incus", args)
            .env("INCUS_DIR", self.dir())
            .env("INCUS_CONF", self.dir().join("local-conf"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Incus {
    fn drop(&mut self) {
        let _ = self.local(&["delete", "-f", "c1", "c2", "c3", "c4", "c6", "c7"]);
        let _ = self.local(&["storage", "delete", "bt"]);
        let _ = self.local(&["admin", "shutdown", "--timeout", "20"]);
        let _ = self.child.kill();
        let _ = self.child.wait();
        // What incusd mounted under its directory (its shared mounts, the containers'
        // volumes), deepest first.
        let dir = self.dir().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| p.starts_with(&dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").args(["-l", p]).output();
        }
    }
}

fn image() -> PathBuf {
    berth_e2e::busybox_image()
}

/// The berthd (8443) and incusd (8445) known to the incus client (configured in the
/// berthd's directory) as `b` and `i`; incusd has storage, the busybox image and, in it,
/// a stopped container `c1` with snapshots s1 and s2 (a file written between them).
async fn hosts() -> (Daemon, Incus) {
    let b = Daemon::start();
    berth_e2e::with_busybox(&b).await;
    b.https_on(8443);
    let i = Incus::start(&b);
    for args in [
        vec!["storage", "create", "default", "dir"],
        vec![
            "profile",
            "device",
            "add",
            "default",
            "root",
            "disk",
            "path=/",
            "pool=default",
        ],
        vec!["config", "set", "core.https_address", "127.0.0.1:8445"],
        vec![
            "image",
            "import",
            &image().to_string_lossy(),
            "--alias",
            "bb",
        ],
        vec!["init", "bb", "c1"],
        vec!["snapshot", "create", "c1", "s1"],
    ]
    .iter()
    .map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&i.local(&args));
    }
    let rootfs = i.dir().join("containers/c1/rootfs");
    std::fs::write(rootfs.join("marker"), "between the snapshots\n").unwrap();
    ok(&i.local(&["snapshot", "create", "c1", "s2"]));
    for (name, token) in [
        (
            "b",
            last_line(&ok(&b.berth(&["config", "trust", "add", "incus-conf"]))),
        ),
        (
            "i",
            last_line(&ok(&i.local(&["config", "trust", "add", "incus-conf"]))),
        ),
    ] {
        ok(&b.remote("incus", "incus-conf", &["remote", "add", name, &token]));
    }
    (b, i)
}

fn last_line(out: &str) -> String {
    out.lines().last().unwrap_or_default().trim().to_owned()
}

fn snapshots(out: &str) -> bool {
    out.contains("s1") && out.contains("s2")
}

#[tokio::test]
async fn containers_go_between_berthd_and_incus() {
    let (b, i) = hosts().await;
    let incus = |args: &[&str]| b.remote("incus", "incus-conf", args);

    // Incus → berthd (pull, the client's default): snapshots and files come along, and it
    // starts there.
    ok(&incus(&["copy", "i:c1", "b:c1"]));
    let info = ok(&incus(&["info", "b:c1"]));
    assert!(snapshots(&info), "{info}");
    ok(&incus(&["start", "b:c1"]));
    let out = ok(&incus(&["exec", "b:c1", "--", "cat", "/marker"]));
    assert_eq!(out.trim(), "between the snapshots");
    ok(&incus(&["stop", "-f", "b:c1"]));

    // berthd → Incus, pushed: it starts on Incus.
    ok(&incus(&["copy", "b:c1", "i:c2", "--mode", "push"]));
    let info = ok(&incus(&["info", "i:c2"]));
    assert!(snapshots(&info), "{info}");
    ok(&incus(&["start", "i:c2"]));
    let out = ok(&incus(&["exec", "i:c2", "--", "cat", "/marker"]));
    assert_eq!(out.trim(), "between the snapshots");
    ok(&incus(&["stop", "-f", "i:c2"]));

    // Moves each way: the source has it no more.
    ok(&incus(&["move", "b:c1", "i:c3"]));
    assert!(!incus(&["info", "b:c1"]).status.success());
    assert!(snapshots(&ok(&incus(&["info", "i:c3"]))));
    ok(&incus(&["move", "i:c3", "b:c3", "--mode", "relay"]));
    assert!(!incus(&["info", "i:c3"]).status.success());
    assert!(snapshots(&ok(&incus(&["info", "b:c3"]))));
    ok(&incus(&["start", "b:c3"]));
    let out = ok(&incus(&["exec", "b:c3", "--", "cat", "/marker"]));
    assert_eq!(out.trim(), "between the snapshots");
    ok(&incus(&["delete", "-f", "b:c3"]));
    drop(i);
}

#[tokio::test]
async fn backups_go_between_berthd_and_incus() {
    let (b, i) = hosts().await;
    let incus = |args: &[&str]| b.remote("incus", "incus-conf", args);

    // A backup Incus made imports into berthd, snapshots and all.
    let from_incus = i.dir().join("from-incus.tar.gz");
    ok(&i.local(&["export", "c1", &from_incus.to_string_lossy()]));
    ok(&b.berth(&["import", &from_incus.to_string_lossy(), "c5"]));
    let info = ok(&incus(&["info", "b:c5"]));
    assert!(snapshots(&info), "{info}");
    ok(&b.berth(&["start", "c5"]));
    let out = ok(&b.berth(&["exec", "c5", "--", "cat", "/marker"]));
    assert_eq!(out.trim(), "between the snapshots");
    ok(&b.berth(&["snapshot", "restore", "c5", "s1"]));
    assert!(
        !b.berth(&["exec", "c5", "--", "cat", "/marker"])
            .status
            .success()
    );

    // One berthd made imports into Incus, and starts there.
    ok(&b.berth(&["snapshot", "restore", "c5", "s2"]));
    ok(&b.berth(&["stop", "-f", "c5"]));
    let from_berth = i.dir().join("from-berth.tar.gz");
    ok(&b.berth(&["export", "c5", &from_berth.to_string_lossy()]));
    ok(&i.local(&["import", &from_berth.to_string_lossy(), "c4"]));
    let info = ok(&i.local(&["info", "c4"]));
    assert!(snapshots(&info), "{info}");
    ok(&i.local(&["start", "c4"]));
    let out = ok(&i.local(&["exec", "c4", "--", "cat", "/marker"]));
    assert_eq!(out.trim(), "between the snapshots");
    ok(&i.local(&["stop", "-f", "c4"]));
    ok(&b.berth(&["delete", "-f", "c5"]));

    // Optimized backups (btrfs send streams), both ways, between btrfs pools.
    ok(&i.local(&["storage", "create", "bt", "btrfs", "size=1GiB"]));
    ok(&b.berth(&["storage", "create", "bt", "btrfs", "size=1GiB"]));
    ok(&i.local(&["copy", "c1", "c6", "--storage", "bt"]));
    let opt_incus = i.dir().join("opt-incus.tar.gz");
    let opt_incus = opt_incus.to_string_lossy();
    ok(&i.local(&["export", "c6", &opt_incus, "--optimized-storage"]));
    ok(&b.berth(&["import", &opt_incus, "c6", "--storage", "bt"]));
    let info = ok(&incus(&["info", "b:c6"]));
    assert!(snapshots(&info), "{info}");
    ok(&b.berth(&["start", "c6"]));
    let out = ok(&b.berth(&["exec", "c6", "--", "cat", "/marker"]));
    assert_eq!(out.trim(), "between the snapshots");
    ok(&b.berth(&["exec", "c6", "--", "sh", "-c", "echo from-berth > /marker2"]));
    ok(&b.berth(&["stop", "-f", "c6"]));
    let opt_berth = i.dir().join("opt-berth.tar.gz");
    let opt_berth = opt_berth.to_string_lossy();
    ok(&b.berth(&["export", "c6", &opt_berth, "--optimized-storage"]));
    ok(&i.local(&["import", &opt_berth, "c7", "--storage", "bt"]));
    let info = ok(&i.local(&["info", "c7"]));
    assert!(snapshots(&info), "{info}");
    ok(&i.local(&["start", "c7"]));
    let out = ok(&i.local(&["exec", "c7", "--", "cat", "/marker", "/marker2"]));
    assert_eq!(out.trim(), "between the snapshots\nfrom-berth");
    ok(&i.local(&["delete", "-f", "c6", "c7"]));
    ok(&b.berth(&["delete", "-f", "c6"]));
    ok(&b.berth(&["storage", "delete", "bt"]));
    drop(i);
}
