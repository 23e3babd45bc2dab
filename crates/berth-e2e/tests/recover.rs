//! Recovery: with the database moved away, `berth admin recover` finds the instances and
//! custom volumes the pools hold (a dir pool berthd takes back by itself, a btrfs
//! loop-file pool named to it) and brings them back with their configuration and
//! snapshots; what they need that the database held (a network) blocks it until made
//! again.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use berth_api::storage::StorageVolume;
use berth_e2e::{Daemon, fails, ok};

fn sh(d: &Daemon, name: &str, script: &str) -> String {
    ok(&d.berth(&["exec", name, "--", "sh", "-c", script]))
}

#[tokio::test]
async fn recover_after_the_database_is_moved_away() {
    let mut d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.berth(&["storage", "create", "bt", "btrfs", "size=1GiB"]));
    ok(&d.berth(&["launch", "bb", "c1", "-c", "user.who=c1"]));
    sh(&d, "c1", "echo first > /root/f");
    ok(&d.berth(&["snapshot", "create", "c1", "s1"]));
    sh(&d, "c1", "echo second > /root/f");
    ok(&d.berth(&["launch", "bb", "c2", "-s", "bt"]));
    sh(&d, "c2", "echo on-btrfs > /root/f");
    ok(&d.berth(&["stop", "-f", "c1", "c2"]));
    ok(&d.berth(&["storage", "volume", "create", "default", "v1", "user.k=v"]));
    ok(&d.berth(&[
        "storage", "volume", "snapshot", "create", "default", "v1", "vs",
    ]));
    ok(&d.berth(&["storage", "volume", "create", "bt", "v2", "size=64MiB"]));
    // A network lives in the database too: c3's nic on it blocks recovery until it is
    // made again.
    let net = [
        "network",
        "create",
        "nr",
        "ipv4.address=10.151.7.1/24",
        "ipv6.address=none",
    ];
    ok(&d.berth(&net));
    ok(&d.berth(&["init", "bb", "c3"]));
    ok(&d.lxc(&["config", "device", "add", "c3", "eth0", "nic", "network=nr"]));
    let before: serde_json::Value = d.client().get("/1.0/instances/c1").await.unwrap();

    // The database goes; berthd starts afresh and takes its default pool as it finds it.
    d.stop();
    std::fs::rename(d.dir().join("database"), d.dir().join("database.lost")).unwrap();
    d.restart();
    let list = ok(&d.berth(&["list", "-f", "csv"]));
    assert!(list.trim().is_empty(), "{list}");

    // Without the lost pool named, its instance is not found; a project it needs missing
    // would block; named, everything comes back.
    let image = d.dir().join("disks/bt.img");
    let spec = format!("bt:btrfs:{}", image.display());
    let out = d.berth(&["admin", "recover"]);
    let e = fails(&out);
    assert!(e.contains("Recovery is blocked"), "{e}");
    let scan = String::from_utf8_lossy(&out.stdout);
    assert!(scan.contains("\"c1\"") && scan.contains("\"v1\""), "{scan}");
    assert!(!scan.contains("\"c2\""), "{scan}");
    assert!(scan.contains("--pool NAME:DRIVER:SOURCE"), "{scan}");
    assert!(
        scan.contains(r#"Instance "c3": Device "eth0": network "nr" does not exist"#),
        "{scan}"
    );
    let e = fails(&d.berth(&["admin", "recover", "--pool", "bt:zfs2:/x", "--yes"]));
    assert!(e.contains("zfs2"), "{e}");
    let out = d.berth(&["admin", "recover", "--pool", &spec, "--yes"]);
    assert!(fails(&out).contains("Recovery is blocked"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(r#"network "nr" does not exist"#), "{said}");
    let list = ok(&d.berth(&["list", "-f", "csv"]));
    assert!(
        list.trim().is_empty(),
        "a blocked recovery brings nothing back: {list}"
    );
    ok(&d.berth(&net));
    let done = ok(&d.berth(&["admin", "recover", "--pool", &spec, "--yes"]));
    assert!(done.contains("Recovered"), "{done}");
    let again = ok(&d.berth(&["admin", "recover"]));
    assert!(again.contains("Nothing to do"), "{again}");

    let c1: serde_json::Value = d.client().get("/1.0/instances/c1").await.unwrap();
    assert_eq!(c1["config"]["user.who"], "c1");
    assert_eq!(
        c1["config"]["volatile.uuid"], before["config"]["volatile.uuid"],
        "the same instance"
    );
    assert_eq!(
        c1["devices"], before["devices"],
        "its root disk is still its profile's"
    );
    let snaps = ok(&d.berth(&["snapshot", "list", "c1", "-f", "csv"]));
    assert!(snaps.contains("s1"), "{snaps}");
    ok(&d.berth(&["start", "c1", "c2"]));
    assert_eq!(sh(&d, "c1", "cat /root/f"), "second\n");
    assert_eq!(sh(&d, "c2", "cat /root/f"), "on-btrfs\n");
    ok(&d.berth(&["stop", "-f", "c1"]));
    ok(&d.berth(&["snapshot", "restore", "c1", "s1"]));
    ok(&d.berth(&["start", "c1"]));
    assert_eq!(sh(&d, "c1", "cat /root/f"), "first\n");

    let v1: StorageVolume = d
        .client()
        .get("/1.0/storage-pools/default/volumes/custom/v1")
        .await
        .unwrap();
    assert_eq!(v1.config["user.k"], "v");
    let vs = ok(&d.berth(&[
        "storage", "volume", "snapshot", "list", "default", "v1", "-f", "csv",
    ]));
    assert!(vs.contains("vs"), "{vs}");
    let v2: StorageVolume = d
        .client()
        .get("/1.0/storage-pools/bt/volumes/custom/v2")
        .await
        .unwrap();
    assert_eq!(v2.config["size"], "64MiB");

    let c3: serde_json::Value = d.client().get("/1.0/instances/c3").await.unwrap();
    assert_eq!(c3["devices"]["eth0"]["network"], "nr");

    ok(&d.berth(&["delete", "-f", "c1", "c2", "c3"]));
    ok(&d.berth(&["network", "delete", "nr"]));
    ok(&d.berth(&["storage", "volume", "delete", "default", "v1"]));
    ok(&d.berth(&["storage", "volume", "delete", "bt", "v2"]));
    ok(&d.berth(&["storage", "delete", "bt"]));
}

#[tokio::test]
async fn the_incus_client_recovers_from_berthd() {
    let mut d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.berth(&["init", "bb", "c1", "-c", "user.who=c1"]));
    ok(&d.berth(&["storage", "volume", "create", "default", "v1"]));
    // A backup kept on the server outlives the database that named it.
    let c = d.client();
    let body = serde_json::json!({"name": "b0", "compression_algorithm": "none"});
    berth_e2e::post_and_wait(&c, "/1.0/instances/c1/backups", &body).await;
    let kept = d.dir().join("backups/instances/c1/b0");
    assert!(kept.exists());
    d.stop();
    std::fs::rename(d.dir().join("database"), d.dir().join("database.lost")).unwrap();
    d.restart();
    assert!(kept.exists(), "a backup file no row names is kept");
    // `incus admin recover` on berthd's socket, answering its questions: no other pool,
    // scan, recover.
    let mut child = std::process::Command::new("incus")
        .args(["admin", "recover"])
        .env("INCUS_DIR", d.dir())
        .env("INCUS_CONF", d.dir().join("incus-conf"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"no\nyes\nyes\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("c1") && said.contains("v1"), "{said}");
    let c1: serde_json::Value = d.client().get("/1.0/instances/c1").await.unwrap();
    assert_eq!(c1["config"]["user.who"], "c1");
    ok(&d.berth(&["storage", "volume", "show", "default", "v1"]));
    // The kept file is neither overwritten by a new backup of its name nor removed with
    // the instance.
    let e = c
        .query(
            berth_client::Method::POST,
            "/1.0/instances/c1/backups",
            Some(&body),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    assert!(e.to_string().contains("kept on the server"), "{e}");
    ok(&d.berth(&["delete", "c1"]));
    assert!(kept.exists());
    // Recovery's own source (which keeps volatile keys) is not a client's to send.
    let e = c
        .query(
            berth_client::Method::POST,
            "/1.0/instances",
            Some(&serde_json::json!({"name": "c9", "source": {"type": "recover"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    ok(&d.berth(&["storage", "volume", "delete", "default", "v1"]));
}
