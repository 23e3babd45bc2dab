//! A container's network interfaces, as LXD reports them in the instance state: names,
//! addresses, counters, MTU, hardware address, link state.
//!
//! A route netlink socket is opened inside the container's network namespace (a short-lived
//! thread joins the namespace just to create it: a socket stays bound to the namespace it was
//! made in), then the link and address tables are dumped and parsed here. Nothing is read
//! from the container's own filesystem.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};
use serde_json::{Value, json};

const NLMSG_HDR: usize = 16;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_STATS64: u16 = 23;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_POINTOPOINT: u32 = 0x10;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Opens a route netlink socket in the network namespace of process `pid` from the
/// calling thread, which joins that namespace and then goes back to its own (abstract unix
/// sockets, such as liblxc's command sockets, are per network namespace). If going back
/// fails the thread stays there: callers on threads they do not own use [`socket_in`].
/// The thread's own namespace is opened once per thread: a list's workers call this for
/// every container.
fn socket_joining(pid: i32) -> std::io::Result<OwnedFd> {
    thread_local! {
        static OWN: std::cell::OnceCell<std::fs::File> = const { std::cell::OnceCell::new() };
    }
    OWN.with(|own| {
        if own.get().is_none() {
            let _ = own.set(std::fs::File::open("/proc/thread-self/ns/net")?);
        }
        let own = own
            .get()
            .ok_or_else(|| std::io::Error::other("no own namespace"))?;
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        let net = Some(rustix::thread::LinkNameSpaceType::Network);
        rustix::thread::move_into_link_name_space(ns.as_fd(), net)?;
        // No protocol: NETLINK_ROUTE, the route netlink family.
        let sock = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, None);
        rustix::thread::move_into_link_name_space(own.as_fd(), net)?;
        Ok(sock?)
    })
}

/// Opens a route netlink socket in the network namespace of process `pid`, from a
/// short-lived thread so the caller's thread keeps its namespace.
fn socket_in(pid: i32) -> std::io::Result<OwnedFd> {
    std::thread::scope(|s| {
        s.spawn(|| socket_joining(pid))
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("netns thread panicked")))
    })
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Sends one dump request and returns the payloads (type, body) of every reply message.
fn dump(fd: &OwnedFd, kind: u16, family: u8, seq: u32) -> std::io::Result<Vec<(u16, Vec<u8>)>> {
    // nlmsghdr + a zeroed ifinfomsg (16 bytes) or ifaddrmsg (8 bytes).
    let body = if kind == RTM_GETLINK { 16 } else { 8 };
    let mut req = vec![0u8; NLMSG_HDR + body];
    let len = u32::try_from(req.len()).unwrap_or(32);
    req[0..4].copy_from_slice(&len.to_ne_bytes());
    req[4..6].copy_from_slice(&kind.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    req[NLMSG_HDR] = family;
    rustix::net::send(fd, &req, SendFlags::empty())?;
    // One receive buffer per thread, not one zeroed per dump.
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 64 * 1024]);
    }
    BUF.with_borrow_mut(|buf| receive(fd, buf))
}

/// The messages of a dump whose request was sent on `fd`, to its `NLMSG_DONE`; a reply
/// that does not parse ends it (rather than a wait for more that may never come).
fn receive(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<Vec<(u16, Vec<u8>)>> {
    let mut out = Vec::new();
    loop {
        let (n, _) = rustix::net::recv(fd, &mut *buf, RecvFlags::empty())?;
        let n = n.min(buf.len());
        let mut parsed = 0;
        for (typ, _, body) in numbered(&buf[..n]) {
            parsed += (NLMSG_HDR + body.len() + 3) & !3;
            match typ {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => return Err(std::io::Error::other("netlink dump failed")),
                _ => out.push((typ, body.to_vec())),
            }
        }
        if parsed < n || n == 0 {
            return Ok(out);
        }
    }
}

/// The attributes after a fixed header of `skip` bytes: (type, value).
fn attrs(body: &[u8], skip: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = skip;
    while at + 4 <= body.len() {
        let len = usize::from(u16_at(body, at).unwrap_or(0));
        let typ = u16_at(body, at + 2).unwrap_or(0) & 0x3fff;
        if len < 4 || at + len > body.len() {
            break;
        }
        out.push((typ, &body[at + 4..at + len]));
        at += (len + 3) & !3;
    }
    out
}

fn scope_name(scope: u8) -> &'static str {
    match scope {
        0 => "global",
        253 => "link",
        254 => "local",
        _ => "global",
    }
}

fn address_text(family: u8, raw: &[u8]) -> Option<String> {
    match family {
        AF_INET => {
            let b: [u8; 4] = raw.get(..4)?.try_into().ok()?;
            Some(std::net::Ipv4Addr::from(b).to_string())
        }
        AF_INET6 => {
            let b: [u8; 16] = raw.get(..16)?.try_into().ok()?;
            Some(std::net::Ipv6Addr::from(b).to_string())
        }
        _ => None,
    }
}

const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;
const NLM_F_ACK: u16 = 0x4;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;

/// The netlink messages in `buf`: (type, payload).
pub fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    numbered(buf).map(|(typ, _, body)| (typ, body))
}

/// The netlink messages in `buf`: (type, sequence number, payload).
fn numbered(buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = u32_at(buf, at)? as usize;
        let typ = u16_at(buf, at + 4)?;
        let seq = u32_at(buf, at + 8)?;
        if len < NLMSG_HDR || at + len > buf.len() {
            return None;
        }
        let body = &buf[at + NLMSG_HDR..at + len];
        at += (len + 3) & !3;
        Some((typ, seq, body))
    })
}

/// The namespace id an `RTM_NEWNSID` or `RTM_DELNSID` message names.
pub fn nsid_in(body: &[u8]) -> Option<i32> {
    // struct rtgenmsg, padded to 4 bytes, then the attributes.
    let (_, v) = attrs(body, 4)
        .into_iter()
        .find(|(t, _)| *t == NETNSA_NSID)?;
    Some(u32_at(v, 0)? as i32)
}

/// Sends one `kind` request naming the namespace `ns` (and `nsid`, when given) on the
/// route socket `fd`, and returns the payloads of its replies.
fn nsid_request(
    fd: &OwnedFd,
    kind: u16,
    ns: &std::fs::File,
    nsid: Option<i32>,
) -> std::io::Result<Vec<(u16, Vec<u8>)>> {
    use std::os::fd::AsRawFd;
    let mut req = vec![0u8; NLMSG_HDR + 4];
    let mut attr = |typ: u16, value: u32| {
        req.extend_from_slice(&8u16.to_ne_bytes());
        req.extend_from_slice(&typ.to_ne_bytes());
        req.extend_from_slice(&value.to_ne_bytes());
    };
    attr(NETNSA_FD, ns.as_raw_fd() as u32);
    if let Some(id) = nsid {
        attr(NETNSA_NSID, id as u32);
    }
    // Numbered, so that a reply left on the socket by a request whose receive failed is
    // never taken for this one's.
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let len = u32::try_from(req.len()).unwrap_or(0);
    let flags = NLM_F_REQUEST | if kind == RTM_NEWNSID { NLM_F_ACK } else { 0 };
    req[0..4].copy_from_slice(&len.to_ne_bytes());
    req[4..6].copy_from_slice(&kind.to_ne_bytes());
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&seq.to_ne_bytes());
    rustix::net::send(fd, &req, SendFlags::empty())?;
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, _) = rustix::net::recv(fd, &mut buf, RecvFlags::empty())?;
        let mut out = Vec::new();
        for (typ, got, body) in numbered(&buf[..n.min(buf.len())]) {
            if got != seq {
                continue;
            }
            if typ == NLMSG_ERROR {
                let errno = u32_at(body, 0).map_or(0, |e| e as i32);
                if errno < 0 {
                    return Err(std::io::Error::from_raw_os_error(-errno));
                }
            }
            out.push((typ, body.to_vec()));
        }
        if !out.is_empty() {
            out.retain(|(typ, _)| *typ != NLMSG_ERROR);
            return Ok(out);
        }
    }
}

/// The id, in the namespace of the route socket `fd`, of the network namespace of process
/// `pid`; one is assigned when it has none. (The kernel finds an id by a walk over every id
/// the namespace holds: call this once per namespace, not per read.)
pub fn namespace_id(fd: &OwnedFd, pid: i32) -> std::io::Result<i32> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    let get = || -> std::io::Result<Option<i32>> {
        let replies = nsid_request(fd, RTM_GETNSID, &ns, None)?;
        Ok(replies
            .iter()
            .filter(|(t, _)| *t == RTM_NEWNSID)
            .find_map(|(_, b)| nsid_in(b))
            .filter(|id| *id >= 0))
    };
    if let Some(id) = get()? {
        return Ok(id);
    }
    // -1: any free id. Another caller may have assigned one in between (EEXIST).
    match nsid_request(fd, RTM_NEWNSID, &ns, Some(-1)) {
        Err(e) if e.raw_os_error() != Some(libc_eexist()) => return Err(e),
        _ => {}
    }
    get()?.ok_or_else(|| std::io::Error::other("no namespace id was assigned"))
}

fn libc_eexist() -> i32 {
    rustix::io::Errno::EXIST.raw_os_error()
}

/// The interfaces of the network namespace of process `pid`, keyed by name, in LXD's
/// `InstanceStateNetwork` form.
pub fn interfaces(pid: i32) -> std::io::Result<BTreeMap<String, Value>> {
    read(&socket_in(pid)?)
}

/// As [`interfaces`], but the calling thread joins the namespace itself for a moment
/// (saving a thread per call): only for threads the caller owns and discards, such as a
/// scoped worker, in case it cannot go back.
pub fn interfaces_joining(pid: i32) -> std::io::Result<BTreeMap<String, Value>> {
    read(&socket_joining(pid)?)
}

fn read(fd: &OwnedFd) -> std::io::Result<BTreeMap<String, Value>> {
    let mut by_index: BTreeMap<i32, (String, Value)> = BTreeMap::new();
    for (typ, body) in dump(fd, RTM_GETLINK, 0, 1)? {
        if typ != RTM_NEWLINK || body.len() < 16 {
            continue;
        }
        let index = u32_at(&body, 4).unwrap_or(0) as i32;
        let flags = u32_at(&body, 8).unwrap_or(0);
        let (mut name, mut mtu, mut hw, mut stats) = (String::new(), 0u32, String::new(), None);
        for (t, v) in attrs(&body, 16) {
            match t {
                IFLA_IFNAME => {
                    name = String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or(v))
                        .into_owned();
                }
                IFLA_MTU => mtu = u32_at(v, 0).unwrap_or(0),
                IFLA_ADDRESS => {
                    hw = v
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":");
                }
                IFLA_STATS64 => stats = Some(v.to_vec()),
                _ => {}
            }
        }
        // struct rtnl_link_stats64: rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors,
        // tx_errors, rx_dropped, tx_dropped, …
        let s = |i: usize| stats.as_deref().and_then(|b| u64_at(b, i * 8)).unwrap_or(0);
        let kind = if flags & IFF_LOOPBACK != 0 {
            "loopback"
        } else if flags & IFF_POINTOPOINT != 0 {
            "point-to-point"
        } else {
            "broadcast"
        };
        let v = json!({
            "addresses": [],
            "counters": {
                "bytes_received": s(2), "bytes_sent": s(3),
                "packets_received": s(0), "packets_sent": s(1),
                "errors_received": s(4), "errors_sent": s(5),
                "packets_dropped_inbound": s(6), "packets_dropped_outbound": s(7),
            },
            "hwaddr": if kind == "loopback" { String::new() } else { hw },
            "host_name": "",
            "mtu": mtu,
            "state": if flags & IFF_UP != 0 { "up" } else { "down" },
            "type": kind,
        });
        by_index.insert(index, (name, v));
    }
    for (typ, body) in dump(fd, RTM_GETADDR, 0, 2)? {
        if typ != RTM_NEWADDR || body.len() < 8 {
            continue;
        }
        let (family, prefix, scope) = (body[0], body[1], body[3]);
        let index = u32_at(&body, 4).unwrap_or(0) as i32;
        let all = attrs(&body, 8);
        // IFA_LOCAL is the interface's own address on point-to-point links.
        let raw = all
            .iter()
            .find(|(t, _)| *t == IFA_LOCAL)
            .or_else(|| all.iter().find(|(t, _)| *t == IFA_ADDRESS))
            .map(|(_, v)| *v);
        let (Some(raw), Some((_, iface))) = (raw, by_index.get_mut(&index)) else {
            continue;
        };
        let Some(address) = address_text(family, raw) else {
            continue;
        };
        if let Some(list) = iface.get_mut("addresses").and_then(Value::as_array_mut) {
            list.push(json!({
                "family": if family == AF_INET { "inet" } else { "inet6" },
                "address": address,
                "netmask": prefix.to_string(),
                "scope": scope_name(scope),
            }));
        }
    }
    Ok(by_index.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One netlink message of type `typ` carrying `body`, padded to 4 bytes.
    fn message(typ: u16, body: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDR + body.len();
        let mut m = vec![0u8; (len + 3) & !3];
        m[0..4].copy_from_slice(&u32::try_from(len).unwrap().to_ne_bytes());
        m[4..6].copy_from_slice(&typ.to_ne_bytes());
        m[NLMSG_HDR..len].copy_from_slice(body);
        m
    }

    #[test]
    fn a_dump_ends_at_done_or_at_a_reply_that_does_not_parse() {
        let (tx, rx) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        // Never a wait: a receive with nothing queued fails instead.
        rustix::io::ioctl_fionbio(&rx, true).unwrap();
        let mut buf = vec![0u8; 4096];
        let send = |m: &[u8]| rustix::net::send(&tx, m, SendFlags::empty()).unwrap();
        // Messages across two receives, up to NLMSG_DONE; what follows it is not read.
        send(&[message(16, b"abcd"), message(20, b"xy")].concat());
        send(&[message(16, b"efgh"), message(NLMSG_DONE, &[0; 4])].concat());
        send(&message(16, b"next"));
        let got = receive(&rx, &mut buf).unwrap();
        assert_eq!(
            got,
            [
                (16, b"abcd".to_vec()),
                (20, b"xy".to_vec()),
                (16, b"efgh".to_vec())
            ]
        );
        let (n, _) = rustix::net::recv(&rx, &mut buf, RecvFlags::empty()).unwrap();
        assert_eq!(
            buf[..n],
            message(16, b"next"),
            "what follows is left queued"
        );
        // A length past the end, or a fragment shorter than a header, ends the dump with
        // what parsed.
        let mut long = message(16, b"abcd");
        long[0..4].copy_from_slice(&64u32.to_ne_bytes());
        send(&[message(16, b"ok"), long].concat());
        assert_eq!(receive(&rx, &mut buf).unwrap(), [(16, b"ok".to_vec())]);
        send(&[message(16, b"ok"), vec![1; 8]].concat());
        assert_eq!(receive(&rx, &mut buf).unwrap(), [(16, b"ok".to_vec())]);
        // An error message fails the dump.
        send(&message(NLMSG_ERROR, &[0; 4]));
        assert!(receive(&rx, &mut buf).is_err());
    }

    #[test]
    fn reads_this_process_namespace() {
        // Root only (joining a namespace needs CAP_SYS_ADMIN); the tests run as root.
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let pid = i32::try_from(std::process::id()).unwrap();
        let ifaces = interfaces(pid).unwrap();
        let lo = &ifaces["lo"];
        assert_eq!(lo["type"], "loopback");
        assert_eq!(lo["state"], "up");
        assert!(
            lo["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["address"] == "127.0.0.1" && a["netmask"] == "8"),
            "{lo}"
        );
    }
}
