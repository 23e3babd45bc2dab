//! Checking squashfs rootfs files with `unsquashfs` from squashfs-tools.
//!
//! A squashfs is a tree of directories, so no entry can be written through a symlink when it
//! is unpacked; what must still be refused are device nodes, too many entries and files that
//! are not a whole squashfs.

use std::path::Path;
use std::process::Command;

use crate::scan::{Limits, ScanError};

/// The magic number at the start of a squashfs.
pub const MAGIC: &[u8; 4] = b"hsqs";

/// Whether `head` starts like a squashfs.
pub fn is_squashfs(head: &[u8]) -> bool {
    head.starts_with(MAGIC)
}

/// Lists `path` and refuses device nodes; returns the number of entries.
pub fn check(path: &Path, limits: &Limits) -> Result<u64, ScanError> {
    let out = Command::new("unsquashfs")
        .arg("-lln")
        .arg(path)
        .output()
        .map_err(ScanError::Read)?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let first = msg
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("unsquashfs failed");
        return Err(ScanError::Read(std::io::Error::other(first.to_owned())));
    }
    let mut entries = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(kind) = line.chars().next() else {
            continue;
        };
        if !"-dlcbps".contains(kind) || line.split_whitespace().count() < 6 {
            continue;
        }
        entries += 1;
        if entries > limits.max_entries {
            return Err(ScanError::TooManyEntries(limits.max_entries));
        }
        if kind == 'c' || kind == 'b' {
            let path = line
                .split_whitespace()
                .last()
                .unwrap_or_default()
                .to_owned();
            return Err(ScanError::Unsafe {
                path,
                reason: "device node",
            });
        }
    }
    Ok(entries)
}
