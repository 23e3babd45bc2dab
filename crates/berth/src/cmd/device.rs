//! `berth config device …` and `berth profile device …`: an instance's or a profile's
//! devices, as `lxc config device` manages them.

use berth_client::Client;

pub use crate::devices::Target;
use crate::devices::{Devices, load, store};
use crate::format::{Format, Table};
use crate::object;

/// `berth config device …`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a device: NAME DEVICE TYPE [KEY=VALUE...]
    Add {
        name: String,
        device: String,
        kind: String,
        config: Vec<String>,
    },
    /// Get a key of a device
    Get {
        name: String,
        device: String,
        key: String,
    },
    /// Set keys of a device: NAME DEVICE KEY=VALUE... or NAME DEVICE KEY VALUE
    Set {
        name: String,
        device: String,
        #[arg(required = true)]
        config: Vec<String>,
    },
    /// Unset a key of a device
    Unset {
        name: String,
        device: String,
        key: String,
    },
    /// List the devices
    #[command(alias = "ls")]
    List {
        name: String,
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show the devices as YAML
    Show { name: String },
    /// Remove devices
    #[command(alias = "rm")]
    Remove {
        name: String,
        #[arg(required = true)]
        devices: Vec<String>,
    },
    /// Copy a device inherited from a profile into the instance, changing keys
    Override {
        name: String,
        device: String,
        config: Vec<String>,
    },
}

fn missing(device: &str, name: &str) -> anyhow::Error {
    anyhow::anyhow!("Device {device:?} doesn't exist on {name:?}")
}

pub async fn run(client: &Client, target: Target, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Add {
            name,
            device,
            kind,
            config,
        } => {
            let (v, mut devices) = load(client, target, &name).await?;
            if devices.contains_key(&device) {
                anyhow::bail!("Device {device:?} already exists on {name:?}");
            }
            let mut d = object::pairs(&config)?;
            d.insert("type".to_owned(), kind);
            devices.insert(device.clone(), d);
            store(client, target, &name, v, &devices).await?;
            println!("Device {device} added to {name}");
        }
        Command::Get { name, device, key } => {
            let (_, devices) = load(client, target, &name).await?;
            let d = devices
                .get(&device)
                .ok_or_else(|| missing(&device, &name))?;
            println!("{}", d.get(&key).map(String::as_str).unwrap_or_default());
        }
        Command::Set {
            name,
            device,
            config,
        } => {
            let (v, mut devices) = load(client, target, &name).await?;
            let d = devices
                .get_mut(&device)
                .ok_or_else(|| missing(&device, &name))?;
            d.extend(object::pairs(&config)?);
            store(client, target, &name, v, &devices).await?;
        }
        Command::Unset { name, device, key } => {
            let (v, mut devices) = load(client, target, &name).await?;
            let d = devices
                .get_mut(&device)
                .ok_or_else(|| missing(&device, &name))?;
            if d.remove(&key).is_none() {
                anyhow::bail!("Key {key:?} is not set on device {device:?}");
            }
            store(client, target, &name, v, &devices).await?;
        }
        Command::List { name, format } => {
            let (_, devices) = load(client, target, &name).await?;
            let mut t = Table::new(&["NAME", "TYPE"]);
            for (n, d) in &devices {
                t.row(vec![n.clone(), d.get("type").cloned().unwrap_or_default()]);
            }
            print!("{}", t.render(format, &devices)?);
        }
        Command::Show { name } => {
            let (_, devices) = load(client, target, &name).await?;
            print!("{}", crate::yaml::to_string(&devices)?);
        }
        Command::Remove {
            name,
            devices: gone,
        } => {
            let (v, mut devices) = load(client, target, &name).await?;
            for g in &gone {
                if devices.remove(g).is_none() {
                    return Err(missing(g, &name));
                }
            }
            store(client, target, &name, v, &devices).await?;
        }
        Command::Override {
            name,
            device,
            config,
        } => {
            if matches!(target, Target::Profile) {
                anyhow::bail!("Only instances inherit devices to override");
            }
            let (v, mut devices) = load(client, target, &name).await?;
            if devices.contains_key(&device) {
                anyhow::bail!("Device {device:?} is already the instance's own");
            }
            let expanded: Devices =
                serde_json::from_value(v["expanded_devices"].clone()).unwrap_or_default();
            let mut d = expanded
                .get(&device)
                .cloned()
                .ok_or_else(|| missing(&device, &name))?;
            d.extend(object::pairs(&config)?);
            devices.insert(device.clone(), d);
            store(client, target, &name, v, &devices).await?;
            println!("Device {device} overridden for {name}");
        }
    }
    Ok(())
}
