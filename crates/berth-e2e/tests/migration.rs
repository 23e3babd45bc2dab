//! Instances between two berthd "hosts" (one network namespace, two HTTPS ports on its
//! loopback): the real `lxc copy|move` in pull, push and relay modes, `berth copy|move`,
//! and the faults (a wrong secret, an unreachable source, a target killed half-way).

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::time::Duration;

use berth_client::Method;
use berth_e2e::{Daemon, fails, ok, with_busybox};
use serde_json::{Value, json};

fn last_line(out: &str) -> String {
    out.lines().last().unwrap_or_default().trim().to_owned()
}

/// Two hosts, each known to client `conf` of `program` (lxc or berth) as h1 and h2.
async fn hosts(program: &str, conf: &str) -> (Daemon, Daemon) {
    let h1 = Daemon::start();
    let h2 = Daemon::start_beside(&h1);
    with_busybox(&h1).await;
    h1.https_on(8443);
    h2.https_on(8444);
    for (name, d) in [("h1", &h1), ("h2", &h2)] {
        let token = last_line(&ok(&d.berth(&["config", "trust", "add", conf])));
        ok(&h1.remote(program, conf, &["remote", "add", name, &token]));
    }
    (h1, h2)
}

fn berth_path() -> String {
    berth_e2e::bin("berth").to_string_lossy().into_owned()
}

/// The instance's snapshots' names, on `d`.
async fn snapshots(d: &Daemon, name: &str) -> Vec<String> {
    let s: Vec<Value> = d
        .client()
        .get(&format!("/1.0/instances/{name}/snapshots?recursion=1"))
        .await
        .unwrap();
    s.iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn lxc_copies_and_moves_between_hosts_in_every_mode() {
    let (h1, h2) = hosts("lxc", "lxc-conf").await;
    let lxc = |args: &[&str]| h1.remote("lxc", "lxc-conf", args);
    ok(&lxc(&["launch", "h1:bb", "h1:c1"]));
    let sh = |name: &str, script: &str| ok(&lxc(&["exec", name, "--", "sh", "-c", script]));
    sh("h1:c1", "echo one > /root/data; chown 1000:1000 /root/data");
    ok(&lxc(&["snapshot", "h1:c1", "s1"]));
    sh("h1:c1", "echo two > /root/data");
    ok(&lxc(&["snapshot", "h1:c1", "s2"]));
    sh("h1:c1", "echo three > /root/data");
    ok(&lxc(&["stop", "-f", "h1:c1"]));

    for mode in ["pull", "push", "relay"] {
        ok(&lxc(&[
            "copy",
            "h1:c1",
            &format!("h2:{mode}"),
            "--mode",
            mode,
        ]));
        assert_eq!(snapshots(&h2, mode).await, ["s1", "s2"], "{mode}");
    }
    // Files, owners and snapshots came along.
    ok(&lxc(&["start", "h2:pull"]));
    assert_eq!(sh("h2:pull", "cat /root/data"), "three\n");
    assert_eq!(sh("h2:pull", "stat -c %u:%g /root/data"), "1000:1000\n");
    ok(&lxc(&["stop", "-f", "h2:pull"]));
    ok(&lxc(&["restore", "h2:pull", "s1"]));
    ok(&lxc(&["start", "h2:pull"]));
    assert_eq!(sh("h2:pull", "cat /root/data"), "one\n");
    ok(&lxc(&["start", "h2:relay"]));
    assert_eq!(sh("h2:relay", "cat /root/data"), "three\n");
    // The source is untouched.
    ok(&lxc(&["start", "h1:c1"]));
    assert_eq!(sh("h1:c1", "cat /root/data"), "three\n");
    ok(&lxc(&["stop", "-f", "h1:c1"]));

    // A move takes it away from the source.
    ok(&lxc(&["move", "h1:c1", "h2:c1"]));
    let left = ok(&lxc(&["list", "h1:", "-c", "n", "-f", "csv"]));
    assert_eq!(left.trim(), "");
    assert_eq!(snapshots(&h2, "c1").await, ["s1", "s2"]);
    ok(&lxc(&["start", "h2:c1"]));
    assert_eq!(sh("h2:c1", "cat /root/data"), "three\n");

    // A running container moves live by default: refused with one line for now, and it
    // stays where it was.
    ok(&lxc(&["launch", "h1:bb", "h1:live"]));
    let e = fails(&lxc(&["move", "h1:live", "h2:live"]));
    assert!(e.contains("Live migration"), "{e}");
    let state: Value = h1.client().get("/1.0/instances/live").await.unwrap();
    assert_eq!(state["status"], "Running");
    let e = h2
        .client()
        .get::<Value>("/1.0/instances/live")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
}

#[tokio::test]
async fn berth_copies_and_moves_between_hosts() {
    let (h1, h2) = hosts(&berth_path(), "berth-conf").await;
    let b = |args: &[&str]| h1.remote(&berth_path(), "berth-conf", args);
    ok(&b(&["launch", "h1:bb", "h1:c1"]));
    ok(&b(&[
        "exec",
        "h1:c1",
        "--",
        "sh",
        "-c",
        "echo kept > /root/f",
    ]));
    ok(&b(&["snapshot", "create", "h1:c1", "snap0"]));
    // A running source is frozen while it goes, and copied whole.
    ok(&b(&["copy", "h1:c1", "h2:copy"]));
    ok(&b(&[
        "copy",
        "h1:c1",
        "h2:bare",
        "--instance-only",
        "--mode",
        "relay",
    ]));
    assert_eq!(snapshots(&h2, "copy").await, ["snap0"]);
    assert!(snapshots(&h2, "bare").await.is_empty());
    let state: Value = h1.client().get("/1.0/instances/c1").await.unwrap();
    assert_eq!(state["status"], "Running");

    // A running instance moves stateless: stopped here, started there, files kept.
    ok(&b(&["move", "h1:c1", "h2:", "--mode", "push"]));
    let e = h1
        .client()
        .get::<Value>("/1.0/instances/c1")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    let state: Value = h2.client().get("/1.0/instances/c1").await.unwrap();
    assert_eq!(state["status"], "Running");
    assert_eq!(ok(&b(&["exec", "h2:c1", "--", "cat", "/root/f"])), "kept\n");
    // On one server, move is a rename.
    ok(&b(&["stop", "-f", "h2:c1"]));
    ok(&b(&["move", "h2:c1", "h2:c9"]));
    let _: Value = h2.client().get("/1.0/instances/c9").await.unwrap();
}

#[tokio::test]
async fn migration_faults_leave_both_sides_whole() {
    let (h1, h2) = hosts("lxc", "lxc-conf").await;
    let lxc = |args: &[&str]| h1.remote("lxc", "lxc-conf", args);
    ok(&lxc(&["init", "h1:bb", "h1:c1"]));
    let (src, dst) = (h1.client(), h2.client());

    // A stream asked for with the wrong secret is refused; the source stays usable.
    let r = src
        .query(
            Method::POST,
            "/1.0/instances/c1",
            Some(&json!({"migration": true, "live": false})),
        )
        .await
        .unwrap();
    let op = r.body.metadata;
    let id = op["id"].as_str().unwrap().to_owned();
    assert!(
        op["metadata"]["control"].is_string() && op["metadata"]["fs"].is_string(),
        "{op}"
    );
    let e = src.operation_websocket(&id, "wrong").await.unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");

    // A target told to pull from where nothing listens fails, and keeps nothing.
    let cert = h1
        .client()
        .server()
        .await
        .unwrap()
        .environment
        .unwrap()
        .certificate;
    let body = |op: &str| {
        json!({"name": "c2", "architecture": "x86_64", "type": "container",
               "source": {"type": "migration", "mode": "pull", "certificate": cert,
                          "operation": op, "secrets": {"control": "a", "fs": "b"}}})
    };
    let r = dst
        .query(
            Method::POST,
            "/1.0/instances",
            Some(&body("https://127.0.0.1:9/1.0/operations/x")),
        )
        .await
        .unwrap();
    let e = dst
        .wait_success(r.body.operation_id().unwrap())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Unable to connect"), "{e}");
    let e = dst.get::<Value>("/1.0/instances/c2").await.unwrap_err();
    assert_eq!(e.status(), Some(404));
    // An unknown mode is refused before anything is made.
    let mut bad = body("https://127.0.0.1:8443/1.0/operations/x");
    bad["source"]["mode"] = "teleport".into();
    let e = dst
        .query(Method::POST, "/1.0/instances", Some(&bad))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    src.cancel_operation(&id).await.unwrap();

    // A target killed half-way: the source is intact, the target removes the half-made
    // instance when it comes back, and the name can be used again.
    ok(&lxc(&["start", "h1:c1"]));
    ok(&lxc(&[
        "exec",
        "h1:c1",
        "--",
        "dd",
        "if=/dev/urandom",
        "of=/root/big",
        "bs=1M",
        "count=300",
    ]));
    ok(&lxc(&["stop", "-f", "h1:c1"]));
    let mut h2 = h2;
    let copy = h1
        .remote_client("lxc", "lxc-conf", &["copy", "h1:c1", "h2:half"])
        .spawn()
        .unwrap();
    // Caught mid-transfer: the source's rsync is paused while the target dies, so the
    // copy can't finish first however fast the machine is.
    let volume = h1.dir().join("storage-pools/default/containers/c1");
    let started = std::time::Instant::now();
    let sender = loop {
        if let Some(pid) = berth_e2e::processes_naming(&volume, "rsync").first() {
            break *pid;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the copy never began"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let sender = rustix::process::Pid::from_raw(sender).unwrap();
    let _ = rustix::process::kill_process(sender, rustix::process::Signal::STOP);
    assert!(
        h2.client()
            .get::<Value>("/1.0/instances/half")
            .await
            .is_ok()
    );
    h2.kill();
    let _ = rustix::process::kill_process(sender, rustix::process::Signal::CONT);
    let out = copy.wait_with_output().unwrap();
    assert!(!out.status.success());
    h2.restart();
    let e = h2
        .client()
        .get::<Value>("/1.0/instances/half")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    // The source's operation saw the target go.
    let started = std::time::Instant::now();
    loop {
        let ops: Value = h1
            .client()
            .get("/1.0/operations?recursion=1")
            .await
            .unwrap();
        if ops["running"].as_array().is_none_or(Vec::is_empty) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(40), "{ops}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ok(&lxc(&["start", "h1:c1"]));
    assert_eq!(ok(&lxc(&["exec", "h1:c1", "--", "hostname"])).trim(), "c1");
    ok(&lxc(&["stop", "-f", "h1:c1"]));
    ok(&lxc(&["copy", "h1:c1", "h2:half", "--instance-only"]));
    let _: Value = h2.client().get("/1.0/instances/half").await.unwrap();
}

#[tokio::test]
async fn refresh_brings_a_copy_up_to_date() {
    let (h1, h2) = hosts("lxc", "lxc-conf").await;
    let lxc = |args: &[&str]| h1.remote("lxc", "lxc-conf", args);
    let b = |args: &[&str]| h1.remote(&berth_path(), "berth-conf", args);
    for (name, d) in [("h1", &h1), ("h2", &h2)] {
        let token = last_line(&ok(&d.berth(&["config", "trust", "add", "berth-conf"])));
        ok(&b(&["remote", "add", name, &token]));
    }
    ok(&lxc(&["launch", "h1:bb", "h1:c1"]));
    let sh = |name: &str, script: &str| ok(&lxc(&["exec", name, "--", "sh", "-c", script]));
    sh("h1:c1", "echo one > /root/data; echo x > /root/gone");
    ok(&lxc(&["snapshot", "h1:c1", "s1"]));
    ok(&lxc(&["stop", "-f", "h1:c1"]));
    ok(&lxc(&["copy", "h1:c1", "h2:c1"]));
    // The copy has a snapshot the source drops; the source changes and takes another.
    ok(&lxc(&["snapshot", "h2:c1", "only-here"]));
    ok(&lxc(&["start", "h1:c1"]));
    sh(
        "h1:c1",
        "echo two > /root/data; rm -f /root/gone; echo new > /root/new",
    );
    ok(&lxc(&["snapshot", "h1:c1", "s2"]));
    ok(&lxc(&["stop", "-f", "h1:c1"]));

    // The real client: the copy gets s2, loses only-here, and the source's files.
    ok(&lxc(&["copy", "h1:c1", "h2:c1", "--refresh"]));
    assert_eq!(snapshots(&h2, "c1").await, ["s1", "s2"]);
    ok(&lxc(&["start", "h2:c1"]));
    assert_eq!(sh("h2:c1", "cat /root/data /root/new"), "two\nnew\n");
    sh("h2:c1", "test ! -e /root/gone");
    // A running copy is not refreshed: refused, nothing changes.
    let e = fails(&lxc(&["copy", "h1:c1", "h2:c1", "--refresh"]));
    assert!(e.contains("stop it before refreshing"), "{e}");
    ok(&lxc(&["stop", "-f", "h2:c1"]));

    // berth, pushed: the source's next change arrives, the snapshots stay as they are.
    ok(&lxc(&["start", "h1:c1"]));
    sh("h1:c1", "echo three > /root/data");
    ok(&lxc(&["stop", "-f", "h1:c1"]));
    ok(&b(&[
        "copy",
        "h1:c1",
        "h2:c1",
        "--refresh",
        "--mode",
        "push",
    ]));
    assert_eq!(snapshots(&h2, "c1").await, ["s1", "s2"]);
    ok(&lxc(&["start", "h2:c1"]));
    assert_eq!(sh("h2:c1", "cat /root/data"), "three\n");
    // A refresh of a copy that does not exist yet makes it whole.
    ok(&b(&["copy", "h1:c1", "h2:fresh", "--refresh"]));
    assert_eq!(snapshots(&h2, "fresh").await, ["s1", "s2"]);
}
