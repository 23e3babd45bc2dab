//! An instance or a snapshot published as an image (`lxc publish`, `berth publish`): its
//! volume's `metadata.yaml`, `rootfs/` and `templates/` packed as a unified tarball (the
//! files keep the container's own ids, as berth stores volumes: an image's ids), then
//! imported as an upload is. A saved state (`state/`) stays behind.

use std::path::Path;

use super::import::{ImportOptions, Imported, import};
use super::store::{Upload, temp_path};
use crate::ctx::Ctx;
use crate::error::{Failure, Result};

/// Packs volume `volume` into a gzip tarball and imports it into `project`'s images.
pub async fn publish(
    cx: &Ctx,
    project: &str,
    volume: &Path,
    opts: ImportOptions,
) -> Result<Imported> {
    if !volume.join("metadata.yaml").is_file() {
        return Err(Failure::invalid(
            "The instance has no metadata.yaml (it was not made from an image): it cannot be published",
        ));
    }
    let out = temp_path(&cx.paths.images());
    let mut args: Vec<std::ffi::OsString> = [
        "--numeric-owner",
        "--xattrs",
        "--xattrs-include=*",
        "--sparse",
        "-czf",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(out.clone().into());
    args.push("-C".into());
    args.push(volume.into());
    for part in ["metadata.yaml", "rootfs", "templates"] {
        if volume.join(part).exists() {
            args.push(part.into());
        }
    }
    let packed = tokio::task::spawn_blocking(move || {
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        berth_host::run_command("tar", &refs)
    })
    .await?;
    let mut upload = Upload::new(out);
    if let Err(e) = packed {
        return Err(Failure::failed("Failed to pack the image", e));
    }
    upload.meta_name = String::new();
    import(cx, project, upload, opts).await
}
