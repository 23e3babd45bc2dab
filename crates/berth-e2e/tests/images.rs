//! Images: import (unified and split, API and real lxc), aliases, export round trips,
//! the busybox builder, hostile archives, persistence.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_api::image::{Image, ImageAlias};
use berth_client::{ImportOptions, Method};
use berth_e2e::{Daemon, busybox_image, fails, image_store_files, ok, sha256_file};
use serde_json::json;

/// Unpacks the busybox image and repacks it as a split image: metadata tarball plus a
/// squashfs or tarball rootfs.
fn split_image(dir: &Path, squashfs: bool) -> (PathBuf, PathBuf) {
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(busybox_image())
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(st.success());
    let meta = dir.join("meta.tar.gz");
    let st = Command::new("tar")
        .arg("-czf")
        .arg(&meta)
        .arg("-C")
        .arg(&unpacked)
        .args(["metadata.yaml", "templates"])
        .status()
        .unwrap();
    assert!(st.success());
    let rootfs = if squashfs {
        let out = dir.join("rootfs.squashfs");
        let st = Command::new("mksquashfs")
            .arg(unpacked.join("rootfs"))
            .arg(&out)
            .args(["-noappend", "-quiet", "-no-progress"])
            .status()
            .unwrap();
        assert!(st.success());
        out
    } else {
        let out = dir.join("rootfs.tar.xz");
        let st = Command::new("tar")
            .arg("-cJf")
            .arg(&out)
            .arg("-C")
            .arg(unpacked.join("rootfs"))
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        out
    };
    (meta, rootfs)
}

fn combined_sha(a: &Path, b: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("cat \"$1\" \"$2\" | sha256sum")
        .arg("sh")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn unified_import_aliases_export_round_trip() {
    let d = Daemon::start();
    let c = d.client();
    let image = busybox_image();
    let fp = c
        .import_image(
            &image,
            None,
            &ImportOptions {
                aliases: vec!["bb".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        fp,
        sha256_file(&image),
        "the fingerprint is the file's SHA-256"
    );

    let img: Image = c.get(&format!("/1.0/images/{}", &fp[..8])).await.unwrap();
    assert_eq!(img.fingerprint, fp, "lookup by unique prefix");
    assert_eq!(img.kind, "container");
    assert_eq!(img.properties["os"], "BusyBox");
    assert_eq!(img.aliases[0].name, "bb");
    let list: Vec<String> = c.get("/1.0/images").await.unwrap();
    assert_eq!(list, vec![format!("/1.0/images/{fp}")]);

    // Aliases: create, rename, retarget, delete.
    c.query(
        Method::POST,
        "/1.0/images/aliases",
        Some(&json!({"name": "second", "target": fp, "description": "x"})),
    )
    .await
    .unwrap();
    let err = c
        .query(
            Method::POST,
            "/1.0/images/aliases",
            Some(&json!({"name": "second", "target": fp})),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    c.query(
        Method::POST,
        "/1.0/images/aliases/second",
        Some(&json!({"name": "third"})),
    )
    .await
    .unwrap();
    let a: ImageAlias = c.get("/1.0/images/aliases/third").await.unwrap();
    assert_eq!(
        (a.target.as_str(), a.description.as_str()),
        (fp.as_str(), "x")
    );
    c.query(
        Method::PATCH,
        "/1.0/images/aliases/third",
        Some(&json!({"description": "y"})),
    )
    .await
    .unwrap();
    let a: ImageAlias = c.get("/1.0/images/aliases/third").await.unwrap();
    assert_eq!(a.description, "y");
    c.query(Method::DELETE, "/1.0/images/aliases/third", None)
        .await
        .unwrap();
    assert_eq!(
        c.get::<ImageAlias>("/1.0/images/aliases/third")
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );

    // Properties edit with PATCH, ETag honoured.
    let (_, etag) = c
        .get_with_etag::<Image>(&format!("/1.0/images/{fp}"))
        .await
        .unwrap();
    c.query(
        Method::PATCH,
        &format!("/1.0/images/{fp}"),
        Some(&json!({"properties": {"note": "hi"}})),
    )
    .await
    .unwrap();
    let r = c
        .raw(
            Method::PUT,
            &format!("/1.0/images/{fp}"),
            Some(bytes::Bytes::from(r#"{"properties":{}}"#)),
            etag.as_deref(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 412);
    let img: Image = c.get(&format!("/1.0/images/{fp}")).await.unwrap();
    assert_eq!(img.properties["note"], "hi");

    // Export through the client and the CLI gives back the same bytes.
    let out = tempfile::tempdir().unwrap();
    let files = c.export_image(&fp, out.path(), None).await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(sha256_file(&files[0]), fp);
    let out2 = tempfile::tempdir().unwrap();
    ok(&d.berth(&["image", "export", "bb", out2.path().to_str().unwrap()]));
    let exported: Vec<_> = std::fs::read_dir(out2.path()).unwrap().flatten().collect();
    assert_eq!(sha256_file(&exported[0].path()), fp);

    // CLI listing and delete.
    let table = ok(&d.berth(&["image", "list"]));
    assert!(table.contains(&fp[..12]) && table.contains("bb"), "{table}");
    let aliases = ok(&d.berth(&["image", "alias", "list", "-f", "csv"]));
    assert!(
        aliases.starts_with(&format!("bb,{},CONTAINER,", &fp[..12])),
        "{aliases}"
    );
    ok(&d.berth(&["image", "delete", "bb"]));
    assert!(
        image_store_files(&d).is_empty(),
        "{:?}",
        image_store_files(&d)
    );
    let err = fails(&d.berth(&["image", "info", "bb"]));
    assert!(err.contains("not found"), "{err}");
}

#[tokio::test]
async fn split_images_squashfs_and_tarball() {
    let d = Daemon::start();
    let c = d.client();
    for squashfs in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let (meta, rootfs) = split_image(tmp.path(), squashfs);
        let fp = c
            .import_image(&meta, Some(&rootfs), &ImportOptions::default())
            .await
            .unwrap();
        assert_eq!(
            fp,
            combined_sha(&meta, &rootfs),
            "fingerprint = sha256(metadata ‖ rootfs)"
        );
        assert!(d.dir().join(format!("images/{fp}.rootfs")).exists());
        let out = tempfile::tempdir().unwrap();
        let files = c.export_image(&fp, out.path(), None).await.unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert_eq!(combined_sha(&files[0], &files[1]), fp);
        c.query(Method::DELETE, &format!("/1.0/images/{fp}"), None)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn real_lxc_client_imports_and_exports() {
    let d = Daemon::start();
    let image = busybox_image();
    ok(&d.lxc(&[
        "image",
        "import",
        image.to_str().unwrap(),
        "--alias",
        "viaLxc",
    ]));
    let list = ok(&d.lxc(&["image", "list", "--format", "csv"]));
    assert!(
        list.contains("viaLxc") && list.contains("BusyBox"),
        "{list}"
    );
    let fp = sha256_file(&image);
    let out = tempfile::tempdir().unwrap();
    ok(&d.lxc(&[
        "image",
        "export",
        "viaLxc",
        &format!("{}/", out.path().display()),
    ]));
    let files: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(sha256_file(&files[0]), fp);
    let info = ok(&d.lxc(&["image", "info", "viaLxc"]));
    assert!(info.contains(&fp), "{info}");

    let tmp = tempfile::tempdir().unwrap();
    let (meta, rootfs) = split_image(tmp.path(), true);
    ok(&d.lxc(&[
        "image",
        "import",
        meta.to_str().unwrap(),
        rootfs.to_str().unwrap(),
        "--alias",
        "splitLxc",
    ]));
    let out = tempfile::tempdir().unwrap();
    ok(&d.lxc(&[
        "image",
        "export",
        "splitLxc",
        &format!("{}/", out.path().display()),
    ]));
    let mut files: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    ok(&d.lxc(&["image", "delete", "splitLxc"]));
}

/// A tarball with raw (unchecked) entry names, gzip-compressed.
fn hostile(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            h.set_size(0);
            h.set_link_name_literal(std::str::from_utf8(data).unwrap())
                .unwrap();
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        } else {
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[tokio::test]
async fn hostile_archives_are_refused_and_leave_nothing() {
    use tar::EntryType::{Block, Char, Directory, Regular, Symlink};
    let d = Daemon::start();
    let c = d.client();
    let md: &[u8] = b"architecture: x86_64\ncreation_date: 1700000000\n";
    let big = vec![b'#'; 2 << 20];
    let base = |extra: Vec<(&'static str, tar::EntryType, &'static [u8])>| {
        let mut e: Vec<(&str, tar::EntryType, &[u8])> = vec![
            ("metadata.yaml", Regular, md),
            ("rootfs/", Directory, b""),
            ("rootfs/etc/", Directory, b""),
        ];
        e.extend(extra);
        hostile(&e)
    };
    let good = base(vec![]);
    let mut truncated = base(vec![("rootfs/etc/file", Regular, &[7u8; 4096][..])]);
    truncated.truncate(truncated.len() / 2);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "absolute path",
            base(vec![("/etc/evil", Regular, b"x")]),
            "absolute",
        ),
        (
            "dot-dot",
            base(vec![("rootfs/../../../tmp/evil", Regular, b"x")]),
            "..",
        ),
        (
            "symlink then write",
            base(vec![
                ("rootfs/etc/link", Symlink, b"/etc"),
                ("rootfs/etc/link/passwd", Regular, b"x"),
            ]),
            "symlink",
        ),
        (
            "char device",
            base(vec![("rootfs/dev-mem", Char, b"")]),
            "device",
        ),
        (
            "block device",
            base(vec![("rootfs/dev-sda", Block, b"")]),
            "device",
        ),
        (
            "oversized metadata",
            hostile(&[
                ("metadata.yaml", Regular, &big),
                ("rootfs/", Directory, b""),
            ]),
            "larger",
        ),
        ("truncated", truncated, "truncated"),
        (
            "no metadata",
            hostile(&[("rootfs/", Directory, b"")]),
            "metadata.yaml",
        ),
        (
            "not an archive",
            b"this is not a tarball at all, not even close".repeat(20),
            "",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, needle) in cases {
        let path = dir.path().join("bad.tar.gz");
        std::fs::write(&path, &bytes).unwrap();
        let err = c
            .import_image(&path, None, &ImportOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(400), "{name}: {err}");
        assert!(err.to_string().contains(needle), "{name}: {err}");
        assert!(
            image_store_files(&d).is_empty(),
            "{name} left {:?}",
            image_store_files(&d)
        );
        assert!(c.server().await.is_ok(), "berthd alive after {name}");
    }
    assert!(!Path::new("/tmp/evil").exists());
    let list: Vec<String> = c.get("/1.0/images").await.unwrap();
    assert!(list.is_empty());
    // The same archive without the hostile entry imports.
    let path = dir.path().join("good.tar.gz");
    std::fs::write(&path, &good).unwrap();
    c.import_image(&path, None, &ImportOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn images_aliases_and_pools_survive_restart_and_sigkill() {
    let mut d = Daemon::start();
    let c = d.client();
    let fp = c
        .import_image(
            &busybox_image(),
            None,
            &ImportOptions {
                aliases: vec!["keep".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ok(&d.berth(&["storage", "create", "kept", "dir"]));
    d.restart();
    let a: ImageAlias = d.client().get("/1.0/images/aliases/keep").await.unwrap();
    assert_eq!(a.target, fp);
    d.kill();
    d.restart();
    let img: Image = d.client().get(&format!("/1.0/images/{fp}")).await.unwrap();
    assert_eq!(img.aliases[0].name, "keep");
    let pools = ok(&d.berth(&["storage", "list", "-f", "csv"]));
    assert!(pools.lines().any(|l| l.starts_with("kept,dir,")), "{pools}");
}

#[tokio::test]
async fn alias_names_may_hold_slashes() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let fp = ok(&d.lxc(&["image", "list", "-f", "csv", "-c", "F"]));
    let fp = fp.trim();
    ok(&d.lxc(&["image", "alias", "create", "busybox/1.36", fp]));
    let list = ok(&d.lxc(&["image", "alias", "list", "-f", "csv"]));
    assert!(list.contains("busybox/1.36"), "{list}");
    let c = d.client();
    let a: serde_json::Value = c.get("/1.0/images/aliases/busybox/1.36").await.unwrap();
    assert_eq!(a["target"], fp);
    ok(&d.lxc(&["image", "alias", "rename", "busybox/1.36", "busybox/stable"]));
    ok(&d.berth(&["init", "busybox/stable", "slashed"]));
    ok(&d.lxc(&["image", "alias", "delete", "busybox/stable"]));
    for bad in ["/lead", "trail/", "a//b", "a/../b"] {
        let e = c
            .query(
                berth_client::Method::POST,
                "/1.0/images/aliases",
                Some(&serde_json::json!({"name": bad, "target": fp})),
            )
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{bad}");
    }
    ok(&d.berth(&["delete", "slashed"]));
}

/// An alias named twice in one import (`X-Incus-aliases: a,a`, `--alias a --alias a`) is
/// one alias; an image or alias that exists already is a 409, never a 500 with the
/// database's text.
#[tokio::test]
async fn repeated_aliases_are_one_and_duplicates_are_conflicts() {
    let d = Daemon::start();
    let c = d.client();
    let image = busybox_image();
    let fp = c
        .import_image(
            &image,
            None,
            &ImportOptions {
                aliases: vec!["a".into(), "a".into(), "b".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let img: Image = c.get(&format!("/1.0/images/{fp}")).await.unwrap();
    let names: Vec<&str> = img.aliases.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, vec!["a", "b"]);

    // The same image again: 409, and nothing changes.
    let again = c
        .import_image(&image, None, &ImportOptions::default())
        .await
        .unwrap_err();
    assert_eq!(again.status(), Some(409), "{again}");
    assert!(!again.to_string().contains("UNIQUE"), "{again}");
    // An alias taken by a create or a rename: 409.
    for (path, body) in [
        ("/1.0/images/aliases", json!({"name": "a", "target": fp})),
        ("/1.0/images/aliases/b", json!({"name": "a"})),
    ] {
        let e = c.query(Method::POST, path, Some(&body)).await.unwrap_err();
        assert_eq!(e.status(), Some(409), "{path}: {e}");
        assert!(e.to_string().contains("\"a\" already exists"), "{e}");
    }

    // Through the CLI: the image is gone, then imported with one alias named twice.
    ok(&d.berth(&["image", "delete", "a"]));
    let path = image.to_str().unwrap();
    ok(&d.berth(&["image", "import", path, "--alias", "x", "--alias", "x"]));
    let aliases = ok(&d.berth(&["image", "alias", "list", "-f", "csv"]));
    assert_eq!(aliases.lines().count(), 1, "{aliases}");
    assert!(aliases.starts_with("x,"), "{aliases}");
}

/// An instance (stopped) and a snapshot published as images, by berth and the real lxc:
/// a container made from one has the files, owners and modes the source had then.
#[tokio::test]
async fn instances_and_snapshots_are_published() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.berth(&["launch", "bb", "src"]));
    let sh = |name: &str, script: &str| ok(&d.berth(&["exec", name, "--", "sh", "-c", script]));
    sh(
        "src",
        "echo first > /root/f && chown 1000:1001 /root/f && chmod 640 /root/f",
    );
    ok(&d.berth(&["snapshot", "create", "src", "s1"]));
    sh("src", "echo second > /root/f");
    // A running instance is refused, one line; --force stops it first.
    let e = fails(&d.berth(&["publish", "src", "--alias", "pub1"]));
    assert!(e.contains("running"), "{e}");
    ok(&d.berth(&["publish", "src", "--alias", "pub1", "--force"]));
    ok(&d.lxc(&["publish", "src/s1", "--alias", "pub-snap"]));
    for (alias, content) in [("pub1", "second"), ("pub-snap", "first")] {
        let c = format!("from-{alias}");
        ok(&d.berth(&["launch", alias, &c]));
        assert_eq!(sh(&c, "cat /root/f").trim(), content);
        assert_eq!(sh(&c, "stat -c %u:%g:%a /root/f").trim(), "1000:1001:640");
        ok(&d.berth(&["delete", "-f", &c]));
    }
    // Bad requests name the field and make nothing.
    let images_before = d.berth(&["image", "list", "-f", "csv"]);
    let e = fails(&d.berth(&["publish", "nosuch"]));
    assert!(e.contains("not found"), "{e}");
    let bad = json!({"source": {"type": "snapshot", "name": "src"}});
    let e = d
        .client()
        .query(Method::POST, "/1.0/images", Some(&bad))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("source.name"), "{e}");
    assert_eq!(
        d.berth(&["image", "list", "-f", "csv"]).stdout,
        images_before.stdout
    );
    ok(&d.berth(&["delete", "-f", "src"]));
}
