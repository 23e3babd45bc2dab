//! berthd's public images as a simplestreams tree, consumed on loopback by the real `lxc`
//! client and by berth (`--protocol simplestreams`), and a second berthd fetching from it
//! when it launches or copies an image. Private images stay out of the tree.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use berth_client::Method;
use berth_e2e::{Daemon, alias_target, fails, image_fingerprints, ok, with_busybox};

fn berth_path() -> String {
    berth_e2e::bin("berth").to_string_lossy().into_owned()
}

#[tokio::test]
async fn public_images_are_served_and_fetched_as_simplestreams() {
    // h1 serves the tree on 8443; h2 (8444) fetches from it.
    let h1 = Daemon::start();
    let h2 = Daemon::start_beside(&h1);
    with_busybox(&h1).await;
    let fp = alias_target(&h1, "bb").await;
    h1.https_on(8443);
    h2.https_on(8444);
    let tree = "https://127.0.0.1:8443";

    // Only public images are in the tree.
    let lxc = |args: &[&str]| h1.remote("lxc", "lxc-conf", args);
    let berth = |args: &[&str]| h1.remote(&berth_path(), "berth-conf", args);
    for (program, conf) in [("lxc".to_owned(), "lxc-conf"), (berth_path(), "berth-conf")] {
        let out = ok(&h2.berth(&["config", "trust", "add", conf]));
        let token = out.lines().last().unwrap().trim().to_owned();
        ok(&h1.remote(&program, conf, &["remote", "add", "h2", &token]));
    }
    // The LXD client pins a simplestreams server's certificate it finds saved under the
    // remote's name (as `lxc remote add` saves a trusted server's).
    let certs = h1.dir().join("lxc-conf/servercerts");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(h1.dir().join("server.crt"), certs.join("ss.crt")).unwrap();
    ok(&lxc(&[
        "remote",
        "add",
        "ss",
        tree,
        "--protocol",
        "simplestreams",
    ]));
    let listed = ok(&lxc(&["image", "list", "ss:", "-f", "csv"]));
    assert!(listed.trim().is_empty(), "private images listed: {listed}");

    let c = h1.client();
    let r = c
        .query(
            Method::PATCH,
            &format!("/1.0/images/{fp}"),
            Some(&serde_json::json!({"public": true})),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let listed = ok(&lxc(&["image", "list", "ss:", "-f", "csv"]));
    assert!(
        listed.contains(&fp[..12]) && listed.contains("bb"),
        "{listed}"
    );

    // The real client launches from it on h2: h2 fetches the image over simplestreams.
    ok(&lxc(&["launch", "ss:bb", "h2:c1"]));
    let out = ok(&lxc(&["exec", "h2:c1", "--", "echo", "from-the-tree"]));
    assert_eq!(out.trim(), "from-the-tree");
    assert_eq!(image_fingerprints(&h2).await, std::slice::from_ref(&fp));
    ok(&lxc(&["delete", "-f", "h2:c1"]));

    // berth: the tree added with its certificate accepted, listed, copied from, launched
    // from.
    let refused = fails(&berth(&[
        "remote",
        "add",
        "ss",
        tree,
        "--protocol",
        "simplestreams",
    ]));
    assert!(refused.contains("--accept-certificate"), "{refused}");
    ok(&berth(&[
        "remote",
        "add",
        "ss",
        tree,
        "--protocol",
        "simplestreams",
        "--accept-certificate",
    ]));
    let listed = ok(&berth(&["image", "list", "ss:", "-f", "csv"]));
    assert!(listed.contains(&fp[..12]), "{listed}");
    let info = ok(&berth(&["image", "info", "ss:bb"]));
    assert!(info.contains(&format!("Fingerprint: {fp}")), "{info}");
    ok(&berth(&["image", "delete", &format!("h2:{fp}")]));
    ok(&berth(&[
        "image", "copy", "ss:bb", "h2:", "--alias", "copied",
    ]));
    assert_eq!(alias_target(&h2, "copied").await, fp);
    ok(&berth(&["image", "delete", "h2:copied"]));
    ok(&berth(&["launch", "ss:bb", "h2:c2"]));
    let out = ok(&berth(&["exec", "h2:c2", "--", "echo", "launched"]));
    assert_eq!(out.trim(), "launched");
    ok(&berth(&["delete", "-f", "h2:c2"]));
    // Not an LXD server: instance commands say so.
    let refused = fails(&berth(&["list", "ss:"]));
    assert!(refused.contains("simplestreams image server"), "{refused}");

    // Bad requests change nothing: an unknown alias, an unknown protocol.
    let before = image_fingerprints(&h2).await;
    let files = berth_e2e::image_store_files(&h2);
    let c2 = h2.client();
    let cert = std::fs::read_to_string(h1.dir().join("server.crt")).unwrap();
    for (source, said) in [
        (
            serde_json::json!({"type": "image", "protocol": "simplestreams", "server": tree, "alias": "nothing", "certificate": cert}),
            "not found",
        ),
        // A server whose certificate is neither given nor signed by a known root.
        (
            serde_json::json!({"type": "image", "protocol": "simplestreams", "server": tree, "alias": "bb"}),
            "UnknownIssuer",
        ),
        (
            serde_json::json!({"type": "image", "protocol": "ftp", "server": tree, "alias": "bb"}),
            "source.protocol",
        ),
        (
            serde_json::json!({"type": "image", "protocol": "simplestreams", "server": "http://127.0.0.1:8443", "alias": "bb"}),
            "source.server",
        ),
    ] {
        let body = serde_json::json!({"source": source});
        let r = c2.query(Method::POST, "/1.0/images", Some(&body)).await;
        let message = match r {
            Err(e) => e.to_string(),
            Ok(r) => match r.body.operation_id() {
                Some(id) => c2.wait_success(id).await.unwrap_err().to_string(),
                None => panic!("accepted: {:?}", r.body),
            },
        };
        assert!(message.contains(said), "{source}: {message}");
    }
    assert_eq!(image_fingerprints(&h2).await, before);
    assert_eq!(berth_e2e::image_store_files(&h2), files);
}
