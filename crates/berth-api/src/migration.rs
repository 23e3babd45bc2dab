//! LXD's migration protocol: the protobuf messages on a migration's `control` websocket
//! (`migrate.proto`, proto2, one message per binary websocket message), and the JSON
//! index header and reply that open its `fs` websocket.
//!
//! The messages are written by hand with prost's derive (no protoc step). proto2
//! `required` fields are plain values, always encoded, as Go's protobuf insists on;
//! `optional` ones are `Option`s, because presence matters (`criu` absent is a stateless
//! stopped source, `CRIU_RSYNC` = 0 a live one).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a volume travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MigrationFsType {
    Rsync = 0,
    Btrfs = 1,
    Zfs = 2,
    Rbd = 3,
    BlockAndRsync = 4,
}

/// How the running state travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CriuType {
    CriuRsync = 0,
    Phaul = 1,
    None = 2,
}

/// One range of an id map.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IdMapType {
    #[prost(bool, required, tag = "1")]
    pub isuid: bool,
    #[prost(bool, required, tag = "2")]
    pub isgid: bool,
    #[prost(int32, required, tag = "3")]
    pub hostid: i32,
    #[prost(int32, required, tag = "4")]
    pub nsid: i32,
    #[prost(int32, required, tag = "5")]
    pub maprange: i32,
}

/// A configuration key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Config {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub value: String,
}

/// A device and its configuration.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Device {
    #[prost(string, required, tag = "1")]
    pub name: String,
    #[prost(message, repeated, tag = "2")]
    pub config: Vec<Config>,
}

/// A snapshot as the source describes it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Snapshot {
    #[prost(string, required, tag = "1")]
    pub name: String,
    #[prost(message, repeated, tag = "2")]
    pub local_config: Vec<Config>,
    #[prost(string, repeated, tag = "3")]
    pub profiles: Vec<String>,
    #[prost(bool, required, tag = "4")]
    pub ephemeral: bool,
    #[prost(message, repeated, tag = "5")]
    pub local_devices: Vec<Device>,
    #[prost(int32, required, tag = "6")]
    pub architecture: i32,
    #[prost(bool, required, tag = "7")]
    pub stateful: bool,
    #[prost(int64, optional, tag = "8")]
    pub creation_date: Option<i64>,
    #[prost(int64, optional, tag = "9")]
    pub last_used_date: Option<i64>,
    #[prost(int64, optional, tag = "10")]
    pub expiry_date: Option<i64>,
}

/// What rsync may do.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RsyncFeatures {
    #[prost(bool, optional, tag = "1")]
    pub xattrs: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub delete: Option<bool>,
    #[prost(bool, optional, tag = "3")]
    pub compress: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    pub bidirectional: Option<bool>,
}

/// What zfs send may do (unused by berth).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZfsFeatures {
    #[prost(bool, optional, tag = "1")]
    pub compress: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub migration_header: Option<bool>,
}

/// What btrfs send may do.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BtrfsFeatures {
    #[prost(bool, optional, tag = "1")]
    pub migration_header: Option<bool>,
    #[prost(bool, optional, tag = "2")]
    pub header_subvolumes: Option<bool>,
    #[prost(bool, optional, tag = "3")]
    pub header_subvolume_uuids: Option<bool>,
}

/// The source's offer, and the target's answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MigrationHeader {
    #[prost(enumeration = "MigrationFsType", required, tag = "1")]
    pub fs: i32,
    #[prost(enumeration = "CriuType", optional, tag = "2")]
    pub criu: Option<i32>,
    #[prost(message, repeated, tag = "3")]
    pub idmap: Vec<IdMapType>,
    #[prost(string, repeated, tag = "4")]
    pub snapshot_names: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    pub snapshots: Vec<Snapshot>,
    #[prost(bool, optional, tag = "7")]
    pub predump: Option<bool>,
    #[prost(message, optional, tag = "8")]
    pub rsync_features: Option<RsyncFeatures>,
    #[prost(bool, optional, tag = "9")]
    pub refresh: Option<bool>,
    #[prost(message, optional, tag = "10")]
    pub zfs_features: Option<ZfsFeatures>,
    #[prost(int64, optional, tag = "11")]
    pub volume_size: Option<i64>,
    #[prost(message, optional, tag = "12")]
    pub btrfs_features: Option<BtrfsFeatures>,
    #[prost(uint32, optional, tag = "13")]
    pub index_header_version: Option<u32>,
}

/// The end of a migration: sent by the target on success, by either side on failure.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MigrationControl {
    #[prost(bool, required, tag = "1")]
    pub success: bool,
    #[prost(string, optional, tag = "2")]
    pub message: Option<String>,
}

/// A pre-dump round's end (live migration).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MigrationSync {
    #[prost(bool, required, tag = "1")]
    pub final_pre_dump: bool,
}

/// The index header: what is about to be sent, as a backup's `backup.yaml` describes it.
/// Inner keys are Go field names (LXD gives them no JSON tags); every one is present,
/// `null` when empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationInfo {
    #[serde(default)]
    pub config: Option<BackupConfig>,
}

/// The instance, its snapshots, pool, profiles and volumes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupConfig {
    #[serde(rename = "Container", default)]
    pub container: Option<serde_json::Value>,
    #[serde(rename = "Snapshots", default)]
    pub snapshots: Option<Vec<serde_json::Value>>,
    #[serde(rename = "Pool", default)]
    pub pool: Option<serde_json::Value>,
    #[serde(rename = "Profiles", default)]
    pub profiles: Option<Vec<serde_json::Value>>,
    #[serde(rename = "Volume", default)]
    pub volume: Option<VolumeInfo>,
    #[serde(rename = "VolumeSnapshots", default)]
    pub volume_snapshots: Option<Vec<VolumeSnapshotInfo>>,
}

/// The instance's volume as the index header carries it (Go's `null` for an empty list
/// or map is read as empty, as Incus sends them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeInfo {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub name: String,
    #[serde(rename = "type", default, deserialize_with = "crate::null_as_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub description: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub config: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub used_by: Vec<String>,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub location: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub content_type: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub project: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub created_at: String,
}

/// One of the volume's snapshots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeSnapshotInfo {
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub description: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub config: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub content_type: String,
    #[serde(default, deserialize_with = "crate::null_as_default")]
    pub created_at: String,
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// The target's answer to the index header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InfoResponse {
    #[serde(rename = "StatusCode")]
    pub status_code: i32,
    #[serde(rename = "Error", default)]
    pub error: String,
    #[serde(rename = "Refresh", default)]
    pub refresh: Option<bool>,
}

/// The index header version berth speaks.
pub const INDEX_HEADER_VERSION: u32 = 1;

/// LXD's numeric architecture ids, as migration headers carry them.
pub fn architecture_id(name: &str) -> i32 {
    match name {
        "i686" => 1,
        "x86_64" => 2,
        "armv7l" => 3,
        "aarch64" => 4,
        "ppc" => 5,
        "ppc64" => 6,
        "ppc64le" => 7,
        "s390x" => 8,
        "mips" => 9,
        "mips64" => 10,
        "riscv32" => 11,
        "riscv64" => 12,
        "loongarch64" => 13,
        _ => 0,
    }
}

/// The name of LXD's numeric architecture id.
pub fn architecture_name(id: i32) -> &'static str {
    match id {
        1 => "i686",
        2 => "x86_64",
        3 => "armv7l",
        4 => "aarch64",
        5 => "ppc",
        6 => "ppc64",
        7 => "ppc64le",
        8 => "s390x",
        9 => "mips",
        10 => "mips64",
        11 => "riscv32",
        12 => "riscv64",
        13 => "loongarch64",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn offer_encodes_as_lxd_does() {
        let offer = MigrationHeader {
            fs: MigrationFsType::Rsync as i32,
            idmap: vec![IdMapType {
                isuid: true,
                isgid: false,
                hostid: 1_000_000,
                nsid: 0,
                maprange: 1_000_000_000,
            }],
            predump: Some(false),
            rsync_features: Some(RsyncFeatures {
                xattrs: Some(true),
                delete: Some(true),
                compress: Some(true),
                bidirectional: Some(true),
            }),
            index_header_version: Some(1),
            ..Default::default()
        };
        let bytes = offer.encode_to_vec();
        let want = [
            0x08, 0x00, 0x1a, 0x10, 0x08, 0x01, 0x10, 0x00, 0x18, 0xc0, 0x84, 0x3d, 0x20, 0x00,
            0x28, 0x80, 0x94, 0xeb, 0xdc, 0x03, 0x38, 0x00, 0x42, 0x08, 0x08, 0x01, 0x10, 0x01,
            0x18, 0x01, 0x20, 0x01, 0x68, 0x01,
        ];
        assert_eq!(bytes, want);
        assert_eq!(MigrationHeader::decode(&bytes[..]).unwrap(), offer);
        let ok = MigrationControl {
            success: true,
            message: Some(String::new()),
        };
        assert_eq!(ok.encode_to_vec(), [0x08, 0x01, 0x12, 0x00]);
    }

    #[test]
    fn info_keys_are_go_names() {
        let info = MigrationInfo {
            config: Some(BackupConfig {
                volume: Some(VolumeInfo::default()),
                ..Default::default()
            }),
        };
        let text = serde_json::to_string(&info).unwrap();
        assert!(
            text.contains("\"Volume\"") && text.contains("\"Container\":null"),
            "{text}"
        );
        let r: InfoResponse =
            serde_json::from_str(r#"{"StatusCode":200,"Error":"","Refresh":false}"#).unwrap();
        assert_eq!(r.status_code, 200);
    }
}
