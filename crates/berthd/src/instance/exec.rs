//! Running a command in an instance: its environment and the `berthd forkexec` helper
//! that attaches to the container. The API's exec websockets carry its streams.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use berth_api::StatusCode;

pub use crate::lxc::ExecSpec;

use super::{blocking, find};
use crate::ctx::Ctx;
use crate::error::{Failure, Result};

/// What a command gets besides its arguments.
#[derive(Debug, Default)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub user: u32,
    pub group: u32,
    pub cwd: Option<String>,
    /// Stdin is a terminal.
    pub pty: bool,
}

/// A command ready to run in instance `name`.
#[derive(Debug)]
pub struct Exec {
    pub name: String,
    lxcpath: PathBuf,
    pub spec: ExecSpec,
    /// Its whole environment, as reported in the operation.
    pub environment: BTreeMap<String, String>,
}

/// Checks that instance `name` runs and makes its command's environment: LXD's
/// defaults, then the instance's `environment.*` keys, then the request's.
pub async fn prepare(cx: &Ctx, name: &str, req: ExecRequest) -> Result<Exec> {
    if req.command.is_empty() {
        return Err(Failure::invalid(
            "Invalid value for field \"command\": it is empty",
        ));
    }
    let rec = find(cx, name).await?;
    let n = name.to_owned();
    let (status, _) = blocking(cx, move |d| d.status(&n)).await?;
    // A frozen instance takes commands (they run once it thaws), as before.
    if !matches!(status, StatusCode::Running | StatusCode::Frozen) {
        return Err(Failure::invalid("Instance is not running"));
    }
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert(
        "PATH".into(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    );
    env.insert("LANG".into(), "C.UTF-8".into());
    let home = if req.user == 0 { "/root" } else { "/" };
    env.insert("HOME".into(), home.into());
    if req.user == 0 {
        env.insert("USER".into(), "root".into());
    }
    for (k, v) in &rec.config {
        if let Some(var) = k.strip_prefix("environment.") {
            env.insert(var.to_owned(), v.clone());
        }
    }
    env.extend(req.environment);
    let spec = ExecSpec {
        argv: req.command,
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        uid: req.user,
        gid: req.group,
        // As LXD: without a cwd, commands start in the user's home.
        cwd: req
            .cwd
            .filter(|c| !c.is_empty())
            .or_else(|| env.get("HOME").cloned())
            .unwrap_or_else(|| "/".to_owned()),
        pty: req.pty,
    };
    Ok(Exec {
        name: name.to_owned(),
        lxcpath: cx.driver.lxcpath().to_owned(),
        spec,
        environment: env,
    })
}

impl Exec {
    /// The `berthd forkexec` command, without its stdio, and the pipe end on which it
    /// reports the command's host pid.
    pub fn command(&self) -> Result<(std::process::Command, OwnedFd)> {
        let spec = serde_json::to_string(&self.spec)
            .map_err(|e| Failure::failed("Failed to pass the command to forkexec", e))?;
        let mut cmd = crate::lxc::fork::command("forkexec")?;
        cmd.arg(&self.name)
            .arg(&self.lxcpath)
            .arg(self.lxcpath.join(&self.name).join("lxc.conf"))
            .arg(spec);
        let (pid_r, pid_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| Failure::failed("Failed to make a pipe", e))?;
        berth_host::pass_fd(&mut cmd, pid_w, 3);
        Ok((cmd, pid_r))
    }

    /// A terminal for the command, from the container's own devpts so that inside it
    /// has a name (the host's when that cannot be had): (master, slave).
    pub async fn terminal(&self) -> Result<(OwnedFd, OwnedFd)> {
        let (n, p) = (self.name.clone(), self.lxcpath.clone());
        tokio::task::spawn_blocking(move || crate::lxc::fork::terminal(&p, &n)).await?
    }
}

/// Where the output of a command run with `record-output` goes: (file, log name) for
/// stdout and stderr.
pub fn record_files(cx: &Ctx, name: &str) -> [(PathBuf, String); 2] {
    let id = uuid::Uuid::new_v4();
    let dir = cx.paths.container(name);
    let file = |ext: &str| {
        let f = format!("exec_{id}.{ext}");
        (dir.join(&f), f)
    };
    [file("stdout"), file("stderr")]
}
