//! Reading a container's cgroup counters on cgroup v1 (per-controller hierarchies) and v2.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Whether the host runs the unified (v2) cgroup hierarchy only (checked once: every
/// counter read asks).
pub fn is_v2() -> bool {
    static V2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V2.get_or_init(|| Path::new(ROOT).join("cgroup.controllers").exists())
}

fn dir(controller: &str, cg: &str) -> PathBuf {
    if is_v2() {
        Path::new(ROOT).join(cg)
    } else {
        Path::new(ROOT).join(controller).join(cg)
    }
}

fn read_i64(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Processes in the cgroup and below: the pids controller's count (tasks, as LXD
/// reports), else a walk of the tree.
pub fn processes(cg: &str) -> i64 {
    if let Some(n) = read_i64(&dir("pids", cg).join("pids.current")) {
        return n;
    }
    fn count(d: &Path) -> i64 {
        let own = std::fs::read_to_string(d.join("cgroup.procs"))
            .map(|s| s.lines().count() as i64)
            .unwrap_or(0);
        let children: i64 = std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| count(&e.path()))
            .sum();
        own + children
    }
    count(&dir("pids", cg))
}

/// Memory in use, in bytes.
pub fn memory_usage(cg: &str) -> i64 {
    if is_v2() {
        read_i64(&dir("memory", cg).join("memory.current")).unwrap_or(0)
    } else {
        read_i64(&dir("memory", cg).join("memory.usage_in_bytes")).unwrap_or(0)
    }
}

/// The most memory used since the container started, in bytes.
pub fn memory_peak(cg: &str) -> i64 {
    let file = if is_v2() {
        "memory.peak"
    } else {
        "memory.max_usage_in_bytes"
    };
    read_i64(&dir("memory", cg).join(file)).unwrap_or(0)
}

/// The memory limit, in bytes; `None` when unlimited.
pub fn memory_limit(cg: &str) -> Option<i64> {
    let file = if is_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    // v2 writes "max"; v1 a page-rounded i64::MAX.
    read_i64(&dir("memory", cg).join(file)).filter(|v| *v < i64::MAX / 2)
}

/// CPU time used, in nanoseconds.
pub fn cpu_usage(cg: &str) -> i64 {
    if is_v2() {
        let stat = std::fs::read_to_string(dir("cpu", cg).join("cpu.stat")).unwrap_or_default();
        stat.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(|us| us * 1000)
            .unwrap_or(0)
    } else {
        read_i64(&dir("cpuacct", cg).join("cpuacct.usage")).unwrap_or(0)
    }
}

/// Freezes or thaws every process of the cgroup, waiting until the kernel reports it done.
pub fn set_frozen(cg: &str, frozen: bool) -> std::io::Result<()> {
    if is_v2() {
        std::fs::write(
            dir("freezer", cg).join("cgroup.freeze"),
            if frozen { "1" } else { "0" },
        )?;
    } else {
        std::fs::write(
            dir("freezer", cg).join("freezer.state"),
            if frozen { "FROZEN" } else { "THAWED" },
        )?;
    }
    for _ in 0..500 {
        if is_frozen(cg) == frozen {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(std::io::Error::other(
        "the cgroup did not reach the requested freezer state",
    ))
}

/// Whether the cgroup is frozen.
pub fn is_frozen(cg: &str) -> bool {
    if is_v2() {
        let events =
            std::fs::read_to_string(dir("freezer", cg).join("cgroup.events")).unwrap_or_default();
        events.lines().any(|l| l.trim() == "frozen 1")
    } else {
        std::fs::read_to_string(dir("freezer", cg).join("freezer.state"))
            .is_ok_and(|s| s.trim() == "FROZEN")
    }
}

/// Removes this daemon's cgroup parent directory where it is empty (no container runs).
pub fn remove_parent(parent: &str) {
    let dirs: Vec<PathBuf> = if is_v2() {
        vec![Path::new(ROOT).join(parent)]
    } else {
        std::fs::read_dir(ROOT)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(parent))
            .collect()
    };
    for d in dirs {
        // Fails (EBUSY, ENOTEMPTY) while any container's cgroup remains: that is fine.
        let _ = std::fs::remove_dir(d);
    }
}

/// Writes one cgroup file of a container's cgroup.
pub fn write(controller: &str, cg: &str, file: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(dir(controller, cg).join(file), value)
}

/// Removes what a container left in the cgroup tree (its own and its monitor's
/// directories, bottom-up) when no process remains in them: after a monitor was killed,
/// liblxc never cleaned up. Directories still holding processes stay: returns whether
/// none remains.
pub fn remove_leftovers(parent: &str, name: &str) -> bool {
    fn remove_tree(dir: &Path) {
        for child in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&child.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let roots: Vec<PathBuf> = if is_v2() {
        vec![PathBuf::from(ROOT)]
    } else {
        std::fs::read_dir(ROOT)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    };
    let mut gone = true;
    for root in roots {
        for d in [name.to_owned(), format!("{name}.monitor")] {
            let path = root.join(parent).join(d);
            if path.is_dir() {
                remove_tree(&path);
                gone &= !path.exists();
            }
        }
    }
    gone
}
