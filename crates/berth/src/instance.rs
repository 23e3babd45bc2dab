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

/// How many instances a verb given many names works on at once: the server overlaps
/// their waits (a stop waiting for init to die, a delete's disk work) on its cores.
const IN_FLIGHT: usize = 8;

/// Runs `one` for every name, [`IN_FLIGHT`] at a time. Every name is tried; every failure
/// but the last is printed, and the call fails with the last if any failed.
pub async fn for_each<'a, F, Fut>(names: &'a [String], one: F) -> anyhow::Result<()>
where
    F: Fn(&'a str) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + 'a,
{
    use futures_util::StreamExt;
    let failed: Vec<anyhow::Error> = futures_util::stream::iter(names)
        .map(|name| {
            let run = one(name);
            async move { run.await.err() }
        })
        .buffered(IN_FLIGHT)
        .filter_map(std::future::ready)
        .collect()
        .await;
    match failed.as_slice() {
        [] => Ok(()),
        [first @ .., last] => {
            for f in first {
                eprintln!("Error: {f}");
            }
            anyhow::bail!("{last}")
        }
    }
}
