//! Receiving a netlink notification with the id of the network namespace it came from
//! (`NETLINK_LISTEN_ALL_NSID`): the id comes as a control message, which rustix does not
//! parse.

use std::os::fd::{AsRawFd, BorrowedFd};

/// `SOL_NETLINK` and the control message type that carries a namespace id.
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_LISTEN_ALL_NSID: libc::c_int = 8;

/// Receives one datagram from the netlink socket `fd` into `buf` without waiting: its
/// length, and the id (in the socket's namespace) of the namespace it came from, `None`
/// when from the socket's own. `WouldBlock` when nothing is queued; `ENOBUFS` when the
/// kernel dropped notifications for lack of room.
pub fn recv_with_nsid(fd: BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<(usize, Option<i32>)> {
    // Room for one control message holding an int, aligned as cmsghdr needs.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one; the pointers set below outlive
    // the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `msg` points at `iov` (over `buf`) and `control`, both valid and writable
    // for the lengths given, and the kernel writes no further.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut nsid = None;
    // SAFETY: `msg` was filled by recvmsg: CMSG_FIRSTHDR and CMSG_NXTHDR walk the
    // control messages within `msg_controllen` bytes of `control`, and a message of our
    // type is read only when it holds a whole int.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let room = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
            if c.cmsg_level == SOL_NETLINK
                && c.cmsg_type == NETLINK_LISTEN_ALL_NSID
                && c.cmsg_len as usize >= room
            {
                nsid = Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(cmsg).cast::<libc::c_int>(),
                ));
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok((usize::try_from(n).unwrap_or(0), nsid))
}

/// Joins the multicast `groups` on the netlink socket `fd` and has it hear them from every
/// network namespace that has an id in its own (`NETLINK_LISTEN_ALL_NSID`).
pub fn listen_all_namespaces(fd: BorrowedFd<'_>, groups: &[u32]) -> std::io::Result<()> {
    const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
    let set = |opt: libc::c_int, value: libc::c_int| -> std::io::Result<()> {
        // SAFETY: `value` is an int that lives through the call, and its size is given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_NETLINK,
                opt,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    for g in groups {
        set(
            NETLINK_ADD_MEMBERSHIP,
            libc::c_int::try_from(*g).map_err(std::io::Error::other)?,
        )?;
    }
    set(NETLINK_LISTEN_ALL_NSID, 1)
}
