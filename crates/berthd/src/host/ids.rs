//! The host ids containers' maps come from: root's ranges in /etc/subuid and /etc/subgid
//! (read under a root path, so tests use a fake /etc), else the fallback range, which
//! berthd then registers there as root's so that no other tool (useradd, another
//! container manager) hands those ids out.

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

/// Adds the fallback range as root's to `etc`'s subuid and subgid files when neither has
/// a range for root; whether it did.
pub fn register(etc: &Path) -> std::io::Result<bool> {
    let files = [etc.join("subuid"), etc.join("subgid")];
    if files.iter().any(|f| root_range(f, SIZE).is_some()) {
        return Ok(false);
    }
    for f in &files {
        let mut text = std::fs::read_to_string(f).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("root:{FALLBACK_BASE}:{FALLBACK_COUNT}\n"));
        // Beside, then renamed over: a crash leaves the old file or the new one, and
        // daemons starting together each put the same text in place.
        let tmp = f.with_extension(format!("berth-{}", std::process::id()));
        std::fs::write(&tmp, text)?;
        let mode = std::fs::metadata(f).map_or(0o644, |m| {
            std::os::unix::fs::PermissionsExt::mode(&m.permissions())
        });
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        std::fs::rename(&tmp, f)?;
    }
    Ok(true)
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
        assert!(!ids.newuidmap && !ids.from_subid);
        // Registered as root's when root has none, once.
        std::fs::write(dir.path().join("subuid"), "alice:100000:65536").unwrap();
        assert!(register(dir.path()).unwrap());
        assert!(!register(dir.path()).unwrap());
        let ids = read(dir.path(), dir.path());
        assert_eq!((ids.uid_base, ids.count), (FALLBACK_BASE, FALLBACK_COUNT));
        assert!(ids.from_subid);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("subuid")).unwrap(),
            "alice:100000:65536\nroot:1000000:1000000000\n"
        );
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
