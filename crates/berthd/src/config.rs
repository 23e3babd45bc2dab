//! The server's configuration: what `PUT|PATCH /1.0` accepts, and storing it.
//!
//! Each key has a validator; anything not in the table is refused, except the free-form
//! `user.*` namespace.

use std::collections::BTreeMap;

/// A key the server accepts.
#[derive(Debug)]
pub struct ServerKey {
    pub name: &'static str,
    /// What the key means, as `/1.0/metadata/configuration` serves it.
    pub description: &'static str,
    pub default: &'static str,
    validate: fn(&str) -> Result<(), &'static str>,
}

/// Every server key berth knows.
pub const SERVER_KEYS: &[ServerKey] = &[
    ServerKey {
        name: "core.shutdown_timeout",
        description: "Minutes to wait for running operations before berthd shuts down",
        default: "5",
        validate: |v| {
            v.parse::<u32>()
                .map(|_| ())
                .map_err(|_| "must be a whole number of minutes")
        },
    },
    ServerKey {
        name: ACCEPT_FOREIGN,
        description: "berth's own: put accept rules for managed bridges in the host's other \
                      nftables forward chains that drop their traffic (tagged, removed with \
                      the network or the key); otherwise berthd only warns",
        default: "false",
        validate: |v| match v {
            "true" | "false" => Ok(()),
            _ => Err("must be true or false"),
        },
    },
    ServerKey {
        name: crate::model::idmap::DEFAULT_KEY,
        description: "berth's own: the id map of new containers: isolated (a range of host \
                      ids of their own, so per-user kernel limits are per container) or \
                      shared (one range for all, as in LXD); existing containers keep theirs",
        default: "isolated",
        validate: |v| match v {
            "isolated" | "shared" => Ok(()),
            _ => Err("must be isolated or shared"),
        },
    },
    ServerKey {
        name: crate::model::capacity::EXPECTED_KEY,
        description: "berth's own: how many containers the host's kernel limits are checked \
                      (and raised) for",
        default: "1000",
        validate: |v| crate::model::capacity::expected(v).map(drop),
    },
    ServerKey {
        name: crate::model::capacity::RAISE_KEY,
        description: "berth's own: raise (raise the host's kernel limits that are safe to \
                      raise when below what instances.expected containers need, and warn \
                      about the rest) or report (only warn)",
        default: "raise",
        validate: |v| match v {
            "raise" | "report" => Ok(()),
            _ => Err("must be raise or report"),
        },
    },
    ServerKey {
        name: HTTPS_ADDRESS,
        description: "Address to serve the API on over HTTPS (IP, IP:PORT or :PORT; port \
                      8443 when left out); unset: the unix socket only",
        default: "",
        validate: |v| https_address(v).map(drop),
    },
    ServerKey {
        name: TOKEN_EXPIRY,
        description: "How long a trust token stays valid (`1S 1M 2H 3d 4w 5m 6y`: seconds, \
                      minutes, hours, days, weeks, months, years); unset: until used or revoked",
        default: "",
        validate: |v| {
            crate::model::schedule::expiry(v, chrono::Utc::now())
                .map(drop)
                .map_err(|_| "must be like 1S 1M 2H 3d 4w 5m 6y")
        },
    },
    ServerKey {
        name: BACKUPS_COMPRESSION,
        description: "How new backups are compressed when the request says nothing: none, \
                      gzip, zstd, xz or bzip2",
        default: "gzip",
        validate: |v| {
            berth_image::Compression::parse(v)
                .map(drop)
                .ok_or("must be none, gzip, zstd, xz or bzip2")
        },
    },
    ServerKey {
        name: IMAGES_CACHE_EXPIRY,
        description: "Days an image fetched from another server for an instance (cached) is \
                      kept unused before it is flushed; 0 keeps it",
        default: "10",
        validate: |v| {
            v.parse::<u32>()
                .map(drop)
                .map_err(|_| "must be a whole number of days")
        },
    },
    ServerKey {
        name: "core.https_allowed_origin",
        description: "Access-Control-Allow-Origin sent on HTTPS replies",
        default: "",
        validate: |_| Ok(()),
    },
    ServerKey {
        name: "core.https_allowed_methods",
        description: "Access-Control-Allow-Methods sent on HTTPS replies",
        default: "",
        validate: |_| Ok(()),
    },
    ServerKey {
        name: "core.https_allowed_headers",
        description: "Access-Control-Allow-Headers sent on HTTPS replies",
        default: "",
        validate: |_| Ok(()),
    },
    ServerKey {
        name: "core.https_allowed_credentials",
        description: "Whether Access-Control-Allow-Credentials: true is sent on HTTPS replies",
        default: "false",
        validate: |v| match v {
            "true" | "false" => Ok(()),
            _ => Err("must be true or false"),
        },
    },
];

/// The address of the HTTPS API.
pub const HTTPS_ADDRESS: &str = "core.https_address";

/// How backups are compressed by default (see `backup`).
pub const BACKUPS_COMPRESSION: &str = "backups.compression_algorithm";

/// Days an unused cached image is kept (see `image::cache`).
pub const IMAGES_CACHE_EXPIRY: &str = "images.remote_cache_expiry";

/// How long a trust token lives.
pub const TOKEN_EXPIRY: &str = "core.remote_token_expiry";

/// `core.https_address` as a socket address: `:8443` and `[::]` mean every address, the
/// port is 8443 when left out; empty is `None`.
pub fn https_address(value: &str) -> Result<Option<std::net::SocketAddr>, &'static str> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let with_host = if v.starts_with(':') {
        format!("[::]{v}")
    } else {
        v.to_owned()
    };
    if let Ok(a) = with_host.parse::<std::net::SocketAddr>() {
        return Ok(Some(a));
    }
    let bare = with_host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .map(|ip| Some(std::net::SocketAddr::new(ip, 8443)))
        .map_err(|_| "must be an IP address, IP:PORT or :PORT")
}

/// The server key letting berthd change the host's other firewall tables.
pub const ACCEPT_FOREIGN: &str = "network.host_firewall.accept";

/// A refused configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("Unknown configuration key \"{0}\"")]
    UnknownKey(String),
    #[error("Invalid value {value:?} for \"{key}\": {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
}

fn key(name: &str) -> Option<&'static ServerKey> {
    SERVER_KEYS.iter().find(|k| k.name == name)
}

/// Checks every key and value of a server configuration.
pub fn validate(config: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (k, v) in config {
        if v.contains(['\n', '\r', '\0']) {
            return Err(ConfigError::InvalidValue {
                key: k.clone(),
                value: v.clone(),
                reason: "must not contain line breaks or NUL".to_owned(),
            });
        }
        if let Some(rest) = k.strip_prefix("user.") {
            if rest.is_empty() {
                return Err(ConfigError::UnknownKey(k.clone()));
            }
            continue;
        }
        let known = key(k).ok_or_else(|| ConfigError::UnknownKey(k.clone()))?;
        (known.validate)(v).map_err(|reason| ConfigError::InvalidValue {
            key: k.clone(),
            value: v.clone(),
            reason: reason.to_owned(),
        })?;
    }
    Ok(())
}

/// Checks and stores a whole new server configuration (empty values dropped), and hands
/// it to `install` before announcing it.
pub async fn store(
    cx: &crate::ctx::Ctx,
    mut config: BTreeMap<String, String>,
    install: impl FnOnce(BTreeMap<String, String>),
) -> crate::error::Result<()> {
    config.retain(|_, v| !v.is_empty());
    validate(&config).map_err(|e| crate::error::Failure::invalid(e.to_string()))?;
    let stored = config.clone();
    cx.db
        .write(move |tx| crate::db::config::replace(tx, &stored))
        .await?;
    tracing::info!(keys = ?config.keys().collect::<Vec<_>>(), "Server configuration updated");
    install(config);
    cx.events.lifecycle("config-updated", "/1.0", None);
    Ok(())
}

/// The value of `name` in `config`, or its default.
pub fn get<'a>(config: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    config
        .get(name)
        .map(String::as_str)
        .or_else(|| key(name).map(|k| k.default))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn known_user_and_unknown_keys() {
        validate(&cfg(&[
            ("core.shutdown_timeout", "1"),
            ("user.foo", "bar baz"),
        ]))
        .unwrap();
        let e = validate(&cfg(&[("core.bogus", "1")])).unwrap_err();
        assert_eq!(e.to_string(), "Unknown configuration key \"core.bogus\"");
        let e = validate(&cfg(&[("core.shutdown_timeout", "soon")])).unwrap_err();
        assert!(e.to_string().contains("core.shutdown_timeout"), "{e}");
        assert!(validate(&cfg(&[("user.x", "a\nb")])).is_err());
        assert!(validate(&cfg(&[("user.", "a")])).is_err());
    }

    #[test]
    fn https_addresses() {
        let a = |v| https_address(v).unwrap().map(|a| a.to_string());
        assert_eq!(a(":8443").as_deref(), Some("[::]:8443"));
        assert_eq!(a("127.0.0.1").as_deref(), Some("127.0.0.1:8443"));
        assert_eq!(a("[::1]").as_deref(), Some("[::1]:8443"));
        assert_eq!(a("10.1.2.3:9000").as_deref(), Some("10.1.2.3:9000"));
        assert_eq!(a(""), None);
        assert!(https_address("example.com:8443").is_err());
    }

    #[test]
    fn defaults() {
        assert_eq!(get(&BTreeMap::new(), "core.shutdown_timeout"), "5");
        assert_eq!(
            get(
                &cfg(&[("core.shutdown_timeout", "0")]),
                "core.shutdown_timeout"
            ),
            "0"
        );
    }
}
