//! Storage pools with the dir driver: create, inspect, edit, volumes, delete, bad input.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use berth_api::storage::{StoragePool, StoragePoolResources};
use berth_client::Method;
use berth_e2e::{Daemon, fails, ok};
use serde_json::json;

#[tokio::test]
async fn dir_pool_lifecycle() {
    let d = Daemon::start();
    let c = d.client();
    ok(&d.berth(&[
        "storage",
        "create",
        "p1",
        "dir",
        "rsync.bwlimit=10MB",
        "--description",
        "first",
    ]));
    let p: StoragePool = c.get("/1.0/storage-pools/p1").await.unwrap();
    assert_eq!(
        (p.driver.as_str(), p.status.as_str(), p.description.as_str()),
        ("dir", "Created", "first")
    );
    let source = p.config["source"].clone();
    assert!(
        std::path::Path::new(&source).join("containers").is_dir(),
        "{source}"
    );

    let r: StoragePoolResources = c.get("/1.0/storage-pools/p1/resources").await.unwrap();
    assert!(r.space.total > 0 && r.space.used <= r.space.total);

    ok(&d.berth(&["storage", "set", "p1", "rsync.compression=false"]));
    assert_eq!(
        ok(&d.berth(&["storage", "get", "p1", "rsync.compression"])),
        "false\n"
    );
    ok(&d.berth(&["storage", "unset", "p1", "rsync.bwlimit"]));
    let p: StoragePool = c.get("/1.0/storage-pools/p1").await.unwrap();
    assert!(!p.config.contains_key("rsync.bwlimit"));
    assert_eq!(p.config["source"], source, "source is kept");

    let vols: Vec<String> = c.get("/1.0/storage-pools/p1/volumes").await.unwrap();
    assert!(vols.is_empty());
    let vols: Vec<serde_json::Value> = c
        .get("/1.0/storage-pools/p1/volumes/custom?recursion=1")
        .await
        .unwrap();
    assert!(vols.is_empty());
    let err = c
        .get::<serde_json::Value>("/1.0/storage-pools/p1/volumes/bogus")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));

    let show = ok(&d.berth(&["storage", "show", "p1"]));
    assert!(show.contains("driver: dir"), "{show}");
    let info = ok(&d.berth(&["storage", "info", "p1"]));
    assert!(info.contains("total space:"), "{info}");

    // What uses it: an instance and a volume on it, a profile whose disk names it; while
    // any does, it is not deleted.
    berth_e2e::with_busybox(&d).await;
    ok(&d.berth(&["init", "bb", "c1", "-s", "p1"]));
    ok(&d.berth(&["storage", "volume", "create", "p1", "v"]));
    ok(&d.berth(&["profile", "create", "onp1"]));
    ok(&d.lxc(&[
        "profile", "device", "add", "onp1", "v", "disk", "pool=p1", "source=v", "path=/v",
    ]));
    let p: StoragePool = c.get("/1.0/storage-pools/p1").await.unwrap();
    assert_eq!(
        p.used_by,
        [
            "/1.0/instances/c1",
            "/1.0/storage-pools/p1/volumes/custom/v",
            "/1.0/profiles/onp1"
        ]
    );
    let listed: Vec<StoragePool> = c.get("/1.0/storage-pools?recursion=1").await.unwrap();
    assert_eq!(
        listed
            .iter()
            .find(|p| p.name == "p1")
            .unwrap()
            .used_by
            .len(),
        3
    );
    let e = fails(&d.berth(&["storage", "delete", "p1"]));
    assert!(e.contains("in use by /1.0/instances/c1 and 2 more"), "{e}");
    ok(&d.berth(&["delete", "c1"]));
    ok(&d.berth(&["profile", "delete", "onp1"]));
    let e = fails(&d.berth(&["storage", "delete", "p1"]));
    assert!(
        e.contains("in use by /1.0/storage-pools/p1/volumes/custom/v"),
        "{e}"
    );
    ok(&d.berth(&["storage", "volume", "delete", "p1", "v"]));

    ok(&d.berth(&["storage", "delete", "p1"]));
    assert!(
        !std::path::Path::new(&source).exists(),
        "the pool's directory is removed"
    );
    assert_eq!(
        c.get::<StoragePool>("/1.0/storage-pools/p1")
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
}

#[tokio::test]
async fn bad_pool_requests_are_refused() {
    let d = Daemon::start();
    let c = d.client();
    let cases = [
        (json!({"name": "p", "driver": "zfs2"}), "zfs2"),
        (
            json!({"name": "p", "driver": "dir", "config": {"bogus": "1"}}),
            "bogus",
        ),
        (
            json!({"name": "p", "driver": "dir", "config": {"rsync.bwlimit": "fast"}}),
            "rsync.bwlimit",
        ),
        (
            json!({"name": "p", "driver": "dir", "config": {"source": "relative/path"}}),
            "source",
        ),
        (json!({"name": "bad/name", "driver": "dir"}), "bad/name"),
        (json!({"name": "p", "driver": 7}), "driver"),
    ];
    for (body, needle) in cases {
        let err = c
            .query(Method::POST, "/1.0/storage-pools", Some(&body))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(400), "{body}: {err}");
        assert!(err.to_string().contains(needle), "{body}: {err}");
    }
    let pools: Vec<String> = c.get("/1.0/storage-pools").await.unwrap();
    assert_eq!(
        pools,
        vec!["/1.0/storage-pools/default"],
        "nothing was created"
    );
    assert!(!d.dir().join("storage-pools/p").exists());

    ok(&d.berth(&["storage", "create", "p", "dir"]));
    let err = fails(&d.berth(&["storage", "create", "p", "dir"]));
    assert!(err.contains("already exists"), "{err}");
    let err = fails(&d.berth(&["storage", "set", "p", "source=/elsewhere"]));
    assert!(err.contains("source"), "{err}");
    let err = fails(&d.berth(&["storage", "set", "p", "nope=1"]));
    assert!(err.contains("nope"), "{err}");
}

#[tokio::test]
async fn btrfs_loop_pool_holds_instances_snapshots_and_copies() {
    let mut d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    ok(&d.berth(&["storage", "create", "bt", "btrfs", "size=1GiB"]));
    let p: StoragePool = c.get("/1.0/storage-pools/bt").await.unwrap();
    assert_eq!((p.driver.as_str(), p.status.as_str()), ("btrfs", "Created"));
    let image = d.dir().join("disks/bt.img");
    assert_eq!(p.config["source"], image.display().to_string());
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 1 << 30);
    // The loop file grows live (and the filesystem with it); it never shrinks.
    ok(&d.berth(&["storage", "set", "bt", "size=2GiB"]));
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 2 << 30);
    let r: serde_json::Value = c.get("/1.0/storage-pools/bt/resources").await.unwrap();
    let total = r["space"]["total"].as_u64().unwrap();
    assert!(total > 3 << 29, "{r}");
    let e = berth_e2e::fails(&d.berth(&["storage", "set", "bt", "size=1GiB"]));
    assert!(e.contains("\"size\"") && e.contains("cannot shrink"), "{e}");
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 2 << 30);
    let mount = d.dir().join("storage-pools/bt");
    let mounted = || {
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .contains(&format!(" {} btrfs ", mount.display()))
    };
    assert!(mounted());

    let sh = |d: &Daemon, name: &str, script: &str| {
        ok(&d.berth(&["exec", name, "--", "sh", "-c", script]))
    };
    ok(&d.berth(&["launch", "bb", "c1", "-s", "bt"]));
    let volume = mount.join("containers/c1");
    let subvolume = |path: &std::path::Path| {
        std::process::Command::new("btrfs")
            .args(["subvolume", "show"])
            .arg(path)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(subvolume(&volume));
    sh(&d, "c1", "echo one > /root/f");
    ok(&d.berth(&["snapshot", "create", "c1", "s1"]));
    assert!(subvolume(&mount.join("containers-snapshots/c1/s1")));
    sh(&d, "c1", "echo two > /root/f; echo new > /root/g");
    ok(&d.berth(&["snapshot", "restore", "c1", "s1"]));
    assert_eq!(sh(&d, "c1", "cat /root/f; ls /root"), "one\nf\n");
    // A copy from the snapshot, and a copy to the dir pool and back.
    ok(&d.berth(&["copy", "c1/s1", "c2"]));
    assert!(subvolume(&mount.join("containers/c2")));
    ok(&d.berth(&["start", "c2"]));
    assert_eq!(sh(&d, "c2", "cat /root/f"), "one\n");
    // The image is unpacked once on the pool (after the first launch); each instance after
    // is a snapshot of it, which stays.
    let fp = berth_e2e::alias_target(&d, "bb").await;
    let spare = mount.join(format!("containers/.spare-{fp}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !spare.exists() {
        assert!(std::time::Instant::now() < deadline, "no unpacked image");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ok(&d.berth(&["launch", "bb", "c4", "-s", "bt"]));
    assert_eq!(sh(&d, "c4", "echo cloned"), "cloned\n");
    let uuid = |path: &std::path::Path, field: &str| {
        let out = std::process::Command::new("btrfs")
            .args(["subvolume", "show"])
            .arg(path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.trim().strip_prefix(field).map(|v| v.trim().to_owned()))
            .unwrap_or_default()
    };
    assert!(spare.exists());
    assert_eq!(
        uuid(&mount.join("containers/c4"), "Parent UUID:"),
        uuid(&spare, "UUID:")
    );
    ok(&d.berth(&["delete", "-f", "c1", "c2", "c4"]));

    // A restart re-mounts the pool from its loop file.
    d.restart();
    assert!(mounted());
    ok(&d.berth(&["launch", "bb", "c3", "-s", "bt"]));
    assert_eq!(sh(&d, "c3", "echo again"), "again\n");
    ok(&d.berth(&["delete", "-f", "c3"]));

    // A root disk's size holds on btrfs (set live), and a full container does not stop
    // its neighbour; on the dir pool a size is refused, not ignored.
    ok(&d.berth(&["launch", "bb", "q1", "-s", "bt"]));
    ok(&d.berth(&["launch", "bb", "q2", "-s", "bt"]));
    ok(&d.berth(&["config", "device", "set", "q1", "root", "size=40MiB"]));
    let full = d.berth(&[
        "exec",
        "q1",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/root/big bs=1M count=100 2>&1; sync; ls -l /root/big",
    ]);
    let said = String::from_utf8_lossy(&full.stdout).into_owned();
    assert!(said.contains("quota exceeded"), "{said}");
    let written: u64 = sh(&d, "q1", "wc -c < /root/big").trim().parse().unwrap();
    assert!(
        written < 45 << 20,
        "{written} bytes written past a 40MiB size"
    );
    let state: serde_json::Value = c.get("/1.0/instances/q1/state").await.unwrap();
    let root = &state["disk"]["root"];
    assert_eq!(root["total"], 40u64 << 20, "{state}");
    assert!(root["usage"].as_u64().unwrap() > 30 << 20, "{state}");
    sh(
        &d,
        "q2",
        "dd if=/dev/zero of=/root/big bs=1M count=100 2>/dev/null; sync",
    );
    assert_eq!(
        sh(&d, "q2", "wc -c < /root/big").trim(),
        (100u64 << 20).to_string()
    );
    // Below what it holds, through a restart, then above: a size can always be raised.
    ok(&d.berth(&["config", "device", "set", "q1", "root", "size=8MiB"]));
    ok(&d.berth(&["restart", "q1"]));
    ok(&d.berth(&["config", "device", "set", "q1", "root", "size=200MiB"]));
    sh(&d, "q1", "echo more > /root/more");
    // Lifted, q1 writes on.
    ok(&d.berth(&["config", "device", "unset", "q1", "root", "size"]));
    sh(
        &d,
        "q1",
        "rm /root/big; dd if=/dev/zero of=/root/big bs=1M count=60 2>/dev/null",
    );
    ok(&d.berth(&["delete", "-f", "q1", "q2"]));
    ok(&d.berth(&["init", "bb", "ondir"]));
    let e =
        berth_e2e::fails(&d.berth(&["config", "device", "override", "ondir", "root", "size=1GiB"]));
    assert!(e.contains("cannot be enforced") && e.contains("dir"), "{e}");
    let root: serde_json::Value = c.get("/1.0/instances/ondir").await.unwrap();
    assert!(
        root["devices"].get("root").is_none(),
        "nothing changed: {root}"
    );
    ok(&d.berth(&["delete", "ondir"]));
    ok(&d.berth(&["storage", "delete", "bt"]));
    assert!(!mounted() && !image.exists() && !mount.exists());
}

/// `stat -f -c FORMAT PATH` inside `name`, as numbers.
fn statfs_in(d: &Daemon, name: &str, path: &str) -> Vec<u64> {
    let out = ok(&d.berth(&["exec", name, "--", "stat", "-f", "-c", "%S %b %f %a", path]));
    out.split_whitespace().map(|v| v.parse().unwrap()).collect()
}

/// A btrfs volume's size is its size inside: `df` shows the quota as the total, what the
/// volume holds as used and what the quota leaves as free, for the root and for custom
/// volumes, changed live; paths are looked up as the container sees them and with its
/// permissions; the answers go on while berthd is down; and systemd boots with them.
#[tokio::test]
async fn df_inside_shows_a_btrfs_volume_s_size() {
    let mut d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    berth_e2e::with_debian(&d).await;
    ok(&d.berth(&["storage", "create", "bt", "btrfs", "size=1GiB"]));
    ok(&d.berth(&["init", "bb", "c1", "-s", "bt"]));
    ok(&d.berth(&["config", "device", "set", "c1", "root", "size=64MiB"]));
    ok(&d.berth(&["start", "c1"]));
    let bytes = |f: &[u64], i: usize| f[0] * f[i];
    let root = statfs_in(&d, "c1", "/");
    assert_eq!(bytes(&root, 1), 64 << 20, "{root:?}");
    let sh = |d: &Daemon, name: &str, script: &str| {
        ok(&d.berth(&["exec", name, "--", "sh", "-c", script]))
    };
    sh(
        &d,
        "c1",
        "dd if=/dev/zero of=/root/big bs=1M count=16 2>/dev/null; sync",
    );
    let after = statfs_in(&d, "c1", "/");
    assert!(bytes(&after, 3) <= (48 << 20), "{after:?}");
    assert!(bytes(&after, 3) > (40 << 20), "{after:?}");
    assert_eq!(after[2], after[3], "free as available: {after:?}");
    let df = sh(&d, "c1", "df -k / | tail -1");
    assert!(df.split_whitespace().nth(1) == Some("65536"), "{df}");
    // Changed live.
    ok(&d.berth(&["config", "device", "set", "c1", "root", "size=128MiB"]));
    assert_eq!(bytes(&statfs_in(&d, "c1", "/"), 1), 128 << 20);

    // Custom volumes: a sized one shows its size, an unsized one the pool's; a relative
    // path and a link are looked up from the caller's directory and root.
    ok(&d.berth(&["storage", "volume", "create", "bt", "v1", "size=32MiB"]));
    ok(&d.berth(&["storage", "volume", "create", "bt", "v2"]));
    ok(&d.berth(&["storage", "volume", "attach", "bt", "v1", "c1", "/mnt/v1"]));
    ok(&d.berth(&["storage", "volume", "attach", "bt", "v2", "c1", "/mnt/v2"]));
    assert_eq!(bytes(&statfs_in(&d, "c1", "/mnt/v1"), 1), 32 << 20);
    let pool = bytes(&statfs_in(&d, "c1", "/mnt/v2"), 1);
    assert!(pool > 900 << 20, "{pool}");
    let relative = sh(
        &d,
        "c1",
        "ln -s /mnt/v1 /root/v1; cd /mnt/v2 && stat -f -c %b ../v1 && cd / && stat -f -c %b root/v1/",
    );
    assert_eq!(relative, format!("{0}\n{0}\n", (32 << 20) / root[0]));
    // A directory the caller may not search is refused, as the kernel does.
    sh(
        &d,
        "c1",
        "chmod 700 /root; echo u1:x:1000:1000::/tmp:/bin/sh >> /etc/passwd",
    );
    // Also from a user namespace of its own, where it holds every capability: they count
    // for none of the container's files.
    for script in ["stat -f /root/v1", "unshare -r stat -f /root/v1"] {
        let denied = d.berth(&[
            "exec", "c1", "--", "su", "-s", "/bin/sh", "u1", "-c", script,
        ]);
        let said = String::from_utf8_lossy(&denied.stderr).into_owned();
        assert!(
            !denied.status.success() && said.contains("Permission denied"),
            "{script}: {said}"
        );
    }
    // Without a size the pool's figures come back.
    ok(&d.berth(&["config", "device", "unset", "c1", "root", "size"]));
    assert_eq!(bytes(&statfs_in(&d, "c1", "/"), 1), pool);
    ok(&d.berth(&["config", "device", "set", "c1", "root", "size=64MiB"]));

    // The answers come from a process of their own, which outlives berthd: a loop inside
    // keeps seeing the size while berthd is down; the restarted berthd takes the proxy
    // over, and starts another when it dies.
    sh(
        &d,
        "c1",
        "setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i $(stat -f -c %b /) > /root/n.new; mv /root/n.new /root/n; sleep 0.1; done' </dev/null >/dev/null 2>&1 &",
    );
    let seen = d.dir().join("storage-pools/bt/containers/c1/rootfs/root/n");
    let read = || {
        let text = std::fs::read_to_string(&seen).unwrap_or_default();
        let f: Vec<u64> = text
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        (f.first().copied().unwrap_or(0), f.get(1).copied())
    };
    let blocks = Some((64 << 20) / root[0]);
    let proxies = d.syscall_proxies();
    assert_eq!(proxies.len(), 1, "{proxies:?}");
    d.kill();
    let (n, _) = read();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let shown = loop {
        let (m, shown) = read();
        if m > n + 2 {
            break shown;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the loop inside stopped at {n}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(shown, blocks);
    assert_eq!(d.syscall_proxies(), proxies);
    d.restart();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(proxies[0]).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    // berthd holds the proxy's socket too and starts another at once: no call fails.
    let back = statfs_in(&d, "c1", "/");
    assert_eq!(Some(back[1]), blocks);
    let now = d.syscall_proxies();
    assert!(now.len() == 1 && now != proxies, "{now:?}");

    // Only containers with a size on such a pool at their start hand their calls over:
    // not one without (a size set later shows from its next start), nor a nesting one.
    let policy = |name: &str| {
        std::fs::read_to_string(d.dir().join("containers").join(name).join("seccomp")).unwrap()
    };
    assert!(policy("c1").contains("statfs notify"));
    ok(&d.berth(&["launch", "bb", "c2", "-s", "bt"]));
    assert!(!policy("c2").contains("notify"));
    ok(&d.berth(&["config", "device", "set", "c2", "root", "size=16MiB"]));
    assert_eq!(bytes(&statfs_in(&d, "c2", "/"), 1), pool);
    ok(&d.berth(&["restart", "c2"]));
    assert_eq!(bytes(&statfs_in(&d, "c2", "/"), 1), 16 << 20);
    ok(&d.berth(&["config", "set", "c2", "security.nesting=true"]));
    ok(&d.berth(&["restart", "c2"]));
    assert!(!policy("c2").contains("notify"));

    // systemd boots with its statfs and fstatfs answered; coreutils' df and an fstatfs
    // (syscall 138 on x86_64, from perl) show the size.
    ok(&d.berth(&["init", "deb", "d1", "-s", "bt"]));
    ok(&d.berth(&["config", "device", "set", "d1", "root", "size=1GiB"]));
    ok(&d.berth(&["start", "d1"]));
    let state = berth_e2e::system_state(&d, "d1").await;
    let failed = ok(&d.berth(&["exec", "d1", "--", "systemctl", "--failed", "--plain"]));
    assert_eq!(state, "running", "failed units: {failed}");
    let df = ok(&d.berth(&["exec", "d1", "--", "df", "-B1", "--output=size", "/"]));
    assert_eq!(df.lines().nth(1).map(str::trim), Some("1073741824"), "{df}");
    let fstatfs = ok(&d.berth(&[
        "exec",
        "d1",
        "--",
        "perl",
        "-e",
        "open(my $f, q(<), q(/etc/hostname)) or die; my $b = qq(\\0) x 120; syscall(138, fileno($f), $b) == 0 or die qq($!); my @w = unpack(q(q3), substr($b, 8, 24)); print $w[0] * $w[1], qq(\\n)",
    ]));
    assert_eq!(fstatfs.trim(), "1073741824");
    // A subvolume made inside would hold data no qgroup of the volume counts: refused
    // (ioctl, syscall 16, BTRFS_IOC_SUBVOL_CREATE), the 32 bits the kernel reads compared.
    ok(&d.berth(&["launch", "deb", "d2", "-s", "bt"]));
    for (name, request, said) in [
        ("d1", "0x5000940e", "Operation not permitted"),
        ("d1", "0xffffffff5000940e", "Operation not permitted"),
        // Without a size it may.
        ("d2", "0x5000940e", "made"),
    ] {
        let made = ok(&d.berth(&[
            "exec",
            name,
            "--",
            "perl",
            "-e",
            &format!(
                "open(my $d, q(<), q(/root)) or die qq($!); my $a = pack(q(q), 0) . q(sv) . (qq(\\0) x 4086); \
                 print syscall(16, fileno($d), {request}, $a) == 0 ? qq(made\\n) : qq($!\\n)"
            ),
        ]));
        assert_eq!(made.trim(), said, "{name} {request}");
    }
    ok(&d.berth(&["delete", "-f", "c1", "c2", "d1", "d2"]));
    ok(&d.berth(&["storage", "volume", "delete", "bt", "v1"]));
    ok(&d.berth(&["storage", "volume", "delete", "bt", "v2"]));
    ok(&d.berth(&["storage", "delete", "bt"]));
}
