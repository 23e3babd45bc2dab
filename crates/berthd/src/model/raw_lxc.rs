//! `raw.lxc`: LXC configuration lines an administrator adds, checked line by line so
//! none can undo the isolation berthd sets up.

use crate::error::{Failure, Result};

/// Keys `raw.lxc` may not set, with what to use instead: they hold the isolation berthd
/// set up (id map, rootfs, seccomp, capabilities, cgroup placement and device access,
/// namespaces, LSM), run host commands (hooks), or write host files (logs, console).
const RAW_DENIED: [(&str, &str); 25] = [
    (
        "lxc.mount.auto",
        "it would undo the proc and sys protections",
    ),
    ("lxc.idmap", "use security.idmap.* or security.privileged"),
    ("lxc.id_map", "use security.idmap.* or security.privileged"),
    ("lxc.include", "berthd writes the whole configuration"),
    ("lxc.rootfs", "the root disk device sets it"),
    ("lxc.seccomp", "berthd sets the seccomp policy"),
    ("lxc.cap", "berthd sets the capabilities"),
    ("lxc.cgroup.dir", "berthd places the container's cgroup"),
    (
        "lxc.cgroup.relative",
        "berthd places the container's cgroup",
    ),
    ("lxc.cgroup.devices", "use unix-char and unix-block devices"),
    (
        "lxc.cgroup2.devices",
        "use unix-char and unix-block devices",
    ),
    ("lxc.namespace", "berthd sets the namespaces"),
    ("lxc.apparmor", "berthd sets the LSM profile"),
    ("lxc.selinux", "berthd sets the LSM profile"),
    ("lxc.hook", "hooks run commands on the host"),
    ("lxc.log", "berthd keeps the container's log"),
    ("lxc.logfile", "berthd keeps the container's log"),
    ("lxc.syslog", "berthd keeps the container's log"),
    ("lxc.console", "berthd sets up the console"),
    ("lxc.ephemeral", "use the instance's ephemeral flag"),
    ("lxc.monitor", "berthd places the monitor"),
    ("lxc.no_new_privs", "berthd sets it"),
    ("lxc.mount.fstab", "use lxc.mount.entry or disk devices"),
    ("lxc.prlimit", "use limits.kernel.*"),
    ("lxc.net", "networks come with nic devices"),
];

/// Parses and checks `raw.lxc`: one `lxc.KEY = VALUE` per line (blank lines and `#`
/// comments allowed), no key from [`RAW_DENIED`]. Errors name the line and key.
pub fn parse(raw: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, line) in raw.split('\n').enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = i + 1;
        if line.contains(['\r', '\0']) {
            return Err(Failure::invalid(format!(
                "Invalid raw.lxc line {n}: control characters are not allowed"
            )));
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(Failure::invalid(format!(
                "Invalid raw.lxc line {n}: expected \"lxc.KEY = VALUE\": {line:?}"
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        if !key.starts_with("lxc.")
            || key.len() <= 4
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(Failure::invalid(format!(
                "Invalid raw.lxc line {n}: {key:?} is not an LXC key"
            )));
        }
        // An empty value resets a list key (mount entries, capabilities…) to nothing,
        // dropping what berthd set up.
        if value.is_empty() {
            return Err(Failure::invalid(format!(
                "Invalid raw.lxc line {n}: {key:?} has no value (it would clear berthd's settings)"
            )));
        }
        if let Some((_, why)) = RAW_DENIED
            .iter()
            .find(|(d, _)| key == *d || key.starts_with(&format!("{d}.")))
        {
            return Err(Failure::invalid(format!(
                "Invalid raw.lxc line {n}: {key:?} may not be set ({why})"
            )));
        }
        out.push((key.to_owned(), value.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_lxc_is_checked_line_by_line() {
        let ok = parse("# comment\nlxc.environment = A=b\n\nlxc.sysctl.net.ipv4.ip_forward=1\n")
            .unwrap();
        assert_eq!(ok[0], ("lxc.environment".to_owned(), "A=b".to_owned()));
        assert_eq!(ok.len(), 2);
        for bad in [
            "lxc.idmap = u 0 0 65536",
            "lxc.cgroup.devices.allow = a",
            "lxc.hook.pre-start = /bin/sh -c evil",
            "lxc.apparmor.profile = unconfined",
            "lxc.include = /etc/passwd",
            "lxc.cap.drop =",
            "lxc.seccomp.profile = /dev/null",
            "lxc.namespace.share.net = 1",
            "not a key",
            "foo = bar",
            "lxc.mount.entry =",
            "lxc.mount.auto = proc:rw sys:rw",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.message().contains("line 1"), "{bad}: {e}");
        }
    }
}
