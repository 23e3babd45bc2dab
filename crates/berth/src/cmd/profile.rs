//! `berth profile …`: profiles, and which instances use them.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};

use berth_client::{Client, Method};
use serde_json::Value;

use crate::format::{Format, Table};
use crate::object;

/// `berth profile …`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List profiles
    #[command(alias = "ls")]
    List {
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a profile as YAML
    Show { name: String },
    /// Create a profile (from YAML on standard input when it is not a terminal)
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Copy a profile
    #[command(alias = "cp")]
    Copy { source: String, target: String },
    /// Delete profiles
    #[command(alias = "rm")]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Get a configuration key of a profile
    Get { name: String, key: String },
    /// Set configuration keys of a profile: NAME KEY=VALUE... or NAME KEY VALUE
    Set {
        name: String,
        #[arg(required = true)]
        config: Vec<String>,
    },
    /// Unset configuration keys of a profile
    Unset {
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Rename a profile
    #[command(alias = "mv")]
    Rename { name: String, new_name: String },
    /// Add a profile to an instance
    Add { instance: String, profile: String },
    /// Remove a profile from an instance
    Remove { instance: String, profile: String },
    /// Set an instance's profiles: INSTANCE P1,P2,... ("" for none)
    Assign { instance: String, profiles: String },
    /// Edit a profile as YAML in $EDITOR (or from standard input)
    Edit { name: String },
    /// Manage a profile's devices
    #[command(subcommand)]
    Device(super::device::Command),
}

/// The fields a profile edit changes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ProfilePut {
    #[serde(default)]
    description: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    devices: BTreeMap<String, BTreeMap<String, String>>,
}

async fn profile(client: &Client, name: &str) -> anyhow::Result<Value> {
    Ok(client.get(&format!("/1.0/profiles/{name}")).await?)
}

async fn instance_profiles(client: &Client, instance: &str) -> anyhow::Result<Vec<String>> {
    let v: Value = client.get(&format!("/1.0/instances/{instance}")).await?;
    Ok(v.get("profiles")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect())
}

async fn set_profiles(client: &Client, instance: &str, profiles: &[String]) -> anyhow::Result<()> {
    let body = serde_json::json!({ "profiles": profiles });
    let r = client
        .query(
            Method::PATCH,
            &format!("/1.0/instances/{instance}"),
            Some(&body),
        )
        .await?;
    if let Some(id) = r.body.operation_id() {
        client.wait_success(id).await?;
    }
    Ok(())
}

pub async fn run(client: &Client, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::List { format } => {
            let profiles: Vec<Value> = client.get("/1.0/profiles?recursion=1").await?;
            let mut t = Table::new(&["NAME", "DESCRIPTION", "USED BY"]);
            for p in &profiles {
                let s = |k: &str| {
                    p.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                let used = p
                    .get("used_by")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                t.row(vec![s("name"), s("description"), used.to_string()]);
            }
            print!("{}", t.render(format, &profiles)?);
        }
        Command::Show { name } => {
            print!(
                "{}",
                crate::yaml::to_string(&profile(client, &name).await?)?
            );
        }
        Command::Create { name, description } => {
            let mut body = serde_json::json!({"name": name, "description": description});
            if !std::io::stdin().is_terminal() {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text)?;
                if !text.trim().is_empty() {
                    let put: ProfilePut = crate::yaml::from_str(&text)?;
                    body["config"] = serde_json::to_value(&put.config)?;
                    body["devices"] = serde_json::to_value(&put.devices)?;
                    if !put.description.is_empty() {
                        body["description"] = put.description.into();
                    }
                }
            }
            crate::object::create(client, "/1.0/profiles", "Profile", &name, &body).await?;
        }
        Command::Copy { source, target } => {
            let p = profile(client, &source).await?;
            let body = serde_json::json!({
                "name": target, "description": p["description"], "config": p["config"], "devices": p["devices"],
            });
            client
                .query(Method::POST, "/1.0/profiles", Some(&body))
                .await?;
        }
        Command::Delete { names } => {
            crate::object::delete_each(client, "/1.0/profiles", "Profile", &names).await?;
        }
        Command::Get { name, key } => {
            object::print_key(client, &format!("/1.0/profiles/{name}"), &key).await?;
        }
        Command::Set { name, config } => {
            object::patch_config(
                client,
                &format!("/1.0/profiles/{name}"),
                object::pairs(&config)?,
            )
            .await?;
        }
        Command::Unset { name, keys } => {
            object::unset_keys(
                client,
                &format!("/1.0/profiles/{name}"),
                keys,
                &format!("profile {name:?}"),
            )
            .await?;
        }
        Command::Rename { name, new_name } => {
            let body = serde_json::json!({ "name": new_name });
            client
                .query(Method::POST, &format!("/1.0/profiles/{name}"), Some(&body))
                .await?;
        }
        Command::Add { instance, profile } => {
            let mut list = instance_profiles(client, &instance).await?;
            if list.contains(&profile) {
                anyhow::bail!("Profile {profile:?} is already applied to {instance:?}");
            }
            list.push(profile.clone());
            set_profiles(client, &instance, &list).await?;
            println!("Profile {profile} added to {instance}");
        }
        Command::Remove { instance, profile } => {
            let mut list = instance_profiles(client, &instance).await?;
            if !list.contains(&profile) {
                anyhow::bail!("Profile {profile:?} isn't applied to {instance:?}");
            }
            list.retain(|p| p != &profile);
            set_profiles(client, &instance, &list).await?;
            println!("Profile {profile} removed from {instance}");
        }
        Command::Assign { instance, profiles } => {
            let list: Vec<String> = profiles
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            set_profiles(client, &instance, &list).await?;
        }
        Command::Device(c) => {
            super::device::run(client, super::device::Target::Profile, c).await?;
        }
        Command::Edit { name } => {
            let p = profile(client, &name).await?;
            let current: ProfilePut = serde_json::from_value(p)?;
            crate::editor::edit_yaml(&current, |put: ProfilePut| {
                let name = name.clone();
                async move {
                    let body = serde_json::to_value(&put)?;
                    client
                        .query(Method::PUT, &format!("/1.0/profiles/{name}"), Some(&body))
                        .await?;
                    Ok(())
                }
            })
            .await?;
        }
    }
    Ok(())
}
