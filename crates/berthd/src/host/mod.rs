//! What berthd reads of the host: its environment (`GET /1.0`) and hardware
//! (`GET /1.0/resources`). Every reader takes the host's root as a path, so tests run the
//! real code against a fake `/proc` and `/sys` built in a temporary directory.

pub mod cgroup;
pub mod environment;
pub mod ids;
pub mod lxcfs;
pub mod netns;
pub mod resources;
pub mod rootfs;

use std::path::Path;

/// Reads a small text file, trimmed; `None` when it is missing or unreadable.
fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Reads a file holding one unsigned number.
fn read_u64(path: &Path) -> Option<u64> {
    read_trimmed(path)?.parse().ok()
}
