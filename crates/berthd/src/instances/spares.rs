//! Spare volumes: each image an instance was created from is kept unpacked once more per
//! pool, as the hidden volume `.spare-FINGERPRINT`, so the next instance from it takes
//! that volume with one rename instead of unpacking (which costs tens to hundreds of
//! milliseconds of metadata writes on a busy disk). The spare is refilled in the
//! background after each use, unpacked under `.spare-FINGERPRINT.tmp` and renamed into
//! place whole. The rootfs is owned by host ids 0..65535 (instances see it through an
//! idmapped mount), so a spare fits any instance; templates are applied after the claim.
//! The price is one unpacked copy per image and pool; it goes with the image and before
//! its pool.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use berth_storage::{Driver, VolumeType};

use crate::db::images::ImageRecord;
use crate::state::State;

const PREFIX: &str = ".spare-";

fn spare_name(fp: &str) -> String {
    format!("{PREFIX}{fp}")
}

/// The refills under way: (pool source, fingerprint).
#[derive(Debug, Default)]
pub struct Refills {
    busy: Mutex<HashSet<(std::path::PathBuf, String)>>,
}

/// Moves the spare volume of image `fp` into place as volume `name`; `false` when there is
/// none (or it was just taken, or is still being unpacked: waiting for that was measured
/// slower than unpacking alongside it when launches come back to back).
pub fn claim(pool: &dyn Driver, fp: &str, name: &str) -> bool {
    pool.rename_volume(VolumeType::Container, &spare_name(fp), name)
        .is_ok()
}

/// Unpacks a new spare of `img` on `pool` in the background, unless one exists or is
/// being made.
pub fn refill(st: Arc<State>, pool: Arc<dyn Driver>, img: ImageRecord) {
    let fp = img.image.fingerprint.clone();
    let key = (pool.volume_path(VolumeType::Container, ""), fp.clone());
    {
        let mut busy = st.spares.busy.lock().unwrap_or_else(|p| p.into_inner());
        if !busy.insert(key.clone()) {
            return;
        }
    }
    tokio::task::spawn_blocking(move || {
        if let Err(e) = make(&st, pool.as_ref(), &img) {
            tracing::debug!(fingerprint = %fp, error = %e, "Spare volume not made");
        }
        st.spares
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    });
}

fn make(st: &State, pool: &dyn Driver, img: &ImageRecord) -> Result<(), String> {
    let fp = &img.image.fingerprint;
    let spare = spare_name(fp);
    if pool.volume_path(VolumeType::Container, &spare).exists() {
        return Ok(());
    }
    let tmp = format!("{spare}.tmp");
    let _ = pool.delete_volume(VolumeType::Container, &tmp);
    let volume = pool
        .create_volume(VolumeType::Container, &tmp)
        .map_err(|e| crate::logging::chain(&e))?;
    let images = st.paths.images();
    let rootfs = img.split.then(|| images.join(format!("{fp}.rootfs")));
    let quiet: super::unpack::Progress = Arc::new(|_, _| {});
    let unpacked = super::unpack::unpack(&images.join(fp), rootfs.as_deref(), &volume, &quiet)
        .map_err(|e| crate::logging::chain(&e))
        .and_then(|()| {
            pool.rename_volume(VolumeType::Container, &tmp, &spare)
                .map_err(|e| crate::logging::chain(&e))
        });
    if unpacked.is_err() {
        let _ = pool.delete_volume(VolumeType::Container, &tmp);
    }
    // The image may have gone meanwhile: its spare goes too.
    if !images.join(fp).exists() {
        let _ = pool.delete_volume(VolumeType::Container, &spare);
    }
    unpacked
}

/// Deletes the spare volume of image `fp` on every pool (the image is deleted).
pub fn drop_image(st: &State, fp: &str) {
    for pool in st.pools.all() {
        let _ = pool.delete_volume(VolumeType::Container, &spare_name(fp));
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
