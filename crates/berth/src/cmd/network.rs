//! `berth network …`: managed networks and the host's interfaces, their state and leases,
//! and attaching instances and profiles to them.

use std::collections::BTreeMap;

use berth_api::network::{Network, NetworkLease, NetworkState};
use berth_client::{Client, Method};

use crate::devices::{Target, load, store};
use crate::format::{Format, Table};
use crate::object;

/// `berth network …`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List networks (managed ones and the host's interfaces)
    #[command(alias = "ls")]
    List {
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a network as YAML
    Show { network: String },
    /// Create a network: berth network create NAME [KEY=VALUE...]
    Create {
        network: String,
        config: Vec<String>,
        /// Network type
        #[arg(short = 't', long = "type", default_value = "bridge")]
        kind: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete networks
    #[command(alias = "rm")]
    Delete {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Edit a network as YAML in $EDITOR (or from standard input)
    Edit { network: String },
    /// Get a configuration key of a network
    Get { network: String, key: String },
    /// Set configuration keys of a network: NAME KEY=VALUE... or NAME KEY VALUE
    Set {
        network: String,
        #[arg(required = true)]
        config: Vec<String>,
    },
    /// Unset configuration keys of a network
    Unset {
        network: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Rename a network
    #[command(alias = "mv")]
    Rename { network: String, new_name: String },
    /// Show a network's state: addresses, counters, bridge ports
    Info { network: String },
    /// List a network's leases
    ListLeases {
        network: String,
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Attach an instance to a network: NETWORK INSTANCE [DEVICE [INTERFACE]]
    Attach {
        network: String,
        instance: String,
        device: Option<String>,
        interface: Option<String>,
    },
    /// Detach an instance from a network: NETWORK INSTANCE [DEVICE]
    Detach {
        network: String,
        instance: String,
        device: Option<String>,
    },
    /// Attach a profile to a network: NETWORK PROFILE [DEVICE [INTERFACE]]
    AttachProfile {
        network: String,
        profile: String,
        device: Option<String>,
        interface: Option<String>,
    },
    /// Detach a profile from a network: NETWORK PROFILE [DEVICE]
    DetachProfile {
        network: String,
        profile: String,
        device: Option<String>,
    },
}

/// The fields a network edit changes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkPut {
    #[serde(default)]
    description: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

fn path(network: &str) -> String {
    format!("/1.0/networks/{network}")
}

/// The global addresses of a network's config key (`ipv4.address`), or empty.
fn address(n: &Network, key: &str) -> String {
    n.config
        .get(key)
        .filter(|v| *v != "none")
        .cloned()
        .unwrap_or_default()
}

/// Adds a nic on `network` to an instance or profile.
async fn attach(
    client: &Client,
    target: Target,
    name: &str,
    network: &str,
    device: Option<String>,
    interface: Option<String>,
) -> anyhow::Result<()> {
    let (v, mut devices) = load(client, target, name).await?;
    let device = device.unwrap_or_else(|| network.to_owned());
    if devices.contains_key(&device) {
        anyhow::bail!("Device {device:?} already exists on {name:?}");
    }
    let mut nic = BTreeMap::from([
        ("type".to_owned(), "nic".to_owned()),
        ("network".to_owned(), network.to_owned()),
    ]);
    if let Some(i) = interface {
        nic.insert("name".to_owned(), i);
    }
    devices.insert(device, nic);
    store(client, target, name, v, &devices).await
}

/// Removes the nic on `network` (named `device`, or the only one) from an instance or
/// profile.
async fn detach(
    client: &Client,
    target: Target,
    name: &str,
    network: &str,
    device: Option<String>,
) -> anyhow::Result<()> {
    let (v, mut devices) = load(client, target, name).await?;
    let on_network: Vec<String> = devices
        .iter()
        .filter(|(_, d)| {
            d.get("type").map(String::as_str) == Some("nic")
                && (d.get("network").map(String::as_str) == Some(network)
                    || d.get("parent").map(String::as_str) == Some(network))
        })
        .map(|(n, _)| n.clone())
        .collect();
    let device = match (device, on_network.as_slice()) {
        (Some(d), _) if on_network.contains(&d) => d,
        (Some(d), _) => anyhow::bail!("Device {d:?} of {name:?} is not on network {network:?}"),
        (None, [only]) => only.clone(),
        (None, []) => anyhow::bail!("{name:?} has no device on network {network:?}"),
        (None, _) => anyhow::bail!("{name:?} has several devices on {network:?}: name one"),
    };
    devices.remove(&device);
    store(client, target, name, v, &devices).await
}

pub async fn run(client: &Client, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::List { format } => {
            let all: Vec<Network> = client.get("/1.0/networks?recursion=1").await?;
            let mut t = Table::new(&[
                "NAME",
                "TYPE",
                "MANAGED",
                "IPV4",
                "IPV6",
                "DESCRIPTION",
                "USED BY",
                "STATE",
            ]);
            for n in &all {
                t.row(vec![
                    n.name.clone(),
                    n.kind.clone(),
                    if n.managed { "YES" } else { "NO" }.to_owned(),
                    address(n, "ipv4.address"),
                    address(n, "ipv6.address"),
                    n.description.clone(),
                    n.used_by.len().to_string(),
                    n.status.to_uppercase(),
                ]);
            }
            print!("{}", t.render(format, &all)?);
        }
        Command::Show { network } => {
            let n: Network = client.get(&path(&network)).await?;
            print!("{}", crate::yaml::to_string(&n)?);
        }
        Command::Create {
            network,
            config,
            kind,
            description,
        } => {
            let body = serde_json::json!({
                "name": network, "type": kind, "description": description,
                "config": object::pairs(&config)?,
            });
            object::create(client, "/1.0/networks", "Network", &network, &body).await?;
        }
        Command::Delete { networks } => {
            object::delete_each(client, "/1.0/networks", "Network", &networks).await?;
        }
        Command::Edit { network } => {
            let n: Network = client.get(&path(&network)).await?;
            let current = NetworkPut {
                description: n.description,
                config: n.config,
            };
            crate::editor::edit_yaml(&current, |put: NetworkPut| {
                let p = path(&network);
                async move {
                    let body = serde_json::to_value(&put)?;
                    client.query(Method::PUT, &p, Some(&body)).await?;
                    Ok(())
                }
            })
            .await?;
        }
        Command::Get { network, key } => object::print_key(client, &path(&network), &key).await?,
        Command::Set { network, config } => {
            object::patch_config(client, &path(&network), object::pairs(&config)?).await?;
        }
        Command::Unset { network, keys } => {
            let what = format!("network {network:?}");
            object::unset_keys(client, &path(&network), keys, &what).await?;
        }
        Command::Rename { network, new_name } => {
            let body = serde_json::json!({ "name": new_name });
            client
                .query(Method::POST, &path(&network), Some(&body))
                .await?;
            println!("Network {network} renamed to {new_name}");
        }
        Command::Info { network } => {
            let s: NetworkState = client.get(&format!("{}/state", path(&network))).await?;
            println!("Name: {network}");
            println!("MAC address: {}", s.hwaddr);
            println!("MTU: {}", s.mtu);
            println!("State: {}", s.state);
            println!("Type: {}", s.kind);
            println!("\nIP addresses:");
            for a in &s.addresses {
                println!("  {}\t{}/{} ({})", a.family, a.address, a.netmask, a.scope);
            }
            println!("\nNetwork usage:");
            println!("  Bytes received: {}", s.counters.bytes_received);
            println!("  Bytes sent: {}", s.counters.bytes_sent);
            println!("  Packets received: {}", s.counters.packets_received);
            println!("  Packets sent: {}", s.counters.packets_sent);
            if let Some(b) = &s.bridge {
                println!("\nBridge:");
                println!("  Upper devices: {}", b.upper_devices.join(", "));
            }
        }
        Command::ListLeases { network, format } => {
            let leases: Vec<NetworkLease> =
                client.get(&format!("{}/leases", path(&network))).await?;
            let mut t = Table::new(&["HOSTNAME", "MAC ADDRESS", "IP ADDRESS", "TYPE"]);
            for l in &leases {
                t.row(vec![
                    l.hostname.clone(),
                    l.hwaddr.clone(),
                    l.address.clone(),
                    l.kind.to_uppercase(),
                ]);
            }
            print!("{}", t.render(format, &leases)?);
        }
        Command::Attach {
            network,
            instance,
            device,
            interface,
        } => {
            attach(
                client,
                Target::Instance,
                &instance,
                &network,
                device,
                interface,
            )
            .await?;
        }
        Command::Detach {
            network,
            instance,
            device,
        } => detach(client, Target::Instance, &instance, &network, device).await?,
        Command::AttachProfile {
            network,
            profile,
            device,
            interface,
        } => {
            attach(
                client,
                Target::Profile,
                &profile,
                &network,
                device,
                interface,
            )
            .await?;
        }
        Command::DetachProfile {
            network,
            profile,
            device,
        } => detach(client, Target::Profile, &profile, &network, device).await?,
    }
    Ok(())
}
