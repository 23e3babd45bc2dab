//! `/1.0/instances/{name}/console`: attach to a container's console (POST, a websocket
//! operation with a terminal stream `0` and `control`), read its log (GET), clear it
//! (DELETE), as LXD.
//!
//! The console is liblxc's: a pty the container's monitor holds (so it outlives berthd and
//! any client), with a ring buffer and a log file `DIR/containers/NAME/console.log`.
//! Attaching runs `berthd forkconsole` on the terminal side of a pty berthd opens, which
//! relays between it and the console until the client detaches (closes `control` or its
//! stream) or the container stops; the log keeps everything across detaches.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::State;
use axum::extract::ws::Message;
use berth_api::{OperationClass, StatusCode};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ApiError, ApiResult, AppState, Json, async_operation, sync};
use crate::operations::{OpCtx, OpSpec};

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

#[derive(Debug, Deserialize)]
struct Control {
    command: String,
    #[serde(default)]
    args: BTreeMap<String, String>,
}

async fn running(st: &AppState, name: &str) -> Result<bool, ApiError> {
    super::instances::find(st, name).await?;
    Ok(super::instances::status_of(st, name).await.0 != StatusCode::Stopped)
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
    if !running(&st, &name).await? {
        return Err(ApiError::bad_request("Instance is not running"));
    }
    let mut resources = BTreeMap::new();
    resources.insert("instances".to_owned(), vec![super::instances::url(&name)]);
    let spec = OpSpec {
        class: OperationClass::Websocket,
        description: "Showing console".to_owned(),
        resources: Some(resources),
        may_cancel: false,
        metadata: serde_json::Map::new(),
        fds: vec!["0".into(), "control".into()],
    };
    let dir = crate::instances::container_dir(&st, &name);
    let lxcpath = st.paths.containers();
    let size = (req.width.unwrap_or(80), req.height.unwrap_or(24));
    let op = st.ops.start(spec, move |ctx| async move {
        if has_keeper(&dir) {
            attach_keeper(ctx, dir, size).await
        } else {
            attach(ctx, name, lxcpath, dir.join("lxc.conf"), size).await
        }
    });
    Ok(async_operation(op.render()))
}

type Ws = axum::extract::ws::WebSocket;

/// Waits for the terminal stream `0` (clients connect `control` first, then it); returns
/// it and `control` when that came first.
async fn streams(ctx: &mut OpCtx) -> Result<(Ws, Option<Ws>), String> {
    let mut control = None;
    loop {
        match ctx.accept().await {
            Some((fd, ws)) if fd == "0" => return Ok((ws, control)),
            Some((_, ws)) => control = Some(ws),
            None => return Err("The console operation ended before its stream connected".into()),
        }
    }
}

async fn attach(
    mut ctx: OpCtx,
    name: String,
    lxcpath: std::path::PathBuf,
    config: std::path::PathBuf,
    (width, height): (u16, u16),
) -> Result<(), String> {
    let (data, control) = streams(&mut ctx).await?;
    let (master, slave) =
        berth_host::openpty().map_err(|e| format!("Failed to open a terminal: {e}"))?;
    let set_size = |fd: &std::os::fd::OwnedFd, w: u16, h: u16| {
        let _ = rustix::termios::tcsetwinsize(
            fd,
            rustix::termios::Winsize {
                ws_row: h.max(1),
                ws_col: w.max(1),
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        );
    };
    set_size(&master, width, height);
    // liblxc puts its side of the terminal in raw mode, flushing pending input, when its
    // console loop is ready: watch for that before passing the client's keys on.
    let probe = slave.try_clone().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = slave.try_clone().map_err(|e| e.to_string())?;
    let err = slave.try_clone().map_err(|e| e.to_string())?;
    let child = tokio::process::Command::new(exe)
        .arg("forkconsole")
        .arg(&name)
        .arg(&lxcpath)
        .arg(&config)
        .stdin(slave)
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("Failed to run forkconsole: {e}"))?;
    let ready = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while rustix::termios::tcgetattr(&probe)
        .is_ok_and(|t| t.local_modes.contains(rustix::termios::LocalModes::ICANON))
        && tokio::time::Instant::now() < ready
    {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(probe);
    let resize_fd = master.try_clone().map_err(|e| e.to_string())?;
    let reader = std::fs::File::from(master.try_clone().map_err(|e| e.to_string())?);
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
    data: axum::extract::ws::WebSocket,
    mut control: Option<axum::extract::ws::WebSocket>,
    ends: Ends,
    mut child: Option<tokio::process::Child>,
) -> Result<(), String> {
    let Ends {
        mut reader,
        mut writer,
        resize,
    } = ends;
    let (mut tx, mut rx) = data.split();
    // Console → client.
    let output = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
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
        loop {
            let ws = match control.take() {
                Some(ws) => ws,
                None => match ctx.accept().await {
                    Some((fd, ws)) if fd == "control" => ws,
                    Some(_) => continue,
                    None => std::future::pending().await,
                },
            };
            let mut ws = ws;
            while let Some(Ok(msg)) = ws.recv().await {
                let text = match msg {
                    Message::Text(t) => t.to_string(),
                    Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if let Ok(c) = serde_json::from_str::<Control>(&text)
                    && c.command == "window-resize"
                {
                    let get = |k: &str| c.args.get(k).and_then(|v| v.parse::<u16>().ok());
                    if let (Some(w), Some(h)) = (get("width"), get("height")) {
                        resize(w, h);
                    }
                }
            }
            return;
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
        return Err("Failed to attach to the console".to_owned());
    }
    // Leave the client's terminal on a fresh line, then close the stream properly.
    let _ = tx.send(Message::Binary(b"\n\r".to_vec().into())).await;
    let _ = tx.send(Message::Close(None)).await;
    Ok(())
}

/// Whether a console keeper serves this container's console (a checkpointable one).
fn has_keeper(dir: &std::path::Path) -> bool {
    dir.join(crate::instances::console::SOCKET).exists()
}

/// Attaches to the console a keeper serves (see [`crate::instances::console`]).
async fn attach_keeper(
    mut ctx: OpCtx,
    dir: std::path::PathBuf,
    (width, height): (u16, u16),
) -> Result<(), String> {
    let (data, control) = streams(&mut ctx).await?;
    let resize = {
        let dir = dir.clone();
        move |w: u16, h: u16| {
            let _ = crate::instances::console::request(&dir, &format!("resize {w} {h}"));
        }
    };
    let d = dir.clone();
    let conn = tokio::task::spawn_blocking(move || {
        resize(width, height);
        crate::instances::console::connect(&d, "attach").map(|c| (c, resize))
    })
    .await
    .map_err(|e| e.to_string())?;
    let (conn, resize) = conn
        .map_err(|e| format!("The console keeper does not answer ({e}): restart the instance"))?;
    conn.set_nonblocking(true).map_err(|e| e.to_string())?;
    let conn = tokio::net::UnixStream::from_std(conn).map_err(|e| e.to_string())?;
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

/// The last `max` bytes of file `path` (none when it cannot be read).
fn tail(path: &std::path::Path, max: u64) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut out = Vec::new();
    let _ = f.take(max).read_to_end(&mut out);
    out
}

fn log_path(st: &AppState, name: &str) -> std::path::PathBuf {
    crate::instances::container_dir(st, name).join("console.log")
}

/// `GET /1.0/instances/{name}/console`: the console log (the ring buffer of a running
/// container, else the log file).
pub async fn get_log(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
) -> ApiResult {
    let is_running = running(&st, &name).await?;
    let lxcpath = st.paths.containers();
    let file = log_path(&st, &name);
    let n = name.clone();
    let dir = crate::instances::container_dir(&st, &name);
    let data = tokio::task::spawn_blocking(move || -> Vec<u8> {
        if has_keeper(&dir)
            && let Ok(buf) = crate::instances::console::request(&dir, "log")
        {
            return buf;
        }
        if is_running
            && let Ok(Ok(buf)) =
                berth_lxc::Container::new(&n, &lxcpath).map(|c| c.console_log(false))
            && !buf.is_empty()
        {
            return buf;
        }
        tail(&file, 1 << 20)
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    let len = data.len() as u64;
    Ok(super::inline_file(Body::from(data), len, "console.log"))
}

/// `DELETE /1.0/instances/{name}/console`: clears the console log.
pub async fn clear_log(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
) -> ApiResult {
    let is_running = running(&st, &name).await?;
    let lxcpath = st.paths.containers();
    let file = log_path(&st, &name);
    let dir = crate::instances::container_dir(&st, &name);
    tokio::task::spawn_blocking(move || {
        if has_keeper(&dir) {
            let _ = crate::instances::console::request(&dir, "clear");
        } else if is_running && let Ok(c) = berth_lxc::Container::new(&name, &lxcpath) {
            let _ = c.console_log(true);
        }
        if file.exists() {
            let _ = std::fs::File::create(&file);
        }
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    Ok(sync(serde_json::Value::Object(serde_json::Map::new())))
}
