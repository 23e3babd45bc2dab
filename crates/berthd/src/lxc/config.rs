//! Writing an instance's whole LXC configuration.
//!
//! berthd writes every key itself and includes nothing of the distribution's
//! `common.conf.d`. Values come from validated sources only (names, paths berthd chose, the
//! id map); [`check_value`] still refuses line breaks so nothing can smuggle a second key.

use std::fmt::Write as _;
use std::path::Path;

use crate::model::idmap::IdMap;

/// The seccomp policy of every container: LXC's v2 deny-list format, for every ABI.
pub const SECCOMP: &str = "2
denylist
reject_force_umount
[all]
kexec_load errno 38
open_by_handle_at errno 38
init_module errno 38
finit_module errno 38
delete_module errno 38
";

/// What a checkpointable container's policy adds: CRIU cannot checkpoint a nested UTS or
/// IPC namespace, so making one (`unshare` with CLONE_NEWUTS 0x4000000 or CLONE_NEWIPC
/// 0x8000000, as systemd-logind's ProtectHostname=yes does) fails with EPERM, which
/// systemd takes as "prohibited by the container manager" and goes on without.
pub const CHECKPOINTABLE_SECCOMP: &str = "unshare errno 1 [0,67108864,SCMP_CMP_MASKED_EQ,67108864]
unshare errno 1 [0,134217728,SCMP_CMP_MASKED_EQ,134217728]
";

/// What the policy of a container with sized volumes on btrfs adds: it may not make
/// subvolumes (`BTRFS_IOC_SNAP_CREATE`, `SUBVOL_CREATE` and their v2, compared on the
/// request's 32 bits, all the kernel reads), whose data no qgroup of its volumes would
/// count: a way past its size. systemd takes EPERM as "not allowed" and makes a
/// directory instead.
pub const NO_SUBVOLUMES: &str = "ioctl errno 1 [1,1342215169,SCMP_CMP_MASKED_EQ,4294967295]
ioctl errno 1 [1,1342215182,SCMP_CMP_MASKED_EQ,4294967295]
ioctl errno 1 [1,1342215191,SCMP_CMP_MASKED_EQ,4294967295]
ioctl errno 1 [1,1342215192,SCMP_CMP_MASKED_EQ,4294967295]
";

/// The seccomp policy of a container (see [`SECCOMP`], [`CHECKPOINTABLE_SECCOMP`]);
/// `quota_view`: its volumes have sizes on btrfs: its `statfs` calls go to the syscall
/// proxy ([`super::syscalls::POLICY`]) and it makes no subvolumes ([`NO_SUBVOLUMES`]).
pub fn seccomp(checkpointable: bool, quota_view: bool) -> String {
    let mut policy = SECCOMP.to_owned();
    if checkpointable {
        policy.push_str(CHECKPOINTABLE_SECCOMP);
    }
    if quota_view {
        policy.push_str(super::syscalls::POLICY);
        policy.push_str(NO_SUBVOLUMES);
    }
    policy
}

/// Capabilities no container keeps.
const CAP_DROP: &str = "sys_time sys_module sys_rawio mac_admin mac_override";

/// A value that would break the configuration file.
#[derive(Debug, thiserror::Error)]
#[error("Invalid value for LXC key {key}: {value:?}")]
pub struct BadValue {
    pub key: String,
    pub value: String,
}

/// Refuses values with line breaks or NUL.
pub fn check_value(key: &str, value: &str) -> Result<(), BadValue> {
    if value.contains(['\n', '\r', '\0']) {
        return Err(BadValue {
            key: key.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// What the configuration is made from.
#[derive(Debug)]
pub struct Spec<'a> {
    /// The host name inside: the instance's name in its project.
    pub hostname: &'a str,
    pub name: &'a str,
    pub rootfs: &'a Path,
    /// The container's own directory (logs, seccomp policy, console log).
    pub dir: &'a Path,
    /// The cgroup directory of this daemon's containers (`berth.<id>`).
    pub cgroup_parent: &'a str,
    /// The user-namespace map; `None` for a privileged container.
    pub idmap: Option<IdMap>,
    /// `security.nesting`: clean proc and sysfs mounts at /dev/.lxc for nested containers.
    pub nesting: bool,
    /// `rootfs` is already an idmapped mount (a restore's): liblxc must not map it again.
    pub root_mapped: bool,
    /// The host terminal a console keeper holds, bound in as `/dev/console` instead of
    /// liblxc's console (checkpointable containers).
    pub console: Option<&'a Path>,
    /// Further keys: resource limits, lxcfs mounts, then `raw.lxc`.
    pub extra: &'a [(String, String)],
}

/// Paths of /proc and /sys hidden from containers beyond LXC's `mixed` mounts: files get
/// /dev/null bound over them, directories a read-only bind of the one empty directory
/// [`MASKED`] beside the containers (a tmpfs each would be a filesystem per container,
/// which the kernel walks whenever any container's memory cgroup goes).
pub const MASKED: &str = ".masked";
const MASKED_FILES: [&str; 6] = [
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
];
const MASKED_DIRS: [&str; 3] = ["proc/acpi", "proc/scsi", "sys/firmware"];

/// Renders the configuration.
pub fn render(spec: &Spec<'_>) -> Result<String, BadValue> {
    let mut out = String::new();
    let mut set = |key: &str, value: &str| -> Result<(), BadValue> {
        check_value(key, value)?;
        let _ = writeln!(out, "{key} = {value}");
        Ok(())
    };
    let dir = spec.dir.display().to_string();
    set("lxc.uts.name", spec.hostname)?;
    set("lxc.arch", std::env::consts::ARCH)?;
    set("lxc.rootfs.path", &format!("dir:{}", spec.rootfs.display()))?;
    if let Some(m) = spec.idmap {
        // The rootfs stays owned by host ids 0..65535 on disk; an idmapped mount shows it
        // to the container's user namespace as its own, so creating a container (or
        // changing its map) chowns nothing.
        if !spec.root_mapped {
            set("lxc.rootfs.options", "idmap=container")?;
        }
        set("lxc.idmap", &format!("u 0 {} {}", m.uid_base, m.size))?;
        set("lxc.idmap", &format!("g 0 {} {}", m.gid_base, m.size))?;
    }
    set("lxc.mount.auto", "proc:mixed sys:mixed cgroup:mixed")?;
    for f in MASKED_FILES {
        set(
            "lxc.mount.entry",
            &format!("/dev/null {f} none bind,optional 0 0"),
        )?;
    }
    let masked = spec.dir.with_file_name(MASKED);
    for d in MASKED_DIRS {
        set(
            "lxc.mount.entry",
            &format!(
                "{} {d} none ro,bind,nosuid,nodev,noexec,optional 0 0",
                masked.display()
            ),
        )?;
    }
    if spec.nesting {
        // Unmasked proc and sysfs instances, so nested containers can mount their own.
        set(
            "lxc.mount.entry",
            "proc dev/.lxc/proc proc create=dir,optional 0 0",
        )?;
        set(
            "lxc.mount.entry",
            "sys dev/.lxc/sys sysfs create=dir,optional 0 0",
        )?;
    }
    set("lxc.autodev", "1")?;
    // The default of limits.pty, which comes with the limits below when set.
    set("lxc.pty.max", "1024")?;
    set("lxc.tty.max", "0")?;
    if let Some(tty) = spec.console {
        // CRIU cannot restore liblxc's console: a keeper's terminal instead, which init
        // takes as its standard streams (CONSOLE is what busybox and sysvinit read).
        set("lxc.console.path", "none")?;
        set(
            "lxc.mount.entry",
            &format!("{} dev/console none bind,create=file 0 0", tty.display()),
        )?;
        set("lxc.environment", "CONSOLE=/dev/console")?;
        // Tells the image's console program not to claim the console as its
        // controlling terminal, which CRIU cannot restore.
        set("lxc.environment", "BERTH_CHECKPOINTABLE=true")?;
    } else {
        // liblxc's console: a pty the monitor holds, a ring buffer and a log file (kept to
        // the buffer's size), which berth console attaches to and reads.
        set("lxc.console.buffer.size", "auto")?;
        set("lxc.console.size", "auto")?;
        set("lxc.console.logfile", &format!("{dir}/console.log"))?;
    }
    set("lxc.init.cmd", "/sbin/init")?;
    set("lxc.cap.drop", CAP_DROP)?;
    set("lxc.seccomp.profile", &format!("{dir}/seccomp"))?;
    set("lxc.cgroup.relative", "0")?;
    set(
        "lxc.cgroup.dir.monitor",
        &format!("{}/{}.monitor", spec.cgroup_parent, spec.name),
    )?;
    set(
        "lxc.cgroup.dir.container",
        &format!("{}/{}", spec.cgroup_parent, spec.name),
    )?;
    set("lxc.log.file", &format!("{dir}/lxc.log"))?;
    set("lxc.log.level", "warn")?;
    set("lxc.net.0.type", "empty")?;
    for (k, v) in spec.extra {
        set(k, v)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_unprivileged_config() {
        let spec = Spec {
            name: "c1",
            hostname: "c1",
            rootfs: Path::new("/p/containers/c1/rootfs"),
            dir: Path::new("/d/containers/c1"),
            cgroup_parent: "berth.0123abcd",
            idmap: Some(IdMap {
                uid_base: 1000000,
                gid_base: 1000000,
                size: 65536,
            }),
            nesting: false,
            console: None,
            root_mapped: false,
            extra: &[("lxc.cgroup.pids.max".to_owned(), "50".to_owned())],
        };
        let c = render(&spec).unwrap();
        assert!(c.contains("lxc.cgroup.pids.max = 50\n"));
        assert!(c.contains("lxc.idmap = u 0 1000000 65536\n"));
        assert!(c.contains("lxc.rootfs.options = idmap=container\n"));
        assert!(c.contains("lxc.cgroup.dir.container = berth.0123abcd/c1\n"));
        assert!(
            !c.contains("include"),
            "nothing of the distribution is included"
        );
        let bad = Spec {
            name: "c1\nlxc.idmap = u 0 0 1",
            ..spec
        };
        assert!(render(&bad).is_err());
        let privileged = Spec {
            idmap: None,
            nesting: true,
            ..bad
        };
        let privileged = Spec {
            name: "c1",
            ..privileged
        };
        let c = render(&privileged).unwrap();
        assert!(!c.contains("lxc.idmap") && !c.contains("idmap=container"));
        assert!(c.contains("proc dev/.lxc/proc proc"));
    }
}
