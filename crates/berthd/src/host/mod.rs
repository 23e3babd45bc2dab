//! What berthd reads and touches of the host, below the instance driver: its environment
//! (`GET /1.0`) and hardware (`GET /1.0/resources`), the ids containers' maps come from,
//! containers' cgroups, lxcfs, a container's network interfaces (kept between reads by
//! [`netwatch`]), and a root filesystem
//! opened so every path stays inside it. Readers take their root paths (`/`, `/etc`,
//! `/sys/fs/cgroup`, a mount table), so tests run the real code against trees built in a
//! temporary directory; the network is read from inside a live namespace, by pid.

pub mod cgroup;
pub mod environment;
pub mod ids;
pub mod lxcfs;
pub mod netns;
pub mod netwatch;
pub mod resources;
pub mod rootfs;
pub mod sysctl;

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
