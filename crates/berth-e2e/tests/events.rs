//! The events websocket: operation, lifecycle and logging events, and type filters.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::time::Duration;

use berth_api::{Event, EventType};
use berth_client::EventStream;
use berth_e2e::{Daemon, operation_id, test_operation};
use serde_json::json;

async fn next_matching(events: &mut EventStream, f: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = events
                .next()
                .await
                .expect("stream open")
                .expect("valid event");
            if f(&ev) {
                return ev;
            }
        }
    })
    .await
    .expect("event within 10s")
}

#[tokio::test]
async fn operation_and_lifecycle_events() {
    let d = Daemon::start();
    let c = d.client();
    let mut all = c.events(&[]).await.unwrap();
    let mut lifecycle_only = c.events(&[EventType::Lifecycle]).await.unwrap();

    let id = operation_id(&test_operation(&c, json!({"duration_ms": 100})).await);
    let created = next_matching(&mut all, |e| e.kind == EventType::Operation).await;
    assert_eq!(created.metadata["id"], id.as_str());
    assert_eq!(created.metadata["status"], "Running");
    assert_eq!(created.project, "default");
    assert!(!created.timestamp.is_empty());
    let done = next_matching(&mut all, |e| {
        e.kind == EventType::Operation && e.metadata["status_code"] == 200
    })
    .await;
    assert_eq!(done.metadata["id"], id.as_str());

    let mut patch = berth_api::ServerPut::default();
    patch.config.insert("user.k".into(), "v".into());
    c.patch_server(&patch).await.unwrap();
    let lc = next_matching(&mut all, |e| e.kind == EventType::Lifecycle).await;
    assert_eq!(lc.metadata["action"], "config-updated");
    assert_eq!(lc.metadata["source"], "/1.0");

    // The filtered subscriber sees the lifecycle event first: no operation events reached it.
    let first = next_matching(&mut lifecycle_only, |_| true).await;
    assert_eq!(first.kind, EventType::Lifecycle);
    assert_eq!(first.metadata["action"], "config-updated");
}

#[tokio::test]
async fn logging_events_and_bad_filters() {
    let d = Daemon::start();
    let c = d.client();
    let mut logs = c.events(&[EventType::Logging]).await.unwrap();
    // Every server configuration change is logged at info level.
    let mut patch = berth_api::ServerPut::default();
    patch
        .config
        .insert("core.shutdown_timeout".into(), "0".into());
    c.patch_server(&patch).await.unwrap();
    let ev = next_matching(&mut logs, |e| e.kind == EventType::Logging).await;
    assert_eq!(ev.metadata["level"], "info");
    assert_eq!(ev.metadata["message"], "Server configuration updated");

    let err = c
        .raw(
            berth_client::Method::GET,
            "/1.0/events?type=bogus",
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(err.status, 400);
    assert!(err.body.error.contains("bogus"));
}
