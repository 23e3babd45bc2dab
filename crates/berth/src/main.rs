//! `berth`: the command-line client of berthd.
//!
//! Thin: each verb lives in its own file under `cmd/` and drives the daemon through
//! `berth-client`. The daemon is found at `$BERTH_SOCKET`, else `$BERTH_DIR/unix.socket`, else
//! `/var/lib/berth/unix.socket`. Success exits 0; failure prints one line on stderr, exits 1.
//!
//! What several verbs share sits in the modules beside this file (`object`, `editor`, `tty`,
//! `image`, `instance`, `format`, `yaml`, `progress`), which never reach back into `cmd/`.

mod cmd;
mod devices;
mod editor;
mod format;
mod image;
mod instance;
mod migrate;
mod object;
mod progress;
mod remote;
mod tty;
mod yaml;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// berth: system containers, safe by default.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, propagate_version = true)]
pub struct Cli {
    /// The project to work in (default: the one `berth project switch` chose, else default)
    #[arg(long, global = true, env = "BERTH_PROJECT")]
    project: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show an instance's state, or the server's information and configuration
    Info(cmd::info::Args),
    /// Show the client and server versions
    Version(cmd::version::Args),
    /// Watch the server's events
    Monitor(cmd::monitor::Args),
    /// List, show and cancel background operations
    #[command(subcommand)]
    Operation(cmd::operation::Command),
    /// Create and start an instance from an image
    Launch(cmd::launch::Args),
    /// Create an instance from an image
    #[command(alias = "create")]
    Init(cmd::launch::Args),
    /// Start instances
    Start(cmd::lifecycle::Args),
    /// Stop instances
    Stop(cmd::lifecycle::Args),
    /// Restart instances
    Restart(cmd::lifecycle::Args),
    /// Freeze instances
    #[command(alias = "freeze")]
    Pause(cmd::lifecycle::Args),
    /// Unfreeze instances
    Resume(cmd::lifecycle::Args),
    /// Delete instances
    #[command(alias = "rm")]
    Delete(cmd::delete::Args),
    /// Rename a stopped instance
    Rename(cmd::rename::Args),
    /// Make an image of an instance (stopped) or a snapshot
    Publish(cmd::publish::Args),
    /// Export an instance and its snapshots as a backup tarball
    Export(cmd::backup::ExportArgs),
    /// Import a backup tarball as a new instance
    Import(cmd::backup::ImportArgs),
    /// Move an instance to another server (or rename it on one)
    #[command(alias = "mv")]
    Move(cmd::r#move::Args),
    /// Copy an instance, or one of its snapshots, into a new instance
    #[command(alias = "cp")]
    Copy(cmd::copy::Args),
    /// Show and change an instance's configuration
    #[command(subcommand)]
    Config(cmd::config::Command),
    /// List instances
    #[command(alias = "ls")]
    List(cmd::list::Args),
    /// Run a command in an instance
    Exec(cmd::exec::Args),
    /// Open a login shell in an instance
    Shell { name: String },
    /// Attach to an instance's console (detach with ctrl+a q)
    Console(cmd::console::Args),
    /// Copy files into and out of instances
    #[command(subcommand)]
    File(cmd::file::Command),
    /// Manage images
    #[command(subcommand)]
    Image(cmd::image::Command),
    /// Set up the server (storage pool, default profile)
    #[command(subcommand)]
    Admin(cmd::admin::Command),
    /// Manage profiles
    #[command(subcommand)]
    Profile(cmd::profile::Command),
    /// Manage projects
    #[command(subcommand)]
    Project(cmd::project::Command),
    /// Snapshot instances and restore them
    #[command(subcommand)]
    Snapshot(cmd::snapshot::Command),
    /// Manage storage pools
    #[command(subcommand)]
    Storage(cmd::storage::Command),
    /// Manage networks and attach instances to them
    #[command(subcommand)]
    Network(cmd::network::Command),
    /// List, acknowledge and delete the server's warnings
    #[command(subcommand)]
    Warning(cmd::warning::Command),
    /// Manage the servers this client drives
    #[command(subcommand)]
    Remote(cmd::remote::Command),
    /// Send a raw request to the API
    Query(cmd::query::Args),
    /// Print a shell completion script
    Completion(cmd::completion::Args),
}

/// Output piped into a reader that stopped early (`berth list | head`) ends the command
/// quietly with the status of a tool killed by SIGPIPE, not with `print!`'s panic.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_broken_pipe();
    let cli = Cli::parse();
    if let Command::Completion(args) = &cli.command {
        cmd::completion::run(args, &mut Cli::command());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: failed to start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Remote(c) = cli.command {
        return finish(runtime.block_on(cmd::remote::run(c)));
    }
    remote::set_projects(cli.project, cmd::project::current(None));
    let client = match remote::default_client() {
        Ok(c) => c,
        Err(e) => return finish(Err(e)),
    };
    // exec and shell exit with the command's own code.
    let exec_args = match cli.command {
        Command::Exec(a) => Some(a),
        Command::Shell { name } => Some(cmd::exec::Args::shell(name)),
        other => {
            return finish(runtime.block_on(dispatch(&client, other)));
        }
    };
    match exec_args.map(|a| runtime.block_on(cmd::exec::run(&client, a))) {
        Some(Ok(code)) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Some(Err(e)) => finish(Err(e)),
        None => ExitCode::SUCCESS,
    }
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(client: &berth_client::Client, command: Command) -> anyhow::Result<()> {
    let client = client.clone();
    {
        match command {
            Command::Info(a) => cmd::info::run(&client, a).await,
            Command::Version(a) => cmd::version::run(&client, a).await,
            Command::Monitor(a) => cmd::monitor::run(&client, a).await,
            Command::Operation(c) => cmd::operation::run(&client, c).await,
            Command::Query(a) => cmd::query::run(&client, a).await,
            Command::Image(c) => cmd::image::run(&client, c).await,
            Command::Launch(a) => cmd::launch::run(&client, a, true).await,
            Command::Init(a) => cmd::launch::run(&client, a, false).await,
            Command::Start(a) => cmd::lifecycle::run(&client, a, "start").await,
            Command::Stop(a) => cmd::lifecycle::run(&client, a, "stop").await,
            Command::Restart(a) => cmd::lifecycle::run(&client, a, "restart").await,
            Command::Pause(a) => cmd::lifecycle::run(&client, a, "freeze").await,
            Command::Resume(a) => cmd::lifecycle::run(&client, a, "unfreeze").await,
            Command::Delete(a) => cmd::delete::run(&client, a).await,
            Command::Rename(a) => cmd::rename::run(&client, a).await,
            Command::Publish(a) => cmd::publish::run(&client, a).await,
            Command::Export(a) => cmd::backup::export(&client, a).await,
            Command::Import(a) => cmd::backup::import(&client, a).await,
            Command::Copy(a) => cmd::copy::run(&client, a).await,
            Command::Move(a) => cmd::r#move::run(&client, a).await,
            Command::File(c) => cmd::file::run(&client, c).await,
            Command::Console(a) => cmd::console::run(&client, a).await,
            Command::Config(c) => cmd::config::run(&client, c).await,
            Command::List(a) => cmd::list::run(&client, a).await,
            Command::Storage(c) => cmd::storage::run(&client, c).await,
            Command::Network(c) => cmd::network::run(&client, c).await,
            Command::Warning(c) => cmd::warning::run(&client, c).await,
            Command::Profile(c) => cmd::profile::run(&client, c).await,
            Command::Project(c) => cmd::project::run(&client, c).await,
            Command::Snapshot(c) => cmd::snapshot::run(&client, c).await,
            Command::Admin(c) => cmd::admin::run(&client, c).await,
            Command::Completion(_)
            | Command::Exec(_)
            | Command::Shell { .. }
            | Command::Remote(_) => Ok(()),
        }
    }
}

/// The error and its causes on one line, without repeating a cause the message already ends
/// with.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if out.ends_with(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out.replace('\n', " ")
}
