//! `berth info [NAME]`: an instance's state as `lxc info NAME` prints it, or the server as
//! YAML.

use berth_client::Client;
use serde_json::Value;

/// Arguments of `berth info`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// An instance to describe (else the server)
    name: Option<String>,
    /// Show the host's hardware instead
    #[arg(long, conflicts_with = "name")]
    resources: bool,
    /// Show the instance's log too
    #[arg(long, requires = "name")]
    show_log: bool,
}

pub async fn run(client: &Client, args: Args) -> anyhow::Result<()> {
    if let Some(name) = &args.name {
        return instance(client, name, args.show_log).await;
    }
    if args.resources {
        let res: berth_api::resources::Resources = client.get("/1.0/resources").await?;
        print!("{}", crate::yaml::to_string(&res)?);
    } else {
        let server = client.server().await?;
        print!("{}", crate::yaml::to_string(&server)?);
    }
    Ok(())
}

fn text(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn number(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The text of `berth info NAME`.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("Name: {}", text(v, "/name")));
    line(format!("Status: {}", text(v, "/status").to_uppercase()));
    let ephemeral = v.pointer("/ephemeral").and_then(Value::as_bool) == Some(true);
    line(format!(
        "Type: {}{}",
        text(v, "/type"),
        if ephemeral { " (ephemeral)" } else { "" }
    ));
    line(format!("Architecture: {}", text(v, "/architecture")));
    let pid = number(v, "/state/pid");
    if pid != 0 {
        line(format!("PID: {pid}"));
    }
    line(format!(
        "Created: {}",
        crate::format::date(&text(v, "/created_at"))
    ));
    line(format!(
        "Last Used: {}",
        crate::format::date(&text(v, "/last_used_at"))
    ));
    if pid != 0 {
        line(String::new());
        line("Resources:".to_owned());
        line(format!("  Processes: {}", number(v, "/state/processes")));
        line("  CPU usage:".to_owned());
        line(format!(
            "    CPU usage (in seconds): {}",
            number(v, "/state/cpu/usage") / 1_000_000_000
        ));
        line("  Memory usage:".to_owned());
        line(format!(
            "    Memory (current): {}",
            crate::format::bytes(number(v, "/state/memory/usage"))
        ));
        let peak = number(v, "/state/memory/usage_peak");
        if peak > 0 {
            line(format!("    Memory (peak): {}", crate::format::bytes(peak)));
        }
        let total = number(v, "/state/memory/total");
        if total > 0 {
            line(format!(
                "    Memory (limit): {}",
                crate::format::bytes(total)
            ));
        }
    }
    out
}

async fn instance(client: &Client, name: &str, show_log: bool) -> anyhow::Result<()> {
    let v: Value = client
        .get(&format!("/1.0/instances/{name}?recursion=1"))
        .await?;
    print!("{}", render(&v));
    if show_log {
        let log = client
            .get_file(&format!("/1.0/instances/{name}/logs/lxc.log"))
            .await
            .unwrap_or_default();
        println!("\nLog:\n");
        print!("{}", String::from_utf8_lossy(&log));
    }
    Ok(())
}
