//! Networks: managed bridges and the host's own interfaces, their state and leases.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A network as `GET /1.0/networks/{name}` returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Network {
    pub name: String,
    pub description: String,
    /// `bridge` for a managed network; `bridge`, `physical`, `loopback`, `bond`, `vlan`
    /// or `unknown` for a host interface.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether berthd manages it (a host interface is listed with `false`).
    pub managed: bool,
    /// `Created`, `Errored` (it could not start; berthd retries), or empty when unmanaged.
    pub status: String,
    pub config: BTreeMap<String, String>,
    pub used_by: Vec<String>,
    pub locations: Vec<String>,
    pub project: String,
}

/// `POST /1.0/networks`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworksPost {
    pub name: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// `PUT|PATCH /1.0/networks/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPut {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// `POST /1.0/networks/{name}`: a rename.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPost {
    pub name: String,
}

/// `GET /1.0/networks/{name}/state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkState {
    pub addresses: Vec<NetworkStateAddress>,
    pub counters: NetworkStateCounters,
    pub hwaddr: String,
    pub mtu: u64,
    /// `up` or `down`.
    pub state: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub bond: Option<serde_json::Value>,
    pub bridge: Option<NetworkStateBridge>,
    pub vlan: Option<serde_json::Value>,
}

/// An address of a network's interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStateAddress {
    /// `inet` or `inet6`.
    pub family: String,
    pub address: String,
    /// The prefix length, as a string.
    pub netmask: String,
    /// `global` or `link`.
    pub scope: String,
}

/// An interface's traffic counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStateCounters {
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
}

/// What a bridge's state adds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkStateBridge {
    pub id: String,
    pub stp: bool,
    pub forward_delay: u64,
    pub vlan_default: u64,
    pub vlan_filtering: bool,
    pub upper_devices: Vec<String>,
}

/// `GET /1.0/networks/{name}/leases`: one entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkLease {
    pub hostname: String,
    pub hwaddr: String,
    pub address: String,
    /// `gateway`, `static` or `dynamic`.
    #[serde(rename = "type")]
    pub kind: String,
    pub location: String,
    pub project: String,
}
