//! lxcfs: the FUSE filesystem that shows each container its own `/proc/meminfo`,
//! `/proc/cpuinfo`, `/proc/uptime`, … so `free`, `top`, `uptime` and `nproc` inside see the
//! container's limits.
//!
//! berthd uses the host's lxcfs when one is mounted at `/var/lib/lxcfs` (the distribution's
//! service). Otherwise it starts its own at `DIR/lxcfs` the first time a container starts,
//! in its own process group so it outlives berthd: running containers keep using it, and the
//! next berthd finds it mounted. A dead mount (lxcfs crashed) is detached and replaced.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Failure, Result};

/// Where the distribution's lxcfs service mounts it.
pub const SYSTEM: &str = "/var/lib/lxcfs";

/// The `/proc` files lxcfs virtualises.
const PROC_FILES: [&str; 8] = [
    "cpuinfo",
    "diskstats",
    "loadavg",
    "meminfo",
    "slabinfo",
    "stat",
    "swaps",
    "uptime",
];

/// This process's mount table.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Whether an lxcfs is mounted at `path`, per the mount table `mountinfo`.
fn mounted_in(mountinfo: &Path, path: &Path) -> bool {
    let table = std::fs::read_to_string(mountinfo).unwrap_or_default();
    let want = path.to_string_lossy();
    table.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-");
        f.get(4) == Some(&want.as_ref()) && sep.and_then(|i| f.get(i + 1)) == Some(&"fuse.lxcfs")
    })
}

/// Whether an lxcfs is mounted at `path` (per this process's mount table).
fn mounted(path: &Path) -> bool {
    mounted_in(Path::new(MOUNTINFO), path)
}

/// Whether the lxcfs at `path` answers.
fn alive(path: &Path) -> bool {
    std::fs::metadata(path.join("proc/uptime")).is_ok()
}

/// The mounted, answering lxcfs to use, starting berthd's own (at `own`) when the host has
/// none. `None` (with a warning in the log) when lxcfs is not installed or does not come up:
/// containers then start without it.
pub fn ensure(own: &Path, log: &Path) -> Option<PathBuf> {
    let system = Path::new(SYSTEM);
    if mounted(system) && alive(system) {
        return Some(system.to_owned());
    }
    if mounted(own) {
        if alive(own) {
            return Some(own.to_owned());
        }
        tracing::warn!(path = %own.display(), "lxcfs stopped answering; starting it again");
        let _ = rustix::mount::unmount(own, rustix::mount::UnmountFlags::DETACH);
    }
    if let Err(e) = start(own, log) {
        tracing::warn!(error = %e, "Containers start without lxcfs");
        return None;
    }
    Some(own.to_owned())
}

fn start(own: &Path, log: &Path) -> Result<()> {
    std::fs::create_dir_all(own)
        .map_err(|e| Failure::failed(format!("Failed to create {}", own.display()), e))?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Failure::failed(format!("Failed to open {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| Failure::failed(format!("Failed to open {}", log.display()), e))?;
    let pidfile = own.with_extension("pid");
    let mut child = Command::new("lxcfs")
        .args(["--enable-loadavg", "--enable-cfs", "-p"])
        .arg(&pidfile)
        .arg(own)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own process group: a signal to berthd's group must not unmount it under
        // running containers.
        .process_group(0)
        .spawn()
        .map_err(|e| Failure::failed("Failed to run lxcfs", e))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(mounted(own) && alive(own)) {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Failure::internal(format!(
                "lxcfs exited at start ({status}); see {}",
                log.display()
            )));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Failure::internal("lxcfs did not come up within 5 s"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::info!(path = %own.display(), pid = child.id(), "Started lxcfs");
    // Reap it if it ever exits while berthd runs.
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// The LXC mount entries that bind lxcfs's files over the container's own.
pub fn mount_entries(lxcfs: &Path) -> Vec<String> {
    let mut out: Vec<String> = PROC_FILES
        .iter()
        .filter(|f| lxcfs.join("proc").join(f).exists())
        .map(|f| {
            format!(
                "{} proc/{f} none bind,optional 0 0",
                lxcfs.join("proc").join(f).display()
            )
        })
        .collect();
    let cpu = lxcfs.join("sys/devices/system/cpu");
    if cpu.join("uevent").exists() {
        out.push(format!(
            "{} sys/devices/system/cpu none bind,optional 0 0",
            cpu.display()
        ));
    } else {
        // Older lxcfs: its cpu directory is not a full copy; bind its files one by one.
        let mut files: Vec<String> = std::fs::read_dir(&cpu)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        files.dedup();
        out.extend(files.iter().map(|f| {
            format!(
                "{} sys/devices/system/cpu/{f} none bind,optional 0 0",
                cpu.join(f).display()
            )
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lxcfs_mounts_in_a_mount_table() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("mountinfo");
        std::fs::write(
            &table,
            "36 25 0:32 / /var/lib/lxcfs rw,nosuid shared:1 - fuse.lxcfs lxcfs rw\n\
             37 25 0:33 / /srv/other rw - fuse.sshfs other rw\n",
        )
        .unwrap();
        assert!(mounted_in(&table, Path::new("/var/lib/lxcfs")));
        assert!(!mounted_in(&table, Path::new("/srv/other")), "not lxcfs");
        assert!(!mounted_in(
            &dir.path().join("none"),
            Path::new("/var/lib/lxcfs")
        ));
        // What a container gets bound: the /proc files this lxcfs has, and its cpu files.
        let fs = dir.path().join("lxcfs");
        std::fs::create_dir_all(fs.join("proc")).unwrap();
        std::fs::create_dir_all(fs.join("sys/devices/system/cpu")).unwrap();
        std::fs::write(fs.join("proc/meminfo"), "").unwrap();
        std::fs::write(fs.join("sys/devices/system/cpu/online"), "").unwrap();
        let entries = mount_entries(&fs);
        assert_eq!(entries.len(), 2, "{entries:?}");
        assert!(
            entries[0].ends_with("proc/meminfo none bind,optional 0 0"),
            "{entries:?}"
        );
        assert!(
            entries[1].contains("sys/devices/system/cpu/online"),
            "{entries:?}"
        );
    }
}
