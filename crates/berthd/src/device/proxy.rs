//! proxy devices on the host: a relay process per device (`berthd forkproxy`, see
//! [`crate::lxc::proxy`]) started once the container runs, or, with `nat=true`, DNAT rules
//! in berthd's table. A relay runs in a session of its own, so it outlives berthd; a start
//! keeps one that runs with the same spec, and it ends with the container.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_api::instance::Device;
use berth_network::nat::Dnat;

use crate::error::{Failure, Result};
use crate::lxc::proxy::{self as relay, ProxySpec};
use crate::model::proxy::{Endpoint, binds_instance, parse_endpoint};

/// The container a proxy serves.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// Its runtime directory (relays' pid files and logs).
    pub dir: &'a Path,
    /// Its init and that process's start time.
    pub pid: i32,
    pub start_time: u64,
}

/// The first id of a running container's map (`uid_map` or `gid_map`): its root on the
/// host; 0 when it has no user namespace.
fn base_id(pid: i32, file: &str) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|t| {
            let mut f = t.split_whitespace();
            let (inside, outside) = (f.next()?, f.next()?);
            (inside == "0").then(|| outside.parse().ok())?
        })
        .unwrap_or(0)
}

/// The relay spec of device `d` for `target`: a listening unix socket's owner in host ids
/// (the container's ids mapped when it listens inside; its root by default).
pub fn spec(target: &Target<'_>, d: &Device) -> ProxySpec {
    let inside = binds_instance(d);
    let id = |key: &str, map: &str| -> Option<u32> {
        let v: Option<u32> = d.get(key).and_then(|v| v.parse().ok());
        if inside {
            Some(base_id(target.pid, map) + v.unwrap_or(0))
        } else {
            v
        }
    };
    ProxySpec {
        pid: target.pid,
        start_time: target.start_time,
        listen: d.get("listen").cloned().unwrap_or_default(),
        connect: d.get("connect").cloned().unwrap_or_default(),
        bind_instance: inside,
        proxy_protocol: d.get("proxy_protocol").is_some_and(|v| v == "true"),
        uid: id("uid", "uid_map"),
        gid: id("gid", "gid_map"),
        mode: d.get("mode").and_then(|m| u32::from_str_radix(m, 8).ok()),
    }
}

/// Starts device `dev`'s relay, or keeps the one running with the same spec. Blocking:
/// returns once it listens, or with what it said.
pub fn start(target: &Target<'_>, dev: &str, d: &Device) -> Result<()> {
    let spec = serde_json::to_string(&spec(target, d))
        .map_err(|e| Failure::internal(format!("Failed to write a proxy spec: {e}")))?;
    if let Some((_, running)) = relay::running(target.dir, dev) {
        if running == spec {
            return Ok(());
        }
        relay::stop(target.dir, dev);
    }
    let exe = std::env::current_exe()
        .map_err(|e| Failure::failed("Failed to find berthd's own binary", e))?;
    let log_path = target.dir.join(format!("proxy.{dev}.log"));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| Failure::failed(format!("Failed to create {}", log_path.display()), e))?;
    let mut child = Command::new(exe)
        .arg("forkproxy")
        .arg(&spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        // Its own session: it outlives berthd, like the container it serves.
        .process_group(0)
        .spawn()
        .map_err(|e| Failure::failed("Failed to start the proxy", e))?;
    let stdout = child.stdout.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        if let Some(out) = stdout {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let _ = tx.send(line);
    });
    let ready = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    if ready.trim() == "ready" {
        let pid = i32::try_from(child.id()).unwrap_or(0);
        relay::record(target.dir, dev, pid, &spec)
            .map_err(|e| Failure::failed("Failed to record the proxy's pid", e))?;
        // Reaped here while berthd runs; by init once it is gone.
        std::thread::spawn(move || child.wait());
        return Ok(());
    }
    let _ = child.kill();
    let _ = child.wait();
    let said = std::fs::read_to_string(&log_path).unwrap_or_default();
    let line = said
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("it did not come up")
        .trim_start_matches("Error: ");
    Err(Failure::invalid(format!(
        "Device {dev:?}: the proxy cannot listen: {line}"
    )))
}

/// Stops device `dev`'s relay, if one runs.
pub fn stop(dir: &Path, dev: &str) {
    relay::stop(dir, dev);
}

/// The DNAT rules of a `nat=true` device `d`, whose connect address must be a static
/// IPv4 address of one of the instance's nics (`nics`: address → bridge); and that bridge.
pub fn dnat(dev: &str, d: &Device, nics: &BTreeMap<IpAddr, String>) -> Result<(Vec<Dnat>, String)> {
    let bad = |why: &str| Failure::invalid(format!("Device {dev:?}: {why}"));
    let listen = parse_endpoint(d.get("listen").map_or("", String::as_str))
        .map_err(|e| bad(&format!("listen: {e}")))?;
    let connect = parse_endpoint(d.get("connect").map_or("", String::as_str))
        .map_err(|e| bad(&format!("connect: {e}")))?;
    let (
        Endpoint::Inet {
            udp,
            addr: la,
            ports: lp,
        },
        Endpoint::Inet {
            addr: ca,
            ports: cp,
            ..
        },
    ) = (listen, connect)
    else {
        return Err(bad("nat needs tcp or udp on both sides"));
    };
    let bridge = nics.get(&ca).ok_or_else(|| {
        bad(&format!(
            "nat needs connect's address {ca} to be the static ipv4.address of one of the instance's nics"
        ))
    })?;
    let rules = lp
        .iter()
        .enumerate()
        .map(|(i, p)| Dnat {
            udp,
            listen: SocketAddr::new(la, *p),
            connect: SocketAddr::new(ca, *cp.get(i).or(cp.first()).unwrap_or(p)),
        })
        .collect();
    Ok((rules, bridge.clone()))
}

/// The key of device `dev` of instance `name` in berthd's table: part of chain names, so
/// a name with other characters than letters, digits, `_`, `-` and `.` is hashed.
pub fn nat_key(name: &str, dev: &str) -> String {
    use sha2::{Digest, Sha256};
    let plain = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    if plain(name) && plain(dev) {
        format!("proxy.{name}.{dev}")
    } else {
        let h = Sha256::digest(format!("{name}/{dev}"));
        format!("proxy.h{}", berth_image::hex(&h[..8]))
    }
}
