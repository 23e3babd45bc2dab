//! `berth delete [-f] NAME...`: several at once (see [`crate::instance::for_each`]).

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
    let named = args.names.len() > 1;
    crate::instance::for_each(&args.names, |name| async move {
        delete(client, name, args.force).await.map_err(|e| {
            if named {
                anyhow::anyhow!("{name}: {e}")
            } else {
                e
            }
        })
    })
    .await
}

async fn delete(client: &Client, name: &str, force: bool) -> anyhow::Result<()> {
    let (client, name) = crate::remote::target(client, name)?;
    let (client, name) = (&client, name.as_str());
    if force {
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
    Ok(())
}
