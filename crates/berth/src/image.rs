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
