//! `berth start|stop|restart|pause|resume NAME...`: change instance state.

use berth_client::{Client, Method};

/// Arguments of the state-changing verbs.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(required = true)]
    names: Vec<String>,
    /// Kill instead of a clean shutdown (stop, restart)
    #[arg(short = 'f', long)]
    force: bool,
    /// Seconds to wait for a clean shutdown (-1: forever)
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    timeout: i64,
}

pub async fn run(client: &Client, args: Args, action: &str) -> anyhow::Result<()> {
    for name in &args.names {
        change_state(client, name, action, args.force, args.timeout)
            .await
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    }
    Ok(())
}

/// Asks for a state change of one instance and waits for it.
pub async fn change_state(
    client: &Client,
    name: &str,
    action: &str,
    force: bool,
    timeout: i64,
) -> anyhow::Result<()> {
    let body = serde_json::json!({"action": action, "timeout": timeout, "force": force});
    let r = client
        .query(
            Method::PUT,
            &format!("/1.0/instances/{name}/state"),
            Some(&body),
        )
        .await?;
    if let Some(id) = r.body.operation_id() {
        client.wait_success(id).await?;
    }
    Ok(())
}
