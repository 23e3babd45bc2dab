//! `berth rename OLD NEW`: renames a stopped instance.

use berth_client::{Client, Method};

/// Arguments of `berth rename`.
#[derive(Debug, clap::Args)]
pub struct Args {
    name: String,
    new_name: String,
}

pub async fn run(client: &Client, mut args: Args) -> anyhow::Result<()> {
    let (target, name) = crate::remote::target(client, &args.name)?;
    let client = &target;
    args.name = name;
    if let (Some(_), rest) = crate::remote::split(&args.new_name)? {
        args.new_name = rest;
    }
    let body = serde_json::json!({"name": args.new_name, "migration": false});
    let r = client
        .query(
            Method::POST,
            &format!("/1.0/instances/{}", args.name),
            Some(&body),
        )
        .await?;
    if let Some(id) = r.body.operation_id() {
        client.wait_success(id).await?;
    }
    Ok(())
}
