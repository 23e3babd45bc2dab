//! `berthd forkproxy SPEC`: the relay of one proxy device, a process of its own that
//! outlives berthd (its own session) and ends with the container.
//!
//! It opens the container's init as a pidfd (checking its start time, so a reused pid is
//! refused), makes its listeners on the listening side, then moves into the connecting
//! side's namespaces for good: with `bind=host` it listens in berthd's namespaces and
//! joins the container's network (and, for a unix target, mount) namespace; with
//! `bind=instance` it joins the container's first, listens there, and goes back to the
//! host's. A socket stays in the namespace it was made in, so listeners and targets then
//! live on either side. Each TCP or unix connection is two copying threads; each UDP
//! client gets its own socket on the connecting side. It prints `ready` once it listens
//! (berthd waits for that, or for its error), and exits within half a second of the
//! container's init.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::proxy::{Endpoint, parse_endpoint};

/// What one relay does, passed as one JSON argument.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ProxySpec {
    /// The container's init and its start time (clock ticks after boot).
    pub pid: i32,
    pub start_time: u64,
    pub listen: String,
    pub connect: String,
    /// The container's side listens.
    pub bind_instance: bool,
    /// Send a PROXY protocol (v2) header first on each connection.
    pub proxy_protocol: bool,
    /// Owner (host ids) and mode of a listening unix socket.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
}

/// `berthd forkproxy SPEC`.
pub fn main(args: &[OsString]) -> i32 {
    let [spec] = args else {
        eprintln!("usage: berthd forkproxy SPEC");
        return 1;
    };
    let spec: ProxySpec = match serde_json::from_str(&spec.to_string_lossy()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error: invalid proxy spec: {e}");
            return 1;
        }
    };
    match run(&spec) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

type Fail = Box<dyn std::error::Error>;

enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
    Unix(UnixListener),
}

fn start_time(pid: i32) -> Option<u64> {
    super::lifecycle::start_time(pid)
}

fn run(spec: &ProxySpec) -> Result<(), Fail> {
    let listen = parse_endpoint(&spec.listen).map_err(|e| format!("listen: {e}"))?;
    let connect = parse_endpoint(&spec.connect).map_err(|e| format!("connect: {e}"))?;
    let pid = rustix::process::Pid::from_raw(spec.pid).ok_or("no such process")?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
    if start_time(spec.pid) != Some(spec.start_time) {
        return Err("the instance's init has changed (it stopped or restarted)".into());
    }
    let own_net = std::fs::File::open("/proc/self/ns/net")?;
    let own_mnt = std::fs::File::open("/proc/self/ns/mnt")?;
    use rustix::thread::{LinkNameSpaceType, ThreadNameSpaceType};
    let theirs = |unix: bool| {
        let mut t = ThreadNameSpaceType::NETWORK;
        if unix {
            t |= ThreadNameSpaceType::MOUNT;
        }
        t
    };
    let listeners = if spec.bind_instance {
        rustix::thread::move_into_thread_name_spaces(pidfd.as_fd(), theirs(listen.is_unix()))?;
        let l = listen_on(&listen, spec)?;
        rustix::thread::move_into_link_name_space(
            own_net.as_fd(),
            Some(LinkNameSpaceType::Network),
        )?;
        if listen.is_unix() {
            rustix::thread::move_into_link_name_space(
                own_mnt.as_fd(),
                Some(LinkNameSpaceType::Mount),
            )?;
        }
        l
    } else {
        let l = listen_on(&listen, spec)?;
        rustix::thread::move_into_thread_name_spaces(pidfd.as_fd(), theirs(connect.is_unix()))?;
        l
    };
    println!("ready");
    std::io::stdout().flush()?;
    let connect = Arc::new(connect);
    for (i, l) in listeners.into_iter().enumerate() {
        let (target, header) = (connect.clone(), spec.proxy_protocol);
        std::thread::spawn(move || serve(l, &target, i, header));
    }
    // Until the container's init exits (or another process takes its pid).
    while start_time(spec.pid) == Some(spec.start_time) {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    Ok(())
}

fn listen_on(listen: &Endpoint, spec: &ProxySpec) -> Result<Vec<Listener>, Fail> {
    match listen {
        Endpoint::Inet { udp, addr, ports } => ports
            .iter()
            .map(|p| {
                let at = SocketAddr::new(*addr, *p);
                Ok(if *udp {
                    Listener::Udp(UdpSocket::bind(at).map_err(|e| format!("udp {at}: {e}"))?)
                } else {
                    Listener::Tcp(TcpListener::bind(at).map_err(|e| format!("tcp {at}: {e}"))?)
                })
            })
            .collect(),
        Endpoint::Unix { path } => {
            let l = if let Some(name) = path.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                UnixListener::bind_addr(&addr)?
            } else {
                // A socket left by an earlier relay goes; anything else stays.
                if std::fs::symlink_metadata(path).is_ok_and(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_socket()
                }) {
                    std::fs::remove_file(path)?;
                }
                let l = UnixListener::bind(path).map_err(|e| format!("unix {path}: {e}"))?;
                let uid = spec.uid.map(rustix::fs::Uid::from_raw);
                let gid = spec.gid.map(rustix::fs::Gid::from_raw);
                rustix::fs::chown(path.as_str(), uid, gid)?;
                let mode = spec.mode.unwrap_or(0o660);
                rustix::fs::chmod(path.as_str(), rustix::fs::Mode::from_raw_mode(mode))?;
                l
            };
            Ok(vec![Listener::Unix(l)])
        }
    }
}

/// Either kind of stream.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn split(&self) -> std::io::Result<(Box<dyn Read + Send>, Box<dyn Write + Send>)> {
        Ok(match self {
            Stream::Tcp(s) => (Box::new(s.try_clone()?), Box::new(s.try_clone()?)),
            Stream::Unix(s) => (Box::new(s.try_clone()?), Box::new(s.try_clone()?)),
        })
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

/// The target of listener `i`: its own port, or the only one.
fn target_of(connect: &Endpoint, i: usize) -> Option<SocketAddr> {
    match connect {
        Endpoint::Inet { addr, ports, .. } => {
            let port = ports.get(i).or_else(|| ports.first())?;
            Some(SocketAddr::new(*addr, *port))
        }
        Endpoint::Unix { .. } => None,
    }
}

fn dial(connect: &Endpoint, i: usize) -> std::io::Result<Stream> {
    match connect {
        Endpoint::Unix { path } => {
            if let Some(name) = path.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                Ok(Stream::Unix(UnixStream::connect_addr(&addr)?))
            } else {
                Ok(Stream::Unix(UnixStream::connect(path)?))
            }
        }
        Endpoint::Inet { .. } => {
            let to = target_of(connect, i).ok_or_else(|| std::io::Error::other("no port"))?;
            Ok(Stream::Tcp(TcpStream::connect(to)?))
        }
    }
}

fn serve(listener: Listener, connect: &Endpoint, i: usize, header: bool) {
    match listener {
        Listener::Tcp(l) => {
            for conn in l.incoming().flatten() {
                let c = connect.clone();
                std::thread::spawn(move || {
                    let peers = (conn.peer_addr().ok(), conn.local_addr().ok());
                    relay(Stream::Tcp(conn), &c, i, header.then_some(peers));
                });
            }
        }
        Listener::Unix(l) => {
            for conn in l.incoming().flatten() {
                let c = connect.clone();
                std::thread::spawn(move || relay(Stream::Unix(conn), &c, i, None));
            }
        }
        Listener::Udp(sock) => udp(sock, connect, i),
    }
}

/// Copies both ways between an accepted connection and a new one to the target; the
/// end of one direction is passed on as a half-close, so each side sees the other's EOF.
fn relay(
    inbound: Stream,
    connect: &Endpoint,
    i: usize,
    header: Option<(Option<SocketAddr>, Option<SocketAddr>)>,
) {
    let Ok(outbound) = dial(connect, i) else {
        return;
    };
    let (Ok((mut in_r, mut in_w)), Ok((mut out_r, mut out_w))) =
        (inbound.split(), outbound.split())
    else {
        return;
    };
    if let Some((Some(src), Some(dst))) = header
        && out_w.write_all(&proxy_v2(src, dst)).is_err()
    {
        return;
    }
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut out_r, &mut in_w);
        inbound.shutdown_write();
    });
    let _ = std::io::copy(&mut in_r, &mut out_w);
    outbound.shutdown_write();
    let _ = back.join();
}

/// A PROXY protocol v2 header for a TCP connection from `src` to `dst`.
fn proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            h.push(0x11); // TCP over IPv4
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
            h.extend_from_slice(&s.port().to_be_bytes());
            h.extend_from_slice(&d.port().to_be_bytes());
        }
        (s, d) => {
            let v6 = |a: SocketAddr| match a {
                SocketAddr::V4(v) => v.ip().to_ipv6_mapped(),
                SocketAddr::V6(v) => *v.ip(),
            };
            h.push(0x21); // TCP over IPv6
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(s).octets());
            h.extend_from_slice(&v6(d).octets());
            h.extend_from_slice(&s.port().to_be_bytes());
            h.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    h
}

/// Relays datagrams: each client gets a socket of its own towards the target, and a
/// thread sending the target's answers back from the listening socket.
fn udp(sock: UdpSocket, connect: &Endpoint, i: usize) {
    let Some(target) = target_of(connect, i) else {
        return;
    };
    let sock = Arc::new(sock);
    let mut clients: std::collections::HashMap<SocketAddr, UdpSocket> = Default::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            return;
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = clients.entry(from) {
            let bind: SocketAddr = if target.is_ipv4() {
                "0.0.0.0:0".parse().unwrap_or(target)
            } else {
                "[::]:0".parse().unwrap_or(target)
            };
            let Ok(out) = UdpSocket::bind(bind).and_then(|o| o.connect(target).map(|()| o)) else {
                continue;
            };
            let (Ok(back), listener) = (out.try_clone(), sock.clone()) else {
                continue;
            };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = back.recv(&mut buf) {
                    if listener.send_to(&buf[..n], from).is_err() {
                        return;
                    }
                }
            });
            slot.insert(out);
        }
        if let Some(out) = clients.get(&from) {
            let _ = out.send(&buf[..n]);
        }
    }
}

/// Where a relay's pid and start time are kept: the container's directory, one file per
/// device.
pub fn pid_file(dir: &Path, device: &str) -> PathBuf {
    dir.join(format!("proxy.{device}.pid"))
}

/// The pid of device `device`'s running relay for the container in `dir`, and the spec
/// it runs with, if one runs (the same process: its start time is checked).
pub fn running(dir: &Path, device: &str) -> Option<(i32, String)> {
    let text = std::fs::read_to_string(pid_file(dir, device)).ok()?;
    let mut lines = text.lines();
    let mut first = lines.next()?.split_whitespace();
    let pid: i32 = first.next()?.parse().ok()?;
    let started: u64 = first.next()?.parse().ok()?;
    let spec = lines.next().unwrap_or_default().to_owned();
    (start_time(pid) == Some(started)).then_some((pid, spec))
}

/// Records relay `pid` running `spec` for device `device`.
pub fn record(dir: &Path, device: &str, pid: i32, spec: &str) -> std::io::Result<()> {
    let started = start_time(pid).unwrap_or(0);
    std::fs::write(pid_file(dir, device), format!("{pid} {started}\n{spec}\n"))
}

/// Stops device `device`'s relay, if one runs.
pub fn stop(dir: &Path, device: &str) {
    if let Some((pid, _)) = running(dir, device)
        && let Some(p) = rustix::process::Pid::from_raw(pid)
    {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    let _ = std::fs::remove_file(pid_file(dir, device));
}
