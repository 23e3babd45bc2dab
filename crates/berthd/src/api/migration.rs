//! The transport of migrations between hosts: the websockets the protocol runs over
//! (served as an operation's, or dialled at the peer's operation), handed to
//! [`crate::instance::migrate`] as frame channels.
//!
//! ```text
//!   pull (default)  source: POST /1.0/instances/NAME {migration} → websocket operation
//!                   {"control": S, "fs": S, "criu": S (live only)}; target: POST
//!                   /1.0/instances {source: {type: migration, mode: pull, operation,
//!                   certificate, secrets}} → dials them
//!   push            target: POST /1.0/instances {source: {mode: push}} → websocket
//!                   operation; source: POST /1.0/instances/NAME {migration, target:
//!                   {operation, certificate, secrets}} → dials them
//!   relay           both serve; the client joins their websockets
//! ```
//!
//! A dialled peer is pinned to the certificate the client passed (its name is not
//! checked); berthd shows none of its own (the secret is the key, as in LXD).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use berth_api::OperationClass;
use berth_api::instance::InstancesPost;
use berth_client::WebSocketMessage as ClientMessage;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::ops::{OpCtx, OpSpec};
use super::{ApiError, ApiResult, AppState, async_operation};
use crate::error::{Failure, Result};
use crate::instance::migrate::{self, Conn, Conns, Frame, streams};
use crate::instance::{create, migrate::check_send};
use crate::model::names::instance_url;

/// How long the peer has to connect both streams.
const CONNECT: Duration = Duration::from_secs(30);

/// The body of `POST /1.0/instances/{name}` that starts a migration's source.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct MigrationPost {
    pub live: Option<bool>,
    pub instance_only: bool,
    pub container_only: bool,
    pub target: Option<MigrationTarget>,
    /// A move to another pool or project of the same server: not supported yet.
    pub pool: String,
    pub project: String,
}

/// Where a pushing source dials.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct MigrationTarget {
    pub certificate: String,
    pub operation: String,
    pub secrets: BTreeMap<String, String>,
}

/// What a websocket message is to a migration: a frame, nothing (a ping), or the end.
enum Read {
    Frame(Frame),
    Skip,
    End,
}

/// Frames to and from websocket `ws`, whichever library's: `to_msg` and `read` convert,
/// `close` is sent when the service drops its sender.
fn conn_over<W, M, E>(ws: W, to_msg: fn(Frame) -> M, read: fn(M) -> Read, close: M) -> Conn
where
    W: futures_util::Sink<M>
        + futures_util::Stream<Item = std::result::Result<M, E>>
        + Send
        + 'static,
    M: Send + 'static,
    E: Send + 'static,
{
    let (out_tx, mut out_rx) = mpsc::channel::<Frame>(16);
    let (in_tx, in_rx) = mpsc::channel::<Frame>(16);
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let writer = async move {
            while let Some(f) = out_rx.recv().await {
                if sink.send(to_msg(f)).await.is_err() {
                    return;
                }
            }
            let _ = sink.send(close).await;
        };
        let reader = async move {
            while let Some(Ok(m)) = stream.next().await {
                match read(m) {
                    Read::Frame(f) => {
                        if in_tx.send(f).await.is_err() {
                            break;
                        }
                    }
                    Read::Skip => {}
                    Read::End => break,
                }
            }
        };
        tokio::join!(writer, reader);
    });
    Conn {
        tx: out_tx,
        rx: in_rx,
    }
}

/// Frames to and from a websocket a peer opened to us.
fn conn_of_server(ws: WebSocket) -> Conn {
    conn_over(
        ws,
        |f| match f {
            Frame::Binary(b) => Message::Binary(b.into()),
            Frame::Text(t) => Message::Text(t.into()),
        },
        |m| match m {
            Message::Binary(b) => Read::Frame(Frame::Binary(b.to_vec())),
            Message::Text(t) => Read::Frame(Frame::Text(t.to_string())),
            Message::Close(_) => Read::End,
            _ => Read::Skip,
        },
        Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })),
    )
}

/// Frames to and from a websocket we dialled.
fn conn_of_client(ws: berth_client::WebSocket) -> Conn {
    conn_over(
        ws,
        |f| match f {
            Frame::Binary(b) => ClientMessage::Binary(b.into()),
            Frame::Text(t) => ClientMessage::Text(t.into()),
        },
        |m| match m {
            ClientMessage::Binary(b) => Read::Frame(Frame::Binary(b.to_vec())),
            ClientMessage::Text(t) => Read::Frame(Frame::Text(t.to_string())),
            ClientMessage::Close(_) => Read::End,
            _ => Read::Skip,
        },
        ClientMessage::Close(None),
    )
}

/// Waits for the peer to connect the streams of operation `ctx` (`criu` too when `live`).
async fn accept(ctx: &mut OpCtx, live: bool) -> Result<Conns> {
    let mut got: BTreeMap<String, WebSocket> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + CONNECT;
    while streams(live).iter().any(|s| !got.contains_key(*s)) {
        match tokio::time::timeout_at(deadline, ctx.accept()).await {
            Ok(Some((fd, ws))) => {
                got.insert(fd, ws);
            }
            Ok(None) => return Err(Failure::internal("The migration ended before it connected")),
            Err(_) => {
                return Err(Failure::unavailable(
                    "Timed out waiting for migration connections",
                ));
            }
        }
    }
    let mut take = |n: &str| got.remove(n).map(conn_of_server);
    match (take("control"), take("fs"), take("criu")) {
        (Some(control), Some(fs), criu) => Ok(Conns { control, fs, criu }),
        _ => Err(Failure::internal("Migration streams missing")),
    }
}

/// Dials the streams of the peer's operation at `url`
/// (`https://HOST:PORT/1.0/operations/ID`), pinned to `certificate`.
async fn dial(
    url: &str,
    certificate: &str,
    secrets: &BTreeMap<String, String>,
    live: bool,
) -> Result<Conns> {
    let rest = url.strip_prefix("https://").ok_or_else(|| {
        Failure::invalid(format!("Invalid migration operation {url:?}: not https://"))
    })?;
    let (host, path) = rest
        .split_once('/')
        .ok_or_else(|| Failure::invalid(format!("Invalid migration operation {url:?}")))?;
    let id = path
        .strip_prefix("1.0/operations/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .ok_or_else(|| Failure::invalid(format!("Invalid migration operation {url:?}")))?;
    if certificate.trim().is_empty() {
        return Err(Failure::invalid(
            "A migration needs the peer's certificate (\"certificate\")",
        ));
    }
    let der = crate::trust::parse_certificate(certificate)?;
    let client = berth_client::Client::https(host, der, None)
        .map_err(|e| Failure::invalid(format!("Unable to connect to {host}: {e}")))?;
    let mut conns = BTreeMap::new();
    for name in streams(live) {
        let secret = secrets.get(*name).ok_or_else(|| {
            Failure::invalid(format!("Expected {name:?} connection secret missing"))
        })?;
        let ws = tokio::time::timeout(
            Duration::from_secs(10),
            client.operation_websocket(id, secret),
        )
        .await
        .map_err(|_| Failure::unavailable(format!("Unable to connect to {host}: timed out")))?
        .map_err(|e| Failure::unavailable(format!("Unable to connect to {host}: {e}")))?;
        conns.insert(*name, conn_of_client(ws));
    }
    match (
        conns.remove("control"),
        conns.remove("fs"),
        conns.remove("criu"),
    ) {
        (Some(control), Some(fs), criu) => Ok(Conns { control, fs, criu }),
        _ => Err(Failure::internal("Migration streams missing")),
    }
}

fn websocket_spec(description: &str, name: &str, live: bool) -> OpSpec {
    OpSpec {
        class: OperationClass::Websocket,
        description: description.to_owned(),
        resources: Some(BTreeMap::from([(
            "instances".to_owned(),
            vec![instance_url(name)],
        )])),
        may_cancel: true,
        metadata: serde_json::Map::new(),
        fds: streams(live).iter().map(|s| (*s).to_owned()).collect(),
        fds_at_top: true,
    }
}

/// `POST /1.0/instances/{name}` with `migration: true`: sends the instance, its streams
/// served (pull) or dialled at `target` (push).
pub async fn source(st: &AppState, name: String, raw: serde_json::Value) -> ApiResult {
    let req: MigrationPost = serde_json::from_value(raw)
        .map_err(|e| ApiError::bad_request(format!("Invalid migration request: {e}")))?;
    if !req.pool.is_empty() || !req.project.is_empty() {
        return Err(ApiError::bad_request(
            "Moving an instance to another pool or project is not supported yet",
        ));
    }
    // A missing `live` means live, as LXD reads it; it matters for running instances.
    let live = check_send(&st.cx, &name, req.live.unwrap_or(true)).await?;
    let instance_only = req.instance_only || req.container_only;
    let cx = st.cx.clone();
    let op = match req.target {
        None => {
            let n = name.clone();
            st.ops.start(
                websocket_spec("Migrating instance", &name, live),
                move |mut ctx| async move {
                    let conns = accept(&mut ctx, live).await?;
                    migrate::send(&cx, &n, instance_only, conns).await
                },
            )
        }
        Some(target) => {
            let conns = dial(
                &target.operation,
                &target.certificate,
                &target.secrets,
                live,
            )
            .await?;
            let n = name.clone();
            let mut spec = super::instances::spec("Migrating instance", &name);
            spec.may_cancel = true;
            st.ops.start(spec, move |_| async move {
                migrate::send(&cx, &n, instance_only, conns).await
            })
        }
    };
    Ok(async_operation(op.render()))
}

/// A refresh of instance `host` (it exists here): brought up to date with the source.
async fn refresh(
    st: &AppState,
    host: String,
    source: berth_api::instance::InstanceSource,
    mode: String,
) -> ApiResult {
    migrate::check_refresh(&st.cx, &host).await?;
    let cx = st.cx.clone();
    let op = if mode == "pull" {
        let mut spec = super::instances::spec("Refreshing instance", &host);
        spec.may_cancel = true;
        st.ops.start(spec, move |_| async move {
            let connect = dial(
                &source.operation,
                &source.certificate,
                &source.secrets,
                false,
            );
            migrate::receive_refresh(&cx, &host, source.instance_only, connect).await
        })
    } else {
        let h = host.clone();
        let only = source.instance_only;
        st.ops.start(
            websocket_spec("Refreshing instance", &h, false),
            move |mut ctx| async move {
                migrate::receive_refresh(&cx, &host, only, accept(&mut ctx, false)).await
            },
        )
    };
    Ok(async_operation(op.render()))
}

/// `POST /1.0/instances` with `source.type = migration`: records the instance, then
/// receives it, dialling the source (pull) or serving the streams it dials (push).
pub async fn target(
    st: &AppState,
    project: &str,
    name: &crate::model::names::InstanceName,
    req: InstancesPost,
) -> ApiResult {
    let mode = req.source.mode.clone();
    if mode != "pull" && mode != "push" {
        return Err(ApiError::bad_request(format!(
            "Invalid migration mode {mode:?}: expected pull or push"
        )));
    }
    let live = req.source.live || req.source.secrets.contains_key("criu");
    if live {
        crate::lxc::checkpoint::criu_check().await?;
    }
    let host = crate::model::names::host_name(project, name);
    if req.source.refresh && crate::instance::find(&st.cx, &host).await.is_ok() {
        if live {
            return Err(ApiError::bad_request(
                "A refresh updates a stopped instance: it cannot be live",
            ));
        }
        return refresh(st, host, req.source, mode).await;
    }
    let source = req.source.clone();
    let creation = create::prepare(&st.cx, project, name, req).await?;
    let cx = st.cx.clone();
    let host = creation.name().to_owned();
    let op = if mode == "pull" {
        let mut spec = super::instances::spec("Creating instance", &host);
        spec.may_cancel = true;
        st.ops.start(spec, move |_| async move {
            let connect = dial(
                &source.operation,
                &source.certificate,
                &source.secrets,
                live,
            );
            migrate::receive(&cx, creation, connect).await
        })
    } else {
        st.ops.start(
            websocket_spec("Creating instance", &host, live),
            move |mut ctx| async move {
                migrate::receive(&cx, creation, accept(&mut ctx, live)).await
            },
        )
    };
    Ok(async_operation(op.render()))
}
