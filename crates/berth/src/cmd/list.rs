//! `berth list`: instances, with LXD's default columns.

use berth_client::Client;

use crate::format::{Format, Table};

/// Arguments of `berth list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let instances: Vec<serde_json::Value> = client.get("/1.0/instances?recursion=2").await?;
    let mut t = Table::new(&["NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"]);
    let s = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    for i in &instances {
        let kind = if i
            .get("ephemeral")
            .and_then(|e| e.as_bool())
            .unwrap_or(false)
        {
            "CONTAINER (EPHEMERAL)".to_owned()
        } else {
            s(i, "type").to_uppercase()
        };
        let snapshots = i
            .get("snapshots")
            .and_then(|x| x.as_array())
            .map(|a| a.len())
            .unwrap_or(0);
        t.row(vec![
            s(i, "name"),
            s(i, "status").to_uppercase(),
            String::new(),
            String::new(),
            kind,
            snapshots.to_string(),
        ]);
    }
    print!("{}", t.render(args.format, &instances)?);
    Ok(())
}
