//! A container's cgroups on cgroup v1 (per-controller hierarchies) and v2: counters, the
//! freezer, limits written live, and what a stopped container leaves behind.
//!
//! Everything works under a root path (`/sys/fs/cgroup` on a host), so tests run the real
//! code against a tree built in a temporary directory.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustix::fs::{Mode, OFlags};

/// The controllers a container's state reads, in the order of [`Cgroups::handles`].
const READ: [&str; 4] = ["memory", "pids", "cpuacct", "freezer"];

/// The cgroup tree under `root`; whether it is the unified (v2) hierarchy is read once.
#[derive(Debug, Clone)]
pub struct Cgroups {
    root: PathBuf,
    v2: bool,
    /// The top directories of the controllers in [`READ`] (on v2 the first is the tree's
    /// top), opened once: a list of thousands opens each container's files beneath them
    /// without walking from `/` or opening the container's directories.
    handles: Arc<[OnceLock<OwnedFd>; 4]>,
}

/// What an instance's state shows of its cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub processes: i64,
    pub memory_usage: i64,
    pub memory_peak: i64,
    /// `None` when unlimited.
    pub memory_limit: Option<i64>,
    /// Nanoseconds.
    pub cpu_usage: i64,
}

/// Reads the small file `name` under the directory `dir` into `buf` (a state with counters
/// reads five of these). A cgroup file comes whole in one read: a short read is its end.
fn read_at<'b>(dir: &OwnedFd, name: &str, buf: &'b mut [u8]) -> Option<&'b str> {
    let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut n = 0;
    while n < buf.len() {
        match rustix::io::read(&fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(r) if n + r < buf.len() => {
                n += r;
                break;
            }
            Ok(r) => n += r,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
    }
    std::str::from_utf8(&buf[..n]).ok()
}

impl Cgroups {
    /// The host's tree, at `/sys/fs/cgroup`.
    pub fn host() -> Self {
        Self::at(PathBuf::from("/sys/fs/cgroup"))
    }

    /// The tree at `root`: v2 when it has `cgroup.controllers` at its top.
    pub fn at(root: PathBuf) -> Self {
        let v2 = root.join("cgroup.controllers").exists();
        Cgroups {
            root,
            v2,
            handles: Arc::default(),
        }
    }

    /// The open top directory of controller `READ[i]` (of the tree on v2); `None` while
    /// it cannot be opened (tried again on the next call).
    fn handle(&self, i: usize) -> Option<&OwnedFd> {
        let i = if self.v2 { 0 } else { i };
        let cell = self.handles.get(i)?;
        if let Some(fd) = cell.get() {
            return Some(fd);
        }
        let top = if self.v2 {
            self.root.clone()
        } else {
            self.root.join(READ[i])
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(top, flags, Mode::empty()).ok()?;
        Some(cell.get_or_init(|| fd))
    }

    /// Reads file `name` of cgroup `cg` in controller `READ[i]` into `buf`, trimmed.
    fn read<'b>(&self, i: usize, cg: &str, name: &str, buf: &'b mut [u8]) -> Option<&'b str> {
        let path = format!("{cg}/{name}");
        read_at(self.handle(i)?, &path, buf).map(str::trim)
    }

    /// Whether the host runs the unified (v2) hierarchy only.
    pub fn is_v2(&self) -> bool {
        self.v2
    }

    fn dir(&self, controller: &str, cg: &str) -> PathBuf {
        if self.v2 {
            self.root.join(cg)
        } else {
            self.root.join(controller).join(cg)
        }
    }

    /// Processes in the cgroup and below: the pids controller's count (tasks, as LXD
    /// reports), else a walk of the tree.
    pub fn processes(&self, cg: &str) -> i64 {
        let mut buf = [0u8; 64];
        if let Some(n) = self
            .read(1, cg, "pids.current", &mut buf)
            .and_then(|t| t.parse().ok())
        {
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
        count(&self.dir("pids", cg))
    }

    /// Freezes or thaws every process of the cgroup, waiting until the kernel reports it
    /// done.
    pub fn set_frozen(&self, cg: &str, frozen: bool) -> std::io::Result<()> {
        if self.v2 {
            std::fs::write(
                self.dir("freezer", cg).join("cgroup.freeze"),
                if frozen { "1" } else { "0" },
            )?;
        } else {
            std::fs::write(
                self.dir("freezer", cg).join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            )?;
        }
        for _ in 0..500 {
            if self.is_frozen(cg) == frozen {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(std::io::Error::other(
            "the cgroup did not reach the requested freezer state",
        ))
    }

    /// The counters of the cgroup, in one pass: five small files opened under the controllers' held directories (see [`Cgroups::handles`]).
    pub fn counters(&self, cg: &str) -> Counters {
        let mut buf = [0u8; 1024];
        let v2 = self.v2;
        let mut num = |i: usize, name: &str| -> Option<i64> {
            self.read(i, cg, name, &mut buf)?.parse::<i64>().ok()
        };
        let memory_usage = num(
            0,
            if v2 {
                "memory.current"
            } else {
                "memory.usage_in_bytes"
            },
        );
        let memory_peak = num(
            0,
            if v2 {
                "memory.peak"
            } else {
                "memory.max_usage_in_bytes"
            },
        );
        // v2 writes "max"; v1 a page-rounded i64::MAX.
        let memory_limit = num(
            0,
            if v2 {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            },
        )
        .filter(|v| *v < i64::MAX / 2);
        let cpu_usage = if v2 {
            self.read(2, cg, "cpu.stat", &mut buf)
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<i64>().ok())
                })
                .map(|us| us * 1000)
        } else {
            num(2, "cpuacct.usage")
        };
        Counters {
            processes: self.processes(cg),
            memory_usage: memory_usage.unwrap_or(0),
            memory_peak: memory_peak.unwrap_or(0),
            memory_limit,
            cpu_usage: cpu_usage.unwrap_or(0),
        }
    }

    /// Whether the cgroup is frozen.
    pub fn is_frozen(&self, cg: &str) -> bool {
        let mut buf = [0u8; 1024];
        self.read(3, cg, self.freezer_name(), &mut buf)
            .is_some_and(|t| self.says_frozen(t))
    }

    /// The file that tells whether a cgroup is frozen.
    fn freezer_name(&self) -> &'static str {
        if self.v2 {
            "cgroup.events"
        } else {
            "freezer.state"
        }
    }

    fn says_frozen(&self, text: &str) -> bool {
        if self.v2 {
            text.lines().any(|l| l.trim() == "frozen 1")
        } else {
            text.trim() == "FROZEN"
        }
    }

    /// The cgroup's freezer file, opened to be read again with [`Cgroups::frozen_by`]
    /// (a list of thousands then walks no path to it).
    pub fn freezer_file(&self, cg: &str) -> Option<OwnedFd> {
        let path = format!("{cg}/{}", self.freezer_name());
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        rustix::fs::openat(self.handle(3)?, path, flags, Mode::empty()).ok()
    }

    /// Whether the cgroup of `file` (from [`Cgroups::freezer_file`]) is frozen: read
    /// anew from its start; `None` once the cgroup is gone.
    pub fn frozen_by(&self, file: &OwnedFd) -> Option<bool> {
        let mut buf = [0u8; 256];
        let n = rustix::io::pread(file, &mut buf, 0).ok()?;
        let text = std::str::from_utf8(buf.get(..n)?).ok()?;
        Some(self.says_frozen(text))
    }

    /// The hierarchies' roots: the one tree on v2, each controller's on v1.
    fn roots(&self) -> Vec<PathBuf> {
        if self.v2 {
            vec![self.root.clone()]
        } else {
            std::fs::read_dir(&self.root)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect()
        }
    }

    /// Removes this daemon's cgroup parent directory where it is empty (no container
    /// runs).
    pub fn remove_parent(&self, parent: &str) {
        // While a container's cgroup remains, an rmdir only fails (EBUSY), after waiting
        // on the kernel's cgroup lock that every container's stop and start need: with
        // thousands running, a listing (which takes no such lock) looks first.
        let has_child = |dir: &Path| {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        };
        for root in self.roots() {
            let dir = root.join(parent);
            if !has_child(&dir) {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }

    /// Writes one cgroup file of a container's cgroup.
    pub fn write(
        &self,
        controller: &str,
        cg: &str,
        file: &str,
        value: &str,
    ) -> std::io::Result<()> {
        std::fs::write(self.dir(controller, cg).join(file), value)
    }

    /// Hands a restored container's cgroup2 tree back to it. CRIU makes the cgroups of a
    /// restored container anew and gives each directory and `cgroup.subtree_control` their
    /// dumped owner and mode, but leaves `cgroup.procs` and `cgroup.threads` root's: the
    /// container's systemd could then start no service ("Failed at step CGROUP"). Each
    /// gets its directory's `cgroup.subtree_control`'s owner and mode, as a delegated
    /// tree has them.
    pub fn delegate_restored(&self, cg: &str) -> std::io::Result<()> {
        // The container runs already: a cgroup its systemd removes meanwhile is skipped.
        fn gone(r: std::io::Result<()>) -> std::io::Result<()> {
            match r {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        }
        fn walk(dir: &Path) -> std::io::Result<()> {
            use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
            if let Ok(m) = std::fs::metadata(dir.join("cgroup.subtree_control")) {
                for f in ["cgroup.procs", "cgroup.threads"] {
                    let path = dir.join(f);
                    gone(std::os::unix::fs::chown(
                        &path,
                        Some(m.uid()),
                        Some(m.gid()),
                    ))?;
                    let mode = std::fs::Permissions::from_mode(m.mode() & 0o777);
                    gone(std::fs::set_permissions(&path, mode))?;
                }
            }
            let entries = match std::fs::read_dir(dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                other => other?,
            };
            for child in entries.flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&child.path())?;
                }
            }
            Ok(())
        }
        let top = if self.v2 {
            self.root.join(cg)
        } else {
            self.root.join("unified").join(cg)
        };
        if top.is_dir() { walk(&top) } else { Ok(()) }
    }

    /// Removes what a container left in the cgroup tree (its own and its monitor's
    /// directories, bottom-up) when no process remains in them: after a monitor was
    /// killed, liblxc never cleaned up. Directories still holding processes stay: returns
    /// whether none remains.
    pub fn remove_leftovers(&self, parent: &str, name: &str) -> bool {
        fn remove_tree(dir: &Path) {
            for child in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&child.path());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        let mut gone = true;
        for root in self.roots() {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_tree_is_delegated_again() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let dir = tempfile::tempdir().unwrap();
        let cg = Cgroups::at(dir.path().to_owned());
        let top = dir.path().join("unified/berth.x/c1");
        let slice = top.join("system.slice");
        std::fs::create_dir_all(&slice).unwrap();
        for (d, uid, mode) in [(&top, 0, 0o664), (&slice, 1_065_536, 0o644)] {
            for f in ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"] {
                std::fs::write(d.join(f), "").unwrap();
                std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o600))
                    .unwrap();
            }
            let sc = d.join("cgroup.subtree_control");
            std::os::unix::fs::chown(&sc, Some(uid), Some(1_065_536)).unwrap();
            std::fs::set_permissions(&sc, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        cg.delegate_restored("berth.x/c1").unwrap();
        for (d, uid, mode) in [(&top, 0, 0o664), (&slice, 1_065_536, 0o644)] {
            for f in ["cgroup.procs", "cgroup.threads"] {
                let m = std::fs::metadata(d.join(f)).unwrap();
                assert_eq!(
                    (m.uid(), m.gid(), m.mode() & 0o777),
                    (uid, 1_065_536, mode),
                    "{f}"
                );
            }
        }
    }

    #[test]
    fn reads_v1_and_v2_trees() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = Cgroups::at(dir.path().to_owned());
        assert!(!v1.is_v2());
        let mem = dir.path().join("memory/berth.x/c1");
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "4096\n").unwrap();
        std::fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(v1.counters("berth.x/c1").memory_usage, 4096);
        assert_eq!(
            v1.counters("berth.x/c1").memory_limit,
            None,
            "v1's unlimited"
        );
        let freezer = dir.path().join("freezer/berth.x/c1");
        std::fs::create_dir_all(&freezer).unwrap();
        std::fs::write(freezer.join("freezer.state"), "FROZEN\n").unwrap();
        assert!(v1.is_frozen("berth.x/c1"));

        let dir2 = tempfile::tempdir().unwrap();
        std::fs::write(dir2.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let v2 = Cgroups::at(dir2.path().to_owned());
        assert!(v2.is_v2());
        let cg = dir2.path().join("berth.x/c1");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(cg.join("cpu.stat"), "usage_usec 7\nuser_usec 5\n").unwrap();
        std::fs::write(cg.join("memory.max"), "max\n").unwrap();
        std::fs::write(cg.join("pids.current"), "3\n").unwrap();
        assert_eq!(v2.counters("berth.x/c1").cpu_usage, 7000);
        assert_eq!(v2.counters("berth.x/c1").memory_limit, None);
        assert_eq!(v2.processes("berth.x/c1"), 3);
        std::fs::write(cg.join("memory.current"), "8192\n").unwrap();
        std::fs::write(cg.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        let all = Counters {
            processes: 3,
            memory_usage: 8192,
            memory_peak: 0,
            memory_limit: None,
            cpu_usage: 7000,
        };
        assert_eq!(v2.counters("berth.x/c1"), all);
        std::fs::write(cg.join("memory.max"), "1048576\n").unwrap();
        assert_eq!(v2.counters("berth.x/c1").memory_limit, Some(1_048_576));
        assert!(v2.is_frozen("berth.x/c1"));
        // Read again through the open file, as a held init's is.
        let v1_file = v1.freezer_file("berth.x/c1").unwrap();
        assert_eq!(v1.frozen_by(&v1_file), Some(true));
        std::fs::write(freezer.join("freezer.state"), "THAWED\n").unwrap();
        assert_eq!(v1.frozen_by(&v1_file), Some(false));
    }

    #[test]
    fn leftovers_go_bottom_up() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "").unwrap();
        let cg = Cgroups::at(dir.path().to_owned());
        std::fs::create_dir_all(dir.path().join("berth.x/c1/init.scope")).unwrap();
        std::fs::create_dir_all(dir.path().join("berth.x/c1.monitor")).unwrap();
        assert!(cg.remove_leftovers("berth.x", "c1"));
        assert!(!dir.path().join("berth.x/c1").exists());
        cg.remove_parent("berth.x");
        assert!(!dir.path().join("berth.x").exists());
    }
}
