//! The table of every instance configuration key berth knows: its group, type, default,
//! whether a change applies to a running container at once, and how it is checked.
//!
//! Validation of instance and profile configuration goes through [`validate`], and
//! `GET /1.0/metadata/configuration` serves the table in LXD's shape. Keys outside the
//! table are refused, except the families `user.*`, `environment.*`, `image.*` and
//! `volatile.*` (the last written only by berthd).

use super::limits::Host;
use crate::error::{Failure, Result};

/// How a key's value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `true` or `false`.
    Bool,
    /// A resource limit (`limits::validate`).
    Limit,
    /// `security.idmap.*` (`idmap::validate`).
    Idmap,
    /// LXC configuration lines (`raw_lxc::parse`).
    RawLxc,
    /// `snapshots.schedule`, `snapshots.expiry`, `snapshots.pattern` (`schedule`).
    Snapshots,
    /// Anything on one line.
    Text,
    /// Anything, line breaks included (`user.*`).
    Free,
}

/// One key, or a family of keys (`name` ending in `.*`).
#[derive(Debug)]
pub struct Key {
    pub name: &'static str,
    pub group: &'static str,
    /// LXD's type name: `bool`, `integer` or `string`.
    pub kind: &'static str,
    pub default: &'static str,
    /// Applied to a running container at once (else at its next start).
    pub live: bool,
    /// When the key applies (`container`, `unprivileged container`), or empty.
    pub condition: &'static str,
    pub description: &'static str,
    pub check: Check,
}

const fn key(
    name: &'static str,
    group: &'static str,
    kind: &'static str,
    default: &'static str,
    live: bool,
    description: &'static str,
    check: Check,
) -> Key {
    Key {
        name,
        group,
        kind,
        default,
        live,
        condition: "",
        description,
        check,
    }
}

/// Every instance key and family.
pub const INSTANCE_KEYS: &[Key] = &[
    key(
        "boot.autostart",
        "boot",
        "bool",
        "false",
        false,
        "Whether to start the instance when berthd starts",
        Check::Bool,
    ),
    key(
        "migration.stateful",
        "migration",
        "bool",
        "false",
        false,
        "Whether the instance can be checkpointed (stateful stop, start and snapshots with CRIU); \
         its console then comes from berthd's console keeper (takes effect at the next start)",
        Check::Bool,
    ),
    key(
        "limits.cpu",
        "resource-limits",
        "string",
        "all CPUs",
        true,
        "Number of CPUs, or a set like 0-1,3, the instance may run on",
        Check::Limit,
    ),
    key(
        "limits.cpu.allowance",
        "resource-limits",
        "string",
        "100%",
        true,
        "CPU time the instance may use: a share like 50% or a quota like 25ms/100ms",
        Check::Limit,
    ),
    key(
        "limits.cpu.priority",
        "resource-limits",
        "integer",
        "10",
        true,
        "CPU scheduling priority relative to other instances, 0 to 10",
        Check::Limit,
    ),
    key(
        "limits.memory",
        "resource-limits",
        "string",
        "unlimited",
        true,
        "Memory limit: a size like 512MiB or a percentage of the host's memory",
        Check::Limit,
    ),
    key(
        "limits.memory.enforce",
        "resource-limits",
        "string",
        "hard",
        true,
        "hard: the limit is enforced; soft: only under memory pressure",
        Check::Limit,
    ),
    key(
        "limits.memory.swap",
        "resource-limits",
        "bool",
        "true",
        true,
        "Whether the instance may swap",
        Check::Limit,
    ),
    key(
        "limits.processes",
        "resource-limits",
        "integer",
        "unlimited",
        true,
        "Maximum number of processes in the instance",
        Check::Limit,
    ),
    key(
        "limits.pty",
        "resource-limits",
        "integer",
        "1024",
        false,
        "berth's own: the most ptys the instance's devpts may hold, its share of the host's kernel.pty.max",
        Check::Limit,
    ),
    key(
        "limits.conntrack",
        "resource-limits",
        "integer",
        "",
        false,
        "berth's own: the most connections the host tracks at once for what each of the instance's nics sends (nftables ct count), so a flood cannot fill the host's table for its neighbours",
        Check::Limit,
    ),
    key(
        "limits.kernel.*",
        "resource-limits",
        "string",
        "inherited",
        false,
        "Kernel resource limit (prlimit) for the instance's processes: soft[:hard] or unlimited",
        Check::Limit,
    ),
    Key {
        condition: "container",
        ..key(
            "security.privileged",
            "security",
            "bool",
            "false",
            false,
            "Whether to run the container without a user namespace",
            Check::Bool,
        )
    },
    Key {
        condition: "container",
        ..key(
            "security.nesting",
            "security",
            "bool",
            "false",
            false,
            "Whether to allow containers inside the container (clean proc and sysfs at /dev/.lxc)",
            Check::Bool,
        )
    },
    Key {
        condition: "unprivileged container",
        ..key(
            "security.idmap.isolated",
            "security",
            "bool",
            "",
            false,
            "Whether to use a range of host ids no other container uses (unset: as the \
             instance had, and for a new one as the server's instances.idmap.default says, \
             which in berth is isolated)",
            Check::Idmap,
        )
    },
    Key {
        condition: "unprivileged container",
        ..key(
            "security.idmap.size",
            "security",
            "integer",
            "65536",
            false,
            "How many ids the container's map has",
            Check::Idmap,
        )
    },
    Key {
        condition: "unprivileged container",
        ..key(
            "security.idmap.base",
            "security",
            "integer",
            "",
            false,
            "The first host id of the container's map",
            Check::Idmap,
        )
    },
    Key {
        condition: "container",
        ..key(
            "raw.lxc",
            "raw",
            "blob",
            "",
            false,
            "LXC configuration lines appended to the container's (keys holding berth's isolation are refused)",
            Check::RawLxc,
        )
    },
    key(
        "snapshots.schedule",
        "snapshots",
        "string",
        "",
        true,
        "When to snapshot the instance: a cron expression, or aliases like @hourly, @daily",
        Check::Snapshots,
    ),
    key(
        "snapshots.schedule.stopped",
        "snapshots",
        "bool",
        "false",
        true,
        "Whether scheduled snapshots are taken of a stopped instance too",
        Check::Bool,
    ),
    key(
        "snapshots.pattern",
        "snapshots",
        "string",
        "snap%d",
        true,
        "The name of snapshots taken without one; %d stands for the first free number",
        Check::Snapshots,
    ),
    key(
        "snapshots.expiry",
        "snapshots",
        "string",
        "",
        true,
        "When snapshots are deleted, after they are taken: terms like 1M 2H 3d 4w 5m 6y",
        Check::Snapshots,
    ),
    key(
        "environment.*",
        "miscellaneous",
        "string",
        "",
        true,
        "Environment variables for commands run with exec",
        Check::Text,
    ),
    key(
        "user.*",
        "miscellaneous",
        "string",
        "",
        true,
        "Free-form user data",
        Check::Free,
    ),
    key(
        "image.*",
        "miscellaneous",
        "string",
        "",
        true,
        "Properties of the image the instance was created from",
        Check::Text,
    ),
    key(
        "volatile.*",
        "volatile",
        "string",
        "",
        false,
        "State berthd keeps about the instance (read-only)",
        Check::Text,
    ),
];

/// The table entry for `name`: the key itself, or its family.
pub fn find(name: &str) -> Option<&'static Key> {
    INSTANCE_KEYS
        .iter()
        .find(|k| match k.name.strip_suffix('*') {
            Some(prefix) => {
                name.len() > prefix.len()
                    && name.starts_with(prefix)
                    && (prefix != "limits.kernel."
                        || super::limits::RLIMITS.contains(&&name[prefix.len()..]))
            }
            None => k.name == name,
        })
}

/// Checks one key and value; the error names both.
pub fn validate(name: &str, value: &str, host: Host) -> Result<()> {
    let Some(k) = find(name) else {
        return Err(Failure::invalid(format!(
            "Unknown configuration key {name:?}"
        )));
    };
    if !matches!(k.check, Check::Free | Check::RawLxc) && value.contains(['\n', '\r', '\0']) {
        return Err(Failure::invalid(format!(
            "Invalid value for {name:?}: line breaks are not allowed"
        )));
    }
    match k.check {
        Check::Bool => {
            if !matches!(value, "true" | "false" | "") {
                return Err(Failure::invalid(format!(
                    "Invalid value {value:?} for {name:?}: expected true or false"
                )));
            }
        }
        Check::Limit => {
            super::limits::validate(name, value, host)?;
        }
        Check::Idmap => {
            super::idmap::validate(name, value)?;
        }
        Check::RawLxc => {
            super::raw_lxc::parse(value)?;
        }
        Check::Snapshots => match name {
            "snapshots.schedule" => super::schedule::parse_schedule(value).map(drop)?,
            "snapshots.expiry" => super::schedule::expiry(value, chrono::Utc::now()).map(drop)?,
            _ => super::schedule::check_pattern(value)?,
        },
        Check::Text | Check::Free => {}
    }
    Ok(())
}

/// The table as LXD's `GET /1.0/metadata/configuration` has it for `instance`:
/// group → `{"keys": [{KEY: {…}}]}`.
pub fn metadata() -> serde_json::Value {
    let mut groups = serde_json::Map::new();
    for k in INSTANCE_KEYS {
        let entry = serde_json::json!({ k.name: {
            "type": k.kind,
            "defaultdesc": k.default,
            "liveupdate": if k.live { "yes" } else { "no" },
            "condition": k.condition,
            "shortdesc": k.description,
            "longdesc": "",
        }});
        let group = groups
            .entry(k.group)
            .or_insert_with(|| serde_json::json!({"keys": []}));
        if let Some(keys) = group.get_mut("keys").and_then(|v| v.as_array_mut()) {
            keys.push(entry);
        }
    }
    serde_json::Value::Object(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_found_and_checked() {
        let host = Host {
            memory: 8 << 30,
            cpus: 2,
            cgroup_v2: false,
        };
        assert!(find("limits.kernel.nofile").is_some());
        assert!(find("limits.kernel.bogus").is_none());
        assert!(find("user.").is_none());
        assert!(validate("user.note", "two\nlines", host).is_ok());
        assert!(validate("environment.X", "a\nb", host).is_err());
        assert!(
            validate("boot.autostart", "maybe", host)
                .unwrap_err()
                .message()
                .contains("boot.autostart")
        );
        assert!(
            validate("bogus", "1", host)
                .unwrap_err()
                .message()
                .contains("bogus")
        );
        assert!(
            validate(
                "raw.lxc",
                "lxc.environment = A=1\nlxc.environment = B=2",
                host
            )
            .is_ok()
        );
        let md = metadata();
        assert!(
            md["resource-limits"]["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["limits.memory"]["liveupdate"] == "yes")
        );
    }
}
