//! The `dir` driver's configuration keys, as LXD's `dir` driver has them.
//!
//! `source` (absolute path, default: the pool's directory under berthd's dir),
//! `rsync.bwlimit` (a size or bit rate per second) and `rsync.compression` (a boolean).
//! Any other key is refused, `volume.*` included (not supported yet). An empty value means
//! unset, as in LXD, and is dropped from the effective configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::StorageError;
use crate::units::parse_bytes_or_bits;

/// The pool's directory on the host.
pub(super) const SOURCE: &str = "source";
/// rsync's bandwidth limit for migrations and copies between pools.
pub(super) const RSYNC_BWLIMIT: &str = "rsync.bwlimit";
/// Whether rsync compresses migrations.
pub(super) const RSYNC_COMPRESSION: &str = "rsync.compression";

/// Validates `config`, fills in `source`, and returns the effective configuration with the
/// source as a path.
pub(super) fn validate(
    mut config: BTreeMap<String, String>,
    default_source: &Path,
) -> Result<(BTreeMap<String, String>, PathBuf), StorageError> {
    config.retain(|_, value| !value.is_empty());
    for (key, value) in &config {
        match key.as_str() {
            SOURCE => check_source(value)?,
            RSYNC_BWLIMIT => {
                parse_bytes_or_bits(value).map_err(|reason| invalid(key, value, reason))?;
            }
            RSYNC_COMPRESSION => check_bool(key, value)?,
            _ => {
                return Err(StorageError::UnknownKey {
                    driver: super::NAME,
                    key: key.clone(),
                });
            }
        }
    }
    let source = match config.get(SOURCE) {
        Some(source) => PathBuf::from(source),
        None => {
            let source = default_source.to_str().ok_or_else(|| {
                invalid(
                    SOURCE,
                    &default_source.to_string_lossy(),
                    "Must be valid UTF-8",
                )
            })?;
            check_source(source)?;
            let source = source.to_owned();
            config.insert(SOURCE.to_owned(), source.clone());
            PathBuf::from(source)
        }
    };
    Ok((config, source))
}

/// `source` must be an absolute path the kernel can take.
fn check_source(value: &str) -> Result<(), StorageError> {
    if !value.starts_with('/') {
        return Err(invalid(SOURCE, value, "Must be an absolute path"));
    }
    if value.contains('\0') {
        return Err(invalid(SOURCE, value, "Must not contain a NUL byte"));
    }
    Ok(())
}

/// A boolean the way LXD accepts one.
fn check_bool(key: &str, value: &str) -> Result<(), StorageError> {
    const BOOLS: [&str; 8] = ["true", "false", "yes", "no", "on", "off", "1", "0"];
    if BOOLS.iter().any(|b| b.eq_ignore_ascii_case(value)) {
        Ok(())
    } else {
        Err(invalid(key, value, "Must be true or false"))
    }
}

fn invalid(key: &str, value: &str, reason: &'static str) -> StorageError {
    StorageError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StorageErrorKind;

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        let e = validate(config(pairs), Path::new("/var/lib/berth/storage-pools/p")).unwrap_err();
        assert_eq!(e.kind(), StorageErrorKind::InvalidConfig);
        e.to_string()
    }

    #[test]
    fn fills_the_default_source() {
        let (cfg, source) =
            validate(config(&[]), Path::new("/var/lib/berth/storage-pools/p")).unwrap();
        assert_eq!(source, Path::new("/var/lib/berth/storage-pools/p"));
        assert_eq!(cfg, config(&[("source", "/var/lib/berth/storage-pools/p")]));
        let (cfg, _) = validate(config(&[("source", "")]), Path::new("/d")).unwrap();
        assert_eq!(cfg, config(&[("source", "/d")]));
    }

    #[test]
    fn accepts_lxd_values() {
        let given = config(&[
            ("source", "/srv/pool"),
            ("rsync.bwlimit", "10MB"),
            ("rsync.compression", "false"),
        ]);
        let (cfg, source) = validate(given.clone(), Path::new("/d")).unwrap();
        assert_eq!(cfg, given);
        assert_eq!(source, Path::new("/srv/pool"));
        for ok in ["1MiB", "0", "100Mbit"] {
            assert!(validate(config(&[("rsync.bwlimit", ok)]), Path::new("/d")).is_ok());
        }
        for ok in ["true", "TRUE", "no", "1"] {
            assert!(validate(config(&[("rsync.compression", ok)]), Path::new("/d")).is_ok());
        }
        let (cfg, _) = validate(config(&[("rsync.bwlimit", "")]), Path::new("/d")).unwrap();
        assert!(!cfg.contains_key("rsync.bwlimit"));
    }

    #[test]
    fn refuses_unknown_keys() {
        assert_eq!(
            err(&[("foo", "1")]),
            r#"Unknown configuration key "foo" for storage driver "dir""#
        );
        assert_eq!(
            err(&[("volume.size", "10GiB")]),
            r#"Unknown configuration key "volume.size" for storage driver "dir""#
        );
    }

    #[test]
    fn refuses_bad_values() {
        assert!(
            err(&[("rsync.bwlimit", "abc")])
                .starts_with(r#"Invalid value "abc" for "rsync.bwlimit": "#)
        );
        assert!(err(&[("rsync.bwlimit", "10XB")]).starts_with(r#"Invalid value "10XB" for"#));
        assert_eq!(
            err(&[("rsync.compression", "maybe")]),
            r#"Invalid value "maybe" for "rsync.compression": Must be true or false"#
        );
        assert_eq!(
            err(&[("source", "relative/dir")]),
            r#"Invalid value "relative/dir" for "source": Must be an absolute path"#
        );
        let e = validate(config(&[]), Path::new("relative")).unwrap_err();
        assert_eq!(e.kind(), StorageErrorKind::InvalidConfig);
    }
}
