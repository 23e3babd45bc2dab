//! `berth config show|get|set|unset`: an instance's configuration, or the server's when
//! the first argument is a key (`berth config set core.shutdown_timeout 10`: keys have
//! dots, instance names never do).

use std::collections::BTreeMap;

use berth_client::{Client, Method};
use serde_json::Value;

/// `berth config …`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show an instance's configuration as YAML
    Show {
        name: String,
        /// Show the configuration with its profiles applied
        #[arg(short = 'e', long)]
        expanded: bool,
    },
    /// Get one configuration key of an instance (NAME KEY), or of the server (KEY)
    Get { name: String, key: Option<String> },
    /// Set configuration keys: NAME KEY=VALUE... or NAME KEY VALUE; the server's without
    /// NAME
    Set { name: String, config: Vec<String> },
    /// Edit an instance's configuration as YAML in $EDITOR (or from standard input)
    Edit { name: String },
    /// Manage an instance's devices
    #[command(subcommand)]
    Device(super::device::Command),
    /// Unset configuration keys of an instance (NAME KEY...), or of the server (KEY...)
    Unset { name: String, keys: Vec<String> },
    /// Manage the clients the server trusts, and their tokens
    #[command(subcommand)]
    Trust(super::trust::Command),
}

/// The writable fields of an instance, as `lxc config edit` shows them.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct InstancePut {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    devices: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    ephemeral: bool,
    #[serde(default)]
    profiles: Vec<String>,
    #[serde(default)]
    stateful: bool,
    #[serde(default)]
    description: String,
}

/// Whether a first argument is a server key rather than an instance name.
fn is_key(arg: &str) -> bool {
    arg.contains(['.', '='])
}

async fn patch(
    client: &Client,
    name: &str,
    config: BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let body = serde_json::json!({ "config": config });
    let r = client
        .query(
            Method::PATCH,
            &format!("/1.0/instances/{name}"),
            Some(&body),
        )
        .await?;
    if let Some(id) = r.body.operation_id() {
        client.wait_success(id).await?;
    }
    Ok(())
}

pub async fn run(client: &Client, mut cmd: Command) -> anyhow::Result<()> {
    // `REMOTE:NAME`, or `REMOTE:` alone for the remote server's own keys.
    let target = match &mut cmd {
        Command::Show { name, .. }
        | Command::Get { name, .. }
        | Command::Set { name, .. }
        | Command::Edit { name }
        | Command::Unset { name, .. } => {
            let (c, rest) = crate::remote::target(client, name)?;
            *name = rest;
            Some(c)
        }
        Command::Device(_) | Command::Trust(_) => None,
    };
    match &mut cmd {
        Command::Get { name, key } if name.is_empty() => *name = key.take().unwrap_or_default(),
        Command::Set { name, config } if name.is_empty() && !config.is_empty() => {
            *name = config.remove(0);
        }
        Command::Unset { name, keys } if name.is_empty() && !keys.is_empty() => {
            *name = keys.remove(0);
        }
        _ => {}
    }
    let client = target.as_ref().unwrap_or(client);
    match cmd {
        Command::Show { name, expanded } => {
            let v: Value = client.get(&format!("/1.0/instances/{name}")).await?;
            let pick = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
            let (config, devices) = if expanded {
                (pick("expanded_config"), pick("expanded_devices"))
            } else {
                (pick("config"), pick("devices"))
            };
            // The writable fields, in the order `lxc config show` prints them.
            let mut out = serde_json::Map::new();
            out.insert("architecture".into(), pick("architecture"));
            out.insert("config".into(), config);
            out.insert("devices".into(), devices);
            out.insert("ephemeral".into(), pick("ephemeral"));
            out.insert("profiles".into(), pick("profiles"));
            out.insert("stateful".into(), pick("stateful"));
            out.insert("description".into(), pick("description"));
            print!("{}", crate::yaml::to_string(&out)?);
        }
        Command::Get { name, key: None } if is_key(&name) => {
            crate::object::print_key(client, "/1.0", &name).await?;
        }
        Command::Get { key: None, .. } => anyhow::bail!("Missing KEY: berth config get NAME KEY"),
        Command::Get {
            name,
            key: Some(key),
        } => {
            let v: Value = client.get(&format!("/1.0/instances/{name}")).await?;
            let value = v
                .get("config")
                .and_then(|c| c.get(&key))
                .and_then(Value::as_str)
                .unwrap_or_default();
            println!("{value}");
        }
        Command::Set { name, config } if is_key(&name) => {
            let all: Vec<String> = std::iter::once(name).chain(config).collect();
            crate::object::patch_config(client, "/1.0", crate::object::pairs(&all)?).await?;
        }
        Command::Set { config, .. } if config.is_empty() => {
            anyhow::bail!("Missing KEY=VALUE: berth config set NAME KEY=VALUE...")
        }
        Command::Set { name, config } => {
            patch(client, &name, crate::object::pairs(&config)?).await?;
        }
        Command::Device(c) => {
            super::device::run(client, super::device::Target::Instance, c).await?;
        }
        Command::Trust(c) => super::trust::run(client, c).await?,
        Command::Edit { name } => {
            let v: Value = client.get(&format!("/1.0/instances/{name}")).await?;
            let current: InstancePut = serde_json::from_value(v)?;
            crate::editor::edit_yaml(&current, |put: InstancePut| {
                let name = name.clone();
                async move {
                    let body = serde_json::to_value(&put)?;
                    let r = client
                        .query(Method::PUT, &format!("/1.0/instances/{name}"), Some(&body))
                        .await?;
                    if let Some(id) = r.body.operation_id() {
                        client.wait_success(id).await?;
                    }
                    Ok(())
                }
            })
            .await?;
        }
        Command::Unset { name, keys } if is_key(&name) => {
            let empty = std::iter::once(name)
                .chain(keys)
                .map(|k| (k, String::new()))
                .collect();
            crate::object::patch_config(client, "/1.0", empty).await?;
        }
        Command::Unset { keys, .. } if keys.is_empty() => {
            anyhow::bail!("Missing KEY: berth config unset NAME KEY...")
        }
        Command::Unset { name, keys } => {
            let v: Value = client.get(&format!("/1.0/instances/{name}")).await?;
            for k in &keys {
                if v.get("config").and_then(|c| c.get(k)).is_none() {
                    anyhow::bail!("Key {k:?} is not set on instance {name:?}");
                }
            }
            let empty = keys.into_iter().map(|k| (k, String::new())).collect();
            patch(client, &name, empty).await?;
        }
    }
    Ok(())
}
