//! The devices of an instance or a profile, read and replaced whole: what `berth config
//! device`, `berth profile device` and `berth network attach` share.

use std::collections::BTreeMap;

use berth_client::{Client, Method};
use serde_json::Value;

pub type Devices = BTreeMap<String, BTreeMap<String, String>>;

/// Where the devices live: an instance or a profile.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    Instance,
    Profile,
}

impl Target {
    pub fn path(self, name: &str) -> String {
        match self {
            Target::Instance => format!("/1.0/instances/{name}"),
            Target::Profile => format!("/1.0/profiles/{name}"),
        }
    }
}

pub async fn load(client: &Client, target: Target, name: &str) -> anyhow::Result<(Value, Devices)> {
    let v: Value = client.get(&target.path(name)).await?;
    let devices: Devices = serde_json::from_value(v["devices"].clone()).unwrap_or_default();
    Ok((v, devices))
}

/// Replaces the whole device set (PUT keeps every other field as it was).
pub async fn store(
    client: &Client,
    target: Target,
    name: &str,
    mut current: Value,
    devices: &Devices,
) -> anyhow::Result<()> {
    current["devices"] = serde_json::to_value(devices)?;
    let r = client
        .query(Method::PUT, &target.path(name), Some(&current))
        .await?;
    if let Some(id) = r.body.operation_id() {
        client.wait_success(id).await?;
    }
    Ok(())
}
