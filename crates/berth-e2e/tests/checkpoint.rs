//! Checkpointable containers (`migration.stateful=true`): stateful stop and start with
//! CRIU keep the processes and their memory, and the console (served by berthd's console
//! keeper) goes on through it, through the API, `berth` and the real `lxc` client.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::time::Duration;

use berth_client::{Client, Method};
use berth_e2e::{Daemon, console, fails, ok};

/// The text between `start` and the end of its line, after the last `start` in `text`.
fn after(text: &str, start: &str) -> String {
    let i = text
        .rfind(start)
        .unwrap_or_else(|| panic!("{start:?} in {text:?}"));
    text[i + start.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// Runs a berth or lxc command that checkpoints or restores `name`; on failure the panic
/// shows criu's log too.
fn criu_ok(d: &Daemon, out: &std::process::Output, name: &str) {
    if !out.status.success() {
        let dir = d.dir().join("containers").join(name);
        let log = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        panic!(
            "{}\n--- criu-dump.log\n{}\n--- criu-restore.log\n{}",
            String::from_utf8_lossy(&out.stderr),
            log("criu-dump.log"),
            log("criu-restore.log")
        );
    }
}

/// The loop the test started in `name` writes /tmp/n: it goes on.
async fn counts_on(d: &Daemon, name: &str) {
    // The loop rewrites the file (truncate, then write): a read may fall in between.
    let read = || -> u64 {
        (0..20)
            .find_map(|_| {
                ok(&d.berth(&["exec", name, "--", "cat", "/tmp/n"]))
                    .trim()
                    .parse()
                    .ok()
            })
            .expect("the loop writes /tmp/n")
    };
    let n1 = read();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n2 = read();
    assert!(
        n2 > n1,
        "the loop runs on after the restore: {n1} then {n2}"
    );
}

async fn instance(c: &Client, name: &str) -> serde_json::Value {
    c.query(Method::GET, &format!("/1.0/instances/{name}"), None)
        .await
        .unwrap()
        .body
        .metadata
}

#[tokio::test]
async fn stateful_stop_and_start_keep_processes_and_console() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    ok(&d.berth(&["launch", "bb", "ck", "-c", "migration.stateful=true"]));
    // The boot output reaches the keeper's log; the console takes input.
    berth_e2e::wait_for_boot(&c, "ck").await;
    let out = console(
        &c,
        "ck",
        "X=kept-$((6*7)); (while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done) & echo pid-$$-$X",
        "-kept-42",
    )
    .await;
    let shell = after(&out, "pid-");
    assert!(shell.ends_with("-kept-42"), "{out}");

    // Stateful stop: stopped, with a saved state; the console log is still there.
    criu_ok(&d, &d.berth(&["stop", "--stateful", "ck"]), "ck");
    let i = instance(&c, "ck").await;
    assert_eq!(i["status"], "Stopped");
    assert_eq!(i["stateful"], true);
    assert!(d.dir().join("containers/ck/state/inventory.img").exists());
    let log = ok(&d.berth(&["console", "ck", "--show-log"]));
    assert!(log.contains("-kept-42"), "{log}");

    // Start restores: the same shell, its variable and its background loop go on.
    criu_ok(&d, &d.berth(&["start", "ck"]), "ck");
    let i = instance(&c, "ck").await;
    assert_eq!(i["status"], "Running");
    assert_eq!(i["stateful"], false);
    assert!(!d.dir().join("containers/ck/state").exists());
    // (The typed line is echoed as typed; the answer has the values.)
    let out = console(&c, "ck", "echo again-$$-$X", "-kept-42\r").await;
    assert_eq!(after(&out, "again-"), shell, "{out}");
    counts_on(&d, "ck").await;
    // Files written after the restore belong to the container's root (its idmap holds).
    let owner = ok(&d.berth(&["exec", "ck", "--", "stat", "-c", "%u", "/tmp/n"]));
    assert_eq!(owner.trim(), "0");

    // The real lxc client: lxc stop --stateful, lxc start restores.
    criu_ok(&d, &d.lxc(&["stop", "--stateful", "ck"]), "ck");
    assert_eq!(instance(&c, "ck").await["stateful"], true);
    criu_ok(&d, &d.lxc(&["start", "ck"]), "ck");
    let out = console(&c, "ck", "echo lxc-$$-$X", "-kept-42\r").await;
    assert_eq!(after(&out, "lxc-"), shell, "{out}");
    let log = ok(&d.lxc(&["console", "ck", "--show-log"]));
    assert!(log.contains("lxc-"), "{log}");

    // A stateless start discards the state and boots afresh.
    criu_ok(&d, &d.berth(&["stop", "--stateful", "ck"]), "ck");
    ok(&d.berth(&["start", "--stateless", "ck"]));
    assert!(!d.dir().join("containers/ck/state").exists());
    berth_e2e::wait_for_boot(&c, "ck").await;
    let out = console(&c, "ck", "echo fresh-[$X]", "fresh-[]").await;
    assert!(out.contains("fresh-[]"), "{out}");

    // Deleting the instance stops its console keeper.
    assert_eq!(d.console_keepers().len(), 1);
    ok(&d.berth(&["delete", "-f", "ck"]));
    assert!(d.console_keepers().is_empty());
}

#[tokio::test]
async fn stateful_snapshots_bring_processes_back() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    ok(&d.berth(&["launch", "bb", "ck", "-c", "migration.stateful=true"]));
    berth_e2e::wait_for_boot(&c, "ck").await;
    let out = console(&c, "ck", "Y=snap-$((5*5)); echo set-$$-$Y", "-snap-25").await;
    let shell = after(&out, "set-");
    // A stateful snapshot keeps the instance running.
    criu_ok(&d, &d.lxc(&["snapshot", "ck", "s1", "--stateful"]), "ck");
    let snap = c
        .query(Method::GET, "/1.0/instances/ck/snapshots/s1", None)
        .await
        .unwrap()
        .body
        .metadata;
    assert_eq!(snap["stateful"], true);
    assert_eq!(instance(&c, "ck").await["status"], "Running");
    console(&c, "ck", "Y=changed; echo now-$Y", "now-changed\r").await;
    // A stateful restore brings back the snapshot's shell and its variable.
    criu_ok(&d, &d.lxc(&["restore", "ck", "s1", "--stateful"]), "ck");
    assert_eq!(instance(&c, "ck").await["status"], "Running");
    let out = console(&c, "ck", "echo got-$$-$Y", "-snap-25\r").await;
    assert_eq!(after(&out, "got-"), shell, "{out}");
    // berth too, from a stopped instance; the snapshot keeps its state for next time.
    ok(&d.berth(&["stop", "-f", "ck"]));
    criu_ok(
        &d,
        &d.berth(&["snapshot", "restore", "ck", "s1", "--stateful"]),
        "ck",
    );
    let out = console(&c, "ck", "echo again-$$-$Y", "-snap-25\r").await;
    assert_eq!(after(&out, "again-"), shell, "{out}");
    // A plain restore of it boots the snapshot's files afresh.
    ok(&d.berth(&["snapshot", "restore", "ck", "s1"]));
    berth_e2e::wait_for_boot(&c, "ck").await;
    console(&c, "ck", "echo fresh-[$Y]", "fresh-[]").await;
    // A stateless snapshot cannot be restored statefully; copies leave the state behind.
    ok(&d.berth(&["snapshot", "create", "ck", "plain"]));
    let e = fails(&d.berth(&["snapshot", "restore", "ck", "plain", "--stateful"]));
    assert!(e.contains("not stateful"), "{e}");
    ok(&d.berth(&["copy", "ck/s1", "ck2"]));
    ok(&d.berth(&["copy", "ck", "ck3"]));
    let pool = d.dir().join("storage-pools/default/containers");
    assert!(!pool.join("ck2/state").exists());
    assert!(!pool.join("ck/state").exists());
    let copied = c
        .query(Method::GET, "/1.0/instances/ck3/snapshots/s1", None)
        .await
        .unwrap()
        .body
        .metadata;
    assert_eq!(copied["stateful"], false);
    let e = fails(&d.berth(&["snapshot", "restore", "ck3", "s1", "--stateful"]));
    assert!(e.contains("not stateful"), "{e}");
    ok(&d.berth(&["delete", "-f", "ck", "ck2", "ck3"]));
}

/// Processes an exec leaves running (`sh -c 'server &'`, the way people start things),
/// with or without a terminal, are checkpointed with the rest: each exec's command leads
/// a session inside the container, which CRIU can restore after its leader is gone.
#[tokio::test]
async fn processes_left_by_exec_are_checkpointed() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.berth(&["launch", "bb", "ex", "-c", "migration.stateful=true"]));
    let started = |args: &[&str]| {
        let mut all = vec!["exec"];
        all.extend_from_slice(args);
        ok(&d.lxc(&all));
    };
    started(&[
        "ex",
        "--",
        "sh",
        "-c",
        "(while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done) >/dev/null 2>&1 & echo $! > /tmp/loop",
    ]);
    started(&[
        "-t",
        "ex",
        "--",
        "sh",
        "-c",
        // A terminal's hangup reaches the background job when the shell ends, as on any
        // host: it ignores it.
        "trap '' HUP; sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > /tmp/sleep",
    ]);
    ok(&d.berth(&[
        "exec",
        "ex",
        "--",
        "sh",
        "-c",
        "httpd -p 8080 -h / && pidof httpd > /tmp/httpd",
    ]));
    let pids = ok(&d.berth(&[
        "exec",
        "ex",
        "--",
        "cat",
        "/tmp/loop",
        "/tmp/sleep",
        "/tmp/httpd",
    ]));
    for pid in pids.split_whitespace() {
        ok(&d.berth(&["exec", "ex", "--", "kill", "-0", pid]));
    }
    for _ in 0..2 {
        criu_ok(&d, &d.berth(&["stop", "--stateful", "ex"]), "ex");
        criu_ok(&d, &d.berth(&["start", "ex"]), "ex");
        for pid in pids.split_whitespace() {
            ok(&d.berth(&["exec", "ex", "--", "kill", "-0", pid]));
        }
    }
    counts_on(&d, "ex").await;
    ok(&d.berth(&["delete", "-f", "ex"]));
}

#[tokio::test]
async fn stateful_requests_that_cannot_work_are_refused() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    ok(&d.berth(&["launch", "bb", "plain"]));
    // Without migration.stateful: refused, naming the key; the instance runs on.
    let e = fails(&d.berth(&["stop", "--stateful", "plain"]));
    assert!(e.contains("migration.stateful"), "{e}");
    let e = fails(&d.lxc(&["stop", "--stateful", "plain"]));
    assert!(e.contains("migration.stateful"), "{e}");
    let e = fails(&d.lxc(&["snapshot", "plain", "s", "--stateful"]));
    assert!(e.contains("migration.stateful"), "{e}");
    assert!(
        c.query(Method::GET, "/1.0/instances/plain/snapshots/s", None)
            .await
            .is_err()
    );
    assert_eq!(instance(&c, "plain").await["status"], "Running");
    assert!(!d.dir().join("containers/plain/state").exists());
    // The key takes effect at the next start: until then, refused too.
    ok(&d.berth(&["config", "set", "plain", "migration.stateful=true"]));
    let e = fails(&d.berth(&["stop", "--stateful", "plain"]));
    assert!(e.contains("restart it first"), "{e}");
    assert_eq!(instance(&c, "plain").await["status"], "Running");
    ok(&d.berth(&["config", "unset", "plain", "migration.stateful"]));
    // Restart cannot be stateful; a start with no saved state cannot restore.
    let put = |action: &str| serde_json::json!({"action": action, "stateful": true});
    let e = c
        .query(
            Method::PUT,
            "/1.0/instances/plain/state",
            Some(&put("restart")),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    ok(&d.berth(&["stop", "-f", "plain"]));
    let e = c
        .query(
            Method::PUT,
            "/1.0/instances/plain/state",
            Some(&put("start")),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().contains("no saved state"), "{e}");
    assert_eq!(instance(&c, "plain").await["status"], "Stopped");
    // The key is checked like any other; a plain container has no keeper.
    let e = fails(&d.berth(&["config", "set", "plain", "migration.stateful=maybe"]));
    assert!(e.contains("migration.stateful"), "{e}");
    assert!(d.console_keepers().is_empty());
    ok(&d.berth(&["delete", "plain"]));
}
