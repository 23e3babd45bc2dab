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
    let (target, rest) = match &args.name {
        Some(n) => crate::remote::target(client, n)?,
        None => (client.clone(), String::new()),
    };
    let client = &target;
    if !rest.is_empty() {
        return instance(client, &rest, args.show_log).await;
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
    let reason = text(v, "/state/stop_reason");
    if !reason.is_empty() {
        line(format!("Stopped at boot: {reason}"));
    }
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
        network(v, &mut line);
    }
    snapshots(v, &mut out);
    out
}

/// The `Snapshots` table of `berth info NAME`, as `lxc info` prints it.
fn snapshots(v: &Value, out: &mut String) {
    let Some(snaps) = v.pointer("/snapshots").and_then(Value::as_array) else {
        return;
    };
    if snaps.is_empty() {
        return;
    }
    let mut t = crate::format::Table::new(&["NAME", "TAKEN AT", "EXPIRES AT", "STATEFUL"]);
    for s in snaps {
        let expires = text(s, "/expires_at");
        t.row(vec![
            text(s, "/name"),
            crate::format::date(&text(s, "/created_at")),
            if expires.starts_with("0001-") {
                String::new()
            } else {
                crate::format::date(&expires)
            },
            if s.pointer("/stateful").and_then(Value::as_bool) == Some(true) {
                "YES"
            } else {
                "NO"
            }
            .to_owned(),
        ]);
    }
    if let Ok(table) = t.render(crate::format::Format::Table, snaps) {
        out.push_str("\nSnapshots:\n");
        out.push_str(&table);
    }
}

/// The `Network usage` section of `berth info NAME`.
fn network(v: &Value, line: &mut impl FnMut(String)) {
    let Some(nets) = v.pointer("/state/network").and_then(Value::as_object) else {
        return;
    };
    if nets.is_empty() {
        return;
    }
    line("  Network usage:".to_owned());
    for (name, n) in nets {
        line(format!("    {name}:"));
        line(format!("      Type: {}", text(n, "/type")));
        line(format!("      State: {}", text(n, "/state").to_uppercase()));
        for (label, key) in [("Host interface", "/host_name"), ("MAC address", "/hwaddr")] {
            let t = text(n, key);
            if !t.is_empty() {
                line(format!("      {label}: {t}"));
            }
        }
        line(format!("      MTU: {}", number(n, "/mtu")));
        for (label, key) in [
            ("Bytes received", "bytes_received"),
            ("Bytes sent", "bytes_sent"),
        ] {
            let b = number(n, &format!("/counters/{key}"));
            line(format!("      {label}: {}", crate::format::bytes(b)));
        }
        for (label, key) in [
            ("Packets received", "packets_received"),
            ("Packets sent", "packets_sent"),
        ] {
            line(format!(
                "      {label}: {}",
                number(n, &format!("/counters/{key}"))
            ));
        }
        let addrs: Vec<&Value> = n
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        if !addrs.is_empty() {
            line("      IP addresses:".to_owned());
            for a in addrs {
                line(format!(
                    "        {}: {}/{} ({})",
                    text(a, "/family"),
                    text(a, "/address"),
                    text(a, "/netmask"),
                    text(a, "/scope")
                ));
            }
        }
    }
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
