//! The daemon process: its directory, lock, socket, logs, signals and restarts.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use berth_e2e::{Daemon, operation_id, test_operation};
use serde_json::json;

#[tokio::test]
async fn layout_socket_mode_and_clean_exit() {
    let mut d = Daemon::start();
    let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    assert!(d.dir().join("database/local.db").exists());
    assert!(d.log().contains("berthd started"), "log: {}", d.log());
    let status = d.stop();
    assert!(status.success(), "SIGTERM exits cleanly: {status}");
    assert!(!d.socket().exists(), "socket removed on exit");
}

#[tokio::test]
async fn second_daemon_on_same_dir_is_refused() {
    let d = Daemon::start();
    let out = d.command().stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("already running"), "{err}");
    assert!(err.contains(&d.pid().unwrap().to_string()), "{err}");
    assert!(
        d.client().server().await.is_ok(),
        "the first daemon is unaffected"
    );
}

#[tokio::test]
async fn two_daemons_on_two_dirs() {
    let a = Daemon::start();
    let b = Daemon::start();
    let sa = a.client().server().await.unwrap();
    let sb = b.client().server().await.unwrap();
    let pid = |s: &berth_api::Server| s.environment.as_ref().unwrap().server_pid;
    assert_ne!(pid(&sa), pid(&sb));
    let mut patch = berth_api::ServerPut::default();
    patch.config.insert("user.which".into(), "a".into());
    a.client().patch_server(&patch).await.unwrap();
    assert!(
        b.client().server().await.unwrap().config.is_empty(),
        "state is per directory"
    );
}

#[tokio::test]
async fn state_survives_restart_and_sigkill() {
    let mut d = Daemon::start();
    let mut patch = berth_api::ServerPut::default();
    patch.config.insert("user.kept".into(), "yes".into());
    d.client().patch_server(&patch).await.unwrap();
    d.restart();
    assert_eq!(
        d.client().server().await.unwrap().config["user.kept"],
        "yes"
    );

    patch.config.insert("user.after-kill".into(), "also".into());
    d.client().patch_server(&patch).await.unwrap();
    d.kill();
    d.restart();
    let config = d.client().server().await.unwrap().config;
    assert_eq!(config["user.kept"], "yes");
    assert_eq!(config["user.after-kill"], "also");
}

#[tokio::test]
async fn shutdown_waits_for_operations_then_cancels() {
    let mut d = Daemon::start();
    let c = d.client();
    let mut patch = berth_api::ServerPut::default();
    patch
        .config
        .insert("core.shutdown_timeout".into(), "0".into());
    c.patch_server(&patch).await.unwrap();
    let _id = operation_id(&test_operation(&c, json!({"duration_ms": 600000})).await);
    let started = std::time::Instant::now();
    assert!(d.stop().success());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(d.log().contains("cancelling"), "log: {}", d.log());
}
