//! `berth delete [-f] NAME...`.

use berth_client::{Client, Method};

/// Arguments of `berth delete`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(required = true)]
    names: Vec<String>,
    /// Stop running instances first (killing them)
    #[arg(short = 'f', long)]
    force: bool,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    for name in &args.names {
        if args.force {
            let state: berth_api::instance::InstanceState =
                client.get(&format!("/1.0/instances/{name}/state")).await?;
            if state.status_code != 102 {
                crate::instance::change_state(client, name, "stop", true, -1).await?;
            }
        }
        let r = client
            .query(Method::DELETE, &format!("/1.0/instances/{name}"), None)
            .await?;
        if let Some(id) = r.body.operation_id() {
            client.wait_success(id).await?;
        }
    }
    Ok(())
}
