//! The `dir` driver against real directories in a temp dir (the tests run as root).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::POOL_SUBDIRS;
use crate::{Driver, StorageErrorKind, VolumeType, load};

fn dir_pool(source: Option<&Path>, default_source: &Path) -> Box<dyn Driver> {
    let mut config = BTreeMap::new();
    if let Some(source) = source {
        config.insert("source".to_owned(), source.display().to_string());
    }
    load("dir", "p", config, default_source).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn every_volume_type_has_a_pool_directory() {
    for t in VolumeType::ALL {
        assert!(POOL_SUBDIRS.contains(&t.dir_name()), "{t}");
    }
}

#[test]
fn full_lifecycle_in_the_default_source() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("storage-pools/p");
    let pool = dir_pool(None, &source);
    assert_eq!(pool.info().name, "dir");
    assert_eq!(pool.config()["source"], source.display().to_string());

    pool.create().unwrap();
    assert_eq!(mode(&source), 0o711);
    for sub in POOL_SUBDIRS {
        let want = if sub.starts_with("custom") {
            0o700
        } else {
            0o711
        };
        assert_eq!(mode(&source.join(sub)), want, "{sub}");
    }
    pool.mount().unwrap();

    let res = pool.resources().unwrap();
    assert!(res.space_total > 0);
    assert!(res.space_used <= res.space_total);
    assert!(res.inodes_used <= res.inodes_total);

    let c1 = pool.create_volume(VolumeType::Container, "c1").unwrap();
    assert_eq!(c1, source.join("containers/c1"));
    assert_eq!(c1, pool.volume_path(VolumeType::Container, "c1"));
    assert_eq!(mode(&c1), 0o700);
    assert_eq!(
        fs::metadata(&c1).unwrap().uid(),
        rustix::process::geteuid().as_raw()
    );
    let err = pool.create_volume(VolumeType::Container, "c1").unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::AlreadyExists);

    pool.create_volume(VolumeType::Custom, "vb").unwrap();
    pool.create_volume(VolumeType::Custom, "va").unwrap();
    fs::write(source.join("custom/stray-file"), "").unwrap();
    assert_eq!(pool.list_volumes(VolumeType::Custom).unwrap(), ["va", "vb"]);
    assert_eq!(pool.list_volumes(VolumeType::Container).unwrap(), ["c1"]);
    assert!(pool.list_volumes(VolumeType::Image).unwrap().is_empty());
    fs::remove_file(source.join("custom/stray-file")).unwrap();

    // A full volume goes entirely; a symlink inside it does not take its target along.
    let outside = tmp.path().join("outside");
    fs::write(&outside, "keep").unwrap();
    fs::create_dir_all(c1.join("rootfs/etc")).unwrap();
    fs::write(c1.join("rootfs/etc/hostname"), "c1").unwrap();
    std::os::unix::fs::symlink(&outside, c1.join("rootfs/link")).unwrap();
    pool.delete_volume(VolumeType::Container, "c1").unwrap();
    assert!(!c1.exists());
    assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
    let err = pool.delete_volume(VolumeType::Container, "c1").unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        r#"Storage volume "c1" of type container not found"#
    );

    for name in ["va", "vb"] {
        pool.delete_volume(VolumeType::Custom, name).unwrap();
    }
    pool.unmount().unwrap();
    pool.delete().unwrap();
    assert!(!source.exists());
    assert!(source.parent().unwrap().exists());
    // Deleting what is gone succeeds, so delete can undo a half-done create.
    pool.delete().unwrap();
    assert_eq!(pool.mount().unwrap_err().kind(), StorageErrorKind::NotFound);
}

#[test]
fn delete_is_refused_while_a_volume_remains() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("p");
    let pool = dir_pool(None, &source);
    pool.create().unwrap();
    pool.create_volume(VolumeType::Image, "abc123").unwrap();

    let err = pool.delete().unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::Busy);
    assert!(err.to_string().contains("images/abc123"), "{err}");
    // Nothing was removed.
    for sub in POOL_SUBDIRS {
        assert!(source.join(sub).is_dir(), "{sub}");
    }
    assert_eq!(pool.list_volumes(VolumeType::Image).unwrap(), ["abc123"]);

    // Snapshots count too.
    pool.delete_volume(VolumeType::Image, "abc123").unwrap();
    fs::create_dir(source.join("containers-snapshots/c1")).unwrap();
    assert_eq!(pool.delete().unwrap_err().kind(), StorageErrorKind::Busy);
    fs::remove_dir(source.join("containers-snapshots/c1")).unwrap();

    // Something foreign at the top of our own source stops the final rmdir, not silently.
    fs::write(source.join("foreign"), "").unwrap();
    let err = pool.delete().unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::Busy);
    assert!(err.to_string().contains("foreign"), "{err}");
    assert!(source.join("foreign").exists());
}

#[test]
fn create_is_refused_on_a_non_empty_source() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("user-dir");
    fs::create_dir(&source).unwrap();
    fs::write(source.join("data"), "precious").unwrap();
    let pool = dir_pool(Some(&source), &tmp.path().join("default"));

    let err = pool.create().unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::InvalidConfig);
    assert!(err.to_string().contains("is not empty"), "{err}");
    assert_eq!(fs::read_to_string(source.join("data")).unwrap(), "precious");
    assert!(!source.join("containers").exists());

    let file = tmp.path().join("a-file");
    fs::write(&file, "").unwrap();
    let pool = dir_pool(Some(&file), &tmp.path().join("default"));
    assert_eq!(
        pool.create().unwrap_err().kind(),
        StorageErrorKind::InvalidConfig
    );
}

#[test]
fn a_user_source_is_emptied_but_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("user-dir");
    fs::create_dir(&source).unwrap();
    let pool = dir_pool(Some(&source), &tmp.path().join("default"));
    assert_eq!(pool.config()["source"], source.display().to_string());
    pool.create().unwrap();
    assert!(source.join("custom").is_dir());
    assert!(!tmp.path().join("default").exists());
    pool.delete().unwrap();
    assert!(source.is_dir());
    assert_eq!(fs::read_dir(&source).unwrap().count(), 0);
}

#[test]
fn volume_names_are_checked_before_touching_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("p");
    let pool = dir_pool(None, &source);
    pool.create().unwrap();
    for bad in ["", ".", "..", "a/b"] {
        let err = pool.create_volume(VolumeType::Custom, bad).unwrap_err();
        assert_eq!(err.kind(), StorageErrorKind::InvalidConfig, "{bad:?}");
        let err = pool.delete_volume(VolumeType::Custom, bad).unwrap_err();
        assert_eq!(err.kind(), StorageErrorKind::InvalidConfig, "{bad:?}");
    }
    assert!(source.join("custom").is_dir());
    assert!(pool.list_volumes(VolumeType::Custom).unwrap().is_empty());
}

#[test]
fn volume_calls_on_a_missing_pool_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let pool = dir_pool(None, &tmp.path().join("never-created"));
    let err = pool.mount().unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::NotFound);
    let err = pool.create_volume(VolumeType::Custom, "v").unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::Io);
    assert!(pool.list_volumes(VolumeType::Custom).is_err());
    assert!(pool.resources().is_err());
}

/// Unmounts on drop, so a failing assertion leaves no mount behind.
struct BindMount<'a>(&'a Path);

impl Drop for BindMount<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn delete_volume_is_refused_while_something_is_mounted_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("p");
    let pool = dir_pool(None, &source);
    pool.create().unwrap();
    let vol = pool.create_volume(VolumeType::Custom, "v").unwrap();
    let host_data = tmp.path().join("host-data");
    fs::create_dir(&host_data).unwrap();
    fs::write(host_data.join("keep"), "keep").unwrap();
    let target = vol.join("mnt");
    fs::create_dir(&target).unwrap();
    let mounted = std::process::Command::new("mount")
        .arg("--bind")
        .arg(&host_data)
        .arg(&target)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot bind-mount here");
        return;
    }
    let guard = BindMount(&target);

    let err = pool.delete_volume(VolumeType::Custom, "v").unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::Busy);
    assert!(err.to_string().contains("is mounted"), "{err}");
    assert_eq!(fs::read_to_string(target.join("keep")).unwrap(), "keep");

    drop(guard);
    pool.delete_volume(VolumeType::Custom, "v").unwrap();
    assert_eq!(fs::read_to_string(host_data.join("keep")).unwrap(), "keep");
}

#[test]
fn rename_volume_moves_data_and_never_replaces() {
    let tmp = tempfile::tempdir().unwrap();
    let pool = dir_pool(None, &tmp.path().join("p"));
    pool.create().unwrap();
    let a = pool.create_volume(VolumeType::Container, "a").unwrap();
    fs::write(a.join("data"), "x").unwrap();
    pool.create_volume(VolumeType::Container, "c").unwrap();
    pool.rename_volume(VolumeType::Container, "a", "b").unwrap();
    let b = pool.volume_path(VolumeType::Container, "b");
    assert_eq!(fs::read_to_string(b.join("data")).unwrap(), "x");
    assert!(!a.exists());
    let err = pool
        .rename_volume(VolumeType::Container, "b", "c")
        .unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::AlreadyExists);
    assert!(b.join("data").exists());
    let err = pool
        .rename_volume(VolumeType::Container, "gone", "d")
        .unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::NotFound);
    let err = pool
        .rename_volume(VolumeType::Container, "b", "../x")
        .unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::InvalidConfig);
}

#[test]
fn snapshots_copy_restore_rename_and_go() {
    let tmp = tempfile::tempdir().unwrap();
    let pool = dir_pool(None, &tmp.path().join("p"));
    pool.create().unwrap();
    let t = VolumeType::Container;
    let vol = pool.create_volume(t, "c1").unwrap();
    fs::create_dir(vol.join("rootfs")).unwrap();
    fs::write(vol.join("rootfs/f"), "one").unwrap();
    std::os::unix::fs::chown(vol.join("rootfs/f"), Some(1000), Some(1001)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", vol.join("rootfs/link")).unwrap();
    pool.create_snapshot(t, "c1", "s0").unwrap();
    let snap = pool.snapshot_path(t, "c1", "s0");
    assert_eq!(fs::read_to_string(snap.join("rootfs/f")).unwrap(), "one");
    assert_eq!(fs::metadata(snap.join("rootfs/f")).unwrap().uid(), 1000);
    assert_eq!(
        fs::read_link(snap.join("rootfs/link")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(mode(&snap), 0o700);
    assert_eq!(
        pool.create_snapshot(t, "c1", "s0").unwrap_err().kind(),
        StorageErrorKind::AlreadyExists
    );
    fs::write(vol.join("rootfs/f"), "two").unwrap();
    fs::write(vol.join("rootfs/new"), "x").unwrap();
    // What an interrupted restore leaves is removed at start, and never listed.
    let leftover = tmp.path().join("p/containers/.c1.restore");
    fs::create_dir_all(leftover.join("rootfs")).unwrap();
    assert_eq!(pool.list_volumes(t).unwrap(), ["c1"]);
    pool.remove_leftovers().unwrap();
    assert!(!leftover.exists());
    pool.restore_snapshot(t, "c1", "s0").unwrap();
    assert_eq!(fs::read_to_string(vol.join("rootfs/f")).unwrap(), "one");
    assert!(!vol.join("rootfs/new").exists());
    assert_eq!(pool.list_volumes(t).unwrap(), ["c1"]);
    pool.rename_snapshot(t, "c1", "s0", "s1").unwrap();
    assert!(pool.snapshot_path(t, "c1", "s1").is_dir());
    pool.rename_volume(t, "c1", "c2").unwrap();
    pool.rename_snapshots(t, "c1", "c2").unwrap();
    assert!(pool.snapshot_path(t, "c2", "s1").is_dir());
    assert_eq!(
        pool.delete_snapshot(t, "c2", "nope").unwrap_err().kind(),
        StorageErrorKind::NotFound
    );
    pool.delete_snapshot(t, "c2", "s1").unwrap();
    pool.delete_snapshots(t, "c2").unwrap();
    pool.delete_volume(t, "c2").unwrap();
    pool.delete().unwrap();
}
