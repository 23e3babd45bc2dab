//! What the host's kernel limits must be for the containers berthd expects to run
//! (`instances.expected`), so that a host needs no "production setup" page of sysctls.
//!
//! Per-user limits count per namespace owner: with a range of its own (berth's default)
//! each container has the kernel's default share of inotify instances and watches and
//! keys; with the shared map (`instances.idmap.default=shared`) every container counts
//! against one host uid, so those needs grow with the number of containers. The figures
//! per container are what a systemd distribution uses with room to spare (Debian 12
//! takes about 8 inotify instances, 13 keys, a dozen processes and one pty).

/// A server key: how many containers the host's limits are checked for.
pub const EXPECTED_KEY: &str = "instances.expected";
/// A server key: `raise` (default) lets berthd raise the limits marked safe; `report` only
/// warns.
pub const RAISE_KEY: &str = "instances.host_limits";

/// One kernel limit and the value the expected containers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The sysctl's name (`fs.inotify.max_user_instances`).
    pub name: &'static str,
    pub needed: u64,
    /// Whether raising it is safe (memory is only used as containers use it, and is
    /// charged to them): the others are warned about only.
    pub raise: bool,
}

/// The limits `expected` containers need; `shared` when new containers get the shared id
/// map; `pty_reserve` is the host's `kernel.pty.reserve` (ptys only the host's own devpts
/// may use).
pub fn needs(expected: u64, shared: bool, pty_reserve: u64) -> Vec<Need> {
    // Per-user counts: one user's share, or every container's when they share a uid.
    let per_uid = |each: u64, floor: u64| {
        if shared {
            (expected * each).max(floor)
        } else {
            floor
        }
    };
    let need = |name, needed, raise| Need {
        name,
        needed,
        raise,
    };
    vec![
        need("fs.inotify.max_user_instances", per_uid(128, 128), true),
        need("fs.inotify.max_user_watches", per_uid(1024, 8192), true),
        need("kernel.keys.maxkeys", per_uid(20, 200), true),
        need("kernel.keys.maxbytes", per_uid(2000, 20000), true),
        // Each console takes one pty outside the host's devpts, and a login or an exec
        // with a terminal another.
        need("kernel.pty.max", pty_reserve + expected * 4, true),
        need("kernel.pid_max", expected * 64, true),
        // Sized by the kernel from memory: not berthd's to raise.
        need("kernel.threads-max", expected * 64, false),
        need("fs.file-max", expected * 1024, false),
        // The host's neighbours on its bridges: one per container and address family.
        need("net.ipv4.neigh.default.gc_thresh3", expected * 2, true),
        need("net.ipv6.neigh.default.gc_thresh3", expected * 2, true),
        need("net.netfilter.nf_conntrack_max", expected * 256, true),
    ]
}

/// Parses `instances.expected`: a number of containers from 1 to 1,000,000.
pub fn expected(value: &str) -> Result<u64, &'static str> {
    match value.parse::<u64>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err("must be a number of containers from 1 to 1000000"),
    }
}

/// How many containers with a range of their own `count` subordinate ids hold (the
/// first 65536 stay for the shared map).
pub fn own_ranges(count: u64) -> u64 {
    (count / u64::from(super::idmap::SIZE)).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_grow_with_containers_and_the_shared_map() {
        let get = |v: &[Need], n: &str| v.iter().find(|x| x.name == n).unwrap().needed;
        let own = needs(1000, false, 1024);
        let shared = needs(1000, true, 1024);
        assert_eq!(get(&own, "fs.inotify.max_user_instances"), 128);
        assert_eq!(get(&shared, "fs.inotify.max_user_instances"), 128_000);
        assert_eq!(get(&own, "kernel.keys.maxkeys"), 200);
        assert_eq!(get(&shared, "kernel.keys.maxkeys"), 20_000);
        assert_eq!(get(&own, "kernel.pty.max"), 5024);
        assert!(!own.iter().find(|n| n.name == "fs.file-max").unwrap().raise);
        assert_eq!(expected("1000"), Ok(1000));
        assert!(expected("0").is_err() && expected("many").is_err());
        assert_eq!(own_ranges(1_000_000_000), 15_257);
        assert_eq!(own_ranges(65536), 0);
    }
}
