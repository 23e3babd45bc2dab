//! The `bridge` driver: a Linux bridge with the network's addresses, one dnsmasq on it,
//! and its rules in berthd's nftables table.
//!
//! A bridge berth made carries the alias `berth:ID` (and, between its creation and the
//! alias, a `created` mark in the network's directory), so a start adopts its own bridge
//! after a crash and refuses a link of the same name that someone else made. `start`
//! corrects what differs and keeps what is right: addresses are added and removed one by
//! one (containers never see the gateway vanish), dnsmasq is kept when its arguments are
//! the same, and the rules are rewritten in one batch.

pub mod config;
pub mod dnsmasq;
pub mod firewall;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use ipnet::IpNet;

use crate::error::NetworkError;
use crate::host;
use crate::{Driver, DriverInfo, Env, Lease, NetworkState};

/// The network type this driver serves.
pub const NAME: &str = "bridge";

/// What a new bridge gets when its configuration leaves them out: automatic IPv4 and IPv6
/// subnets (with NAT, filled in when `auto` is resolved).
pub fn defaults(config: &mut BTreeMap<String, String>) {
    for key in ["ipv4.address", "ipv6.address"] {
        config
            .entry(key.to_owned())
            .or_insert_with(|| "auto".to_owned());
    }
}

/// The bridge driver for network `name`: its configuration validated and `auto` resolved.
pub fn load(
    name: &str,
    config: BTreeMap<String, String>,
    env: Env,
) -> Result<Box<dyn Driver>, NetworkError> {
    let config = config::validate(name, config, &env)?;
    Ok(Box::new(Bridge {
        name: name.to_owned(),
        config,
        env,
    }))
}

/// One bridge network.
#[derive(Debug)]
pub struct Bridge {
    name: String,
    config: BTreeMap<String, String>,
    env: Env,
}

fn sysctl(path: &str, value: &str) -> Result<(), NetworkError> {
    let p = Path::new("/proc/sys/net").join(path);
    match std::fs::write(&p, value) {
        Ok(()) => Ok(()),
        // No IPv6 in this kernel, or no such interface: nothing to set.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetworkError::Io {
            what: "write",
            path: p,
            source,
        }),
    }
}

fn read_sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(Path::new("/proc/sys/net").join(path))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// A MAC for a bridge that keeps it across restarts: from the daemon's id and the name,
/// in the 00:16:3e block.
fn stable_mac(id: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{id}/{name}/bridge"));
    format!("00:16:3e:{:02x}:{:02x}:{:02x}", h[0], h[1], h[2])
}

impl Bridge {
    fn files(&self) -> dnsmasq::Files {
        dnsmasq::Files {
            dir: self.env.dir.clone(),
        }
    }

    fn alias(&self) -> String {
        format!("berth:{}", self.env.id)
    }

    fn created_mark(&self) -> std::path::PathBuf {
        self.env.dir.join("created")
    }

    fn hwaddr(&self) -> String {
        self.config
            .get("bridge.hwaddr")
            .cloned()
            .unwrap_or_else(|| stable_mac(&self.env.id, &self.name))
    }

    fn ip(&self, what: &'static str, args: &[&str]) -> Result<String, NetworkError> {
        berth_host::run_command("ip", args).map_err(|source| NetworkError::Command {
            network: self.name.clone(),
            what,
            source,
        })
    }

    /// Whether `link` is this network's bridge.
    fn ours(&self, link: &host::Link) -> bool {
        link.kind == "bridge" && (link.alias == self.alias() || self.created_mark().exists())
    }

    fn link(&self) -> Result<(), NetworkError> {
        let mtu = self.config.get("bridge.mtu").map_or("1500", String::as_str);
        let mac = self.hwaddr();
        match host::link(&self.name)? {
            Some(l) if !self.ours(&l) => {
                return Err(NetworkError::LinkTaken {
                    name: self.name.clone(),
                });
            }
            Some(l) => {
                if l.mtu.to_string() != mtu {
                    self.ip("Setting the MTU", &["link", "set", &self.name, "mtu", mtu])?;
                }
                if l.address != mac {
                    self.ip(
                        "Setting the MAC",
                        &["link", "set", &self.name, "address", &mac],
                    )?;
                }
            }
            None => {
                std::fs::write(self.created_mark(), b"").map_err(|source| NetworkError::Io {
                    what: "write",
                    path: self.created_mark(),
                    source,
                })?;
                self.ip(
                    "Creating the bridge",
                    &[
                        "link", "add", "name", &self.name, "mtu", mtu, "address", &mac, "type",
                        "bridge",
                    ],
                )?;
            }
        }
        self.ip(
            "Marking the bridge",
            &["link", "set", &self.name, "alias", &self.alias()],
        )?;
        let _ = std::fs::remove_file(self.created_mark());
        Ok(())
    }

    /// The bridge's own addresses, as its configuration wants them.
    fn wanted(&self) -> Vec<IpNet> {
        ["ipv4.address", "ipv6.address"]
            .iter()
            .filter_map(|k| self.config.get(*k)?.parse().ok())
            .collect()
    }

    fn addresses(&self) -> Result<(), NetworkError> {
        let name = &self.name;
        let v6 = self.config.get("ipv6.address").is_some_and(|v| v != "none");
        if v6 {
            for (k, v) in [
                ("disable_ipv6", "0"),
                ("autoconf", "0"),
                ("accept_dad", "0"),
                ("accept_ra", "0"),
            ] {
                sysctl(&format!("ipv6/conf/{name}/{k}"), v)?;
            }
        } else {
            sysctl(&format!("ipv6/conf/{name}/disable_ipv6"), "1")?;
        }
        let wanted = self.wanted();
        let have: Vec<IpNet> = host::addresses()?
            .into_iter()
            .filter(|(l, a)| l == name && !host::is_link_local(a))
            .map(|(_, a)| a)
            .collect();
        for a in have.iter().filter(|a| !wanted.contains(a)) {
            self.ip(
                "Removing an address",
                &["addr", "del", &a.to_string(), "dev", name],
            )?;
        }
        for a in wanted.iter().filter(|a| !have.contains(a)) {
            self.ip(
                "Adding an address",
                &["addr", "add", &a.to_string(), "dev", name],
            )?;
        }
        self.ip("Bringing the bridge up", &["link", "set", name, "up"])?;
        if let Some(routes) = self.config.get("ipv4.routes") {
            for r in routes.split(',') {
                self.ip(
                    "Adding a route",
                    &["route", "replace", r.trim(), "dev", name, "proto", "static"],
                )?;
            }
        }
        let routing = self.config.get("ipv4.routing").is_none_or(|v| v == "true");
        if routing && self.config.get("ipv4.address").is_some_and(|v| v != "none") {
            sysctl("ipv4/ip_forward", "1")?;
        }
        if v6 && read_sysctl("ipv6/conf/all/forwarding").as_deref() != Some("1") {
            // Forwarding makes the kernel ignore router advertisements where accept_ra is
            // 1: raise those to 2 first so the host keeps its own SLAAC route.
            for entry in std::fs::read_dir("/proc/sys/net/ipv6/conf")
                .into_iter()
                .flatten()
                .flatten()
            {
                let iface = entry.file_name().to_string_lossy().into_owned();
                if iface != "all"
                    && read_sysctl(&format!("ipv6/conf/{iface}/accept_ra")).as_deref() == Some("1")
                {
                    sysctl(&format!("ipv6/conf/{iface}/accept_ra"), "2")?;
                }
            }
            sysctl("ipv6/conf/all/forwarding", "1")?;
        }
        Ok(())
    }

    fn runs_dnsmasq(&self) -> bool {
        !self.wanted().is_empty()
    }
}

impl Driver for Bridge {
    fn info(&self) -> DriverInfo {
        DriverInfo { name: NAME }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn config(&self) -> &BTreeMap<String, String> {
        &self.config
    }

    fn start(&self) -> Result<(), NetworkError> {
        // dnsmasq reads its hosts directory as nobody: the directory is traversable.
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.env.dir)
            .and_then(|()| {
                std::fs::set_permissions(&self.env.dir, std::fs::Permissions::from_mode(0o711))
            })
            .map_err(|source| NetworkError::Io {
                what: "create",
                path: self.env.dir.clone(),
                source,
            })?;
        self.link()?;
        self.addresses()?;
        firewall::apply(&self.env.nft_table(), &self.name, &self.config)?;
        let files = self.files();
        if self.runs_dnsmasq() {
            let raw = self.config.get("raw.dnsmasq").cloned().unwrap_or_default();
            let args = dnsmasq::args(&self.name, &self.config, &files);
            dnsmasq::ensure(&self.name, &files, &format!("{raw}\n"), &args)?;
        } else {
            dnsmasq::stop(&files);
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), NetworkError> {
        firewall::remove(&self.env.nft_table(), &self.name)?;
        dnsmasq::stop(&self.files());
        if let Some(l) = host::link(&self.name)?
            && self.ours(&l)
        {
            self.ip("Deleting the bridge", &["link", "del", &self.name])?;
        }
        let _ = std::fs::remove_file(self.created_mark());
        Ok(())
    }

    fn delete(&self) -> Result<(), NetworkError> {
        match std::fs::remove_dir_all(&self.env.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(NetworkError::Io {
                what: "remove",
                path: self.env.dir.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    fn state(&self) -> Result<NetworkState, NetworkError> {
        Ok(host::state(&self.name)?.unwrap_or_else(|| NetworkState {
            state: "down".to_owned(),
            ..NetworkState::default()
        }))
    }

    fn leases(&self) -> Result<Vec<Lease>, NetworkError> {
        Ok(dnsmasq::leases(&self.files(), &self.state()?))
    }

    fn subnets(&self) -> Vec<IpNet> {
        self.wanted().iter().map(IpNet::trunc).collect()
    }

    fn set_static(
        &self,
        key: &str,
        hwaddr: &str,
        addresses: &[String],
        hostname: &str,
    ) -> Result<(), NetworkError> {
        dnsmasq::set_static(&self.files(), key, hwaddr, addresses, hostname)
    }

    fn remove_static(&self, key: &str) {
        dnsmasq::remove_static(&self.files(), key);
    }

    fn check(&self) -> Result<bool, NetworkError> {
        let table = self.env.nft_table();
        if firewall::present(&table, &self.name)? {
            return Ok(false);
        }
        firewall::apply(&table, &self.name, &self.config)?;
        Ok(true)
    }
}
