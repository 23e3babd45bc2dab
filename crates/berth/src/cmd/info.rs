//! `berth info`: the server as YAML, as `lxc info` prints it.

use berth_client::Client;

/// Arguments of `berth info`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show the host's hardware instead
    #[arg(long)]
    resources: bool,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    if args.resources {
        let res: berth_api::resources::Resources = client.get("/1.0/resources").await?;
        print!("{}", crate::yaml::to_string(&res)?);
    } else {
        let server = client.server().await?;
        print!("{}", crate::yaml::to_string(&server)?);
    }
    Ok(())
}
