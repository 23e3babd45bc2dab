//! `berthd`: the berth daemon.
//!
//! `main` parses the command line and either runs the daemon or, later, one of the hidden
//! helper subcommands (`forkstart`, `forkexec`, …) that must run in a fresh single-threaded
//! process because liblxc forks. Helpers are dispatched before any runtime thread exists.

mod api;
mod config;
mod daemon;
mod db;
mod events;
mod fork;
mod host;
mod images;
mod instances;
mod lock;
mod logging;
mod operations;
mod paths;
mod sftp;
mod state;
mod storage;

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
    if raw.get(1).is_some_and(|a| a == "forkstart") {
        return ExitCode::from(u8::try_from(fork::start(&raw[2..])).unwrap_or(1));
    }
    if raw.get(1).is_some_and(|a| a == "forkconsole") {
        return ExitCode::from(u8::try_from(fork::console(&raw[2..])).unwrap_or(1));
    }
    if raw.get(1).is_some_and(|a| a == "forkmount") {
        return ExitCode::from(u8::try_from(fork::mount(&raw[2..])).unwrap_or(1));
    }
    if raw.get(1).is_some_and(|a| a == "forkmigrate") {
        return ExitCode::from(u8::try_from(fork::migrate(&raw[2..])).unwrap_or(1));
    }
    if raw.get(1).is_some_and(|a| a == "forkconsolekeeper") {
        return ExitCode::from(
            u8::try_from(instances::console::keeper_main(&raw[2..])).unwrap_or(1),
        );
    }
    if raw.get(1).is_some_and(|a| a == "forkexec") {
        return ExitCode::from(u8::try_from(fork::exec(&raw[2..])).unwrap_or(1));
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
            eprintln!("Error: {}", logging::chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
