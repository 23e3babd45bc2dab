//! Projects: instances and profiles kept apart, limits enforced, restrictions refusing
//! privileged containers, low-level keys and host-path disks (also through profiles),
//! through the API, berth and the real lxc client.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use berth_client::{ImportOptions, Method};
use berth_e2e::{Daemon, busybox_image, fails, ok};
use serde_json::{Value, json};

#[tokio::test]
async fn projects_keep_instances_and_profiles_apart() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    // One project through berth (sharing default's profiles), one through the real lxc
    // client (its own profiles, as LXD's default).
    ok(&d.berth(&[
        "project",
        "create",
        "shared",
        "-c",
        "features.profiles=false",
        "-c",
        "features.images=false",
    ]));
    ok(&d.lxc(&["project", "create", "own"]));
    let list = ok(&d.lxc(&["project", "list", "-f", "csv"]));
    assert!(list.contains("shared") && list.contains("own"), "{list}");
    // The same name in three projects: three containers, each with its own host name.
    ok(&d.berth(&["launch", "bb", "web"]));
    ok(&d.berth(&["--project", "shared", "launch", "bb", "web"]));
    // "own" has its own images (LXD's default for new projects): none yet.
    let err = fails(&d.berth(&["--project", "own", "launch", "bb", "web"]));
    assert!(err.contains("not found"), "{err}");
    assert!(ok(&d.lxc(&["image", "list", "--project", "own", "-f", "csv"])).is_empty());
    let files_before = berth_e2e::image_store_files(&d);
    let opts = ImportOptions {
        aliases: vec!["bb".into()],
        ..Default::default()
    };
    d.client()
        .with_project(Some("own".into()))
        .import_image(&busybox_image(), None, &opts)
        .await
        .unwrap();
    // Imported there too, it is still stored once; its properties are each project's own.
    assert_eq!(berth_e2e::image_store_files(&d), files_before);
    let fp = ok(&d.lxc(&["image", "list", "-f", "csv", "-c", "F"]));
    let fp = fp.trim();
    let c = d.client();
    c.query(
        Method::PATCH,
        &format!("/1.0/images/{fp}?project=own"),
        Some(&json!({"properties": {"team": "own"}})),
    )
    .await
    .unwrap();
    let mine: Value = c
        .get(&format!("/1.0/images/{fp}?project=own"))
        .await
        .unwrap();
    assert_eq!(mine["properties"]["team"], "own");
    let theirs: Value = c.get(&format!("/1.0/images/{fp}")).await.unwrap();
    assert!(theirs["properties"].get("team").is_none(), "{theirs}");
    assert_eq!(
        ok(&d.lxc(&["image", "alias", "list", "--project", "own", "-f", "csv"]))
            .lines()
            .count(),
        1
    );
    // The project's own default profile starts empty: it needs a root disk first.
    let err = fails(&d.berth(&["--project", "own", "launch", "bb", "web"]));
    assert!(err.contains("root disk"), "{err}");
    ok(&d.lxc(&[
        "profile",
        "device",
        "add",
        "default",
        "root",
        "disk",
        "path=/",
        "pool=default",
        "--project",
        "own",
    ]));
    ok(&d.lxc(&["launch", "bb", "web", "--project", "own"]));
    for p in ["default", "shared", "own"] {
        assert_eq!(
            ok(&d.berth(&["--project", p, "exec", "web", "--", "hostname"])),
            "web\n"
        );
        let names = ok(&d.berth(&["--project", p, "list", "-c", "n", "-f", "csv"]));
        assert_eq!(names, "web\n", "project {p}");
    }
    let c = d.client();
    let all: Vec<Value> = c
        .get("/1.0/instances?recursion=1&all-projects=true")
        .await
        .unwrap();
    let mut seen: Vec<(String, String)> = all
        .iter()
        .map(|i| {
            (
                i["project"].as_str().unwrap().to_owned(),
                i["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [("default", "web"), ("own", "web"), ("shared", "web")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let urls: Vec<String> = c.get("/1.0/instances?project=own").await.unwrap();
    assert_eq!(urls, ["/1.0/instances/web?project=own"]);
    // The host-wide name of another project's instance is no way in.
    let e = c
        .query(Method::GET, "/1.0/instances/shared_web", None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    // Profiles: "own" has its own; "shared" sees default's.
    ok(&d.berth(&["--project", "own", "profile", "create", "mine"]));
    assert!(!ok(&d.berth(&["profile", "list", "-f", "csv"])).contains("mine"));
    assert!(
        ok(&d.berth(&["--project", "shared", "profile", "list", "-f", "csv"])).contains("default")
    );
    // A default-project profile change reaches the instances of projects using it.
    ok(&d.berth(&["profile", "set", "default", "limits.processes=300"]));
    let shared: Value = c.get("/1.0/instances/web?project=shared").await.unwrap();
    assert_eq!(shared["expanded_config"]["limits.processes"], "300");
    assert_eq!(shared["project"], "shared");
    // A project with instances cannot go; features cannot change under them.
    let err = fails(&d.berth(&["project", "delete", "shared"]));
    assert!(err.contains("not empty"), "{err}");
    let err = fails(&d.berth(&["project", "set", "shared", "features.profiles=true"]));
    assert!(err.contains("features.profiles"), "{err}");
    // Bad project requests change nothing.
    let e = c
        .query(Method::GET, "/1.0/instances?project=nope", None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(404));
    for (body, needle) in [
        (json!({"name": "a_b"}), "project name"),
        (
            json!({"name": "x", "config": {"limits.cpu": "many"}}),
            "limits.cpu",
        ),
        (json!({"name": "x", "config": {"bogus": "1"}}), "bogus"),
    ] {
        let e = c
            .query(Method::POST, "/1.0/projects", Some(&body))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400));
        assert!(e.to_string().contains(needle), "{e}");
    }
    for p in ["default", "shared", "own"] {
        ok(&d.berth(&["--project", p, "delete", "-f", "web"]));
    }
    ok(&d.berth(&["--project", "own", "profile", "delete", "mine"]));
    // Its images keep it from going; deleting them there leaves default's copy whole.
    let err = fails(&d.berth(&["project", "delete", "own"]));
    assert!(err.contains("not empty"), "{err}");
    ok(&d.lxc(&["image", "delete", "bb", "--project", "own"]));
    assert_eq!(berth_e2e::image_store_files(&d), files_before);
    assert!(ok(&d.lxc(&["image", "list", "-f", "csv"])).contains("bb"));
    // An empty project renames (its own profiles follow), through the real client.
    ok(&d.lxc(&["project", "rename", "own", "renamed"]));
    assert!(ok(&d.berth(&["--project", "renamed", "profile", "show", "default"])).contains("root"));
    ok(&d.berth(&["project", "delete", "shared", "renamed"]));
    assert_eq!(
        ok(&d.berth(&["project", "list", "-f", "csv"]))
            .lines()
            .count(),
        1
    );
}

#[tokio::test]
async fn restricted_projects_refuse_what_they_restrict() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    ok(&d.berth(&[
        "project",
        "create",
        "locked",
        "-c",
        "restricted=true",
        "-c",
        "features.profiles=false",
        "-c",
        "features.images=false",
        "-c",
        "limits.instances=2",
    ]));
    let host_dir = tempfile::tempdir().unwrap();
    let disk = json!({"type": "disk", "source": host_dir.path(), "path": "/mnt"});
    // Each refused with 403 naming the restriction, and nothing created.
    for (body, restriction) in [
        (
            json!({"name": "p1", "source": {"type": "image", "alias": "bb"},
                   "config": {"security.privileged": "true"}}),
            "restricted.containers.privilege",
        ),
        (
            json!({"name": "p2", "source": {"type": "image", "alias": "bb"},
                   "config": {"raw.lxc": "lxc.environment = A=1"}}),
            "restricted.containers.lowlevel",
        ),
        (
            json!({"name": "p3", "source": {"type": "image", "alias": "bb"},
                   "devices": {"host": disk}}),
            "restricted.devices.disk",
        ),
        (
            json!({"name": "p4", "source": {"type": "image", "alias": "bb"},
                   "config": {"security.nesting": "true"}}),
            "restricted.containers.nesting",
        ),
    ] {
        let e = c
            .query(Method::POST, "/1.0/instances?project=locked", Some(&body))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(403), "{e}");
        assert!(e.to_string().contains(restriction), "{e}");
    }
    // The same through berth and the real lxc client.
    let err = fails(&d.berth(&[
        "--project",
        "locked",
        "launch",
        "bb",
        "p5",
        "-c",
        "security.privileged=true",
    ]));
    assert!(err.contains("restricted.containers.privilege"), "{err}");
    let out = d.lxc(&[
        "init",
        "bb",
        "p6",
        "--project",
        "locked",
        "-c",
        "security.privileged=true",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("restricted.containers.privilege"),
        "{out:?}"
    );
    // A plain container in the same project is created and runs.
    ok(&d.berth(&["--project", "locked", "launch", "bb", "plain"]));
    assert_eq!(
        ok(&d.berth(&["--project", "locked", "list", "-c", "ns", "-f", "csv"])),
        "plain,RUNNING\n"
    );
    // Changing it into something restricted is refused too, and changes nothing.
    let source = format!("source={}", host_dir.path().display());
    let err = fails(&d.berth(&[
        "--project",
        "locked",
        "config",
        "device",
        "add",
        "plain",
        "host",
        "disk",
        &source,
        "path=/mnt",
    ]));
    assert!(err.contains("restricted.devices.disk"), "{err}");
    let err = fails(&d.berth(&[
        "--project",
        "locked",
        "config",
        "set",
        "plain",
        "raw.lxc=lxc.environment = A=1",
    ]));
    assert!(err.contains("restricted.containers.lowlevel"), "{err}");
    // Through a profile: one the instance uses cannot turn privileged, nor gain a disk.
    ok(&d.berth(&["profile", "create", "extra"]));
    ok(&d.berth(&["--project", "locked", "profile", "add", "plain", "extra"]));
    let err = fails(&d.berth(&["profile", "set", "extra", "security.privileged=true"]));
    assert!(
        err.contains("plain") && err.contains("restricted.containers.privilege"),
        "{err}"
    );
    let e = c
        .query(
            Method::PATCH,
            "/1.0/profiles/extra",
            Some(&json!({"devices": {"host": disk}})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403));
    assert!(e.to_string().contains("restricted.devices.disk"), "{e}");
    let extra = ok(&d.berth(&["profile", "show", "extra"]));
    assert!(
        !extra.contains("privileged") && !extra.contains("host"),
        "{extra}"
    );
    // Nor can a profile that carries a restricted key be given to it.
    ok(&d.berth(&["profile", "create", "priv"]));
    ok(&d.berth(&["profile", "set", "priv", "security.privileged=true"]));
    let err = fails(&d.berth(&["--project", "locked", "profile", "add", "plain", "priv"]));
    assert!(err.contains("restricted.containers.privilege"), "{err}");
    // The same containers are fine outside the restricted project.
    ok(&d.berth(&["init", "bb", "free", "-c", "security.privileged=true"]));
    // Limits: a second instance fits, a third does not; a project cannot be narrowed
    // below what its instances use.
    ok(&d.berth(&["--project", "locked", "init", "bb", "second"]));
    let err = fails(&d.berth(&["--project", "locked", "init", "bb", "third"]));
    assert!(err.contains("limits.instances"), "{err}");
    let err = fails(&d.berth(&["project", "set", "locked", "limits.instances=1"]));
    assert!(err.contains("limits.instances"), "{err}");
    let err = fails(&d.berth(&["project", "set", "locked", "limits.memory=1GiB"]));
    assert!(err.contains("limits.memory"), "{err}");
    let info = ok(&d.berth(&["project", "info", "locked", "-f", "csv"]));
    assert!(info.contains("INSTANCES,2,2"), "{info}");
    // Lifting the restriction allows what it blocked.
    ok(&d.berth(&["project", "set", "locked", "restricted=false"]));
    ok(&d.berth(&[
        "--project",
        "locked",
        "config",
        "set",
        "second",
        "security.privileged=true",
    ]));
    for (p, n) in [
        ("locked", "plain"),
        ("locked", "second"),
        ("default", "free"),
    ] {
        ok(&d.berth(&["--project", p, "delete", "-f", n]));
    }
    ok(&d.berth(&["project", "delete", "locked"]));
}
