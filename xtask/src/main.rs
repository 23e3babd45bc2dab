//! `cargo xtask`: the one entry point for developers and CI.
//!
//! - `ci`: system packages, fmt, layers, clippy, build, then every test (unit and
//!   end-to-end).
//! - `e2e`: system packages, build, then the end-to-end tests only.
//! - `bench`: builds release binaries and measures them (see `bench.rs`); `bench net`
//!   the networking figures alone; `bench remote` and `bench storage` those between
//!   hosts and of storage pools; `bench density` fills the host (see
//!   `bench_density.rs`).
//! - `layers`: checks berthd's module layers and the CLI's (see `layers.rs`).
//! - `bindings`: regenerates `crates/lxc-sys/src/bindings.rs` from the installed liblxc
//!   headers (needs `bindgen` from bindgen-cli and libclang).

mod bench;
mod bench_density;
mod bench_net;
mod bench_remote;
mod bench_storage;
mod layers;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    match args.first().map(String::as_str) {
        Some("ci") => ci(&root),
        Some("e2e") => e2e(&root),
        Some("bench") if args.get(1).map(String::as_str) == Some("net") => bench::run_net(&root),
        Some("bench") if args.get(1).map(String::as_str) == Some("remote") => {
            bench::run_remote(&root)
        }
        Some("bench") if args.get(1).map(String::as_str) == Some("storage") => {
            bench::run_storage(&root)
        }
        Some("bench") if args.get(1).map(String::as_str) == Some("density") => {
            bench_density::run(&root)
        }
        Some("bench") => bench::run(&root),
        Some("layers") => layers::run(&root),
        Some("bindings") => bindings(&root),
        _ => {
            eprintln!(
                "usage: cargo xtask ci|e2e|bench [net|density|remote|storage]|layers|bindings"
            );
            std::process::exit(2);
        }
    }
}

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs a command in the workspace root, failing on a non-zero exit.
fn run(root: &Path, program: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("+ {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("failed to run {program}"))?;
    if !status.success() {
        bail!("{program} {} failed with {status}", args.join(" "));
    }
    Ok(())
}

fn has_nextest() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs tests with nextest when present, else with cargo test.
fn test(root: &Path, packages: &[&str]) -> anyhow::Result<()> {
    let mut args: Vec<&str> = if has_nextest() {
        vec!["nextest", "run", "--no-fail-fast"]
    } else {
        vec!["test", "--no-fail-fast"]
    };
    if packages.is_empty() {
        args.push("--workspace");
    }
    for p in packages {
        args.extend(["-p", p]);
    }
    run(root, "cargo", &args)
}

fn deps(root: &Path) -> anyhow::Result<()> {
    run(root, "bash", &["scripts/deps.sh"])
}

fn ci(root: &Path) -> anyhow::Result<()> {
    deps(root)?;
    run(root, "cargo", &["fmt", "--all", "--check"])?;
    layers::run(root)?;
    run(
        root,
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    run(root, "cargo", &["build", "--workspace", "--bins"])?;
    test(root, &[])
}

fn e2e(root: &Path) -> anyhow::Result<()> {
    deps(root)?;
    run(root, "cargo", &["build", "--workspace", "--bins"])?;
    test(root, &["berth-e2e"])
}

/// Regenerates the committed liblxc bindings.
fn bindings(root: &Path) -> anyhow::Result<()> {
    run(
        root,
        "bindgen",
        &[
            "/usr/include/lxc/lxccontainer.h",
            "--allowlist-function",
            "lxc_container_new|lxc_container_put|lxc_get_version|lxc_attach_run_command|lxc_attach_run_shell",
            "--allowlist-type",
            "lxc_container|lxc_attach_options_t|lxc_attach_command_t|lxc_attach_env_policy_t",
            "--allowlist-var",
            "LXC_ATTACH_.*",
            "--no-doc-comments",
            "--use-core",
            "-o",
            "crates/lxc-sys/src/bindings.rs",
            "--",
            "-I/usr/include",
        ],
    )
}
