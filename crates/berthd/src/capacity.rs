//! The host's kernel limits checked against the containers berthd expects to run: at
//! start and whenever the server configuration changes. Limits below what
//! `instances.expected` containers need (see [`crate::model::capacity`]) are raised when
//! that is safe and `instances.host_limits` is `raise` (the default), and otherwise get a
//! `/1.0/warnings` entry naming the sysctl, its value, the value needed and the command
//! that sets it. Nothing changes silently: each raise is logged, and `GET /1.0` lists
//! every limit checked with what was raised (`environment.host_limits`, which `berth
//! info` shows). A limit berthd raised stays raised until the host reboots; berthd raises
//! it again at its next start.

use std::collections::BTreeMap;

use berth_api::server::HostLimit;

use crate::ctx::Ctx;
use crate::model::capacity::{self, EXPECTED_KEY, RAISE_KEY};

/// The warnings' type.
const KIND: &str = "Host limit too low";

/// The warning's object for limit `name`: its file under /proc/sys.
fn entity(name: &str) -> String {
    if name == SUBIDS {
        "/etc/subuid".to_owned()
    } else {
        format!("/proc/sys/{}", name.replace('.', "/"))
    }
}

/// The name the subordinate id range is reported under.
const SUBIDS: &str = "subordinate ids";

/// Checks (and raises) the limits for server configuration `config`; what was found.
pub fn check(cx: &Ctx, config: &BTreeMap<String, String>) -> Vec<HostLimit> {
    let expected = capacity::expected(crate::config::get(config, EXPECTED_KEY)).unwrap_or(1000);
    let raise = crate::config::get(config, RAISE_KEY) == "raise";
    let shared = crate::config::get(config, crate::model::idmap::DEFAULT_KEY) == "shared";
    let reserve = crate::host::sysctl::read("kernel.pty.reserve").unwrap_or(1024);
    let mut found = Vec::new();
    for need in capacity::needs(expected, shared, reserve) {
        // A limit the kernel lacks (conntrack without its module) has nothing to check.
        let Some(value) = crate::host::sysctl::read(need.name) else {
            continue;
        };
        let mut limit = HostLimit {
            name: need.name.to_owned(),
            value,
            needed: need.needed,
            raised_from: None,
        };
        if value < need.needed && raise && need.raise {
            match crate::host::sysctl::write(need.name, need.needed) {
                Ok(()) => {
                    tracing::info!(
                        "Raised {} from {value} to {} for {expected} containers",
                        need.name,
                        need.needed
                    );
                    limit.value = need.needed;
                    limit.raised_from = Some(value);
                }
                Err(e) => tracing::warn!("Failed to raise {}: {e}", need.name),
            }
        }
        report(cx, &limit, expected, need.raise && !raise);
        found.push(limit);
    }
    if !shared {
        let ids = HostLimit {
            name: SUBIDS.to_owned(),
            value: capacity::own_ranges(u64::from(cx.ids.count)),
            needed: expected,
            raised_from: None,
        };
        report(cx, &ids, expected, false);
        found.push(ids);
    }
    found
}

/// Raises or resolves the warning about `limit`; `held_back` when berthd could raise it
/// but `instances.host_limits` says not to.
fn report(cx: &Ctx, limit: &HostLimit, expected: u64, held_back: bool) {
    let url = entity(&limit.name);
    if limit.value >= limit.needed {
        crate::warning::resolve(cx, KIND, &url);
        return;
    }
    let message = if limit.name == SUBIDS {
        format!(
            "root's subordinate ids in /etc/subuid and /etc/subgid hold {} containers with a range of their own, fewer than instances.expected ({expected}): give root {} ids there",
            limit.value,
            (expected + 1) * u64::from(crate::model::idmap::SIZE)
        )
    } else {
        format!(
            "{} is {}, and {expected} containers need {}{}: sysctl -w {}={}",
            limit.name,
            limit.value,
            limit.needed,
            if held_back {
                " (instances.host_limits=report)"
            } else {
                ""
            },
            limit.name,
            limit.needed
        )
    };
    crate::warning::raise(cx, KIND, &url, "moderate", &message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_file_of_each_limit() {
        assert_eq!(
            entity("fs.inotify.max_user_instances"),
            "/proc/sys/fs/inotify/max_user_instances"
        );
        assert_eq!(entity(SUBIDS), "/etc/subuid");
    }
}
