//! proxy devices, as configuration: `listen` and `connect` addresses
//! (`tcp|udp:ADDR:PORT[-PORT][,PORT…]`, `unix:PATH`, `unix:@ABSTRACT`), which side
//! listens (`bind=host`, the default, or `instance`), the listening unix socket's owner
//! and mode, the PROXY protocol header, and `nat=true` (kernel DNAT instead of a relay).

use std::net::IpAddr;

use berth_api::instance::Device;

use crate::error::{Failure, Result};

/// Every key a proxy device takes.
const KEYS: &[&str] = &[
    "type",
    "listen",
    "connect",
    "bind",
    "uid",
    "gid",
    "mode",
    "security.uid",
    "security.gid",
    "proxy_protocol",
    "nat",
];

/// One side of a proxy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Endpoint {
    /// TCP or UDP on an address and its ports.
    Inet {
        udp: bool,
        addr: IpAddr,
        ports: Vec<u16>,
    },
    /// A unix socket: a path, or an abstract name (`@name`).
    Unix { path: String },
}

impl Endpoint {
    /// How many listeners or targets it stands for.
    pub fn count(&self) -> usize {
        match self {
            Endpoint::Inet { ports, .. } => ports.len(),
            Endpoint::Unix { .. } => 1,
        }
    }

    pub fn is_udp(&self) -> bool {
        matches!(self, Endpoint::Inet { udp: true, .. })
    }

    pub fn is_unix(&self) -> bool {
        matches!(self, Endpoint::Unix { .. })
    }
}

/// Parses `tcp:127.0.0.1:80-82,90`, `udp:[::1]:53`, `unix:/run/x.sock`, `unix:@name`;
/// the error is why it does not parse.
pub fn parse_endpoint(v: &str) -> std::result::Result<Endpoint, String> {
    let (proto, rest) = v
        .split_once(':')
        .ok_or("expected tcp:ADDR:PORT, udp:ADDR:PORT or unix:PATH")?;
    match proto {
        "unix" => {
            if rest.is_empty() || rest.contains('\0') {
                return Err("expected a socket path".into());
            }
            if !rest.starts_with('/') && !rest.starts_with('@') {
                return Err("expected an absolute socket path or @name".into());
            }
            Ok(Endpoint::Unix {
                path: rest.to_owned(),
            })
        }
        "tcp" | "udp" => {
            let (addr, ports) = match rest.strip_prefix('[') {
                Some(r) => {
                    let (a, p) = r.split_once("]:").ok_or("expected [IPV6]:PORT")?;
                    (a, p)
                }
                None => rest.rsplit_once(':').ok_or("expected ADDR:PORT")?,
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("{addr:?} is not an IP address"))?;
            let mut list = Vec::new();
            for part in ports.split(',') {
                let (a, b) = part.split_once('-').unwrap_or((part, part));
                let (a, b): (u16, u16) = match (a.trim().parse(), b.trim().parse()) {
                    (Ok(a), Ok(b)) if a > 0 && a <= b => (a, b),
                    _ => return Err(format!("{part:?} is not a port or a port range")),
                };
                list.extend(a..=b);
                if list.len() > 65535 {
                    return Err("too many ports".into());
                }
            }
            Ok(Endpoint::Inet {
                udp: proto == "udp",
                addr,
                ports: list,
            })
        }
        other => Err(format!("unknown protocol {other:?}")),
    }
}

/// Whether `d` is a proxy device.
pub fn is_proxy(d: &Device) -> bool {
    d.get("type").map(String::as_str) == Some("proxy")
}

/// Whether the instance side listens.
pub fn binds_instance(d: &Device) -> bool {
    d.get("bind").map(String::as_str) == Some("instance")
}

/// Whether it is kernel DNAT.
pub fn is_nat(d: &Device) -> bool {
    d.get("nat").is_some_and(|v| v == "true")
}

/// Checks a proxy device; errors name the device and key.
pub fn validate(name: &str, d: &Device) -> Result<()> {
    let bad = |key: &str, why: &str| {
        Failure::invalid(format!(
            "Device {name:?}: invalid value {:?} for {key:?}: {why}",
            d.get(key).map_or("", String::as_str)
        ))
    };
    for (k, v) in d {
        if !KEYS.contains(&k.as_str()) {
            return Err(Failure::invalid(format!(
                "Device {name:?}: unknown key {k:?} for a proxy"
            )));
        }
        if v.contains(['\n', '\r', '\0']) {
            return Err(Failure::invalid(format!(
                "Device {name:?}: line breaks are not allowed in {k:?}"
            )));
        }
    }
    let endpoint = |key: &str| -> Result<Endpoint> {
        let v = d
            .get(key)
            .ok_or_else(|| Failure::invalid(format!("Device {name:?}: {key:?} is required")))?;
        parse_endpoint(v).map_err(|why| bad(key, &why))
    };
    let listen = endpoint("listen")?;
    let connect = endpoint("connect")?;
    if connect.count() != 1 && connect.count() != listen.count() {
        return Err(bad(
            "connect",
            &format!(
                "{} ports, but listen has {}: give one port or as many",
                connect.count(),
                listen.count()
            ),
        ));
    }
    if listen.is_udp() && !connect.is_udp() {
        return Err(bad("connect", "a udp listener needs a udp target"));
    }
    if let Some(b) = d.get("bind")
        && !matches!(b.as_str(), "host" | "instance")
    {
        return Err(bad("bind", "expected host or instance"));
    }
    for key in ["uid", "gid", "security.uid", "security.gid"] {
        if d.get(key).is_some_and(|v| v.parse::<u32>().is_err()) {
            return Err(bad(key, "expected a numeric id"));
        }
    }
    if d.get("mode")
        .is_some_and(|v| u32::from_str_radix(v, 8).map_or(true, |m| m > 0o777))
    {
        return Err(bad("mode", "expected an octal mode such as 0660"));
    }
    for key in ["proxy_protocol", "nat"] {
        if d.get(key)
            .is_some_and(|v| !matches!(v.as_str(), "true" | "false"))
        {
            return Err(bad(key, "expected true or false"));
        }
    }
    if d.get("proxy_protocol").is_some_and(|v| v == "true") && (connect.is_udp() || listen.is_udp())
    {
        return Err(bad(
            "proxy_protocol",
            "the PROXY header is for stream connections",
        ));
    }
    if is_nat(d) {
        let (Endpoint::Inet { addr: la, .. }, Endpoint::Inet { addr: ca, .. }) =
            (&listen, &connect)
        else {
            return Err(bad("nat", "nat needs tcp or udp on both sides"));
        };
        if listen.is_udp() != connect.is_udp() {
            return Err(bad("nat", "nat needs the same protocol on both sides"));
        }
        if binds_instance(d) {
            return Err(bad("nat", "nat listens on the host: bind must be host"));
        }
        if la.is_ipv4() != ca.is_ipv4() {
            return Err(bad("nat", "listen and connect must be of one IP family"));
        }
        if d.contains_key("proxy_protocol") && d["proxy_protocol"] == "true" {
            return Err(bad("nat", "nat cannot add a PROXY header"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(pairs: &[(&str, &str)]) -> Device {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn endpoints_parse_as_lxd_writes_them() {
        assert_eq!(
            parse_endpoint("tcp:127.0.0.1:80-82,90").unwrap(),
            Endpoint::Inet {
                udp: false,
                addr: "127.0.0.1".parse().unwrap(),
                ports: vec![80, 81, 82, 90]
            }
        );
        assert!(matches!(
            parse_endpoint("udp:[::1]:53").unwrap(),
            Endpoint::Inet { udp: true, .. }
        ));
        assert!(parse_endpoint("unix:@abstract").unwrap().is_unix());
        for bad in [
            "tcp:1.2.3.4",
            "tcp:host:80",
            "tcp:1.2.3.4:90-80",
            "sctp:1.2.3.4:1",
            "unix:rel",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn proxies_are_checked_naming_device_and_key() {
        let ok = dev(&[
            ("type", "proxy"),
            ("listen", "tcp:127.0.0.1:8080"),
            ("connect", "tcp:127.0.0.1:80"),
        ]);
        validate("web", &ok).unwrap();
        for (extra, key) in [
            (("connect", "tcp:127.0.0.1:80-81"), "connect"),
            (("bind", "both"), "bind"),
            (("mode", "999"), "mode"),
            (("listen", "tcp:nowhere:1"), "listen"),
            (("bogus", "1"), "bogus"),
        ] {
            let mut d = ok.clone();
            d.insert(extra.0.to_owned(), extra.1.to_owned());
            let err = validate("web", &d).unwrap_err().to_string();
            assert!(err.contains("web") && err.contains(key), "{err}");
        }
        let mut nat = ok.clone();
        nat.insert("nat".into(), "true".into());
        nat.insert("bind".into(), "instance".into());
        assert!(
            validate("web", &nat)
                .unwrap_err()
                .to_string()
                .contains("nat")
        );
    }
}
