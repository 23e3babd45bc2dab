//! Running the host's own tools (`ip`, `nft`, `dnsmasq`, `cp`, `unsquashfs`…): one runner
//! whose error carries the command line, its exit status and what it said, so a failure
//! reads as one line naming the command and its complaint.

use std::ffi::OsStr;
use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};

/// A host command that could not run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("Failed to run {argv}")]
    Spawn {
        argv: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{argv} failed ({status}): {stderr}")]
    Failed {
        argv: String,
        status: ExitStatus,
        /// Its stderr, trimmed (its last lines when long).
        stderr: String,
        stdout: String,
    },
}

impl CommandError {
    /// What the command wrote on stderr (empty when it could not run).
    pub fn stderr(&self) -> &str {
        match self {
            CommandError::Spawn { .. } => "",
            CommandError::Failed { stderr, .. } => stderr,
        }
    }
}

/// The command line as a user would type it.
fn argv(program: &str, args: &[&OsStr]) -> String {
    std::iter::once(program.to_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The end of what a command said: at most its last 4 lines.
fn tail(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(4)..].join("; ")
}

/// Runs `program` with `args` (stdin empty, the C locale) and returns its stdout.
pub fn run_command<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String, CommandError> {
    run(program, args, None)
}

/// [`run_command`] with `input` on its stdin (`nft -f -`, say).
pub fn run_command_with_input<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    input: &[u8],
) -> Result<String, CommandError> {
    run(program, args, Some(input))
}

fn run<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    input: Option<&[u8]>,
) -> Result<String, CommandError> {
    let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
    let line = || argv(program, &args);
    let mut cmd = Command::new(program);
    crate::die_with_parent(&mut cmd);
    cmd.args(&args)
        .env("LC_ALL", "C")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn = |source| CommandError::Spawn {
        argv: line(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn)?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        // A command that exits without reading all of it fails on its own terms below.
        let _ = stdin.write_all(data);
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(CommandError::Failed {
        argv: line(),
        status: out.status,
        stderr: tail(&out.stderr),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_failures_name_the_command() {
        assert_eq!(run_command("echo", &["a", "b"]).unwrap(), "a b\n");
        let e = run_command("sh", &["-c", "echo one >&2; echo two >&2; exit 3"]).unwrap_err();
        assert_eq!(e.stderr(), "one; two");
        let line = e.to_string();
        assert!(line.starts_with("sh -c echo one"), "{line}");
        assert!(
            line.contains("exit status: 3") && line.ends_with("one; two"),
            "{line}"
        );
        let e = run_command("/nonexistent/tool", &["x"]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Failed to run /nonexistent/tool x")
        );
        assert_eq!(
            run_command_with_input("cat", &[] as &[&str], b"piped").unwrap(),
            "piped"
        );
    }
}
