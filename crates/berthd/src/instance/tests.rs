//! The instance service on the fake driver: no root, no containers, a temporary
//! directory and a real database. What a user would see of each change is asserted
//! through the service's own reads, and the fake's record of what ran.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::StatusCode;
use berth_api::instance::{InstanceSource, InstanceStatePut, InstancesPost};

use super::config::InstanceChange;
use super::{create, query, state};
use crate::ctx::Ctx;
use crate::error::Kind;
use crate::model::names::InstanceName;

fn empty(name: &str) -> InstancesPost {
    InstancesPost {
        name: name.to_owned(),
        source: InstanceSource {
            kind: "none".to_owned(),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn make(cx: &Arc<Ctx>, req: InstancesPost) -> crate::error::Result<()> {
    let name = InstanceName::parse(&req.name)?;
    let creation = create::prepare(cx, "default", &name, req).await?;
    creation.run(cx, Arc::new(|_| {})).await
}

fn power(action: &str) -> InstanceStatePut {
    InstanceStatePut {
        action: action.to_owned(),
        force: true,
        timeout: -1,
        ..Default::default()
    }
}

async fn change_state(cx: &Ctx, name: &str, action: &str) -> crate::error::Result<()> {
    let rec = super::find(cx, name).await?;
    state::change(cx, &rec, &power(action)).await
}

/// PATCHes `pairs` into instance `name`'s configuration.
async fn patch_config(cx: &Ctx, name: &str, pairs: &[(&str, &str)]) -> crate::error::Result<()> {
    let config = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let change = InstanceChange {
        config: Some(config),
        ..Default::default()
    };
    super::config::update(cx, name, |_| Ok(()), change, false).await
}

/// PATCHes `devices` into instance `name`.
async fn patch_devices(
    cx: &Ctx,
    name: &str,
    devices: BTreeMap<String, BTreeMap<String, String>>,
) -> crate::error::Result<()> {
    let change = InstanceChange {
        devices: Some(devices),
        ..Default::default()
    };
    super::config::update(cx, name, |_| Ok(()), change, false).await
}

/// What a user would find of an instance: its row, its volume, its runtime directory.
fn leftovers(cx: &Ctx, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    if cx
        .db
        .read_sync(|c| crate::db::instances::get(c, name))
        .unwrap()
        .is_some()
    {
        found.push("row".to_owned());
    }
    let pool = cx.pools.get("default").unwrap();
    if super::volume(pool.as_ref(), name).exists() {
        found.push("volume".to_owned());
    }
    if cx.paths.container(name).exists() {
        found.push("runtime directory".to_owned());
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn create_start_stop_and_delete() {
    let (_dir, cx, fake) = crate::testing::ctx();
    make(&cx, empty("c1")).await.unwrap();
    let (rec, view) = query::get(&cx, "c1").await.unwrap();
    assert_eq!(view.status, "Stopped");
    assert_eq!(rec.config["volatile.last_state.power"], "STOPPED");
    assert!(
        rec.config.contains_key("volatile.idmap.next"),
        "an id map is chosen"
    );

    change_state(&cx, "c1", "start").await.unwrap();
    assert_eq!(query::status(&cx, "c1").await.0, StatusCode::Running);
    let spec = fake.container("c1").unwrap().spec.unwrap();
    assert_eq!(spec.hostname, "c1");
    assert!(spec.idmap.is_some(), "unprivileged by default");
    assert!(
        spec.devices
            .iter()
            .any(|(k, v)| k.ends_with("devices.deny") && v == "a"),
        "the device cgroup denies all but the defaults"
    );
    let rec = super::find(&cx, "c1").await.unwrap();
    assert_eq!(rec.config["volatile.last_state.power"], "RUNNING");
    assert_ne!(rec.last_used_at, crate::time::NEVER);

    // Running: it cannot be deleted.
    let e = create::begin_delete(&cx, "c1").await.unwrap_err();
    assert_eq!(e.kind(), Kind::Invalid);
    change_state(&cx, "c1", "freeze").await.unwrap();
    assert_eq!(query::status(&cx, "c1").await.0, StatusCode::Frozen);
    change_state(&cx, "c1", "stop").await.unwrap();
    assert!(fake.running().is_empty());
    let e = change_state(&cx, "c1", "stop").await.unwrap_err();
    assert!(e.message().contains("already stopped"), "{e}");

    create::begin_delete(&cx, "c1")
        .await
        .unwrap()
        .run(&cx)
        .await
        .unwrap();
    assert!(
        leftovers(&cx, "c1").is_empty(),
        "{:?}",
        leftovers(&cx, "c1")
    );
    assert_eq!(
        super::find(&cx, "c1").await.unwrap_err().kind(),
        Kind::NotFound
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn names_are_unique_and_checked_before_anything_is_made() {
    let (_dir, cx, _fake) = crate::testing::ctx();
    make(&cx, empty("c1")).await.unwrap();
    let e = make(&cx, empty("c1")).await.unwrap_err();
    assert_eq!(e.kind(), Kind::AlreadyExists);
    let mut bad = empty("c2");
    bad.config.insert("limits.memory".into(), "lots".into());
    let e = make(&cx, bad).await.unwrap_err();
    assert_eq!(e.kind(), Kind::Invalid);
    assert!(e.message().contains("limits.memory"), "{e}");
    assert!(leftovers(&cx, "c2").is_empty());
    let e = make(&cx, empty("2c")).await.unwrap_err();
    assert_eq!(e.kind(), Kind::Invalid);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_start_after_create_leaves_the_instance_stopped() {
    let (_dir, cx, fake) = crate::testing::ctx();
    fake.fail_next_start("c1");
    let mut req = empty("c1");
    req.start = true;
    let e = make(&cx, req).await.unwrap_err();
    assert!(e.message().contains("Failed to start"), "{e}");
    // The instance was made; only its start failed, as LXD reports it.
    assert_eq!(query::status(&cx, "c1").await.0, StatusCode::Stopped);
    change_state(&cx, "c1", "start").await.unwrap();
    assert_eq!(fake.running(), vec!["c1".to_owned()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_half_way_through_a_create_leaves_nothing() {
    let (_dir, cx, _fake) = crate::testing::ctx();
    // An image whose file is no archive: the unpack fails after the rows, the runtime
    // directory and the volume were made.
    let fp = "ab".repeat(32);
    std::fs::write(cx.paths.images().join(&fp), b"not an archive").unwrap();
    let img = crate::model::records::ImageRecord {
        image: berth_api::image::Image {
            fingerprint: fp.clone(),
            architecture: "x86_64".into(),
            kind: "container".into(),
            ..Default::default()
        },
        split: false,
        metadata: "{}".into(),
    };
    cx.db
        .write_sync(|tx| crate::db::images::insert(tx, "default", &img, &[]))
        .unwrap();
    let mut req = empty("c1");
    req.source = InstanceSource {
        kind: "image".into(),
        fingerprint: fp[..12].to_owned(),
        ..Default::default()
    };
    let name = InstanceName::parse("c1").unwrap();
    let creation = create::prepare(&cx, "default", &name, req).await.unwrap();
    assert_eq!(leftovers(&cx, "c1"), vec!["row"]);
    let e = creation.run(&cx, Arc::new(|_| {})).await.unwrap_err();
    assert!(e.message().contains("Failed to unpack"), "{e}");
    assert_eq!(leftovers(&cx, "c1"), Vec::<String>::new());
    // The name is free again.
    make(&cx, empty("c1")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_apply_limits_live_and_refusals_change_nothing() {
    let (_dir, cx, fake) = crate::testing::ctx();
    make(&cx, empty("c1")).await.unwrap();
    change_state(&cx, "c1", "start").await.unwrap();
    patch_config(&cx, "c1", &[("limits.processes", "50")])
        .await
        .unwrap();
    let rec = super::find(&cx, "c1").await.unwrap();
    assert_eq!(rec.config["limits.processes"], "50");
    assert_eq!(
        fake.container("c1")
            .unwrap()
            .cgroup
            .get("pids.max")
            .map(String::as_str),
        Some("50"),
        "applied to the running container"
    );
    // A bad key refuses the whole change, and a stale ETag is a precondition failure.
    let e = patch_config(&cx, "c1", &[("limits.processes", "60"), ("bogus.key", "1")])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Kind::Invalid);
    let stale = super::config::update(
        &cx,
        "c1",
        |_| {
            Err(crate::error::Failure::new(
                Kind::Precondition,
                "ETag doesn't match",
            ))
        },
        InstanceChange::default(),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(stale.kind(), Kind::Precondition);
    let rec = super::find(&cx, "c1").await.unwrap();
    assert_eq!(rec.config["limits.processes"], "50");
    // Removing the limit writes the unlimited value back.
    patch_config(&cx, "c1", &[("limits.processes", "")])
        .await
        .unwrap();
    assert_eq!(fake.container("c1").unwrap().cgroup["pids.max"], "max");
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_moves_everything_and_refuses_a_taken_name() {
    let (_dir, cx, _fake) = crate::testing::ctx();
    make(&cx, empty("c1")).await.unwrap();
    make(&cx, empty("c2")).await.unwrap();
    let taken = create::check_rename(&cx, "c1", &InstanceName::parse("c2").unwrap())
        .await
        .unwrap_err();
    assert_eq!(taken.kind(), Kind::AlreadyExists);
    let to = create::check_rename(&cx, "c1", &InstanceName::parse("c3").unwrap())
        .await
        .unwrap();
    create::rename(&cx, "c1", &to).await.unwrap();
    assert!(leftovers(&cx, "c1").is_empty());
    assert_eq!(
        leftovers(&cx, "c3"),
        vec!["row", "volume", "runtime directory"]
    );
    // A running instance is not renamed.
    change_state(&cx, "c3", "start").await.unwrap();
    let e = create::rename(&cx, "c3", "c4").await.unwrap_err();
    assert_eq!(e.kind(), Kind::Conflict);
    assert!(leftovers(&cx, "c4").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn ephemeral_instances_go_when_they_stop() {
    let (_dir, cx, _fake) = crate::testing::ctx();
    let mut req = empty("e1");
    req.ephemeral = true;
    req.start = true;
    make(&cx, req).await.unwrap();
    change_state(&cx, "e1", "stop").await.unwrap();
    assert!(
        leftovers(&cx, "e1").is_empty(),
        "{:?}",
        leftovers(&cx, "e1")
    );
}

/// A pool deleted while an instance is created on it: whichever comes first wins, the
/// other gets a clear 4xx, and neither leaves a half-made object.
#[tokio::test(flavor = "multi_thread")]
async fn a_pool_and_an_instance_on_it_never_half_make_each_other() {
    let (_dir, cx, _fake) = crate::testing::ctx();
    let new_pool = || crate::storage::NewPool {
        name: crate::model::names::PoolName::parse("p2").unwrap(),
        driver: "dir".to_owned(),
        description: String::new(),
        config: BTreeMap::new(),
    };
    let on_p2 = |name: &str| {
        let mut req = empty(name);
        let mut root = BTreeMap::new();
        for (k, v) in [("type", "disk"), ("path", "/"), ("pool", "p2")] {
            root.insert(k.to_owned(), v.to_owned());
        }
        req.devices.insert("root".to_owned(), root);
        req
    };
    crate::storage::create(&cx, new_pool()).await.unwrap();
    let source = cx.paths.default_pool_source("p2");

    // The instance is recorded first: the pool is in use, and stays whole.
    let name = InstanceName::parse("c1").unwrap();
    let creation = create::prepare(&cx, "default", &name, on_p2("c1"))
        .await
        .unwrap();
    let e = crate::storage::delete(&cx, "p2").await.unwrap_err();
    assert_eq!(e.kind(), Kind::Conflict);
    assert!(e.message().contains("in use"), "{e}");
    assert!(source.exists() && crate::storage::get(&cx, "p2").await.is_ok());
    creation.run(&cx, Arc::new(|_| {})).await.unwrap();
    create::begin_delete(&cx, "c1")
        .await
        .unwrap()
        .run(&cx)
        .await
        .unwrap();

    // The pool's row goes first (a delete that got there before): the create is refused
    // before anything is made.
    cx.db
        .write_sync(|tx| crate::db::pools::delete(tx, "p2"))
        .unwrap();
    let e = make(&cx, on_p2("c2")).await.unwrap_err();
    assert_eq!(e.kind(), Kind::Invalid, "{e}");
    assert!(e.message().contains("\"p2\""), "{e}");
    assert!(!e.message().contains("FOREIGN KEY"), "{e}");
    assert!(leftovers(&cx, "c2").is_empty());

    // And once the pool is really gone, the same.
    cx.db
        .write_sync(|tx| {
            crate::db::pools::insert(
                tx,
                &crate::model::records::PoolRecord {
                    name: "p2".into(),
                    driver: "dir".into(),
                    description: String::new(),
                    config: BTreeMap::new(),
                },
            )
        })
        .unwrap();
    crate::storage::delete(&cx, "p2").await.unwrap();
    assert!(!source.exists());
    let e = make(&cx, on_p2("c3")).await.unwrap_err();
    assert_eq!(e.kind(), Kind::Invalid, "{e}");
    assert!(leftovers(&cx, "c3").is_empty());
}

/// A live device change that fails half-way takes back what it did: the devices already
/// mounted go, the old record stays.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_device_change_failing_half_way_is_taken_back() {
    let (dir, cx, fake) = crate::testing::ctx();
    make(&cx, empty("c1")).await.unwrap();
    change_state(&cx, "c1", "start").await.unwrap();
    let disk = |source: &std::path::Path, path: &str| {
        let mut d = BTreeMap::new();
        d.insert("type".to_owned(), "disk".to_owned());
        d.insert("source".to_owned(), source.display().to_string());
        d.insert("path".to_owned(), path.to_owned());
        d
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    fake.fail_mount_at("/mnt/b");
    let mut devices = BTreeMap::new();
    devices.insert("da".to_owned(), disk(&a, "/mnt/a"));
    devices.insert("db".to_owned(), disk(&b, "/mnt/b"));
    let e = patch_devices(&cx, "c1", devices).await.unwrap_err();
    assert!(e.message().contains("\"db\""), "{e}");
    assert!(fake.mounts().is_empty(), "{:?}", fake.mounts());
    let rec = super::find(&cx, "c1").await.unwrap();
    assert!(rec.devices.is_empty(), "{:?}", rec.devices);

    // The same change without the failure goes through, live.
    fake.fail_mount_at("");
    let mut devices = BTreeMap::new();
    devices.insert("da".to_owned(), disk(&a, "/mnt/a"));
    patch_devices(&cx, "c1", devices).await.unwrap();
    assert_eq!(fake.mounts(), vec!["/mnt/a"]);
}
