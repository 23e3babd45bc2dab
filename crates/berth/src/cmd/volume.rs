//! `berth storage volume …`: custom volumes of a pool, their snapshots, and attaching
//! them to instances, as `lxc storage volume` manages them. A volume may be written
//! `custom/NAME`, as LXD's client takes it.

use std::collections::BTreeMap;

use berth_api::storage::{StorageVolume, StorageVolumeSnapshot, StorageVolumeState};
use berth_client::{Client, Method};
use serde_json::json;

use crate::devices::{Target, load, store};
use crate::format::{Format, Table};
use crate::object::{self, run_op};

/// `berth storage volume …`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a custom volume: POOL VOLUME [KEY=VALUE...]
    Create {
        pool: String,
        volume: String,
        config: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the volumes of a pool
    #[command(alias = "ls")]
    List {
        pool: String,
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a volume as YAML
    Show { pool: String, volume: String },
    /// Show a volume's usage and snapshots
    Info { pool: String, volume: String },
    /// Edit a volume as YAML in $EDITOR (or from standard input)
    Edit { pool: String, volume: String },
    /// Get a configuration key of a volume
    Get {
        pool: String,
        volume: String,
        key: String,
    },
    /// Set configuration keys of a volume: KEY=VALUE...
    Set {
        pool: String,
        volume: String,
        #[arg(required = true)]
        config: Vec<String>,
    },
    /// Unset a configuration key of a volume
    Unset {
        pool: String,
        volume: String,
        key: String,
    },
    /// Rename a volume: POOL OLD NEW
    Rename {
        pool: String,
        volume: String,
        new_name: String,
    },
    /// Copy a volume (or a snapshot): POOL/VOLUME[/SNAPSHOT] POOL/VOLUME
    Copy {
        source: String,
        target: String,
        /// Leave the snapshots behind
        #[arg(long)]
        volume_only: bool,
    },
    /// Move or rename a volume: POOL/VOLUME POOL/VOLUME
    Move {
        source: String,
        target: String,
        /// Leave the snapshots behind
        #[arg(long)]
        volume_only: bool,
        /// The project to move it to
        #[arg(long = "target-project")]
        target_project: Option<String>,
    },
    /// Delete volumes
    #[command(alias = "rm")]
    Delete {
        pool: String,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Attach a volume to an instance: POOL VOLUME INSTANCE [DEVICE] PATH
    Attach {
        pool: String,
        volume: String,
        instance: String,
        /// [DEVICE] PATH: the device name (the volume's by default) and the path inside
        #[arg(required = true, num_args = 1..=2)]
        rest: Vec<String>,
    },
    /// Detach a volume from an instance: POOL VOLUME INSTANCE [DEVICE]
    Detach {
        pool: String,
        volume: String,
        instance: String,
        device: Option<String>,
    },
    /// Manage a volume's snapshots
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

/// `berth storage volume snapshot …`
#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot: POOL VOLUME [SNAPSHOT]
    Create {
        pool: String,
        volume: String,
        snapshot: Option<String>,
        /// When it expires (RFC 3339)
        #[arg(long)]
        expiry: Option<String>,
    },
    /// List a volume's snapshots
    #[command(alias = "ls")]
    List {
        pool: String,
        volume: String,
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a snapshot as YAML
    Show {
        pool: String,
        volume: String,
        snapshot: String,
    },
    /// Rename a snapshot
    Rename {
        pool: String,
        volume: String,
        snapshot: String,
        new_name: String,
    },
    /// Delete snapshots
    #[command(alias = "rm")]
    Delete {
        pool: String,
        volume: String,
        #[arg(required = true)]
        snapshots: Vec<String>,
    },
    /// Roll a volume back to a snapshot
    Restore {
        pool: String,
        volume: String,
        snapshot: String,
    },
}

/// A volume argument without its optional `custom/` type.
fn bare(volume: &str) -> anyhow::Result<&str> {
    match volume.split_once('/') {
        None => Ok(volume),
        Some(("custom", name)) => Ok(name),
        Some((kind, _)) => anyhow::bail!(
            "Only custom volumes are managed here, not {kind:?} volumes (use the instance)"
        ),
    }
}

fn path(pool: &str, volume: &str) -> anyhow::Result<String> {
    Ok(format!(
        "/1.0/storage-pools/{pool}/volumes/custom/{}",
        bare(volume)?
    ))
}

/// `POOL/[custom/]VOLUME[/SNAPSHOT]`.
fn split(arg: &str) -> anyhow::Result<(&str, &str, Option<&str>)> {
    let bad = || anyhow::anyhow!("Invalid volume {arg:?}: expected POOL/VOLUME[/SNAPSHOT]");
    let (pool, rest) = arg.split_once('/').ok_or_else(bad)?;
    let rest = rest.strip_prefix("custom/").unwrap_or(rest);
    let (vol, snap) = match rest.split_once('/') {
        Some((vol, snap)) => (vol, Some(snap)),
        None => (rest, None),
    };
    if pool.is_empty() || vol.is_empty() || snap.is_some_and(|s| s.is_empty() || s.contains('/')) {
        return Err(bad());
    }
    Ok((pool, vol, snap))
}

/// `POOL/[custom/]VOLUME`: where a volume goes, or one moved whole.
fn split_volume(arg: &str) -> anyhow::Result<(&str, &str)> {
    match split(arg)? {
        (pool, vol, None) => Ok((pool, vol)),
        _ => anyhow::bail!("Invalid volume {arg:?}: expected POOL/VOLUME (no snapshot here)"),
    }
}

/// The fields a volume edit changes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct VolumePut {
    #[serde(default)]
    description: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

pub async fn run(client: &Client, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Create {
            pool,
            volume,
            config,
            description,
        } => {
            let body = json!({
                "name": bare(&volume)?, "type": "custom", "description": description,
                "config": object::pairs(&config)?,
            });
            client
                .query(
                    Method::POST,
                    &format!("/1.0/storage-pools/{pool}/volumes/custom"),
                    Some(&body),
                )
                .await?;
            println!("Storage volume {volume} created");
        }
        Command::List { pool, format } => {
            let vols: Vec<StorageVolume> = client
                .get(&format!("/1.0/storage-pools/{pool}/volumes?recursion=1"))
                .await?;
            let mut t = Table::new(&["TYPE", "NAME", "DESCRIPTION", "CONTENT-TYPE", "USED BY"]);
            for v in &vols {
                t.row(vec![
                    v.kind.clone(),
                    v.name.clone(),
                    v.description.clone(),
                    v.content_type.clone(),
                    v.used_by.len().to_string(),
                ]);
            }
            print!("{}", t.render(format, &vols)?);
        }
        Command::Show { pool, volume } => {
            let v: StorageVolume = client.get(&path(&pool, &volume)?).await?;
            print!("{}", crate::yaml::to_string(&v)?);
        }
        Command::Info { pool, volume } => {
            let p = path(&pool, &volume)?;
            let v: StorageVolume = client.get(&p).await?;
            let state: StorageVolumeState = client.get(&format!("{p}/state")).await?;
            let snaps: Vec<StorageVolumeSnapshot> =
                client.get(&format!("{p}/snapshots?recursion=1")).await?;
            println!("Name: {}", v.name);
            println!("Type: {}", v.kind);
            println!("Content type: {}", v.content_type);
            if let Some(size) = v.config.get("size") {
                println!("Size: {size}");
            }
            if let Some(u) = state.usage {
                println!("Usage: {}", crate::format::bytes(u.used as i64));
            }
            if !v.used_by.is_empty() {
                println!("Used by:");
                for u in &v.used_by {
                    println!("  - {u}");
                }
            }
            if !snaps.is_empty() {
                println!("Snapshots:");
                for s in &snaps {
                    println!("  - {} ({})", s.name, s.created_at);
                }
            }
        }
        Command::Edit { pool, volume } => {
            let p = path(&pool, &volume)?;
            let v: StorageVolume = client.get(&p).await?;
            let current = VolumePut {
                description: v.description,
                config: v.config,
            };
            crate::editor::edit_yaml(&current, |put: VolumePut| {
                let p = p.clone();
                async move {
                    let body = serde_json::to_value(&put)?;
                    client.query(Method::PUT, &p, Some(&body)).await?;
                    Ok(())
                }
            })
            .await?;
        }
        Command::Get { pool, volume, key } => {
            object::print_key(client, &path(&pool, &volume)?, &key).await?;
        }
        Command::Set {
            pool,
            volume,
            config,
        } => {
            object::patch_config(client, &path(&pool, &volume)?, object::pairs(&config)?).await?;
        }
        Command::Unset { pool, volume, key } => {
            object::unset_keys(
                client,
                &path(&pool, &volume)?,
                vec![key],
                &format!("storage volume {volume:?}"),
            )
            .await?;
        }
        Command::Rename {
            pool,
            volume,
            new_name,
        } => {
            let body = json!({ "name": bare(&new_name)? });
            run_op(client, Method::POST, &path(&pool, &volume)?, Some(&body)).await?;
            println!("Renamed storage volume from \"{volume}\" to \"{new_name}\"");
        }
        Command::Copy {
            source,
            target,
            volume_only,
        } => {
            let (from_pool, from_vol, snap) = split(&source)?;
            let (to_pool, to_vol) = split_volume(&target)?;
            let name = match snap {
                Some(s) => format!("{}/{s}", bare(from_vol)?),
                None => bare(from_vol)?.to_owned(),
            };
            let body = json!({
                "name": bare(to_vol)?, "type": "custom",
                "source": { "type": "copy", "pool": from_pool, "name": name, "volume_only": volume_only },
            });
            run_op(
                client,
                Method::POST,
                &format!("/1.0/storage-pools/{to_pool}/volumes/custom"),
                Some(&body),
            )
            .await?;
            println!("Storage volume copied successfully!");
        }
        Command::Move {
            source,
            target,
            volume_only,
            target_project,
        } => {
            let (from_pool, from_vol) = split_volume(&source)?;
            let (to_pool, to_vol) = split_volume(&target)?;
            let body = json!({
                "name": bare(to_vol)?, "pool": to_pool, "volume_only": volume_only,
                "project": target_project.unwrap_or_default(),
            });
            run_op(
                client,
                Method::POST,
                &path(from_pool, from_vol)?,
                Some(&body),
            )
            .await?;
            println!("Storage volume moved successfully!");
        }
        Command::Delete { pool, volumes } => {
            for v in &volumes {
                client.query(Method::DELETE, &path(&pool, v)?, None).await?;
                println!("Storage volume {v} deleted");
            }
        }
        Command::Attach {
            pool,
            volume,
            instance,
            rest,
        } => {
            let volume = bare(&volume)?.to_owned();
            let (device, at) = match rest.as_slice() {
                [p] => (volume.clone(), p.clone()),
                [d, p] => (d.clone(), p.clone()),
                _ => anyhow::bail!("Expected [DEVICE] PATH"),
            };
            let (current, mut devices) = load(client, Target::Instance, &instance).await?;
            if devices.contains_key(&device) {
                anyhow::bail!("The device {device:?} already exists on {instance:?}");
            }
            devices.insert(
                device,
                BTreeMap::from([
                    ("type".to_owned(), "disk".to_owned()),
                    ("pool".to_owned(), pool),
                    ("source".to_owned(), volume),
                    ("path".to_owned(), at),
                ]),
            );
            store(client, Target::Instance, &instance, current, &devices).await?;
        }
        Command::Detach {
            pool,
            volume,
            instance,
            device,
        } => {
            let volume = bare(&volume)?.to_owned();
            let (current, mut devices) = load(client, Target::Instance, &instance).await?;
            let names: Vec<String> = devices
                .iter()
                .filter(|(n, d)| {
                    device.as_ref().is_none_or(|want| *n == want)
                        && d.get("type").map(String::as_str) == Some("disk")
                        && d.get("pool") == Some(&pool)
                        && d.get("source") == Some(&volume)
                })
                .map(|(n, _)| n.clone())
                .collect();
            match names.as_slice() {
                [] => anyhow::bail!("No device of {instance:?} attaches volume {volume:?}"),
                [one] => {
                    devices.remove(one);
                }
                _ => anyhow::bail!(
                    "More than one device attaches volume {volume:?}: name the device"
                ),
            }
            store(client, Target::Instance, &instance, current, &devices).await?;
        }
        Command::Snapshot(cmd) => snapshot(client, cmd).await?,
    }
    Ok(())
}

async fn snapshot(client: &Client, cmd: SnapshotCommand) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Create {
            pool,
            volume,
            snapshot,
            expiry,
        } => {
            let mut body = json!({ "name": snapshot.unwrap_or_default() });
            if let Some(e) = expiry {
                body["expires_at"] = json!(e);
            }
            let p = format!("{}/snapshots", path(&pool, &volume)?);
            run_op(client, Method::POST, &p, Some(&body)).await?;
        }
        SnapshotCommand::List {
            pool,
            volume,
            format,
        } => {
            let snaps: Vec<StorageVolumeSnapshot> = client
                .get(&format!("{}/snapshots?recursion=1", path(&pool, &volume)?))
                .await?;
            let mut t = Table::new(&["NAME", "DESCRIPTION", "TAKEN AT", "EXPIRES AT"]);
            for s in &snaps {
                t.row(vec![
                    s.name.clone(),
                    s.description.clone(),
                    s.created_at.clone(),
                    s.expires_at
                        .clone()
                        .filter(|e| !e.starts_with("0001-"))
                        .unwrap_or_default(),
                ]);
            }
            print!("{}", t.render(format, &snaps)?);
        }
        SnapshotCommand::Show {
            pool,
            volume,
            snapshot,
        } => {
            let s: StorageVolumeSnapshot = client
                .get(&format!("{}/snapshots/{snapshot}", path(&pool, &volume)?))
                .await?;
            print!("{}", crate::yaml::to_string(&s)?);
        }
        SnapshotCommand::Rename {
            pool,
            volume,
            snapshot,
            new_name,
        } => {
            let p = format!("{}/snapshots/{snapshot}", path(&pool, &volume)?);
            run_op(client, Method::POST, &p, Some(&json!({ "name": new_name }))).await?;
        }
        SnapshotCommand::Delete {
            pool,
            volume,
            snapshots,
        } => {
            for s in &snapshots {
                let p = format!("{}/snapshots/{s}", path(&pool, &volume)?);
                run_op(client, Method::DELETE, &p, None).await?;
            }
        }
        SnapshotCommand::Restore {
            pool,
            volume,
            snapshot,
        } => {
            let body = json!({ "restore": snapshot });
            client
                .query(Method::PUT, &path(&pool, &volume)?, Some(&body))
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_arguments() {
        assert_eq!(bare("custom/v").unwrap(), "v");
        assert_eq!(bare("v").unwrap(), "v");
        assert!(bare("container/c1").is_err());
        assert_eq!(split("p/v/s").unwrap(), ("p", "v", Some("s")));
        assert_eq!(split("p/v").unwrap(), ("p", "v", None));
        assert_eq!(split("p/custom/v/s").unwrap(), ("p", "v", Some("s")));
        assert!(split("v").is_err());
        for bad in ["p/v/s/t", "/v", "p/", "p/v/"] {
            assert!(split(bad).is_err(), "{bad}");
        }
        // Where a volume goes names no snapshot.
        assert_eq!(split_volume("p/custom/v").unwrap(), ("p", "v"));
        assert!(split_volume("default/x/y").is_err());
    }
}
