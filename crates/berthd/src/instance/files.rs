//! An instance's root filesystem, for the files API and SFTP: every path resolved inside
//! the container's root ([`RootFs`]), on running and stopped containers alike.

use std::sync::Arc;

pub use crate::host::rootfs::{Kind, Meta, OpenHow, Owner, RootFs, Write, fmeta, normalize};

use super::{find, pool_of, volume};
use crate::ctx::Ctx;
use crate::error::{Failure, Result};

/// Instance `name`'s root filesystem, opened.
pub async fn open(cx: &Ctx, name: &str) -> Result<Arc<RootFs>> {
    let rec = find(cx, name).await?;
    if rec.config.contains_key(super::migrate::INCOMING) {
        // Its files are still arriving: nothing may be read or planted meanwhile.
        return Err(Failure::conflict(
            "The instance is still being made: its files cannot be reached yet",
        ));
    }
    let dir = volume(pool_of(cx, &rec).await?.as_ref(), name).join("rootfs");
    tokio::task::spawn_blocking(move || RootFs::open(&dir))
        .await?
        .map(Arc::new)
        .map_err(|e| Failure::failed("Failed to open the instance's rootfs", e))
}
