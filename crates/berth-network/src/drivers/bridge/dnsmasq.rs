//! One dnsmasq per bridge (from `dnsmasq-base`, never the system service), serving DHCP,
//! router advertisements and DNS on the bridge's addresses only.
//!
//! Its files live in the network's directory: `dnsmasq.pid`, `dnsmasq.leases`, `hosts/`
//! (one static allocation per file, `MAC,IPv4,NAME`; dnsmasq watches the directory),
//! `dnsmasq.raw` (`raw.dnsmasq`, also what keeps /etc/dnsmasq.conf out) and `dnsmasq.log`
//! (its stderr). It runs in its own session, so it outlives berthd like the containers it
//! serves; a start keeps one that runs with the same arguments and replaces any other.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::error::NetworkError;
use crate::{Lease, NetworkState};

/// The files of a network's dnsmasq.
#[derive(Debug, Clone)]
pub struct Files {
    pub dir: PathBuf,
}

impl Files {
    pub fn pid(&self) -> PathBuf {
        self.dir.join("dnsmasq.pid")
    }
    pub fn leases(&self) -> PathBuf {
        self.dir.join("dnsmasq.leases")
    }
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub fn raw(&self) -> PathBuf {
        self.dir.join("dnsmasq.raw")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("dnsmasq.log")
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> NetworkError + 'a {
    move |source| NetworkError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// dnsmasq's arguments for bridge `name` with effective configuration `config`.
pub fn args(name: &str, config: &BTreeMap<String, String>, files: &Files) -> Vec<String> {
    let get = |k: &str| config.get(k).map(String::as_str);
    let on = |k: &str, default: bool| get(k).map_or(default, |v| v == "true");
    let mut a: Vec<String> = [
        "--keep-in-foreground",
        "--strict-order",
        "--bind-interfaces",
        "--except-interface=lo",
        "--no-ping",
        "--dhcp-rapid-commit",
        "--no-negcache",
        "--dhcp-no-override",
        "--dhcp-authoritative",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    a.push(format!("--pid-file={}", files.pid().display()));
    a.push(format!("--interface={name}"));
    a.push(format!("--conf-file={}", files.raw().display()));
    a.push(format!("--dhcp-leasefile={}", files.leases().display()));
    a.push(format!("--dhcp-hostsdir={}", files.hosts().display()));
    if let Some(v4) = get("ipv4.address").and_then(|v| v.parse::<IpNet>().ok()) {
        a.push(format!("--listen-address={}", v4.addr()));
        if on("ipv4.dhcp", true) {
            let expiry = get("ipv4.dhcp.expiry").unwrap_or("1h");
            match get("ipv4.dhcp.ranges") {
                Some(ranges) => {
                    for r in ranges.split(',') {
                        let (s, e) = r.split_once('-').unwrap_or((r, r));
                        a.push(format!("--dhcp-range={},{},{expiry}", s.trim(), e.trim()));
                    }
                }
                None => {
                    // The subnet but the network, broadcast and bridge addresses.
                    let hosts: Vec<_> = v4.hosts().filter(|h| *h != v4.addr()).collect();
                    if let (Some(first), Some(last)) = (hosts.first(), hosts.last()) {
                        a.push(format!("--dhcp-range={first},{last},{expiry}"));
                    }
                }
            }
            if let Some(gw) = get("ipv4.dhcp.gateway") {
                a.push(format!("--dhcp-option-force=3,{gw}"));
            }
            if let Some(mtu) = get("bridge.mtu") {
                a.push(format!("--dhcp-option-force=26,{mtu}"));
            }
        }
    }
    if let Some(v6) = get("ipv6.address").and_then(|v| v.parse::<IpNet>().ok()) {
        a.push(format!("--listen-address={}", v6.addr()));
        a.push("--enable-ra".to_owned());
        if on("ipv6.dhcp", true) {
            let mode = if on("ipv6.dhcp.stateful", false) {
                format!("{},{}", first_v6(&v6), last_v6(&v6))
            } else {
                format!("::,constructor:{name},ra-stateless,ra-names")
            };
            a.push(format!("--dhcp-range={mode}"));
        } else {
            a.push(format!("--dhcp-range=::,constructor:{name},ra-only"));
        }
    }
    if get("dns.mode") != Some("none") {
        let domain = get("dns.domain").unwrap_or(super::config::DEFAULT_DOMAIN);
        // Instances' names are answered here and never forwarded.
        a.push(format!("--domain={domain}"));
        a.push(format!("--local=/{domain}/"));
        a.push(format!("--interface-name=_gateway.{domain},{name}"));
        if let Some(search) = get("dns.search") {
            a.push(format!("--dhcp-option-force=119,{search}"));
        }
    } else {
        a.push("--port=0".to_owned());
    }
    if let Some(ns) = get("dns.nameservers") {
        a.push(format!("--dhcp-option-force=6,{ns}"));
    }
    a
}

fn first_v6(net: &IpNet) -> std::net::Ipv6Addr {
    match net.network() {
        std::net::IpAddr::V6(n) => (u128::from(n) + 2).into(),
        std::net::IpAddr::V4(_) => std::net::Ipv6Addr::UNSPECIFIED,
    }
}

fn last_v6(net: &IpNet) -> std::net::Ipv6Addr {
    match net.broadcast() {
        std::net::IpAddr::V6(n) => (u128::from(n) - 1).into(),
        std::net::IpAddr::V4(_) => std::net::Ipv6Addr::UNSPECIFIED,
    }
}

/// The pid of this network's running dnsmasq, and its command line.
pub fn running(files: &Files) -> Option<(i32, Vec<String>)> {
    let pid: i32 = std::fs::read_to_string(files.pid())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // A pid reused by another process is not ours.
    let ours = args.first().is_some_and(|a| a.ends_with("dnsmasq"))
        && args
            .iter()
            .any(|a| *a == format!("--pid-file={}", files.pid().display()));
    ours.then_some((pid, args))
}

/// Stops this network's dnsmasq, if one runs.
pub fn stop(files: &Files) {
    if let Some((pid, _)) = running(files) {
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = std::fs::remove_file(files.pid());
}

/// Makes sure dnsmasq runs for bridge `name` with `args`: one already running with the
/// same arguments is kept (and told to re-read its hosts), any other replaced. Returns
/// once it listens, or with what it said when it exits.
pub fn ensure(
    network: &str,
    files: &Files,
    raw: &str,
    args: &[String],
) -> Result<(), NetworkError> {
    std::fs::create_dir_all(files.hosts()).map_err(io("create", &files.hosts()))?;
    write_atomic(&files.raw(), raw.as_bytes())?;
    if !files.leases().exists() {
        std::fs::write(files.leases(), b"").map_err(io("create", &files.leases()))?;
    }
    if let Some((pid, running_args)) = running(files) {
        if running_args.get(1..) == Some(args) {
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::HUP);
            }
            return Ok(());
        }
        stop(files);
    }
    let _ = std::fs::remove_file(files.pid());
    let log = std::fs::File::create(files.log()).map_err(io("create", &files.log()))?;
    let mut cmd = Command::new("dnsmasq");
    cmd.args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // Its own session: berthd's signals do not reach it, and it outlives berthd.
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| NetworkError::Dnsmasq {
        network: network.to_owned(),
        detail: format!("cannot run dnsmasq: {e}"),
    })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let said = std::fs::read_to_string(files.log()).unwrap_or_default();
            let line = said
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("no message")
                .trim_start_matches("dnsmasq: ")
                .to_owned();
            return Err(NetworkError::Dnsmasq {
                network: network.to_owned(),
                detail: format!("{line} ({status}){}", holder_of_port_53(&line)),
            });
        }
        if running(files).is_some() {
            // Reaped by a thread of its own when it exits while berthd runs.
            std::thread::spawn(move || child.wait());
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(NetworkError::Dnsmasq {
                network: network.to_owned(),
                detail: "it did not come up within 10 s".to_owned(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// When dnsmasq could not listen because the address is in use: who holds port 53.
fn holder_of_port_53(said: &str) -> String {
    if !said.contains("Address already in use") {
        return String::new();
    }
    let mut inodes = Vec::new();
    // The calling thread's namespace: the one dnsmasq was started in.
    for table in ["udp", "tcp", "udp6", "tcp6"].map(|t| format!("/proc/thread-self/net/{t}")) {
        for line in std::fs::read_to_string(&table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if port == Some(53)
                && let Some(inode) = f.get(9)
            {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        for fd in std::fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if inodes.iter().any(|i| Path::new(i) == target) {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return format!("; port 53 is held by {} (pid {pid})", comm.trim());
            }
        }
    }
    String::new()
}

/// Writes `data` to `path` whole or not at all (a temporary file renamed over it).
/// The temporary file is a dotfile beside `path`, which dnsmasq's watch of the hosts
/// directory skips (it would otherwise read it as one more hosts file), and its name keeps
/// all of `path`'s (`c1.eth0` and `c1.eth1` do not share one).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), NetworkError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, data).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("write", path))
}

/// The network's leases: its own addresses (`gateway`), the static allocations in
/// `hosts/` and what dnsmasq leased.
pub fn leases(files: &Files, state: &NetworkState) -> Vec<Lease> {
    let mut out: Vec<Lease> = state
        .addresses
        .iter()
        .filter(|a| a.scope == "global")
        .map(|a| Lease {
            hostname: String::new(),
            hwaddr: state.hwaddr.clone(),
            address: a.address.clone(),
            kind: "gateway".to_owned(),
        })
        .collect();
    let mut statics: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(files.hosts())
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let f: Vec<&str> = text.trim().split(',').collect();
        if let [mac, addrs @ .., host] = f.as_slice() {
            for a in addrs {
                out.push(Lease {
                    hostname: (*host).to_owned(),
                    hwaddr: (*mac).to_owned(),
                    address: a.trim_matches(['[', ']']).to_owned(),
                    kind: "static".to_owned(),
                });
            }
            statics.push(((*mac).to_owned(), (*host).to_owned()));
        }
    }
    for line in std::fs::read_to_string(files.leases())
        .unwrap_or_default()
        .lines()
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        // expiry mac ip hostname client-id (IPv6 lines carry an IAID as the mac).
        let [_, mac, ip, host, ..] = f.as_slice() else {
            continue;
        };
        if out.iter().any(|l| l.address == *ip) {
            continue;
        }
        out.push(Lease {
            hostname: if *host == "*" {
                String::new()
            } else {
                (*host).to_owned()
            },
            hwaddr: (*mac).to_owned(),
            address: (*ip).to_owned(),
            kind: "dynamic".to_owned(),
        });
    }
    out
}

/// Records a static allocation (`name`: the file's name in `hosts/`); dnsmasq picks a
/// new file up from its watched directory. A changed file it would read as one more record
/// beside the old one (which of the two wins is not defined), so a change is followed by a
/// SIGHUP, on which dnsmasq reads the directory afresh.
pub fn set_static(
    files: &Files,
    name: &str,
    mac: &str,
    addresses: &[String],
    hostname: &str,
) -> Result<(), NetworkError> {
    std::fs::create_dir_all(files.hosts()).map_err(io("create", &files.hosts()))?;
    let mut line = vec![mac.to_owned()];
    line.extend(addresses.iter().map(|a| {
        if a.contains(':') {
            format!("[{a}]")
        } else {
            a.clone()
        }
    }));
    line.push(hostname.to_owned());
    let path = files.hosts().join(name);
    let entry = format!("{}\n", line.join(","));
    let before = std::fs::read_to_string(&path).ok();
    if before.as_deref() == Some(entry.as_str()) {
        return Ok(());
    }
    write_atomic(&path, entry.as_bytes())?;
    if before.is_some()
        && let Some((pid, _)) = running(files)
        && let Some(p) = rustix::process::Pid::from_raw(pid)
    {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::HUP);
    }
    Ok(())
}

/// Removes a static allocation. One that held an address is followed by a SIGHUP, so
/// that dnsmasq forgets it and may give the address to another nic; one without (a MAC
/// and a name: most nics) is not worth a reread of every entry.
pub fn remove_static(files: &Files, name: &str) {
    let path = files.hosts().join(name);
    let had_address = std::fs::read_to_string(&path).is_ok_and(|t| t.trim().split(',').count() > 2);
    if std::fs::remove_file(&path).is_ok()
        && had_address
        && let Some((pid, _)) = running(files)
        && let Some(p) = rustix::process::Pid::from_raw(pid)
    {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::HUP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_follow_the_configuration() {
        let files = Files {
            dir: PathBuf::from("/d"),
        };
        let mut c = BTreeMap::new();
        c.insert("ipv4.address".to_owned(), "10.9.8.1/24".to_owned());
        c.insert("ipv6.address".to_owned(), "none".to_owned());
        let a = args("br0", &c, &files);
        assert!(a.contains(&"--listen-address=10.9.8.1".to_owned()), "{a:?}");
        assert!(
            a.contains(&"--dhcp-range=10.9.8.2,10.9.8.254,1h".to_owned()),
            "{a:?}"
        );
        assert!(a.contains(&"--local=/berth/".to_owned()), "{a:?}");
        assert!(a.contains(&"--interface=br0".to_owned()), "{a:?}");
        c.insert(
            "ipv4.dhcp.ranges".to_owned(),
            "10.9.8.10-10.9.8.20".to_owned(),
        );
        c.insert("dns.mode".to_owned(), "none".to_owned());
        let a = args("br0", &c, &files);
        assert!(
            a.contains(&"--dhcp-range=10.9.8.10,10.9.8.20,1h".to_owned()),
            "{a:?}"
        );
        assert!(a.contains(&"--port=0".to_owned()), "{a:?}");
    }

    #[test]
    fn leases_list_gateway_static_and_dynamic() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files {
            dir: dir.path().to_owned(),
        };
        for address in ["10.9.8.4", "10.9.8.5"] {
            set_static(
                &files,
                "c1.eth0",
                "00:16:3e:00:00:01",
                &[address.into()],
                "c1",
            )
            .unwrap();
        }
        // One file per nic, named as the nic; no temporary file left for dnsmasq to read.
        let names: Vec<_> = std::fs::read_dir(files.hosts())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["c1.eth0"]);
        std::fs::write(
            files.leases(),
            "1700000000 00:16:3e:00:00:02 10.9.8.77 c2 01:00:16:3e:00:00:02\n",
        )
        .unwrap();
        let state = NetworkState {
            addresses: vec![crate::Address {
                family: "inet".into(),
                address: "10.9.8.1".into(),
                netmask: "24".into(),
                scope: "global".into(),
            }],
            hwaddr: "00:16:3e:aa:bb:cc".into(),
            ..Default::default()
        };
        let l = leases(&files, &state);
        let kinds: Vec<(&str, &str)> = l
            .iter()
            .map(|l| (l.address.as_str(), l.kind.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("10.9.8.1", "gateway"),
                ("10.9.8.5", "static"),
                ("10.9.8.77", "dynamic")
            ]
        );
        remove_static(&files, "c1.eth0");
        assert_eq!(leases(&files, &state).len(), 2);
    }
}
