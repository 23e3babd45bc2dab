//! Custom storage volumes: made, attached to containers with different id maps (live and
//! at start), snapshotted and restored, copied and moved between a dir and a btrfs pool,
//! renamed, sized on btrfs, deleted; through `berth` and the real `lxc`.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use berth_api::storage::{StorageVolume, StorageVolumeSnapshot};
use berth_e2e::{Daemon, fails, ok};

fn sh(d: &Daemon, name: &str, script: &str) -> String {
    ok(&d.berth(&["exec", name, "--", "sh", "-c", script]))
}

#[tokio::test]
async fn a_volume_is_shared_snapshotted_restored_and_kept_apart_from_its_users() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    ok(&d.berth(&["launch", "bb", "c1"]));
    ok(&d.berth(&["init", "bb", "c2", "-c", "security.idmap.isolated=true"]));
    ok(&d.berth(&[
        "storage",
        "volume",
        "create",
        "default",
        "v1",
        "user.k=v",
        "--description",
        "shared",
    ]));
    // Attached live to a running container, and to a stopped one with another map.
    ok(&d.berth(&[
        "storage", "volume", "attach", "default", "v1", "c1", "/data",
    ]));
    ok(&d.berth(&[
        "storage",
        "volume",
        "attach",
        "default",
        "custom/v1",
        "c2",
        "vol",
        "/mnt/v",
    ]));
    // Two disks at one place: one would hide the other.
    let e = fails(&d.berth(&[
        "storage", "volume", "attach", "default", "v1", "c1", "again", "/data/",
    ]));
    assert!(e.contains("same path") && e.contains("\"again\""), "{e}");
    ok(&d.berth(&["start", "c2"]));
    let maps: Vec<String> = ["c1", "c2"]
        .iter()
        .map(|n| sh(&d, n, "cat /proc/self/uid_map"))
        .collect();
    assert_ne!(maps[0], maps[1], "the two containers have different maps");
    sh(
        &d,
        "c1",
        "echo hello > /data/f; chown 1000:1000 /data/f; mkdir /data/d",
    );
    assert_eq!(
        sh(&d, "c2", "cat /mnt/v/f; stat -c %u:%g /mnt/v/f"),
        "hello\n1000:1000\n"
    );
    sh(&d, "c2", "echo back > /mnt/v/g");
    assert_eq!(
        sh(&d, "c1", "stat -c %u:%g /data/g; cat /data/g"),
        "0:0\nback\n"
    );
    // On the host the files keep the container's numbering, in a root-only directory.
    let on_disk = d.dir().join("storage-pools/default/custom/default_v1");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(on_disk.join("f")).unwrap().uid(), 1000);
    assert_eq!(std::fs::metadata(&on_disk).unwrap().mode() & 0o777, 0o700);
    // The container's root may change its volume's own mode; the directory above keeps
    // every other host user out (the containers' roots pass by an ACL entry each).
    let custom = on_disk.parent().unwrap();
    assert_eq!(std::fs::metadata(custom).unwrap().mode() & 0o707, 0o700);

    let v: StorageVolume = c
        .get("/1.0/storage-pools/default/volumes/custom/v1")
        .await
        .unwrap();
    assert_eq!(v.description, "shared");
    assert_eq!(v.config["user.k"], "v");
    assert_eq!(v.used_by, ["/1.0/instances/c1", "/1.0/instances/c2"]);
    let list = ok(&d.berth(&["storage", "volume", "list", "default", "-f", "csv"]));
    assert!(list.contains("custom,v1,shared,filesystem,2"), "{list}");
    assert!(list.contains("container,c1,"), "{list}");

    // In use: not deleted; a size a dir pool cannot hold, an unknown key: refused.
    let e = fails(&d.berth(&["storage", "volume", "delete", "default", "v1"]));
    assert!(e.contains("in use by instance"), "{e}");
    let e = fails(&d.berth(&["storage", "volume", "set", "default", "v1", "size=1GiB"]));
    assert!(e.contains("\"size\" cannot be enforced"), "{e}");
    let e = fails(&d.berth(&["storage", "volume", "set", "default", "v1", "nope=1"]));
    assert!(e.contains("\"nope\""), "{e}");
    let e = fails(&d.berth(&[
        "config",
        "device",
        "add",
        "c1",
        "x",
        "disk",
        "pool=default",
        "source=missing",
        "path=/x",
    ]));
    assert!(e.contains("\"missing\" not found"), "{e}");
    let e = fails(&d.berth(&["storage", "volume", "create", "default", "v1"]));
    assert!(e.contains("already exists"), "{e}");

    // Snapshot, change, restore gives back the exact content.
    ok(&d.berth(&[
        "storage", "volume", "snapshot", "create", "default", "v1", "s1",
    ]));
    ok(&d.berth(&["storage", "volume", "snapshot", "create", "default", "v1"]));
    let snaps: Vec<StorageVolumeSnapshot> = c
        .get("/1.0/storage-pools/default/volumes/custom/v1/snapshots?recursion=1")
        .await
        .unwrap();
    let names: Vec<&str> = snaps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["s1", "snap0"]);
    sh(
        &d,
        "c1",
        "echo changed > /data/f; rm -r /data/d; echo new > /data/n",
    );
    let e = fails(&d.berth(&[
        "storage", "volume", "snapshot", "restore", "default", "v1", "s1",
    ]));
    assert!(e.contains("running"), "{e}");
    ok(&d.berth(&["stop", "-f", "c1", "c2"]));
    ok(&d.berth(&[
        "storage", "volume", "snapshot", "restore", "default", "v1", "s1",
    ]));
    ok(&d.berth(&["start", "c1"]));
    assert_eq!(
        sh(&d, "c1", "cat /data/f; stat -c %u /data/f; ls /data"),
        "hello\n1000\nd\nf\ng\n"
    );
    ok(&d.berth(&[
        "storage", "volume", "snapshot", "rename", "default", "v1", "snap0", "later",
    ]));
    ok(&d.berth(&[
        "storage", "volume", "snapshot", "delete", "default", "v1", "later",
    ]));

    // A copy from the snapshot is a volume of its own.
    ok(&d.berth(&["storage", "volume", "copy", "default/v1/s1", "default/v2"]));
    let v2 = d.dir().join("storage-pools/default/custom/default_v2");
    assert_eq!(std::fs::read_to_string(v2.join("f")).unwrap(), "hello\n");
    let v2: StorageVolume = c
        .get("/1.0/storage-pools/default/volumes/custom/v2")
        .await
        .unwrap();
    assert!(v2.used_by.is_empty() && v2.config["user.k"] == "v");

    // A rename while only stopped instances use it: their devices follow, their
    // snapshots' too.
    ok(&d.berth(&["stop", "-f", "c1"]));
    ok(&d.berth(&["snapshot", "create", "c2", "before-rename"]));
    ok(&d.berth(&["storage", "volume", "rename", "default", "v1", "data"]));
    let c2: serde_json::Value = c.get("/1.0/instances/c2").await.unwrap();
    assert_eq!(c2["devices"]["vol"]["source"], "data");
    let s: serde_json::Value = c
        .get("/1.0/instances/c2/snapshots/before-rename")
        .await
        .unwrap();
    assert_eq!(s["devices"]["vol"]["source"], "data", "{s}");
    ok(&d.berth(&["start", "c2"]));
    assert_eq!(sh(&d, "c2", "cat /mnt/v/f"), "hello\n");

    // Detached, it can go; its snapshots go with it.
    ok(&d.berth(&["storage", "volume", "detach", "default", "data", "c1"]));
    ok(&d.berth(&[
        "storage", "volume", "detach", "default", "data", "c2", "vol",
    ]));
    assert!(sh(&d, "c2", "ls /mnt/v 2>&1 || true").trim().is_empty());
    ok(&d.berth(&["storage", "volume", "delete", "default", "data", "v2"]));
    assert!(
        !d.dir()
            .join("storage-pools/default/custom/default_data")
            .exists()
    );
    assert!(
        !d.dir()
            .join("storage-pools/default/custom-snapshots/default_data")
            .exists()
    );
    ok(&d.berth(&["delete", "-f", "c1", "c2"]));
}

#[tokio::test]
async fn volumes_move_between_dir_and_btrfs_and_sizes_hold_on_btrfs() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    ok(&d.berth(&["storage", "create", "bt", "btrfs", "size=1GiB"]));
    ok(&d.berth(&["storage", "volume", "create", "default", "v"]));
    let dir_vol = d.dir().join("storage-pools/default/custom/default_v");
    std::fs::write(dir_vol.join("f"), "from dir\n").unwrap();
    ok(&d.berth(&[
        "storage", "volume", "snapshot", "create", "default", "v", "s1",
    ]));
    std::fs::write(dir_vol.join("f"), "after s1\n").unwrap();

    // dir → btrfs, snapshots along; the old copy goes.
    ok(&d.berth(&["storage", "volume", "move", "default/v", "bt/v"]));
    assert!(!dir_vol.exists());
    let bt_vol = d.dir().join("storage-pools/bt/custom/default_v");
    assert_eq!(
        std::fs::read_to_string(bt_vol.join("f")).unwrap(),
        "after s1\n"
    );
    let snaps: Vec<String> = c
        .get("/1.0/storage-pools/bt/volumes/custom/v/snapshots")
        .await
        .unwrap();
    assert_eq!(
        snaps,
        ["/1.0/storage-pools/bt/volumes/custom/v/snapshots/s1"]
    );
    let subvolume = |path: &std::path::Path| {
        std::process::Command::new("btrfs")
            .args(["subvolume", "show"])
            .arg(path)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(subvolume(&bt_vol));
    assert!(subvolume(
        &d.dir()
            .join("storage-pools/bt/custom-snapshots/default_v/s1")
    ));
    ok(&d.berth(&["storage", "volume", "snapshot", "restore", "bt", "v", "s1"]));
    assert_eq!(
        std::fs::read_to_string(bt_vol.join("f")).unwrap(),
        "from dir\n"
    );

    // A size holds: a container filling its volume stops at the limit, while a
    // neighbour's volume on the same pool takes more.
    ok(&d.berth(&["storage", "volume", "set", "bt", "v", "size=32MiB"]));
    ok(&d.berth(&["storage", "volume", "create", "bt", "w"]));
    ok(&d.berth(&["launch", "bb", "c1"]));
    ok(&d.berth(&["launch", "bb", "c2"]));
    ok(&d.berth(&["storage", "volume", "attach", "bt", "v", "c1", "/v"]));
    ok(&d.berth(&["storage", "volume", "attach", "bt", "w", "c2", "/w"]));
    let full = d.berth(&[
        "exec",
        "c1",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/v/big bs=1M count=64 2>&1; sync",
    ]);
    let said = String::from_utf8_lossy(&full.stdout).into_owned();
    assert!(said.contains("quota exceeded"), "{said}");
    let written: u64 = sh(&d, "c1", "wc -c < /v/big").trim().parse().unwrap();
    assert!(written < 36 << 20, "{written} bytes past a 32MiB size");
    sh(
        &d,
        "c2",
        "dd if=/dev/zero of=/w/big bs=1M count=64 2>/dev/null; sync",
    );
    assert_eq!(
        sh(&d, "c2", "wc -c < /w/big").trim(),
        (64u64 << 20).to_string()
    );
    let state: serde_json::Value = c
        .get("/1.0/storage-pools/bt/volumes/custom/v/state")
        .await
        .unwrap();
    assert_eq!(state["usage"]["total"], 32u64 << 20, "{state}");
    assert!(
        state["usage"]["used"].as_u64().unwrap() > 24 << 20,
        "{state}"
    );
    // Lifted live, it writes on.
    ok(&d.berth(&["storage", "volume", "unset", "bt", "v", "size"]));
    sh(
        &d,
        "c1",
        "rm /v/big; dd if=/dev/zero of=/v/big bs=1M count=48 2>/dev/null",
    );

    // Moving a volume a running container uses is refused; stopped, it moves back to dir
    // and the container's device follows.
    let e = fails(&d.berth(&["storage", "volume", "move", "bt/v", "default/v"]));
    assert!(e.contains("running"), "{e}");
    ok(&d.berth(&["stop", "-f", "c1"]));
    ok(&d.berth(&["storage", "volume", "move", "bt/v", "default/back"]));
    let c1: serde_json::Value = c.get("/1.0/instances/c1").await.unwrap();
    assert_eq!(c1["devices"]["v"]["pool"], "default");
    assert_eq!(c1["devices"]["v"]["source"], "back");
    ok(&d.berth(&["start", "c1"]));
    assert_eq!(sh(&d, "c1", "cat /v/f"), "from dir\n");
    assert!(!bt_vol.exists());

    ok(&d.berth(&["delete", "-f", "c1", "c2"]));
    ok(&d.berth(&["storage", "volume", "delete", "default", "back"]));
    ok(&d.berth(&["storage", "volume", "delete", "bt", "w"]));
    ok(&d.berth(&["storage", "delete", "bt"]));
}

#[tokio::test]
async fn the_lxc_client_manages_custom_volumes() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.lxc(&["storage", "volume", "create", "default", "lv", "user.x=1"]));
    let list = ok(&d.lxc(&["storage", "volume", "list", "default", "--format", "csv"]));
    assert!(list.contains("custom,lv,"), "{list}");
    ok(&d.lxc(&["storage", "volume", "set", "default", "lv", "user.y=2"]));
    assert_eq!(
        ok(&d.lxc(&["storage", "volume", "get", "default", "lv", "user.y"])),
        "2\n"
    );
    ok(&d.lxc(&["storage", "volume", "snapshot", "default", "lv", "ls1"]));
    ok(&d.lxc(&["storage", "volume", "copy", "default/lv", "default/lv2"]));
    ok(&d.lxc(&["storage", "volume", "rename", "default", "lv2", "lv3"]));
    let show = ok(&d.lxc(&["storage", "volume", "show", "default", "lv3"]));
    assert!(show.contains("user.x: \"1\""), "{show}");
    ok(&d.berth(&["launch", "bb", "c1"]));
    ok(&d.lxc(&["storage", "volume", "attach", "default", "lv", "c1", "/lv"]));
    sh(&d, "c1", "echo via-lxc > /lv/f");
    let info = ok(&d.lxc(&["storage", "volume", "info", "default", "lv"]));
    assert!(info.contains("ls1") && !info.contains("0001"), "{info}");
    let e = fails(&d.lxc(&["storage", "volume", "delete", "default", "lv"]));
    assert!(e.contains("in use"), "{e}");
    ok(&d.lxc(&["storage", "volume", "detach", "default", "lv", "c1"]));
    ok(&d.lxc(&["storage", "volume", "delete", "default", "lv"]));
    ok(&d.lxc(&["storage", "volume", "delete", "default", "lv3"]));
    ok(&d.berth(&["delete", "-f", "c1"]));
}

#[tokio::test]
async fn projects_hold_their_own_volumes() {
    let d = Daemon::start();
    let c = d.client();
    ok(&d.berth(&["project", "create", "p"]));
    ok(&d.berth(&["storage", "volume", "create", "default", "p_x"]));
    let pc = c.clone().with_project(Some("p".to_owned()));
    let body = serde_json::json!({"name": "x", "config": {"user.in": "p"}});
    pc.query(
        berth_client::Method::POST,
        "/1.0/storage-pools/default/volumes/custom",
        Some(&body),
    )
    .await
    .unwrap();
    // Two volumes: default's "p_x" and p's "x", each seen from its own project only.
    let x: StorageVolume = pc
        .get("/1.0/storage-pools/default/volumes/custom/x")
        .await
        .unwrap();
    assert_eq!((x.name.as_str(), x.project.as_str()), ("x", "p"));
    assert_eq!(x.config["user.in"], "p");
    let px: StorageVolume = c
        .get("/1.0/storage-pools/default/volumes/custom/p_x")
        .await
        .unwrap();
    assert!(px.config.is_empty());
    let e = c
        .get::<StorageVolume>("/1.0/storage-pools/default/volumes/custom/x")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    let names: Vec<String> = pc
        .get("/1.0/storage-pools/default/volumes/custom")
        .await
        .unwrap();
    assert_eq!(
        names,
        ["/1.0/storage-pools/default/volumes/custom/x?project=p"]
    );
    // A profile of p attaching "x" uses p's volume.
    let dev = serde_json::json!({"devices": {"data": {"type": "disk", "pool": "default", "source": "x", "path": "/x"}}});
    pc.query(
        berth_client::Method::PATCH,
        "/1.0/profiles/default",
        Some(&dev),
    )
    .await
    .unwrap();
    let x: StorageVolume = pc
        .get("/1.0/storage-pools/default/volumes/custom/x")
        .await
        .unwrap();
    assert_eq!(x.used_by, ["/1.0/profiles/default?project=p"]);
    let px: StorageVolume = c
        .get("/1.0/storage-pools/default/volumes/custom/p_x")
        .await
        .unwrap();
    assert!(px.used_by.is_empty());
    // A project holding a volume is in use.
    pc.query(
        berth_client::Method::PUT,
        "/1.0/profiles/default",
        Some(&serde_json::json!({"description": "", "config": {}, "devices": {}})),
    )
    .await
    .unwrap();
    let project: serde_json::Value = c.get("/1.0/projects/p").await.unwrap();
    assert_eq!(
        project["used_by"],
        serde_json::json!([
            "/1.0/profiles/default?project=p",
            "/1.0/storage-pools/default/volumes/custom/x?project=p"
        ])
    );
    let e = fails(&d.berth(&["project", "delete", "p"]));
    assert!(e.contains("storage volumes"), "{e}");
    pc.query(
        berth_client::Method::DELETE,
        "/1.0/storage-pools/default/volumes/custom/x",
        None,
    )
    .await
    .unwrap();
    ok(&d.berth(&["project", "delete", "p"]));
    ok(&d.berth(&["storage", "volume", "delete", "default", "p_x"]));
}
