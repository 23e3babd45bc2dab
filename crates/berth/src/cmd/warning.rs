//! `berth warning …`: what the server warns about (a network that cannot start, a host
//! firewall that drops its traffic), acknowledged or deleted once handled.

use berth_api::warning::Warning;
use berth_client::{Client, Method};

use crate::format::{Format, Table};

/// `berth warning …`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List warnings
    #[command(alias = "ls")]
    List {
        /// Also list acknowledged and resolved ones
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a warning as YAML
    Show { uuid: String },
    /// Acknowledge a warning (it stays, marked as seen)
    Ack { uuid: String },
    /// Delete warnings
    #[command(alias = "rm")]
    Delete {
        #[arg(required = true)]
        uuids: Vec<String>,
    },
}

pub async fn run(client: &Client, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::List { all, format } => {
            let mut warnings: Vec<Warning> = client.get("/1.0/warnings?recursion=1").await?;
            if !all {
                warnings.retain(|w| w.status == "new");
            }
            let mut t = Table::new(&[
                "UUID",
                "TYPE",
                "STATUS",
                "SEVERITY",
                "COUNT",
                "ENTITY",
                "LAST SEEN",
            ]);
            for w in &warnings {
                t.row(vec![
                    w.uuid.clone(),
                    w.kind.clone(),
                    w.status.to_uppercase(),
                    w.severity.to_uppercase(),
                    w.count.to_string(),
                    w.entity_url.clone(),
                    w.last_seen_at.clone(),
                ]);
            }
            print!("{}", t.render(format, &warnings)?);
        }
        Command::Show { uuid } => {
            let w: Warning = client.get(&format!("/1.0/warnings/{uuid}")).await?;
            print!("{}", crate::yaml::to_string(&w)?);
        }
        Command::Ack { uuid } => {
            let body = serde_json::json!({ "status": "acknowledged" });
            client
                .query(Method::PUT, &format!("/1.0/warnings/{uuid}"), Some(&body))
                .await?;
        }
        Command::Delete { uuids } => {
            for u in uuids {
                client
                    .query(Method::DELETE, &format!("/1.0/warnings/{u}"), None)
                    .await?;
            }
        }
    }
    Ok(())
}
