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
    let info = ok(&d.berth(&["info", "snappy"]));
    assert!(
        info.contains("Snapshots:") && info.contains("first") && info.contains("snap0"),
        "{info}"
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

#[tokio::test]
async fn scheduled_snapshots_follow_pattern_and_expire() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    ok(&d.berth(&["launch", "bb", "timed"]));
    ok(&d.berth(&[
        "config",
        "set",
        "timed",
        "snapshots.schedule=@hourly",
        "snapshots.pattern=auto-%d",
        "snapshots.expiry=2H",
    ]));
    let pass = |at: &'static str| {
        let c = c.clone();
        async move {
            c.query(
                Method::POST,
                "/internal/testing/snapshot-schedule",
                Some(&json!({ "at": at })),
            )
            .await
            .unwrap();
        }
    };
    let snaps = || async {
        let all: Vec<Value> = c
            .get("/1.0/instances/timed/snapshots?recursion=1")
            .await
            .unwrap();
        all.iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_owned(),
                    s["expires_at"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    pass("2026-01-01T05:00:00Z").await;
    assert_eq!(
        snaps().await,
        [("auto-0".to_owned(), "2026-01-01T07:00:00Z".to_owned())]
    );
    // Not on the hour: nothing.
    pass("2026-01-01T05:30:00Z").await;
    assert_eq!(snaps().await.len(), 1);
    // Two hours on: a new one, and the first has expired.
    pass("2026-01-01T07:00:00Z").await;
    assert_eq!(
        snaps().await,
        [("auto-1".to_owned(), "2026-01-01T09:00:00Z".to_owned())]
    );
    // A manual snapshot without a name follows the pattern too.
    ok(&d.berth(&["snapshot", "create", "timed"]));
    assert!(snaps().await.iter().any(|(n, _)| n == "auto-0"));
    // Stopped instances are skipped unless snapshots.schedule.stopped=true.
    ok(&d.berth(&["stop", "-f", "timed"]));
    pass("2026-01-01T08:00:00Z").await;
    assert_eq!(snaps().await.len(), 2);
    ok(&d.berth(&["config", "set", "timed", "snapshots.schedule.stopped=true"]));
    pass("2026-01-01T08:00:00Z").await;
    assert!(snaps().await.iter().any(|(n, _)| n == "auto-2"));
    // Bad values are refused naming the key.
    for (kv, key) in [
        ("snapshots.schedule=* * *", "snapshots.schedule"),
        ("snapshots.expiry=3x", "snapshots.expiry"),
        ("snapshots.pattern=a/b", "snapshots.pattern"),
    ] {
        let err = fails(&d.berth(&["config", "set", "timed", kv]));
        assert!(err.contains(key), "{err}");
    }
    ok(&d.berth(&["delete", "timed"]));
}

#[tokio::test]
async fn copies_of_instances_and_snapshots() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    ok(&d.berth(&["launch", "bb", "orig", "-c", "user.role=web"]));
    let sh = |name: &str, script: &str| d.berth(&["exec", name, "--", "sh", "-c", script]);
    ok(&sh("orig", "echo one > /root/state"));
    ok(&d.berth(&["snapshot", "create", "orig", "s1"]));
    ok(&sh("orig", "echo two > /root/state"));
    // The real client copies a running instance: files, config and snapshots come along,
    // with a host name of its own.
    ok(&d.lxc(&["copy", "orig", "twin"]));
    ok(&d.berth(&["start", "twin"]));
    assert_eq!(ok(&sh("twin", "cat /root/state")), "two\n");
    assert_eq!(ok(&sh("twin", "hostname")), "twin\n");
    assert_eq!(
        ok(&d.berth(&["config", "get", "twin", "user.role"])),
        "web\n"
    );
    let snaps: Vec<String> = c.get("/1.0/instances/twin/snapshots").await.unwrap();
    assert_eq!(snaps, ["/1.0/instances/twin/snapshots/s1"]);
    let (a, b): (Value, Value) = (
        c.get("/1.0/instances/orig").await.unwrap(),
        c.get("/1.0/instances/twin").await.unwrap(),
    );
    assert_ne!(a["config"]["volatile.uuid"], b["config"]["volatile.uuid"]);
    // The original still runs, untouched.
    assert_eq!(
        ok(&d.berth(&["list", "orig", "-c", "s", "-f", "csv"])),
        "RUNNING\n"
    );
    // A snapshot copied through berth, without the snapshots.
    ok(&d.berth(&["copy", "orig/s1", "past", "--instance-only"]));
    ok(&d.berth(&["start", "past"]));
    assert_eq!(ok(&sh("past", "cat /root/state")), "one\n");
    let snaps: Vec<String> = c.get("/1.0/instances/past/snapshots").await.unwrap();
    assert!(snaps.is_empty());
    // Bad sources are refused and leave nothing.
    let err = fails(&d.berth(&["copy", "orig/nope", "ghost"]));
    assert!(err.contains("nope"), "{err}");
    let err = fails(&d.berth(&["copy", "missing", "ghost"]));
    assert!(err.contains("missing"), "{err}");
    assert!(!ok(&d.berth(&["list", "-c", "n", "-f", "csv"])).contains("ghost"));
    ok(&d.berth(&["delete", "-f", "orig", "twin", "past"]));
}
