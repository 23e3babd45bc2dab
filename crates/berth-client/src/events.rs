//! The events websocket as a stream of [`Event`]s.

use berth_api::Event;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::{ClientError, WebSocket};

/// Events as the server sends them.
#[derive(Debug)]
pub struct EventStream {
    ws: WebSocket,
}

impl EventStream {
    pub(crate) fn new(ws: WebSocket) -> Self {
        EventStream { ws }
    }

    /// The next event; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Option<Result<Event, ClientError>> {
        loop {
            let msg = match self.ws.next().await? {
                Ok(m) => m,
                Err(e) => return Some(Err(ClientError::WebSocket(Box::new(e)))),
            };
            let data = match msg {
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Binary(b) => b.to_vec(),
                Message::Close(_) => return None,
                _ => continue,
            };
            return Some(
                serde_json::from_slice(&data).map_err(|source| ClientError::Decode {
                    path: "/1.0/events".to_owned(),
                    source,
                }),
            );
        }
    }
}
