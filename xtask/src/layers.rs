//! `cargo xtask layers`: fails when berthd's (or the CLI's) shape erodes.
//!
//! A grep-level check over the `crate::` paths each file names (comments left out):
//!
//! 1. Nothing below the transport names it: outside `api/`, `daemon.rs` and `main.rs`, no
//!    file names `crate::api`, `axum`, `hyper`, `tower` or `berth_api::Response`.
//! 2. Imports point down the layers of `LAYERS`; within a layer only the edges of
//!    `SIDEWAYS` (the services' DAG) are allowed.
//! 3. The driver side (`lxc/`, `host/`) and `db/` import no service; the driver crates
//!    depend on no daemon crate.
//! 4. No cycle between berthd's top-level modules.
//! 5. Sizes: no production file over 800 lines, no API handler file over 500 (test
//!    modules, inline or in a `tests.rs`, not counted).
//! 6. The CLI: a `cmd/` file imports another only for a sub-verb it embeds (`device`,
//!    `trust`).
//!
//! `ALLOWED` lists known exceptions as "file -> module"; it is empty, and should stay so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::bail;

/// berthd's top-level modules by layer, bottom first. A module may import its own
/// layer's modules only along `SIDEWAYS`.
const LAYERS: &[&[&str]] = &[
    &[
        "error", "time", "paths", "lock", "revert", "events", "logging",
    ],
    &["model"],
    &["db", "host", "lxc"],
    &["ctx"],
    &["warning"],
    &[
        "storage", "image", "project", "device", "config", "network", "capacity", "trust",
    ],
    &["instance"],
    &["profile"],
    &["api"],
    &["daemon"],
    &["main", "testing"],
];

/// The edges allowed within a layer.
const SIDEWAYS: &[(&str, &str)] = &[
    ("revert", "error"),
    ("events", "time"),
    ("logging", "events"),
    ("lxc", "host"),
    ("image", "storage"),
    ("image", "trust"),
    ("image", "config"),
    ("network", "project"),
    ("device", "network"),
    ("capacity", "config"),
    ("trust", "project"),
];

/// The CLI verbs embedded in others (`config device`, `config trust`, `storage volume`,
/// `admin recover`), the only `cmd/` files another may import.
const SUB_VERBS: &[&str] = &["device", "trust", "volume", "recover"];

/// Modules that may name the transport.
const TRANSPORT: &[&str] = &["api", "daemon", "main"];

/// Known exceptions, "file -> module". Empty: keep it so.
const ALLOWED: &[&str] = &[];

const TRANSPORT_NAMES: &[&str] = &[
    "axum::",
    "hyper::",
    "hyper_util::",
    "tower::",
    "berth_api::Response",
];

/// The driver crates and what of ours each may depend on.
const DRIVER_CRATES: &[(&str, &[&str])] = &[
    ("berth-api", &[]),
    ("berth-client", &["berth-api"]),
    ("berth-storage", &["berth-host"]),
    ("berth-image", &[]),
    ("berth-host", &[]),
    ("berth-network", &["berth-host"]),
    ("lxc-sys", &[]),
    ("berth-lxc", &["lxc-sys"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The source files under `dir`, recursively.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A file's code before its test module, without comments.
fn code(text: &str) -> String {
    let production = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |i| &text[..i]);
    production
        .lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string ("http://…") is rare in this code; a comment is not.
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file under `src` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let first = rel.components().next().map_or_else(String::new, |c| {
        c.as_os_str().to_string_lossy().into_owned()
    });
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules a file's code names through `crate::`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
        // `use crate::{a, b::c}`
        if rest.starts_with('{') {
            let group = &rest[1..rest.find('}').unwrap_or(rest.len())];
            for part in group.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

/// Finds a cycle in `graph`, as the modules along it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut c = path[start..].to_vec();
                c.push(n.to_owned());
                return Some(c);
            }
            Some(_) => return None,
            None => {}
        }
        state.insert(n.to_owned(), 1);
        path.push(n.to_owned());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn lines(text: &str) -> usize {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |i| &text[..i])
        .lines()
        .count()
}

/// Runs every check; one line per violation, then a failure.
pub fn run(root: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let src = root.join("crates/berthd/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Test modules kept in files of their own (`tests.rs`) are left out, like inline ones.
    for file in sources(&src)
        .into_iter()
        .filter(|f| f.file_name().is_none_or(|n| n != "tests.rs"))
    {
        let text = std::fs::read_to_string(&file)?;
        let code = code(&text);
        let from = module_of(&src, &file);
        let shown = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        if !TRANSPORT.contains(&from.as_str()) {
            for t in TRANSPORT_NAMES {
                if code.contains(t) {
                    problems.push(format!("{shown}: names {t} below the transport"));
                }
            }
        }
        let Some(from_layer) = layer_of(&from) else {
            problems.push(format!(
                "{shown}: module {from} is in no layer of xtask/src/layers.rs"
            ));
            continue;
        };
        for to in imports(&code) {
            if to == from || ALLOWED.contains(&format!("{shown} -> {to}").as_str()) {
                continue;
            }
            let Some(to_layer) = layer_of(&to) else {
                problems.push(format!("{shown}: names crate::{to}, a module in no layer"));
                continue;
            };
            graph.entry(from.clone()).or_default().insert(to.clone());
            let ok = to_layer < from_layer
                || (to_layer == from_layer && SIDEWAYS.contains(&(from.as_str(), to.as_str())));
            if !ok {
                problems.push(format!(
                    "{shown}: {from} imports {to}, which is not below it"
                ));
            }
        }
        let limit = if from == "api" { 500 } else { 800 };
        let n = lines(&text);
        if n > limit {
            problems.push(format!("{shown}: {n} lines (at most {limit})"));
        }
    }
    if let Some(c) = cycle(&graph) {
        problems.push(format!("berthd: import cycle {}", c.join(" -> ")));
    }
    for (krate, may) in DRIVER_CRATES {
        let manifest = std::fs::read_to_string(root.join("crates").join(krate).join("Cargo.toml"))?;
        for ours in [
            "berthd",
            "berth",
            "berth-client",
            "berth-api",
            "berth-storage",
            "berth-image",
            "berth-host",
            "berth-network",
            "berth-lxc",
            "lxc-sys",
        ] {
            if ours == *krate || may.contains(&ours) {
                continue;
            }
            let named = manifest.lines().any(|l| {
                l.trim_start().starts_with(&format!("{ours} "))
                    || l.trim_start().starts_with(&format!("{ours}."))
                    || l.trim_start().starts_with(&format!("{ours}="))
            });
            if named {
                problems.push(format!("crates/{krate}: depends on {ours}"));
            }
        }
    }
    let cmd = root.join("crates/berth/src/cmd");
    for file in sources(&cmd) {
        if file.file_name().is_some_and(|n| n == "mod.rs") {
            continue;
        }
        let code = code(&std::fs::read_to_string(&file)?);
        let shown = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        for prefix in ["super::", "crate::cmd::"] {
            for (i, _) in code.match_indices(prefix) {
                let name: String = code[i + prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && !SUB_VERBS.contains(&name.as_str()) {
                    problems.push(format!(
                        "{shown}: imports cmd/{name}.rs (only sub-verbs, {SUB_VERBS:?}, may be)"
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        eprintln!("layers: berthd's modules follow their layers; no cycle, no leak");
        return Ok(());
    }
    for p in &problems {
        eprintln!("{p}");
    }
    bail!("{} layer violations", problems.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_groups_are_read() {
        let code = code(
            "use crate::{db, model::names};\nlet x = crate::instance::find(); // crate::api\n",
        );
        let got = imports(&code);
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec!["db", "instance", "model"]
        );
    }

    #[test]
    fn cycles_are_found() {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default().insert("a".into());
        assert_eq!(cycle(&g).unwrap(), vec!["a", "b", "a"]);
        g.remove("b");
        assert!(cycle(&g).is_none());
    }
}
