//! The btrfs ioctls berth calls itself: a subvolume's filesystem id (`BTRFS_IOC_FS_INFO`)
//! and its own id (`BTRFS_IOC_INO_LOOKUP`), which together name its qgroup in
//! `/sys/fs/btrfs/FSID/qgroups/0_ID/` without running a tool; and the delete of a
//! subvolume by its name in an opened directory (`BTRFS_IOC_SNAP_DESTROY`), which never
//! follows a link.

use std::os::fd::{AsFd, AsRawFd};

/// `_IOR(0x94, 31, struct btrfs_ioctl_fs_info_args)` (1024 bytes).
const IOC_FS_INFO: libc::c_ulong = 0x8400_941f;
/// `_IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args)` (4096 bytes).
const IOC_INO_LOOKUP: libc::c_ulong = 0xd000_9412;
/// `_IOW(0x94, 15, struct btrfs_ioctl_vol_args)` (4096 bytes).
const IOC_SNAP_DESTROY: libc::c_ulong = 0x5000_940f;
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

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; 4088],
}

/// Deletes subvolume `name` of directory `parent` (one component, looked up by the kernel
/// in that directory: a link there is not followed but refused). Fails with `ENOTEMPTY`
/// while it holds subvolumes of its own.
pub fn destroy_subvolume(parent: impl AsFd, name: &std::ffi::OsStr) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= 4088 || bytes.contains(&b'/') || bytes.contains(&0) {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut args = VolArgs {
        fd: 0,
        name: [0; 4088],
    };
    args.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: `args` is a live `struct btrfs_ioctl_vol_args` of exactly the size the
    // request number encodes, its name NUL-terminated; the descriptor is borrowed for the
    // call.
    let rc = unsafe { libc::ioctl(parent.as_fd().as_raw_fd(), IOC_SNAP_DESTROY, &raw mut args) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
