//! `berth launch|init IMAGE [NAME]`: create an instance from a local image (and start it).

use std::collections::BTreeMap;

use berth_client::{Client, Method};

/// Arguments of `berth launch` and `berth init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Image alias or fingerprint
    image: String,
    /// Instance name (generated when omitted)
    name: Option<String>,
    /// Configuration key=value (repeatable)
    #[arg(short = 'c', long = "config")]
    config: Vec<String>,
    /// Profile to apply (repeatable; default: default)
    #[arg(short = 'p', long = "profile")]
    profiles: Vec<String>,
    /// Delete the instance when it stops
    #[arg(short = 'e', long)]
    ephemeral: bool,
    /// Storage pool for the root disk
    #[arg(short = 's', long)]
    storage: Option<String>,
}

fn generated_name() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("berth-{:06x}", n & 0xff_ffff)
}

pub async fn run(client: &Client, args: Args, start: bool) -> anyhow::Result<()> {
    // `[REMOTE:]IMAGE [REMOTE:]NAME`: an image named without a remote is looked up where
    // the instance is made.
    let (target, name) = match &args.name {
        Some(n) => crate::remote::target(client, n)?,
        None => (client.clone(), String::new()),
    };
    let (image_remote, image_ref) = crate::remote::split(&args.image)?;
    // An image server (simplestreams) holds no instances: the instance's server fetches
    // the image from it.
    let tree = match &image_remote {
        Some(r) => crate::remote::streams(r)?,
        None => None,
    };
    let target = match (&args.name, image_remote) {
        (None, Some(r)) if tree.is_none() => crate::remote::target(client, &format!("{r}:"))?.0,
        _ => target,
    };
    // An image on another server than the instance's: the instance's server fetches it
    // (and keeps it).
    let elsewhere = match (crate::remote::split(&args.image)?.0, &args.name) {
        _ if tree.is_some() => None,
        (Some(r), Some(n)) if crate::remote::split(n)?.0.as_deref() != Some(r.as_str()) => {
            Some(crate::remote::target(client, &format!("{r}:"))?.0)
        }
        _ => None,
    };
    let client = &target;
    let name = if name.is_empty() {
        generated_name()
    } else {
        name
    };
    let mut config = BTreeMap::new();
    for kv in &args.config {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("Invalid config {kv:?}: expected KEY=VALUE"))?;
        config.insert(k.to_owned(), v.to_owned());
    }
    let source = match (&tree, &elsewhere) {
        (Some(tree), _) => crate::image::streams_source(tree, &image_ref).await?.0,
        (None, Some(from)) => {
            let image = crate::image::resolve(from, &image_ref).await?;
            crate::image::remote_source(from, &image).await?
        }
        (None, None) => {
            let image = crate::image::resolve(client, &image_ref).await?;
            serde_json::json!({"type": "image", "fingerprint": image.fingerprint})
        }
    };
    let mut body = serde_json::json!({
        "name": name,
        "source": source,
        "config": config,
        "ephemeral": args.ephemeral,
        "start": start,
        "type": "container",
    });
    if !args.profiles.is_empty() {
        body["profiles"] = serde_json::json!(args.profiles);
    }
    if let Some(pool) = &args.storage {
        body["devices"] = serde_json::json!({"root": {"type": "disk", "path": "/", "pool": pool}});
    }
    println!("{} {name}", if start { "Launching" } else { "Creating" });
    // Follow the operation's unpack progress while it runs.
    let mut events = client.events(&[berth_api::EventType::Operation]).await.ok();
    let r = client
        .query(Method::POST, "/1.0/instances", Some(&body))
        .await?;
    let Some(id) = r.body.operation_id().map(str::to_owned) else {
        return Ok(());
    };
    let bar = crate::progress::percent("Unpacking image");
    let b = bar.clone();
    let op_id = id.clone();
    let follow = tokio::spawn(async move {
        let Some(events) = events.as_mut() else {
            return;
        };
        while let Some(Ok(ev)) = events.next().await {
            if ev.metadata["id"].as_str() != Some(op_id.as_str()) {
                continue;
            }
            let percent = ev.metadata["metadata"]["progress"]["percent"].as_str();
            if let Some(p) = percent.and_then(|p| p.parse().ok()) {
                b.set_position(p);
            }
        }
    });
    let result = client.wait_success(&id).await;
    follow.abort();
    bar.finish_and_clear();
    result?;
    Ok(())
}
