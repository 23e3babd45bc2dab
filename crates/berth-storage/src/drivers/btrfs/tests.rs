//! The `btrfs` driver on a real loop-file filesystem in a temp dir (the tests run as root,
//! with btrfs-progs installed).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use super::is_subvolume;
use crate::{StorageErrorKind, VolumeType, load};

#[test]
fn a_loop_file_pool_snapshots_restores_copies_and_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("storage-pools/b1");
    let config = BTreeMap::from([("size".to_owned(), "512MiB".to_owned())]);
    let pool = load("btrfs", "b1", config, &root).unwrap();
    let image = tmp.path().join("disks/b1.img");
    assert_eq!(pool.config()["source"], image.display().to_string());
    pool.create().unwrap();
    assert_eq!(fs::metadata(&image).unwrap().len(), 512 << 20);
    pool.mount().unwrap();
    assert!(pool.resources().unwrap().space_total > 0);

    let t = VolumeType::Container;
    let c1 = pool.create_volume(t, "c1").unwrap();
    assert!(is_subvolume(&c1));
    assert_eq!(fs::metadata(&c1).unwrap().mode() & 0o7777, 0o700);
    fs::write(c1.join("f"), "one").unwrap();
    pool.create_snapshot(t, "c1", "s1").unwrap();
    let s1 = pool.snapshot_path(t, "c1", "s1");
    assert!(is_subvolume(&s1));
    assert_eq!(
        pool.create_snapshot(t, "c1", "s1").unwrap_err().kind(),
        StorageErrorKind::AlreadyExists
    );
    fs::write(c1.join("f"), "two").unwrap();
    fs::write(c1.join("g"), "new").unwrap();
    pool.restore_snapshot(t, "c1", "s1").unwrap();
    assert_eq!(fs::read_to_string(c1.join("f")).unwrap(), "one");
    assert!(!c1.join("g").exists());
    assert!(is_subvolume(&c1));

    // Copies: a snapshot of a subvolume here; a plain directory from elsewhere copied
    // into a new subvolume.
    pool.create_volume_from(t, "c2", &s1).unwrap();
    let c2 = pool.volume_path(t, "c2");
    assert!(is_subvolume(&c2));
    assert_eq!(fs::read_to_string(c2.join("f")).unwrap(), "one");
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("h"), "from afar").unwrap();
    pool.create_volume_from(t, "c3", &outside).unwrap();
    let c3 = pool.volume_path(t, "c3");
    assert!(is_subvolume(&c3));
    assert_eq!(fs::read_to_string(c3.join("h")).unwrap(), "from afar");

    // A volume holding a subvolume of its own (a container's) still goes.
    std::process::Command::new("btrfs")
        .args(["subvolume", "create"])
        .arg(c3.join("nested"))
        .output()
        .unwrap();
    pool.delete_volume(t, "c3").unwrap();
    assert!(!c3.exists());

    // Quotas: the usage counted, a limit set and lifted.
    pool.set_quota(t, "c2", Some(64 << 20)).unwrap();
    pool.set_quota(t, "c2", None).unwrap();
    // The usage read from sysfs is what the tool shows.
    let shown = std::process::Command::new("btrfs")
        .args(["qgroup", "show", "-f", "--raw"])
        .arg(&c2)
        .output()
        .unwrap();
    let shown: u64 = String::from_utf8_lossy(&shown.stdout)
        .lines()
        .find(|l| l.starts_with("0/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert_eq!(pool.usage(t, "c2"), Some(shown));
    assert!(shown > 0);

    pool.rename_volume(t, "c2", "c4").unwrap();
    assert_eq!(pool.list_volumes(t).unwrap(), ["c1", "c4"]);
    // The pool refuses to go while volumes remain, and stays usable.
    assert_eq!(pool.delete().unwrap_err().kind(), StorageErrorKind::Busy);
    assert!(c1.join("f").exists());
    pool.delete_snapshots(t, "c1").unwrap();
    pool.delete_volume(t, "c1").unwrap();
    pool.delete_volume(t, "c4").unwrap();

    // Unmounted (a restart) and mounted again, then gone with its loop file.
    pool.unmount().unwrap();
    let again = load("btrfs", "b1", pool.config().clone(), &root).unwrap();
    again.mount().unwrap();
    assert!(again.list_volumes(t).unwrap().is_empty());
    again.unmount().unwrap();
    again.delete().unwrap();
    assert!(!image.exists() && !root.exists());
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&root.display().to_string()), "{mounts}");
}

#[test]
fn streams_carry_a_volume_and_its_snapshots_to_another_pool() {
    let tmp = tempfile::tempdir().unwrap();
    let config = || BTreeMap::from([("size".to_owned(), "512MiB".to_owned())]);
    let a = load("btrfs", "a", config(), &tmp.path().join("storage-pools/a")).unwrap();
    let b = load("btrfs", "b", config(), &tmp.path().join("storage-pools/b")).unwrap();
    for p in [&a, &b] {
        p.create().unwrap();
        p.mount().unwrap();
    }
    let t = VolumeType::Container;
    let v = a.create_volume(t, "v").unwrap();
    fs::write(v.join("f"), "one").unwrap();
    a.create_snapshot(t, "v", "s1").unwrap();
    fs::write(v.join("f"), "two").unwrap();
    fs::write(v.join("g"), vec![7u8; 1 << 20]).unwrap();

    let sender = a.sender(t, "v", &["s1".to_owned()]).unwrap();
    assert_eq!(sender.count(), 2);
    let mut receiver = b.receiver(t, "w").unwrap();
    for i in 0..2 {
        // Two reads give the same bytes: a writer can size a member first.
        let mut first = Vec::new();
        sender.stream(i).unwrap().read_to_end(&mut first).unwrap();
        let size = first.len() as u64;
        let mut exact = crate::Exact::new(sender.stream(i).unwrap(), size);
        let snap = (i == 0).then_some("s1");
        receiver.receive(snap, &mut exact).unwrap();
    }
    // A snapshot that came twice is refused; a stream that is not one too.
    let e = receiver.receive(Some("s1"), &mut &b""[..]).unwrap_err();
    assert!(e.to_string().contains("came twice"), "{e}");
    let e = receiver
        .receive(Some("s2"), &mut &b"garbage"[..])
        .unwrap_err();
    assert_eq!(e.kind(), StorageErrorKind::Io, "{e}");
    receiver.finish().unwrap();
    drop(sender);
    let w = b.volume_path(t, "w");
    assert!(is_subvolume(&w));
    assert_eq!(fs::read_to_string(w.join("f")).unwrap(), "two");
    assert_eq!(fs::metadata(w.join("g")).unwrap().len(), 1 << 20);
    fs::write(w.join("f"), "writable").unwrap();
    let s1 = b.snapshot_path(t, "w", "s1");
    assert_eq!(fs::read_to_string(s1.join("f")).unwrap(), "one");
    assert!(!s1.join("g").exists());
    // A delta whose base did not come first is refused before receive sees it: it
    // would build on whatever subvolume of the filesystem has that UUID.
    let mut delta = Vec::new();
    let sender = a.sender(t, "v", &["s1".to_owned()]).unwrap();
    sender.stream(1).unwrap().read_to_end(&mut delta).unwrap();
    let mut lone = b.receiver(t, "y").unwrap();
    let e = lone.receive(None, &mut &delta[..]).unwrap_err();
    assert!(e.to_string().contains("not in the backup"), "{e}");
    drop((lone, sender));
    // Nothing is left in holding directories, on either side.
    for (p, dir) in [(&a, "a"), (&b, "b")] {
        let containers = tmp.path().join(format!("storage-pools/{dir}/containers"));
        let names: Vec<String> = fs::read_dir(&containers)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
        p.delete_snapshots(t, if dir == "a" { "v" } else { "w" })
            .unwrap();
    }
    // A receiver dropped unfinished takes what it received with it.
    let mut r = b.receiver(t, "x").unwrap();
    let mut again = Vec::new();
    a.sender(t, "v", &[])
        .unwrap()
        .stream(0)
        .unwrap()
        .read_to_end(&mut again)
        .unwrap();
    r.receive(None, &mut &again[..]).unwrap();
    drop(r);
    assert!(!b.volume_path(t, "x").exists());
    assert_eq!(
        b.receiver(t, "w").err().unwrap().kind(),
        StorageErrorKind::AlreadyExists
    );
    // Dir pools have no streams.
    let d = load("dir", "d", BTreeMap::new(), &tmp.path().join("d")).unwrap();
    assert_eq!(
        d.sender(t, "v", &[]).err().unwrap().kind(),
        StorageErrorKind::InvalidConfig
    );
    for (p, v) in [(&a, "v"), (&b, "w")] {
        p.delete_volume(t, v).unwrap();
        p.unmount().unwrap();
        p.delete().unwrap();
    }
}

#[test]
fn snapshots_not_made_from_their_volume_are_sent_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let config = || BTreeMap::from([("size".to_owned(), "256MiB".to_owned())]);
    let a = load("btrfs", "a", config(), &tmp.path().join("storage-pools/a")).unwrap();
    let b = load("btrfs", "b", config(), &tmp.path().join("storage-pools/b")).unwrap();
    for p in [&a, &b] {
        p.create().unwrap();
        p.mount().unwrap();
    }
    let t = VolumeType::Container;
    // As a plain tarball's import makes them: each snapshot a subvolume of its own, filled
    // anew, then the volume; the same inode numbers hold other files in each.
    let s1 = a.create_empty_snapshot(t, "v", "s1").unwrap();
    fs::create_dir(s1.join("run")).unwrap();
    fs::write(s1.join("m1"), "one").unwrap();
    let v = a.create_volume(t, "v").unwrap();
    fs::write(v.join("m2"), "two").unwrap();
    fs::create_dir(v.join("root")).unwrap();
    fs::hard_link(v.join("m2"), v.join("root/m2")).unwrap();
    // A snapshot taken of the volume since is its difference from the one before it.
    a.create_snapshot(t, "v", "s2").unwrap();
    fs::write(v.join("m3"), "three").unwrap();
    let snaps = ["s1".to_owned(), "s2".to_owned()];
    let sizes: Vec<usize> = {
        let sender = a.sender(t, "v", &snaps).unwrap();
        (0..3)
            .map(|i| {
                let mut bytes = Vec::new();
                sender.stream(i).unwrap().read_to_end(&mut bytes).unwrap();
                bytes.len()
            })
            .collect()
    };
    let sender = a.sender(t, "v", &snaps).unwrap();
    let mut receiver = b.receiver(t, "w").unwrap();
    for (i, snap) in [Some("s1"), Some("s2"), None].into_iter().enumerate() {
        let mut exact = crate::Exact::new(sender.stream(i).unwrap(), sizes[i] as u64);
        receiver.receive(snap, &mut exact).unwrap();
    }
    receiver.finish().unwrap();
    drop(sender);
    let (w, ws1, ws2) = (
        b.volume_path(t, "w"),
        b.snapshot_path(t, "w", "s1"),
        b.snapshot_path(t, "w", "s2"),
    );
    assert_eq!(fs::read_to_string(ws1.join("m1")).unwrap(), "one");
    assert!(ws1.join("run").is_dir() && !ws1.join("m2").exists());
    assert_eq!(fs::read_to_string(ws2.join("root/m2")).unwrap(), "two");
    assert!(!ws2.join("m3").exists() && !ws2.join("m1").exists());
    assert_eq!(fs::read_to_string(w.join("m3")).unwrap(), "three");
    assert_eq!(fs::metadata(w.join("m2")).unwrap().nlink(), 2);
    for (p, v) in [(&a, "v"), (&b, "w")] {
        p.delete_snapshots(t, v).unwrap();
        p.delete_volume(t, v).unwrap();
        p.unmount().unwrap();
        p.delete().unwrap();
    }
}

#[test]
fn removing_a_tree_never_follows_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let config = BTreeMap::from([("size".to_owned(), "256MiB".to_owned())]);
    let pool = load("btrfs", "l", config, &tmp.path().join("storage-pools/l")).unwrap();
    pool.create().unwrap();
    pool.mount().unwrap();
    let t = VolumeType::Container;
    let victim = pool.create_volume(t, "victim").unwrap();
    fs::write(victim.join("f"), "kept").unwrap();
    // A holding directory a stream left a link in, beside a read-only subvolume.
    let holding = tmp.path().join("storage-pools/l/containers/.receive-x.tmp");
    fs::create_dir(&holding).unwrap();
    std::os::unix::fs::symlink(victim.parent().unwrap(), holding.join("link")).unwrap();
    let ro = holding.join("0");
    let out = std::process::Command::new("btrfs")
        .args(["subvolume", "snapshot", "-r"])
        .arg(&victim)
        .arg(&ro)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    super::remove_subvolume(&holding).unwrap();
    assert!(!holding.exists());
    assert_eq!(fs::read_to_string(victim.join("f")).unwrap(), "kept");
    pool.delete_volume(t, "victim").unwrap();
    pool.unmount().unwrap();
    pool.delete().unwrap();
}
