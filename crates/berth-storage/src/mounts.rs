//! Which mount points lie inside a directory, from `/proc/self/mountinfo`.
//!
//! A recursive delete descends into whatever is mounted below the directory it removes, so a
//! bind mount left inside a volume would have its host data wiped. Deleting a volume first
//! asks here and refuses while anything is mounted inside it.

use std::io;
use std::path::{Path, PathBuf};

/// The first mount point at or below `dir` (which should be canonical), if any.
pub(crate) fn first_mount_under(dir: &Path) -> io::Result<Option<PathBuf>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mount_points(&mountinfo).find(|m| m.starts_with(dir)))
}

/// Whether something is mounted right on `dir` (which should be canonical).
pub(crate) fn is_mount_point(dir: &Path) -> io::Result<bool> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mount_points(&mountinfo).any(|m| m == dir))
}

/// The mount points listed in a mountinfo text (the fifth field of each line, unescaped).
fn mount_points(mountinfo: &str) -> impl Iterator<Item = PathBuf> + '_ {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\134` for a backslash, …).
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')))
            .and_then(|n| u8::try_from(n).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /proc rw,nosuid shared:12 - proc proc rw
41 22 8:1 /data /pool/custom/my\\040vol/mnt rw - ext4 /dev/sda1 rw
";

    #[test]
    fn parses_and_unescapes_mount_points() {
        let points: Vec<_> = mount_points(SAMPLE).collect();
        assert_eq!(
            points,
            [
                PathBuf::from("/"),
                PathBuf::from("/proc"),
                PathBuf::from("/pool/custom/my vol/mnt")
            ]
        );
        assert_eq!(unescape(r"a\134b\011c"), PathBuf::from("a\\b\tc"));
        assert_eq!(unescape(r"a\9"), PathBuf::from(r"a\9"));
    }

    #[test]
    fn finds_mounts_below_a_directory_only() {
        let under = |dir: &str| mount_points(SAMPLE).find(|m| m.starts_with(dir));
        assert_eq!(
            under("/pool/custom/my vol"),
            Some(PathBuf::from("/pool/custom/my vol/mnt"))
        );
        // Component-wise: "/pr" is not a prefix of "/proc".
        assert_eq!(under("/pr"), None);
        assert_eq!(under("/pool/custom/other"), None);
    }

    #[test]
    fn reads_this_process_mountinfo() {
        let root = first_mount_under(Path::new("/")).unwrap();
        assert!(root.is_some());
    }
}
