//! What of the host's firewall breaks a managed network, each finding a warning that names
//! the table and chain and the command that fixes it. berthd reads the other tables (an
//! accept in its own table cannot override another table's drop) and changes them only
//! when the server key `network.host_firewall.accept` is `true`: then a foreign forward
//! chain that drops a bridge's traffic gets two accept rules for it (in `DOCKER-USER` when
//! the table has one), each tagged with the comment `berth_<id>:<bridge>`, and they go
//! with the network or the key.
//!
//! Findings: a foreign forward chain with `policy drop` (Docker's `ip filter FORWARD`)
//! that does not accept the bridge; legacy iptables with a dropping FORWARD chain;
//! `br_netfilter` sending bridged frames through such a chain; firewalld; ufw.

use crate::ctx::Ctx;

/// The warning types, one per finding; each network has its own of each.
const KINDS: &[&str] = &[
    "Host firewall drops network traffic",
    "Legacy iptables drops network traffic",
    "Bridged traffic filtered by iptables",
    "firewalld manages the host firewall",
    "ufw manages the host firewall",
];

/// A chain of another table, as `nft -j list chains` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub family: String,
    pub table: String,
    pub name: String,
    pub hook: String,
    pub policy: String,
    /// Whether the chain accepts traffic in and out of the bridge being checked.
    pub accepts_bridge: bool,
}

/// What was read of the host.
#[derive(Debug, Clone, Default)]
pub struct Host {
    pub chains: Vec<Chain>,
    /// `iptables-legacy -S FORWARD` says `-P FORWARD DROP`.
    pub legacy_forward_drop: bool,
    /// net.bridge.bridge-nf-call-iptables is 1.
    pub br_netfilter: bool,
    pub firewalld: bool,
    pub ufw: bool,
}

/// The findings for bridge `bridge`: (warning type, message).
pub fn findings(host: &Host, bridge: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let has_docker_user = |c: &Chain| {
        host.chains
            .iter()
            .any(|o| o.family == c.family && o.table == c.table && o.name == "DOCKER-USER")
    };
    let drops: Vec<String> = host
        .chains
        .iter()
        .filter(|c| c.hook == "forward" && c.policy == "drop" && !c.accepts_bridge)
        .map(|c| {
            let fix = if has_docker_user(c) {
                format!(
                    "iptables -I DOCKER-USER -i {bridge} -j ACCEPT && iptables -I DOCKER-USER -o {bridge} -j ACCEPT"
                )
            } else {
                format!(
                    "nft insert rule {f} {t} {n} iifname \"{bridge}\" accept && nft insert rule {f} {t} {n} oifname \"{bridge}\" accept",
                    f = c.family,
                    t = c.table,
                    n = c.name
                )
            };
            format!(
                "chain {} of table {} {} has policy drop and drops traffic of network {bridge:?}; fix: {fix}",
                c.name, c.family, c.table
            )
        })
        .collect();
    if !drops.is_empty() {
        out.push((KINDS[0], drops.join("; ")));
    }
    if host.legacy_forward_drop {
        out.push((
            KINDS[1],
            format!(
                "legacy iptables' FORWARD chain has policy drop and drops traffic of network {bridge:?}; fix: iptables-legacy -I FORWARD -i {bridge} -j ACCEPT && iptables-legacy -I FORWARD -o {bridge} -j ACCEPT"
            ),
        ));
    }
    // Bridged frames pass iptables only with br_netfilter; they are dropped only where a
    // forward chain drops.
    let any_drop = host
        .chains
        .iter()
        .any(|c| c.hook == "forward" && c.policy == "drop");
    if host.br_netfilter && (any_drop || host.legacy_forward_drop) {
        out.push((
            KINDS[2],
            format!(
                "br_netfilter passes traffic within network {bridge:?} through the dropping forward chains (net.bridge.bridge-nf-call-iptables=1); fix: sysctl -w net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0"
            ),
        ));
    }
    if host.firewalld {
        out.push((
            KINDS[3],
            format!(
                "firewalld may drop traffic of network {bridge:?}; fix: firewall-cmd --zone=trusted --change-interface={bridge} --permanent && firewall-cmd --reload"
            ),
        ));
    }
    if host.ufw {
        out.push((
            KINDS[4],
            format!(
                "ufw may drop traffic of network {bridge:?}; fix: ufw allow in on {bridge} && ufw route allow in on {bridge} && ufw route allow out on {bridge}"
            ),
        ));
    }
    out
}

/// Reads the host's chains (of every table but berthd's) and the rest of [`Host`], for
/// bridge `bridge`. Whatever cannot be read counts as absent.
fn read(own_table: &str, bridge: &str) -> Host {
    let mut host = Host::default();
    let listed = berth_host::run_command("nft", &["-j", "list", "chains"]).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&listed).unwrap_or_default();
    for item in v
        .get("nftables")
        .and_then(|n| n.as_array())
        .into_iter()
        .flatten()
    {
        let Some(c) = item.get("chain") else { continue };
        let s = |k: &str| {
            c.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        if s("table") == own_table {
            continue;
        }
        host.chains.push(Chain {
            family: s("family"),
            table: s("table"),
            name: s("name"),
            hook: s("hook"),
            policy: s("policy"),
            accepts_bridge: false,
        });
    }
    // A dropping chain accepts the bridge when its rules or its table's DOCKER-USER
    // (where Docker's FORWARD jumps first) do.
    for i in 0..host.chains.len() {
        let c = &host.chains[i];
        if c.hook == "forward" && c.policy == "drop" {
            let accepted = accepts(c, bridge)
                || docker_user(&host.chains, c).is_some_and(|u| accepts(u, bridge));
            host.chains[i].accepts_bridge = accepted;
        }
    }
    host.legacy_forward_drop = std::fs::read_to_string("/proc/net/ip_tables_names")
        .is_ok_and(|t| t.lines().any(|l| l == "filter"))
        && berth_host::run_command("iptables-legacy", &["-S", "FORWARD"])
            .is_ok_and(|o| o.lines().any(|l| l.trim() == "-P FORWARD DROP"));
    host.br_netfilter = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|v| v.trim() == "1");
    host.firewalld = host.chains.iter().any(|c| c.table == "firewalld")
        || std::path::Path::new("/run/firewalld/firewalld.pid").exists();
    host.ufw = std::fs::read_to_string("/etc/ufw/ufw.conf")
        .is_ok_and(|t| t.lines().any(|l| l.trim() == "ENABLED=yes"));
    host
}

/// The `DOCKER-USER` chain of `c`'s table, when it has one.
fn docker_user<'a>(chains: &'a [Chain], c: &Chain) -> Option<&'a Chain> {
    chains
        .iter()
        .find(|o| o.family == c.family && o.table == c.table && o.name == "DOCKER-USER")
}

/// The comment tagging the accept rules berthd `own` (`berth_<id>`) put for `bridge`.
fn tag(own: &str, bridge: &str) -> String {
    format!("{own}:{bridge}")
}

/// Puts accept rules for `bridge` in each foreign forward chain that drops its traffic
/// (its table's `DOCKER-USER` when there is one). Returns whether it added any.
fn admit(host: &Host, own: &str, bridge: &str) -> bool {
    let mut added = false;
    for c in host
        .chains
        .iter()
        .filter(|c| c.hook == "forward" && c.policy == "drop" && !c.accepts_bridge)
    {
        let into = docker_user(&host.chains, c).unwrap_or(c);
        for dir in ["oifname", "iifname"] {
            let rule = format!(
                "insert rule {} {} {} {dir} \"{bridge}\" accept comment \"{}\"",
                into.family,
                into.table,
                into.name,
                tag(own, bridge)
            );
            match berth_host::run_command("nft", &[rule.as_str()]) {
                Ok(_) => added = true,
                Err(e) => {
                    tracing::warn!(chain = %into.name, table = %into.table, error = %e, "Accept rule not added to a foreign chain");
                }
            }
        }
        tracing::info!(network = bridge, chain = %into.name, table = %into.table, family = %into.family, "Accept rules added to a foreign forward chain (network.host_firewall.accept)");
    }
    added
}

/// Removes the accept rules berthd `own` put in foreign chains: those for `bridges`, or
/// every one of its own (`None`).
fn withdraw(own: &str, bridges: Option<&[String]>) {
    let Ok(listed) = berth_host::run_command("nft", &["-j", "list", "ruleset"]) else {
        return;
    };
    let v: serde_json::Value = serde_json::from_str(&listed).unwrap_or_default();
    let prefix = format!("{own}:");
    for rule in v
        .get("nftables")
        .and_then(|n| n.as_array())
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("rule"))
    {
        let s = |k: &str| rule.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        let Some(bridge) = s("comment").strip_prefix(&prefix) else {
            continue;
        };
        if bridges.is_some_and(|b| !b.iter().any(|n| n == bridge)) || s("table") == own {
            continue;
        }
        let handle = rule.get("handle").and_then(|h| h.as_u64()).unwrap_or(0);
        let cmd = format!(
            "delete rule {} {} {} handle {handle}",
            s("family"),
            s("table"),
            s("chain")
        );
        if let Err(e) = berth_host::run_command("nft", &[cmd.as_str()]) {
            tracing::warn!(error = %e, "Accept rule not removed from a foreign chain");
        }
    }
}

/// Removes what berthd put in foreign chains for network `name` (it is deleted).
/// Blocking (it runs nft).
pub fn forget(id: &str, name: &str) {
    withdraw(&format!("berth_{id}"), Some(&[name.to_owned()]));
}

/// Whether a foreign chain accepts traffic in and out of `bridge` (its rules name the
/// bridge as iifname and oifname with an accept).
fn accepts(c: &Chain, bridge: &str) -> bool {
    let Ok(out) = berth_host::run_command(
        "nft",
        &["-j", "list", "chain", &c.family, &c.table, &c.name],
    ) else {
        return false;
    };
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let rules: Vec<String> = v
        .get("nftables")
        .and_then(|n| n.as_array())
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("rule"))
        .map(|r| r.to_string())
        .collect();
    let names = |key: &str| {
        rules.iter().any(|r| {
            r.contains(&format!("{{\"meta\":{{\"key\":\"{key}\"}}}}"))
                && r.contains(&format!("\"right\":\"{bridge}\""))
                && r.contains("\"accept\"")
        })
    };
    names("iifname") && names("oifname")
}

/// What of the host's firewall breaks each of `networks`: (network, findings). Blocking
/// (it runs nft); `id` is the daemon's, whose own table is not looked at. With `accept`
/// (the server key `network.host_firewall.accept`), foreign chains that drop a network
/// get its accept rules first; without, berthd's rules in them go.
pub fn scan(
    id: &str,
    networks: &[String],
    accept: bool,
) -> Vec<(String, Vec<(&'static str, String)>)> {
    let own = format!("berth_{id}");
    if !accept {
        withdraw(&own, None);
    }
    networks
        .iter()
        .map(|n| {
            let mut host = read(&own, n);
            if accept && admit(&host, &own, n) {
                host = read(&own, n);
            }
            (n.clone(), findings(&host, n))
        })
        .collect()
}

/// Raises a warning per finding of [`scan`], and resolves those no longer found.
pub fn record(cx: &Ctx, scanned: &[(String, Vec<(&'static str, String)>)]) {
    for (network, found) in scanned {
        let url = super::url(network);
        for kind in KINDS {
            match found.iter().find(|(k, _)| k == kind) {
                Some((_, message)) => crate::warning::raise(cx, kind, &url, "moderate", message),
                None => crate::warning::resolve(cx, kind, &url),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(table: &str, name: &str, hook: &str, policy: &str) -> Chain {
        Chain {
            family: "ip".into(),
            table: table.into(),
            name: name.into(),
            hook: hook.into(),
            policy: policy.into(),
            accepts_bridge: false,
        }
    }

    #[test]
    fn a_dropping_forward_chain_is_named_with_its_fix() {
        let mut host = Host {
            chains: vec![
                chain("filter", "FORWARD", "forward", "drop"),
                chain("filter", "INPUT", "input", "drop"),
            ],
            ..Host::default()
        };
        let f = findings(&host, "br0");
        assert_eq!(f.len(), 1);
        assert!(
            f[0].1.contains("chain FORWARD of table ip filter"),
            "{}",
            f[0].1
        );
        assert!(
            f[0].1
                .contains("nft insert rule ip filter FORWARD iifname \"br0\" accept"),
            "{}",
            f[0].1
        );
        // Docker's table: the fix goes into DOCKER-USER.
        host.chains.push(chain("filter", "DOCKER-USER", "", ""));
        assert!(
            findings(&host, "br0")[0]
                .1
                .contains("iptables -I DOCKER-USER -i br0 -j ACCEPT")
        );
        // Accepted already: nothing to say.
        host.chains[0].accepts_bridge = true;
        assert!(findings(&host, "br0").is_empty());
        let quiet = Host {
            br_netfilter: true,
            ..Host::default()
        };
        assert!(
            findings(&quiet, "br0").is_empty(),
            "nothing drops: nothing to say"
        );
        let all = Host {
            legacy_forward_drop: true,
            br_netfilter: true,
            firewalld: true,
            ufw: true,
            ..Host::default()
        };
        assert_eq!(findings(&all, "br0").len(), 4);
    }
}
