//! The `btrfs` driver's configuration keys, as LXD's `btrfs` driver has them.
//!
//! `source` (a loop file's path, a block device or a directory on a mounted btrfs; unset:
//! a loop file `DIR/disks/POOL.img`, recorded here), `size` (the loop file's size, only
//! for a loop file; default a fifth of the free space, between 5 GiB and 30 GiB),
//! `rsync.bwlimit` and `rsync.compression` (as for `dir`). Any other key is refused. An
//! empty value means unset and is dropped.

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::StorageError;
use crate::units::parse_bytes_or_bits;

const SOURCE: &str = "source";
const SIZE: &str = "size";
const RSYNC_BWLIMIT: &str = "rsync.bwlimit";
const RSYNC_COMPRESSION: &str = "rsync.compression";

/// The smallest loop file mkfs.btrfs makes a usable filesystem of.
const MIN_SIZE: u64 = 256 << 20;

/// What holds a pool's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// A loop file of `size` bytes.
    LoopFile { path: PathBuf, size: u64 },
    /// A block device.
    Device(PathBuf),
    /// A directory on a mounted btrfs, used in place.
    Directory(PathBuf),
}

fn invalid(key: &str, value: &str, reason: &'static str) -> StorageError {
    StorageError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    }
}

/// Validates `config`, fills in `source` (and a loop file's `size`), and says what holds
/// the filesystem.
pub(super) fn validate(
    pool: &str,
    mut config: BTreeMap<String, String>,
    default_source: &Path,
) -> Result<(BTreeMap<String, String>, Backing), StorageError> {
    config.retain(|_, value| !value.is_empty());
    for (key, value) in &config {
        match key.as_str() {
            SOURCE => {
                if !value.starts_with('/') || value.contains('\0') {
                    return Err(invalid(key, value, "Must be an absolute path"));
                }
            }
            SIZE => {
                let bytes = parse_bytes_or_bits(value).map_err(|r| invalid(key, value, r))?;
                if bytes < MIN_SIZE {
                    return Err(invalid(key, value, "Must be at least 256MiB"));
                }
            }
            RSYNC_BWLIMIT => {
                parse_bytes_or_bits(value).map_err(|r| invalid(key, value, r))?;
            }
            RSYNC_COMPRESSION => {
                const BOOLS: [&str; 8] = ["true", "false", "yes", "no", "on", "off", "1", "0"];
                if !BOOLS.iter().any(|b| b.eq_ignore_ascii_case(value)) {
                    return Err(invalid(key, value, "Must be true or false"));
                }
            }
            _ => {
                return Err(StorageError::UnknownKey {
                    driver: super::NAME,
                    key: key.clone(),
                });
            }
        }
    }
    let given = config.contains_key(SOURCE);
    let source = match config.get(SOURCE) {
        Some(s) => PathBuf::from(s),
        None => {
            // DIR/storage-pools/POOL → DIR/disks/POOL.img, as LXD keeps its loop files.
            let base = default_source
                .parent()
                .and_then(Path::parent)
                .unwrap_or(default_source);
            let path = base.join("disks").join(format!("{pool}.img"));
            config.insert(SOURCE.to_owned(), path.display().to_string());
            path
        }
    };
    let kind = std::fs::metadata(&source).map(|m| m.file_type());
    let backing = match kind {
        Ok(t) if t.is_block_device() => Backing::Device(source),
        Ok(t) if t.is_dir() => Backing::Directory(source),
        Ok(t) if t.is_file() => Backing::LoopFile {
            path: source,
            size: 0,
        },
        Ok(_) => {
            return Err(invalid(
                SOURCE,
                &config[SOURCE],
                "Must be a loop file, a block device or a directory",
            ));
        }
        // Nothing there: a loop file berthd makes (no source given, or a size: a loop
        // pool whose file went missing is reported when it is mounted); a device or a
        // directory named wrong is refused, never taken for a new loop file.
        Err(_) if !given || config.contains_key(SIZE) => Backing::LoopFile {
            path: source,
            size: 0,
        },
        Err(_) => {
            return Err(invalid(
                SOURCE,
                &config[SOURCE],
                "Does not exist (a device or a directory on btrfs)",
            ));
        }
    };
    if config.contains_key(SIZE) && !matches!(backing, Backing::LoopFile { .. }) {
        return Err(invalid(
            SIZE,
            &config[SIZE],
            "Only a loop file pool has a size (source is a device or a directory)",
        ));
    }
    let backing = match backing {
        Backing::LoopFile { path, .. } => {
            let size = match config.get(SIZE) {
                Some(v) => parse_bytes_or_bits(v).map_err(|r| invalid(SIZE, v, r))?,
                None => {
                    let size = default_size(path.parent().unwrap_or(Path::new("/")));
                    config.insert(SIZE.to_owned(), format!("{}GiB", size >> 30));
                    size
                }
            };
            Backing::LoopFile { path, size }
        }
        other => other,
    };
    Ok((config, backing))
}

/// A fifth of the free space where the loop file goes, between 5 GiB and 30 GiB (whole
/// GiB), as LXD sizes it.
fn default_size(dir: &Path) -> u64 {
    let mut probe = dir;
    let free = loop {
        match rustix::fs::statvfs(probe) {
            Ok(st) => break st.f_bavail.saturating_mul(st.f_frsize.max(1)),
            Err(_) => match probe.parent() {
                Some(p) => probe = p,
                None => break 0,
            },
        }
    };
    let gib = (free / 5) >> 30;
    gib.clamp(5, 30) << 30
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_file_by_default_and_keys_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let default = tmp.path().join("storage-pools/p1");
        let (config, backing) = validate("p1", BTreeMap::new(), &default).unwrap();
        let image = tmp.path().join("disks/p1.img");
        assert_eq!(config["source"], image.display().to_string());
        let Backing::LoopFile { path, size } = backing else {
            panic!("{backing:?}");
        };
        assert_eq!(path, image);
        assert!((5 << 30..=30 << 30).contains(&size), "{size}");
        assert!(config["size"].ends_with("GiB"));

        let sized = BTreeMap::from([("size".to_owned(), "1GiB".to_owned())]);
        let (_, b) = validate("p1", sized, &default).unwrap();
        assert_eq!(
            b,
            Backing::LoopFile {
                path: image,
                size: 1 << 30
            }
        );
        for (k, v) in [
            ("size", "1MiB"),
            ("source", "relative"),
            ("source", "/dev/no-such-disk"),
            ("zfs.pool", "x"),
        ] {
            let c = BTreeMap::from([(k.to_owned(), v.to_owned())]);
            assert!(validate("p1", c, &default).is_err(), "{k}={v}");
        }
        // A directory is used in place, and has no size.
        let d = BTreeMap::from([("source".to_owned(), tmp.path().display().to_string())]);
        let (_, b) = validate("p1", d.clone(), &default).unwrap();
        assert_eq!(b, Backing::Directory(tmp.path().to_owned()));
        let mut sized = d;
        sized.insert("size".to_owned(), "1GiB".to_owned());
        assert!(validate("p1", sized, &default).is_err());
    }
}
