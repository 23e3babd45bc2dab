//! `berth version`.

use berth_client::Client;

/// Arguments of `berth version`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(client: &Client, _args: Args) -> anyhow::Result<()> {
    println!("Client version: {}", env!("CARGO_PKG_VERSION"));
    let server = match client.server().await {
        Ok(s) => s.environment.map(|e| e.server_version).unwrap_or_default(),
        Err(_) => "unreachable".to_owned(),
    };
    println!("Server version: {server}");
    Ok(())
}
