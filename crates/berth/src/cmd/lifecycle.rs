//! `berth start|stop|restart|pause|resume NAME...`: change instance state, several at
//! once (see [`crate::instance::for_each`]).

use berth_client::{Client, Method};

/// Arguments of the state-changing verbs.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(required = true)]
    names: Vec<String>,
    /// Kill instead of a clean shutdown (stop, restart)
    #[arg(short = 'f', long)]
    force: bool,
    /// Seconds to wait for a clean shutdown (-1: forever)
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    timeout: i64,
    /// Save the running state (stop; needs migration.stateful=true and CRIU)
    #[arg(long)]
    stateful: bool,
    /// Discard a saved state and boot afresh (start)
    #[arg(long)]
    stateless: bool,
}

pub async fn run(client: &Client, args: Args, action: &str) -> anyhow::Result<()> {
    if args.stateful && action != "stop" {
        anyhow::bail!("--stateful applies to stop only");
    }
    if args.stateless && action != "start" {
        anyhow::bail!("--stateless applies to start only");
    }
    let args = &args;
    crate::instance::for_each(&args.names, |name| async move {
        one(client, args, action, name)
            .await
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))
    })
    .await
}

async fn one(client: &Client, args: &Args, action: &str, name: &str) -> anyhow::Result<()> {
    let (client, name) = crate::remote::target(client, name)?;
    let (client, name) = (&client, name.as_str());
    // As lxc does: a start restores a saved state unless told not to.
    let stateful = if action == "start" && !args.stateless {
        client
            .query(Method::GET, &format!("/1.0/instances/{name}"), None)
            .await?
            .body
            .metadata
            .get("stateful")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    } else {
        args.stateful
    };
    let body = serde_json::json!({
        "action": action,
        "timeout": args.timeout,
        "force": args.force,
        "stateful": stateful,
    });
    crate::instance::put_state(client, name, &body).await
}
