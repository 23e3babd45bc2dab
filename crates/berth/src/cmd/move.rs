//! `berth move [REMOTE:]NAME [REMOTE:]NEW`: on one server a rename (of a stopped
//! instance), between servers a copy then the source's deletion, as `lxc move` does. A
//! running instance with `migration.stateful=true` moves live (CRIU): its processes go on
//! on the target, and stay running on the source if the move fails. Any other running
//! instance (or with `--stateless`) moves stateless: stopped cleanly on the source (so
//! nothing it writes stays behind), copied, started on the target; restarted on the
//! source if the copy fails.

use berth_client::{Client, Method};

use crate::object::run_op;

/// Arguments of `berth move`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instance to move
    source: String,
    /// Its new name, or `REMOTE:` (`REMOTE:NAME`) for another server
    target: String,
    /// Leave the snapshots behind
    #[arg(long)]
    instance_only: bool,
    /// Between servers: the target pulls (default), the source pushes, or this client
    /// relays
    #[arg(long, value_enum, default_value_t = crate::migrate::Mode::Pull)]
    mode: crate::migrate::Mode,
    /// Move a running instance by stopping and starting it, even when it could move
    /// live (`migration.stateful=true`)
    #[arg(long)]
    stateless: bool,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    let (from_remote, name) = crate::remote::split(&args.source)?;
    let (to_remote, new_name) = crate::remote::split(&args.target)?;
    let (from, _) = crate::remote::target(client, &args.source)?;
    let new_name = if new_name.is_empty() {
        name.clone()
    } else {
        new_name
    };
    if to_remote.is_none() || to_remote == from_remote {
        anyhow::ensure!(new_name != name, "The instance is already called {name:?}");
        let body = serde_json::json!({"name": new_name, "migration": false});
        return run_op(
            &from,
            Method::POST,
            &format!("/1.0/instances/{name}"),
            Some(&body),
        )
        .await;
    }
    let (to, _) = crate::remote::target(client, &args.target)?;
    let entry: serde_json::Value = from.get(&format!("/1.0/instances/{name}")).await?;
    let running = entry["status"] == "Running";
    let live = running
        && !args.stateless
        && entry["expanded_config"]["migration.stateful"].as_str() == Some("true");
    let copy = crate::migrate::Copy {
        from: &from,
        name: &name,
        to: &to,
        new_name: &new_name,
        mode: args.mode,
        instance_only: args.instance_only,
        keep_volatile: true,
        config: vec![],
        live,
        refresh: false,
    };
    // Not live: a running instance stops first (cleanly), so that nothing it writes is
    // left behind; it starts again on the target.
    let stop_first = running && !live;
    if stop_first {
        crate::instance::change_state(&from, &name, "stop", false, 30).await?;
    }
    if let Err(e) = crate::migrate::copy(&copy).await {
        if stop_first {
            let _ = crate::instance::change_state(&from, &name, "start", false, -1).await;
        }
        return Err(e);
    }
    run_op(
        &from,
        Method::DELETE,
        &format!("/1.0/instances/{name}"),
        None,
    )
    .await?;
    if stop_first {
        crate::instance::change_state(&to, &new_name, "start", false, -1).await?;
    }
    Ok(())
}
