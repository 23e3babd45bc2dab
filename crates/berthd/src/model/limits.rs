//! Instance resource limits: validation, the LXC keys applied at start, and the cgroup
//! files written when a running instance's limits change.
//!
//! | key | cgroup v1 | cgroup v2 |
//! |---|---|---|
//! | `limits.processes` | `pids.max` | `pids.max` |
//! | `limits.memory` (+ `.enforce`) | `memory.limit_in_bytes` / `memory.soft_limit_in_bytes` | `memory.max` / `memory.high` |
//! | `limits.memory.swap=false` | `memory.memsw.limit_in_bytes` = limit | `memory.swap.max` = 0 |
//! | `limits.cpu` (count or set) | `cpuset.cpus` | `cpuset.cpus` |
//! | `limits.cpu.allowance` (`50%`, `25ms/100ms`) | `cpu.shares` / `cpu.cfs_quota_us` | `cpu.weight` / `cpu.max` |
//! | `limits.cpu.priority` (0–10) | `cpu.shares` | `cpu.weight` |
//! | `limits.kernel.NAME` | `lxc.prlimit.NAME` (at start only) | same |
//! | `limits.pty` (berth's own) | `lxc.pty.max`: the devpts instance's `max=` (at start only) | same |
//!
//! `limits.conntrack` (berth's own) is no cgroup's: at most that many connections tracked
//! for what each of the instance's veth nics sends to or through the host, enforced by
//! nftables `ct count` (see `berth_network::nic::set_conntrack`; at start only).

use std::collections::BTreeMap;

use crate::error::{Failure, Result};

/// The most `limits.pty` may be (devpts' own ceiling is 2^20; the host's total,
/// kernel.pty.max, is 4096 by default).
const PTY_MAX: u32 = 65536;

/// Kernel resource limits `limits.kernel.*` may set.
pub const RLIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Parses a size with LXD's units (`kB`, `MB`, … in 1000s; `KiB`, `MiB`, … in 1024s).
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" => 1000,
        "MB" => 1000_u64.pow(2),
        "GB" => 1000_u64.pow(3),
        "TB" => 1000_u64.pow(4),
        "PB" => 1000_u64.pow(5),
        "EB" => 1000_u64.pow(6),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "PiB" => 1 << 50,
        "EiB" => 1 << 60,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn cpu_set(v: &str, host_cpus: usize) -> Option<String> {
    if let Ok(n) = v.parse::<usize>() {
        if n == 0 {
            return None;
        }
        let n = n.min(host_cpus.max(1));
        return Some(if n == 1 {
            "0".to_owned()
        } else {
            format!("0-{}", n - 1)
        });
    }
    let ok = v.split(',').all(|part| {
        let mut ends = part.splitn(2, '-').map(|x| x.parse::<usize>());
        match (ends.next(), ends.next()) {
            (Some(Ok(a)), None) => a < host_cpus,
            (Some(Ok(a)), Some(Ok(b))) => a <= b && b < host_cpus,
            _ => false,
        }
    });
    ok.then(|| v.to_owned())
}

/// What the host offers, for percentages and CPU counts.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    pub memory: u64,
    pub cpus: usize,
    pub cgroup_v2: bool,
}

/// One cgroup setting: controller, file, value.
pub type Setting = (&'static str, &'static str, String);

fn bad(key: &str, value: &str, why: &str) -> Failure {
    Failure::invalid(format!("Invalid value {value:?} for {key:?}: {why}"))
}

/// Checks one `limits.*` key; `Ok(false)` when the key is not a limit.
pub fn validate(key: &str, value: &str, host: Host) -> Result<bool> {
    if !key.starts_with("limits.") {
        return Ok(false);
    }
    let mut config = BTreeMap::new();
    config.insert(key.to_owned(), value.to_owned());
    if key == "limits.memory.enforce" || key == "limits.memory.swap" {
        config.insert("limits.memory".to_owned(), "1GiB".to_owned());
    }
    cgroup_settings(&config, host)?;
    prlimits(&config)?;
    conntrack(&config)?;
    let known = matches!(
        key,
        "limits.pty"
            | "limits.conntrack"
            | "limits.processes"
            | "limits.memory"
            | "limits.memory.enforce"
            | "limits.memory.swap"
            | "limits.cpu"
            | "limits.cpu.allowance"
            | "limits.cpu.priority"
    ) || key
        .strip_prefix("limits.kernel.")
        .is_some_and(|n| RLIMITS.contains(&n));
    if !known {
        return Err(Failure::invalid(format!(
            "Unknown configuration key {key:?}"
        )));
    }
    Ok(true)
}

/// The cgroup settings of a (valid) expanded configuration.
pub fn cgroup_settings(config: &BTreeMap<String, String>, host: Host) -> Result<Vec<Setting>> {
    let v2 = host.cgroup_v2;
    let mut out: Vec<Setting> = Vec::new();
    let get = |k: &str| config.get(k).map(String::as_str).filter(|v| !v.is_empty());
    if let Some(v) = get("limits.processes") {
        let n: u64 = v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| bad("limits.processes", v, "expected a positive number"))?;
        out.push(("pids", "pids.max", n.to_string()));
    }
    if let Some(v) = get("limits.memory") {
        let bytes = match v.strip_suffix('%') {
            Some(p) => {
                let p: u64 = p
                    .parse()
                    .ok()
                    .filter(|p| *p > 0 && *p <= 100)
                    .ok_or_else(|| bad("limits.memory", v, "expected 1% to 100%"))?;
                u64::try_from(u128::from(host.memory) * u128::from(p) / 100).unwrap_or(u64::MAX)
            }
            None => parse_size(v).filter(|b| *b >= 1 << 20).ok_or_else(|| {
                bad(
                    "limits.memory",
                    v,
                    "expected a size of at least 1MiB, like 512MiB, or a percentage",
                )
            })?,
        };
        let soft = match get("limits.memory.enforce").unwrap_or("hard") {
            "hard" => false,
            "soft" => true,
            other => return Err(bad("limits.memory.enforce", other, "expected hard or soft")),
        };
        match (v2, soft) {
            (false, false) => out.push(("memory", "memory.limit_in_bytes", bytes.to_string())),
            (false, true) => out.push(("memory", "memory.soft_limit_in_bytes", bytes.to_string())),
            (true, false) => out.push(("memory", "memory.max", bytes.to_string())),
            (true, true) => out.push(("memory", "memory.high", bytes.to_string())),
        }
        match get("limits.memory.swap").unwrap_or("true") {
            "true" => {}
            "false" if v2 => out.push(("memory", "memory.swap.max", "0".to_owned())),
            "false" => out.push(("memory", "memory.memsw.limit_in_bytes", bytes.to_string())),
            other => return Err(bad("limits.memory.swap", other, "expected true or false")),
        }
    } else if let Some(v) = get("limits.memory.enforce").filter(|v| !matches!(*v, "hard" | "soft"))
    {
        return Err(bad("limits.memory.enforce", v, "expected hard or soft"));
    }
    if let Some(v) = get("limits.cpu") {
        let set = cpu_set(v, host.cpus).ok_or_else(|| {
            bad(
                "limits.cpu",
                v,
                "expected a CPU count or a set like 0-1,3 of this host's CPUs",
            )
        })?;
        out.push(("cpuset", "cpuset.cpus", set));
    }
    let priority = match get("limits.cpu.priority") {
        Some(v) => Some(
            v.parse::<u64>()
                .ok()
                .filter(|p| *p <= 10)
                .ok_or_else(|| bad("limits.cpu.priority", v, "expected 0 to 10"))?,
        ),
        None => None,
    };
    let mut shares: Option<u64> = priority.map(|p| 1024 * (p + 1) / 11);
    if let Some(v) = get("limits.cpu.allowance") {
        if let Some(p) = v.strip_suffix('%') {
            let p: u64 = p
                .parse()
                .ok()
                .filter(|p| *p > 0 && *p <= 100)
                .ok_or_else(|| bad("limits.cpu.allowance", v, "expected 1% to 100%"))?;
            shares = Some(shares.unwrap_or(1024) * p / 100);
        } else {
            let (q, period) = v.split_once('/').ok_or_else(|| {
                bad(
                    "limits.cpu.allowance",
                    v,
                    "expected a percentage or QUOTA/PERIOD like 25ms/100ms",
                )
            })?;
            let ms = |s: &str| {
                s.strip_suffix("ms")
                    .and_then(|n| n.parse::<u64>().ok())
                    .filter(|n| *n > 0)
            };
            let (q, period) = (ms(q), ms(period));
            let (Some(q), Some(period)) = (q, period) else {
                return Err(bad(
                    "limits.cpu.allowance",
                    v,
                    "expected QUOTA/PERIOD in ms, like 25ms/100ms",
                ));
            };
            if v2 {
                out.push(("cpu", "cpu.max", format!("{} {}", q * 1000, period * 1000)));
            } else {
                out.push(("cpu", "cpu.cfs_period_us", (period * 1000).to_string()));
                out.push(("cpu", "cpu.cfs_quota_us", (q * 1000).to_string()));
            }
        }
    }
    if let Some(s) = shares {
        let s = s.max(2);
        if v2 {
            out.push((
                "cpu",
                "cpu.weight",
                (1 + (s - 2) * 9999 / 262_142).max(1).to_string(),
            ));
        } else {
            out.push(("cpu", "cpu.shares", s.to_string()));
        }
    }
    Ok(out)
}

/// `limits.conntrack`: the connections each nic may have tracked at once, when limited.
pub fn conntrack(config: &BTreeMap<String, String>) -> Result<Option<u32>> {
    let Some(v) = config.get("limits.conntrack").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    v.parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .map(Some)
        .ok_or_else(|| {
            bad(
                "limits.conntrack",
                v,
                "expected a number of connections above 0",
            )
        })
}

/// The `lxc.prlimit.*` keys of `limits.kernel.*`.
pub fn prlimits(config: &BTreeMap<String, String>) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    // The ptys the container's devpts may hold: its share of the host's kernel.pty.max,
    // so one container cannot take every pty of the host.
    if let Some(v) = config.get("limits.pty").filter(|v| !v.is_empty()) {
        let n: u32 = v
            .parse()
            .ok()
            .filter(|n| (1..=PTY_MAX).contains(n))
            .ok_or_else(|| bad("limits.pty", v, "expected a number from 1 to 65536"))?;
        out.push(("lxc.pty.max".to_owned(), n.to_string()));
    }
    for (k, v) in config {
        let Some(name) = k.strip_prefix("limits.kernel.") else {
            continue;
        };
        if !RLIMITS.contains(&name) {
            return Err(Failure::invalid(format!("Unknown configuration key {k:?}")));
        }
        let part_ok = |p: &str| p == "unlimited" || p.parse::<u64>().is_ok();
        let parts: Vec<&str> = v.split(':').collect();
        if parts.is_empty() || parts.len() > 2 || !parts.iter().all(|p| part_ok(p)) {
            return Err(bad(k, v, "expected a number, unlimited, or SOFT:HARD"));
        }
        out.push((format!("lxc.prlimit.{name}"), v.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Host = Host {
        memory: 8 << 30,
        cpus: 2,
        cgroup_v2: false,
    };

    fn settings(pairs: &[(&str, &str)], host: Host) -> Result<Vec<Setting>> {
        let c: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        cgroup_settings(&c, host)
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("1GB"), Some(1_000_000_000));
        assert_eq!(parse_size("42"), Some(42));
        assert_eq!(parse_size("1.5GiB"), None);
        assert_eq!(parse_size("1gb"), None);
    }

    #[test]
    fn maps_limits_to_cgroup_files() {
        let s = settings(
            &[("limits.memory", "256MiB"), ("limits.processes", "100")],
            HOST,
        )
        .unwrap();
        assert!(s.contains(&(
            "memory",
            "memory.limit_in_bytes",
            (256u64 << 20).to_string()
        )));
        assert!(s.contains(&("pids", "pids.max", "100".to_owned())));
        let s = settings(
            &[("limits.memory", "50%"), ("limits.memory.enforce", "soft")],
            HOST,
        )
        .unwrap();
        assert!(s.contains(&(
            "memory",
            "memory.soft_limit_in_bytes",
            (4u64 << 30).to_string()
        )));
        let v2 = Host {
            cgroup_v2: true,
            ..HOST
        };
        let s = settings(
            &[("limits.cpu.allowance", "25ms/100ms"), ("limits.cpu", "1")],
            v2,
        )
        .unwrap();
        assert!(s.contains(&("cpu", "cpu.max", "25000 100000".to_owned())));
        assert!(s.contains(&("cpuset", "cpuset.cpus", "0".to_owned())));
        for (k, v) in [
            ("limits.memory", "lots"),
            ("limits.processes", "0"),
            ("limits.cpu", "0-5"),
            ("limits.cpu.allowance", "150%"),
            ("limits.cpu.priority", "11"),
            ("limits.memory.enforce", "maybe"),
        ] {
            let e = validate(k, v, HOST).unwrap_err();
            assert!(e.message().contains(k), "{k}={v}: {e}");
        }
        assert!(validate("limits.kernel.nofile", "1024:2048", HOST).unwrap());
        assert!(validate("limits.pty", "16", HOST).unwrap());
        assert!(validate("limits.conntrack", "512", HOST).unwrap());
        for bad_count in ["0", "-1", "lots"] {
            let e = validate("limits.conntrack", bad_count, HOST).unwrap_err();
            assert!(e.message().contains("limits.conntrack"), "{e}");
        }
        for bad_pty in ["0", "-1", "many", "70000"] {
            let e = validate("limits.pty", bad_pty, HOST).unwrap_err();
            assert!(e.message().contains("limits.pty"), "{e}");
        }
        let c = BTreeMap::from([("limits.pty".to_owned(), "16".to_owned())]);
        assert_eq!(
            prlimits(&c).unwrap(),
            [("lxc.pty.max".to_owned(), "16".to_owned())]
        );
        assert!(validate("limits.kernel.nofile", "many", HOST).is_err());
        assert!(validate("limits.kernel.bogus", "1", HOST).is_err());
        assert!(validate("limits.bogus", "1", HOST).is_err());
        assert!(!validate("user.x", "1", HOST).unwrap());
    }
}
