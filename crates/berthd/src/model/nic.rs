//! nic devices, as configuration: which network a nic uses.

use berth_api::instance::Device;

/// The managed network (or host bridge) a nic device attaches to: its `network`, or the
/// `parent` of a bridged nic.
pub fn network_of(d: &Device) -> Option<&str> {
    if d.get("type").map(String::as_str) != Some("nic") {
        return None;
    }
    if let Some(n) = d.get("network") {
        return Some(n);
    }
    match d.get("nictype").map(String::as_str) {
        Some("bridged") => d.get("parent").map(String::as_str),
        _ => None,
    }
}
