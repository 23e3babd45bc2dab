//! `berth publish [REMOTE:]NAME[/SNAPSHOT]`: an instance (stopped) or a snapshot made an
//! image on its own server, as `lxc publish` does.

use berth_client::{Client, Method};

/// Arguments of `berth publish`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instance, or INSTANCE/SNAPSHOT
    source: String,
    /// Alias to give the image (repeatable)
    #[arg(long)]
    alias: Vec<String>,
    /// Make the image public
    #[arg(long)]
    public: bool,
    /// Stop a running instance first (it stays stopped)
    #[arg(short, long)]
    force: bool,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let (target, source) = crate::remote::target(client, &args.source)?;
    let client = &target;
    if args.force && !source.contains('/') {
        let state: berth_api::instance::InstanceState = client
            .get(&format!("/1.0/instances/{source}/state"))
            .await?;
        if state.status_code != 102 {
            crate::instance::change_state(client, &source, "stop", true, -1).await?;
        }
    }
    let kind = if source.contains('/') {
        "snapshot"
    } else {
        "instance"
    };
    let body = serde_json::json!({
        "source": {"type": kind, "name": source},
        "public": args.public,
        "aliases": args.alias.iter().map(|a| serde_json::json!({"name": a})).collect::<Vec<_>>(),
    });
    let r = client
        .query(Method::POST, "/1.0/images", Some(&body))
        .await?;
    let Some(id) = r.body.operation_id().map(str::to_owned) else {
        return Ok(());
    };
    let op = client.wait_success(&id).await?;
    let fp = op
        .metadata
        .as_ref()
        .and_then(|m| m.get("fingerprint"))
        .and_then(|f| f.as_str())
        .unwrap_or_default();
    println!("Instance published with fingerprint: {fp}");
    Ok(())
}
