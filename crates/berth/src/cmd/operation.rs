//! `berth operation list|show|delete`.

use berth_client::Client;

use crate::format::{Format, Table};

/// `berth operation …`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List operations
    #[command(alias = "ls")]
    List {
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show one operation
    Show { id: String },
    /// Cancel an operation
    #[command(alias = "rm")]
    Delete { id: String },
}

pub async fn run(client: &Client, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::List { format } => {
            let mut ops: Vec<_> = client.operations().await?.into_values().flatten().collect();
            ops.sort_by(|a, b| a.created_at.cmp(&b.created_at));
            let mut table = Table::new(&[
                "ID",
                "TYPE",
                "DESCRIPTION",
                "STATUS",
                "CANCELABLE",
                "CREATED",
            ]);
            for op in &ops {
                table.row(vec![
                    op.id.clone(),
                    serde_json::to_value(op.class)?
                        .as_str()
                        .unwrap_or_default()
                        .to_uppercase(),
                    op.description.clone(),
                    op.status.to_uppercase(),
                    if op.may_cancel { "YES" } else { "NO" }.to_owned(),
                    crate::format::date(&op.created_at),
                ]);
            }
            print!("{}", table.render(format, &ops)?);
        }
        Command::Show { id } => {
            let op = client.operation(&id).await?;
            print!("{}", crate::yaml::to_string(&op)?);
        }
        Command::Delete { id } => {
            client.cancel_operation(&id).await?;
        }
    }
    Ok(())
}
