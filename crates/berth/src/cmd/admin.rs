//! `berth admin init`: set up a fresh server (`berth admin recover`: [`super::recover`]), as `lxd init` does: a storage pool, a
//! managed bridge (`berthbr0`, automatic addresses) and the `default` profile's root disk
//! and `eth0` on them; interactively, with `--auto`, or from a preseed YAML on standard
//! input (`--preseed`, the same shape `lxd init --preseed` reads).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Read, Write};

use berth_client::{Client, Method};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `berth admin …`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Set up storage and the default profile
    Init(InitArgs),
    /// Bring back instances and volumes the database lost
    Recover(super::recover::RecoverArgs),
}

/// Arguments of `berth admin init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Answer every question with its default
    #[arg(long, conflicts_with = "preseed")]
    auto: bool,
    /// Read the whole setup as YAML from standard input
    #[arg(long)]
    preseed: bool,
    /// Storage pool to create (with --auto)
    #[arg(long, default_value = "default")]
    storage_pool: String,
    /// Storage driver of that pool (with --auto)
    #[arg(long, default_value = "dir")]
    storage_backend: String,
    /// Managed bridge to create and give the default profile's eth0 (with --auto; "none"
    /// for none)
    #[arg(long, default_value = "berthbr0")]
    network_bridge: String,
    /// Print the preseed YAML of the answers instead of applying it
    #[arg(long)]
    dump: bool,
}

/// A preseed: what `berth admin init` applies.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preseed {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    config: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    storage_pools: Vec<PoolSeed>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    profiles: Vec<ProfileSeed>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    networks: Vec<NetworkSeed>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkSeed {
    name: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// LXD's preseeds carry it; networks are the host's here, so it is read and ignored.
    #[serde(default, skip_serializing, rename = "project")]
    _project: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolSeed {
    name: String,
    driver: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileSeed {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    devices: BTreeMap<String, BTreeMap<String, String>>,
}

/// The setup of `--auto` and of the interactive defaults; `bridge` "none" for no network.
fn default_seed(pool: &str, driver: &str, bridge: &str) -> Preseed {
    let mut root = BTreeMap::new();
    root.insert("type".to_owned(), "disk".to_owned());
    root.insert("path".to_owned(), "/".to_owned());
    root.insert("pool".to_owned(), pool.to_owned());
    let mut devices = BTreeMap::new();
    devices.insert("root".to_owned(), root);
    let mut networks = Vec::new();
    if bridge != "none" {
        devices.insert(
            "eth0".to_owned(),
            BTreeMap::from([
                ("type".to_owned(), "nic".to_owned()),
                ("network".to_owned(), bridge.to_owned()),
                ("name".to_owned(), "eth0".to_owned()),
            ]),
        );
        networks.push(NetworkSeed {
            name: bridge.to_owned(),
            kind: "bridge".to_owned(),
            description: String::new(),
            config: BTreeMap::from([
                ("ipv4.address".to_owned(), "auto".to_owned()),
                ("ipv6.address".to_owned(), "auto".to_owned()),
            ]),
            _project: None,
        });
    }
    Preseed {
        networks,
        storage_pools: vec![PoolSeed {
            name: pool.to_owned(),
            driver: driver.to_owned(),
            description: String::new(),
            config: BTreeMap::new(),
        }],
        profiles: vec![ProfileSeed {
            name: "default".to_owned(),
            description: "Default berth profile".to_owned(),
            config: BTreeMap::new(),
            devices,
        }],
        ..Preseed::default()
    }
}

fn ask(question: &str, default: &str) -> anyhow::Result<String> {
    eprint!("{question} [default={default}]: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let answer = line.trim();
    Ok(if answer.is_empty() {
        default.to_owned()
    } else {
        answer.to_owned()
    })
}

fn yes(answer: &str) -> anyhow::Result<bool> {
    match answer {
        "yes" | "y" => Ok(true),
        "no" | "n" => Ok(false),
        other => anyhow::bail!("Invalid answer {other:?}: expected yes or no"),
    }
}

/// Applies a preseed: server config, then pools (created, or their config updated), then
/// networks (likewise), then profiles (created, or replaced).
async fn apply(client: &Client, seed: &Preseed) -> anyhow::Result<()> {
    if !seed.config.is_empty() {
        let body = serde_json::json!({ "config": seed.config });
        client.query(Method::PATCH, "/1.0", Some(&body)).await?;
    }
    for p in &seed.storage_pools {
        let path = format!("/1.0/storage-pools/{}", p.name);
        match client.get::<Value>(&path).await {
            Ok(current) => {
                if current["driver"].as_str() != Some(p.driver.as_str()) {
                    anyhow::bail!(
                        "Storage pool {:?} exists with driver {}, not {}",
                        p.name,
                        current["driver"],
                        p.driver
                    );
                }
                if !p.config.is_empty() {
                    let body = serde_json::json!({ "config": p.config });
                    client.query(Method::PATCH, &path, Some(&body)).await?;
                }
            }
            Err(e) if e.status() == Some(404) => {
                let body = serde_json::json!({
                    "name": p.name, "driver": p.driver, "description": p.description, "config": p.config,
                });
                client
                    .query(Method::POST, "/1.0/storage-pools", Some(&body))
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    for n in &seed.networks {
        let path = format!("/1.0/networks/{}", n.name);
        match client.get::<Value>(&path).await {
            Ok(current) if current["managed"] == true => {
                // `auto` is what the network resolved already: only other values change.
                let changed: BTreeMap<&String, &String> = n
                    .config
                    .iter()
                    .filter(|(k, v)| *v != "auto" && current["config"][k.as_str()] != ***v)
                    .collect();
                if !changed.is_empty() {
                    let body = serde_json::json!({ "config": changed });
                    client.query(Method::PATCH, &path, Some(&body)).await?;
                }
            }
            Ok(_) => anyhow::bail!("{:?} is a host interface berth does not manage", n.name),
            Err(e) if e.status() == Some(404) => {
                let body = serde_json::json!({
                    "name": n.name, "type": n.kind, "description": n.description, "config": n.config,
                });
                client
                    .query(Method::POST, "/1.0/networks", Some(&body))
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    for p in &seed.profiles {
        let path = format!("/1.0/profiles/{}", p.name);
        let body = serde_json::json!({
            "name": p.name, "description": p.description, "config": p.config, "devices": p.devices,
        });
        match client.get::<Value>(&path).await {
            // An existing profile keeps what the preseed does not name.
            Ok(current) => {
                let mut merged = body.clone();
                for field in ["config", "devices"] {
                    let mut all = current[field].as_object().cloned().unwrap_or_default();
                    if let Some(seeded) = body[field].as_object() {
                        all.extend(seeded.clone());
                    }
                    merged[field] = Value::Object(all);
                }
                if p.description.is_empty() {
                    merged["description"] = current["description"].clone();
                }
                client.query(Method::PUT, &path, Some(&merged)).await?;
            }
            Err(e) if e.status() == Some(404) => {
                client
                    .query(Method::POST, "/1.0/profiles", Some(&body))
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub async fn run(client: &Client, cmd: Command) -> anyhow::Result<()> {
    let args = match cmd {
        Command::Init(args) => args,
        Command::Recover(args) => return super::recover::run(client, args).await,
    };
    let seed = if args.preseed {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        crate::yaml::from_str::<Preseed>(&text)?
    } else if args.auto || !std::io::stdin().is_terminal() {
        default_seed(
            &args.storage_pool,
            &args.storage_backend,
            &args.network_bridge,
        )
    } else {
        let pool = ask("Name of the new storage pool", &args.storage_pool)?;
        let driver = ask(
            "Name of the storage backend to use (dir)",
            &args.storage_backend,
        )?;
        let bridge = ask(
            "Name of the new network bridge (none for none)",
            &args.network_bridge,
        )?;
        let seed = default_seed(&pool, &driver, &bridge);
        if yes(&ask(
            "Would you like a YAML \"berth admin init\" preseed to be printed? (yes/no)",
            "no",
        )?)? {
            print!("{}", crate::yaml::to_string(&seed)?);
        }
        seed
    };
    if args.dump {
        print!("{}", crate::yaml::to_string(&seed)?);
        return Ok(());
    }
    apply(client, &seed).await
}
