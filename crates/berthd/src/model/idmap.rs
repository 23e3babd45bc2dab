//! The user-namespace id map of unprivileged containers.
//!
//! The host range comes from root's entry in /etc/subuid and /etc/subgid (the first one of
//! at least 65536 ids); without one, berth uses 1000000 and the billion ids above it, as LXD
//! and Incus do, and registers that range there as root's (see `host::ids`). Every
//! container gets a slice of its own (the first free gap after the range's first 65536
//! ids, which stay for the shared map), so the kernel's per-user limits and a process that
//! escapes are its own, unless the server's `instances.idmap.default=shared` gives new
//! containers the shared map (the range's first 65536 ids, LXD's default). An instance
//! keeps its kind of map (own or shared) while `security.idmap.isolated` is unset;
//! `security.idmap.isolated=true|false` asks for one explicitly, `security.idmap.base`
//! names a base. The chosen map is kept in `volatile.idmap.base` and
//! `volatile.idmap.next`, so it stays the same across restarts. Rootfs files never change
//! owner: the idmapped rootfs mount follows whatever map is used.

use std::collections::BTreeMap;

use crate::error::{Failure, Result};

/// Ids every container gets.
pub const SIZE: u32 = 65536;
/// The host base used when root has no sub-id range.
pub const FALLBACK_BASE: u32 = 1_000_000;

/// One map: container ids `0..size` are host ids `base..base+size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub uid_base: u32,
    pub gid_base: u32,
    pub size: u32,
}

/// How many ids the fallback range holds.
pub const FALLBACK_COUNT: u32 = 1_000_000_000;

/// The ids berthd may hand to containers (read by `host::ids`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostIds {
    pub uid_base: u32,
    pub gid_base: u32,
    /// Ids in the smaller of the two ranges.
    pub count: u32,
    /// Whether the ranges come from /etc/subuid and /etc/subgid (not the fallback).
    pub from_subid: bool,
    /// Whether shadow's `newuidmap` is installed: liblxc then maps only ids inside root's
    /// sub-id ranges.
    pub newuidmap: bool,
}

impl HostIds {
    /// Refuses a start liblxc would fail obscurely: with shadow's `newuidmap` installed,
    /// liblxc maps ids only within root's /etc/subuid and /etc/subgid ranges.
    pub fn check_usable(self, map: &IdMap) -> Result<()> {
        let shadow = self.newuidmap;
        if shadow && !self.from_subid {
            return Err(Failure::invalid(format!(
                "newuidmap is installed, so liblxc needs root's id ranges: add \"root:{FALLBACK_BASE}:{FALLBACK_COUNT}\" to /etc/subuid and /etc/subgid"
            )));
        }
        let inside = |base: u32, host: u32| {
            u64::from(base) >= u64::from(host)
                && u64::from(base) + u64::from(map.size) <= u64::from(host) + u64::from(self.count)
        };
        if shadow && !(inside(map.uid_base, self.uid_base) && inside(map.gid_base, self.gid_base)) {
            return Err(Failure::invalid(format!(
                "The id map {}+{} is outside root's ranges in /etc/subuid and /etc/subgid, which liblxc requires while newuidmap is installed",
                map.uid_base, map.size
            )));
        }
        Ok(())
    }

    /// The map containers share.
    pub fn shared(self) -> IdMap {
        IdMap {
            uid_base: self.uid_base,
            gid_base: self.gid_base,
            size: SIZE,
        }
    }
}

fn flag(config: &BTreeMap<String, String>, key: &str) -> bool {
    config.get(key).is_some_and(|v| v == "true")
}

fn number(config: &BTreeMap<String, String>, key: &str) -> Result<Option<u32>> {
    match config.get(key).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(Failure::invalid(format!(
                "Invalid value {v:?} for {key:?}: expected a number of ids above 0"
            ))),
        },
    }
}

/// Checks the `security.idmap.*` keys; `Ok(false)` for other keys.
pub fn validate(key: &str, value: &str) -> Result<bool> {
    let mut one = BTreeMap::new();
    one.insert(key.to_owned(), value.to_owned());
    match key {
        "security.idmap.isolated" => {
            if !matches!(value, "true" | "false" | "") {
                return Err(Failure::invalid(format!(
                    "Invalid value {value:?} for {key:?}: expected true or false"
                )));
            }
        }
        "security.idmap.size" | "security.idmap.base" => {
            number(&one, key)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The server key choosing new containers' kind of map.
pub const DEFAULT_KEY: &str = "instances.idmap.default";

/// Whether an instance without `security.idmap.isolated` gets a range of its own: as it
/// had (`current` base: the shared one or another), or for a new (or so far privileged)
/// one as the server's `instances.idmap.default` says (`shared_default`).
pub fn own_by_default(host: HostIds, current: Option<u32>, shared_default: bool) -> bool {
    match current {
        Some(b) if b != 0 => b != host.uid_base,
        _ => !shared_default,
    }
}

/// The map an instance gets from its expanded `config`: `None` for a privileged container.
/// `current` is the base it had (kept while still valid), `taken` the ranges (uid base,
/// size) of other instances with their own maps, `own` whether it gets a range of its own
/// unless `security.idmap.isolated` says (see [`own_by_default`]).
pub fn choose(
    config: &BTreeMap<String, String>,
    host: HostIds,
    current: Option<u32>,
    taken: &[(u32, u32)],
    own: bool,
) -> Result<Option<IdMap>> {
    if flag(config, "security.privileged") {
        return Ok(None);
    }
    let size = number(config, "security.idmap.size")?.unwrap_or(SIZE);
    if let Some(base) = number(config, "security.idmap.base")? {
        if base < SIZE {
            return Err(Failure::invalid(format!(
                "security.idmap.base {base} would map the container onto the host's system ids: use {SIZE} or more"
            )));
        }
        if base.checked_add(size).is_none() {
            return Err(Failure::invalid(
                "security.idmap.base plus security.idmap.size is beyond the id space",
            ));
        }
        return Ok(Some(IdMap {
            uid_base: base,
            gid_base: base,
            size,
        }));
    }
    let isolated = match config.get("security.idmap.isolated").map(String::as_str) {
        Some("true") => true,
        Some("false") => false,
        _ => own,
    };
    if !isolated {
        return Ok(Some(host.shared()));
    }
    // Isolated: a slice of the host range after the shared ids, overlapping no other's.
    let start = u64::from(host.uid_base) + u64::from(SIZE);
    let end = u64::from(host.uid_base) + u64::from(host.count);
    let size64 = u64::from(size);
    let mut ranges: Vec<(u64, u64)> = taken
        .iter()
        .map(|&(b, s)| (u64::from(b), u64::from(b) + u64::from(s)))
        .collect();
    ranges.sort_unstable();
    let free = |b: u64| {
        b >= start
            && b + size64 <= end
            && ranges.iter().all(|&(tb, te)| b + size64 <= tb || te <= b)
    };
    let gid_of = |uid: u64| -> Option<IdMap> {
        let off = u32::try_from(uid - u64::from(host.uid_base)).ok()?;
        Some(IdMap {
            uid_base: u32::try_from(uid).ok()?,
            gid_base: host.gid_base.checked_add(off)?,
            size,
        })
    };
    if let Some(b) = current.map(u64::from).filter(|b| free(*b)) {
        return gid_of(b)
            .map(Some)
            .ok_or_else(|| Failure::invalid("Invalid id map"));
    }
    // The first gap that fits, in one pass over the ranges by base: thousands of
    // containers each hold one.
    let mut at = start;
    for &(tb, te) in &ranges {
        if at + size64 <= tb {
            break;
        }
        at = at.max(te);
    }
    Some(at)
        .filter(|b| b + size64 <= end)
        .and_then(gid_of)
        .map(Some)
        .ok_or_else(|| Failure::invalid("Not enough uid/gid available for the container"))
}

/// The map a container restored from another host's dump must run with: the one it ran
/// with there (`source`; CRIU restores it as it was), if this host may use it and no
/// other instance holds it (`taken`, as for [`choose`]).
pub fn adopt(source: Option<IdMap>, host: HostIds, taken: &[(u32, u32)]) -> Result<Option<IdMap>> {
    let Some(m) = source else {
        return Ok(None);
    };
    if m == host.shared() {
        return Ok(Some(m));
    }
    let end = u64::from(m.uid_base) + u64::from(m.size);
    if m.uid_base < SIZE || m.gid_base < SIZE {
        return Err(Failure::invalid(
            "The instance's id map on its source would map it onto this host's system ids",
        ));
    }
    host.check_usable(&m)?;
    if taken
        .iter()
        .any(|&(b, s)| u64::from(m.uid_base) < u64::from(b) + u64::from(s) && u64::from(b) < end)
    {
        return Err(Failure::invalid(format!(
            "The instance runs with host ids {}-{} on its source, which another instance holds here: move it with --stateless",
            m.uid_base,
            end - 1
        )));
    }
    Ok(Some(m))
}

impl IdMap {
    /// The map stored in an instance's `volatile.idmap.next` (as [`IdMap::to_json`] wrote
    /// it): `Some(None)` for a privileged container's `[]`, `None` when absent or unreadable.
    pub fn from_volatile(config: &BTreeMap<String, String>) -> Option<Option<IdMap>> {
        Self::from_json(config.get("volatile.idmap.next")?)
    }

    /// A map as [`IdMap::to_json`] wrote it: `Some(None)` for `[]`, `None` when unreadable.
    pub fn from_json(json: &str) -> Option<Option<IdMap>> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        let entries = v.as_array()?;
        if entries.is_empty() {
            return Some(None);
        }
        let find = |uid: bool| {
            entries.iter().find(|e| {
                e.get(if uid { "Isuid" } else { "Isgid" })
                    .and_then(serde_json::Value::as_bool)
                    == Some(true)
            })
        };
        let num = |e: &serde_json::Value, k: &str| {
            e.get(k)
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
        };
        let (u, g) = (find(true)?, find(false)?);
        Some(Some(IdMap {
            uid_base: num(u, "Hostid")?,
            gid_base: num(g, "Hostid")?,
            size: num(u, "Maprange")?,
        }))
    }

    /// The ranges other instances hold on their own (not the shared map): (uid base, size).
    pub fn taken_by<'a>(
        configs: impl Iterator<Item = &'a BTreeMap<String, String>>,
        host: HostIds,
    ) -> Vec<(u32, u32)> {
        // Both the map an instance will start with and the one it runs with now: a range
        // stays taken until the container using it restarts.
        let mut taken: Vec<(u32, u32)> = configs
            .flat_map(|c| {
                ["volatile.idmap.next", "volatile.idmap.current"]
                    .into_iter()
                    .filter_map(|k| Self::from_json(c.get(k)?).flatten())
            })
            .filter(|m| *m != host.shared())
            .map(|m| (m.uid_base, m.size))
            .collect();
        taken.sort_unstable();
        taken.dedup();
        taken
    }

    /// Stores `map` in the `volatile.idmap.*` keys of `config`.
    pub fn store(map: Option<IdMap>, config: &mut BTreeMap<String, String>) {
        let (base, json) = match map {
            Some(m) => (m.uid_base.to_string(), m.to_json()),
            None => ("0".to_owned(), "[]".to_owned()),
        };
        config.insert("volatile.idmap.base".to_owned(), base);
        config.insert("volatile.idmap.next".to_owned(), json);
    }

    /// The map in LXD's `volatile.idmap.*` JSON form.
    pub fn to_json(self) -> String {
        format!(
            "[{{\"Isuid\":true,\"Isgid\":false,\"Hostid\":{},\"Nsid\":0,\"Maprange\":{}}},{{\"Isuid\":false,\"Isgid\":true,\"Hostid\":{},\"Nsid\":0,\"Maprange\":{}}}]",
            self.uid_base, self.size, self.gid_base, self.size
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_maps_in_volatile_keys() {
        let m = IdMap {
            uid_base: 300000,
            gid_base: 400000,
            size: SIZE,
        };
        assert!(m.to_json().contains("\"Hostid\":300000"));
        let mut c = BTreeMap::new();
        IdMap::store(Some(m), &mut c);
        assert_eq!(IdMap::from_volatile(&c), Some(Some(m)));
        IdMap::store(None, &mut c);
        assert_eq!(IdMap::from_volatile(&c), Some(None));
    }

    #[test]
    fn isolated_maps_are_disjoint() {
        let host = HostIds {
            uid_base: 1000,
            gid_base: 5000,
            count: 4 * SIZE,
            from_subid: true,
            newuidmap: false,
        };
        let mut c = BTreeMap::new();
        c.insert("security.idmap.isolated".to_owned(), "true".to_owned());
        let a = choose(&c, host, None, &[], false).unwrap().unwrap();
        assert_eq!((a.uid_base, a.gid_base), (1000 + SIZE, 5000 + SIZE));
        let b = choose(&c, host, None, &[(a.uid_base, a.size)], false)
            .unwrap()
            .unwrap();
        assert_eq!(b.uid_base, a.uid_base + SIZE);
        // Its own base is kept while free; a taken one moves.
        let again = choose(&c, host, Some(b.uid_base), &[(a.uid_base, a.size)], false).unwrap();
        assert_eq!(again, Some(b));
        let moved = choose(&c, host, Some(a.uid_base), &[(a.uid_base, a.size)], false).unwrap();
        assert_eq!(moved, Some(b));
        let full = [(a.uid_base, a.size), (b.uid_base, b.size)];
        assert!(
            choose(&c, host, None, &full, false).is_ok(),
            "a third slice fits"
        );
        // The first gap that fits, whatever the order the ranges come in.
        let gap = [
            (a.uid_base + 3 * SIZE, SIZE),
            (a.uid_base, SIZE),
            (a.uid_base + SIZE / 2, SIZE),
            (a.uid_base + 4 * SIZE, SIZE),
        ];
        let found = choose(&c, host, None, &gap, false).unwrap().unwrap();
        assert_eq!(found.uid_base, a.uid_base + SIZE / 2 + SIZE);
        let full = [(a.uid_base, 3 * SIZE)];
        assert!(
            choose(&c, host, None, &full, false)
                .unwrap_err()
                .message()
                .contains("Not enough")
        );
        c.insert("security.privileged".to_owned(), "true".to_owned());
        assert_eq!(choose(&c, host, None, &[], false).unwrap(), None);
        let mut c = BTreeMap::new();
        c.insert("security.idmap.base".to_owned(), "7000000".to_owned());
        c.insert("security.idmap.size".to_owned(), "1000".to_owned());
        let m = choose(&c, host, None, &[], false).unwrap().unwrap();
        assert_eq!((m.uid_base, m.gid_base, m.size), (7000000, 7000000, 1000));
        assert!(validate("security.idmap.size", "0").is_err());
        let mut low = BTreeMap::new();
        low.insert("security.idmap.base".to_owned(), "1000".to_owned());
        assert!(
            choose(&low, host, None, &[], false)
                .unwrap_err()
                .message()
                .contains("system ids")
        );
        // A range an instance still runs with (current) stays taken.
        let mut running = BTreeMap::new();
        IdMap::store(Some(b), &mut running);
        running.insert("volatile.idmap.current".to_owned(), b.to_json());
        running.insert("volatile.idmap.next".to_owned(), host.shared().to_json());
        assert_eq!(
            IdMap::taken_by([&running].into_iter(), host),
            [(b.uid_base, b.size)]
        );
        assert!(validate("security.idmap.isolated", "yes").is_err());
    }

    #[test]
    fn own_ranges_by_default_and_kinds_kept() {
        let host = HostIds {
            uid_base: 1000,
            gid_base: 1000,
            count: 4 * SIZE,
            from_subid: true,
            newuidmap: false,
        };
        let none = BTreeMap::new();
        // New instances follow the server's default; existing ones keep their kind.
        assert!(own_by_default(host, None, false));
        assert!(!own_by_default(host, None, true));
        assert!(!own_by_default(host, Some(1000), false));
        assert!(own_by_default(host, Some(1000 + SIZE), true));
        assert!(own_by_default(host, Some(0), false), "so far privileged");
        let own = choose(&none, host, None, &[], true).unwrap().unwrap();
        assert_eq!(own.uid_base, 1000 + SIZE);
        assert_eq!(
            choose(&none, host, None, &[], false).unwrap(),
            Some(host.shared())
        );
        // The key, when set, wins over the default.
        let mut shared = BTreeMap::new();
        shared.insert("security.idmap.isolated".to_owned(), "false".to_owned());
        assert_eq!(
            choose(&shared, host, None, &[], true).unwrap(),
            Some(host.shared())
        );
    }
}
