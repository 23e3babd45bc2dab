//! `berth storage …`: storage pools (their volumes: [`super::volume`]).

use berth_api::storage::{StoragePool, StoragePoolResources};
use berth_client::{Client, Method};

use crate::format::{Format, Table};
use crate::object;

/// `berth storage …`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List storage pools
    #[command(alias = "ls")]
    List {
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a pool as YAML
    Show { pool: String },
    /// Create a pool: berth storage create NAME DRIVER [KEY=VALUE...]
    Create {
        pool: String,
        driver: String,
        config: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a pool
    #[command(alias = "rm")]
    Delete { pool: String },
    /// Show a pool's usage
    Info { pool: String },
    /// Get a configuration key of a pool
    Get { pool: String, key: String },
    /// Set configuration keys of a pool: KEY=VALUE...
    Set {
        pool: String,
        #[arg(required = true)]
        config: Vec<String>,
    },
    /// Unset a configuration key of a pool
    Unset { pool: String, key: String },
    /// Manage a pool's custom volumes
    #[command(subcommand)]
    Volume(super::volume::Command),
}

fn size(bytes: u64) -> String {
    format!("{:.2}GiB", bytes as f64 / (1u64 << 30) as f64)
}

pub async fn run(client: &Client, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Volume(cmd) => super::volume::run(client, cmd).await?,
        Command::List { format } => {
            let pools: Vec<StoragePool> = client.get("/1.0/storage-pools?recursion=1").await?;
            let mut t = Table::new(&[
                "NAME",
                "DRIVER",
                "SOURCE",
                "DESCRIPTION",
                "USED BY",
                "STATE",
            ]);
            for p in &pools {
                t.row(vec![
                    p.name.clone(),
                    p.driver.clone(),
                    p.config.get("source").cloned().unwrap_or_default(),
                    p.description.clone(),
                    p.used_by.len().to_string(),
                    p.status.to_uppercase(),
                ]);
            }
            print!("{}", t.render(format, &pools)?);
        }
        Command::Show { pool } => {
            let p: StoragePool = client.get(&format!("/1.0/storage-pools/{pool}")).await?;
            print!("{}", crate::yaml::to_string(&p)?);
        }
        Command::Create {
            pool,
            driver,
            config,
            description,
        } => {
            let body = serde_json::json!({
                "name": pool, "driver": driver, "description": description, "config": object::pairs(&config)?,
            });
            object::create(client, "/1.0/storage-pools", "Storage pool", &pool, &body).await?;
        }
        Command::Delete { pool } => {
            object::delete_each(client, "/1.0/storage-pools", "Storage pool", &[pool]).await?;
        }
        Command::Info { pool } => {
            let p: StoragePool = client.get(&format!("/1.0/storage-pools/{pool}")).await?;
            let r: StoragePoolResources = client
                .get(&format!("/1.0/storage-pools/{pool}/resources"))
                .await?;
            println!("info:");
            println!("  name: {}", p.name);
            println!("  driver: {}", p.driver);
            println!("  description: {}", p.description);
            println!("  total space: {}", size(r.space.total));
            println!("  space used: {}", size(r.space.used));
            println!("  inodes used: {}/{}", r.inodes.used, r.inodes.total);
        }
        Command::Get { pool, key } => {
            let p: StoragePool = client.get(&format!("/1.0/storage-pools/{pool}")).await?;
            println!("{}", p.config.get(&key).cloned().unwrap_or_default());
        }
        Command::Set { pool, config } => {
            let body = serde_json::json!({ "config": object::pairs(&config)? });
            client
                .query(
                    Method::PATCH,
                    &format!("/1.0/storage-pools/{pool}"),
                    Some(&body),
                )
                .await?;
        }
        Command::Unset { pool, key } => {
            let body = serde_json::json!({ "config": { key: "" } });
            client
                .query(
                    Method::PATCH,
                    &format!("/1.0/storage-pools/{pool}"),
                    Some(&body),
                )
                .await?;
        }
    }
    Ok(())
}
