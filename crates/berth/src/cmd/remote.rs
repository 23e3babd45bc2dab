//! `berth remote add|list|switch|remove|rename|get-default|set-url`: the servers this
//! client drives (see [`crate::remote`]).
//!
//! `add NAME TOKEN` redeems a trust token made on the server (`berth config trust add`,
//! `lxc config trust add`): the token names the server's addresses and certificate
//! fingerprint, so nothing needs checking by hand. `add NAME https://HOST[:PORT]` shows
//! the server's fingerprint to accept (or takes `--accept-certificate`), and needs
//! `--token` unless the client is trusted already. `add NAME URL --protocol simplestreams`
//! adds an image server (public: no trust, no certificate of ours).

use base64::Engine as _;
use berth_client::{Client, Method};

use crate::format::{Format, Table};
use crate::remote::{self, Config, LOCAL, Remote};

/// `berth remote …`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a remote: NAME TOKEN, or NAME https://HOST[:PORT]
    Add {
        name: String,
        /// A trust token, or the server's address
        target: String,
        /// Trust the server's certificate without asking
        #[arg(long)]
        accept_certificate: bool,
        /// A trust token to redeem (with an address)
        #[arg(long)]
        token: Option<String>,
        /// The project to work in on this remote
        #[arg(long)]
        project: Option<String>,
        /// lxd (a berthd, LXD or Incus server; the default) or simplestreams (an image
        /// server)
        #[arg(long, default_value = "lxd")]
        protocol: String,
    },
    /// List the remotes
    #[command(alias = "ls")]
    List {
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Make a remote the default
    Switch { name: String },
    /// Show the default remote
    GetDefault,
    /// Remove a remote
    #[command(alias = "rm")]
    Remove { name: String },
    /// Rename a remote
    #[command(alias = "mv")]
    Rename { name: String, new_name: String },
    /// Change a remote's address
    SetUrl { name: String, url: String },
}

/// A trust token's content.
#[derive(Debug, serde::Deserialize)]
struct Token {
    #[serde(default)]
    fingerprint: String,
    #[serde(default)]
    addresses: Option<Vec<String>>,
    #[serde(default)]
    secret: String,
}

fn decode_token(text: &str) -> Option<Token> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    let t: Token = serde_json::from_slice(&raw).ok()?;
    (!t.secret.is_empty() && !t.fingerprint.is_empty()).then_some(t)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty() && !name.contains([':', '/']) && !name.chars().any(char::is_whitespace),
        "Invalid remote name {name:?}: no colon, slash or space"
    );
    Ok(())
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    let mut config = Config::load()?;
    match cmd {
        Command::Add {
            name,
            target,
            accept_certificate,
            token,
            project,
            protocol,
        } => {
            check_name(&name)?;
            if let Some(r) = config.remotes.get(&name) {
                anyhow::bail!("Remote {name} exists as <{}>", r.addr);
            }
            let remote = match decode_token(&target) {
                _ if protocol == remote::SIMPLESTREAMS => {
                    add_streams(&name, &target, accept_certificate).await?
                }
                _ if !matches!(protocol.as_str(), "lxd" | "incus") => anyhow::bail!(
                    "Invalid protocol {protocol:?}: expected lxd, incus or simplestreams"
                ),
                Some(t) => add_with_token(&name, &target, &t, project).await?,
                None => {
                    add_with_address(&name, &target, accept_certificate, token, project).await?
                }
            };
            config.remotes.insert(name, remote);
            config.save()?;
        }
        Command::List { format } => {
            let mut t = Table::new(&["NAME", "URL", "PROTOCOL", "AUTH TYPE", "PROJECT", "PUBLIC"]);
            for (n, r) in &config.remotes {
                let shown = if *n == config.default_remote {
                    format!("{n} (current)")
                } else {
                    n.clone()
                };
                t.row(vec![
                    shown,
                    r.addr.clone(),
                    r.protocol.clone(),
                    if r.addr.starts_with("unix:") {
                        "file access".to_owned()
                    } else {
                        r.auth_type.clone()
                    },
                    r.project.clone(),
                    if r.public { "YES" } else { "NO" }.to_owned(),
                ]);
            }
            print!("{}", t.render(format, &config.remotes)?);
        }
        Command::Switch { name } => {
            config.get(&name)?;
            config.default_remote = name;
            config.save()?;
        }
        Command::GetDefault => println!("{}", config.default_remote),
        Command::Remove { name } => {
            anyhow::ensure!(name != LOCAL, "The local remote can't be removed");
            anyhow::ensure!(
                name != config.default_remote,
                "Remote {name} is the default: switch to another first"
            );
            config.get(&name)?;
            config.remotes.remove(&name);
            config.save()?;
            let _ = std::fs::remove_file(remote::server_cert_path(&name)?);
        }
        Command::Rename { name, new_name } => {
            anyhow::ensure!(name != LOCAL, "The local remote can't be renamed");
            check_name(&new_name)?;
            anyhow::ensure!(
                !config.remotes.contains_key(&new_name),
                "Remote {new_name} already exists"
            );
            let r = config
                .remotes
                .remove(&name)
                .ok_or_else(|| anyhow::anyhow!("Remote {name:?} doesn't exist"))?;
            let (from, to) = (
                remote::server_cert_path(&name)?,
                remote::server_cert_path(&new_name)?,
            );
            if from.exists() {
                std::fs::rename(&from, &to)?;
            }
            config.remotes.insert(new_name.clone(), r);
            if config.default_remote == name {
                config.default_remote = new_name;
            }
            config.save()?;
        }
        Command::SetUrl { name, url } => {
            anyhow::ensure!(name != LOCAL, "The local remote's address can't be changed");
            remote::host_port(&url)?;
            let r = config
                .remotes
                .get_mut(&name)
                .ok_or_else(|| anyhow::anyhow!("Remote {name:?} doesn't exist"))?;
            r.addr = url;
            config.save()?;
        }
    }
    Ok(())
}

fn https_remote(addr: &str, project: String) -> Remote {
    Remote {
        addr: format!("https://{addr}"),
        protocol: "lxd".to_owned(),
        auth_type: "tls".to_owned(),
        project,
        public: false,
    }
}

fn save_server_cert(name: &str, der: &[u8]) -> anyhow::Result<()> {
    let path = remote::server_cert_path(name)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, remote::der_to_pem(der))?;
    Ok(())
}

/// Redeems `token` at the first of its addresses whose certificate is the one it names.
async fn add_with_token(
    name: &str,
    token: &str,
    t: &Token,
    project: Option<String>,
) -> anyhow::Result<Remote> {
    let identity = remote::identity()?;
    let mut last = None;
    for addr in t.addresses.iter().flatten() {
        let der = match berth_client::server_certificate(addr).await {
            Ok(d) => d,
            Err(e) => {
                last = Some(anyhow::anyhow!("{addr}: {e}"));
                continue;
            }
        };
        if remote::fingerprint(&der) != t.fingerprint.to_ascii_lowercase() {
            last = Some(anyhow::anyhow!(
                "Certificate fingerprint mismatch between the token and the server at {addr}"
            ));
            continue;
        }
        let client = Client::https(addr.clone(), der.clone(), Some(&identity))?;
        redeem(&client, token).await?;
        let project = choose_project(&client, project).await?;
        save_server_cert(name, &der)?;
        return Ok(https_remote(addr, project));
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("The token names no address")))
}

/// `POST /1.0/certificates` with the token as both clients send it, so LXD and Incus
/// servers take it too.
async fn redeem(client: &Client, token: &str) -> anyhow::Result<()> {
    let body = serde_json::json!({"type": "client", "trust_token": token, "password": token});
    client
        .query(Method::POST, "/1.0/certificates", Some(&body))
        .await
        .map_err(|e| anyhow::anyhow!("Failed to redeem the trust token: {e}"))?;
    Ok(())
}

async fn add_with_address(
    name: &str,
    url: &str,
    accept: bool,
    token: Option<String>,
    project: Option<String>,
) -> anyhow::Result<Remote> {
    let url = if url.contains("://") {
        url.to_owned()
    } else {
        format!("https://{url}")
    };
    let addr = remote::host_port(&url)?;
    let der = berth_client::server_certificate(&addr).await?;
    accept_certificate(&der, accept)?;
    let client = Client::https(addr.clone(), der.clone(), Some(&remote::identity()?))?;
    let server = client.server().await?;
    if server.auth != "trusted" {
        let token = token.ok_or_else(|| {
            anyhow::anyhow!(
                "The server does not trust this client: add --token with a trust token made there (berth config trust add NAME)"
            )
        })?;
        redeem(&client, &token).await?;
    }
    let project = choose_project(&client, project).await?;
    save_server_cert(name, &der)?;
    Ok(https_remote(&addr, project))
}

/// Asks the user to accept certificate `der` by its fingerprint, unless `accept`.
fn accept_certificate(der: &[u8], accept: bool) -> anyhow::Result<()> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    if accept {
        return Ok(());
    }
    let fp = remote::fingerprint(der);
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "Certificate fingerprint: {fp}; check it and add --accept-certificate"
    );
    print!("Certificate fingerprint: {fp}\nok (y/n)? ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    anyhow::ensure!(
        matches!(line.trim(), "y" | "yes"),
        "Server certificate refused"
    );
    Ok(())
}

/// A simplestreams image server at `url`: reached with the system's roots, or, when its
/// certificate is not signed by one of them (a berthd's own tree), with its certificate
/// accepted and pinned. Its images are read once to show it serves a tree.
async fn add_streams(name: &str, url: &str, accept: bool) -> anyhow::Result<Remote> {
    use berth_client::simplestreams::SimpleStreams;
    let url = if url.contains("://") {
        url.to_owned()
    } else {
        format!("https://{url}")
    };
    let public = SimpleStreams::new(&url, None)?;
    match public.images().await {
        Ok(_) => {}
        // Only a certificate no trusted root signed (a berthd's own) may be accepted by
        // its fingerprint: a wrong name, an expired certificate or a failed handshake
        // stay errors.
        Err(berth_client::ClientError::Tls(e)) if e.contains("UnknownIssuer") => {
            eprintln!("{url}: its certificate is not signed by a root this system trusts");
            let der = berth_client::server_certificate(&remote::host_port(&url)?).await?;
            accept_certificate(&der, accept)?;
            SimpleStreams::new(&url, Some(der.clone()))?
                .images()
                .await
                .map_err(|e| anyhow::anyhow!("{url} serves no simplestreams tree: {e}"))?;
            save_server_cert(name, &der)?;
        }
        Err(e) => anyhow::bail!("{url} serves no simplestreams tree: {e}"),
    }
    Ok(Remote {
        addr: url.trim_end_matches('/').to_owned(),
        protocol: remote::SIMPLESTREAMS.to_owned(),
        auth_type: String::new(),
        project: String::new(),
        public: true,
    })
}

/// The project to work in on a new remote: the one asked for, else the only one the
/// client may use, else `default`.
async fn choose_project(client: &Client, asked: Option<String>) -> anyhow::Result<String> {
    let names: Vec<String> = client.get("/1.0/projects").await?;
    let names: Vec<String> = names
        .iter()
        .filter_map(|u| u.rsplit('/').next().map(str::to_owned))
        .collect();
    if let Some(p) = asked {
        anyhow::ensure!(names.contains(&p), "Project {p:?} not found on the remote");
        return Ok(p);
    }
    Ok(match names.as_slice() {
        [only] => only.clone(),
        _ if names.iter().any(|n| n == "default") => "default".to_owned(),
        [first, ..] => first.clone(),
        [] => "default".to_owned(),
    })
}
