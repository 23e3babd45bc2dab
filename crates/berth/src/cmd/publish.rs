//! `berth publish [REMOTE:]NAME[/SNAPSHOT] [OTHER:]`: an instance (stopped) or a snapshot
//! made an image on its own server, as `lxc publish` does; with another server named, the
//! image is made where the instance is, copied there (which fetches it) and removed here.

use berth_client::{Client, Method};

/// Arguments of `berth publish`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instance, or INSTANCE/SNAPSHOT
    source: String,
    /// The server the image goes to (`REMOTE:`), when not the instance's
    target: Option<String>,
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
    let elsewhere = match args.target.as_deref() {
        Some(t) => {
            let (to, rest) = crate::remote::target(client, t)?;
            anyhow::ensure!(
                rest.is_empty(),
                "The target is a server (`REMOTE:`), not {t:?}"
            );
            let (a, b) = (
                crate::remote::split(&args.source)?.0,
                crate::remote::split(t)?.0,
            );
            (a != b).then_some(to)
        }
        None => None,
    };
    let mut body = body;
    if elsewhere.is_some() {
        // The aliases are the copy's; the image here is a step on the way.
        body["aliases"] = serde_json::json!([]);
    }
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
        .unwrap_or_default()
        .to_owned();
    if let Some(to) = elsewhere {
        let image: berth_api::image::Image = client.get(&format!("/1.0/images/{fp}")).await?;
        let copied = crate::image::copy(client, &image, &to, &args.alias, args.public).await;
        if let Ok(r) = client
            .query(Method::DELETE, &format!("/1.0/images/{fp}"), None)
            .await
            && let Some(id) = r.body.operation_id()
        {
            let _ = client.wait_success(id).await;
        }
        copied?;
    }
    println!("Instance published with fingerprint: {fp}");
    Ok(())
}
