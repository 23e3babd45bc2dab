//! `berth exec NAME [-t|-T] [--env K=V] [--user U] [--group G] [--cwd D] -- CMD...` and
//! `berth shell NAME`: run a command in a container, as `lxc exec` does.

use std::io::IsTerminal;

use berth_client::{Client, Method, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::tty::{RawMode, term_size};

/// Arguments of `berth exec`.
#[derive(Debug, clap::Args)]
pub struct Args {
    name: String,
    /// Force a terminal
    #[arg(short = 't', long = "force-interactive", conflicts_with = "no_tty")]
    tty: bool,
    /// Never use a terminal
    #[arg(short = 'T', long = "force-noninteractive")]
    no_tty: bool,
    /// Environment variable KEY=VALUE (repeatable)
    #[arg(long = "env")]
    env: Vec<String>,
    /// User id to run as
    #[arg(long, default_value_t = 0)]
    user: u32,
    /// Group id to run as
    #[arg(long, default_value_t = 0)]
    group: u32,
    /// Directory to run in
    #[arg(long, default_value = "")]
    cwd: String,
    /// The command and its arguments
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

impl Args {
    /// `berth shell NAME`: `exec NAME -- su -l`, as LXD's built-in alias.
    pub fn shell(name: String) -> Args {
        Args {
            name,
            tty: false,
            no_tty: false,
            env: vec![],
            user: 0,
            group: 0,
            cwd: String::new(),
            command: vec!["su".to_owned(), "-l".to_owned()],
        }
    }
}

pub async fn run(client: &Client, mut args: Args) -> anyhow::Result<i32> {
    let (client, name) = crate::remote::target(client, &args.name)?;
    let client = &client;
    args.name = name;
    let interactive = if args.tty {
        true
    } else if args.no_tty {
        false
    } else {
        std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
    };
    let mut env = serde_json::Map::new();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("Invalid --env {kv:?}: expected KEY=VALUE"))?;
        env.insert(k.to_owned(), v.into());
    }
    if interactive && let Ok(term) = std::env::var("TERM") {
        env.entry("TERM").or_insert(term.into());
    }
    let (width, height) = term_size();
    let body = serde_json::json!({
        "command": args.command, "environment": env, "interactive": interactive,
        "wait-for-websocket": true, "width": width, "height": height,
        "user": args.user, "group": args.group, "cwd": args.cwd,
    });
    let r = client
        .query(
            Method::POST,
            &format!("/1.0/instances/{}/exec", args.name),
            Some(&body),
        )
        .await?;
    let id = r.body.operation_id().unwrap_or_default().to_owned();
    let fds = r.body.metadata["metadata"]["fds"].clone();
    let secret = |fd: &str| fds[fd].as_str().unwrap_or_default().to_owned();
    let control = client.operation_websocket(&id, &secret("control")).await?;
    let (mut control_tx, mut control_rx) = control.split();
    tokio::spawn(async move { while let Some(Ok(_)) = control_rx.next().await {} });

    if interactive {
        let ws = client.operation_websocket(&id, &secret("0")).await?;
        let _raw = RawMode::enter();
        let (mut tx, mut rx) = ws.split();
        let input = tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = stdin.read(&mut buf).await {
                if n == 0
                    || tx
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                {
                    break;
                }
            }
        });
        let resize = tokio::spawn(async move {
            let Ok(mut winch) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            while winch.recv().await.is_some() {
                let (w, h) = term_size();
                let msg = serde_json::json!({"command": "window-resize", "args": {"width": w.to_string(), "height": h.to_string()}});
                if control_tx
                    .send(Message::Text(msg.to_string().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let mut stdout = tokio::io::stdout();
        while let Some(Ok(msg)) = rx.next().await {
            match msg {
                Message::Binary(b) => {
                    stdout.write_all(&b).await?;
                    stdout.flush().await?;
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        input.abort();
        resize.abort();
    } else {
        let ws0 = client.operation_websocket(&id, &secret("0")).await?;
        let ws1 = client.operation_websocket(&id, &secret("1")).await?;
        let ws2 = client.operation_websocket(&id, &secret("2")).await?;
        let input = tokio::spawn(send_stdin(ws0));
        let signals = tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                return;
            };
            loop {
                let sig = tokio::select! { _ = int.recv() => 2, _ = term.recv() => 15, _ = hup.recv() => 1 };
                let msg = serde_json::json!({"command": "signal", "signal": sig});
                if control_tx
                    .send(Message::Text(msg.to_string().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let out = tokio::spawn(copy_out(ws1, false));
        let err = tokio::spawn(copy_out(ws2, true));
        let _ = out.await;
        let _ = err.await;
        input.abort();
        signals.abort();
    }
    let op = client.wait_operation(&id, None).await?;
    if op.status_code != berth_api::StatusCode::Success {
        anyhow::bail!("{}", op.err);
    }
    let code = op
        .metadata
        .as_ref()
        .and_then(|m| m.get("return"))
        .and_then(|v| v.as_i64())
        .unwrap_or(1);
    Ok(i32::try_from(code).unwrap_or(1))
}

async fn send_stdin(mut ws: WebSocket) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if ws
                    .send(Message::Binary(buf[..n].to_vec().into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    // End of stdin: an empty text frame, as LXD clients send.
    let _ = ws.send(Message::Text("".into())).await;
    while let Some(Ok(m)) = ws.next().await {
        if matches!(m, Message::Close(_)) {
            break;
        }
    }
}

async fn copy_out(mut ws: WebSocket, stderr: bool) -> std::io::Result<()> {
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = if stderr {
        Box::new(tokio::io::stderr())
    } else {
        Box::new(tokio::io::stdout())
    };
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Binary(b) => {
                out.write_all(&b).await?;
                out.flush().await?;
            }
            Message::Text(t) if t.is_empty() => break,
            Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}
