//! Remotes: the servers `berth` knows, and which one a `REMOTE:NAME` argument names.
//!
//! They are kept as LXD's client keeps them, in the configuration directory (`$BERTH_CONF`,
//! else `~/.config/berth`): `config.yml` (`default-remote`, `remotes: NAME: {addr,
//! protocol, auth_type, project, public}`), the servers' certificates in
//! `servercerts/NAME.crt` (pinned: a server presenting another is refused), and the
//! client's own certificate in `client.crt` / `client.key` (made on first use).
//! `local` is always there: the unix socket of `$BERTH_SOCKET`, `$BERTH_DIR` or
//! `/var/lib/berth`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::Context as _;
use berth_client::simplestreams::SimpleStreams;
use berth_client::{Client, ClientIdentity};
use serde::{Deserialize, Serialize};

/// The local daemon's remote name.
pub const LOCAL: &str = "local";

/// One remote as `config.yml` keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Remote {
    /// `unix://` or `https://HOST:PORT`.
    pub addr: String,
    #[serde(default)]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_type: String,
    /// The project commands on this remote work in (a restricted certificate's own).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project: String,
    #[serde(default)]
    pub public: bool,
}

/// `config.yml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    #[serde(rename = "default-remote", default)]
    pub default_remote: String,
    #[serde(default)]
    pub remotes: BTreeMap<String, Remote>,
}

/// The configuration directory.
pub fn conf_dir() -> anyhow::Result<PathBuf> {
    std::env::var_os("BERTH_CONF")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/berth")))
        .ok_or_else(|| anyhow::anyhow!("Neither BERTH_CONF nor HOME is set"))
}

fn local() -> Remote {
    Remote {
        addr: "unix://".to_owned(),
        protocol: "lxd".to_owned(),
        ..Remote::default()
    }
}

impl Config {
    /// `config.yml` as stored, with `local` added; a missing file is the defaults.
    pub fn load() -> anyhow::Result<Config> {
        let path = conf_dir()?.join("config.yml");
        let mut config: Config = match std::fs::read_to_string(&path) {
            Ok(text) => crate::yaml::from_str(&text)
                .with_context(|| format!("Failed to read {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(e).with_context(|| format!("Failed to read {}", path.display())),
        };
        config.remotes.entry(LOCAL.to_owned()).or_insert_with(local);
        if config.default_remote.is_empty() {
            config.default_remote = LOCAL.to_owned();
        }
        Ok(config)
    }

    /// Writes `config.yml` (through a temporary file).
    pub fn save(&self) -> anyhow::Result<()> {
        let dir = conf_dir()?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("Failed to create {}", dir.display()))?;
        let path = dir.join("config.yml");
        let tmp = dir.join(".config.yml.tmp");
        std::fs::write(&tmp, crate::yaml::to_string(self)?)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("Failed to write {}", path.display()))
    }

    pub fn get(&self, name: &str) -> anyhow::Result<&Remote> {
        self.remotes
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("Remote {name:?} doesn't exist"))
    }
}

/// Where a remote's pinned certificate is kept.
pub fn server_cert_path(name: &str) -> anyhow::Result<PathBuf> {
    Ok(conf_dir()?.join("servercerts").join(format!("{name}.crt")))
}

/// The client's own certificate, made on first use.
pub fn identity() -> anyhow::Result<ClientIdentity> {
    let dir = conf_dir()?;
    let (crt, key) = (dir.join("client.crt"), dir.join("client.key"));
    if !crt.exists() || !key.exists() {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("Failed to create {}", dir.display()))?;
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let user = std::env::var("USER").unwrap_or_else(|_| "root".to_owned());
        let (cert_pem, key_pem) =
            berth_client::generate_certificate(&format!("{user}@{host}"), &host)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key)
            .with_context(|| format!("Failed to create {}", key.display()))?;
        f.write_all(key_pem.as_bytes())?;
        std::fs::write(&crt, cert_pem)
            .with_context(|| format!("Failed to write {}", crt.display()))?;
        eprintln!("Made a client certificate: {}", crt.display());
    }
    let read =
        |p: &PathBuf| std::fs::read(p).with_context(|| format!("Failed to read {}", p.display()));
    Ok(ClientIdentity::from_pem(&read(&crt)?, &read(&key)?)?)
}

/// DER of the first certificate in PEM text.
pub fn pem_to_der(pem: &[u8]) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    let text = std::str::from_utf8(pem).context("Certificate is not text")?;
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    anyhow::ensure!(!body.is_empty(), "No certificate in the PEM text");
    Ok(base64::engine::general_purpose::STANDARD.decode(body)?)
}

/// DER as PEM.
pub fn der_to_pem(der: &[u8]) -> String {
    berth_client::certificate_pem(der)
}

/// SHA-256 of a certificate's DER, in hex.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `https://HOST:PORT` as `HOST:PORT` (port 8443 when left out).
pub fn host_port(addr: &str) -> anyhow::Result<String> {
    let rest = addr
        .strip_prefix("https://")
        .ok_or_else(|| anyhow::anyhow!("{addr:?} is not an https:// address"))?;
    let host = rest.split('/').next().unwrap_or_default();
    anyhow::ensure!(!host.is_empty(), "{addr:?} names no host");
    let has_port = match host.rsplit_once(':') {
        Some((h, p)) => {
            !h.is_empty() && p.parse::<u16>().is_ok() && (!h.contains(':') || h.ends_with(']'))
        }
        None => false,
    };
    Ok(if has_port {
        host.to_owned()
    } else {
        format!("{host}:8443")
    })
}

/// What the command line's `--project` and `berth project switch` chose, applied to the
/// `local` remote; other remotes work in their own project.
static LOCAL_PROJECT: OnceLock<Option<String>> = OnceLock::new();
static PROJECT_FLAG: OnceLock<Option<String>> = OnceLock::new();

/// Records the project choices of this run (called once, by `main`).
pub fn set_projects(flag: Option<String>, local: Option<String>) {
    let _ = PROJECT_FLAG.set(flag);
    let _ = LOCAL_PROJECT.set(local);
}

/// The simplestreams image server remote `name` is (`--protocol simplestreams`), or
/// `None` for a berthd, LXD or Incus server. Its certificate is pinned when one was
/// accepted for it, else checked against the system's roots.
pub fn streams(name: &str) -> anyhow::Result<Option<SimpleStreams>> {
    let remote = config()?.get(name)?;
    if remote.protocol != SIMPLESTREAMS {
        return Ok(None);
    }
    let pinned = match std::fs::read(server_cert_path(name)?) {
        Ok(pem) => Some(pem_to_der(&pem)?),
        Err(_) => None,
    };
    Ok(Some(SimpleStreams::new(&remote.addr, pinned)?))
}

/// The protocol of image-only remotes.
pub const SIMPLESTREAMS: &str = "simplestreams";

/// A client of remote `name`.
pub fn client(config: &Config, name: &str) -> anyhow::Result<Client> {
    let remote = config.get(name)?;
    anyhow::ensure!(
        remote.protocol != SIMPLESTREAMS,
        "Remote {name} is a simplestreams image server: only image commands (image list, image copy, launch) reach it"
    );
    let flag = PROJECT_FLAG.get().cloned().flatten();
    if remote.addr.starts_with("unix:") {
        let local = LOCAL_PROJECT.get().cloned().flatten();
        let path = remote
            .addr
            .trim_start_matches("unix:")
            .trim_start_matches("//");
        let client = if path.is_empty() {
            Client::from_env()
        } else {
            Client::unix(path)
        };
        return Ok(client.with_project(flag.or(local)));
    }
    let pem = std::fs::read(server_cert_path(name)?)
        .with_context(|| format!("No saved certificate for remote {name:?}: add it again"))?;
    let client = Client::https(
        host_port(&remote.addr)?,
        pem_to_der(&pem)?,
        Some(&identity()?),
    )?;
    let project = flag.or_else(|| Some(remote.project.clone()).filter(|p| !p.is_empty()));
    Ok(client.with_project(project))
}

/// The remotes, loaded once per run.
static CONFIG: OnceLock<Config> = OnceLock::new();

fn config() -> anyhow::Result<&'static Config> {
    if let Some(c) = CONFIG.get() {
        return Ok(c);
    }
    let loaded = Config::load()?;
    Ok(CONFIG.get_or_init(|| loaded))
}

/// The client of the default remote.
pub fn default_client() -> anyhow::Result<Client> {
    let c = config()?;
    client(c, &c.default_remote)
}

/// Splits `REMOTE:REST` when REMOTE is a known remote: `(Some(remote), rest)`; anything
/// else is `(None, arg)` (an instance name never holds a colon).
pub fn split(arg: &str) -> anyhow::Result<(Option<String>, String)> {
    if let Some((remote, rest)) = arg.split_once(':')
        && !remote.is_empty()
        && !remote.contains('/')
    {
        config()?.get(remote)?;
        return Ok((Some(remote.to_owned()), rest.to_owned()));
    }
    Ok((None, arg.to_owned()))
}

/// The server `arg` names (`REMOTE:NAME`, else the default remote's `default`) and the
/// rest of it.
pub fn target(default: &Client, arg: &str) -> anyhow::Result<(Client, String)> {
    match split(arg)? {
        (Some(remote), rest) => Ok((client(config()?, &remote)?, rest)),
        (None, rest) => Ok((default.clone(), rest)),
    }
}

/// The one server several arguments name (`REMOTE:…` each, or none: the default), their
/// remote stripped; `what` names them in the error when they name different servers.
pub fn one_target(default: &Client, specs: Vec<&mut String>, what: &str) -> anyhow::Result<Client> {
    let mut chosen: Option<Option<String>> = None;
    for spec in specs {
        let (remote, rest) = split(spec)?;
        if chosen.as_ref().is_some_and(|c| *c != remote) {
            anyhow::bail!("All {what} must be on one remote");
        }
        chosen = Some(remote);
        *spec = rest;
    }
    match chosen.flatten() {
        Some(r) => Ok(target(default, &format!("{r}:"))?.0),
        None => Ok(default.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(host_port("https://10.0.0.1").unwrap(), "10.0.0.1:8443");
        assert_eq!(host_port("https://10.0.0.1:9000").unwrap(), "10.0.0.1:9000");
        assert_eq!(host_port("https://[fd00::1]").unwrap(), "[fd00::1]:8443");
        assert_eq!(host_port("https://[fd00::1]:1").unwrap(), "[fd00::1]:1");
        assert_eq!(
            host_port("https://host.example/").unwrap(),
            "host.example:8443"
        );
        assert!(host_port("http://x").is_err());
    }

    #[test]
    fn pem_round_trip() {
        let der = vec![1u8, 2, 3, 250, 251];
        assert_eq!(pem_to_der(der_to_pem(&der).as_bytes()).unwrap(), der);
    }
}
