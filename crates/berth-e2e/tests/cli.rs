//! The `berth` CLI: output, formats, errors and exit codes.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_e2e::{Daemon, bin, fails, ok, operation_id, test_operation};
use serde_json::json;

#[tokio::test]
async fn info_version_query() {
    let d = Daemon::start();
    let info = ok(&d.berth(&["info"]));
    assert!(info.contains("server: berth"), "{info}");
    assert!(
        info.contains("api_version: \"1.0\"") || info.contains("api_version: '1.0'"),
        "{info}"
    );

    let res = ok(&d.berth(&["info", "--resources"]));
    assert!(res.contains("cpu:"), "{res}");

    let version = ok(&d.berth(&["version"]));
    assert!(version.contains("Client version: "), "{version}");
    assert!(
        version.contains(&format!("Server version: {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );

    let projects = ok(&d.berth(&["query", "/1.0/projects"]));
    let v: serde_json::Value = serde_json::from_str(&projects).unwrap();
    assert_eq!(v, json!(["/1.0/projects/default"]));

    ok(&d.berth(&[
        "query",
        "-X",
        "PATCH",
        "-d",
        r#"{"config":{"user.cli":"x"}}"#,
        "/1.0",
    ]));
    assert_eq!(d.client().server().await.unwrap().config["user.cli"], "x");

    let out = ok(&d.berth(&[
        "query",
        "-X",
        "POST",
        "-d",
        r#"{"duration_ms":10}"#,
        "--wait",
        "/internal/testing/operations",
    ]));
    assert!(out.contains("progress"), "{out}");
}

#[tokio::test]
async fn failures_exit_1_with_one_line() {
    let d = Daemon::start();
    let err = fails(&d.berth(&["query", "/1.0/nope"]));
    assert_eq!(err, "Error: not found\n");
    let err = fails(&d.berth(&[
        "query",
        "-X",
        "PATCH",
        "-d",
        r#"{"config":{"core.x":"1"}}"#,
        "/1.0",
    ]));
    assert_eq!(err, "Error: Unknown configuration key \"core.x\"\n");
    let err = fails(&d.berth(&["query", "-d", "{oops", "/1.0"]));
    assert!(err.starts_with("Error: Invalid JSON in --data"), "{err}");

    let out = Command::new(bin("berth"))
        .arg("info")
        .env("BERTH_SOCKET", d.dir().join("missing.socket"))
        .output()
        .unwrap();
    let err = fails(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("missing.socket"), "{err}");
}

#[tokio::test]
async fn operation_list_show_delete_in_every_format() {
    let d = Daemon::start();
    let c = d.client();
    let id =
        operation_id(&test_operation(&c, json!({"duration_ms": 60000, "may_cancel": true})).await);

    let table = ok(&d.berth(&["operation", "list"]));
    assert!(
        table.contains("|  ID  ") || table.contains(" ID "),
        "{table}"
    );
    assert!(
        table.contains(&id) && table.contains("RUNNING") && table.contains("YES"),
        "{table}"
    );
    let csv = ok(&d.berth(&["operation", "list", "-f", "csv"]));
    assert!(
        csv.starts_with(&format!("{id},TASK,Testing operation,RUNNING,YES,")),
        "{csv}"
    );
    let js = ok(&d.berth(&["operation", "list", "-f", "json"]));
    let v: serde_json::Value = serde_json::from_str(&js).unwrap();
    assert_eq!(v[0]["id"], id.as_str());
    let yaml = ok(&d.berth(&["operation", "list", "-f", "yaml"]));
    assert!(yaml.contains(&format!("id: {id}")), "{yaml}");
    let compact = ok(&d.berth(&["operation", "list", "-f", "compact"]));
    assert!(!compact.contains('|') && compact.contains(&id), "{compact}");

    let show = ok(&d.berth(&["operation", "show", &id]));
    assert!(show.contains("status: Running"), "{show}");
    ok(&d.berth(&["operation", "delete", &id]));
    let op = c
        .wait_operation(&id, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(op.status, "Cancelled");
    let err = fails(&d.berth(&["operation", "show", "no-such-op"]));
    assert_eq!(err, "Error: Operation not found\n");
}

#[tokio::test]
async fn monitor_prints_events() {
    let d = Daemon::start();
    let mut child = Command::new(bin("berth"))
        .args(["monitor", "--type", "lifecycle", "--pretty"])
        .env("BERTH_DIR", d.dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Give the monitor time to subscribe, then make a lifecycle event.
    let c = d.client();
    let mut patch = berth_api::ServerPut::default();
    let mut out = String::new();
    for i in 0..4 {
        patch.config.insert("user.n".into(), i.to_string());
        c.patch_server(&patch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = child.wait();
    assert!(out.contains("lifecycle config-updated /1.0"), "{out}");
}

#[test]
fn completion_scripts() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(bin("berth"))
            .args(["completion", shell])
            .output()
            .unwrap();
        let script = ok(&out);
        assert!(script.contains("berth"), "{shell}: {script}");
        assert!(script.contains("operation"), "{shell}");
    }
}
