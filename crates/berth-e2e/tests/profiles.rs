//! Profiles: CRUD through the API, berth and the real lxc client; expansion order; changes
//! reaching running containers; refused changes changing nothing; editing as YAML.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use berth_client::Method;
use berth_e2e::{Daemon, fails, ok};
use serde_json::{Value, json};

/// pids.max of a container, on cgroup v1 or v2.
fn pids_max(d: &Daemon, name: &str) -> String {
    let parent = d.cgroup_parent();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let path = if v2 {
        format!("/sys/fs/cgroup/{parent}/{name}/pids.max")
    } else {
        format!("/sys/fs/cgroup/pids/{parent}/{name}/pids.max")
    };
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

/// Runs a shell command line in a terminal (`script`), with the real lxc client pointed
/// at this daemon and `EDITOR` set.
fn in_terminal(d: &Daemon, line: &str, editor: &str) -> std::process::Output {
    std::process::Command::new("script")
        .args(["-qec", line, "/dev/null"])
        .env("LXD_DIR", d.dir())
        .env("LXD_CONF", d.dir().join("lxc-client"))
        .env("EDITOR", editor)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// An `EDITOR` that rewrites `from` into `to` in the file it is given.
fn editor(dir: &std::path::Path, from: &str, to: &str) -> String {
    let script = dir.join(format!("edit-{}", to.replace(['/', ' ', ':'], "_")));
    std::fs::write(
        &script,
        format!("#!/bin/sh\nsed -i 's/{from}/{to}/' \"$1\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script.to_string_lossy().into_owned()
}

#[tokio::test]
async fn profiles_expand_in_order_and_changes_reach_running_instances() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    ok(&d.berth(&["profile", "create", "lim"]));
    ok(&d.berth(&["profile", "set", "lim", "limits.processes=30"]));
    ok(&d.lxc(&["profile", "create", "a"]));
    ok(&d.lxc(&["profile", "set", "a", "user.k=a"]));
    ok(&d.berth(&["profile", "copy", "a", "b"]));
    ok(&d.berth(&["profile", "set", "b", "user.k", "b"]));
    ok(&d.berth(&[
        "launch", "bb", "c1", "-p", "default", "-p", "lim", "-p", "a", "-p", "b",
    ]));
    assert_eq!(pids_max(&d, "c1"), "30");
    // Later profiles win, the instance's own values win over all.
    let inst: Value = c.get("/1.0/instances/c1").await.unwrap();
    assert_eq!(inst["expanded_config"]["user.k"], "b");
    ok(&d.berth(&["config", "set", "c1", "user.k=own"]));
    let inst: Value = c.get("/1.0/instances/c1").await.unwrap();
    assert_eq!(inst["expanded_config"]["user.k"], "own");

    // A profile change reaches the running instance at once.
    ok(&d.berth(&["profile", "set", "lim", "limits.processes=40"]));
    assert_eq!(pids_max(&d, "c1"), "40");
    // A bad value is refused, naming the key, and changes nothing.
    let err = fails(&d.berth(&["profile", "set", "lim", "limits.memory=lots"]));
    assert!(err.contains("limits.memory"), "{err}");
    assert_eq!(
        ok(&d.berth(&["profile", "get", "lim", "limits.memory"])),
        "\n"
    );
    // A change that would leave an instance without its root disk is refused, naming it.
    let e = c
        .query(
            Method::PUT,
            "/1.0/profiles/default",
            Some(&json!({"config": {}, "devices": {}})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().contains("c1"), "{e}");

    // used_by; in-use profiles stay; renames follow into instances.
    let lim: Value = c.get("/1.0/profiles/lim").await.unwrap();
    assert_eq!(lim["used_by"], json!(["/1.0/instances/c1"]));
    let err = fails(&d.berth(&["profile", "delete", "lim"]));
    assert!(err.contains("in use"), "{err}");
    ok(&d.lxc(&["profile", "rename", "lim", "limits"]));
    let inst: Value = c.get("/1.0/instances/c1").await.unwrap();
    assert_eq!(inst["profiles"], json!(["default", "limits", "a", "b"]));
    ok(&d.berth(&["profile", "remove", "c1", "limits"]));
    ok(&d.berth(&["profile", "delete", "limits"]));
    let list = ok(&d.berth(&["profile", "list", "-f", "csv"]));
    assert_eq!(
        list.lines()
            .map(|l| l.split(',').next().unwrap())
            .collect::<Vec<_>>(),
        ["a", "b", "default"]
    );
    // default stays.
    for (method, body) in [
        (Method::DELETE, None),
        (Method::POST, Some(json!({"name": "x"}))),
    ] {
        let e = c
            .query(method, "/1.0/profiles/default", body.as_ref())
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(403));
    }
    // A stale ETag is refused with 412, for profiles and instances.
    for path in ["/1.0/profiles/a", "/1.0/instances/c1"] {
        let r = c
            .raw(
                Method::PATCH,
                path,
                Some(json!({"description": "x"}).to_string().into()),
                Some("stale"),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 412, "{path}");
    }
    ok(&d.berth(&["delete", "-f", "c1"]));
}

#[tokio::test]
async fn real_lxc_edits_profiles_and_instances_in_an_editor() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    ok(&d.berth(&["init", "bb", "e1"]));
    ok(&d.lxc(&["profile", "create", "web"]));
    ok(&d.lxc(&["profile", "set", "web", "user.role=old"]));
    let work = tempfile::tempdir().unwrap();
    // lxc profile edit and lxc config edit, with EDITOR set to a script (in a terminal:
    // without one, lxc reads the YAML from standard input instead).
    ok(&in_terminal(
        &d,
        "lxc profile edit web",
        &editor(work.path(), "user.role: old", "user.role: new"),
    ));
    let p: Value = c.get("/1.0/profiles/web").await.unwrap();
    assert_eq!(p["config"]["user.role"], "new");
    ok(&in_terminal(
        &d,
        "lxc config edit e1",
        &editor(work.path(), "ephemeral: false", "ephemeral: true"),
    ));
    let i: Value = c.get("/1.0/instances/e1").await.unwrap();
    assert_eq!(i["ephemeral"], true);
    // berth profile edit from standard input, as lxc takes it too.
    assert!(
        d.berth_with_input(
            &["profile", "edit", "web"],
            b"description: piped\nconfig:\n  user.role: piped\ndevices: {}\n"
        )
        .status
        .success()
    );
    let p: Value = c.get("/1.0/profiles/web").await.unwrap();
    assert_eq!(p["config"]["user.role"], "piped");
    assert_eq!(p["description"], "piped");
    // berth config edit with a refused value fails and changes nothing.
    let out = d.berth_with_input(
        &["config", "edit", "e1"],
        b"config:\n  limits.memory: lots\nprofiles:\n- default\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.memory"));
    let i: Value = c.get("/1.0/instances/e1").await.unwrap();
    assert_eq!(i["ephemeral"], true);
    assert!(i["config"].get("limits.memory").is_none());
    // berth in a terminal: a refused edit re-opens the editor with the error on top; the
    // fixed text is then saved.
    let script = work.path().join("fix-on-error");
    let seen = work.path().join("seen");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh
if grep -q '^# Error' \"$1\"; then
  cp \"$1\" {seen}
  sed -i 's/user.role: piped/user.role: fixed/; s/limits.memory: lots/limits.memory: 64MiB/' \"$1\"
else
  sed -i 's/user.role: piped/user.role: piped\\n  limits.memory: lots/' \"$1\"
fi
",
            seen = seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let berth = berth_e2e::bin("berth");
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("{} profile edit web", berth.display()),
            "/dev/null",
        ])
        .env("BERTH_DIR", d.dir())
        .env("BERTH_CONF", d.dir().join("berth-client"))
        .env("EDITOR", &script)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let shown = std::fs::read_to_string(&seen).unwrap();
    assert!(
        shown.starts_with("# Error") && shown.contains("limits.memory"),
        "{shown}"
    );
    let p: Value = c.get("/1.0/profiles/web").await.unwrap();
    assert_eq!(p["config"]["user.role"], "fixed");
    assert_eq!(p["config"]["limits.memory"], "64MiB");
    ok(&d.berth(&["delete", "e1"]));
}

/// A valid and an invalid value for every key berth serves in its key table (families by
/// one member; `None`: the key takes anything).
const SAMPLES: &[(&str, &str, &str, Option<&str>)] = &[
    ("boot.autostart", "boot.autostart", "true", Some("maybe")),
    (
        "migration.stateful",
        "migration.stateful",
        "true",
        Some("maybe"),
    ),
    ("limits.cpu", "limits.cpu", "1", Some("0-99")),
    (
        "limits.cpu.allowance",
        "limits.cpu.allowance",
        "50%",
        Some("lots"),
    ),
    (
        "limits.cpu.priority",
        "limits.cpu.priority",
        "5",
        Some("11"),
    ),
    ("limits.memory", "limits.memory", "256MiB", Some("lots")),
    (
        "limits.memory.enforce",
        "limits.memory.enforce",
        "soft",
        Some("medium"),
    ),
    (
        "limits.memory.swap",
        "limits.memory.swap",
        "false",
        Some("perhaps"),
    ),
    ("limits.processes", "limits.processes", "100", Some("-1")),
    ("limits.pty", "limits.pty", "64", Some("0")),
    ("limits.conntrack", "limits.conntrack", "512", Some("0")),
    (
        "limits.kernel.*",
        "limits.kernel.nofile",
        "1024:2048",
        Some("x"),
    ),
    (
        "security.privileged",
        "security.privileged",
        "true",
        Some("yes"),
    ),
    ("security.nesting", "security.nesting", "true", Some("1")),
    (
        "security.idmap.isolated",
        "security.idmap.isolated",
        "true",
        Some("yes"),
    ),
    (
        "security.idmap.size",
        "security.idmap.size",
        "100000",
        Some("0"),
    ),
    (
        "security.idmap.base",
        "security.idmap.base",
        "2000000",
        Some("-5"),
    ),
    (
        "raw.lxc",
        "raw.lxc",
        "lxc.environment = A=1",
        Some("lxc.idmap = u 0 0 1"),
    ),
    (
        "snapshots.schedule",
        "snapshots.schedule",
        "30 2 * * *",
        Some("@sometimes"),
    ),
    (
        "snapshots.schedule.stopped",
        "snapshots.schedule.stopped",
        "true",
        Some("maybe"),
    ),
    (
        "snapshots.pattern",
        "snapshots.pattern",
        "auto-%d",
        Some("a/b"),
    ),
    ("snapshots.expiry", "snapshots.expiry", "1d 2H", Some("3x")),
    ("environment.*", "environment.FOO", "bar", Some("a\nb")),
    ("image.*", "image.os", "BusyBox", Some("a\nb")),
    ("user.*", "user.note", "two\nlines", None),
];

#[tokio::test]
async fn every_key_in_the_table_is_checked() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    ok(&d.berth(&["init", "bb", "k1"]));
    let md: Value = c.get("/1.0/metadata/configuration").await.unwrap();
    let mut served: Vec<String> = md["configs"]["instance"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|g| g["keys"].as_array().unwrap().clone())
        .flat_map(|k| k.as_object().unwrap().keys().cloned().collect::<Vec<_>>())
        .filter(|k| k != "volatile.*")
        .collect();
    served.sort();
    let mut sampled: Vec<String> = SAMPLES.iter().map(|s| s.0.to_owned()).collect();
    sampled.sort();
    assert_eq!(
        served, sampled,
        "the table and this test's samples must match"
    );
    for (_, key, good, bad) in SAMPLES {
        for (target, path) in [
            ("instance", "/1.0/instances/k1"),
            ("profile", "/1.0/profiles/default"),
        ] {
            let r = c
                .query(Method::PATCH, path, Some(&json!({"config": {*key: good}})))
                .await
                .unwrap_or_else(|e| panic!("{target} {key}={good:?}: {e}"));
            if let Some(id) = r.body.operation_id() {
                c.wait_success(id).await.unwrap();
            }
            let v: Value = c.get(path).await.unwrap();
            assert_eq!(v["config"][*key], *good, "{target} {key}");
            if let Some(bad) = bad {
                let e = c
                    .query(Method::PATCH, path, Some(&json!({"config": {*key: bad}})))
                    .await
                    .unwrap_err();
                assert_eq!(e.status(), Some(400), "{target} {key}={bad:?}");
                assert!(e.to_string().contains(key), "{target} {key}: {e}");
                let v: Value = c.get(path).await.unwrap();
                assert_eq!(v["config"][*key], *good, "a refused value changes nothing");
            }
            let r = c
                .query(Method::PATCH, path, Some(&json!({"config": {*key: ""}})))
                .await
                .unwrap();
            if let Some(id) = r.body.operation_id() {
                c.wait_success(id).await.unwrap();
            }
        }
    }
    // Unknown keys are refused, naming them; volatile keys cannot be set by users.
    let e = c
        .query(
            Method::PATCH,
            "/1.0/instances/k1",
            Some(&json!({"config": {"bogus.key": "1"}})),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("bogus.key"), "{e}");
    ok(&d.berth(&["delete", "k1"]));
}

#[tokio::test]
async fn admin_init_auto_and_preseed() {
    let d = Daemon::start();
    let c = d.client();
    // --auto on a fresh server keeps what berthd set up and is idempotent.
    ok(&d.berth(&["profile", "set", "default", "user.kept=yes"]));
    ok(&d.berth(&["admin", "init", "--auto"]));
    ok(&d.berth(&["admin", "init", "--auto"]));
    let p: Value = c.get("/1.0/profiles/default").await.unwrap();
    assert_eq!(p["devices"]["root"]["pool"], "default");
    assert_eq!(p["config"]["user.kept"], "yes");
    // A preseed on standard input: server config, a new pool, a new profile.
    let pool_dir = tempfile::tempdir().unwrap();
    let source = pool_dir.path().join("p2");
    let seed = format!(
        "config:\n  core.shutdown_timeout: \"7\"\nstorage_pools:\n- name: p2\n  driver: dir\n  config:\n    source: {}\nprofiles:\n- name: small\n  config:\n    limits.memory: 64MiB\n  devices:\n    root:\n      type: disk\n      path: /\n      pool: p2\n",
        source.display()
    );
    let out = d.berth_with_input(&["admin", "init", "--preseed"], seed.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server: Value = c.get("/1.0").await.unwrap();
    assert_eq!(server["config"]["core.shutdown_timeout"], "7");
    let pool: Value = c.get("/1.0/storage-pools/p2").await.unwrap();
    assert_eq!(pool["driver"], "dir");
    let small: Value = c.get("/1.0/profiles/small").await.unwrap();
    assert_eq!(small["config"]["limits.memory"], "64MiB");
    // A preseed with a bad key is refused, naming it.
    let out = d.berth_with_input(
        &["admin", "init", "--preseed"],
        b"profiles:\n- name: bad\n  config:\n    limits.memory: lots\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits.memory"));
    let e = c.get::<Value>("/1.0/profiles/bad").await.unwrap_err();
    assert_eq!(e.status(), Some(404));
    // The pool can go once nothing uses it.
    ok(&d.berth(&["profile", "delete", "small"]));
    ok(&d.berth(&["storage", "delete", "p2"]));
}

#[tokio::test]
async fn host_directories_bind_with_shift_readonly_and_required() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    let host = tempfile::tempdir().unwrap();
    let data = host.path().join("data dir");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("owned"), "hi\n").unwrap();
    std::os::unix::fs::chown(data.join("owned"), Some(1000), Some(1001)).unwrap();
    let disk = |extra: &[(&str, &str)]| {
        let mut dev =
            json!({"type": "disk", "source": data.to_str().unwrap(), "path": "/mnt/data"});
        for (k, v) in extra {
            dev[*k] = json!(v);
        }
        dev
    };
    for (name, dev) in [
        ("shifted", disk(&[("shift", "true")])),
        ("plain", disk(&[])),
        ("ro", disk(&[("readonly", "true"), ("shift", "true")])),
    ] {
        ok(&d.berth(&["init", "bb", name]));
        let r = c
            .query(
                Method::PATCH,
                &format!("/1.0/instances/{name}"),
                Some(&json!({"devices": {"data": dev}})),
            )
            .await
            .unwrap();
        // PATCH answers at once, with an empty sync reply, as LXD.
        assert_eq!((r.status, r.body.operation_id()), (200, None));
        ok(&d.berth(&["start", name]));
    }
    let stat = |n: &str| ok(&d.berth(&["exec", n, "--", "stat", "-c", "%u %g", "/mnt/data/owned"]));
    // With shift, host ids show inside as the same numbers; without, as nobody.
    assert_eq!(stat("shifted"), "1000 1001\n");
    assert_eq!(stat("plain"), "65534 65534\n");
    // Writes go to the host directory, except on a read-only disk.
    ok(&d.berth(&[
        "exec",
        "shifted",
        "--",
        "sh",
        "-c",
        "echo new > /mnt/data/from-inside",
    ]));
    assert_eq!(
        std::fs::read_to_string(data.join("from-inside")).unwrap(),
        "new\n"
    );
    let out = d.berth(&["exec", "ro", "--", "sh", "-c", "echo x > /mnt/data/nope"]);
    assert!(!out.status.success());
    assert!(!data.join("nope").exists());
    // A missing source refuses the start naming the device, unless not required.
    ok(&d.berth(&["init", "bb", "missing"]));
    let gone = json!({"type": "disk", "source": "/nonexistent/berth", "path": "/mnt/x"});
    let r = c
        .query(
            Method::PATCH,
            "/1.0/instances/missing",
            Some(&json!({"devices": {"gone": gone}})),
        )
        .await
        .unwrap();
    // PATCH answers at once, with an empty sync reply, as LXD.
    assert_eq!((r.status, r.body.operation_id()), (200, None));
    let err = fails(&d.berth(&["start", "missing"]));
    assert!(err.contains("gone"), "{err}");
    let r = c
        .query(
            Method::PATCH,
            "/1.0/instances/missing",
            Some(&json!({"devices": {"gone": {"type": "disk", "source": "/nonexistent/berth", "path": "/mnt/x", "required": "false"}}})),
        )
        .await
        .unwrap();
    // PATCH answers at once, with an empty sync reply, as LXD.
    assert_eq!((r.status, r.body.operation_id()), (200, None));
    ok(&d.berth(&["start", "missing"]));
    // Bad devices are refused naming the device and key.
    for (dev, needle) in [
        (
            json!({"type": "disk", "source": "relative", "path": "/x"}),
            "source",
        ),
        (
            json!({"type": "disk", "source": "/tmp", "path": "/x", "shift": "yes"}),
            "shift",
        ),
        (
            json!({"type": "disk", "source": "/tmp", "path": "/x", "color": "red"}),
            "color",
        ),
    ] {
        let e = c
            .query(
                Method::PATCH,
                "/1.0/instances/missing",
                Some(&json!({"devices": {"bad": dev}})),
            )
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400));
        assert!(
            e.to_string().contains("bad") && e.to_string().contains(needle),
            "{e}"
        );
    }
    for n in ["shifted", "plain", "ro", "missing"] {
        ok(&d.berth(&["delete", "-f", n]));
    }
}

#[tokio::test]
async fn devices_through_berth_and_lxc() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    let host = tempfile::tempdir().unwrap();
    let src = host.path().to_str().unwrap().to_owned();
    ok(&d.berth(&["init", "bb", "dv"]));
    let source = format!("source={src}");
    ok(&d.berth(&[
        "config",
        "device",
        "add",
        "dv",
        "data",
        "disk",
        &source,
        "path=/mnt/a",
    ]));
    ok(&d.berth(&["config", "device", "set", "dv", "data", "readonly=true"]));
    assert_eq!(
        ok(&d.berth(&["config", "device", "get", "dv", "data", "readonly"])),
        "true\n"
    );
    ok(&d.berth(&["config", "device", "unset", "dv", "data", "readonly"]));
    let list = ok(&d.berth(&["config", "device", "list", "dv", "-f", "csv"]));
    assert_eq!(list, "data,disk\n");
    // The real client adds one too; both mount at start.
    ok(&d.lxc(&[
        "config",
        "device",
        "add",
        "dv",
        "more",
        "disk",
        &source,
        "path=/mnt/b",
    ]));
    ok(&d.berth(&["start", "dv"]));
    std::fs::write(host.path().join("seen"), "yes\n").unwrap();
    for p in ["/mnt/a/seen", "/mnt/b/seen"] {
        assert_eq!(ok(&d.berth(&["exec", "dv", "--", "cat", p])), "yes\n");
    }
    // Profile devices, and overriding an inherited one in the instance.
    ok(&d.berth(&[
        "profile",
        "device",
        "add",
        "default",
        "shared",
        "disk",
        &source,
        "path=/mnt/p",
    ]));
    let i: Value = c.get("/1.0/instances/dv").await.unwrap();
    assert_eq!(i["expanded_devices"]["shared"]["path"], "/mnt/p");
    ok(&d.berth(&[
        "config",
        "device",
        "override",
        "dv",
        "shared",
        "path=/mnt/q",
    ]));
    let i: Value = c.get("/1.0/instances/dv").await.unwrap();
    assert_eq!(i["devices"]["shared"]["path"], "/mnt/q");
    assert_eq!(i["expanded_devices"]["shared"]["path"], "/mnt/q");
    ok(&d.berth(&["config", "device", "remove", "dv", "data", "more", "shared"]));
    ok(&d.berth(&["profile", "device", "remove", "default", "shared"]));
    let err = fails(&d.berth(&["config", "device", "get", "dv", "data", "path"]));
    assert!(err.contains("data"), "{err}");
    ok(&d.berth(&["delete", "-f", "dv"]));
}

#[tokio::test]
async fn devices_come_and_go_on_running_containers() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.berth(&["launch", "bb", "live"]));
    let sh = |script: &str| d.berth(&["exec", "live", "--", "sh", "-c", script]);
    // A unix-char device appears with the owner and mode asked for, and works.
    ok(&d.berth(&[
        "config",
        "device",
        "add",
        "live",
        "zero",
        "unix-char",
        "source=/dev/zero",
        "path=/dev/berth/zero",
        "uid=1000",
        "gid=1001",
        "mode=0640",
    ]));
    assert_eq!(
        ok(&sh("stat -c '%F %t:%T %u %g %a' /dev/berth/zero")),
        "character special file 1:5 1000 1001 640\n"
    );
    assert_eq!(
        ok(&sh("head -c 4 /dev/berth/zero | od -An -tx1")).trim(),
        "00 00 00 00"
    );
    // One the device cgroup does not allow by default gets its rule.
    ok(&d.berth(&[
        "config",
        "device",
        "add",
        "live",
        "odd",
        "unix-char",
        "path=/dev/berth-odd",
        "major=240",
        "minor=7",
    ]));
    assert_eq!(ok(&sh("stat -c '%t:%T' /dev/berth-odd")), "f0:7\n");
    let v1_list = format!(
        "/sys/fs/cgroup/devices/{}/live/devices.list",
        d.cgroup_parent()
    );
    let v1 = std::path::Path::new(&v1_list).exists();
    if v1 {
        let list = std::fs::read_to_string(&v1_list).unwrap();
        assert!(list.lines().any(|l| l == "c 240:7 rwm"), "{list}");
    }
    // The real lxc client adds one too.
    ok(&d.lxc(&[
        "config",
        "device",
        "add",
        "live",
        "null2",
        "unix-char",
        "source=/dev/null",
        "path=/dev/lxc-null",
    ]));
    ok(&sh("test -c /dev/lxc-null && echo x > /dev/lxc-null"));
    // A restart keeps them.
    ok(&d.berth(&["restart", "--force", "live"]));
    assert_eq!(
        ok(&sh("stat -c '%t:%T %u %g %a' /dev/berth/zero")),
        "1:5 1000 1001 640\n"
    );
    // Removed, they disappear: from inside, from the host's node directory, from the
    // device cgroup.
    ok(&d.berth(&["config", "device", "remove", "live", "zero", "odd"]));
    ok(&d.lxc(&["config", "device", "remove", "live", "null2"]));
    assert_eq!(
        ok(&sh(
            "for f in /dev/berth/zero /dev/berth-odd /dev/lxc-null; do test -e $f && echo $f; done; true"
        )),
        ""
    );
    let nodes = d.dir().join("devices/live");
    assert_eq!(std::fs::read_dir(&nodes).unwrap().count(), 0);
    if v1 {
        let list = std::fs::read_to_string(&v1_list).unwrap();
        assert!(!list.lines().any(|l| l == "c 240:7 rwm"), "{list}");
    }

    // A host directory comes and goes live, shifted, and through a profile.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("owned"), "hi\n").unwrap();
    std::os::unix::fs::chown(host.path().join("owned"), Some(1000), Some(1001)).unwrap();
    let source = format!("source={}", host.path().display());
    ok(&d.berth(&[
        "config",
        "device",
        "add",
        "live",
        "data",
        "disk",
        &source,
        "path=/mnt/data",
        "shift=true",
    ]));
    assert_eq!(ok(&sh("stat -c '%u %g' /mnt/data/owned")), "1000 1001\n");
    ok(&d.berth(&["config", "device", "remove", "live", "data"]));
    assert_eq!(ok(&sh("ls -A /mnt/data")), "");
    ok(&d.berth(&["profile", "create", "shared"]));
    ok(&d.berth(&["profile", "add", "live", "shared"]));
    ok(&d.berth(&[
        "profile",
        "device",
        "add",
        "shared",
        "ro",
        "disk",
        &source,
        "path=/srv/ro",
        "readonly=true",
    ]));
    assert_eq!(ok(&sh("cat /srv/ro/owned")), "hi\n");
    assert!(!sh("echo x > /srv/ro/new").status.success());
    ok(&d.berth(&["profile", "device", "remove", "shared", "ro"]));
    assert_eq!(ok(&sh("ls -A /srv/ro")), "");

    // What cannot be added is refused naming the device, and nothing changes.
    let err = fails(&d.berth(&[
        "config",
        "device",
        "add",
        "live",
        "gone",
        "unix-char",
        "source=/nonexistent/berth-dev",
    ]));
    assert!(err.contains("gone"), "{err}");
    let err = fails(&d.berth(&[
        "config",
        "device",
        "add",
        "live",
        "notdev",
        "unix-block",
        "source=/dev/zero",
    ]));
    assert!(err.contains("notdev") && err.contains("block"), "{err}");
    let err = fails(&d.berth(&[
        "config",
        "device",
        "add",
        "live",
        "farowner",
        "unix-char",
        "source=/dev/zero",
        "path=/dev/far",
        "uid=70000",
    ]));
    assert!(err.contains("farowner") && err.contains("id map"), "{err}");
    let shown = ok(&d.berth(&["config", "show", "live"]));
    assert!(
        !shown.contains("gone") && !shown.contains("notdev") && !shown.contains("farowner"),
        "{shown}"
    );
    assert!(!nodes.join("unix.farowner").exists());
    ok(&d.berth(&["delete", "-f", "live"]));
    assert!(!nodes.exists());
}
