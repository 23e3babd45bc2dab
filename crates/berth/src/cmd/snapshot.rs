//! `berth snapshot …`: an instance's snapshots, and restoring one.

use berth_client::{Client, Method};
use serde_json::Value;

use crate::format::{Format, Table};
use crate::object::run_op;

/// `berth snapshot …`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Snapshot an instance (named snapN when no name is given)
    Create {
        instance: String,
        name: Option<String>,
        /// When the snapshot expires (RFC 3339)
        #[arg(long)]
        expires_at: Option<String>,
        /// Keep the running processes too (CRIU; needs migration.stateful=true)
        #[arg(long)]
        stateful: bool,
    },
    /// List an instance's snapshots
    #[command(alias = "ls")]
    List {
        instance: String,
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a snapshot as YAML
    Show { instance: String, name: String },
    /// Rename a snapshot
    #[command(alias = "mv")]
    Rename {
        instance: String,
        name: String,
        new_name: String,
    },
    /// Delete snapshots
    #[command(alias = "rm")]
    Delete {
        instance: String,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Restore an instance to a snapshot (a running instance is restarted)
    Restore {
        instance: String,
        name: String,
        /// Bring back the snapshot's running processes too (a stateful snapshot)
        #[arg(long)]
        stateful: bool,
    },
}

pub async fn run(client: &Client, mut cmd: Command) -> anyhow::Result<()> {
    let target = match &mut cmd {
        Command::Create { instance, .. }
        | Command::List { instance, .. }
        | Command::Show { instance, .. }
        | Command::Rename { instance, .. }
        | Command::Delete { instance, .. }
        | Command::Restore { instance, .. } => {
            let (c, rest) = crate::remote::target(client, instance)?;
            *instance = rest;
            c
        }
    };
    let client = &target;
    match cmd {
        Command::Create {
            instance,
            name,
            expires_at,
            stateful,
        } => {
            let mut body =
                serde_json::json!({ "name": name.unwrap_or_default(), "stateful": stateful });
            if let Some(e) = expires_at {
                body["expires_at"] = e.into();
            }
            run_op(
                client,
                Method::POST,
                &format!("/1.0/instances/{instance}/snapshots"),
                Some(&body),
            )
            .await?;
        }
        Command::List { instance, format } => {
            let snaps: Vec<Value> = client
                .get(&format!("/1.0/instances/{instance}/snapshots?recursion=1"))
                .await?;
            let mut t = Table::new(&["NAME", "TAKEN AT", "EXPIRES AT", "STATEFUL"]);
            for s in &snaps {
                let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                let expires = text("expires_at");
                t.row(vec![
                    text("name"),
                    text("created_at"),
                    if expires.starts_with("0001-") {
                        String::new()
                    } else {
                        expires
                    },
                    if s["stateful"].as_bool() == Some(true) {
                        "YES"
                    } else {
                        "NO"
                    }
                    .to_owned(),
                ]);
            }
            print!("{}", t.render(format, &snaps)?);
        }
        Command::Show { instance, name } => {
            let s: Value = client
                .get(&format!("/1.0/instances/{instance}/snapshots/{name}"))
                .await?;
            print!("{}", crate::yaml::to_string(&s)?);
        }
        Command::Rename {
            instance,
            name,
            new_name,
        } => {
            let body = serde_json::json!({ "name": new_name });
            run_op(
                client,
                Method::POST,
                &format!("/1.0/instances/{instance}/snapshots/{name}"),
                Some(&body),
            )
            .await?;
        }
        Command::Delete { instance, names } => {
            for name in names {
                run_op(
                    client,
                    Method::DELETE,
                    &format!("/1.0/instances/{instance}/snapshots/{name}"),
                    None,
                )
                .await?;
            }
        }
        Command::Restore {
            instance,
            name,
            stateful,
        } => {
            let body = serde_json::json!({ "restore": name, "stateful": stateful });
            run_op(
                client,
                Method::PUT,
                &format!("/1.0/instances/{instance}"),
                Some(&body),
            )
            .await?;
        }
    }
    Ok(())
}
