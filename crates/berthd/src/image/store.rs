//! The image store: `DIR/images/<fingerprint>` (the unified tarball, or the metadata tarball
//! of a split image) and `DIR/images/<fingerprint>.rootfs`.
//!
//! An upload is streamed to temporary files in `DIR/images/` (never held in memory), then
//! inspected on a blocking thread: the archive is scanned in one pass (see
//! `berth_image::scan`) while its SHA-256 is computed. Only an image that passes is renamed
//! into place; an [`Upload`] that is dropped removes its temporary files.

use std::io::Read;
use std::path::{Path, PathBuf};

use berth_image::scan::{Layout, Limits, ScanError, scan};
use berth_image::{Compression, ImageMetadata};
use sha2::{Digest, Sha256};

/// The files of an upload, removed when dropped unless committed.
#[derive(Debug)]
pub struct Upload {
    /// The unified tarball, or the metadata tarball of a split image.
    pub meta: PathBuf,
    pub meta_name: String,
    pub rootfs: Option<PathBuf>,
    pub rootfs_name: String,
    committed: bool,
}

impl Upload {
    pub fn new(meta: PathBuf) -> Self {
        Upload {
            meta,
            meta_name: String::new(),
            rootfs: None,
            rootfs_name: String::new(),
            committed: false,
        }
    }

    /// Flushes the files to disk and moves them to their final names in `dir` (then
    /// flushes `dir`), so an image the database records survives a crash. Blocking.
    pub fn commit(mut self, dir: &Path, fingerprint: &str) -> std::io::Result<()> {
        std::fs::File::open(&self.meta)?.sync_all()?;
        if let Some(r) = &self.rootfs {
            std::fs::File::open(r)?.sync_all()?;
        }
        std::fs::rename(&self.meta, dir.join(fingerprint))?;
        if let Some(r) = &self.rootfs
            && let Err(e) = std::fs::rename(r, dir.join(format!("{fingerprint}.rootfs")))
        {
            let _ = std::fs::remove_file(dir.join(fingerprint));
            return Err(e);
        }
        self.committed = true;
        std::fs::File::open(dir)?.sync_all()
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.meta);
            if let Some(r) = &self.rootfs {
                let _ = std::fs::remove_file(r);
            }
        }
    }
}

/// A temporary file name for an upload in `dir`.
pub fn temp_path(dir: &Path) -> PathBuf {
    dir.join(format!(".upload-{}", uuid::Uuid::new_v4().simple()))
}

/// What inspecting an upload found.
#[derive(Debug)]
pub struct Inspected {
    pub fingerprint: String,
    pub size: u64,
    pub metadata: ImageMetadata,
    pub compression: Compression,
}

/// Why an upload is refused.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Metadata(#[from] berth_image::metadata::MetadataError),
    #[error("Failed to read upload")]
    Io(#[source] std::io::Error),
}

/// Feeds everything read through it into a SHA-256.
struct Hashing<'a, R> {
    inner: R,
    hasher: &'a mut Sha256,
    size: &'a mut u64,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        *self.size += n as u64;
        Ok(n)
    }
}

fn head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 8];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// Scans one tarball file while hashing it into `hasher`.
fn scan_file(
    path: &Path,
    layout: Layout,
    limits: &Limits,
    hasher: &mut Sha256,
    size: &mut u64,
) -> Result<(berth_image::Scanned, Compression), InspectError> {
    let compression = Compression::detect(&head(path).map_err(InspectError::Io)?);
    let file = std::fs::File::open(path).map_err(InspectError::Io)?;
    let hashing = Hashing {
        inner: std::io::BufReader::with_capacity(1 << 16, file),
        hasher,
        size,
    };
    let reader = compression
        .reader(hashing)
        .map_err(|e| InspectError::Scan(ScanError::Read(e)))?;
    let scanned = scan(reader, layout, limits)?;
    // A decompressor may stop before the end of the file: the fingerprint covers all of it.
    let total = std::fs::metadata(path).map_err(InspectError::Io)?.len();
    if total > *size {
        use std::io::Seek;
        let mut rest = std::fs::File::open(path).map_err(InspectError::Io)?;
        rest.seek(std::io::SeekFrom::Start(*size))
            .map_err(InspectError::Io)?;
        let mut tail = Hashing {
            inner: rest,
            hasher,
            size,
        };
        std::io::copy(&mut tail, &mut std::io::sink()).map_err(InspectError::Io)?;
    }
    Ok((scanned, compression))
}

/// Checks an upload and computes its fingerprint.
pub fn inspect(upload: &Upload, limits: &Limits) -> Result<Inspected, InspectError> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let layout = if upload.rootfs.is_some() {
        Layout::Metadata
    } else {
        Layout::Unified
    };
    let (scanned, compression) = scan_file(&upload.meta, layout, limits, &mut hasher, &mut size)?;
    let md_bytes = scanned
        .metadata
        .ok_or(ScanError::Missing("metadata.yaml"))?;
    let metadata = ImageMetadata::parse(&md_bytes)?;
    for t in metadata.templates.values() {
        if !scanned.templates.contains_key(&t.template) {
            return Err(InspectError::Scan(ScanError::Missing(
                "template file named in metadata.yaml",
            )));
        }
    }
    if let Some(rootfs) = &upload.rootfs {
        let h = head(rootfs).map_err(InspectError::Io)?;
        if berth_image::squashfs::is_squashfs(&h) {
            berth_image::squashfs::check(rootfs, limits)?;
            let mut f = std::fs::File::open(rootfs).map_err(InspectError::Io)?;
            let mut hashing = Hashing {
                inner: &mut f,
                hasher: &mut hasher,
                size: &mut size,
            };
            std::io::copy(&mut hashing, &mut std::io::sink()).map_err(InspectError::Io)?;
        } else {
            let mut rsize = 0;
            scan_file(rootfs, Layout::Rootfs, limits, &mut hasher, &mut rsize)?;
            size += rsize;
        }
    }
    Ok(Inspected {
        fingerprint: berth_image::hex(&hasher.finalize()),
        size,
        metadata,
        compression,
    })
}
