//! Files in containers: the files API, `berth file`, the real `lxc file` (files API) and
//! `incus file` (SFTP) clients; trees round-trip with contents, modes and owners; symlinks
//! planted inside never lead outside, on running and stopped containers.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_client::Method;
use berth_e2e::{Daemon, fails, ok, sha256_file};

async fn with_containers(d: &Daemon) {
    berth_e2e::with_busybox(d).await;
    ok(&d.berth(&["launch", "bb", "run"]));
    ok(&d.berth(&["init", "bb", "idle"]));
}

/// Runs one client with arguments.
type Tool<'a> = dyn Fn(&[&str]) -> std::process::Output + 'a;

/// The real incus client against this daemon.
fn incus(d: &Daemon, args: &[&str]) -> std::process::Output {
    Command::new("incus")
        .args(args)
        .env("INCUS_DIR", d.dir())
        .env("INCUS_CONF", d.dir().join("incus-client"))
        .output()
        .expect("run incus")
}

/// A local tree: nested directories, files of several modes, a relative symlink.
fn local_tree(root: &Path) -> PathBuf {
    let t = root.join("tree");
    std::fs::create_dir_all(t.join("sub/deeper")).unwrap();
    std::fs::write(t.join("plain.txt"), "plain\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(t.join("sub/big.bin"), &big).unwrap();
    std::fs::write(t.join("sub/deeper/secret"), "s\n").unwrap();
    std::fs::set_permissions(
        t.join("sub/deeper/secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(t.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(t.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("plain.txt", t.join("link")).unwrap();
    t
}

/// (relative path, kind, mode, sha256 or link target) of every entry under `root`.
fn describe(root: &Path) -> Vec<(String, String, u32, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let mode = md.permissions().mode() & 0o7777;
            if md.file_type().is_symlink() {
                out.push((rel, "link".into(), 0, String::new()));
            } else if md.is_dir() {
                out.push((rel, "dir".into(), mode, String::new()));
                stack.push(p);
            } else {
                out.push((rel, "file".into(), mode, sha256_file(&p)));
            }
        }
    }
    out.sort();
    out
}

fn stat_in(d: &Daemon, name: &str, path: &str) -> String {
    ok(&d.berth(&["exec", name, "--", "stat", "-c", "%u %g %a", path]))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn trees_round_trip_through_berth_lxc_and_incus() {
    let d = Daemon::start();
    with_containers(&d).await;
    let work = tempfile::tempdir().unwrap();
    let tree = local_tree(work.path());
    let want = describe(&tree);
    for (i, name) in ["run", "idle"].iter().enumerate() {
        // berth, lxc (files API) and incus (SFTP) each push the tree and pull it back.
        let clients: [(&str, Box<Tool<'_>>); 3] = [
            ("berth", Box::new(|a: &[&str]| d.berth(a))),
            ("lxc", Box::new(|a: &[&str]| d.lxc(a))),
            ("incus", Box::new(|a: &[&str]| incus(&d, a))),
        ];
        for (tool, run) in &clients {
            let dir = format!("{name}/root/{tool}{i}/");
            ok(&run(&[
                "file",
                "push",
                "-r",
                "-p",
                tree.to_str().unwrap(),
                &dir,
            ]));
            let back = work.path().join(format!("back-{tool}-{name}"));
            std::fs::create_dir(&back).unwrap();
            ok(&run(&[
                "file",
                "pull",
                "-r",
                &format!("{dir}tree"),
                back.to_str().unwrap(),
            ]));
            let got = describe(&back.join("tree"));
            // Pulled symlinks may come back absolute (LXD's files API resolves them).
            assert_eq!(got, want, "{tool} on {name}");
        }
    }
    // Owners and modes given on the command line land inside, in the container's ids.
    let one = tree.join("plain.txt");
    ok(&d.berth(&[
        "file",
        "push",
        "--uid",
        "1000",
        "--gid",
        "1001",
        "--mode",
        "0640",
        one.to_str().unwrap(),
        "run/root/owned",
    ]));
    assert_eq!(stat_in(&d, "run", "/root/owned"), "1000 1001 640");
    ok(&d.lxc(&[
        "file",
        "push",
        "--uid",
        "33",
        "--gid",
        "34",
        "--mode",
        "0604",
        one.to_str().unwrap(),
        "run/root/owned-lxc",
    ]));
    assert_eq!(stat_in(&d, "run", "/root/owned-lxc"), "33 34 604");
    // The owner of a file in the secret directory survives a round trip through incus.
    assert_eq!(
        stat_in(&d, "run", "/root/incus0/tree/sub/deeper/secret")
            .split(' ')
            .nth(2),
        Some("600")
    );

    // delete, through each client.
    ok(&d.berth(&["file", "delete", "-f", "run/root/berth0"]));
    ok(&d.lxc(&["file", "delete", "run/root/owned-lxc"]));
    ok(&incus(&d, &["file", "delete", "run/root/owned"]));
    let left = ok(&d.berth(&["exec", "run", "--", "ls", "/root"]));
    assert_eq!(
        left.split_whitespace().collect::<Vec<_>>(),
        ["incus0", "lxc0"]
    );
    let err = fails(&d.berth(&["file", "pull", "run/root/nope", "-"]));
    assert!(err.contains("not found"), "{err}");
}

#[tokio::test]
async fn planted_symlinks_never_reach_the_host() {
    let d = Daemon::start();
    with_containers(&d).await;
    let c = d.client();
    let host_passwd = std::fs::read("/etc/passwd").unwrap();
    for name in ["run", "idle"] {
        // Planted by the container: /tmp/e -> /etc and /tmp/r -> ../../../../etc.
        let meta = berth_client::FileMeta::default();
        c.make_symlink(name, "/tmp/e", "/etc", &meta).await.unwrap();
        c.make_symlink(name, "/tmp/r", "../../../../etc", &meta)
            .await
            .unwrap();
        let probe = format!("berth-probe-{}", std::process::id());
        for via in ["e", "r"] {
            let path = format!("/tmp/{via}/{probe}-{via}");
            c.write_file(name, &path, format!("{via}\n").into(), &meta)
                .await
                .unwrap();
            assert!(
                !Path::new(&format!("/etc/{probe}-{via}")).exists(),
                "a push through /tmp/{via} reached the host"
            );
            // It is in the container's /etc.
            let inside = d.dir().join(format!(
                "storage-pools/default/containers/{name}/rootfs/etc/{probe}-{via}"
            ));
            assert_eq!(
                std::fs::read_to_string(&inside).unwrap(),
                format!("{via}\n")
            );
            // Pulls through the links read the container's files.
            let work = tempfile::tempdir().unwrap();
            let out = work.path().join("passwd");
            ok(&d.berth(&[
                "file",
                "pull",
                &format!("{name}/tmp/{via}/passwd"),
                out.to_str().unwrap(),
            ]));
            assert_ne!(std::fs::read(&out).unwrap(), host_passwd);
            let incus_out = work.path().join("passwd-incus");
            ok(&incus(
                &d,
                &[
                    "file",
                    "pull",
                    &format!("{name}/tmp/{via}/passwd"),
                    incus_out.to_str().unwrap(),
                ],
            ));
            assert_eq!(
                std::fs::read(&incus_out).unwrap(),
                std::fs::read(&out).unwrap()
            );
        }
        // Through SFTP too: a push lands in the container's /etc.
        let work = tempfile::tempdir().unwrap();
        let f = work.path().join("via-sftp");
        std::fs::write(&f, "sftp\n").unwrap();
        ok(&incus(
            &d,
            &[
                "file",
                "push",
                f.to_str().unwrap(),
                &format!("{name}/tmp/r/via-sftp"),
            ],
        ));
        assert!(!Path::new("/etc/via-sftp").exists());
        // Deleting through a link removes only what is inside.
        c.delete_file(name, &format!("/tmp/e/{probe}-e"), false)
            .await
            .unwrap();
        // The link itself is never written through.
        let err = c
            .write_file(name, "/tmp/e", "x".into(), &meta)
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(400), "{err}");
    }
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), host_passwd);

    // The API itself: headers both ways, directory listings, HEAD, errors.
    let r = c
        .query(Method::GET, "/1.0/instances/run/files?path=/etc", None)
        .await
        .unwrap();
    let names: Vec<String> = serde_json::from_value(r.body.metadata).unwrap();
    assert!(names.contains(&"passwd".to_owned()), "{names:?}");
    let e = c
        .query(Method::GET, "/1.0/instances/run/files", None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    let e = c
        .query(Method::DELETE, "/1.0/instances/run/files?path=/", None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    let e = c
        .query(Method::GET, "/1.0/instances/nope/files?path=/etc", None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
}

#[tokio::test]
async fn console_takes_input_and_keeps_its_log() {
    let d = Daemon::start();
    with_containers(&d).await;
    let c = d.client();
    // The boot output is in the log (busybox's shell greets on the console).
    let mut log = Vec::new();
    for _ in 0..100 {
        log = c
            .get_file("/1.0/instances/run/console")
            .await
            .unwrap()
            .to_vec();
        if String::from_utf8_lossy(&log).contains("BusyBox") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(String::from_utf8_lossy(&log).contains("BusyBox"), "{log:?}");

    // Attach as the clients do, type a command, detach (close control): the operation
    // ends and the log keeps the session.
    berth_e2e::console(&c, "run", "echo console-$((6*7))", "console-42").await;
    let log = ok(&d.berth(&["console", "run", "--show-log"]));
    assert!(log.contains("console-42"), "{log}");
    let log = ok(&d.lxc(&["console", "run", "--show-log"]));
    assert!(log.contains("console-42"), "{log}");
    // Clearing empties it; a stopped instance cannot be attached.
    c.query(Method::DELETE, "/1.0/instances/run/console", None)
        .await
        .unwrap();
    let log = c.get_file("/1.0/instances/run/console").await.unwrap();
    assert!(!String::from_utf8_lossy(&log).contains("console-42"));
    let e = c
        .query(
            Method::POST,
            "/1.0/instances/idle/console",
            Some(&serde_json::json!({"width": 80, "height": 24})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
}
