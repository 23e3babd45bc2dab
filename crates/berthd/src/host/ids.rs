//! The host ids containers' maps come from: root's ranges in /etc/subuid and /etc/subgid
//! (read under a root path, so tests use a fake /etc), else the fallback range.

use std::path::Path;

use crate::model::idmap::{FALLBACK_BASE, FALLBACK_COUNT, HostIds, SIZE};

/// Root's first range of at least `size` ids in a subuid/subgid file: (base, count).
fn root_range(path: &Path, size: u32) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let (user, base, count) = (f.next()?, f.next()?, f.next()?);
        let (base, count): (u32, u32) = (base.parse().ok()?, count.parse().ok()?);
        (matches!(user, "root" | "0") && count >= size).then_some((base, count))
    })
}

/// Root's sub-id ranges under `etc`, or the fallback; and whether shadow's `newuidmap`
/// is installed under `root` (`usr/bin`, `bin`).
pub fn read(etc: &Path, root: &Path) -> HostIds {
    let u = root_range(&etc.join("subuid"), SIZE);
    let g = root_range(&etc.join("subgid"), SIZE);
    let newuidmap = ["usr/bin/newuidmap", "bin/newuidmap"]
        .iter()
        .any(|p| root.join(p).exists());
    match (u, g) {
        (Some(u), Some(g)) => HostIds {
            uid_base: u.0,
            gid_base: g.0,
            count: u.1.min(g.1),
            from_subid: true,
            newuidmap,
        },
        _ => HostIds {
            uid_base: FALLBACK_BASE,
            gid_base: FALLBACK_BASE,
            count: FALLBACK_COUNT,
            from_subid: false,
            newuidmap,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_root_ranges_or_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let ids = read(dir.path(), dir.path());
        assert_eq!(ids.uid_base, FALLBACK_BASE);
        assert!(!ids.newuidmap);
        std::fs::write(
            dir.path().join("subuid"),
            "alice:100000:65536\nroot:200000:1000\nroot:300000:65536\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("subgid"), "root:400000:100000\n").unwrap();
        std::fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        std::fs::write(dir.path().join("usr/bin/newuidmap"), "").unwrap();
        let ids = read(dir.path(), dir.path());
        let m = ids.shared();
        assert_eq!((m.uid_base, m.gid_base, m.size), (300000, 400000, SIZE));
        assert!(ids.from_subid && ids.newuidmap);
    }
}
