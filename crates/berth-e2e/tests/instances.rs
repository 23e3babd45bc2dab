//! System containers: lifecycle through the API, the CLI and the real lxc client, the
//! unprivileged id map, failed creates, ephemeral instances, daemon restarts.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup failures

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use berth_api::instance::{Instance, InstanceState};
use berth_client::{ImportOptions, Method};
use berth_e2e::{Daemon, busybox_image, fails, lxcfs_mounted, ok};
use serde_json::json;

async fn state(d: &Daemon, name: &str) -> InstanceState {
    d.client()
        .get(&format!("/1.0/instances/{name}/state"))
        .await
        .unwrap()
}

/// A static program calling the syscalls berth's seccomp policy denies; it prints
/// `NAME RESULT ERRNO` for each.
fn syscall_probe(dir: &std::path::Path) -> std::path::PathBuf {
    let src = dir.join("probe.c");
    std::fs::write(
        &src,
        r#"#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
#define PROBE(name, ...) do { errno = 0; long r = syscall(SYS_##name, __VA_ARGS__); \
    printf(#name " %ld %d\n", r, errno); } while (0)
int main(void) {
    PROBE(kexec_load, 0, 0, 0, 0);
    PROBE(init_module, 0, 0, "");
    PROBE(finit_module, -1, "", 0);
    PROBE(open_by_handle_at, -1, 0, 0);
    return 0;
}
"#,
    )
    .unwrap();
    let bin = dir.join("probe");
    let out = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

fn host_uid(pid: i64) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn lifecycle_through_the_cli_unprivileged() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.berth(&["launch", "bb", "c1"]));
    let s = state(&d, "c1").await;
    assert_eq!(s.status, "Running");
    assert!(s.pid > 0);
    assert!(s.processes >= 1, "{s:?}");
    // The container's root is an unprivileged host uid.
    let uid = host_uid(s.pid);
    assert!(uid >= 100_000, "init runs as host uid {uid}");
    let inst: Instance = d.client().get("/1.0/instances/c1").await.unwrap();
    assert_eq!(inst.config["volatile.idmap.base"], uid.to_string());
    assert_eq!(inst.expanded_devices["root"]["pool"], "default");
    assert_eq!(inst.config["image.os"], "BusyBox");
    // Files on disk stay owned by host root: no chown, thanks to the idmapped mount.
    let volume = d.dir().join("storage-pools/default/containers/c1");
    assert_eq!(
        std::fs::metadata(volume.join("rootfs/bin/busybox"))
            .unwrap()
            .uid(),
        0
    );
    assert_eq!(
        std::fs::metadata(&volume).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::read_to_string(volume.join("rootfs/etc/hostname")).unwrap(),
        "c1\n",
        "create template rendered"
    );

    let list = ok(&d.berth(&["list", "-f", "csv"]));
    assert_eq!(list, "c1,RUNNING,,,CONTAINER,0\n");
    ok(&d.berth(&["pause", "c1"]));
    assert_eq!(state(&d, "c1").await.status, "Frozen");
    ok(&d.berth(&["start", "c1"]));
    assert_eq!(state(&d, "c1").await.status, "Running");
    ok(&d.berth(&["stop", "c1", "--timeout", "20"]));
    assert_eq!(state(&d, "c1").await.status, "Stopped");
    let err = fails(&d.berth(&["stop", "c1"]));
    assert!(err.contains("already stopped"), "{err}");
    ok(&d.berth(&["start", "c1"]));
    ok(&d.berth(&["restart", "c1", "-f"]));
    assert_eq!(state(&d, "c1").await.status, "Running");
    let err = fails(&d.berth(&["delete", "c1"]));
    assert!(err.contains("running"), "{err}");
    // Verbs given many names work on them together; a name that fails is reported and
    // the others are still done.
    for n in ["c2", "c3", "c4"] {
        ok(&d.berth(&["launch", "bb", n]));
    }
    ok(&d.berth(&["stop", "-f", "c2", "c3", "c4"]));
    for n in ["c2", "c3", "c4"] {
        assert_eq!(state(&d, n).await.status, "Stopped", "{n}");
    }
    ok(&d.berth(&["start", "c2", "c3"]));
    let err = fails(&d.berth(&["delete", "-f", "c1", "c2", "nosuch", "c3", "c4"]));
    assert!(err.starts_with("Error: nosuch: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(ok(&d.berth(&["list", "-f", "csv"])), "");
    assert!(!volume.exists(), "volume removed");
    assert!(!d.dir().join("containers/c1").exists());
    assert!(
        d.leftover_cgroups().is_empty(),
        "{:?}",
        d.leftover_cgroups()
    );
}

#[tokio::test]
async fn real_lxc_client_drives_containers() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.lxc(&["launch", "bb", "viaLxc"]));
    let list = ok(&d.lxc(&["list", "--format", "csv"]));
    assert!(list.starts_with("viaLxc,RUNNING,"), "{list}");
    ok(&d.lxc(&["stop", "viaLxc", "--force"]));
    let list = ok(&d.lxc(&["list", "viaLxc", "--format", "csv"]));
    assert!(list.starts_with("viaLxc,STOPPED,"), "{list}");
    ok(&d.lxc(&["start", "viaLxc"]));
    ok(&d.lxc(&["delete", "--force", "viaLxc"]));
    assert_eq!(ok(&d.lxc(&["list", "--format", "csv"])), "");
}

#[tokio::test]
async fn failed_creates_leave_nothing() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    let cases = [
        (
            json!({"name": "bad_name", "source": {"type": "image", "alias": "bb"}}),
            400,
            "name",
        ),
        (
            json!({"name": "c1", "source": {"type": "image", "alias": "nope"}}),
            404,
            "nope",
        ),
        (
            json!({"name": "c1", "source": {"type": "image", "alias": "bb"}, "config": {"bogus.key": "1"}}),
            400,
            "bogus.key",
        ),
        (
            json!({"name": "c1", "source": {"type": "image", "alias": "bb"}, "profiles": ["nope"]}),
            404,
            "nope",
        ),
        (
            json!({"name": "c1", "source": {"type": "image", "alias": "bb"}, "devices": {"root": {"type": "disk", "path": "/", "pool": "missing"}}}),
            400,
            "missing",
        ),
    ];
    for (body, status, needle) in cases {
        let err = c
            .query(Method::POST, "/1.0/instances", Some(&body))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(status), "{body}: {err}");
        assert!(err.to_string().contains(needle), "{body}: {err}");
    }
    let list: Vec<String> = c.get("/1.0/instances").await.unwrap();
    assert!(list.is_empty());
    let vols: Vec<String> = c.get("/1.0/storage-pools/default/volumes").await.unwrap();
    assert!(vols.is_empty());
    let left: Vec<_> = std::fs::read_dir(d.dir().join("containers"))
        .unwrap()
        .collect();
    assert!(left.is_empty());

    // A start that fails says why, and leaves the instance stopped with nothing running
    // and no cgroup behind.
    ok(&d.berth(&[
        "init",
        "bb",
        "nostart",
        "-c",
        "raw.lxc=lxc.init.cmd = /no/such/init",
    ]));
    let err = fails(&d.berth(&["start", "nostart"]));
    assert!(err.contains("Failed to start the instance"), "{err}");
    assert_eq!(state(&d, "nostart").await.status, "Stopped");
    assert_eq!(d.leftover_cgroups(), Vec::<std::path::PathBuf>::new());
    ok(&d.berth(&["delete", "nostart"]));
}

#[tokio::test]
async fn ephemeral_instances_go_away_on_stop() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.berth(&["launch", "bb", "eph", "-e"]));
    assert_eq!(state(&d, "eph").await.status, "Running");
    ok(&d.berth(&["stop", "-f", "eph"]));
    let err = d
        .client()
        .get::<Instance>("/1.0/instances/eph")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
}

/// A container whose init dies at boot says why: the host limit its console names and its
/// last console lines, in its state and `berth info`; a stop by request says nothing, and
/// the next start clears it.
#[tokio::test]
async fn a_container_that_dies_at_boot_says_why() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.lxc(&["init", "bb", "dies"]));
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("boot-fail.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'Failed to create control group inotify object: Too many open files'\n\
         echo 'Exiting PID 1...'\nsleep 1\nexit 1\n",
    )
    .unwrap();
    ok(&d.lxc(&[
        "file",
        "push",
        "--mode",
        "0755",
        script.to_str().unwrap(),
        "dies/boot-fail.sh",
    ]));
    ok(&d.lxc(&[
        "config",
        "set",
        "dies",
        "raw.lxc",
        "lxc.init.cmd = /boot-fail.sh",
    ]));
    ok(&d.lxc(&["start", "dies"]));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let s = loop {
        let s = state(&d, "dies").await;
        if !s.stop_reason.is_empty() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no stop reason: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(s.status, "Stopped");
    assert!(
        s.stop_reason
            .contains("the host limit fs.inotify.max_user_instances was reached")
            && s.stop_reason.contains("Exiting PID 1..."),
        "{}",
        s.stop_reason
    );
    let info = ok(&d.berth(&["info", "dies"]));
    assert!(info.contains("Stopped at boot: its init exited"), "{info}");

    // Booting normally, then stopped by request: nothing to say.
    ok(&d.lxc(&["config", "unset", "dies", "raw.lxc"]));
    ok(&d.lxc(&["start", "dies"]));
    assert_eq!(state(&d, "dies").await.stop_reason, "");
    ok(&d.lxc(&["stop", "dies", "--force"]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = state(&d, "dies").await;
    assert_eq!((s.status.as_str(), s.stop_reason.as_str()), ("Stopped", ""));
}

/// `limits.pty` bounds the container's own devpts (its console is one of them): past it a
/// pty is refused, so the container cannot take the host's.
#[tokio::test]
async fn ptys_per_container_are_limited() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let err = fails(&d.berth(&["launch", "bb", "p0", "-c", "limits.pty=0"]));
    assert!(err.contains("limits.pty"), "{err}");
    ok(&d.berth(&["launch", "bb", "p1", "-c", "limits.pty=3"]));
    let mounts = ok(&d.berth(&["exec", "p1", "--", "grep", "devpts", "/proc/mounts"]));
    assert!(mounts.contains("max=3"), "{mounts}");
    let out = d.berth(&[
        "exec",
        "p1",
        "--",
        "sh",
        "-c",
        "exec 3<>/dev/ptmx 4<>/dev/ptmx; echo two; exec 5<>/dev/ptmx; echo three",
    ]);
    let (said, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        said.contains("two") && !said.contains("three"),
        "{said} {err}"
    );
    assert!(err.contains("No space left on device"), "{err}");
}

#[tokio::test]
async fn containers_survive_a_daemon_kill() {
    let mut d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.berth(&["launch", "bb", "keep"]));
    ok(&d.berth(&["launch", "bb", "gone"]));
    let pid = state(&d, "keep").await.pid;
    let gone = state(&d, "gone").await.pid;
    d.kill();
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the container outlives berthd"
    );
    // While no berthd runs, "gone" dies with its liblxc monitor, which cleans up nothing.
    let stat = std::fs::read_to_string(format!("/proc/{gone}/stat")).unwrap();
    let monitor: i32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    for p in [monitor, i32::try_from(gone).unwrap()] {
        let p = rustix::process::Pid::from_raw(p).unwrap();
        rustix::process::kill_process(p, rustix::process::Signal::KILL).unwrap();
    }
    let parents = d.leftover_cgroups();
    let cgroups = |name: &str| -> Vec<std::path::PathBuf> {
        parents
            .iter()
            .flat_map(|p| [p.join(name), p.join(format!("{name}.monitor"))])
            .filter(|p| p.exists())
            .collect()
    };
    for _ in 0..100 {
        if !std::path::Path::new(&format!("/proc/{gone}")).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !cgroups("gone").is_empty(),
        "the dead container left cgroups behind"
    );
    d.restart();
    // The next berthd reports it stopped and removes its leftovers; it starts again.
    assert_eq!(state(&d, "gone").await.status, "Stopped");
    assert_eq!(cgroups("gone"), Vec::<std::path::PathBuf>::new());
    let inst: Instance = d.client().get("/1.0/instances/gone").await.unwrap();
    assert_eq!(inst.config["volatile.last_state.power"], "STOPPED");
    ok(&d.berth(&["start", "gone"]));
    assert_eq!(state(&d, "gone").await.status, "Running");
    ok(&d.berth(&["delete", "-f", "gone"]));
    let s = state(&d, "keep").await;
    assert_eq!(
        (s.status.as_str(), s.pid),
        ("Running", pid),
        "same init after restart"
    );
    // A berthd in another network namespace than the container's monitor cannot ask it
    // to stop: it says so, and a forced stop kills the recorded init.
    d.restart_elsewhere();
    assert_eq!(state(&d, "keep").await.status, "Running");
    let err = fails(&d.berth(&["stop", "keep"]));
    assert!(err.contains("monitor cannot be reached"), "{err}");
    assert_eq!(state(&d, "keep").await.status, "Running");
    ok(&d.berth(&["stop", "keep", "-f"]));
    assert_eq!(state(&d, "keep").await.status, "Stopped");
    // Reaped by its monitor.
    for _ in 0..100 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the init was killed"
    );
    ok(&d.berth(&["delete", "keep"]));
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn exec_pipes_exit_codes_and_security() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.berth(&["launch", "bb", "x1"]));
    // Output, exit code, environment, cwd and user.
    let out = d.berth(&[
        "exec",
        "x1",
        "--env",
        "GREETING=hi",
        "--cwd",
        "/tmp",
        "--",
        "sh",
        "-c",
        "echo $GREETING from $(pwd); echo oops >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi from /tmp\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    let out = ok(&d.berth(&["exec", "x1", "--user", "1000", "--", "id", "-u"]));
    assert_eq!(out, "1000\n");
    // Inside, root is uid 0 of a user namespace mapped to unprivileged host ids.
    let map = ok(&d.berth(&["exec", "x1", "--", "cat", "/proc/self/uid_map"]));
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(fields[0], "0");
    assert_ne!(fields[1], "0", "{map}");
    // Blocked by seccomp or capabilities: writing the sysrq trigger and loading modules.
    let out = d.berth(&[
        "exec",
        "x1",
        "--",
        "sh",
        "-c",
        "echo h > /proc/sysrq-trigger",
    ]);
    assert_ne!(out.status.code(), Some(0), "sysrq write must fail");
    let out = d.berth(&["exec", "x1", "--", "sh", "-c", "insmod /nonexistent.ko"]);
    assert_ne!(out.status.code(), Some(0));
    // The seccomp policy answers ENOSYS (38) to kexec_load, module loading and
    // open_by_handle_at: a static probe built here calls each one inside.
    let work = tempfile::tempdir().unwrap();
    let probe = syscall_probe(work.path());
    ok(&d.berth(&[
        "file",
        "push",
        "--mode",
        "0755",
        probe.to_str().unwrap(),
        "x1/probe",
    ]));
    let out = ok(&d.berth(&["exec", "x1", "--", "/probe"]));
    for call in [
        "kexec_load",
        "init_module",
        "finit_module",
        "open_by_handle_at",
    ] {
        assert!(out.contains(&format!("{call} -1 38\n")), "{call}: {out}");
    }

    // Stdin reaches the process and its end is seen (EOF handled exactly).
    let out = d.berth_with_input(
        &["exec", "x1", "-T", "--", "wc", "-c"],
        &vec![b'x'; 100_000],
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "100000");

    // Through the real lxc client, with and without a terminal.
    let out = ok(&d.lxc(&["exec", "x1", "--", "echo", "via lxc"]));
    assert_eq!(out, "via lxc\n");
    let out = d.lxc(&["exec", "x1", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = ok(&d.lxc(&["exec", "x1", "-t", "--", "tty"]));
    assert!(out.starts_with("/dev/pts/"), "{out:?}");
    let out = ok(&d.berth(&["exec", "x1", "-t", "--", "sh", "-c", "stty size"]));
    assert!(out.contains(' '), "{out:?}");
    ok(&d.berth(&["delete", "-f", "x1"]));
}

/// The value of a cgroup file of a container, on cgroup v1 or v2.
fn cgroup_file(d: &Daemon, name: &str, controller: &str, v1: &str, v2: &str) -> String {
    let parent = d.cgroup_parent();
    let unified = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let path = if unified {
        format!("/sys/fs/cgroup/{parent}/{name}/{v2}")
    } else {
        format!("/sys/fs/cgroup/{controller}/{parent}/{name}/{v1}")
    };
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn limits_contain_fork_bombs_and_memory_hogs() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.berth(&[
        "launch",
        "bb",
        "lim",
        "-c",
        "limits.processes=20",
        "-c",
        "limits.memory=64MiB",
        "-c",
        "limits.kernel.nofile=200",
        "-c",
        "limits.cpu=1",
    ]));
    assert_eq!(cgroup_file(&d, "lim", "pids", "pids.max", "pids.max"), "20");
    assert_eq!(
        cgroup_file(&d, "lim", "memory", "memory.limit_in_bytes", "memory.max"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        ok(&d.berth(&["exec", "lim", "--", "sh", "-c", "ulimit -n"])),
        "200\n"
    );

    // A fork bomb stops at limits.processes while berthd stays responsive.
    let out = d.berth(&[
        "exec",
        "lim",
        "-T",
        "--",
        "sh",
        "-c",
        "(for i in $(seq 1 200); do sleep 60 & done) >/dev/null 2>&1 </dev/null &",
    ]);
    assert!(out.status.success());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = std::time::Instant::now();
    let s = state(&d, "lim").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "berthd answers while the bomb runs"
    );
    assert!(
        s.processes <= 20 && s.processes >= 10,
        "processes capped at 20: {}",
        s.processes
    );

    // A memory hog is killed at limits.memory.
    ok(&d.berth(&["restart", "-f", "lim"]));
    let out = d.berth(&[
        "exec",
        "lim",
        "-T",
        "--",
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' x); echo survived",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("survived"));

    // lxcfs: what the container reads of its memory, CPUs and uptime is its own.
    assert_eq!(
        ok(&d.berth(&["exec", "lim", "--", "head", "-1", "/proc/meminfo"])),
        "MemTotal:          65536 kB\n"
    );
    let top = ok(&d.berth(&["exec", "lim", "--", "top", "-b", "-n", "1"]));
    let mem: Vec<u64> = top
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .filter_map(|w| w.strip_suffix('K')?.parse().ok())
        .collect();
    assert_eq!(
        mem[0] + mem[1],
        65536,
        "top's used + free is the limit: {top}"
    );
    assert_eq!(ok(&d.berth(&["exec", "lim", "--", "nproc"])), "1\n");
    assert_eq!(
        ok(&d.berth(&[
            "exec",
            "lim",
            "--",
            "grep",
            "-c",
            "^processor",
            "/proc/cpuinfo"
        ])),
        "1\n"
    );
    let uptime = |s: &str| -> f64 { s.split_whitespace().next().unwrap().parse().unwrap() };
    let inside = uptime(&ok(&d.berth(&["exec", "lim", "--", "cat", "/proc/uptime"])));
    let host = uptime(&std::fs::read_to_string("/proc/uptime").unwrap());
    assert!(
        inside < 60.0 && inside < host,
        "container uptime {inside} s, host {host} s"
    );

    // Limits change live; bad values are refused and change nothing.
    let c = d.client();
    let r = c
        .query(
            Method::PATCH,
            "/1.0/instances/lim",
            Some(&json!({"config": {"limits.memory": "128MiB"}})),
        )
        .await
        .unwrap();
    // PATCH answers at once, with an empty sync reply, as LXD.
    assert_eq!((r.status, r.body.operation_id()), (200, None));
    assert_eq!(
        cgroup_file(&d, "lim", "memory", "memory.limit_in_bytes", "memory.max"),
        (128u64 << 20).to_string()
    );
    assert_eq!(
        ok(&d.berth(&["exec", "lim", "--", "head", "-1", "/proc/meminfo"])),
        "MemTotal:         131072 kB\n"
    );
    for (k, v) in [
        ("limits.memory", "lots"),
        ("limits.processes", "-1"),
        ("limits.kernel.nofile", "x"),
        ("limits.bogus", "1"),
    ] {
        let err = c
            .query(
                Method::PATCH,
                "/1.0/instances/lim",
                Some(&json!({"config": {k: v}})),
            )
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(400), "{k}={v}");
        assert!(err.to_string().contains(k), "{err}");
    }
    let inst: Instance = c.get("/1.0/instances/lim").await.unwrap();
    assert_eq!(inst.config["limits.memory"], "128MiB");
    ok(&d.berth(&["delete", "-f", "lim"]));
    // berthd started its own lxcfs unless the host runs one; the harness stops it.
    let own = d.dir().join("lxcfs");
    assert!(lxcfs_mounted(&own) || lxcfs_mounted(std::path::Path::new("/var/lib/lxcfs")));
    drop(d);
    assert!(!lxcfs_mounted(&own));
}

#[tokio::test]
async fn autostart_instances_start_with_berthd() {
    let mut d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.berth(&["launch", "bb", "auto", "-c", "boot.autostart=true"]));
    ok(&d.berth(&["init", "bb", "manual"]));
    ok(&d.berth(&["stop", "-f", "auto"]));
    d.restart();
    let mut status = String::new();
    for _ in 0..100 {
        status = state(&d, "auto").await.status;
        if status == "Running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "Running");
    assert_eq!(state(&d, "manual").await.status, "Stopped");
    let err = fails(&d.berth(&["launch", "bb", "bad", "-c", "boot.autostart=perhaps"]));
    assert!(err.contains("boot.autostart"), "{err}");
    ok(&d.berth(&["delete", "-f", "auto", "manual"]));
}

#[tokio::test]
async fn create_reports_unpack_progress() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    let mut events = c.events(&[berth_api::EventType::Operation]).await.unwrap();
    let body = json!({"name": "prog", "source": {"type": "image", "alias": "bb"}});
    let r = c
        .query(Method::POST, "/1.0/instances", Some(&body))
        .await
        .unwrap();
    let id = r.body.operation_id().unwrap().to_owned();
    let mut percents = vec![];
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(ev)) = events.next().await {
            if ev.metadata["id"].as_str() != Some(id.as_str()) {
                continue;
            }
            if let Some(p) = ev.metadata["metadata"]["progress"]["percent"].as_str() {
                percents.push(p.parse::<u32>().unwrap());
            }
            if ev.metadata["status"] == "Success" {
                break;
            }
        }
    })
    .await
    .unwrap();
    assert!(percents.len() >= 2, "{percents:?}");
    assert_eq!(percents.last(), Some(&100));
    ok(&d.berth(&["delete", "prog"]));
}

/// Runs pylxd script `script` (in tests/pylxd) against `d` with the busybox alias `bb`
/// and checks it printed `done`.
fn run_pylxd(d: &Daemon, script: &str, done: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/pylxd")
        .join(script);
    let out = std::process::Command::new("python3")
        .arg(path)
        .arg("bb")
        .env("LXD_DIR", d.dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pylxd failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(done));
}

#[tokio::test]
async fn pylxd_drives_containers() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    run_pylxd(&d, "lifecycle.py", "pylxd ok");
}

#[tokio::test]
async fn pylxd_drives_configuration() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    run_pylxd(&d, "config.py", "pylxd config ok");
}

/// The host range (base, size) of a running container's uid map, read from the host.
fn uid_range(d: &Daemon, name: &str) -> (u64, u64) {
    let map = ok(&d.berth(&["exec", name, "--", "cat", "/proc/self/uid_map"]));
    let f: Vec<u64> = map.split_whitespace().map(|v| v.parse().unwrap()).collect();
    assert_eq!(f[0], 0, "{map}");
    (f[1], f[2])
}

#[tokio::test]
async fn security_keys_idmaps_privileged_nesting_raw_lxc() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.berth(&[
        "launch",
        "bb",
        "shared",
        "-c",
        "security.idmap.isolated=false",
    ]));
    ok(&d.berth(&["launch", "bb", "iso1", "-c", "security.idmap.isolated=true"]));
    ok(&d.berth(&["launch", "bb", "iso2"]));
    // A range of its own is the default. Own maps are disjoint from each other and from
    // the shared one; the init of each runs as that range's first host uid.
    let ranges: Vec<(u64, u64)> = ["shared", "iso1", "iso2"]
        .iter()
        .map(|n| uid_range(&d, n))
        .collect();
    for (i, a) in ranges.iter().enumerate() {
        for b in &ranges[i + 1..] {
            assert!(a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0, "{ranges:?} overlap");
        }
    }
    for (n, r) in ["iso1", "iso2"].iter().zip(&ranges[1..]) {
        assert_eq!(u64::from(host_uid(state(&d, n).await.pid)), r.0);
        // Kept across restarts.
        ok(&d.berth(&["restart", "-f", n]));
        assert_eq!(uid_range(&d, n), *r);
    }
    let inst: Instance = d.client().get("/1.0/instances/iso2").await.unwrap();
    assert_eq!(inst.config["volatile.idmap.base"], ranges[2].0.to_string());
    // The server key brings back the shared map for new containers; existing ones keep
    // theirs, even through a config change and a restart.
    ok(&d.berth(&["config", "set", "instances.idmap.default=shared"]));
    ok(&d.berth(&["launch", "bb", "later"]));
    assert_eq!(uid_range(&d, "later"), ranges[0]);
    ok(&d.berth(&["config", "set", "iso2", "user.note", "kept"]));
    ok(&d.berth(&["restart", "-f", "iso2"]));
    assert_eq!(uid_range(&d, "iso2"), ranges[2]);
    let out = d.berth(&["config", "set", "instances.idmap.default=mine"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("instances.idmap.default"),
        "{out:?}"
    );
    ok(&d.berth(&["config", "unset", "instances.idmap.default"]));
    ok(&d.berth(&["delete", "-f", "later"]));

    // Privileged: no user namespace, root is host root.
    ok(&d.berth(&["launch", "bb", "priv", "-c", "security.privileged=true"]));
    assert_eq!(host_uid(state(&d, "priv").await.pid), 0);
    assert_eq!(
        uid_range(&d, "priv"),
        (0, 4_294_967_295),
        "the identity map of the host"
    );

    // Nesting: clean proc and sysfs instances for nested containers.
    let out = d.berth(&["exec", "shared", "--", "ls", "/dev/.lxc"]);
    assert!(!out.status.success());
    ok(&d.berth(&["launch", "bb", "nest", "-c", "security.nesting=true"]));
    let out = ok(&d.berth(&["exec", "nest", "--", "ls", "/dev/.lxc/proc/1/"]));
    assert!(out.contains("status"), "{out}");

    // Masked paths read as empty.
    let out = ok(&d.berth(&[
        "exec",
        "shared",
        "--",
        "sh",
        "-c",
        "wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; \
         touch /sys/firmware/x 2>/dev/null; echo $?",
    ]));
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "0", "1"]);

    // raw.lxc reaches the container; keys that break isolation and line breaks do not.
    ok(&d.berth(&[
        "launch",
        "bb",
        "raw",
        "-c",
        "raw.lxc=lxc.environment = BERTH_RAW=yes",
    ]));
    let env = ok(&d.berth(&["exec", "raw", "--", "cat", "/proc/1/environ"]));
    assert!(env.split('\0').any(|v| v == "BERTH_RAW=yes"), "{env:?}");
    let c = d.client();
    for (k, v, named) in [
        ("raw.lxc", "lxc.idmap = u 0 0 65536", "lxc.idmap"),
        (
            "raw.lxc",
            "lxc.hook.pre-start = /bin/sh",
            "lxc.hook.pre-start",
        ),
        (
            "raw.lxc",
            "lxc.cgroup.devices.allow = a",
            "lxc.cgroup.devices.allow",
        ),
        (
            "raw.lxc",
            "lxc.environment = A\rlxc.idmap = u 0 0 1",
            "line 1",
        ),
        (
            "raw.lxc",
            "lxc.environment = A\nlxc.idmap = u 0 0 1",
            "line 2",
        ),
        (
            "limits.memory",
            "64MiB\nlxc.idmap = u 0 0 65536",
            "limits.memory",
        ),
        ("security.privileged", "yes", "security.privileged"),
        ("security.idmap.size", "0", "security.idmap.size"),
    ] {
        let err = c
            .query(
                Method::PATCH,
                "/1.0/instances/raw",
                Some(&json!({"config": {k: v}})),
            )
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(400), "{k}={v:?}");
        assert!(err.to_string().contains(named), "{k}={v:?}: {err}");
        let out = fails(&d.berth(&["launch", "bb", "refused", "-c", &format!("{k}={v}")]));
        assert!(out.contains(named), "{out}");
    }
    let inst: Instance = c.get("/1.0/instances/raw").await.unwrap();
    assert_eq!(inst.config["raw.lxc"], "lxc.environment = BERTH_RAW=yes");
    let names: Vec<String> = c.get("/1.0/instances").await.unwrap();
    assert!(!names.iter().any(|n| n.ends_with("/refused")));
    for n in ["shared", "iso1", "iso2", "priv", "nest", "raw"] {
        ok(&d.berth(&["delete", "-f", n]));
    }
}

#[tokio::test]
async fn rename_logs_recorded_output_info_and_config() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let c = d.client();
    ok(&d.berth(&["launch", "bb", "run1", "-c", "user.role=web"]));
    ok(&d.berth(&["init", "bb", "idle1"]));

    // Rename: running instances are refused; stopped ones move with their data.
    let err = fails(&d.berth(&["rename", "run1", "other"]));
    assert!(
        err.contains("Renaming of running instance not allowed"),
        "{err}"
    );
    ok(&d.lxc(&["rename", "idle1", "idle2"]));
    let names = ok(&d.berth(&["list", "-f", "csv", "-c", "n"]));
    assert_eq!(names, "idle2\nrun1\n");
    let err = c
        .query(
            Method::POST,
            "/1.0/instances/idle2",
            Some(&json!({"name": "run1"})),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    let err = c
        .query(
            Method::POST,
            "/1.0/instances/idle2",
            Some(&json!({"name": "bad_name"})),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    ok(&d.berth(&["start", "idle2"]));
    assert_eq!(
        ok(&d.berth(&["exec", "idle2", "--", "echo", "moved"])),
        "moved\n"
    );

    // Exec without websockets, its output recorded into log files.
    let r = c
        .query(
            Method::POST,
            "/1.0/instances/run1/exec",
            Some(&json!({
                "command": ["sh", "-c", "echo out; echo err >&2; exit 4"],
                "record-output": true, "wait-for-websocket": false, "interactive": false,
            })),
        )
        .await
        .unwrap();
    let op = c
        .wait_success(r.body.operation_id().unwrap())
        .await
        .unwrap();
    let md = op.metadata.unwrap();
    assert_eq!(md["return"], 4);
    let out = md["output"]["1"].as_str().unwrap().to_owned();
    let err_log = md["output"]["2"].as_str().unwrap().to_owned();
    assert_eq!(c.get_file(&out).await.unwrap(), "out\n");
    assert_eq!(c.get_file(&err_log).await.unwrap(), "err\n");
    let logs: Vec<String> = c.get("/1.0/instances/run1/logs").await.unwrap();
    assert!(logs.contains(&out) && logs.contains(&"/1.0/instances/run1/logs/lxc.log".to_owned()));
    assert!(!logs.iter().any(|l| l.ends_with("init.pid")), "{logs:?}");
    c.query(Method::DELETE, &out, None).await.unwrap();
    let logs: Vec<String> = c.get("/1.0/instances/run1/logs").await.unwrap();
    assert!(!logs.contains(&out));
    for (method, path, status) in [
        (Method::DELETE, "/1.0/instances/run1/logs/lxc.log", 400),
        (Method::GET, "/1.0/instances/run1/logs/init.pid", 400),
        (Method::GET, "/1.0/instances/run1/logs/exec_none", 404),
        (Method::GET, "/1.0/instances/nope/logs", 404),
    ] {
        let e = c.query(method, path, None).await.unwrap_err();
        assert_eq!(e.status(), Some(status), "{path}: {e}");
    }

    // info, from berth and the real lxc client.
    for out in [
        ok(&d.berth(&["info", "run1"])),
        ok(&d.lxc(&["info", "run1"])),
    ] {
        assert!(out.contains("Name: run1\n"), "{out}");
        assert!(out.contains("Status: RUNNING\n"), "{out}");
        assert!(out.contains("Processes: "), "{out}");
    }
    let out = ok(&d.berth(&["info", "run1", "--show-log"]));
    assert!(out.contains("\nLog:\n"), "{out}");
    // The network state comes from inside the container's namespace.
    let st = state(&d, "run1").await;
    let lo = &st.network.unwrap()["lo"];
    assert_eq!(lo["type"], "loopback");
    assert!(
        lo["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["address"] == "127.0.0.1" && a["scope"] == "local"),
        "{lo}"
    );
    let out = ok(&d.berth(&["info", "run1"]));
    assert!(out.contains("inet: 127.0.0.1/8 (local)"), "{out}");

    // config show|get|set|unset, and through lxc.
    assert_eq!(
        ok(&d.berth(&["config", "get", "run1", "user.role"])),
        "web\n"
    );
    ok(&d.berth(&["config", "set", "run1", "user.role", "db"]));
    ok(&d.berth(&["config", "set", "run1", "user.a=1", "limits.processes=50"]));
    assert_eq!(ok(&d.lxc(&["config", "get", "run1", "user.role"])), "db\n");
    ok(&d.lxc(&["config", "set", "run1", "user.b", "2"]));
    let shown = ok(&d.berth(&["config", "show", "run1"]));
    for want in [
        "user.role: db",
        "user.a: \"1\"",
        "user.b: \"2\"",
        "limits.processes: \"50\"",
        "profiles:\n- default",
    ] {
        assert!(shown.contains(want), "{want} in {shown}");
    }
    assert_eq!(
        cgroup_file(&d, "run1", "pids", "pids.max", "pids.max"),
        "50",
        "set applies live"
    );
    ok(&d.berth(&["config", "unset", "run1", "user.a"]));
    let err = fails(&d.berth(&["config", "unset", "run1", "user.a"]));
    assert!(err.contains("user.a"), "{err}");
    let err = fails(&d.berth(&["config", "set", "run1", "limits.memory=lots"]));
    assert!(err.contains("limits.memory"), "{err}");

    // list: columns and filters.
    let out = ok(&d.berth(&[
        "list",
        "-f",
        "csv",
        "-c",
        "nsP,config:user.role:ROLE",
        "status=running",
    ]));
    assert_eq!(out, "idle2,RUNNING,default,\nrun1,RUNNING,default,db\n");
    let out = ok(&d.berth(&["list", "-f", "csv", "-c", "n", "user.role=d.*"]));
    assert_eq!(out, "run1\n");
    let out = ok(&d.berth(&["list", "-f", "csv", "-c", "n", "idle"]));
    assert_eq!(out, "idle2\n");
    let err = fails(&d.berth(&["list", "-c", "nL"]));
    assert!(err.contains("column L"), "{err}");
    let out = ok(&d.berth(&["list", "-f", "csv", "-c", "nsmS", "run1"]));
    assert!(
        out.starts_with("run1,RUNNING,") && out.ends_with(",0\n"),
        "{out}"
    );
    assert!(!out.contains(",0B,"), "memory read: {out}");

    // Selective recursion: LXD's (whole instances, the network or disk only when named,
    // as `%3B` or `;`), and berth's own (only the keys and state parts named).
    for path in [
        "/1.0/instances?recursion=2;fields=state.network",
        "/1.0/instances?recursion=2%3Bfields%3Dstate.network",
    ] {
        let whole: Vec<serde_json::Value> = c.get(path).await.unwrap();
        let run1 = whole.iter().find(|v| v["name"] == "run1").unwrap();
        assert_eq!(run1["expanded_config"]["user.role"], "db");
        assert_eq!(run1["state"]["status"], "Running");
        assert!(run1["state"]["pid"].as_i64().unwrap() > 0);
        assert_eq!(run1["state"]["network"]["lo"]["type"], "loopback");
        assert!(
            run1["state"]["network"]["lo"]["counters"].is_object(),
            "{run1}"
        );
        assert!(
            run1["state"]["memory"]["usage"].as_i64().unwrap() > 0,
            "{run1}"
        );
    }
    let one: serde_json::Value = c
        .get("/1.0/instances/run1?recursion=1;fields=")
        .await
        .unwrap();
    assert!(one["state"]["network"].is_null(), "{one}");
    assert!(one["state"]["processes"].as_i64().unwrap() > 0, "{one}");
    let mine: Vec<serde_json::Value> = c
        .get("/1.0/instances?recursion=2;fields=name,state.network")
        .await
        .unwrap();
    let run1 = mine.iter().find(|v| v["name"] == "run1").unwrap();
    assert_eq!(run1["state"]["network"]["lo"]["type"], "loopback");
    assert!(
        run1["state"]["memory"].is_null(),
        "counters not asked: {run1}"
    );
    assert!(run1["state"]["pid"].as_i64().unwrap() > 0, "{run1}");
    assert!(
        run1["state"]["network"]["lo"]["counters"].is_null(),
        "{run1}"
    );
    // The interfaces berthd kept since that list are not served once they change.
    ok(&d.berth(&[
        "exec",
        "run1",
        "--",
        "ip",
        "addr",
        "add",
        "10.77.0.9/32",
        "dev",
        "lo",
    ]));
    let again: Vec<serde_json::Value> = c
        .get("/1.0/instances?recursion=2;fields=name,state.network")
        .await
        .unwrap();
    let run1 = again.iter().find(|v| v["name"] == "run1").unwrap();
    let lo = run1["state"]["network"]["lo"]["addresses"].to_string();
    assert!(lo.contains("10.77.0.9"), "{lo}");
    let counted: Vec<serde_json::Value> = c
        .get("/1.0/instances?recursion=2;fields=name,state.network.counters")
        .await
        .unwrap();
    let run1 = counted.iter().find(|v| v["name"] == "run1").unwrap();
    assert!(
        run1["state"]["network"]["lo"]["counters"]["packets_received"].is_u64(),
        "{run1}"
    );
    let some: Vec<serde_json::Value> = c
        .get("/1.0/instances?recursion=2;fields=name,snapshots,state.memory")
        .await
        .unwrap();
    let run1 = some.iter().find(|v| v["name"] == "run1").unwrap();
    let keys: Vec<&String> = run1.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["name", "snapshots", "state"], "{run1}");
    assert!(run1["state"]["memory"]["usage"].as_i64().unwrap() > 0);
    assert!(run1["state"]["network"].is_null(), "{run1}");
    for bad in ["state.bogus", "bogus"] {
        let path = format!("/1.0/instances?recursion=2;fields=name,{bad}");
        let e = c.query(Method::GET, &path, None).await.unwrap_err();
        assert_eq!(e.status(), Some(400), "{path}: {e}");
        assert!(e.to_string().contains(bad), "{e}");
    }
    for n in ["run1", "idle2"] {
        ok(&d.berth(&["delete", "-f", n]));
    }
}

#[tokio::test]
async fn parallel_state_changes_all_return_and_settle() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    ok(&d.berth(&["launch", "bb", "busy"]));
    let actions = [
        "stop", "start", "restart", "freeze", "unfreeze", "stop", "restart", "start", "freeze",
        "start", "stop", "freeze", "unfreeze", "restart", "stop", "start", "freeze", "stop",
        "start", "restart",
    ];
    let started = std::time::Instant::now();
    let tasks: Vec<_> = actions
        .iter()
        .map(|action| {
            let c = d.client();
            let action = (*action).to_owned();
            tokio::spawn(async move {
                let body = json!({"action": action, "force": true, "timeout": -1});
                let r = c
                    .query(Method::PUT, "/1.0/instances/busy/state", Some(&body))
                    .await
                    .unwrap();
                let op = c
                    .wait_operation(r.body.operation_id().unwrap(), None)
                    .await
                    .unwrap();
                (action, op)
            })
        })
        .collect();
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    // Changes run one at a time: the last to finish successfully decides the state.
    let last = done
        .iter()
        .filter(|(_, op)| op.status == "Success")
        .max_by_key(|(_, op)| op.updated_at.clone())
        .map(|(a, _)| a.as_str())
        .unwrap();
    let want = match last {
        "stop" => "Stopped",
        "freeze" => "Frozen",
        _ => "Running",
    };
    assert_eq!(state(&d, "busy").await.status, want, "after {done:?}");
    ok(&d.berth(&["delete", "-f", "busy"]));
}

#[tokio::test]
async fn start_and_rename_templates_are_rendered() {
    let d = Daemon::start();
    // The busybox image with two more templates: one for every start, one for renames.
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let untar = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(busybox_image())
        .arg("-C")
        .arg(&tree)
        .status()
        .unwrap();
    assert!(untar.success());
    let mut md = std::fs::read_to_string(tree.join("metadata.yaml")).unwrap();
    md.push_str(
        "  /etc/greeting:\n    when:\n    - start\n    template: greeting.tpl\n  /etc/renamed:\n    when:\n    - rename\n    template: renamed.tpl\n",
    );
    std::fs::write(tree.join("metadata.yaml"), md).unwrap();
    std::fs::write(
        tree.join("templates/greeting.tpl"),
        "{{ config_get(\"user.greeting\", \"hello\") }} from {{ instance.name }}\n",
    )
    .unwrap();
    std::fs::write(
        tree.join("templates/renamed.tpl"),
        "now {{ instance.name }}\n",
    )
    .unwrap();
    let image = work.path().join("image.tar.gz");
    let tar = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&image)
        .arg("-C")
        .arg(&tree)
        .args(["metadata.yaml", "templates", "rootfs"])
        .status()
        .unwrap();
    assert!(tar.success());
    let opts = ImportOptions {
        aliases: vec!["tpl".into()],
        ..Default::default()
    };
    d.client().import_image(&image, None, &opts).await.unwrap();

    ok(&d.berth(&["launch", "tpl", "t1"]));
    let read = |n: &str, f: &str| ok(&d.berth(&["exec", n, "--", "cat", f]));
    assert_eq!(read("t1", "/etc/greeting"), "hello from t1\n");
    ok(&d.berth(&["config", "set", "t1", "user.greeting=hi"]));
    ok(&d.berth(&["restart", "-f", "t1"]));
    assert_eq!(read("t1", "/etc/greeting"), "hi from t1\n");
    ok(&d.berth(&["stop", "-f", "t1"]));
    ok(&d.berth(&["rename", "t1", "t2"]));
    ok(&d.berth(&["start", "t2"]));
    assert_eq!(read("t2", "/etc/renamed"), "now t2\n");
    assert_eq!(read("t2", "/etc/greeting"), "hi from t2\n");
    ok(&d.berth(&["delete", "-f", "t2"]));
}

#[tokio::test]
async fn spare_volumes_serve_launches_and_go_with_their_image_and_pool() {
    let d = Daemon::start();
    berth_e2e::with_busybox(&d).await;
    let fp = ok(&d.lxc(&["image", "list", "-f", "csv", "-c", "F"]));
    let fp = fp.trim().to_owned();
    ok(&d.berth(&["storage", "create", "second", "dir"]));
    let spare = |pool: &str| {
        let dir = d.dir().join(format!("storage-pools/{pool}/containers"));
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten().any(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with(".spare-") && !n.ends_with(".tmp")
                })
            })
            .unwrap_or(false)
    };
    let wait_spare = |pool: &'static str| {
        for _ in 0..500 {
            if spare(pool) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("no spare volume on {pool}");
    };
    // The first launch unpacks and leaves a spare; the next takes it, templates applied.
    ok(&d.berth(&["launch", "bb", "first"]));
    wait_spare("default");
    ok(&d.berth(&["launch", "bb", "second"]));
    assert_eq!(
        ok(&d.berth(&["exec", "second", "--", "cat", "/etc/hostname"])),
        "second\n"
    );
    assert_eq!(
        ok(&d.berth(&["exec", "second", "--", "hostname"])),
        "second\n"
    );
    wait_spare("default");
    // Spares are not volumes a user sees.
    let volumes = ok(&d.lxc(&["storage", "volume", "list", "default", "-f", "csv"]));
    assert!(!volumes.contains(".spare"), "{volumes}");
    // A pool holding only spares can be deleted.
    ok(&d.berth(&["launch", "bb", "elsewhere", "-s", "second"]));
    wait_spare("second");
    ok(&d.berth(&["delete", "-f", "elsewhere"]));
    ok(&d.berth(&["storage", "delete", "second"]));
    // The spare goes with its image.
    ok(&d.berth(&["image", "delete", &fp]));
    assert!(!spare("default"));
    ok(&d.berth(&["delete", "-f", "first", "second"]));
}
