//! The real LXD client (Debian's `lxd-client`, `lxc`) against berthd.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use berth_e2e::{Daemon, ok, operation_id, test_operation};
use serde_json::json;

#[tokio::test]
async fn lxc_info_and_query() {
    let d = Daemon::start();
    let info = ok(&d.lxc(&["info"]));
    assert!(info.contains("server: berth"), "{info}");
    assert!(info.contains("api_version: \"1.0\""), "{info}");
    assert!(info.contains("auth: trusted"), "{info}");

    let res = ok(&d.lxc(&["info", "--resources"]));
    assert!(res.contains("CPU"), "{res}");
    assert!(res.contains("Memory:"), "{res}");

    let q = ok(&d.lxc(&["query", "/1.0"]));
    let v: serde_json::Value = serde_json::from_str(&q).unwrap();
    assert_eq!(v["environment"]["server"], "berth");

    ok(&d.lxc(&[
        "query",
        "-X",
        "PATCH",
        "-d",
        r#"{"config":{"user.from-lxc":"hi"}}"#,
        "/1.0",
    ]));
    assert_eq!(
        d.client().server().await.unwrap().config["user.from-lxc"],
        "hi"
    );
    let out = d.lxc(&[
        "query",
        "-X",
        "PATCH",
        "-d",
        r#"{"config":{"core.nope":"1"}}"#,
        "/1.0",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("core.nope"));

    let projects = ok(&d.lxc(&["project", "list"]));
    assert!(projects.contains("default"), "{projects}");
}

#[tokio::test]
async fn lxc_operation_list() {
    let d = Daemon::start();
    let c = d.client();
    let id =
        operation_id(&test_operation(&c, json!({"duration_ms": 60000, "may_cancel": true})).await);
    let list = ok(&d.lxc(&["operation", "list"]));
    assert!(list.contains(&id), "{list}");
    assert!(list.contains("RUNNING"), "{list}");
    let show = ok(&d.lxc(&["operation", "show", &id]));
    assert!(show.contains("status: Running"), "{show}");
    ok(&d.lxc(&["operation", "delete", &id]));
    let op = c
        .wait_operation(&id, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(op.status, "Cancelled");
}

#[tokio::test]
async fn lxc_monitor_sees_events() {
    let d = Daemon::start();
    let mut child = d
        .lxc_command(&["monitor", "--type", "lifecycle"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = d.client();
    let mut patch = berth_api::ServerPut::default();
    for i in 0..4 {
        patch.config.insert("user.n".into(), i.to_string());
        c.patch_server(&patch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let _ = child.kill();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = child.wait();
    assert!(out.contains("action: config-updated"), "{out}");
    assert!(out.contains("type: lifecycle"), "{out}");
}

#[tokio::test]
async fn lxc_storage_commands() {
    let d = Daemon::start();
    ok(&d.lxc(&["storage", "create", "viaLxc", "dir"]));
    let list = ok(&d.lxc(&["storage", "list", "--format", "csv"]));
    assert!(list.lines().any(|l| l.starts_with("viaLxc,dir,")), "{list}");
    let info = ok(&d.lxc(&["storage", "info", "viaLxc"]));
    assert!(info.contains("total space"), "{info}");
    let out = d.lxc(&["storage", "create", "bad", "dir", "nope=1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    ok(&d.lxc(&["storage", "delete", "viaLxc"]));
}
