//! Backups: export → delete → import gives back the same files (owners, modes, links,
//! extended attributes), configuration and snapshots, through `berth` (streamed, on dir
//! and btrfs) and through the real `lxc`; the backups API; malformed tarballs refused
//! with one line, nothing left behind.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use berth_api::backup::InstanceBackup;
use berth_e2e::{Daemon, fails, ok};

fn sh(d: &Daemon, name: &str, script: &str) -> String {
    ok(&d.berth(&["exec", name, "--", "sh", "-c", script]))
}

/// What a container's files are: each path with its type, owner, mode, size and content
/// checksum, and the link count of the hard-linked file.
fn fingerprint(d: &Daemon, name: &str) -> String {
    sh(
        d,
        name,
        "cd /root && find . | sort | while read f; do stat -c '%n %F %u:%g %a %s %h' \"$f\"; \
         [ -f \"$f\" ] && md5sum < \"$f\"; done",
    )
}

fn prepare(d: &Daemon, name: &str, pool: &str) {
    ok(&d.berth(&["launch", "bb", name, "-s", pool, "-c", "user.tag=kept"]));
    sh(
        d,
        name,
        "cd /root && echo one > f && mkdir -p d/e && echo deep > d/e/g && chown 1000:1001 d/e/g \
         && chmod 4750 d/e/g && ln f hard && ln -s f soft && mkfifo pipe \
         && touch \"$(printf 'latin\\351')\"",
    );
    ok(&d.berth(&["snapshot", "create", name, "s1"]));
    sh(
        d,
        name,
        "cd /root && echo two > f && rm -r d && echo new > n",
    );
    ok(&d.berth(&["snapshot", "create", name, "s2"]));
    sh(d, name, "cd /root && echo three > f");
}

async fn round_trip(d: &Daemon, pool: &str, compression: &str, optimized: bool) {
    let name = format!("rt-{pool}{}", if optimized { "-opt" } else { "" });
    prepare(d, &name, pool);
    let before = fingerprint(d, &name);
    let tar = d.dir().join(format!("{name}.tar"));
    let path = tar.to_str().unwrap();
    let mut args = vec!["export", &name, path, "--compression", compression];
    if optimized {
        args.push("--optimized-storage");
    }
    ok(&d.berth(&args));
    assert!(std::fs::metadata(&tar).unwrap().len() > 100_000);
    if optimized {
        // btrfs send streams, as Incus lays them out.
        let list = std::process::Command::new("tar")
            .args(["-tf", path])
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&list.stdout).into_owned();
        assert_eq!(
            list,
            "backup/index.yaml\nbackup/optimized_header.yaml\nbackup/snapshots/s1.bin\n\
             backup/snapshots/s2.bin\nbackup/container.bin\n"
        );
        // Such streams go only into a pool of their driver; nothing is left of the try.
        let e = fails(&d.berth(&["import", path, "elsewhere", "--storage", "default"]));
        assert!(e.contains("import it into a \"btrfs\" pool"), "{e}");
        let all: Vec<String> = d.client().get("/1.0/instances").await.unwrap();
        assert!(!all.iter().any(|i| i.ends_with("/elsewhere")), "{all:?}");
    }
    // Nothing was kept on the server.
    let kept: Vec<String> = d
        .client()
        .get(&format!("/1.0/instances/{name}/backups"))
        .await
        .unwrap();
    assert!(kept.is_empty(), "{kept:?}");
    ok(&d.berth(&["delete", "-f", &name]));
    ok(&d.berth(&["import", tar.to_str().unwrap()]));
    let info: serde_json::Value = d
        .client()
        .get(&format!("/1.0/instances/{name}"))
        .await
        .unwrap();
    assert_eq!(info["config"]["user.tag"], "kept", "{info}");
    assert_eq!(info["expanded_devices"]["root"]["pool"], pool, "{info}");
    assert!(info["config"].get("volatile.incoming").is_none(), "{info}");
    let snaps = ok(&d.berth(&["snapshot", "list", &name, "-f", "csv"]));
    assert!(snaps.contains("s1") && snaps.contains("s2"), "{snaps}");
    ok(&d.berth(&["start", &name]));
    assert_eq!(fingerprint(d, &name), before);
    ok(&d.berth(&["snapshot", "restore", &name, "s1"]));
    assert_eq!(
        sh(
            d,
            &name,
            "cd /root && cat f d/e/g && stat -c '%u:%g %a %h' d/e/g hard && ls"
        ),
        "one\ndeep\n1000:1001 4750 1\n0:0 644 2\nd\nf\nhard\nlatin?\npipe\nsoft\n"
    );
    ok(&d.berth(&["delete", "-f", &name]));
}

/// Optimized backups whose streams are not streams, or build on a subvolume the backup
/// does not hold (receive would take any of the filesystem's with that UUID), are refused
/// with one line and leave nothing on the pool.
async fn hostile_streams_are_refused(d: &Daemon) {
    // The delta of the round trip's instance on its last snapshot, alone.
    let mut real = tar::Archive::new(std::fs::File::open(d.dir().join("rt-bt-opt.tar")).unwrap());
    let mut delta = Vec::new();
    for e in real.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("backup/container.bin") {
            std::io::Read::read_to_end(&mut e, &mut delta).unwrap();
        }
    }
    assert!(delta.len() > 100);
    let index = String::from_utf8_lossy(INDEX).replace(
        "backend: dir\npool: default",
        "backend: btrfs\npool: bt\noptimized: true",
    );
    for (why, stream) in [
        ("not a btrfs send stream", b"garbage, not a stream".to_vec()),
        ("builds on a subvolume that is not in the backup", delta),
    ] {
        let body = tarball(&[
            (
                "backup/index.yaml",
                tar::EntryType::Regular,
                index.as_bytes(),
            ),
            ("backup/container.bin", tar::EntryType::Regular, &stream),
        ]);
        let path = d.dir().join("evil-opt.tar.gz");
        std::fs::write(&path, &body).unwrap();
        let e = fails(&d.berth(&["import", path.to_str().unwrap()]));
        assert!(
            e.contains("Invalid backup") && e.contains(why),
            "{why}: {e}"
        );
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(
            !e.trim().chars().any(|c| c.is_control() || c == '\u{fffd}'),
            "{why}: {e:?}"
        );
        let list: Vec<String> = d.client().get("/1.0/instances").await.unwrap();
        assert!(
            !list.iter().any(|i| i.ends_with("/evil")),
            "{why}: {list:?}"
        );
        let left: Vec<String> = std::fs::read_dir(d.dir().join("storage-pools/bt/containers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".receive") || n == "evil")
            .collect();
        assert!(left.is_empty(), "{why}: {left:?}");
    }
}

#[tokio::test]
async fn export_delete_import_gives_everything_back_on_dir_and_btrfs() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    round_trip(&d, "default", "gzip", false).await;
    ok(&d.berth(&["storage", "create", "bt", "btrfs", "size=1GiB"]));
    round_trip(&d, "bt", "none", false).await;
    round_trip(&d, "bt", "none", true).await;
    hostile_streams_are_refused(&d).await;
    // Asked of a dir pool, a backup is made of trees (as LXD makes it there).
    ok(&d.berth(&["launch", "bb", "ondir"]));
    let tar = d.dir().join("ondir.tar");
    let path = tar.to_str().unwrap();
    ok(&d.berth(&[
        "export",
        "ondir",
        path,
        "--optimized-storage",
        "--compression",
        "none",
    ]));
    let list = std::process::Command::new("tar")
        .args(["-tf", path])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("backup/container/rootfs/"));
    ok(&d.berth(&["delete", "-f", "ondir"]));

    // Streamed through a pipe, into another name and pool.
    ok(&d.berth(&["launch", "bb", "src"]));
    sh(&d, "src", "echo piped > /root/p");
    let script = format!(
        "{b} export src - --compression zstd | {b} import - copied --storage bt",
        b = berth_e2e::bin("berth").display()
    );
    let piped = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("BERTH_DIR", d.dir())
        .env("BERTH_CONF", d.dir().join("berth-client"))
        .env_remove("BERTH_SOCKET")
        .env_remove("BERTH_PROJECT")
        .output()
        .unwrap();
    assert!(piped.status.success(), "{piped:?}");
    ok(&d.berth(&["start", "copied"]));
    assert_eq!(sh(&d, "copied", "cat /root/p"), "piped\n");
    let c: serde_json::Value = d.client().get("/1.0/instances/copied").await.unwrap();
    assert_eq!(c["expanded_devices"]["root"]["pool"], "bt");
    ok(&d.berth(&["delete", "-f", "src", "copied"]));
    ok(&d.berth(&["storage", "delete", "bt"]));
}

#[tokio::test]
async fn the_backups_api_and_the_lxc_client() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    ok(&d.berth(&["launch", "bb", "c1"]));
    sh(&d, "c1", "echo via-lxc > /root/f");
    ok(&d.berth(&["snapshot", "create", "c1", "s1"]));
    // Backups kept on the server: made, listed, renamed, fetched, deleted.
    let body = serde_json::json!({"name": "b1", "compression_algorithm": "none"});
    berth_e2e::post_and_wait(&c, "/1.0/instances/c1/backups", &body).await;
    let all: Vec<InstanceBackup> = c
        .get("/1.0/instances/c1/backups?recursion=1")
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].name, "b1");
    let e = c
        .query(
            berth_client::Method::POST,
            "/1.0/instances/c1/backups",
            Some(&body),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(409));
    let r = c
        .query(
            berth_client::Method::POST,
            "/1.0/instances/c1/backups/b1",
            Some(&serde_json::json!({"name": "b2"})),
        )
        .await
        .unwrap();
    c.wait_success(r.body.operation_id().unwrap())
        .await
        .unwrap();
    let file = c
        .get_file("/1.0/instances/c1/backups/b2/export")
        .await
        .unwrap();
    assert!(file.len() > 100_000);
    assert_eq!(&file[257..262], b"ustar", "an uncompressed tarball");
    let r = c
        .query(
            berth_client::Method::DELETE,
            "/1.0/instances/c1/backups/b2",
            None,
        )
        .await
        .unwrap();
    c.wait_success(r.body.operation_id().unwrap())
        .await
        .unwrap();
    assert!(
        std::fs::read_dir(d.dir().join("backups/instances/c1"))
            .unwrap()
            .next()
            .is_none()
    );

    // The real lxc: export, delete, import.
    let tar = d.dir().join("lxc.tar.gz");
    ok(&d.lxc(&["export", "c1", tar.to_str().unwrap()]));
    ok(&d.berth(&["delete", "-f", "c1"]));
    ok(&d.lxc(&["import", tar.to_str().unwrap()]));
    ok(&d.berth(&["start", "c1"]));
    assert_eq!(sh(&d, "c1", "cat /root/f"), "via-lxc\n");
    let snaps = ok(&d.lxc(&["info", "c1"]));
    assert!(snaps.contains("s1"), "{snaps}");
    ok(&d.berth(&["delete", "-f", "c1"]));
}

/// A gzip tarball from (path, kind, data or link target, size claimed).
fn tarball(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
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
    let raw = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    gz.finish().unwrap()
}

const INDEX: &[u8] = b"name: evil\nbackend: dir\npool: default\ntype: container\nconfig:\n  container:\n    name: evil\n    architecture: x86_64\n    config: {}\n    devices: {}\n    profiles: [default]\n";

#[tokio::test]
async fn malformed_backups_are_refused_and_leave_nothing() {
    let d = Daemon::start();
    let c = d.client();
    use tar::EntryType::{Block, Directory, Regular, Symlink};
    let good_start = [
        ("backup/index.yaml", Regular, INDEX),
        ("backup/container/", Directory, b"" as &[u8]),
        ("backup/container/rootfs/", Directory, b""),
    ];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", {
            let t = tarball(&good_start);
            t[..t.len() / 2].to_vec()
        }),
        ("\"..\"", {
            let mut e = good_start.to_vec();
            e.push(("backup/container/rootfs/../../../escape", Regular, b"x"));
            tarball(&e)
        }),
        ("absolute", {
            let mut e = good_start.to_vec();
            e.push(("/etc/evil", Regular, b"x"));
            tarball(&e)
        }),
        ("symlink", {
            let mut e = good_start.to_vec();
            e.push(("backup/container/rootfs/l", Symlink, b"/etc"));
            e.push(("backup/container/rootfs/l/evil", Regular, b"x"));
            tarball(&e)
        }),
        ("device node", {
            let mut e = good_start.to_vec();
            e.push(("backup/container/rootfs/sda", Block, b""));
            tarball(&e)
        }),
        (
            "index.yaml",
            tarball(&[("backup/container/", Directory, b"")]),
        ),
        ("snapshot", {
            let mut e = good_start.to_vec();
            e.push(("backup/snapshots/ghost/", Directory, b""));
            tarball(&e)
        }),
        // Said as one line of text, whatever bytes the damage holds.
        (
            "truncated or corrupt",
            (0..1024u32).map(|i| (i * 37 + 11) as u8).collect(),
        ),
        ("index.yaml does not read", {
            let mut e = good_start.to_vec();
            e[0].2 = b"name: [unclosed\n";
            tarball(&e)
        }),
        // Streams of a driver that has none.
        ("which makes none", {
            let index = [INDEX, b"optimized: true\n"].concat();
            let mut e = good_start.to_vec();
            e[0].2 = &index;
            tarball(&e)
        }),
        // Refused after the index is read: the instance it began to record goes too.
        ("Invalid snapshot name", {
            let index = [INDEX, b"snapshots:\n- bad name\n"].concat();
            let mut e = good_start.to_vec();
            e[0].2 = &index;
            tarball(&e)
        }),
        ("at most 1 MiB", {
            let mut e = good_start.to_vec();
            e.push((
                "backup/container/metadata.yaml",
                Regular,
                &[b'x'; (1 << 20) + 1],
            ));
            tarball(&e)
        }),
        // What berthd reads as root at a tree's top must be what it says.
        ("must be a directory", {
            let mut e = vec![good_start[0], good_start[1]];
            e.push(("backup/container/rootfs", Symlink, b"/"));
            tarball(&e)
        }),
        ("must be a regular file", {
            let mut e = good_start.to_vec();
            e.push(("backup/container/metadata.yaml", tar::EntryType::Fifo, b""));
            tarball(&e)
        }),
        ("must be a regular file", {
            let mut e = good_start.to_vec();
            e.push(("backup/container/templates/", Directory, b""));
            e.push((
                "backup/container/templates/hostname.tpl",
                Symlink,
                b"/etc/shadow",
            ));
            tarball(&e)
        }),
    ];
    for (why, body) in cases {
        let path = d.dir().join("evil.tar.gz");
        std::fs::write(&path, &body).unwrap();
        let out = d.berth(&["import", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{why}: accepted");
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            e.contains("Invalid backup") && e.contains(why),
            "{why}: {e}"
        );
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(
            !e.trim().chars().any(|c| c.is_control() || c == '\u{fffd}'),
            "{why}: {e:?}"
        );
        assert!(
            !std::path::Path::new("/escape").exists()
                && !std::path::Path::new("/etc/evil").exists()
        );
        let list: Vec<String> = c.get("/1.0/instances").await.unwrap();
        assert!(list.is_empty(), "{why}: {list:?}");
        assert!(
            !d.dir()
                .join("storage-pools/default/containers/evil")
                .exists(),
            "{why}"
        );
    }
    // A 2 GiB metadata member is refused from its header, without reading it.
    let mut raw = tar::Builder::new(Vec::new());
    for (p, k, data) in &good_start {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*k);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        raw.append_data(&mut h, p, *data).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(2 << 30);
    h.set_path("backup/container/metadata.yaml").unwrap();
    h.set_cksum();
    let mut bytes = raw.into_inner().unwrap();
    // Without the end-of-archive blocks the builder wrote.
    bytes.truncate(bytes.len() - 1024);
    bytes.extend_from_slice(h.as_bytes());
    bytes.extend_from_slice(&[b'x'; 4096]);
    let path = d.dir().join("big.tar");
    std::fs::write(&path, &bytes).unwrap();
    let e = fails(&d.berth(&["import", path.to_str().unwrap()]));
    assert!(e.contains("at most 1 MiB"), "{e}");
    // A member's name of megabytes (a GNU long name) is refused before it is held.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(INDEX.len() as u64);
    b.append_data(&mut h, "backup/index.yaml", INDEX).unwrap();
    h.set_size(0);
    let long = format!("backup/container/rootfs/{}", "a/".repeat(1 << 20));
    b.append_data(&mut h, long, &[][..]).unwrap();
    let path = d.dir().join("long.tar");
    std::fs::write(&path, b.into_inner().unwrap()).unwrap();
    let e = fails(&d.berth(&["import", path.to_str().unwrap()]));
    assert!(e.contains("header"), "{e}");
    // A name planted beside the rootfs (where berthd writes backup.yaml) is left out: the
    // file it points at is untouched.
    let victim = d.dir().join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    let mut e = good_start.to_vec();
    let link = victim.to_str().unwrap().to_owned();
    e.push((
        "backup/container/.backup.yaml.tmp",
        Symlink,
        link.as_bytes(),
    ));
    e.push(("backup/container/backup.yaml", Symlink, link.as_bytes()));
    let planted = d.dir().join("planted.tar.gz");
    std::fs::write(&planted, tarball(&e)).unwrap();
    ok(&d.berth(&["import", planted.to_str().unwrap(), "planted"]));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    let vol = d.dir().join("storage-pools/default/containers/planted");
    assert!(!vol.join(".backup.yaml.tmp").exists());
    assert!(
        !std::fs::symlink_metadata(vol.join("backup.yaml"))
            .unwrap()
            .is_symlink()
    );
    ok(&d.berth(&["delete", "planted"]));
    // A pool named by the request must exist.
    let ok_tar = d.dir().join("ok.tar.gz");
    std::fs::write(&ok_tar, tarball(&good_start)).unwrap();
    let e = fails(&d.berth(&["import", ok_tar.to_str().unwrap(), "--storage", "nowhere"]));
    assert!(e.contains("\"nowhere\""), "{e}");
    // berthd is up, and the same name imports once the backup is sound.
    ok(&d.berth(&["import", ok_tar.to_str().unwrap()]));
    let list: Vec<String> = c.get("/1.0/instances").await.unwrap();
    assert_eq!(list, ["/1.0/instances/evil"]);
    ok(&d.berth(&["delete", "evil"]));
}
