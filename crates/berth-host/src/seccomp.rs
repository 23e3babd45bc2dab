//! The raw calls of a seccomp user-notification answerer (berthd's syscall proxy): whether
//! a notification is still pending (`SECCOMP_IOCTL_NOTIF_ID_VALID`), and a file's
//! filesystem figures as the kernel's `struct statfs` lays them out, so an answer to
//! `statfs(2)` can be written into the calling process's memory as it expects it.

use std::os::fd::{AsFd, AsRawFd};

/// The native ABI's number of `statfs(2)`.
#[allow(clippy::unnecessary_cast)] // `c_long` is `i64` only on 64-bit targets.
pub const SYS_STATFS: i64 = libc::SYS_statfs as i64;
/// The native ABI's number of `fstatfs(2)`.
#[allow(clippy::unnecessary_cast)]
pub const SYS_FSTATFS: i64 = libc::SYS_fstatfs as i64;

/// `_IOW('!', 2, __u64)`.
const IOCTL_NOTIF_ID_VALID: libc::c_ulong = 0x4008_2102;

/// Whether notification `id` on the listener `notify` is still pending: its caller has
/// not been killed nor the call interrupted, so memory read or written for it belongs to
/// the process that made it.
pub fn notification_pending(notify: impl AsFd, id: u64) -> bool {
    let mut id = id;
    // SAFETY: the request reads one `u64` from the pointer, which is a live local; the
    // descriptor is borrowed for the call.
    let rc = unsafe {
        libc::ioctl(
            notify.as_fd().as_raw_fd(),
            IOCTL_NOTIF_ID_VALID,
            &raw mut id,
        )
    };
    rc == 0
}

/// Reads from process `pid`'s memory at `addr` as the process itself could
/// (`process_vm_readv`): a page it may not read is an error, as the kernel's own copy
/// would be.
pub fn read_memory(pid: i32, addr: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, live and writable for its length; `remote` is an
    // address in the other process, which the kernel checks against that process's own
    // mappings (nothing of ours is touched through it).
    let n = unsafe { libc::process_vm_readv(pid, &raw const local, 1, &raw const remote, 1, 0) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

/// Writes into process `pid`'s memory at `addr` as the process itself could
/// (`process_vm_writev`): a read-only or unmapped page is an error (EFAULT), where writing
/// through `/proc/PID/mem` would force it.
pub fn write_memory(pid: i32, addr: u64, bytes: &[u8]) -> std::io::Result<usize> {
    let local = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: `local` describes `bytes`, live for its length and only read by the call;
    // `remote` is checked by the kernel against the other process's mappings.
    let n = unsafe { libc::process_vm_writev(pid, &raw const local, 1, &raw const remote, 1, 0) };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

/// The figures `fstatfs(2)` gives for a file, in the kernel's `struct statfs`.
#[derive(Clone, Copy)]
pub struct StatFs(libc::statfs);

impl std::fmt::Debug for StatFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatFs")
            .field("type", &self.fs_type())
            .field("unit", &self.unit())
            .field("blocks", &self.0.f_blocks)
            .field("free", &self.0.f_bfree)
            .field("available", &self.0.f_bavail)
            .finish_non_exhaustive()
    }
}

impl StatFs {
    /// The filesystem's magic number (`f_type`).
    #[allow(clippy::unnecessary_cast)] // `f_type`'s width differs between targets.
    pub fn fs_type(&self) -> u64 {
        self.0.f_type as u64
    }

    /// The size in bytes of the blocks the counts are in: `f_frsize`, or `f_bsize` where
    /// the filesystem leaves it zero (as `statvfs` reads them).
    #[allow(clippy::unnecessary_cast)]
    pub fn unit(&self) -> u64 {
        let frsize = self.0.f_frsize as u64;
        if frsize == 0 {
            self.0.f_bsize as u64
        } else {
            frsize
        }
    }

    /// Blocks in all, free, and free to unprivileged users.
    pub fn space(&self) -> (u64, u64, u64) {
        (self.0.f_blocks, self.0.f_bfree, self.0.f_bavail)
    }

    /// The same figures with other block counts.
    pub fn with_space(mut self, blocks: u64, free: u64, available: u64) -> StatFs {
        self.0.f_blocks = blocks;
        self.0.f_bfree = free;
        self.0.f_bavail = available;
        self
    }

    /// The structure's bytes, as `statfs(2)` writes them.
    pub fn to_bytes(&self) -> Vec<u8> {
        let size = std::mem::size_of::<libc::statfs>();
        // SAFETY: `libc::statfs` is a plain C structure of integers, fully initialised
        // (it was zeroed before the kernel filled it); viewing it as bytes reads nothing
        // out of bounds and the slice does not outlive the borrow of `self`.
        let bytes = unsafe { std::slice::from_raw_parts((&raw const self.0).cast::<u8>(), size) };
        bytes.to_vec()
    }
}

/// `fstatfs(2)` (an `O_PATH` descriptor will do).
pub fn fstatfs(fd: impl AsFd) -> std::io::Result<StatFs> {
    // SAFETY: an all-zero `struct statfs` is a valid value (integers only).
    let mut out: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `out` is a live, writable `struct statfs`; the descriptor is borrowed.
    let rc = unsafe { libc::fstatfs(fd.as_fd().as_raw_fd(), &raw mut out) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(StatFs(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_change_only_where_asked() {
        let dir = std::fs::File::open("/").unwrap();
        let st = fstatfs(&dir).unwrap();
        let changed = st.with_space(10, 4, 3);
        assert_eq!(changed.space(), (10, 4, 3));
        assert_eq!(changed.fs_type(), st.fs_type());
        assert_eq!(changed.unit(), st.unit());
        assert_eq!(
            changed.to_bytes().len(),
            std::mem::size_of::<libc::statfs>()
        );
        assert_ne!(changed.to_bytes(), st.to_bytes());
    }

    #[test]
    fn memory_is_read_and_written_as_its_process_could() {
        let pid = std::process::id() as i32;
        let mut here = *b"abcdef";
        let mut got = [0u8; 6];
        assert_eq!(read_memory(pid, here.as_ptr() as u64, &mut got).unwrap(), 6);
        assert_eq!(&got, b"abcdef");
        assert_eq!(
            write_memory(pid, here.as_mut_ptr() as u64, b"XYZ").unwrap(),
            3
        );
        assert_eq!(&here, b"XYZdef");
        // Code is not writable: refused, not forced.
        let code = read_memory as fn(i32, u64, &mut [u8]) -> std::io::Result<usize>;
        let e = write_memory(pid, code as usize as u64, b"\0").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFAULT));
        assert!(read_memory(pid, 8, &mut got).is_err());
    }
}
