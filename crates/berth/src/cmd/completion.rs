//! `berth completion bash|zsh|fish`.

use clap_complete::Shell;

/// Arguments of `berth completion`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to write a completion script for
    #[arg(value_enum)]
    shell: CompletionShell,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

pub fn run(args: &Args, cmd: &mut clap::Command) {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    clap_complete::generate(shell, cmd, "berth", &mut std::io::stdout());
}
