//! `berth query`: a raw API request, for scripts and debugging.

use berth_client::{Client, Method};

/// Arguments of `berth query`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// HTTP method
    #[arg(short = 'X', long = "request", default_value = "GET")]
    method: String,
    /// JSON body to send
    #[arg(short = 'd', long)]
    data: Option<String>,
    /// Wait for an async operation to finish and print it
    #[arg(long)]
    wait: bool,
    /// Print the whole response envelope, not just its metadata
    #[arg(long)]
    raw: bool,
    /// API path, such as /1.0/operations
    path: String,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let method = Method::from_bytes(args.method.to_uppercase().as_bytes())
        .map_err(|_| anyhow::anyhow!("Invalid method \"{}\"", args.method))?;
    let body = match &args.data {
        Some(d) => Some(
            serde_json::from_str::<serde_json::Value>(d)
                .map_err(|e| anyhow::anyhow!("Invalid JSON in --data: {e}"))?,
        ),
        None => None,
    };
    let path = if args.path.starts_with('/') {
        args.path.clone()
    } else {
        format!("/{}", args.path)
    };
    let resp = client.query(method, &path, body.as_ref()).await?;
    if args.raw {
        println!("{}", serde_json::to_string_pretty(&resp.body)?);
        return Ok(());
    }
    if args.wait && resp.body.kind == berth_api::ResponseType::Async {
        let id = resp.body.operation_id().unwrap_or_default();
        let op = client.wait_success(id).await?;
        println!("{}", serde_json::to_string_pretty(&op.metadata)?);
        return Ok(());
    }
    println!("{}", serde_json::to_string_pretty(&resp.body.metadata)?);
    Ok(())
}
