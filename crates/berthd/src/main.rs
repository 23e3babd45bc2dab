//! `berthd`: the berth daemon.
//!
//! `main` parses the command line and either runs the daemon or, later, one of the hidden
//! helper subcommands (`forkstart`, `forkexec`, …) that must run in a fresh single-threaded
//! process because liblxc forks. Helpers are dispatched before any runtime thread exists.

mod api;
mod capacity;
mod config;
mod ctx;
mod daemon;
mod db;
mod device;
mod error;
mod events;
mod host;
mod image;
mod instance;
mod lock;
mod logging;
mod lxc;
mod model;
mod network;
mod paths;
mod profile;
mod project;
mod revert;
mod storage;
#[cfg(test)]
mod testing;
mod time;
mod trust;
mod warning;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The berth daemon.
#[derive(Debug, Parser)]
#[command(name = "berthd", version, about = "The berth system-container daemon")]
struct Args {
    /// Directory holding all of berthd's state, its socket and its logs.
    #[arg(long, env = "BERTH_DIR", default_value = "/var/lib/berth")]
    dir: PathBuf,
    /// Log debug messages.
    #[arg(long)]
    debug: bool,
    /// Log informational messages.
    #[arg(long)]
    verbose: bool,
    /// Serve the `/internal/testing/*` endpoints the end-to-end tests use.
    #[arg(long, hide = true)]
    testing: bool,
}

fn main() -> ExitCode {
    // Helpers first: they must run before any thread exists (liblxc forks).
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = raw.get(1..).and_then(lxc::fork::dispatch) {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let args = Args::parse();
    let opts = daemon::Options {
        dir: args.dir,
        level: if args.debug {
            tracing::Level::DEBUG
        } else if args.verbose {
            tracing::Level::INFO
        } else {
            tracing::Level::WARN
        },
        testing: args.testing,
    };
    match daemon::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", error::chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
