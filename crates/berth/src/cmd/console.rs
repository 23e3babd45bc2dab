//! `berth console NAME [--show-log]`: attach to an instance's console (detach with
//! ctrl+a q), or print its console log.

use berth_client::{Client, Method};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::tty::{RawMode, term_size};

/// Arguments of `berth console`.
#[derive(Debug, clap::Args)]
pub struct Args {
    name: String,
    /// Print the console log instead of attaching
    #[arg(long)]
    show_log: bool,
}

/// ctrl+a: the first key of the detach sequence.
const ESCAPE: u8 = 0x01;

pub async fn run(client: &Client, mut args: Args) -> anyhow::Result<()> {
    let (target, name) = crate::remote::target(client, &args.name)?;
    let client = &target;
    args.name = name;
    if args.show_log {
        let log = client
            .get_file(&format!("/1.0/instances/{}/console", args.name))
            .await?;
        let mut out = tokio::io::stdout();
        out.write_all(&log).await?;
        out.flush().await?;
        return Ok(());
    }
    let (width, height) = term_size();
    let body = serde_json::json!({"width": width, "height": height, "type": "console"});
    let r = client
        .query(
            Method::POST,
            &format!("/1.0/instances/{}/console", args.name),
            Some(&body),
        )
        .await?;
    let id = r.body.operation_id().unwrap_or_default().to_owned();
    let fds = r.body.metadata["metadata"]["fds"].clone();
    let secret = |fd: &str| fds[fd].as_str().unwrap_or_default().to_owned();
    let control = client.operation_websocket(&id, &secret("control")).await?;
    let data = client.operation_websocket(&id, &secret("0")).await?;
    eprint!("To detach from the console, press: <ctrl>+a q\r\n");
    let _raw = RawMode::enter();
    let (mut control_tx, mut control_rx) = control.split();
    let (mut tx, mut rx) = data.split();
    let (detach_tx, mut detach_rx) = tokio::sync::mpsc::channel::<()>(1);
    let input = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 4096];
        let mut escaped = false;
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let mut out = Vec::with_capacity(n);
            for &b in &buf[..n] {
                if escaped {
                    escaped = false;
                    if b == b'q' {
                        let _ = detach_tx.send(()).await;
                        return;
                    }
                    out.push(ESCAPE);
                    if b == ESCAPE {
                        continue;
                    }
                } else if b == ESCAPE {
                    escaped = true;
                    continue;
                }
                out.push(b);
            }
            if !out.is_empty() && tx.send(Message::Binary(out.into())).await.is_err() {
                break;
            }
        }
        let _ = detach_tx.send(()).await;
    });
    let (resize_tx, mut resize_rx) = tokio::sync::mpsc::channel::<(u16, u16)>(4);
    let winch = tokio::spawn(async move {
        let Ok(mut sig) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while sig.recv().await.is_some() {
            if resize_tx.send(term_size()).await.is_err() {
                break;
            }
        }
    });
    let mut stdout = tokio::io::stdout();
    loop {
        tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    stdout.write_all(&b).await?;
                    stdout.flush().await?;
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            Some((w, h)) = resize_rx.recv() => {
                let msg = serde_json::json!({"command": "window-resize", "args": {"width": w.to_string(), "height": h.to_string()}});
                let _ = control_tx.send(Message::Text(msg.to_string().into())).await;
            }
            _ = detach_rx.recv() => break,
            _ = control_rx.next() => {}
        }
    }
    // Detach: closing control is what LXD clients send.
    let _ = control_tx.send(Message::Close(None)).await;
    input.abort();
    winch.abort();
    let _ = client
        .wait_operation(&id, Some(std::time::Duration::from_secs(5)))
        .await;
    eprint!("\r\n");
    Ok(())
}
