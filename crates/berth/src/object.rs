//! Objects at `/1.0/<kind>/<name>` that carry a `config` map (profiles, projects, …): the
//! `KEY=VALUE` arguments of every verb that sets keys, and getting, setting and unsetting one
//! key, shared so that each kind parses, prints and refuses alike.
//!
//! Instances keep their own versions in `cmd/config.rs`, which wait for the operation an
//! instance change may start.

use std::collections::BTreeMap;

use berth_client::{Client, Method};
use serde_json::Value;

/// `KEY=VALUE...`, or the two words `KEY VALUE` as `lxc config set` takes them.
pub(crate) fn pairs(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    if let [k, v] = items
        && !k.contains('=')
    {
        return Ok(BTreeMap::from([(k.clone(), v.clone())]));
    }
    items
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| anyhow::anyhow!("Invalid argument {kv:?}: expected KEY=VALUE"))
        })
        .collect()
}

/// Sends a request and waits for the operation it started, if any.
pub async fn run_op(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<()> {
    let r = client.query(method, path, body).await?;
    if let Some(id) = r.body.operation_id() {
        client.wait_success(id).await?;
    }
    Ok(())
}

/// POSTs `body` to `collection` (`/1.0/networks`, …) and says `LABEL NAME created`.
pub async fn create(
    client: &Client,
    collection: &str,
    label: &str,
    name: &str,
    body: &Value,
) -> anyhow::Result<()> {
    client.query(Method::POST, collection, Some(body)).await?;
    println!("{label} {name} created");
    Ok(())
}

/// DELETEs `collection/NAME` for each of `names` in turn, saying `LABEL NAME deleted`
/// after each; the first refusal stops there.
pub async fn delete_each(
    client: &Client,
    collection: &str,
    label: &str,
    names: &[String],
) -> anyhow::Result<()> {
    for name in names {
        client
            .query(Method::DELETE, &format!("{collection}/{name}"), None)
            .await?;
        println!("{label} {name} deleted");
    }
    Ok(())
}

/// PATCHes `config` into the object at `path`; an empty value unsets a key.
pub async fn patch_config(
    client: &Client,
    path: &str,
    config: BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let body = serde_json::json!({ "config": config });
    client.query(Method::PATCH, path, Some(&body)).await?;
    Ok(())
}

/// Prints configuration key `key` of the object at `path` (empty when unset).
pub async fn print_key(client: &Client, path: &str, key: &str) -> anyhow::Result<()> {
    let v: Value = client.get(path).await?;
    println!(
        "{}",
        v["config"]
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
    );
    Ok(())
}

/// Unsets `keys` of the object at `path`, `what` naming it; a key that is not set is an
/// error and nothing changes.
pub async fn unset_keys(
    client: &Client,
    path: &str,
    keys: Vec<String>,
    what: &str,
) -> anyhow::Result<()> {
    let v: Value = client.get(path).await?;
    for k in &keys {
        if v["config"].get(k).is_none() {
            anyhow::bail!("Key {k:?} is not set on {what}");
        }
    }
    patch_config(
        client,
        path,
        keys.into_iter().map(|k| (k, String::new())).collect(),
    )
    .await
}
