//! `berth copy [REMOTE:]SOURCE[/SNAPSHOT] [REMOTE:]NAME`: a new instance copied from an
//! instance or one of its snapshots, on one server as `lxc copy` makes it there, or
//! between servers over LXD's migration protocol (see [`crate::migrate`]).

use berth_client::{Client, Method};
use serde_json::Value;

/// Arguments of `berth copy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instance, or `INSTANCE/SNAPSHOT`, to copy
    source: String,
    /// The new instance's name
    name: String,
    /// Leave the source's snapshots behind
    #[arg(long)]
    instance_only: bool,
    /// Between servers: bring an existing copy up to date (its new and changed snapshots
    /// and what changed in its files; it must be stopped)
    #[arg(long)]
    refresh: bool,
    /// Config keys for the copy: -c KEY=VALUE (repeatable)
    #[arg(short = 'c', long = "config")]
    config: Vec<String>,
    /// Between servers: the target pulls (default), the source pushes, or this client
    /// relays
    #[arg(long, value_enum, default_value_t = crate::migrate::Mode::Pull)]
    mode: crate::migrate::Mode,
}

pub async fn run(client: &Client, mut args: Args) -> anyhow::Result<()> {
    let (from_remote, source) = crate::remote::split(&args.source)?;
    let (to_remote, name) = crate::remote::split(&args.name)?;
    // `REMOTE:` alone: the source's own name there.
    let name = if name.is_empty() {
        source.split('/').next().unwrap_or_default().to_owned()
    } else {
        name
    };
    let (target, _) = crate::remote::target(client, &args.source)?;
    let to_remote = to_remote.or_else(|| from_remote.clone());
    anyhow::ensure!(
        !args.refresh || args.config.is_empty(),
        "--refresh keeps the copy's configuration: -c is not taken with it"
    );
    if to_remote != from_remote {
        anyhow::ensure!(
            !source.contains('/'),
            "Copying a snapshot to another server is not supported yet"
        );
        let (to, _) =
            crate::remote::target(client, &format!("{}:", to_remote.unwrap_or_default()))?;
        let copy = crate::migrate::Copy {
            from: &target,
            name: &source,
            to: &to,
            new_name: &name,
            mode: args.mode,
            instance_only: args.instance_only,
            keep_volatile: false,
            config: crate::object::pairs(&args.config)?.into_iter().collect(),
            // A copy leaves the source as it is: a running one is copied frozen.
            live: false,
            refresh: args.refresh,
        };
        crate::migrate::copy(&copy).await?;
        return Ok(());
    }
    anyhow::ensure!(
        !args.refresh,
        "--refresh copies between servers only (on one server, copy anew)"
    );
    let client = &target;
    args.source = source;
    args.name = name;
    let (instance, snap) = match args.source.split_once('/') {
        Some((i, s)) => (i, Some(s)),
        None => (args.source.as_str(), None),
    };
    // The copy starts with the source's (or the snapshot's) own configuration.
    let from: Value = match snap {
        Some(s) => {
            client
                .get(&format!("/1.0/instances/{instance}/snapshots/{s}"))
                .await?
        }
        None => client.get(&format!("/1.0/instances/{instance}")).await?,
    };
    let mut config: serde_json::Map<String, Value> =
        from["config"].as_object().cloned().unwrap_or_default();
    config.retain(|k, _| !k.starts_with("volatile."));
    for (k, v) in crate::object::pairs(&args.config)? {
        config.insert(k, v.into());
    }
    let body = serde_json::json!({
        "name": args.name,
        "source": {
            "type": "copy",
            "source": args.source,
            "instance_only": args.instance_only,
        },
        "config": config,
        "devices": from["devices"],
        "profiles": from["profiles"],
        "ephemeral": from["ephemeral"],
        "description": from["description"],
    });
    let r = client
        .query(Method::POST, "/1.0/instances", Some(&body))
        .await?;
    if let Some(id) = r.body.operation_id() {
        client.wait_success(id).await?;
    }
    Ok(())
}
