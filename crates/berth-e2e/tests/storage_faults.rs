//! berthd killed in the middle of a copy, a volume copy, a snapshot or an import: after a
//! restart nothing half-made is left (no record, no files), and the same name can be made
//! again.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::time::Duration;

use berth_client::Method;
use berth_e2e::{Daemon, ok};

/// What a pool directory holds (dot-names included), but the spare volumes berthd keeps
/// unpacked ahead.
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with(".spare-"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test]
async fn a_killed_daemon_leaves_nothing_half_made() {
    let mut d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let pool = d.dir().join("storage-pools/default");
    ok(&d.berth(&["init", "bb", "big"]));
    // A gigabyte to copy: long enough for the kill to land in the middle.
    let data = pool.join("containers/big/rootfs/root/data");
    let status = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=1024", "status=none"])
        .arg(format!("of={}", data.display()))
        .status()
        .unwrap();
    assert!(status.success());

    // An instance copy.
    let c = d.client();
    let body = serde_json::json!({"name": "copy", "source": {"type": "copy", "source": "big"}});
    c.query(Method::POST, "/1.0/instances", Some(&body))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    d.kill();
    d.restart();
    let c = d.client();
    let list: Vec<String> = c.get("/1.0/instances").await.unwrap();
    assert_eq!(list, ["/1.0/instances/big"], "no half-made copy");
    assert_eq!(entries(&pool.join("containers")), ["big"]);
    ok(&d.berth(&["copy", "big", "copy"]));
    ok(&d.berth(&["delete", "copy"]));

    // A custom volume's copy.
    ok(&d.berth(&["storage", "volume", "create", "default", "v1"]));
    let v1 = pool.join("custom/default_v1");
    std::fs::rename(&data, v1.join("data")).unwrap();
    let body = serde_json::json!({"name": "v2", "source": {"type": "copy", "name": "v1"}});
    c.query(
        Method::POST,
        "/1.0/storage-pools/default/volumes/custom",
        Some(&body),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    d.kill();
    d.restart();
    let c = d.client();
    let vols: Vec<String> = c
        .get("/1.0/storage-pools/default/volumes/custom")
        .await
        .unwrap();
    assert_eq!(vols, ["/1.0/storage-pools/default/volumes/custom/v1"]);
    let left: Vec<String> = entries(&pool.join("custom"))
        .into_iter()
        .filter(|n| n.contains("v2"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    ok(&d.berth(&["storage", "volume", "copy", "default/v1", "default/v2"]));
    ok(&d.berth(&["storage", "volume", "delete", "default", "v2"]));

    // A snapshot of the volume.
    c.query(
        Method::POST,
        "/1.0/storage-pools/default/volumes/custom/v1/snapshots",
        Some(&serde_json::json!({"name": "s1"})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    d.kill();
    d.restart();
    let snaps = ok(&d.berth(&[
        "storage", "volume", "snapshot", "list", "default", "v1", "-f", "csv",
    ]));
    assert!(snaps.trim().is_empty(), "{snaps}");
    ok(&d.berth(&[
        "storage", "volume", "snapshot", "create", "default", "v1", "s1",
    ]));

    // An import, its upload cut by the kill.
    std::fs::rename(v1.join("data"), &data).unwrap();
    let tar = d.dir().join("big.tar");
    ok(&d.berth(&[
        "export",
        "big",
        tar.to_str().unwrap(),
        "--compression",
        "none",
    ]));
    let mut import = std::process::Command::new(berth_e2e::bin("berth"))
        .args(["import", tar.to_str().unwrap(), "imported"])
        .env("BERTH_DIR", d.dir())
        .env("BERTH_CONF", d.dir().join("berth-client"))
        .env_remove("BERTH_SOCKET")
        .env_remove("BERTH_PROJECT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    d.kill();
    let _ = import.wait();
    d.restart();
    let c = d.client();
    let list: Vec<String> = c.get("/1.0/instances").await.unwrap();
    assert_eq!(list, ["/1.0/instances/big"], "no half-imported instance");
    assert_eq!(entries(&pool.join("containers")), ["big"]);
    ok(&d.berth(&["import", tar.to_str().unwrap(), "imported"]));
    ok(&d.berth(&["delete", "big", "imported"]));
    ok(&d.berth(&["storage", "volume", "delete", "default", "v1"]));
}
