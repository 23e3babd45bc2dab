//! Images between two berthd "hosts" (one network namespace, two HTTPS ports on its
//! loopback): the real `lxc image copy` and `lxc launch OTHER:IMAGE`, `berth image copy`
//! and `berth launch OTHER:IMAGE`; secrets that are missing, wrong or spent are refused.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use berth_client::Method;
use berth_e2e::{Daemon, alias_target, fails, image_fingerprints, ok, with_busybox};
use serde_json::Value;

fn berth_path() -> String {
    berth_e2e::bin("berth").to_string_lossy().into_owned()
}

/// Two hosts on ports 8443 and 8444, known to the lxc and berth clients (configured in
/// h1's directory) as h1 and h2; h1 has the busybox image as `bb`.
async fn hosts() -> (Daemon, Daemon) {
    let h1 = Daemon::start();
    let h2 = Daemon::start_beside(&h1);
    with_busybox(&h1).await;
    h1.https_on(8443);
    h2.https_on(8444);
    for (program, conf) in [("lxc".to_owned(), "lxc-conf"), (berth_path(), "berth-conf")] {
        for (name, d) in [("h1", &h1), ("h2", &h2)] {
            let out = ok(&d.berth(&["config", "trust", "add", conf]));
            let token = out.lines().last().unwrap().trim().to_owned();
            ok(&h1.remote(&program, conf, &["remote", "add", name, &token]));
        }
    }
    (h1, h2)
}

#[tokio::test]
async fn images_go_between_hosts() {
    let (h1, h2) = hosts().await;
    let lxc = |args: &[&str]| h1.remote("lxc", "lxc-conf", args);
    let berth = |args: &[&str]| h1.remote(&berth_path(), "berth-conf", args);
    let fp = alias_target(&h1, "bb").await;

    // The real client: a copy with an alias, then an instance from it.
    ok(&lxc(&["image", "copy", "h1:bb", "h2:", "--alias", "bb2"]));
    assert_eq!(alias_target(&h2, "bb2").await, fp);
    ok(&lxc(&["launch", "h2:bb2", "h2:c1"]));
    let out = ok(&lxc(&["exec", "h2:c1", "--", "echo", "from-the-copy"]));
    assert_eq!(out.trim(), "from-the-copy");
    ok(&lxc(&["delete", "-f", "h2:c1"]));
    ok(&lxc(&["image", "delete", "h2:bb2"]));
    assert!(image_fingerprints(&h2).await.is_empty());

    // Launching from another server's image: the instance's server fetches it, and
    // keeps it for the next launch.
    ok(&lxc(&["launch", "h1:bb", "h2:c2"]));
    assert_eq!(image_fingerprints(&h2).await, std::slice::from_ref(&fp));
    let out = ok(&lxc(&["exec", "h2:c2", "--", "echo", "fetched"]));
    assert_eq!(out.trim(), "fetched");
    // It is a cache entry: flushed once unused for images.remote_cache_expiry days (the
    // instance made from it runs on); an image copied on purpose is not.
    let cached: Value = h2.client().get(&format!("/1.0/images/{fp}")).await.unwrap();
    assert_eq!(cached["cached"], true);
    let flush = |days: i64| {
        let at = (chrono::Utc::now() + chrono::Duration::days(days)).to_rfc3339();
        let c = h2.client();
        async move {
            let r = c
                .query(
                    Method::POST,
                    "/internal/testing/image-cache-flush",
                    Some(&serde_json::json!({ "at": at })),
                )
                .await
                .unwrap();
            r.body.metadata["flushed"].as_u64().unwrap()
        }
    };
    assert_eq!(flush(9).await, 0);
    ok(&h2.berth(&["config", "set", "images.remote_cache_expiry", "0"]));
    assert_eq!(flush(30).await, 0);
    ok(&h2.berth(&["config", "unset", "images.remote_cache_expiry"]));
    assert_eq!(flush(11).await, 1);
    assert!(image_fingerprints(&h2).await.is_empty());
    let out = ok(&lxc(&["exec", "h2:c2", "--", "echo", "still"]));
    assert_eq!(out.trim(), "still");
    ok(&lxc(&["delete", "-f", "h2:c2"]));
    ok(&lxc(&["image", "copy", "h1:bb", "h2:"]));
    assert_eq!(flush(11).await, 0);
    ok(&lxc(&["image", "delete", &format!("h2:{fp}")]));

    // berth does the same.
    ok(&berth(&[
        "image",
        "copy",
        "h1:bb",
        "h2:",
        "--alias",
        "bb3",
        "--copy-aliases",
    ]));
    assert_eq!(alias_target(&h2, "bb3").await, fp);
    assert_eq!(alias_target(&h2, "bb").await, fp);
    ok(&berth(&["image", "delete", "h2:bb3"]));
    ok(&berth(&["launch", "h1:bb", "h2:c3"]));
    let out = ok(&berth(&["exec", "h2:c3", "--", "echo", "berth"]));
    assert_eq!(out.trim(), "berth");
    ok(&berth(&["delete", "-f", "h2:c3"]));

    // The real client relays (downloads, then uploads) when asked.
    ok(&lxc(&[
        "image", "copy", "h1:bb", "h2:", "--alias", "relayed", "--mode", "relay",
    ]));
    assert_eq!(alias_target(&h2, "relayed").await, fp);
    ok(&lxc(&["image", "delete", "h2:relayed"]));

    // Publishing to another server: the image lands there with its alias, and the one
    // made on the way is gone from the instance's server.
    ok(&berth(&["init", "h1:bb", "h1:p1"]));
    let before = image_fingerprints(&h1).await;
    ok(&berth(&["publish", "h1:p1", "h2:", "--alias", "published"]));
    let published = alias_target(&h2, "published").await;
    assert!(image_fingerprints(&h2).await.contains(&published));
    assert_eq!(image_fingerprints(&h1).await, before);
    ok(&berth(&["image", "delete", "h2:published"]));
    ok(&lxc(&[
        "publish",
        "h1:p1",
        "h2:",
        "--alias",
        "published-by-lxc",
    ]));
    let by_lxc = alias_target(&h2, "published-by-lxc").await;
    assert!(image_fingerprints(&h2).await.contains(&by_lxc));
    assert_eq!(image_fingerprints(&h1).await, before);
    ok(&berth(&["delete", "h1:p1"]));

    // Bad requests name the field and make nothing.
    let e = fails(&berth(&["image", "copy", "h1:nosuch", "h2:"]));
    assert!(e.contains("not found"), "{e}");
    let bad = serde_json::json!({"source": {"type": "image", "mode": "pull",
        "server": "https://127.0.0.1:8443", "fingerprint": fp}});
    let e = h2
        .client()
        .query(Method::POST, "/1.0/images", Some(&bad))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().contains("source.certificate"), "{e}");
    let from_url = serde_json::json!({"source": {"type": "url", "url": "https://127.0.0.1:1/x"}});
    let e = h2
        .client()
        .query(Method::POST, "/1.0/images", Some(&from_url))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not supported yet"), "{e}");
}

#[tokio::test]
async fn image_secrets_open_one_image_once() {
    let (h1, _h2) = hosts().await;
    let fp = alias_target(&h1, "bb").await;
    let r = h1
        .client()
        .query(Method::POST, &format!("/1.0/images/{fp}/secret"), None)
        .await
        .unwrap();
    let secret = r.body.metadata["metadata"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let der = {
        let pem = std::fs::read_to_string(h1.dir().join("server.crt")).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    };
    // An untrusted client (no certificate).
    let statuses = h1.netns().block_on(move || {
        Box::pin(async move {
            let c = berth_client::Client::https("127.0.0.1:8443", der, None).unwrap();
            let status = |r: Result<berth_client::RawResponse, berth_client::ClientError>| match r {
                Ok(r) => r.status,
                Err(e) => e.status().unwrap_or(0),
            };
            let get = |path: String| {
                let c = c.clone();
                async move { status(c.query(Method::GET, &path, None).await) }
            };
            let dir = tempfile::tempdir().unwrap();
            let mut out = vec![
                get(format!("/1.0/images/{fp}")).await,
                get(format!("/1.0/images/{fp}?secret=0123abcd")).await,
                get(format!("/1.0/images/{}?secret={secret}", &fp[..12])).await,
                get(format!("/1.0/images/{fp}?secret={secret}&project=other")).await,
                get(format!("/1.0/images/{fp}?secret={secret}")).await,
            ];
            let first = c.download_image(&fp, Some(&secret), dir.path(), None).await;
            out.push(u16::from(first.is_ok()));
            let again = c.download_image(&fp, Some(&secret), dir.path(), None).await;
            out.push(again.err().and_then(|e| e.status()).unwrap_or(0));
            out
        })
    });
    // No secret: not for untrusted eyes; a wrong one, a fingerprint prefix or another
    // project: no such image; the right one opens it, and the export spends it.
    assert_eq!(statuses[..4], [403, 404, 404, 404]);
    assert_eq!(statuses[4..], [200, 1, 404]);
}
