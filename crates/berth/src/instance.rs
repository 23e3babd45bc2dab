//! Changing an instance's state (`PUT /1.0/instances/<name>/state`) and waiting for it:
//! the state verbs (`start`, `stop`, …) do it, and so does `delete --force` to stop first.

use berth_client::{Client, Method};

/// Asks for a state change of one instance and waits for it.
pub async fn change_state(
    client: &Client,
    name: &str,
    action: &str,
    force: bool,
    timeout: i64,
) -> anyhow::Result<()> {
    let body = serde_json::json!({"action": action, "timeout": timeout, "force": force});
    put_state(client, name, &body).await
}

/// PUTs `body` as the state of instance `name` and waits for the operation, if any.
pub async fn put_state(
    client: &Client,
    name: &str,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    let r = client
        .query(
            Method::PUT,
            &format!("/1.0/instances/{name}/state"),
            Some(body),
        )
        .await?;
    if let Some(id) = r.body.operation_id() {
        client.wait_success(id).await?;
    }
    Ok(())
}
