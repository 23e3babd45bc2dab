//! `berth monitor`: print events as they come.

use berth_api::{Event, EventType};
use berth_client::Client;

/// Arguments of `berth monitor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Event types to show (logging, operation, lifecycle); repeat or comma-separate
    #[arg(long = "type", short = 't', value_delimiter = ',')]
    types: Vec<String>,
    /// One readable line per event instead of YAML
    #[arg(long)]
    pretty: bool,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let types = args
        .types
        .iter()
        .map(|t| EventType::parse(t).ok_or_else(|| anyhow::anyhow!("Invalid event type \"{t}\"")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut events = client.events(&types).await?;
    while let Some(ev) = events.next().await {
        let ev = ev?;
        if args.pretty {
            println!("{}", pretty(&ev));
        } else {
            println!("{}", crate::yaml::to_string(&ev)?);
        }
    }
    Ok(())
}

fn pretty(ev: &Event) -> String {
    let m = &ev.metadata;
    let s = |k: &str| {
        m.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let time = ev
        .timestamp
        .get(..19)
        .unwrap_or(&ev.timestamp)
        .replace('T', " ");
    match ev.kind {
        EventType::Lifecycle => format!("{time} lifecycle {} {}", s("action"), s("source")),
        EventType::Operation => {
            let err = s("err");
            let tail = if err.is_empty() {
                String::new()
            } else {
                format!(" ({err})")
            };
            format!(
                "{time} operation {} {} {}{tail}",
                s("id"),
                s("description"),
                s("status")
            )
        }
        EventType::Logging => {
            let ctx = m
                .get("context")
                .and_then(|c| c.as_object())
                .map(|c| {
                    c.iter()
                        .map(|(k, v)| format!(" {k}={}", v.as_str().unwrap_or_default()))
                        .collect::<String>()
                })
                .unwrap_or_default();
            format!("{time} {} {}{ctx}", s("level").to_uppercase(), s("message"))
        }
    }
}
