//! Copying and moving instances between servers, as LXD's client does it: the source
//! serves a migration operation, the target pulls from it (`pull`, the default), or the
//! target serves and the source pushes (`push`), or both serve and this client joins
//! their streams (`relay`, for servers that can't reach each other).

use berth_client::{Client, Method, WebSocketMessage};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

/// How the servers connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Pull,
    Push,
    Relay,
}

/// What to copy and how.
#[derive(Debug)]
pub struct Copy<'a> {
    pub from: &'a Client,
    pub name: &'a str,
    pub to: &'a Client,
    pub new_name: &'a str,
    pub mode: Mode,
    pub instance_only: bool,
    /// Keep the volatile keys a move keeps (the nics' MAC addresses).
    pub keep_volatile: bool,
    /// Config keys to set on the copy.
    pub config: Vec<(String, String)>,
    /// A live migration of a running instance (CRIU): it runs on, on the target.
    pub live: bool,
    /// Bring an existing copy up to date (`--refresh`): only what changed travels.
    pub refresh: bool,
}

/// The secrets of a migration operation's streams.
fn secrets(op: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(m) = op["metadata"].as_object() {
        for (k, v) in m {
            if v.is_string() {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Copies instance `name` of `from` to `new_name` on `to`; returns whether the source
/// was running (a move starts the copy then).
pub async fn copy(c: &Copy<'_>) -> anyhow::Result<bool> {
    let entry: Value = c.from.get(&format!("/1.0/instances/{}", c.name)).await?;
    let running = entry["status"] == "Running";
    let mut config = entry["config"].as_object().cloned().unwrap_or_default();
    let keep = |k: &str| {
        !k.starts_with("volatile.")
            || k == "volatile.base_image"
            || (c.keep_volatile && k.ends_with(".hwaddr"))
    };
    config.retain(|k, _| keep(k));
    for (k, v) in &c.config {
        config.insert(k.clone(), v.clone().into());
    }
    let mut body = json!({
        "name": c.new_name,
        "architecture": entry["architecture"],
        "config": config,
        "devices": entry["devices"],
        "profiles": entry["profiles"],
        "ephemeral": entry["ephemeral"],
        "description": entry["description"],
        "type": "container",
    });
    let base_image = entry["config"]["volatile.base_image"]
        .as_str()
        .unwrap_or_default();
    let source_post = |target: Value| {
        json!({"migration": true, "live": c.live, "instance_only": c.instance_only,
               "container_only": c.instance_only, "target": target})
    };
    let source_path = format!("/1.0/instances/{}", c.name);
    match c.mode {
        Mode::Pull => {
            let (addresses, certificate) = c.from.connection_info().await?;
            anyhow::ensure!(
                !addresses.is_empty(),
                "The source server isn't listening on the network (core.https_address)"
            );
            let r = c
                .from
                .query(Method::POST, &source_path, Some(&source_post(Value::Null)))
                .await?;
            let op = r.body.metadata;
            let id = op["id"].as_str().unwrap_or_default().to_owned();
            let mut last = None;
            for addr in &addresses {
                body["source"] = json!({
                    "type": "migration", "mode": "pull", "certificate": certificate,
                    "operation": format!("{addr}/1.0/operations/{id}"),
                    "secrets": secrets(&op), "base-image": base_image,
                    "instance_only": c.instance_only, "live": c.live,
                    "refresh": c.refresh,
                });
                match wait(
                    c.to,
                    c.to.query(Method::POST, "/1.0/instances", Some(&body))
                        .await,
                )
                .await
                {
                    Ok(()) => return Ok(running),
                    Err(e) if e.to_string().contains("Unable to connect to") => last = Some(e),
                    Err(e) => {
                        let _ = c.from.cancel_operation(&id).await;
                        return Err(e);
                    }
                }
            }
            let _ = c.from.cancel_operation(&id).await;
            Err(last.unwrap_or_else(|| anyhow::anyhow!("No address of the source worked")))
        }
        Mode::Push => {
            body["source"] = json!({"type": "migration", "mode": "push", "live": c.live,
                                    "base-image": base_image, "instance_only": c.instance_only,
                                    "refresh": c.refresh});
            let r =
                c.to.query(Method::POST, "/1.0/instances", Some(&body))
                    .await?;
            let op = r.body.metadata;
            let id = op["id"].as_str().unwrap_or_default().to_owned();
            let (addresses, certificate) = c.to.connection_info().await?;
            let addr = addresses.first().ok_or_else(|| {
                anyhow::anyhow!(
                    "The target server isn't listening on the network (core.https_address)"
                )
            })?;
            let target = json!({"certificate": certificate,
                                "operation": format!("{addr}/1.0/operations/{id}"),
                                "secrets": secrets(&op)});
            let sent = c
                .from
                .query(Method::POST, &source_path, Some(&source_post(target)))
                .await;
            if sent.is_err() {
                let _ = c.to.cancel_operation(&id).await;
            }
            wait(c.from, sent).await?;
            c.to.wait_success(&id).await?;
            Ok(running)
        }
        Mode::Relay => {
            let r = c
                .from
                .query(Method::POST, &source_path, Some(&source_post(Value::Null)))
                .await?;
            let source_op = r.body.metadata;
            let source_id = source_op["id"].as_str().unwrap_or_default().to_owned();
            body["source"] = json!({"type": "migration", "mode": "push", "live": c.live,
                                    "base-image": base_image, "instance_only": c.instance_only,
                                    "refresh": c.refresh});
            let r =
                c.to.query(Method::POST, "/1.0/instances", Some(&body))
                    .await?;
            let target_op = r.body.metadata;
            let target_id = target_op["id"].as_str().unwrap_or_default().to_owned();
            let (from_secrets, to_secrets) = (secrets(&source_op), secrets(&target_op));
            let mut joins = Vec::new();
            let streams: &[&str] = if c.live {
                &["control", "fs", "criu"]
            } else {
                &["control", "fs"]
            };
            for &stream in streams {
                let (Some(a), Some(b)) =
                    (from_secrets[stream].as_str(), to_secrets[stream].as_str())
                else {
                    anyhow::bail!(
                        "Migration target expects the {stream:?} stream but the source isn't providing it"
                    );
                };
                let a = c.from.operation_websocket(&source_id, a).await?;
                let b = c.to.operation_websocket(&target_id, b).await?;
                joins.push(tokio::spawn(join(a, b)));
            }
            let result = c.to.wait_success(&target_id).await;
            for j in joins {
                j.abort();
            }
            result?;
            Ok(running)
        }
    }
}

/// Waits for the operation a reply started, if any.
async fn wait(
    client: &Client,
    reply: Result<berth_client::RawResponse, berth_client::ClientError>,
) -> anyhow::Result<()> {
    let r = reply?;
    if let Some(id) = r.body.operation_id() {
        client.wait_success(id).await?;
    }
    Ok(())
}

/// Passes messages both ways between two websockets, as they are, until either ends.
async fn join(a: berth_client::WebSocket, b: berth_client::WebSocket) {
    let (mut a_tx, mut a_rx) = a.split();
    let (mut b_tx, mut b_rx) = b.split();
    let forward = |m: WebSocketMessage| match m {
        WebSocketMessage::Binary(_) | WebSocketMessage::Text(_) => Some(m),
        _ => None,
    };
    let ab = async {
        while let Some(Ok(m)) = a_rx.next().await {
            if matches!(m, WebSocketMessage::Close(_)) {
                break;
            }
            if let Some(m) = forward(m)
                && b_tx.send(m).await.is_err()
            {
                break;
            }
        }
    };
    let ba = async {
        while let Some(Ok(m)) = b_rx.next().await {
            if matches!(m, WebSocketMessage::Close(_)) {
                break;
            }
            if let Some(m) = forward(m)
                && a_tx.send(m).await.is_err()
            {
                break;
            }
        }
    };
    tokio::select! {
        () = ab => {}
        () = ba => {}
    }
}
