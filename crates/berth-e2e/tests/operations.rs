//! Operations: listing, waiting, cancelling, failing, websockets and expiry.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::time::Duration;

use berth_api::StatusCode;
use berth_client::Method;
use berth_e2e::{Daemon, operation_id, test_operation};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn wait_for_success_and_failure() {
    let d = Daemon::start();
    let c = d.client();
    let id = operation_id(&test_operation(&c, json!({"duration_ms": 300})).await);
    let running = c.operation(&id).await.unwrap();
    assert_eq!(running.status_code, StatusCode::Running);
    assert_eq!(running.metadata.unwrap()["progress"], "sleeping");

    let list: serde_json::Value = c.get("/1.0/operations").await.unwrap();
    assert_eq!(list["running"], json!([format!("/1.0/operations/{id}")]));

    let op = c.wait_operation(&id, None).await.unwrap();
    assert_eq!(op.status_code, StatusCode::Success);
    assert_eq!(op.status, "Success");
    let grouped = c.operations().await.unwrap();
    assert_eq!(grouped["success"][0].id, id);

    let id = operation_id(&test_operation(&c, json!({"fail": "disk on fire"})).await);
    let err = c.wait_success(&id).await.unwrap_err();
    assert_eq!(err.to_string(), "disk on fire");
    let op = c.operation(&id).await.unwrap();
    assert_eq!(
        (op.status_code, op.err.as_str()),
        (StatusCode::Failure, "disk on fire")
    );
}

#[tokio::test]
async fn wait_endpoint_honours_timeout() {
    let d = Daemon::start();
    let c = d.client();
    let id =
        operation_id(&test_operation(&c, json!({"duration_ms": 60000, "may_cancel": true})).await);
    let started = std::time::Instant::now();
    let op: berth_api::Operation = c
        .get(&format!("/1.0/operations/{id}/wait?timeout=0.2"))
        .await
        .unwrap();
    assert_eq!(op.status_code, StatusCode::Running);
    assert!(started.elapsed() >= Duration::from_millis(150));
    let err = c
        .get::<serde_json::Value>(&format!("/1.0/operations/{id}/wait?timeout=x"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    c.cancel_operation(&id).await.unwrap();
}

#[tokio::test]
async fn cancel_where_allowed() {
    let d = Daemon::start();
    let c = d.client();
    let id =
        operation_id(&test_operation(&c, json!({"duration_ms": 60000, "may_cancel": true})).await);
    c.cancel_operation(&id).await.unwrap();
    let op = c
        .wait_operation(&id, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(op.status_code, StatusCode::Cancelled);
    let err = c.cancel_operation(&id).await.unwrap_err();
    assert_eq!(
        err.status(),
        Some(400),
        "a finished operation cannot be cancelled"
    );

    let id = operation_id(&test_operation(&c, json!({"duration_ms": 60000})).await);
    let err = c.cancel_operation(&id).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("can't be cancelled"), "{err}");
    assert_eq!(
        c.operation(&id).await.unwrap().status_code,
        StatusCode::Running
    );

    let err = c
        .cancel_operation("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
}

#[tokio::test]
async fn websocket_operation_streams() {
    let d = Daemon::start();
    let c = d.client();
    let r = test_operation(&c, json!({"class": "websocket"})).await;
    let id = operation_id(&r);
    assert_eq!(r.body.metadata["class"], "websocket");
    let fds = &r.body.metadata["metadata"]["fds"];
    let secret = fds["0"].as_str().unwrap().to_owned();
    assert!(fds["control"].is_string());

    let err = c.operation_websocket(&id, "wrong").await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");

    let mut ws = c.operation_websocket(&id, &secret).await.unwrap();
    let err = c.operation_websocket(&id, &secret).await.unwrap_err();
    assert_eq!(
        err.status(),
        Some(403),
        "a secret is good for one connection"
    );
    ws.send(Message::Binary(b"hello".to_vec().into()))
        .await
        .unwrap();
    let echo = ws.next().await.unwrap().unwrap();
    assert_eq!(echo.into_data().as_ref(), b"hello");
    ws.close(None).await.unwrap();
    let op = c
        .wait_operation(&id, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(op.status_code, StatusCode::Success);
}

#[tokio::test]
async fn finished_operations_expire() {
    let d = Daemon::start();
    let c = d.client();
    let id = operation_id(&test_operation(&c, json!({})).await);
    c.wait_success(&id).await.unwrap();
    assert!(
        c.operation(&id).await.is_ok(),
        "a finished operation stays visible a while"
    );
    tokio::time::sleep(Duration::from_secs(7)).await;
    let err = c.operation(&id).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    let r = c
        .raw(Method::GET, "/1.0/operations", None, None)
        .await
        .unwrap();
    assert_eq!(r.body.metadata, json!({}));
}
