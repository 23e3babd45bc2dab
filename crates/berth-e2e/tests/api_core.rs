//! The API core: envelopes, error statuses, server config, projects, cluster, warnings,
//! resources.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use berth_client::Method;
use berth_e2e::{Daemon, operation_id, test_operation};
use bytes::Bytes;
use serde_json::json;

const ENVELOPE_FIELDS: [&str; 7] = [
    "type",
    "status",
    "status_code",
    "operation",
    "error_code",
    "error",
    "metadata",
];

fn assert_all_fields(v: &serde_json::Value) {
    for f in ENVELOPE_FIELDS {
        assert!(v.get(f).is_some(), "field {f} missing in {v}");
    }
}

#[tokio::test]
async fn envelopes_sync_async_error() {
    let d = Daemon::start();
    let c = d.client();

    let r = c.raw(Method::GET, "/", None, None).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.metadata, json!(["/1.0"]));

    let r = c.raw(Method::GET, "/1.0", None, None).await.unwrap();
    let v = serde_json::to_value(&r.body).unwrap();
    assert_all_fields(&v);
    assert_eq!(v["type"], "sync");
    assert_eq!(v["status"], "Success");
    assert_eq!(v["status_code"], 200);
    let m = &v["metadata"];
    assert_eq!(m["api_version"], "1.0");
    assert_eq!(m["api_status"], "stable");
    assert_eq!(m["auth"], "trusted");
    assert!(
        m["api_extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("etag"))
    );
    let env = &m["environment"];
    assert_eq!(env["server"], "berth");
    assert_eq!(env["driver"], "lxc");
    assert!(
        env["driver_version"].as_str().unwrap().starts_with("5.0."),
        "{env}"
    );
    assert_eq!(env["server_pid"], json!(d.pid().unwrap()));
    assert_eq!(env["kernel"], "Linux");
    assert!(!env["kernel_version"].as_str().unwrap().is_empty());
    assert!(!env["architectures"].as_array().unwrap().is_empty());
    assert!(r.etag.is_some(), "GET /1.0 carries an ETag");

    let r = test_operation(&c, json!({"duration_ms": 50})).await;
    assert_eq!(r.status, 202);
    let v = serde_json::to_value(&r.body).unwrap();
    assert_all_fields(&v);
    assert_eq!(v["type"], "async");
    assert_eq!(v["status"], "Operation created");
    assert_eq!(v["status_code"], 100);
    let id = operation_id(&r);
    assert_eq!(v["operation"], format!("/1.0/operations/{id}"));
    assert_eq!(
        r.location.as_deref(),
        Some(format!("/1.0/operations/{id}").as_str())
    );
    assert_eq!(v["metadata"]["id"], id.as_str());
    assert_eq!(v["metadata"]["class"], "task");

    let r = c.raw(Method::GET, "/1.0/nope", None, None).await.unwrap();
    let v = serde_json::to_value(&r.body).unwrap();
    assert_all_fields(&v);
    assert_eq!(r.status, 404);
    assert_eq!(v["type"], "error");
    assert_eq!(v["error_code"], 404);
    assert!(!v["error"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let d = Daemon::start();
    let c = d.client();
    let before = c.server().await.unwrap().config;

    // 405 on a known path with the wrong method.
    let r = c.raw(Method::DELETE, "/1.0", None, None).await.unwrap();
    assert_eq!((r.status, r.body.error_code), (405, 405));

    // 413 on a body over 1 MiB.
    let big = format!(r#"{{"config": {{"user.big": "{}"}}}}"#, "x".repeat(2 << 20));
    let r = c
        .raw(Method::PUT, "/1.0", Some(Bytes::from(big)), None)
        .await
        .unwrap();
    assert_eq!(r.status, 413, "{}", r.body.error);
    assert_eq!(r.body.error_code, 413);

    // 400 on malformed JSON.
    let r = c
        .raw(
            Method::PUT,
            "/1.0",
            Some(Bytes::from_static(b"{\"config\":")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.error.contains("Invalid JSON"), "{}", r.body.error);

    // 400 naming the field with the wrong type.
    let body = Bytes::from_static(br#"{"config": {"user.a": 1}}"#);
    let r = c.raw(Method::PUT, "/1.0", Some(body), None).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.error.contains("config.user.a"), "{}", r.body.error);

    // 400 naming an unknown key or a bad value.
    let r = c
        .raw(
            Method::PATCH,
            "/1.0",
            Some(Bytes::from_static(br#"{"config": {"core.bogus": "1"}}"#)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.error.contains("core.bogus"), "{}", r.body.error);
    let r = c
        .raw(
            Method::PATCH,
            "/1.0",
            Some(Bytes::from_static(
                br#"{"config": {"core.shutdown_timeout": "soon"}}"#,
            )),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.body.error.contains("core.shutdown_timeout"),
        "{}",
        r.body.error
    );

    // Unknown projects are 404 everywhere.
    let r = c
        .raw(Method::GET, "/1.0?project=other", None, None)
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert!(r.body.error.contains("other"));
    let r = c
        .raw(Method::GET, "/1.0/operations?project=default", None, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    assert_eq!(
        c.server().await.unwrap().config,
        before,
        "refused writes changed nothing"
    );
    assert!(c.server().await.is_ok(), "berthd still answers");
}

#[tokio::test]
async fn server_config_put_patch_and_etag() {
    let d = Daemon::start();
    let c = d.client();
    let (_, etag) = c.get_with_etag::<serde_json::Value>("/1.0").await.unwrap();
    let etag = etag.expect("etag");

    let mut put = berth_api::ServerPut::default();
    put.config.insert("user.owner".into(), "ops team".into());
    put.config
        .insert("core.shutdown_timeout".into(), "1".into());
    c.update_server(&put, Some(&etag)).await.unwrap();

    // The old ETag is stale now: 412 and nothing changes.
    let mut stale = berth_api::ServerPut::default();
    stale
        .config
        .insert("user.owner".into(), "someone else".into());
    let err = c.update_server(&stale, Some(&etag)).await.unwrap_err();
    assert_eq!(err.status(), Some(412), "{err}");
    assert_eq!(c.server().await.unwrap().config["user.owner"], "ops team");

    // PATCH merges; an empty value unsets.
    let mut patch = berth_api::ServerPut::default();
    patch.config.insert("user.extra".into(), "1".into());
    patch
        .config
        .insert("core.shutdown_timeout".into(), "".into());
    c.patch_server(&patch).await.unwrap();
    let config = c.server().await.unwrap().config;
    assert_eq!(
        config.get("user.owner").map(String::as_str),
        Some("ops team")
    );
    assert_eq!(config.get("user.extra").map(String::as_str), Some("1"));
    assert!(!config.contains_key("core.shutdown_timeout"));

    // PUT replaces.
    c.update_server(&berth_api::ServerPut::default(), None)
        .await
        .unwrap();
    assert!(c.server().await.unwrap().config.is_empty());
}

#[tokio::test]
async fn projects_cluster_warnings_resources() {
    let d = Daemon::start();
    let c = d.client();
    let list: Vec<String> = c.get("/1.0/projects").await.unwrap();
    assert_eq!(list, vec!["/1.0/projects/default"]);
    let full: serde_json::Value = c.get("/1.0/projects?recursion=1").await.unwrap();
    assert_eq!(full[0]["name"], "default");
    let p: serde_json::Value = c.get("/1.0/projects/default").await.unwrap();
    assert_eq!(p["name"], "default");
    let err = c
        .get::<serde_json::Value>("/1.0/projects/other")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));

    let cluster: serde_json::Value = c.get("/1.0/cluster").await.unwrap();
    assert_eq!(cluster["enabled"], false);
    let warnings: Vec<serde_json::Value> = c.get("/1.0/warnings").await.unwrap();
    assert!(warnings.is_empty());

    let res: berth_api::resources::Resources = c.get("/1.0/resources").await.unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(res.cpu.total, cpus);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kb: u64 = meminfo
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(res.memory.total, total_kb * 1024);
    assert!(res.storage.total >= 1, "the host's disk is listed");
    assert!(res.storage.disks.iter().all(|d| d.size > 0));
}
