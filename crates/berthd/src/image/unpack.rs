//! Unpacking an image into an instance volume: `rootfs/`, `metadata.yaml`, `templates/`.
//!
//! The image was scanned when it was imported; unpacking still goes through the `tar`
//! crate's checked `unpack_in` (no `..`, nothing written through a symlink outside the
//! target) and squashfs through `unsquashfs`, which cannot escape either. Owners, modes,
//! times and extended attributes are kept: the files are owned by the container's ids as
//! numbers, which the idmapped rootfs mount presents to the container.

use std::path::Path;

/// Unpacking failed.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("Failed to unpack image")]
    Io(#[source] std::io::Error),
    #[error("Failed to unpack the squashfs rootfs")]
    Unsquashfs(#[source] berth_host::CommandError),
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
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    // Entry by entry, to spare the filesystem journal the metadata writes that change
    // nothing (on this kind of disk each costs up to a third of a millisecond): files are
    // created by root, so only other owners are set, and a symlink's own times are not.
    archive.set_preserve_ownerships(false);
    for entry in archive.entries().map_err(UnpackError::Io)? {
        let mut entry = entry.map_err(UnpackError::Io)?;
        let header = entry.header();
        let kind = header.entry_type();
        let uid = header.uid().map_err(UnpackError::Io)?;
        let gid = header.gid().map_err(UnpackError::Io)?;
        let mode = header.mode().map_err(UnpackError::Io)?;
        let path = entry.path().map_err(UnpackError::Io)?.into_owned();
        entry.set_preserve_mtime(!kind.is_symlink());
        if !entry.unpack_in(dest).map_err(UnpackError::Io)? {
            continue;
        }
        if uid == 0 && gid == 0 {
            continue;
        }
        // As unpack_in placed it: only the normal components, under dest.
        let mut target = dest.to_path_buf();
        target.extend(path.components().filter_map(|c| match c {
            std::path::Component::Normal(p) => Some(p),
            _ => None,
        }));
        let id = |v: u64| u32::try_from(v).ok();
        std::os::unix::fs::lchown(&target, id(uid), id(gid)).map_err(UnpackError::Io)?;
        // A change of owner clears set-user-ID and set-group-ID bits: put them back.
        if kind.is_file() && mode & 0o6000 != 0 {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode & 0o7777))
                .map_err(UnpackError::Io)?;
        }
    }
    Ok(())
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
    let args = [
        std::ffi::OsStr::new("-f"),
        std::ffi::OsStr::new("-n"),
        std::ffi::OsStr::new("-d"),
        target.as_os_str(),
        rootfs.as_os_str(),
    ];
    berth_host::run_command("unsquashfs", &args)
        .map(drop)
        .map_err(UnpackError::Unsquashfs)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn entry(
        b: &mut tar::Builder<Vec<u8>>,
        path: &str,
        kind: tar::EntryType,
        ids: (u64, u64),
        mode: u32,
        data: &[u8],
    ) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_uid(ids.0);
        h.set_gid(ids.1);
        h.set_mode(mode);
        h.set_mtime(1_000_000);
        h.set_size(data.len() as u64);
        if kind == tar::EntryType::Symlink {
            h.set_link_name("busybox").unwrap();
        }
        b.append_data(&mut h, path, data).unwrap();
    }

    #[test]
    fn keeps_owners_modes_and_setid_bits() {
        if !rustix::process::geteuid().is_root() {
            return; // chown needs root; the suite runs as root
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        entry(
            &mut b,
            "rootfs/bin",
            tar::EntryType::Directory,
            (0, 0),
            0o755,
            b"",
        );
        entry(
            &mut b,
            "rootfs/bin/busybox",
            tar::EntryType::Regular,
            (0, 0),
            0o4755,
            b"x",
        );
        entry(
            &mut b,
            "rootfs/bin/wall",
            tar::EntryType::Regular,
            (0, 5),
            0o2755,
            b"y",
        );
        entry(
            &mut b,
            "rootfs/home",
            tar::EntryType::Directory,
            (1000, 1000),
            0o700,
            b"",
        );
        entry(
            &mut b,
            "rootfs/bin/sh",
            tar::EntryType::Symlink,
            (7, 8),
            0o777,
            b"",
        );
        let image = tmp.path().join("image.tar");
        std::fs::write(&image, b.into_inner().unwrap()).unwrap();
        let dest = tmp.path().join("vol");
        std::fs::create_dir(&dest).unwrap();
        let report: Progress = std::sync::Arc::new(|_, _| {});
        unpack(&image, None, &dest, &report).unwrap();
        let m = |p: &str| std::fs::symlink_metadata(dest.join(p)).unwrap();
        assert_eq!(
            (
                m("rootfs/bin/busybox").mode() & 0o7777,
                m("rootfs/bin/busybox").uid()
            ),
            (0o4755, 0)
        );
        let wall = m("rootfs/bin/wall");
        assert_eq!(
            (wall.mode() & 0o7777, wall.uid(), wall.gid()),
            (0o2755, 0, 5)
        );
        assert_eq!(wall.mtime(), 1_000_000);
        let home = m("rootfs/home");
        assert_eq!(
            (home.mode() & 0o7777, home.uid(), home.gid()),
            (0o700, 1000, 1000)
        );
        let sh = m("rootfs/bin/sh");
        assert!(sh.file_type().is_symlink());
        assert_eq!((sh.uid(), sh.gid()), (7, 8));
    }
}
