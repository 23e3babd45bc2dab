//! The user-namespace id map of unprivileged containers.
//!
//! The host range comes from root's entry in /etc/subuid and /etc/subgid (the first one of
//! at least 65536 ids); without one, berth uses 1000000, as LXD and Incus do.

use std::path::Path;

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

/// Root's first range of at least `size` ids in a subuid/subgid file.
fn root_range(path: &Path, size: u32) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let (user, base, count) = (f.next()?, f.next()?, f.next()?);
        let (base, count): (u32, u32) = (base.parse().ok()?, count.parse().ok()?);
        (matches!(user, "root" | "0") && count >= size).then_some(base)
    })
}

impl IdMap {
    /// The host's map for unprivileged containers.
    pub fn host(etc: &Path) -> IdMap {
        IdMap {
            uid_base: root_range(&etc.join("subuid"), SIZE).unwrap_or(FALLBACK_BASE),
            gid_base: root_range(&etc.join("subgid"), SIZE).unwrap_or(FALLBACK_BASE),
            size: SIZE,
        }
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
    fn reads_root_ranges_or_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(IdMap::host(dir.path()).uid_base, FALLBACK_BASE);
        std::fs::write(
            dir.path().join("subuid"),
            "alice:100000:65536\nroot:200000:1000\nroot:300000:65536\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("subgid"), "root:400000:100000\n").unwrap();
        let m = IdMap::host(dir.path());
        assert_eq!((m.uid_base, m.gid_base, m.size), (300000, 400000, SIZE));
        assert!(m.to_json().contains("\"Hostid\":300000"));
    }
}
