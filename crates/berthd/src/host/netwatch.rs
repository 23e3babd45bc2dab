//! Containers' interfaces kept between reads and refreshed by the kernel's notifications,
//! so that a list of thousands does not dump every container's link and address tables
//! each time (two netlink dumps in each namespace were most of such a list's cost).
//!
//! One route netlink socket in berthd's namespace hears link, address, IPv6 prefix and
//! namespace-id notifications from every network namespace that has an id in it
//! (`NETLINK_LISTEN_ALL_NSID`); a container's namespace is given an id the first time its
//! interfaces are read. Nothing runs in the background: each read first takes what the
//! socket queued (a change is queued by the system call that makes it, so one made before
//! a read began is seen), marks the namespaces it names as changed, and then serves a
//! container from its kept interfaces only when its namespace has not changed since they
//! were read; otherwise it reads them anew. When the kernel dropped notifications for lack
//! of room, everything kept before is read anew.
//!
//! One exception, the kernel's: an IPv6 address added with `nodad` or `optimistic` is
//! announced from the kernel's address work a few milliseconds after the call that adds
//! it, so a list in between may not show it yet. (Addresses from router advertisements
//! are announced as a prefix the moment they are made, and again when their duplicate
//! detection ends.)
//!
//! What is kept has no counters (they change without notice): a read that wants them
//! dumps the tables (see [`super::netns`]). Entries are keyed by the container and its
//! init (pid and start time): a restarted container has a new namespace; an init whose
//! start time is unknown is never kept.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use rustix::net::{AddressFamily, SocketFlags, SocketType};
use serde_json::Value;

use super::netns;

const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_PREFIX: u32 = 18;
const RTNLGRP_NSID: u32 = 28;
const RTM_NEWNSID: u16 = 88;
const RTM_DELNSID: u16 = 89;

/// The interfaces of containers' namespaces, kept (see the module's header); without the
/// listening socket (a kernel without `NETLINK_LISTEN_ALL_NSID`), every read is a dump.
#[derive(Debug)]
pub struct Watch {
    state: Option<Mutex<Watched>>,
}

#[derive(Debug)]
struct Watched {
    /// Hears the notifications.
    listener: OwnedFd,
    /// Asks for namespace ids.
    requests: OwnedFd,
    /// berthd's own namespace (device and inode): a container sharing it is not kept, as
    /// its changes come with no namespace id.
    own: (u64, u64),
    /// How many times notifications were taken from the listener.
    drains: u64,
    /// The drain that found notifications dropped.
    lost_at: u64,
    /// By namespace id: the drain that last saw it change.
    changed: HashMap<i32, u64>,
    entries: HashMap<String, Entry>,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Entry {
    pid: i32,
    ticks: u64,
    nsid: i32,
    /// [`Watched::drains`] when it was read.
    read_at: u64,
    interfaces: BTreeMap<String, Value>,
}

impl Watched {
    fn open() -> std::io::Result<Watched> {
        let flags = SocketFlags::CLOEXEC;
        let listener =
            rustix::net::socket_with(AddressFamily::NETLINK, SocketType::RAW, flags, None)?;
        let local = rustix::net::netlink::SocketAddrNetlink::new(0, 0);
        rustix::net::bind(&listener, &local)?;
        // Room for bursts (a start makes a few notifications); past it, all is read anew.
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(&listener, 4 << 20)
            .or_else(|_| rustix::net::sockopt::set_socket_recv_buffer_size(&listener, 4 << 20));
        berth_host::netlink::listen_all_namespaces(
            listener.as_fd(),
            &[
                RTNLGRP_LINK,
                RTNLGRP_IPV4_IFADDR,
                RTNLGRP_IPV6_IFADDR,
                RTNLGRP_IPV6_PREFIX,
                RTNLGRP_NSID,
            ],
        )?;
        let requests =
            rustix::net::socket_with(AddressFamily::NETLINK, SocketType::RAW, flags, None)?;
        Ok(Watched {
            listener,
            requests,
            own: namespace_of("thread-self")?,
            drains: 0,
            lost_at: 0,
            changed: HashMap::new(),
            entries: HashMap::new(),
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// Takes every queued notification, marking the namespaces they name as changed.
    fn drain(&mut self) {
        let mut counted = false;
        loop {
            let got = berth_host::netlink::recv_with_nsid(self.listener.as_fd(), &mut self.buf);
            if !counted && !matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
                self.drains += 1;
                counted = true;
            }
            match got {
                Ok((n, from)) => {
                    let n = n.min(self.buf.len());
                    match from {
                        Some(id) => {
                            self.changed.insert(id, self.drains);
                        }
                        // Ids given or taken back in berthd's own namespace: whatever
                        // was kept under that id is stale. (Another namespace's ids
                        // are its own, not berthd's.)
                        None => {
                            for (typ, body) in netns::messages(&self.buf[..n]) {
                                if (typ == RTM_NEWNSID || typ == RTM_DELNSID)
                                    && let Some(id) = netns::nsid_in(body)
                                {
                                    self.changed.insert(id, self.drains);
                                }
                            }
                        }
                    }
                }
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error()) => {
                    self.lost_at = self.drains;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Whether `e` was read after the last change of its namespace.
    fn current(&self, e: &Entry) -> bool {
        self.lost_at <= e.read_at && self.changed.get(&e.nsid).is_none_or(|c| *c <= e.read_at)
    }
}

impl Default for Watch {
    fn default() -> Self {
        Self::new()
    }
}

impl Watch {
    /// Opens the listening socket; without it, reads are dumps.
    pub fn new() -> Self {
        let state = match Watched::open() {
            Ok(w) => Some(Mutex::new(w)),
            Err(e) => {
                tracing::info!(error = %e, "Interfaces are read anew for every state");
                None
            }
        };
        Watch { state }
    }

    /// The interfaces, without counters, of container `name`'s namespace, whose init is
    /// `pid` started at `ticks`: kept ones when nothing changed since. `joining`: the
    /// calling thread may join the namespace for a moment (see
    /// [`netns::interfaces_joining`]).
    pub fn interfaces(
        &self,
        name: &str,
        pid: i32,
        ticks: Option<u64>,
        joining: bool,
    ) -> std::io::Result<BTreeMap<String, Value>> {
        // An init whose start time is unknown could be another process by the same pid
        // next time: nothing is kept for it.
        let (Some(state), Some(ticks)) = (&self.state, ticks) else {
            return read(pid, joining);
        };
        let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
        let (read_at, nsid) = {
            let mut w = lock();
            w.drain();
            let kept = w
                .entries
                .get(name)
                .filter(|e| e.pid == pid && e.ticks == ticks);
            if let Some(e) = kept
                && w.current(e)
            {
                return Ok(e.interfaces.clone());
            }
            let nsid = match kept {
                Some(e) => Some(e.nsid),
                // Given before the read, so that a change after it is heard; the
                // notice of the id given is taken at once (it says nothing of the
                // interfaces, which are read after).
                None if namespace_of(&pid.to_string()).is_ok_and(|ns| ns != w.own) => {
                    let id = netns::namespace_id(&w.requests, pid).ok();
                    w.drain();
                    id
                }
                None => None,
            };
            (w.drains, nsid)
        };
        let interfaces = read(pid, joining)?;
        if let Some(nsid) = nsid {
            let entry = Entry {
                pid,
                ticks,
                nsid,
                read_at,
                interfaces: interfaces.clone(),
            };
            lock().entries.insert(name.to_owned(), entry);
        }
        Ok(interfaces)
    }

    /// Lets go of what is kept for `name` (it stopped, was renamed or deleted).
    pub fn forget(&self, name: &str) {
        if let Some(state) = &self.state {
            let mut w = state.lock().unwrap_or_else(|e| e.into_inner());
            w.entries.remove(name);
        }
    }
}

/// The network namespace of `/proc/{of}` (a pid, or `thread-self`): device and inode.
fn namespace_of(of: &str) -> std::io::Result<(u64, u64)> {
    let st = rustix::fs::stat(format!("/proc/{of}/ns/net"))?;
    Ok((st.st_dev, st.st_ino))
}

/// The interfaces of `pid`'s namespace, read now, without their counters.
fn read(pid: i32, joining: bool) -> std::io::Result<BTreeMap<String, Value>> {
    let mut all = if joining {
        netns::interfaces_joining(pid)?
    } else {
        netns::interfaces(pid)?
    };
    for v in all.values_mut() {
        if let Some(m) = v.as_object_mut() {
            m.remove("counters");
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A namespace of its own, held by a child that waits on its stdin: a first line has
    /// it add an address there (itself, so nothing can land in the test's namespace).
    fn namespace() -> std::process::Child {
        let script = "ip link set lo up; read x; ip addr add 10.9.8.7/32 dev lo; read y";
        std::process::Command::new("unshare")
            .args(["-n", "sh", "-c", script])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn addresses(v: &BTreeMap<String, Value>) -> Vec<String> {
        v["lo"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["address"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn kept_until_the_namespace_changes() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let watch = Watch::new();
        assert!(watch.state.is_some(), "the listener opens");
        let mut child = namespace();
        let pid = i32::try_from(child.id()).unwrap();
        let own = namespace_of("thread-self").unwrap();
        while namespace_of(&pid.to_string()).unwrap() == own {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // berthd's own namespace is not kept: its changes come without an id.
        let me = i32::try_from(std::process::id()).unwrap();
        watch.interfaces("self", me, Some(1), false).unwrap();
        assert!(
            !watch
                .state
                .as_ref()
                .unwrap()
                .lock()
                .unwrap()
                .entries
                .contains_key("self")
        );
        // Until lo is up, the namespace's addresses are not there yet.
        let mut first = BTreeMap::new();
        for _ in 0..100 {
            first = watch.interfaces("c1", pid, Some(1), false).unwrap();
            if addresses(&first).iter().any(|a| a == "127.0.0.1") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(first["lo"].get("counters").is_none(), "no counters kept");
        assert_eq!(watch.interfaces("c1", pid, Some(1), false).unwrap(), first);
        let w = watch.state.as_ref().unwrap().lock().unwrap();
        let e = &w.entries["c1"];
        assert!(w.current(e), "kept: nothing changed");
        drop(w);
        // A change made now is seen by the next read.
        use std::io::Write;
        child.stdin.as_mut().unwrap().write_all(b"add\n").unwrap();
        let mut heard = false;
        for _ in 0..200 {
            let mut w = watch.state.as_ref().unwrap().lock().unwrap();
            w.drain();
            if !w.current(&w.entries["c1"]) {
                heard = true;
                break;
            }
            drop(w);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(heard, "the change was heard");
        let after = watch.interfaces("c1", pid, Some(1), false).unwrap();
        assert!(
            addresses(&after).iter().any(|a| a == "10.9.8.7"),
            "{after:?}"
        );
        // Another init under the same name is read anew.
        let other = watch.interfaces("c1", pid, Some(2), false).unwrap();
        assert_eq!(other, after);
        watch.forget("c1");
        let w = watch.state.as_ref().unwrap().lock().unwrap();
        assert!(w.entries.is_empty());
        drop(w);
        drop(child.stdin.take());
        child.wait().unwrap();
    }
}
