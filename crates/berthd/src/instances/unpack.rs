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

/// Counts the compressed bytes read, for progress reports.
struct Counting<R> {
    inner: R,
    done: u64,
    report: Progress,
}

/// Called with (bytes of image files read, their total size).
pub type Progress = std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>;

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.report)(self.done, 0);
        Ok(n)
    }
}

fn unpack_tar(file: &Path, dest: &Path, report: &Progress) -> Result<(), UnpackError> {
    let mut head = [0u8; 6];
    let mut f = std::fs::File::open(file).map_err(UnpackError::Io)?;
    let n = std::io::Read::read(&mut f, &mut head).map_err(UnpackError::Io)?;
    let kind = berth_image::Compression::detect(&head[..n]);
    let f = std::fs::File::open(file).map_err(UnpackError::Io)?;
    let counting = Counting {
        inner: std::io::BufReader::with_capacity(1 << 16, f),
        done: 0,
        report: report.clone(),
    };
    let reader = kind.reader(counting).map_err(UnpackError::Io)?;
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, reader));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    archive.unpack(dest).map_err(UnpackError::Io)
}

/// Unpacks image `meta` (and `rootfs` for a split image) into volume directory `dest`,
/// reporting progress as (bytes read, total bytes).
pub fn unpack(
    meta: &Path,
    rootfs: Option<&Path>,
    dest: &Path,
    progress: &Progress,
) -> Result<(), UnpackError> {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let meta_size = size(meta);
    let total = meta_size + rootfs.map(size).unwrap_or(0);
    let p = progress.clone();
    let meta_progress: Progress = std::sync::Arc::new(move |done, _| p(done, total));
    unpack_tar(meta, dest, &meta_progress)?;
    let Some(rootfs) = rootfs else { return Ok(()) };
    let target = dest.join("rootfs");
    let mut head = [0u8; 4];
    let is_squashfs = std::fs::File::open(rootfs)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && berth_image::squashfs::is_squashfs(&head);
    if !is_squashfs {
        std::fs::create_dir_all(&target).map_err(UnpackError::Io)?;
        let p = progress.clone();
        let rootfs_progress: Progress =
            std::sync::Arc::new(move |done, _| p(meta_size + done, total));
        return unpack_tar(rootfs, &target, &rootfs_progress);
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
