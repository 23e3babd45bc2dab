//! `/1.0/instances/{name}/console`: attach to a container's console (POST, a websocket
//! operation with a terminal stream `0` and `control`), read its log (GET), clear it
//! (DELETE), as LXD.
//!
//! The console is liblxc's: a pty the container's monitor holds (so it outlives berthd and
//! any client), with a ring buffer and a log file `DIR/containers/NAME/console.log`; or,
//! for a checkpointable instance, its console keeper's (see [`crate::instance::console`]).
//! Attaching to liblxc's runs `berthd forkconsole` on the terminal side of a pty berthd
//! opens, which relays between it and the console until the client detaches (closes
//! `control` or its stream) or the container stops; the log keeps everything across
//! detaches.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::State;
use axum::extract::ws::Message;
use berth_api::OperationClass;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::ops::{OpCtx, OpSpec};
use super::ws::{Control, forward, set_size};
use super::{ApiError, ApiResult, AppState, Json, async_operation, sync_empty};
use crate::error::{Failure, Result};
use crate::instance::console::{self, Console};
use crate::model::names::instance_url;

/// The body of `POST /console`.
#[derive(Debug, Default, Deserialize)]
pub struct ConsolePost {
    #[serde(default)]
    width: Option<u16>,
    #[serde(default)]
    height: Option<u16>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// `POST /1.0/instances/{name}/console`.
pub async fn post(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
    Json(req): Json<ConsolePost>,
) -> ApiResult {
    match req.kind.as_deref() {
        None | Some("" | "console") => {}
        Some("vga") => {
            return Err(ApiError::bad_request(
                "VGA console is only supported by virtual machines",
            ));
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Unknown console type {other:?}"
            )));
        }
    }
    let target = console::attach(&st.cx, &name).await?;
    let mut resources = BTreeMap::new();
    resources.insert("instances".to_owned(), vec![instance_url(&name)]);
    let spec = OpSpec {
        class: OperationClass::Websocket,
        description: "Showing console".to_owned(),
        resources: Some(resources),
        may_cancel: false,
        metadata: serde_json::Map::new(),
        fds: vec!["0".into(), "control".into()],
        fds_at_top: false,
    };
    let size = (req.width.unwrap_or(80), req.height.unwrap_or(24));
    let op = st.ops.start(spec, move |ctx| async move {
        match target {
            Console::Keeper(dir) => attach_keeper(ctx, dir, size).await,
            Console::Liblxc(cmd) => attach(ctx, cmd, size).await,
        }
    });
    Ok(async_operation(op.render()))
}

type Ws = axum::extract::ws::WebSocket;

/// Waits for the terminal stream `0` (clients connect `control` first, then it); returns
/// it and `control` when that came first.
async fn streams(ctx: &mut OpCtx) -> Result<(Ws, Option<Ws>)> {
    let mut control = None;
    loop {
        match ctx.accept().await {
            Some((fd, ws)) if fd == "0" => return Ok((ws, control)),
            Some((_, ws)) => control = Some(ws),
            None => {
                return Err(Failure::internal(
                    "The console operation ended before its stream connected",
                ));
            }
        }
    }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Failure {
    move |e| Failure::failed(what, e)
}

async fn attach(
    mut ctx: OpCtx,
    cmd: std::process::Command,
    (width, height): (u16, u16),
) -> Result<()> {
    let (data, control) = streams(&mut ctx).await?;
    let (master, slave) =
        berth_host::openpty().map_err(|e| Failure::failed("Failed to open a terminal", e))?;
    set_size(&master, width, height);
    // liblxc puts its side of the terminal in raw mode, flushing pending input, when its
    // console loop is ready: watch for that before passing the client's keys on.
    let probe = slave.try_clone().map_err(io("Failed to open a terminal"))?;
    let out = slave.try_clone().map_err(io("Failed to open a terminal"))?;
    let err = slave.try_clone().map_err(io("Failed to open a terminal"))?;
    let mut cmd = tokio::process::Command::from(cmd);
    let child = cmd
        .stdin(slave)
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(io("Failed to run forkconsole"))?;
    let ready = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while rustix::termios::tcgetattr(&probe)
        .is_ok_and(|t| t.local_modes.contains(rustix::termios::LocalModes::ICANON))
        && tokio::time::Instant::now() < ready
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(probe);
    let resize_fd = master
        .try_clone()
        .map_err(io("Failed to open a terminal"))?;
    let reader = std::fs::File::from(
        master
            .try_clone()
            .map_err(io("Failed to open a terminal"))?,
    );
    let writer = std::fs::File::from(master);
    let ends = Ends {
        reader: Box::new(tokio::fs::File::from_std(reader)),
        writer: Box::new(tokio::fs::File::from_std(writer)),
        resize: Box::new(move |w, h| set_size(&resize_fd, w, h)),
    };
    pump(ctx, data, control, ends, Some(child)).await
}

/// The console's side of an attach: its output, its input and how to resize it.
struct Ends {
    reader: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
    writer: Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
    resize: Box<dyn Fn(u16, u16) + Send + Sync>,
}

/// Relays between the client's streams and the console until the client detaches, the
/// console ends or `child` (liblxc's console loop) exits.
async fn pump(
    mut ctx: OpCtx,
    data: Ws,
    mut control: Option<Ws>,
    ends: Ends,
    mut child: Option<tokio::process::Child>,
) -> Result<()> {
    let Ends {
        mut reader,
        mut writer,
        resize,
    } = ends;
    let (mut tx, mut rx) = data.split();
    // Console → client.
    let output = async {
        forward(&mut reader, &mut tx).await;
    };
    // Client → console; a close (or the end of the stream) detaches.
    let input = async {
        while let Some(Ok(msg)) = rx.next().await {
            let bytes: Vec<u8> = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    // Control: window-resize; its close is the detach LXD clients send.
    let controls = async {
        let mut ws = match control.take() {
            Some(ws) => ws,
            None => loop {
                match ctx.accept().await {
                    Some((fd, ws)) if fd == "control" => break ws,
                    Some(_) => {}
                    None => std::future::pending().await,
                }
            },
        };
        while let Some(Ok(msg)) = ws.recv().await {
            let Some(c) = Control::read(msg) else { break };
            if let Some(c) = c
                && c.command == "window-resize"
                && let (Some(w), Some(h)) = c.size()
            {
                resize(w, h);
            }
        }
    };
    let waited = async {
        match child.as_mut() {
            Some(c) => c.wait().await.ok(),
            None => std::future::pending().await,
        }
    };
    let exited = tokio::select! {
        () = output => None,
        () = input => None,
        () = controls => None,
        status = waited => status,
    };
    if let Some(mut child) = child {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    // forkconsole ending by itself with an error (the console could not be attached, or
    // the container stopped under it) fails the operation.
    if let Some(status) = exited
        && !status.success()
    {
        let _ = tx.send(Message::Close(None)).await;
        return Err(Failure::internal("Failed to attach to the console"));
    }
    // Leave the client's terminal on a fresh line, then close the stream properly.
    let _ = tx.send(Message::Binary(b"\n\r".to_vec().into())).await;
    let _ = tx.send(Message::Close(None)).await;
    Ok(())
}

/// Attaches to the console a keeper serves (see `lxc::console`).
async fn attach_keeper(
    mut ctx: OpCtx,
    dir: std::path::PathBuf,
    (width, height): (u16, u16),
) -> Result<()> {
    let (data, control) = streams(&mut ctx).await?;
    let resize = {
        let dir = dir.clone();
        move |w: u16, h: u16| {
            let _ = crate::instance::console::keeper_request(&dir, &format!("resize {w} {h}"));
        }
    };
    let d = dir.clone();
    let conn = tokio::task::spawn_blocking(move || {
        resize(width, height);
        crate::instance::console::keeper_attach(&d).map(|c| (c, resize))
    })
    .await?;
    let (conn, resize) = conn.map_err(|e| {
        Failure::internal(format!(
            "The console keeper does not answer ({e}): restart the instance"
        ))
    })?;
    conn.set_nonblocking(true)
        .map_err(io("Failed to reach the console keeper"))?;
    let conn =
        tokio::net::UnixStream::from_std(conn).map_err(io("Failed to reach the console keeper"))?;
    let (reader, writer) = conn.into_split();
    let ends = Ends {
        reader: Box::new(reader),
        writer: Box::new(writer),
        resize: Box::new(move |w, h| {
            // A quick local request; the keeper answers at once.
            tokio::task::block_in_place(|| resize(w, h));
        }),
    };
    pump(ctx, data, control, ends, None).await
}

/// `GET /1.0/instances/{name}/console`: the console log (the ring buffer of a running
/// container, else the log file).
pub async fn get_log(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
) -> ApiResult {
    let data = console::log(&st.cx, &name).await?;
    let len = data.len() as u64;
    Ok(super::inline_file(Body::from(data), len, "console.log"))
}

/// `DELETE /1.0/instances/{name}/console`: clears the console log.
pub async fn clear_log(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
) -> ApiResult {
    console::clear(&st.cx, &name).await?;
    Ok(sync_empty())
}
