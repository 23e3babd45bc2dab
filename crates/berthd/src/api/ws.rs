//! What exec and console websockets share: pumping a stream's output to a client, and
//! reading the `control` stream's messages.

use std::collections::BTreeMap;

use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Sends what `r` reads, as binary messages, until it ends (or fails: EIO once every
/// holder of a terminal's other side has closed it). Returns whether the client is still
/// there.
pub async fn forward<S>(r: &mut (impl AsyncRead + Unpin + ?Sized), tx: &mut S) -> bool
where
    S: Sink<Message> + Unpin,
{
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                if tx
                    .send(Message::Binary(buf[..n].to_vec().into()))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        }
    }
}

/// A message on a `control` stream.
#[derive(Debug, Deserialize)]
pub struct Control {
    pub command: String,
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    #[serde(default)]
    pub signal: i32,
}

impl Control {
    /// Reads a control message; `None` for a close, `Some(None)` for one to ignore.
    pub fn read(msg: Message) -> Option<Option<Control>> {
        let text = match msg {
            Message::Text(t) => t.to_string(),
            Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
            Message::Close(_) => return None,
            _ => return Some(None),
        };
        Some(serde_json::from_str(&text).ok())
    }

    /// The size a `window-resize` asks for: (width, height).
    pub fn size(&self) -> (Option<u16>, Option<u16>) {
        let get = |k: &str| self.args.get(k).and_then(|v| v.parse::<u16>().ok());
        (get("width"), get("height"))
    }
}

/// Sets a terminal's window size (at least 1×1).
pub fn set_size(fd: &std::os::fd::OwnedFd, width: u16, height: u16) {
    let _ = rustix::termios::tcsetwinsize(
        fd,
        rustix::termios::Winsize {
            ws_row: height.max(1),
            ws_col: width.max(1),
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    );
}
