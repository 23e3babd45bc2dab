//! Finding a local image by the name a user types, for every verb that takes one
//! (`launch`, `image …`).

use berth_api::image::{Image, ImageAlias};
use berth_client::Client;

/// The image named by alias or fingerprint prefix; an alias wins over a fingerprint.
pub async fn resolve(client: &Client, name: &str) -> anyhow::Result<Image> {
    if let Ok(alias) = client
        .get::<ImageAlias>(&format!("/1.0/images/aliases/{name}"))
        .await
    {
        return Ok(client.get(&format!("/1.0/images/{}", alias.target)).await?);
    }
    Ok(client.get(&format!("/1.0/images/{name}")).await?)
}

/// The `source` of a request that makes another server fetch `image` from `from`, as
/// LXD's client builds it: `from`'s address and certificate, and a secret it issued for
/// the image unless the image is public.
pub async fn remote_source(from: &Client, image: &Image) -> anyhow::Result<serde_json::Value> {
    let (addresses, certificate) = from.connection_info().await?;
    let server = addresses.first().ok_or_else(|| {
        anyhow::anyhow!("The image's server isn't listening on the network (core.https_address)")
    })?;
    let secret = if image.public {
        String::new()
    } else {
        let r = from
            .query(
                berth_client::Method::POST,
                &format!("/1.0/images/{}/secret", image.fingerprint),
                None,
            )
            .await?;
        r.body.metadata["metadata"]["secret"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    Ok(serde_json::json!({
        "type": "image", "mode": "pull", "protocol": "lxd", "server": server,
        "certificate": certificate, "fingerprint": image.fingerprint, "secret": secret,
    }))
}

/// The `source` of a request that makes a server fetch image `name` (an alias or a
/// fingerprint prefix) from simplestreams tree `from`, as LXD's client builds it: the
/// tree's URL, its pinned certificate if any, and the alias (the server resolves it) or
/// the fingerprint. The image is looked up here first, so that a missing one is reported
/// before anything is asked of the server.
pub async fn streams_source(
    from: &berth_client::simplestreams::SimpleStreams,
    name: &str,
) -> anyhow::Result<(serde_json::Value, Image)> {
    let found = from.find(name).await?;
    let by_alias = found.image.aliases.iter().any(|a| a.name == name);
    let source = serde_json::json!({
        "type": "image", "mode": "pull", "protocol": crate::remote::SIMPLESTREAMS,
        "server": from.url(),
        "certificate": from.certificate().map(crate::remote::der_to_pem).unwrap_or_default(),
        "alias": if by_alias { name } else { "" },
        "fingerprint": if by_alias { "" } else { found.image.fingerprint.as_str() },
    });
    Ok((source, found.image))
}

/// Copies `image` of `from` to `to` (which fetches it), with `aliases` there; returns
/// its fingerprint.
pub async fn copy(
    from: &Client,
    image: &Image,
    to: &Client,
    aliases: &[String],
    public: bool,
) -> anyhow::Result<String> {
    let source = remote_source(from, image).await?;
    pull_into(to, source, aliases, public).await?;
    Ok(image.fingerprint.clone())
}

/// Makes `to` fetch the image `source` names, with `aliases` there.
pub async fn pull_into(
    to: &Client,
    source: serde_json::Value,
    aliases: &[String],
    public: bool,
) -> anyhow::Result<()> {
    let body = serde_json::json!({
        "source": source,
        "public": public,
        "aliases": aliases.iter().map(|a| serde_json::json!({"name": a})).collect::<Vec<_>>(),
    });
    let r = to
        .query(berth_client::Method::POST, "/1.0/images", Some(&body))
        .await?;
    if let Some(id) = r.body.operation_id() {
        to.wait_success(id).await?;
    }
    Ok(())
}
