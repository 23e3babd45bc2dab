//! Pure rules and data, no I/O: what berthd stores ([`records`]), names, how an instance
//! expands its profiles, the configuration key table and its checks (limits, id maps,
//! schedules, `raw.lxc`), device configuration and project rules.
//!
//! Every service shares these checks, so a request, an autostart, a copy, a snapshot
//! restore and (later) a migration are held to the same rules. `model` imports only the
//! leaves (`error`, `time`).

pub mod boot;
pub mod capacity;
pub mod devices;
pub mod expand;
pub mod idmap;
pub mod keys;
pub mod limits;
pub mod names;
pub mod nic;
pub mod proxy;
pub mod raw_lxc;
pub mod records;
pub mod restrictions;
pub mod schedule;
pub mod trust;

use std::collections::BTreeMap;

use crate::error::Result;

/// Checks every key of an instance's or profile's configuration against the key table
/// ([`keys`]); the error names the key and value.
pub fn validate_config(config: &BTreeMap<String, String>, host: limits::Host) -> Result<()> {
    for (k, v) in config {
        keys::validate(k, v, host)?;
    }
    Ok(())
}

/// Applies a PUT's or PATCH's `description`: PUT (`replace`) replaces it (absent:
/// empties it), PATCH changes it only when given.
pub fn merge_description(description: &mut String, new: Option<String>, replace: bool) {
    match new {
        Some(d) => *description = d,
        None if replace => description.clear(),
        None => {}
    }
}

/// The `volatile.*` keys of `config` (berthd's own, which clients do not set).
pub fn volatile_keys(config: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    config
        .iter()
        .filter(|(k, _)| k.starts_with("volatile."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Applies a PUT's or PATCH's `config` to `config`: PUT (`replace`) replaces it (absent:
/// empties it), PATCH merges, an empty value unsetting the key.
pub fn merge_config(
    config: &mut BTreeMap<String, String>,
    new: Option<BTreeMap<String, String>>,
    replace: bool,
) {
    match new {
        Some(new) if replace => *config = new,
        Some(new) => {
            for (k, v) in new {
                if v.is_empty() {
                    config.remove(&k);
                } else {
                    config.insert(k, v);
                }
            }
        }
        None if replace => config.clear(),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_replaces_and_patch_merges() {
        let mut d = "old".to_owned();
        merge_description(&mut d, None, false);
        assert_eq!(d, "old", "PATCH without a description keeps it");
        merge_description(&mut d, Some("new".into()), false);
        assert_eq!(d, "new");
        merge_description(&mut d, None, true);
        assert_eq!(d, "", "PUT without a description empties it");
        let mut c = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
        merge_config(
            &mut c,
            Some(BTreeMap::from([("a".into(), String::new())])),
            false,
        );
        assert!(c.is_empty(), "an empty value unsets");
    }
}
