//! Images fetched from another server to make an instance (`lxc launch other:image`,
//! `lxc launch images:debian/12`) are a cache, as in LXD: marked `cached`, their
//! `last_used_at` moved on by each instance made from them, and flushed once unused for
//! `images.remote_cache_expiry` days (default 10; 0 keeps them). Images copied or imported
//! on purpose are never cached.

use std::sync::Arc;

use crate::ctx::Ctx;
use crate::error::Result;

/// Records that an instance was just made from image `fp`.
pub async fn used(cx: &Ctx, fp: &str) {
    let (f, now) = (fp.to_owned(), crate::time::now_rfc3339());
    if let Err(e) = cx
        .db
        .write(move |tx| crate::db::images::touch(tx, &f, &now))
        .await
    {
        tracing::warn!(fingerprint = %fp, error = %e, "Image use not recorded");
    }
}

/// Removes the cached images unused for `images.remote_cache_expiry` days before `now`; returns how
/// many holdings went.
pub async fn flush(cx: &Ctx, now: chrono::DateTime<chrono::Utc>) -> Result<usize> {
    let config = cx.db.read(crate::db::config::load).await?;
    let days: i64 = crate::config::get(&config, crate::config::IMAGES_CACHE_EXPIRY)
        .parse()
        .unwrap_or(10);
    if days <= 0 {
        return Ok(0);
    }
    let before =
        (now - chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let unused = cx
        .db
        .read(move |c| crate::db::images::unused_cached(c, &before))
        .await?;
    let mut gone = 0;
    for (project, fp) in &unused {
        match super::delete(cx, project, fp).await {
            Ok(_) => {
                gone += 1;
                tracing::info!(fingerprint = %fp, project = %project, "Unused cached image flushed");
            }
            Err(e) => tracing::warn!(fingerprint = %fp, error = %e, "Cached image not flushed"),
        }
    }
    Ok(gone)
}

/// Flushes unused cached images every hour, for as long as berthd runs.
pub async fn flusher(cx: Arc<Ctx>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        if let Err(e) = flush(&cx, chrono::Utc::now()).await {
            tracing::warn!(error = %e, "Cached images not flushed");
        }
    }
}
