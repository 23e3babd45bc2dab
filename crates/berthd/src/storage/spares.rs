//! Spare volumes: each image an instance was created from is kept unpacked once more per
//! pool, as the hidden volume `.spare-FINGERPRINT`, so the next instance from it takes
//! that volume with one rename instead of unpacking (which costs tens to hundreds of
//! milliseconds of metadata writes on a busy disk). The spare is refilled in the
//! background after each use, unpacked under `.spare-FINGERPRINT.tmp` and renamed into
//! place whole. The rootfs is owned by host ids 0..65535 (instances see it through an
//! idmapped mount), so a spare fits any instance; templates are applied after the claim.
//! The price is one unpacked copy per image and pool; it goes with the image and before
//! its pool. What fills a spare is the image service's (`image::refill_spare`).
//!
//! On a pool whose driver has optimized images (btrfs: a clone is a subvolume snapshot)
//! the spare is never taken: each instance is a clone of it ([`clone`]), made in a
//! moment whatever the image's size, and the spare stays as the image's volume there.

use std::path::Path;
use std::sync::Arc;

use berth_storage::{Driver, VolumeType};

use crate::ctx::Ctx;
use crate::error::Result;

const PREFIX: &str = ".spare-";

fn spare_name(fp: &str) -> String {
    format!("{PREFIX}{fp}")
}

/// Moves the spare volume of image `fp` into place as volume `name`; `false` when there is
/// none (or it was just taken, or is still being unpacked: waiting for that was measured
/// slower than unpacking alongside it when launches come back to back).
pub fn claim(pool: &dyn Driver, fp: &str, name: &str) -> bool {
    pool.rename_volume(VolumeType::Container, &spare_name(fp), name)
        .is_ok()
}

/// Makes volume `name` a clone of image `fp`'s spare, which stays; `false` when there is
/// none yet (a pool with optimized images only).
pub fn clone(pool: &dyn Driver, fp: &str, name: &str) -> bool {
    let spare = pool.volume_path(VolumeType::Container, &spare_name(fp));
    spare.is_dir()
        && pool
            .create_volume_from(VolumeType::Container, name, &spare)
            .is_ok()
}

/// Makes a new spare of image `fp` on `pool` in the background with `fill` (which unpacks
/// the image into the volume directory it is given), unless one exists or is being made.
/// `image_file`: the image's file; when it is gone by the end, so is the spare.
pub fn refill(
    cx: Arc<Ctx>,
    pool: Arc<dyn Driver>,
    fp: String,
    image_file: std::path::PathBuf,
    fill: impl FnOnce(&Path) -> Result<()> + Send + 'static,
) {
    let key = (pool.volume_path(VolumeType::Container, ""), fp.clone());
    {
        let mut busy = cx.spares.lock().unwrap_or_else(|p| p.into_inner());
        if !busy.insert(key.clone()) {
            return;
        }
    }
    tokio::task::spawn_blocking(move || {
        if let Err(e) = make(pool.as_ref(), &fp, &image_file, fill) {
            tracing::debug!(fingerprint = %fp, error = %e, "Spare volume not made");
        }
        cx.spares
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    });
}

fn make(
    pool: &dyn Driver,
    fp: &str,
    image_file: &Path,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let spare = spare_name(fp);
    if pool.volume_path(VolumeType::Container, &spare).exists() {
        return Ok(());
    }
    let tmp = format!("{spare}.tmp");
    let _ = pool.delete_volume(VolumeType::Container, &tmp);
    let volume = pool.create_volume(VolumeType::Container, &tmp)?;
    let unpacked =
        fill(&volume).and_then(|()| Ok(pool.rename_volume(VolumeType::Container, &tmp, &spare)?));
    if unpacked.is_err() {
        let _ = pool.delete_volume(VolumeType::Container, &tmp);
    }
    // The image may have gone meanwhile: its spare goes too.
    if !image_file.exists() {
        let _ = pool.delete_volume(VolumeType::Container, &spare);
    }
    unpacked
}

/// Deletes the spare volume of image `fp` on every pool (the image is deleted).
pub fn drop_image(cx: &Ctx, fp: &str) {
    for pool in cx.pools.all() {
        let _ = pool.delete_volume(VolumeType::Container, &spare_name(fp));
    }
}

/// Waits (at most two minutes) until no spare is being made on `pool`: one a launch
/// started just before the pool's delete is unpacking there.
pub async fn wait_idle(cx: &Ctx, pool: &dyn Driver) {
    let dir = pool.volume_path(VolumeType::Container, "");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        let busy = cx
            .spares
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(d, _)| *d == dir);
        if !busy {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Deletes every spare volume on `pool` (before the pool is deleted).
pub fn clear(pool: &dyn Driver) {
    let dir = pool.volume_path(VolumeType::Container, "");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(PREFIX) {
            let _ = pool.delete_volume(VolumeType::Container, &name);
        }
    }
}
