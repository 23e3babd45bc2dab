//! Unpacking an image into an instance volume: `rootfs/`, `metadata.yaml`, `templates/`.
//!
//! The image was scanned when it was imported; unpacking still goes through the `tar`
//! crate's checked `unpack_in` (no `..`, nothing written through a symlink outside the
//! target) and squashfs through `unsquashfs`, which cannot escape either. Owners, modes,
//! times and extended attributes are kept: the files are owned by the container's ids as
//! numbers, which the idmapped rootfs mount presents to the container.

use std::path::Path;
use std::process::Command;

/// Unpacking failed.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("Failed to unpack image")]
    Io(#[source] std::io::Error),
    #[error("unsquashfs failed: {0}")]
    Unsquashfs(String),
}

fn unpack_tar(file: &Path, dest: &Path) -> Result<(), UnpackError> {
    let reader = berth_image::compression::open(file).map_err(UnpackError::Io)?;
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, reader));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    archive.unpack(dest).map_err(UnpackError::Io)
}

/// Unpacks image `meta` (and `rootfs` for a split image) into volume directory `dest`.
pub fn unpack(meta: &Path, rootfs: Option<&Path>, dest: &Path) -> Result<(), UnpackError> {
    unpack_tar(meta, dest)?;
    let Some(rootfs) = rootfs else { return Ok(()) };
    let target = dest.join("rootfs");
    let mut head = [0u8; 4];
    let is_squashfs = std::fs::File::open(rootfs)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && berth_image::squashfs::is_squashfs(&head);
    if !is_squashfs {
        std::fs::create_dir_all(&target).map_err(UnpackError::Io)?;
        return unpack_tar(rootfs, &target);
    }
    let out = Command::new("unsquashfs")
        .args(["-f", "-n", "-d"])
        .arg(&target)
        .arg(rootfs)
        .output()
        .map_err(UnpackError::Io)?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(UnpackError::Unsquashfs(
            err.lines().last().unwrap_or_default().to_owned(),
        ));
    }
    Ok(())
}
