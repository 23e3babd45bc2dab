//! The HTTPS API, the trust store and trust tokens, and remotes: the real `lxc` and
//! `incus` clients, `berth remote`, and a client of our own for the faults. Every client
//! runs inside the daemon's network namespace and dials 127.0.0.1 there.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use base64::Engine as _;
use berth_client::{Client, ClientIdentity, Method};
use berth_e2e::{Daemon, fails, ok, with_busybox};
use serde_json::{Value, json};

/// The token on the last line of `berth config trust add`'s output.
fn last_line(out: &str) -> String {
    out.lines().last().unwrap_or_default().trim().to_owned()
}

/// A fresh client identity.
fn identity(name: &str) -> ClientIdentity {
    let (crt, key) = berth_client::generate_certificate(name, name).unwrap();
    ClientIdentity::from_pem(crt.as_bytes(), key.as_bytes()).unwrap()
}

/// Issues a token over the unix socket; returns it as clients get it, and its operation.
async fn issue(unix: &Client, body: Value) -> (String, String) {
    let r = unix
        .query(Method::POST, "/1.0/certificates", Some(&body))
        .await
        .unwrap();
    assert_eq!(r.status, 202);
    let op = &r.body.metadata;
    let m = &op["metadata"];
    let token = json!({
        "client_name": body["name"],
        "fingerprint": m["fingerprint"],
        "addresses": m["addresses"],
        "secret": m["secret"],
        "expires_at": "0001-01-01T00:00:00Z",
    });
    (
        base64::engine::general_purpose::STANDARD.encode(token.to_string()),
        op["id"].as_str().unwrap().to_owned(),
    )
}

async fn redeem(c: &Client, token: &str) -> Result<berth_client::RawResponse, String> {
    c.query(
        Method::POST,
        "/1.0/certificates",
        Some(&json!({"trust_token": token})),
    )
    .await
    .map_err(|e| e.to_string())
}

#[tokio::test]
async fn real_clients_add_a_remote_with_a_token_and_use_it() {
    let d = Daemon::start();
    with_busybox(&d).await;
    d.https();

    // The LXD client: a token made by the real lxc over the unix socket, redeemed over
    // HTTPS.
    let token = last_line(&ok(
        &d.lxc(&["config", "trust", "add", "--name", "lxc-user"])
    ));
    ok(&d.remote("lxc", "lxc-conf", &["remote", "add", "h1", &token]));
    ok(&d.remote("lxc", "lxc-conf", &["launch", "h1:bb", "h1:c1"]));
    let host = ok(&d.remote("lxc", "lxc-conf", &["exec", "h1:c1", "--", "hostname"]));
    assert_eq!(host.trim(), "c1");
    let list = ok(&d.remote("lxc", "lxc-conf", &["list", "h1:", "-c", "ns"]));
    assert!(list.contains("c1") && list.contains("RUNNING"), "{list}");

    // A used token admits nobody else.
    let again = fails(&d.remote("lxc", "lxc-other", &["remote", "add", "h1", &token]));
    assert!(again.contains("already used"), "{again}");

    // The Incus client, with a token made by berth; its file push speaks SFTP.
    let token = last_line(&ok(&d.berth(&["config", "trust", "add", "incus-user"])));
    ok(&d.remote("incus", "incus-conf", &["remote", "add", "h1", &token]));
    let file = d.dir().join("pushed.txt");
    std::fs::write(&file, "over https\n").unwrap();
    ok(&d.remote(
        "incus",
        "incus-conf",
        &[
            "file",
            "push",
            file.to_str().unwrap(),
            "h1:c1/root/pushed.txt",
        ],
    ));
    let back = ok(&d.remote(
        "incus",
        "incus-conf",
        &["exec", "h1:c1", "--", "cat", "/root/pushed.txt"],
    ));
    assert_eq!(back, "over https\n");

    let trusted = ok(&d.berth(&["config", "trust", "list"]));
    assert!(
        trusted.contains("lxc-user") && trusted.contains("incus-user"),
        "{trusted}"
    );
    ok(&d.remote("incus", "incus-conf", &["delete", "-f", "h1:c1"]));
    let list = ok(&d.remote("lxc", "lxc-conf", &["list", "h1:", "-c", "n", "-f", "csv"]));
    assert_eq!(list.trim(), "");

    // A removed certificate is refused from its next request on.
    let certs: Vec<Value> = d
        .client()
        .get("/1.0/certificates?recursion=1")
        .await
        .unwrap();
    let fp = certs
        .iter()
        .find(|c| c["name"] == "lxc-user")
        .and_then(|c| c["fingerprint"].as_str())
        .unwrap()
        .to_owned();
    ok(&d.berth(&["config", "trust", "remove", &fp[..12]]));
    let refused = fails(&d.remote("lxc", "lxc-conf", &["list", "h1:"]));
    assert!(refused.contains("not authorized"), "{refused}");
}

#[tokio::test]
async fn untrusted_clients_and_bad_tokens_are_refused() {
    let d = Daemon::start();
    let addr = d.https();
    let unix = d.client();
    ok(&d.berth(&["project", "create", "p1"]));
    let (good, _) = issue(&unix, json!({"name": "good", "token": true})).await;
    let (revoked, revoked_op) = issue(&unix, json!({"name": "revoked", "token": true})).await;
    unix.cancel_operation(&revoked_op).await.unwrap();
    let (limited, _) = issue(
        &unix,
        json!({"name": "limited", "token": true, "restricted": true, "projects": ["p1"]}),
    )
    .await;
    // A token for a project that does not exist is refused before it is issued.
    let e = unix
        .query(
            Method::POST,
            "/1.0/certificates",
            Some(&json!({"name": "x", "token": true, "restricted": true, "projects": ["nope"]})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    // Work under way in `default`: a restricted client must not see it, nor its secrets.
    let busy = berth_e2e::operation_id(
        &berth_e2e::test_operation(&unix, json!({"duration_ms": 60000, "may_cancel": true})).await,
    );
    let busy_path = format!("/1.0/operations/{busy}");

    d.netns().block_on(move || {
        Box::pin(async move {
            let der = berth_client::server_certificate(&addr).await.unwrap();
            let stranger =
                Client::https(addr.clone(), der.clone(), Some(&identity("stranger"))).unwrap();

            // Untrusted: the short GET /1.0 and nothing else.
            let s = stranger.server().await.unwrap();
            assert_eq!(s.auth, "untrusted");
            assert!(s.environment.is_none() && s.config.is_empty());
            for path in [
                "/1.0/instances",
                "/1.0/certificates",
                "/1.0/operations",
                "/1.0/images",
                "/1.0/networks",
                "/1.0/events",
            ] {
                let e = stranger.get::<Value>(path).await.unwrap_err();
                assert_eq!(e.status(), Some(403), "{path}: {e}");
            }
            let e = stranger
                .query(
                    Method::PATCH,
                    "/1.0",
                    Some(&json!({"config": {"user.x": "y"}})),
                )
                .await
                .unwrap_err();
            assert_eq!(e.status(), Some(403));

            // Forged, not-a-token and revoked tokens.
            let forged = base64::engine::general_purpose::STANDARD.encode(
                json!({"secret": "00", "fingerprint": "ab", "addresses": [addr]}).to_string(),
            );
            let e = redeem(&stranger, &forged).await.unwrap_err();
            assert!(e.contains("Unknown, revoked or already used"), "{e}");
            assert!(
                redeem(&stranger, "password")
                    .await
                    .unwrap_err()
                    .contains("Invalid trust token")
            );
            let e = redeem(&stranger, &revoked).await.unwrap_err();
            assert!(e.contains("Unknown, revoked or already used"), "{e}");
            assert_eq!(stranger.server().await.unwrap().auth, "untrusted");

            // A good token, once.
            let r = redeem(&stranger, &good).await.unwrap();
            assert_eq!(r.status, 201);
            assert!(
                r.location
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with("/1.0/certificates/")
            );
            let s = stranger.server().await.unwrap();
            assert_eq!(s.auth, "trusted");
            assert!(!s.environment.as_ref().unwrap().certificate.is_empty());
            let _: Value = stranger.get("/1.0/instances").await.unwrap();
            let other = Client::https(addr.clone(), der.clone(), Some(&identity("other"))).unwrap();
            let e = redeem(&other, &good).await.unwrap_err();
            assert!(e.contains("already used"), "{e}");

            // A restricted certificate: its project only.
            let r = redeem(&other, &limited).await.unwrap();
            assert_eq!(r.status, 201);
            let p1 = other.clone().with_project(Some("p1".into()));
            let projects: Vec<String> = other.get("/1.0/projects").await.unwrap();
            assert_eq!(projects, vec!["/1.0/projects/p1".to_owned()]);
            let _: Value = p1.get("/1.0/instances").await.unwrap();
            for path in [
                "/1.0/instances",
                "/1.0/projects/default",
                "/1.0/warnings",
                "/1.0/instances?all-projects=true",
            ] {
                let e = other.get::<Value>(path).await.unwrap_err();
                assert_eq!(e.status(), Some(403), "{path}: {e}");
            }
            let e = p1
                .query(
                    Method::PATCH,
                    "/1.0",
                    Some(&json!({"config": {"user.x": "y"}})),
                )
                .await
                .unwrap_err();
            assert_eq!(e.status(), Some(403));
            let s = other.server().await.unwrap();
            assert_eq!(s.auth, "trusted");
            assert!(s.config.is_empty(), "a restricted client sees no server config");
            let ops: Value = p1.get("/1.0/operations?recursion=1").await.unwrap();
            assert!(ops.as_object().unwrap().values().all(|v| v.as_array().unwrap().is_empty()), "{ops}");
            let e = other.get::<Value>(&busy_path).await.unwrap_err();
            assert_eq!(e.status(), Some(404));
            let e = other
                .query(Method::DELETE, &busy_path, None)
                .await
                .unwrap_err();
            assert_eq!(e.status(), Some(404));
            let e = p1
                .query(Method::POST, "/1.0/projects", Some(&json!({"name": "mine"})))
                .await
                .unwrap_err();
            assert_eq!(e.status(), Some(403));
            let e = p1
                .query(
                    Method::POST,
                    "/1.0/instances",
                    Some(&json!({"name": "x", "source": {"type": "copy", "source": "c", "project": "default"}})),
                )
                .await
                .unwrap_err();
            assert_eq!(e.status(), Some(403), "{e}");
            let certs: Vec<Value> = other.get("/1.0/certificates?recursion=1").await.unwrap();
            assert_eq!(certs.len(), 1);
            assert_eq!(certs[0]["name"], "limited");
            assert_eq!(certs[0]["restricted"], true);
            // It can't mint tokens, nor see those waiting.
            let e = other
                .query(
                    Method::POST,
                    "/1.0/certificates",
                    Some(&json!({"name": "z", "token": true})),
                )
                .await
                .unwrap_err();
            assert_eq!(e.status(), Some(403));

            // A server presenting another certificate than the one pinned is refused.
            let wrong = berth_client::generate_certificate("x", "x").unwrap().0;
            let wrong = pem_der(&wrong);
            let e = Client::https(addr.clone(), wrong, Some(&identity("z")))
                .unwrap()
                .server()
                .await
                .unwrap_err();
            assert!(e.to_string().contains("not the one saved"), "{e}");
        })
    });

    // The tokens left: the restricted token and the revoked one are gone; nothing waits
    // but the work under way, which the restricted client could not cancel.
    unix.cancel_operation(&busy).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let ops: Value = unix.get("/1.0/operations?recursion=1").await.unwrap();
    let running = ops["running"].as_array().map_or(0, Vec::len);
    assert_eq!(running, 0, "{ops}");
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[tokio::test]
async fn tokens_expire() {
    let d = Daemon::start();
    let addr = d.https();
    ok(&d.berth(&["config", "set", "core.remote_token_expiry", "1S"]));
    let (token, _) = issue(&d.client(), json!({"name": "late", "token": true})).await;
    let ops: Value = d.client().get("/1.0/operations?recursion=1").await.unwrap();
    assert!(
        ops["running"][0]["metadata"]["expiresAt"].is_string(),
        "{ops}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    d.netns().block_on(move || {
        Box::pin(async move {
            let der = berth_client::server_certificate(&addr).await.unwrap();
            let c = Client::https(addr, der, Some(&identity("late"))).unwrap();
            let e = redeem(&c, &token).await.unwrap_err();
            assert!(e.contains("expired"), "{e}");
            assert_eq!(c.server().await.unwrap().auth, "untrusted");
        })
    });
    let bad = fails(&d.berth(&["config", "set", "core.remote_token_expiry", "soon"]));
    assert!(bad.contains("core.remote_token_expiry"), "{bad}");
}

#[tokio::test]
async fn berth_remote_verbs() {
    let d = Daemon::start();
    with_busybox(&d).await;
    d.https();
    let b = |args: &[&str]| {
        d.remote(
            &berth_e2e::bin("berth").to_string_lossy(),
            "berth-conf",
            args,
        )
    };

    let token = last_line(&ok(&d.berth(&["config", "trust", "add", "bob"])));
    let tokens = ok(&d.berth(&["config", "trust", "list-tokens"]));
    assert!(tokens.contains("bob"), "{tokens}");
    ok(&b(&["remote", "add", "h1", &token]));
    let tokens = ok(&d.berth(&["config", "trust", "list-tokens"]));
    assert!(!tokens.contains("bob"), "{tokens}");
    let remotes = ok(&b(&["remote", "list"]));
    assert!(remotes.contains("https://127.0.0.1:8443"), "{remotes}");

    ok(&b(&["launch", "h1:bb", "h1:c1"]));
    assert_eq!(ok(&b(&["exec", "h1:c1", "--", "hostname"])).trim(), "c1");
    let info = ok(&b(&["info", "h1:c1"]));
    assert!(info.contains("RUNNING"), "{info}");
    ok(&b(&["config", "set", "h1:c1", "user.where=remote"]));
    assert_eq!(
        ok(&d.berth(&["config", "get", "c1", "user.where"])).trim(),
        "remote"
    );
    let server = ok(&b(&["config", "get", "h1:", "core.https_address"]));
    assert_eq!(server.trim(), "127.0.0.1:8443");

    ok(&b(&["remote", "rename", "h1", "h2"]));
    ok(&b(&["remote", "switch", "h2"]));
    assert_eq!(ok(&b(&["remote", "get-default"])).trim(), "h2");
    let list = ok(&b(&["list", "-c", "n", "-f", "csv"]));
    assert_eq!(list.trim(), "c1");
    let e = fails(&b(&["remote", "remove", "h2"]));
    assert!(e.contains("default"), "{e}");
    ok(&b(&["remote", "set-url", "h2", "https://127.0.0.1:8443"]));
    ok(&b(&["stop", "-f", "h2:c1"]));
    ok(&b(&["delete", "c1"]));
    ok(&b(&["remote", "switch", "local"]));
    ok(&b(&["remote", "remove", "h2"]));
    assert!(!ok(&b(&["remote", "list"])).contains("h2"));

    // By address: the fingerprint must be accepted, then a token is needed.
    let e = fails(&d.remote(
        &berth_e2e::bin("berth").to_string_lossy(),
        "fresh",
        &["remote", "add", "h3", "127.0.0.1"],
    ));
    assert!(e.contains("--accept-certificate"), "{e}");
    let e = fails(&d.remote(
        &berth_e2e::bin("berth").to_string_lossy(),
        "fresh",
        &[
            "remote",
            "add",
            "h3",
            "https://127.0.0.1:8443",
            "--accept-certificate",
        ],
    ));
    assert!(e.contains("does not trust"), "{e}");
    let token = last_line(&ok(&d.berth(&["config", "trust", "add", "carol"])));
    ok(&d.remote(
        &berth_e2e::bin("berth").to_string_lossy(),
        "fresh",
        &[
            "remote",
            "add",
            "h3",
            "https://127.0.0.1:8443",
            "--accept-certificate",
            "--token",
            &token,
        ],
    ));
    let trusted = ok(&d.berth(&["config", "trust", "list"]));
    assert!(
        trusted.contains("bob") && trusted.contains("carol"),
        "{trusted}"
    );
}

#[tokio::test]
async fn https_address_changes_live() {
    let mut d = Daemon::start();
    let addr = d.https();
    let reach = |d: &Daemon, addr: &str| {
        let addr = addr.to_owned();
        d.netns().block_on(move || {
            Box::pin(async move { berth_client::server_certificate(&addr).await.is_ok() })
        })
    };
    assert!(reach(&d, &addr));
    ok(&d.berth(&["config", "set", "core.https_address", "127.0.0.1:8444"]));
    assert!(!reach(&d, &addr));
    assert!(reach(&d, "127.0.0.1:8444"));

    // An address that is no address, or one the host doesn't have, changes nothing.
    let e = fails(&d.berth(&["config", "set", "core.https_address", "somewhere"]));
    assert!(e.contains("core.https_address"), "{e}");
    let e = fails(&d.berth(&["config", "set", "core.https_address", "192.0.2.1:8443"]));
    assert!(e.contains("cannot listen"), "{e}");
    assert_eq!(
        ok(&d.berth(&["config", "get", "core.https_address"])).trim(),
        "127.0.0.1:8444"
    );
    assert!(reach(&d, "127.0.0.1:8444"));

    // Kept across a restart; the certificate too.
    let before = d.client().server().await.unwrap().environment.unwrap();
    assert_eq!(before.addresses, vec!["127.0.0.1:8444".to_owned()]);
    d.restart();
    assert!(reach(&d, "127.0.0.1:8444"));
    let after = d.client().server().await.unwrap().environment.unwrap();
    assert_eq!(
        after.certificate_fingerprint,
        before.certificate_fingerprint
    );

    // A token needs a listener.
    ok(&d.berth(&["config", "unset", "core.https_address"]));
    assert!(!reach(&d, "127.0.0.1:8444"));
    let e = fails(&d.berth(&["config", "trust", "add", "nobody"]));
    assert!(e.contains("core.https_address"), "{e}");
}
