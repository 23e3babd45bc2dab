//! The two btrfs ioctls berth reads a subvolume's place with: its filesystem's id
//! (`BTRFS_IOC_FS_INFO`) and its own id (`BTRFS_IOC_INO_LOOKUP`), which together name its
//! qgroup in `/sys/fs/btrfs/FSID/qgroups/0_ID/` without running a tool.

use std::os::fd::{AsFd, AsRawFd};

/// `_IOR(0x94, 31, struct btrfs_ioctl_fs_info_args)` (1024 bytes).
const IOC_FS_INFO: libc::c_ulong = 0x8400_941f;
/// `_IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args)` (4096 bytes).
const IOC_INO_LOOKUP: libc::c_ulong = 0xd000_9412;
/// The inode number of every subvolume's root directory.
const FIRST_FREE_OBJECTID: u64 = 256;

/// `struct btrfs_ioctl_fs_info_args`: only `fsid` is read.
#[repr(C)]
struct FsInfo {
    max_id: u64,
    num_devices: u64,
    fsid: [u8; 16],
    rest: [u8; 1024 - 32],
}

/// `struct btrfs_ioctl_ino_lookup_args`.
#[repr(C)]
struct InoLookup {
    treeid: u64,
    objectid: u64,
    name: [u8; 4080],
}

/// The id of the btrfs filesystem `fd` is on, as `/sys/fs/btrfs/` names it
/// (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
pub fn fsid(fd: impl AsFd) -> std::io::Result<String> {
    let mut args = FsInfo {
        max_id: 0,
        num_devices: 0,
        fsid: [0; 16],
        rest: [0; 1024 - 32],
    };
    // SAFETY: `args` is a live, writable `struct btrfs_ioctl_fs_info_args` of exactly the
    // size the request number encodes; the descriptor is borrowed for the call.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), IOC_FS_INFO, &raw mut args) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let hex: Vec<String> = args.fsid.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        hex[..4].concat(),
        hex[4..6].concat(),
        hex[6..8].concat(),
        hex[8..10].concat(),
        hex[10..].concat()
    ))
}

/// The id of the subvolume whose root directory `fd` is (root only).
pub fn subvolume_id(fd: impl AsFd) -> std::io::Result<u64> {
    let mut args = InoLookup {
        treeid: 0,
        objectid: FIRST_FREE_OBJECTID,
        name: [0; 4080],
    };
    // SAFETY: `args` is a live, writable `struct btrfs_ioctl_ino_lookup_args` of exactly the
    // size the request number encodes; the descriptor is borrowed for the call.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), IOC_INO_LOOKUP, &raw mut args) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(args.treeid)
}
