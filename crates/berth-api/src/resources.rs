//! `GET /1.0/resources`: the host's hardware, in LXD's shape (`lxc info --resources`).

use serde::{Deserialize, Serialize};

/// Everything the server knows of the host's hardware.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub cpu: ResourcesCpu,
    pub memory: ResourcesMemory,
    pub gpu: ResourcesList,
    pub network: ResourcesList,
    pub storage: ResourcesStorage,
    pub usb: ResourcesDevices,
    pub pci: ResourcesDevices,
    pub system: ResourcesSystem,
    pub load: ResourcesLoad,
}

/// CPUs by socket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesCpu {
    pub architecture: String,
    pub sockets: Vec<ResourcesCpuSocket>,
    pub total: u64,
}

/// One CPU socket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesCpuSocket {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vendor: String,
    pub socket: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<ResourcesCpuCache>,
    pub cores: Vec<ResourcesCpuCore>,
    #[serde(skip_serializing_if = "is_zero")]
    pub frequency: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub frequency_minimum: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub frequency_turbo: u64,
}

/// One CPU cache level.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesCpuCache {
    pub level: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub size: u64,
}

/// One CPU core and its hardware threads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesCpuCore {
    pub core: u64,
    pub die: u64,
    pub threads: Vec<ResourcesCpuThread>,
    #[serde(skip_serializing_if = "is_zero")]
    pub frequency: u64,
    pub flags: Vec<String>,
}

/// One hardware thread (a logical CPU).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesCpuThread {
    pub id: i64,
    pub numa_node: u64,
    pub thread: u64,
    pub online: bool,
    pub isolated: bool,
}

/// System memory, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesMemory {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<ResourcesMemoryNode>,
    pub hugepages_total: u64,
    pub hugepages_used: u64,
    pub hugepages_size: u64,
    pub used: u64,
    pub total: u64,
}

/// Memory of one NUMA node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesMemoryNode {
    pub numa_node: u64,
    pub hugepages_used: u64,
    pub hugepages_total: u64,
    pub used: u64,
    pub total: u64,
}

/// GPU and network cards (not inventoried yet: always empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesList {
    pub cards: Vec<serde_json::Value>,
    pub total: u64,
}

/// USB and PCI devices (not inventoried yet: always empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesDevices {
    pub devices: Vec<serde_json::Value>,
    pub total: u64,
}

/// Block devices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesStorage {
    pub disks: Vec<ResourcesStorageDisk>,
    pub total: u64,
}

/// One disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesStorageDisk {
    pub id: String,
    pub device: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub model: String,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub read_only: bool,
    pub size: u64,
    pub removable: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub wwn: String,
    pub numa_node: u64,
    pub device_path: String,
    pub block_size: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub firmware_version: String,
    pub rpm: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub serial: String,
    pub device_id: String,
    pub partitions: Vec<ResourcesStorageDiskPartition>,
}

/// One partition of a disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesStorageDiskPartition {
    pub id: String,
    pub device: String,
    pub read_only: bool,
    pub size: u64,
    pub partition: u64,
}

/// The machine itself, from DMI where the host exposes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesSystem {
    pub uuid: String,
    pub vendor: String,
    pub product: String,
    pub family: String,
    pub version: String,
    pub sku: String,
    pub serial: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// Load averages and process count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourcesLoad {
    pub average_1min: f64,
    pub average_5min: f64,
    pub average_15min: f64,
    pub processes: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
