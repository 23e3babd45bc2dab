//! `berth list [FILTER...] [-c COLUMNS]`: instances, with LXD's columns and filters.
//!
//! Columns are LXD's one-letter codes (default `ns46tS`), or custom ones, comma separated:
//! `[config:|devices:]KEY[:NAME[:WIDTH]]`. Filters, all of which must match: a bare word
//! matches names (an anchored regular expression, or a prefix); `KEY=VALUE[,VALUE…]`
//! matches a field (`status`, `type`, `architecture`, `description`, …) or, for a dotted
//! key, the expanded configuration, each value an anchored, case-insensitive regular
//! expression.

use berth_api::instance::FULL_KEYS;
use berth_client::Client;
use serde_json::Value;

use crate::format::{Format, Table};

/// Arguments of `berth list`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Filters: NAME-REGEX, or KEY=VALUE[,VALUE...]
    filters: Vec<String>,
    /// Columns: LXD's codes (n s 4 6 t S a b c d D e f F l m M N p P u) or
    /// [config:|devices:]KEY[:NAME[:WIDTH]], comma separated
    #[arg(short = 'c', long, default_value = "ns46tS")]
    columns: String,
    #[arg(short = 'f', long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// How a cell is made from an instance (with its state).
type Cell = Box<dyn Fn(&Value) -> String>;

/// One column: its header, its cells, and the instance's top-level fields they read.
struct Column {
    header: String,
    cell: Cell,
    reads: Vec<&'static str>,
}

fn text(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn number(v: &Value, path: &[&str]) -> i64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return 0,
        }
    }
    cur.as_i64().unwrap_or(0)
}

fn running(v: &Value) -> bool {
    number(v, &["state", "pid"]) != 0
}

/// Addresses of one family in the state's networks, as `ADDR (IFACE)`, one per line.
fn addresses(v: &Value, family: &str) -> String {
    let mut out = Vec::new();
    if let Some(nets) = v.pointer("/state/network").and_then(Value::as_object) {
        for (iface, net) in nets {
            if net.get("type").and_then(Value::as_str) == Some("loopback") {
                continue;
            }
            for a in net
                .get("addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let scope = text(a, &["scope"]);
                if text(a, &["family"]) == family && scope != "link" && scope != "local" {
                    out.push(format!("{} ({iface})", text(a, &["address"])));
                }
            }
        }
    }
    out.sort();
    out.join("\n")
}

/// The instance fields column `c` reads (of the state, the part: see [`request`]).
fn reads(c: char) -> &'static [&'static str] {
    match c {
        'n' => &["name"],
        's' => &["status"],
        '4' | '6' => &["state.network"],
        'D' => &["state.disk"],
        'm' | 'M' => &["state.memory"],
        'N' => &["state.processes"],
        'p' => &["state.pid"],
        'u' => &["state.cpu"],
        't' => &["type", "ephemeral"],
        'S' => &["snapshots"],
        'a' => &["architecture"],
        'b' => &["expanded_devices"],
        'c' => &["created_at"],
        'd' => &["description"],
        'e' => &["project"],
        'f' | 'F' => &["expanded_config"],
        'l' => &["last_used_at"],
        'P' => &["profiles"],
        _ => &[],
    }
}

fn code(c: char) -> anyhow::Result<Column> {
    let (header, cell): (&str, Cell) = match c {
        'n' => ("NAME", Box::new(|v| text(v, &["name"]))),
        's' => ("STATE", Box::new(|v| text(v, &["status"]).to_uppercase())),
        '4' => ("IPV4", Box::new(|v| addresses(v, "inet"))),
        '6' => ("IPV6", Box::new(|v| addresses(v, "inet6"))),
        't' => (
            "TYPE",
            Box::new(|v| {
                let kind = text(v, &["type"]).to_uppercase();
                if v.get("ephemeral").and_then(Value::as_bool) == Some(true) {
                    format!("{kind} (EPHEMERAL)")
                } else {
                    kind
                }
            }),
        ),
        'S' => (
            "SNAPSHOTS",
            Box::new(|v| {
                v.get("snapshots")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
                    .to_string()
            }),
        ),
        'a' => ("ARCHITECTURE", Box::new(|v| text(v, &["architecture"]))),
        'b' => (
            "STORAGE POOL",
            Box::new(|v| {
                v.get("expanded_devices")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .find(|(_, d)| text(d, &["type"]) == "disk" && text(d, &["path"]) == "/")
                    .map(|(_, d)| text(d, &["pool"]))
                    .unwrap_or_default()
            }),
        ),
        'c' => (
            "CREATED AT",
            Box::new(|v| crate::format::date(&text(v, &["created_at"]))),
        ),
        'd' => ("DESCRIPTION", Box::new(|v| text(v, &["description"]))),
        'D' => (
            "DISK USAGE",
            Box::new(|v| {
                let usage = number(v, &["state", "disk", "root", "usage"]);
                if usage > 0 {
                    crate::format::bytes(usage)
                } else {
                    String::new()
                }
            }),
        ),
        'e' => ("PROJECT", Box::new(|v| text(v, &["project"]))),
        'f' => (
            "BASE IMAGE",
            Box::new(|v| {
                text(v, &["expanded_config", "volatile.base_image"])
                    .chars()
                    .take(12)
                    .collect()
            }),
        ),
        'F' => (
            "BASE IMAGE",
            Box::new(|v| text(v, &["expanded_config", "volatile.base_image"])),
        ),
        'l' => (
            "LAST USED AT",
            Box::new(|v| crate::format::date(&text(v, &["last_used_at"]))),
        ),
        'm' => (
            "MEMORY USAGE",
            Box::new(|v| {
                if running(v) {
                    crate::format::bytes(number(v, &["state", "memory", "usage"]))
                } else {
                    String::new()
                }
            }),
        ),
        'M' => (
            "MEMORY USAGE%",
            Box::new(|v| {
                let total = number(v, &["state", "memory", "total"]);
                if running(v) && total > 0 {
                    format!(
                        "{:.0}%",
                        number(v, &["state", "memory", "usage"]) as f64 * 100.0 / total as f64
                    )
                } else {
                    String::new()
                }
            }),
        ),
        'N' => (
            "PROCESSES",
            Box::new(|v| {
                if running(v) {
                    number(v, &["state", "processes"]).to_string()
                } else {
                    String::new()
                }
            }),
        ),
        'p' => (
            "PID",
            Box::new(|v| {
                if running(v) {
                    number(v, &["state", "pid"]).to_string()
                } else {
                    String::new()
                }
            }),
        ),
        'P' => (
            "PROFILES",
            Box::new(|v| {
                v.get("profiles")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("\n")
            }),
        ),
        'u' => (
            "CPU USAGE",
            Box::new(|v| {
                if running(v) {
                    format!("{}s", number(v, &["state", "cpu", "usage"]) / 1_000_000_000)
                } else {
                    String::new()
                }
            }),
        ),
        'L' => anyhow::bail!("Can't specify column L when not clustered"),
        other => anyhow::bail!("Unknown column shorthand char '{other}' in '-c'"),
    };
    Ok(Column {
        header: header.to_owned(),
        cell,
        reads: reads(c).to_vec(),
    })
}

/// `[config:|devices:]KEY[:NAME[:WIDTH]]`.
fn custom(spec: &str) -> anyhow::Result<Column> {
    let (section, rest) = if let Some(r) = spec.strip_prefix("devices:") {
        ("expanded_devices", r)
    } else {
        (
            "expanded_config",
            spec.strip_prefix("config:").unwrap_or(spec),
        )
    };
    let mut parts = rest.split(':');
    let key = parts.next().unwrap_or_default().to_owned();
    if key.is_empty() {
        anyhow::bail!("Invalid column {spec:?}: no key");
    }
    let header = parts
        .next()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| key.to_uppercase());
    let width: Option<usize> = match parts.next() {
        Some(w) => Some(
            w.parse()
                .map_err(|_| anyhow::anyhow!("Invalid max width {w:?} in column {spec:?}"))?,
        ),
        None => None,
    };
    let cell: Cell = if section == "expanded_devices" {
        // devices:NAME.KEY
        Box::new(move |v| match key.split_once('.') {
            Some((dev, k)) => text(v, &[section, dev, k]),
            None => text(v, &[section, &key]),
        })
    } else {
        Box::new(move |v| text(v, &[section, &key]))
    };
    Ok(Column {
        header,
        cell: Box::new(move |v| {
            let s = cell(v);
            match width {
                Some(w) => s.chars().take(w).collect(),
                None => s,
            }
        }),
        reads: vec![section],
    })
}

fn columns(spec: &str) -> anyhow::Result<Vec<Column>> {
    let mut out = Vec::new();
    for piece in spec.split(',').filter(|p| !p.is_empty()) {
        if piece.contains(':') {
            out.push(custom(piece)?);
        } else {
            for c in piece.chars() {
                out.push(code(c)?);
            }
        }
    }
    Ok(out)
}

/// An anchored, case-insensitive match; a value that is no regular expression compares as
/// text.
fn matches(pattern: &str, value: &str) -> bool {
    let anchored = if pattern.starts_with('^') || pattern.ends_with('$') {
        format!("(?i){pattern}")
    } else {
        format!("(?i)^(?:{pattern})$")
    };
    match regex::Regex::new(&anchored) {
        Ok(re) => re.is_match(value),
        Err(_) => pattern.eq_ignore_ascii_case(value),
    }
}

/// The instance fields filter `filter` reads.
fn filter_reads(filter: &str) -> &str {
    match filter.split_once('=') {
        None => "name",
        Some((key, _)) if key.contains('.') => "expanded_config",
        Some(("ipv4" | "ipv6", _)) => "state.network",
        Some((key, _)) => key,
    }
}

/// The list request a table needs, given what its columns and filters read, and the
/// top-level fields to keep from the reply. The state and the snapshots come with
/// recursion=2 only. A berthd (`selective`: it says so and advertises LXD's
/// `instances_state_selective_recursion`) is asked for the fields read and, of the state,
/// the parts read (berth's own `fields=` names): a list of thousands reads no counters
/// and sends no configuration nobody shows. Another server, or a field it would not know,
/// gets the plain request.
fn request<'a>(
    reads: impl IntoIterator<Item = &'a str>,
    selective: bool,
) -> (std::collections::HashSet<&'a str>, String) {
    let mut keep = std::collections::HashSet::new();
    // The name, always: a top-level name is what makes berthd select keys.
    let mut fields = std::collections::BTreeSet::from(["name"]);
    for r in reads {
        let (top, part) = r.split_once('.').unwrap_or((r, ""));
        keep.insert(top);
        // The pid comes with every state.
        fields.insert(if part == "pid" { top } else { r });
    }
    let known = keep.iter().all(|k| FULL_KEYS.contains(k));
    let path = if !keep.contains("state") && !keep.contains("snapshots") {
        "/1.0/instances?recursion=1".to_owned()
    } else if selective && known {
        let fields: Vec<&str> = fields.into_iter().collect();
        // `;` encoded: a Go server's query parser drops a pair holding one.
        format!("/1.0/instances?recursion=2%3Bfields={}", fields.join(","))
    } else {
        "/1.0/instances?recursion=2".to_owned()
    };
    (keep, path)
}

/// Decodes a list of instances keeping only the top-level fields in `keep`: a table of a
/// thousand builds no tree of what it does not show.
struct Only<'a>(&'a std::collections::HashSet<&'a str>);

impl<'de> serde::de::DeserializeSeed<'de> for Only<'_> {
    type Value = Vec<Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<Value>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Only<'_> {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of instances")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Instance(self.0))? {
            out.push(v);
        }
        Ok(out)
    }
}

/// One instance of [`Only`].
struct Instance<'a>(&'a std::collections::HashSet<&'a str>);

impl<'de> serde::de::DeserializeSeed<'de> for Instance<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Instance<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an instance")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.0.contains(key.as_str()) {
                out.insert(key, map.next_value()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(Value::Object(out))
    }
}

/// Whether an instance passes one command-line filter.
fn passes(v: &Value, filter: &str) -> bool {
    let Some((key, values)) = filter.split_once('=') else {
        let name = text(v, &["name"]);
        return name.starts_with(filter) || matches(filter, &name);
    };
    let actual = if key.contains('.') {
        text(v, &["expanded_config", key])
    } else {
        match key {
            "ipv4" => addresses(v, "inet"),
            "ipv6" => addresses(v, "inet6"),
            _ => text(v, &[key]),
        }
    };
    values.split(',').any(|want| {
        if matches!(key, "ipv4" | "ipv6") {
            actual.lines().any(|a| a.split(' ').next() == Some(want))
        } else {
            matches(want, &actual)
        }
    })
}

pub async fn run(client: &Client, mut args: Args) -> anyhow::Result<()> {
    // `REMOTE:` (alone, or before the first filter) lists that remote's instances.
    let mut remote_client = None;
    if let Some(first) = args.filters.first()
        && let (Some(_), rest) = crate::remote::split(first)?
    {
        remote_client = Some(crate::remote::target(client, first)?.0);
        if rest.is_empty() {
            args.filters.remove(0);
        } else {
            args.filters[0] = rest;
        }
    }
    let client = remote_client.as_ref().unwrap_or(client);
    let cols = columns(&args.columns)?;
    let instances: Vec<Value> = if matches!(args.format, Format::Json | Format::Yaml) {
        client.get("/1.0/instances?recursion=2").await?
    } else {
        let reads: Vec<&str> = cols
            .iter()
            .flat_map(|c| c.reads.iter().copied())
            .chain(args.filters.iter().map(|f| filter_reads(f)))
            .collect();
        let (_, plain) = request(reads.iter().copied(), false);
        // Whether the server selects is asked only when the state or snapshots are read.
        let selective = plain.ends_with("recursion=2") && {
            let server = client.server().await?;
            server
                .environment
                .as_ref()
                .is_some_and(|e| e.server == "berth")
                && server
                    .api_extensions
                    .iter()
                    .any(|e| e == "instances_state_selective_recursion")
        };
        let (keep, path) = request(reads.iter().copied(), selective);
        // Decoded in place from the reply: no copy of a list of thousands in between.
        #[derive(serde::Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow)]
            metadata: &'a serde_json::value::RawValue,
        }
        let body = client.get_file(&path).await?;
        let envelope: Envelope = serde_json::from_slice(&body)?;
        let mut de = serde_json::Deserializer::from_str(envelope.metadata.get());
        serde::de::DeserializeSeed::deserialize(Only(&keep), &mut de)?
    };
    let shown: Vec<&Value> = instances
        .iter()
        .filter(|v| args.filters.iter().all(|f| passes(v, f)))
        .collect();
    let headers: Vec<&str> = cols.iter().map(|c| c.header.as_str()).collect();
    let mut t = Table::new(&headers);
    for v in &shown {
        t.row(cols.iter().map(|c| (c.cell)(v)).collect());
    }
    print!("{}", t.render(args.format, &shown)?);
    // The process ends here: freeing a list of thousands, node by node, would take
    // longer than the table took to print.
    std::mem::forget(t);
    drop(shown);
    std::mem::forget(instances);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn filters_and_columns() {
        let v = serde_json::json!({
            "name": "web1", "status": "Running", "type": "container", "ephemeral": true,
            "expanded_config": {"user.role": "frontend", "volatile.base_image": "0123456789abcdef"},
            "state": {"pid": 42, "processes": 3, "memory": {"usage": 1572864}},
        });
        assert!(passes(&v, "web"));
        assert!(passes(&v, "w.b1"));
        assert!(!passes(&v, "db"));
        assert!(passes(&v, "status=running"));
        assert!(passes(&v, "status=stopped,running"));
        assert!(!passes(&v, "status=stopped"));
        assert!(passes(&v, "user.role=front.*"));
        assert!(!passes(&v, "user.role=front"));
        let cols = columns("nstpNmf,config:user.role:ROLE").unwrap();
        let row: Vec<String> = cols.iter().map(|c| (c.cell)(&v)).collect();
        assert_eq!(
            row,
            [
                "web1",
                "RUNNING",
                "CONTAINER (EPHEMERAL)",
                "42",
                "3",
                "1.50MiB",
                "0123456789ab",
                "frontend"
            ]
        );
        assert_eq!(cols[7].header, "ROLE");
        assert!(columns("nL").is_err());

        // A table decodes only what its columns and filters read.
        let cols = columns("ns4,config:user.role").unwrap();
        let reads = || {
            cols.iter()
                .flat_map(|c| c.reads.iter().copied())
                .chain(["type=container", "web", "ipv6=::1"].map(filter_reads))
        };
        let (keep, path) = request(reads(), true);
        assert_eq!(
            path,
            "/1.0/instances?recursion=2%3Bfields=expanded_config,name,state.network,status,type"
        );
        assert_eq!(request(reads(), false).1, "/1.0/instances?recursion=2");
        // A key berthd would not know: the plain request.
        let (_, path) = request(["name", "state.network", "Status"], true);
        assert_eq!(path, "/1.0/instances?recursion=2");
        let (_, path) = request(["state.network"], true);
        assert_eq!(
            path,
            "/1.0/instances?recursion=2%3Bfields=name,state.network"
        );
        let plain = columns("nst").unwrap();
        let (_, path) = request(plain.iter().flat_map(|c| c.reads.iter().copied()), true);
        assert_eq!(path, "/1.0/instances?recursion=1");
        let reads = columns("nspumS").unwrap();
        let reads = reads.iter().flat_map(|c| c.reads.iter().copied());
        assert_eq!(
            request(reads, true).1,
            "/1.0/instances?recursion=2%3Bfields=name,snapshots,state,state.cpu,state.memory,status"
        );
        let body = r#"[{"name":"a","status":"Running","type":"container","config":{"x":"1"},
            "expanded_config":{"user.role":"db"},"state":{"pid":1},"snapshots":[{"name":"s"}]}]"#;
        let mut de = serde_json::Deserializer::from_str(body);
        let got = serde::de::DeserializeSeed::deserialize(Only(&keep), &mut de).unwrap();
        assert_eq!(
            got,
            [
                serde_json::json!({"name":"a","status":"Running","type":"container",
                "expanded_config":{"user.role":"db"},"state":{"pid":1}})
            ]
        );
        assert!(columns("nZ").is_err());
    }
}
