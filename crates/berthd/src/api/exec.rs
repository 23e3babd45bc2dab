//! `POST /1.0/instances/{name}/exec`: run a command in a container over websockets, as LXD.
//!
//! Non-interactive: streams `0` (stdin), `1` (stdout), `2` (stderr) and `control`, each
//! connected to a pipe of the process. Interactive: stream `0` carries a pseudo-terminal
//! both ways, plus `control` for `window-resize`. On either, `control` also takes
//! `{"command":"signal","signal":N}`, delivered to the process by its host pid.
//!
//! End of stream is exact, as the clients need it: an empty text frame (or a close) from
//! the client on stdin closes the process's stdin; when stdout or stderr reach end of file
//! the server sends a close on that stream. The operation finishes after the process exits
//! and its output is drained, with the exit code in `metadata.return`.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket};
use berth_api::OperationClass;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::ops::{OpCtx, OpSpec};
use super::ws::{Control, forward, set_size};
use super::{ApiResult, AppState, Json, async_operation};
use crate::error::{Failure, Result};
use crate::instance::exec::{self, Exec, ExecRequest};
use crate::model::names::instance_url;

/// The body of an exec request.
#[derive(Debug, Deserialize)]
pub struct ExecPost {
    command: Vec<String>,
    // Clients send null for what they leave to the server (pylxd does): every field but
    // `command` is optional.
    #[serde(default)]
    environment: Option<BTreeMap<String, String>>,
    #[serde(default)]
    interactive: Option<bool>,
    #[serde(rename = "wait-for-websocket", default)]
    wait_for_websocket: Option<bool>,
    #[serde(default)]
    width: Option<u16>,
    #[serde(default)]
    height: Option<u16>,
    #[serde(default)]
    user: Option<u32>,
    #[serde(default)]
    group: Option<u32>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(rename = "record-output", default)]
    record_output: Option<bool>,
}

/// `POST /1.0/instances/{name}/exec`.
pub async fn post(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
    Json(req): Json<ExecPost>,
) -> ApiResult {
    let interactive = req.interactive.unwrap_or(false);
    let wait = req.wait_for_websocket.unwrap_or(false);
    let command = req.command.clone();
    // Without websockets (as LXD): a plain task, no terminal, stdin empty, and the output
    // either recorded into the instance's log files or dropped.
    let exec = exec::prepare(
        &st.cx,
        &name,
        ExecRequest {
            command: req.command,
            environment: req.environment.unwrap_or_default(),
            user: req.user.unwrap_or(0),
            group: req.group.unwrap_or(0),
            cwd: req.cwd,
            pty: interactive && wait,
        },
    )
    .await?;
    let fds: Vec<String> = if interactive {
        vec!["0".into(), "control".into()]
    } else {
        vec!["0".into(), "1".into(), "2".into(), "control".into()]
    };
    let mut metadata = serde_json::Map::new();
    metadata.insert("command".into(), serde_json::json!(command));
    metadata.insert("environment".into(), serde_json::json!(exec.environment));
    metadata.insert("interactive".into(), interactive.into());
    let (class, fds, metadata) = if wait {
        (OperationClass::Websocket, fds, metadata)
    } else {
        (OperationClass::Task, Vec::new(), serde_json::Map::new())
    };
    let record = (!wait && req.record_output.unwrap_or(false)).then(|| {
        exec::record_files(&st.cx, &name)
            .map(|(file, log)| (file, crate::instance::logs::url(&name, &log)))
    });
    let mut resources = BTreeMap::new();
    resources.insert("instances".to_owned(), vec![instance_url(&name)]);
    let op_spec = OpSpec {
        class,
        description: "Executing command".to_owned(),
        resources: Some(resources),
        may_cancel: false,
        metadata,
        fds: fds.clone(),
        fds_at_top: false,
    };
    let (width, height) = (req.width.unwrap_or(80), req.height.unwrap_or(24));
    let op = st.ops.start(op_spec, move |ctx| async move {
        run(
            ctx,
            fds,
            wait,
            Launch {
                exec,
                width,
                height,
                record,
            },
        )
        .await
    });
    Ok(async_operation(op.render()))
}

struct Launch {
    exec: Exec,
    width: u16,
    height: u16,
    /// Where stdout and stderr are recorded (file, API path), for `record-output`.
    record: Option<[(std::path::PathBuf, String); 2]>,
}

fn file(fd: OwnedFd) -> tokio::fs::File {
    tokio::fs::File::from_std(std::fs::File::from(fd))
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> Failure + '_ {
    move |e| Failure::failed(what, e)
}

async fn run(mut ctx: OpCtx, fds: Vec<String>, wait: bool, l: Launch) -> Result<()> {
    let mut sockets: HashMap<String, WebSocket> = HashMap::new();
    // The data streams are required before the command starts; `control` is not (pylxd
    // never opens it) and is taken whenever it comes.
    let required = fds.iter().filter(|f| *f != "control").count();
    if wait {
        while sockets.keys().filter(|f| *f != "control").count() < required {
            match ctx.accept().await {
                Some((fd, ws)) => {
                    sockets.insert(fd, ws);
                }
                None => {
                    return Err(Failure::internal(
                        "Websocket operation ended before all streams connected",
                    ));
                }
            }
        }
    }
    let (mut cmd, pid_r) = l.exec.command()?;
    // The process's ends of its streams, and ours.
    let mut pty_master = None;
    let (mut stdin_w, mut stdout_r, mut stderr_r) = (None, None, None);
    if l.exec.spec.pty {
        let (master, slave) = l.exec.terminal().await?;
        set_size(&master, l.width, l.height);
        let s1 = slave.try_clone().map_err(io("Failed to open a terminal"))?;
        let s2 = slave.try_clone().map_err(io("Failed to open a terminal"))?;
        cmd.stdin(slave).stdout(s1).stderr(s2);
        pty_master = Some(master);
    } else if let Some([(out, _), (err, _)]) = &l.record {
        let create = |p: &std::path::Path| {
            std::fs::File::create(p)
                .map_err(|e| Failure::failed(format!("Failed to create {}", p.display()), e))
        };
        cmd.stdin(std::process::Stdio::null())
            .stdout(create(out)?)
            .stderr(create(err)?);
    } else {
        let pipe = || {
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| Failure::failed("Failed to make a pipe", e))
        };
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        cmd.stdin(in_r).stdout(out_w).stderr(err_w);
        stdin_w = Some(file(in_w));
        stdout_r = Some(file(out_r));
        stderr_r = Some(file(err_r));
    }
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(io("Failed to run forkexec"))?;
    // forkexec reports the command's host pid on the pipe, then closes it.
    let (pid_tx, pid_rx) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        let mut text = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut file(pid_r), &mut text).await;
        let _ = pid_tx.send(
            text.trim()
                .parse::<i32>()
                .ok()
                .and_then(rustix::process::Pid::from_raw),
        );
    });
    let master_handle = pty_master.as_ref().and_then(|m| m.try_clone().ok());
    let mut control_tasks = Vec::new();
    if let Some(ws) = sockets.remove("control") {
        let master = master_handle.as_ref().and_then(|m| m.try_clone().ok());
        control_tasks.push(tokio::spawn(control_loop(ws, pid_rx.clone(), master)));
    }
    let mut pumps = Vec::new();
    if let Some(master) = pty_master {
        let reader = file(
            master
                .try_clone()
                .map_err(io("Failed to open a terminal"))?,
        );
        let writer = file(master);
        if let Some(ws) = sockets.remove("0") {
            pumps.push(tokio::spawn(pty_pump(ws, reader, writer)));
        }
    } else {
        // Without a client stream, stdin is closed at once and output is read and dropped,
        // so the command neither waits for input nor blocks on a full pipe.
        if let (Some(ws), Some(w)) = (sockets.remove("0"), stdin_w.take()) {
            tokio::spawn(stdin_pump(ws, w));
        }
        drop(stdin_w.take());
        for (fd, reader) in [("1", stdout_r.take()), ("2", stderr_r.take())] {
            let Some(r) = reader else { continue };
            match sockets.remove(fd) {
                Some(ws) => pumps.push(tokio::spawn(output_pump(ws, r))),
                None => pumps.push(tokio::spawn(discard(r))),
            }
        }
    }
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(io("Failed to wait for forkexec"))?,
            Some((fd, ws)) = ctx.accept() => {
                if fd == "control" {
                    let master = master_handle.as_ref().and_then(|m| m.try_clone().ok());
                    control_tasks.push(tokio::spawn(control_loop(ws, pid_rx.clone(), master)));
                }
            }
        }
    };
    for p in pumps {
        let _ = p.await;
    }
    for t in control_tasks {
        t.abort();
    }
    let code = status.code().unwrap_or(1);
    let mut md = serde_json::Map::new();
    md.insert("return".into(), code.into());
    if let Some([(_, out), (_, err)]) = &l.record {
        md.insert("output".into(), serde_json::json!({"1": out, "2": err}));
    }
    ctx.set_metadata(md);
    Ok(())
}

/// Client → process stdin. An empty text frame or a close ends stdin.
async fn stdin_pump(mut ws: WebSocket, mut w: tokio::fs::File) {
    while let Some(Ok(msg)) = ws.recv().await {
        let data = match &msg {
            Message::Binary(b) => b.to_vec(),
            Message::Text(t) if !t.is_empty() => t.as_bytes().to_vec(),
            Message::Text(_) | Message::Close(_) => break,
            _ => continue,
        };
        if w.write_all(&data).await.is_err() || w.flush().await.is_err() {
            break;
        }
    }
    drop(w);
    // Keep the socket open until the client closes it, answering pings.
    while let Some(Ok(msg)) = ws.recv().await {
        if matches!(msg, Message::Close(_)) {
            break;
        }
    }
}

/// Process stdout/stderr → client, then a close at end of file.
async fn output_pump(mut ws: WebSocket, mut r: tokio::fs::File) {
    if forward(&mut r, &mut ws).await {
        let _ = ws.send(Message::Close(None)).await;
    }
}

/// Reads a stream to its end and drops what it read.
async fn discard(mut r: tokio::fs::File) {
    let mut sink = tokio::io::sink();
    let _ = tokio::io::copy(&mut r, &mut sink).await;
}

/// A terminal both ways on one socket.
async fn pty_pump(ws: WebSocket, mut r: tokio::fs::File, mut w: tokio::fs::File) {
    use futures_util::{SinkExt, StreamExt};
    let (mut tx, mut rx) = ws.split();
    let input = tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            match msg {
                Message::Binary(b) => {
                    if w.write_all(&b).await.is_err() {
                        break;
                    }
                    let _ = w.flush().await;
                }
                Message::Text(t) if !t.is_empty() => {
                    let _ = w.write_all(t.as_bytes()).await;
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    forward(&mut r, &mut tx).await;
    let _ = tx.send(Message::Close(None)).await;
    input.abort();
}

async fn control_loop(
    mut ws: WebSocket,
    mut pid: tokio::sync::watch::Receiver<Option<rustix::process::Pid>>,
    master: Option<OwnedFd>,
) {
    let pid = pid.wait_for(Option::is_some).await.ok().and_then(|p| *p);
    while let Some(Ok(msg)) = ws.recv().await {
        let Some(c) = Control::read(msg) else { break };
        let Some(c) = c else { continue };
        match c.command.as_str() {
            "signal" => {
                if let (Some(pid), Some(sig)) =
                    (pid, rustix::process::Signal::from_named_raw(c.signal))
                {
                    let _ = rustix::process::kill_process(pid, sig);
                }
            }
            "window-resize" => {
                if let Some(m) = &master {
                    let (w, h) = c.size();
                    set_size(m, w.unwrap_or(0), h.unwrap_or(0));
                }
            }
            _ => {}
        }
    }
}
