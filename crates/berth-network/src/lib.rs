//! Network drivers for berth, behind one [`Driver`] trait: the twin of `berth-storage`.
//!
//! A managed network is something on the host containers attach to: for the `bridge`
//! driver a Linux bridge with its addresses, a dnsmasq serving DHCP and DNS on it, and
//! its NAT and accept rules in an nftables table of berthd's own. A driver knows how to
//! validate a network's configuration (resolving `auto` addresses without sending a
//! packet), bring it up, report its state and leases, and take it down; validation of
//! requests, the database, locking and undo live in the daemon above. Drivers are found
//! by name through [`load`]; [`supported`] lists them.
//!
//! Every host-global name a driver makes (the nftables table, the bridge's ownership
//! mark) derives from [`Env::id`], which the daemon derives from its state directory, so
//! two daemons on one host never collide. This crate knows nothing of the daemon or of
//! any database.

mod drivers;
mod error;
pub mod host;
pub mod nat;
pub mod nic;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

pub use drivers::bridge;
pub use error::{NetworkError, NetworkErrorKind};

/// What a driver is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverInfo {
    /// The network type, as in a network's `type` field (`bridge`).
    pub name: &'static str,
}

/// Where and as whom a network lives.
#[derive(Debug, Clone)]
pub struct Env {
    /// The network's own directory (dnsmasq's files, leases, raw configuration).
    pub dir: PathBuf,
    /// This daemon's id: 8 hex digits derived from its state directory. The nftables
    /// table is `berth_ID`; a bridge berth made is marked `berth:ID`.
    pub id: String,
    /// The subnets other managed networks of this daemon use, which `auto` avoids.
    pub taken: Vec<ipnet::IpNet>,
}

impl Env {
    /// The name of this daemon's nftables table (family `inet`).
    pub fn nft_table(&self) -> String {
        format!("berth_{}", self.id)
    }
}

/// An address of a network's interface, as LXD's network state has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// `inet` or `inet6`.
    pub family: String,
    pub address: String,
    pub netmask: String,
    /// `global` or `link`.
    pub scope: String,
}

/// What the host says of a network's interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkState {
    pub addresses: Vec<Address>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub hwaddr: String,
    pub mtu: u32,
    /// `up` or `down`.
    pub state: String,
    /// The interfaces attached to the bridge.
    pub upper_devices: Vec<String>,
}

/// A DHCP lease or a static allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub hostname: String,
    pub hwaddr: String,
    pub address: String,
    /// `gateway`, `static` or `dynamic`.
    pub kind: String,
}

/// A network driver, bound to one network and its effective configuration.
///
/// # Lifecycle
///
/// 1. [`load`] validates the configuration (refusing unknown keys and bad values) and
///    resolves `auto` addresses against the host's routes and addresses and the other
///    networks', without touching the host or sending a packet.
/// 2. [`start`](Driver::start) brings the network up on the host: at creation, at every
///    daemon start and after an update. It is idempotent: what exists is checked and
///    kept or corrected (one dnsmasq, the same rules).
/// 3. [`stop`](Driver::stop) takes it down (its interface, dnsmasq, its rules); it
///    succeeds when nothing is there, so it serves as the undo of a failed `start`.
/// 4. [`delete`](Driver::delete) removes what remains on the host (its directory).
///
/// A daemon that stops leaves networks up: containers keep their connectivity.
pub trait Driver: Send + Sync + fmt::Debug {
    /// What this driver is.
    fn info(&self) -> DriverInfo;
    /// The network's name.
    fn name(&self) -> &str;
    /// The effective configuration, `auto` resolved; this is what the daemon stores.
    fn config(&self) -> &BTreeMap<String, String>;
    /// Brings the network up, or corrects it.
    fn start(&self) -> Result<(), NetworkError>;
    /// Takes it down.
    fn stop(&self) -> Result<(), NetworkError>;
    /// Removes what remains of it.
    fn delete(&self) -> Result<(), NetworkError>;
    /// Its interface as the host sees it.
    fn state(&self) -> Result<NetworkState, NetworkError>;
    /// Its DHCP leases and static allocations.
    fn leases(&self) -> Result<Vec<Lease>, NetworkError>;
    /// The subnets it uses, for other networks' `auto`.
    fn subnets(&self) -> Vec<ipnet::IpNet>;
    /// Records a static allocation under `key` (one per nic): its MAC, addresses and
    /// name, served from the next DHCP request on; written whole before it is read.
    fn set_static(
        &self,
        key: &str,
        hwaddr: &str,
        addresses: &[String],
        hostname: &str,
    ) -> Result<(), NetworkError>;
    /// Forgets the static allocation under `key`.
    fn remove_static(&self, key: &str);
    /// Puts back what someone else took away while the network ran (its rules after a
    /// flushed ruleset); returns whether anything was missing.
    fn check(&self) -> Result<bool, NetworkError>;
}

/// Checks a network's name: it is its bridge's interface name too, so at most 15 bytes,
/// letters, digits, `-`, `_` and `.`, starting with a letter.
pub fn validate_name(name: &str) -> Result<(), NetworkError> {
    let bad = |reason| NetworkError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > 15 {
        return Err(bad(
            "use 1 to 15 characters (it names the host's interface)",
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(bad("start with a letter"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(bad("use letters, digits, -, _ and ."));
    }
    Ok(())
}

/// How a driver is loaded: network name, configuration, environment.
type Loader = fn(&str, BTreeMap<String, String>, Env) -> Result<Box<dyn Driver>, NetworkError>;

struct Registration {
    name: &'static str,
    defaults: fn(&mut BTreeMap<String, String>),
    load: Loader,
}

const REGISTRY: &[Registration] = &[Registration {
    name: bridge::NAME,
    defaults: bridge::defaults,
    load: bridge::load,
}];

fn registration(kind: &str) -> Result<&'static Registration, NetworkError> {
    REGISTRY
        .iter()
        .find(|r| r.name == kind)
        .ok_or_else(|| NetworkError::UnknownType {
            kind: kind.to_owned(),
        })
}

/// What a new network of type `kind` gets for the keys its creator left out (`auto`
/// subnets for a bridge). Only at creation: an update that removes a key removes it.
pub fn with_defaults(
    kind: &str,
    mut config: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, NetworkError> {
    (registration(kind)?.defaults)(&mut config);
    Ok(config)
}

/// The driver of type `kind` for network `name`: its configuration validated and `auto`
/// resolved, nothing done on the host yet.
pub fn load(
    kind: &str,
    name: &str,
    config: BTreeMap<String, String>,
    env: Env,
) -> Result<Box<dyn Driver>, NetworkError> {
    validate_name(name)?;
    (registration(kind)?.load)(name, config, env)
}

/// Every network type berth knows.
pub fn supported() -> Vec<DriverInfo> {
    REGISTRY
        .iter()
        .map(|r| DriverInfo { name: r.name })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_interface_names() {
        validate_name("berthbr0").unwrap();
        for bad in ["", "0br", "a-very-long-name", "br 0", "br/0"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            load(
                "ovn",
                "n1",
                BTreeMap::new(),
                Env {
                    dir: PathBuf::from("/nonexistent"),
                    id: "0".into(),
                    taken: vec![],
                }
            ),
            Err(NetworkError::UnknownType { .. })
        ));
        assert_eq!(supported()[0].name, "bridge");
    }
}
