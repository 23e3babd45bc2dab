//! Snapshots: taken from running containers, listed, restored (content and
//! configuration), renamed, deleted, carried by an instance rename and removed with the
//! instance; through the API, berth and the real lxc client.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use berth_client::Method;
use berth_e2e::{Daemon, fails, ok};
use serde_json::{Value, json};

#[tokio::test]
async fn snapshots_restore_content_and_configuration() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    ok(&d.berth(&["launch", "bb", "snappy", "-c", "user.stage=one"]));
    let sh = |script: &str| d.berth(&["exec", "snappy", "--", "sh", "-c", script]);
    ok(&sh("echo first > /root/state"));
    ok(&d.berth(&["snapshot", "create", "snappy", "first"]));
    // The real client's automatic name.
    ok(&d.lxc(&["snapshot", "snappy"]));
    ok(&sh("echo second > /root/state; touch /root/extra"));
    ok(&d.berth(&["config", "set", "snappy", "user.stage=two"]));
    let list = ok(&d.berth(&["snapshot", "list", "snappy", "-f", "csv"]));
    let names: Vec<&str> = list.lines().map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(names, ["first", "snap0"]);
    assert_eq!(
        ok(&d.lxc(&["list", "snappy", "-c", "nS", "-f", "csv"])),
        "snappy,2\n"
    );
    let snap: Value = c
        .get("/1.0/instances/snappy/snapshots/first")
        .await
        .unwrap();
    assert_eq!(snap["config"]["user.stage"], "one");
    assert_eq!(snap["expanded_devices"]["root"]["path"], "/");
    // Restoring a running container restarts it with the snapshot's files and config.
    ok(&d.lxc(&["restore", "snappy", "first"]));
    assert_eq!(
        ok(&sh("cat /root/state; test -e /root/extra || echo gone")),
        "first\ngone\n"
    );
    assert_eq!(
        ok(&d.berth(&["config", "get", "snappy", "user.stage"])),
        "one\n"
    );
    assert_eq!(
        ok(&d.berth(&["list", "snappy", "-c", "s", "-f", "csv"])),
        "RUNNING\n"
    );
    // Rename and delete, through both clients.
    ok(&d.berth(&["snapshot", "rename", "snappy", "snap0", "later"]));
    ok(&d.lxc(&["delete", "snappy/later"]));
    let urls: Vec<String> = c.get("/1.0/instances/snappy/snapshots").await.unwrap();
    assert_eq!(urls, ["/1.0/instances/snappy/snapshots/first"]);
    // Bad requests change nothing.
    let e = c
        .query(
            Method::POST,
            "/1.0/instances/snappy/snapshots",
            Some(&json!({"name": "first"})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409));
    let e = c
        .query(
            Method::POST,
            "/1.0/instances/snappy/snapshots",
            Some(&json!({"name": "a/b"})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    let err = fails(&d.berth(&["snapshot", "restore", "snappy", "nope"]));
    assert!(err.contains("nope"), "{err}");
    // A renamed instance keeps its snapshots; a deleted one takes them along.
    ok(&d.berth(&["stop", "-f", "snappy"]));
    ok(&d.berth(&["rename", "snappy", "moved"]));
    ok(&d.berth(&["snapshot", "restore", "moved", "first"]));
    let pool_snaps = d.dir().join("storage-pools/default/containers-snapshots");
    assert!(pool_snaps.join("moved/first/rootfs").is_dir());
    ok(&d.berth(&["delete", "moved"]));
    assert!(!pool_snaps.join("moved").exists());
}

#[tokio::test]
async fn restricted_projects_refuse_restoring_what_they_restrict() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.berth(&[
        "project",
        "create",
        "team",
        "-c",
        "features.profiles=false",
        "-c",
        "features.images=false",
    ]));
    let in_team = |args: &[&str]| {
        let mut all = vec!["--project", "team"];
        all.extend_from_slice(args);
        d.berth(&all)
    };
    ok(&in_team(&["launch", "bb", "app"]));
    // Privileged when the project allowed it: that moment is kept in a snapshot.
    ok(&in_team(&[
        "config",
        "set",
        "app",
        "security.privileged=true",
    ]));
    ok(&in_team(&["snapshot", "create", "app", "privileged"]));
    ok(&in_team(&["config", "unset", "app", "security.privileged"]));
    ok(&d.berth(&["project", "set", "team", "restricted=true"]));
    // Restoring it now is refused naming the restriction, and changes nothing.
    ok(&in_team(&["exec", "app", "--", "touch", "/root/after"]));
    let err = fails(&in_team(&["snapshot", "restore", "app", "privileged"]));
    assert!(err.contains("restricted.containers.privilege"), "{err}");
    let out = d.lxc(&["restore", "app", "privileged", "--project", "team"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("restricted.containers.privilege"),
        "{out:?}"
    );
    assert_eq!(
        ok(&in_team(&["list", "app", "-c", "s", "-f", "csv"])),
        "RUNNING\n"
    );
    ok(&in_team(&[
        "exec",
        "app",
        "--",
        "test",
        "-e",
        "/root/after",
    ]));
    let shown = ok(&in_team(&["config", "show", "app"]));
    assert!(!shown.contains("privileged"), "{shown}");
    // Snapshots themselves can be blocked.
    ok(&d.berth(&["project", "set", "team", "restricted.snapshots=block"]));
    let err = fails(&in_team(&["snapshot", "create", "app"]));
    assert!(err.contains("restricted.snapshots"), "{err}");
    ok(&in_team(&["delete", "-f", "app"]));
    ok(&d.berth(&["project", "delete", "team"]));
}
