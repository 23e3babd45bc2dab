//! Offline image builders: images made on this machine from its own packages, so that a
//! fresh machine can launch containers without an image server.
//!
//! Every builder writes a standard unified image (`metadata.yaml`, `templates/`, `rootfs/`)
//! as a gzip tarball owned by root, which imports into berthd, LXD or Incus alike.

pub mod busybox;
pub mod debian;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::metadata::ImageMetadata;

/// A build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0} not found: install {1}")]
    MissingTool(String, &'static str),
    #[error("Failed to run {0}")]
    Command(String, #[source] std::io::Error),
    #[error("{0} failed: {1}")]
    CommandFailed(String, String),
    #[error("Failed to write image {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes the entries of a unified image tarball: every entry owned by root, with one mtime.
pub struct ImageWriter {
    tar: tar::Builder<flate2::write::GzEncoder<File>>,
    mtime: u64,
    path: PathBuf,
}

impl std::fmt::Debug for ImageWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageWriter")
            .field("path", &self.path)
            .finish()
    }
}

impl ImageWriter {
    /// Starts an image at `path`.
    pub fn create(path: &Path, mtime: u64) -> Result<ImageWriter, BuildError> {
        let file = File::create(path).map_err(|source| BuildError::Write {
            path: path.to_owned(),
            source,
        })?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(ImageWriter {
            tar,
            mtime,
            path: path.to_owned(),
        })
    }

    fn err(&self, source: std::io::Error) -> BuildError {
        BuildError::Write {
            path: self.path.clone(),
            source,
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        h.set_size(size);
        h
    }

    /// A directory.
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<(), BuildError> {
        let mut h = self.header(tar::EntryType::Directory, mode, 0);
        self.tar
            .append_data(&mut h, path, std::io::empty())
            .map_err(|e| self.err(e))
    }

    /// A regular file with `data`.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), BuildError> {
        let mut h = self.header(tar::EntryType::Regular, mode, data.len() as u64);
        self.tar
            .append_data(&mut h, path, data)
            .map_err(|e| self.err(e))
    }

    /// A regular file copied from the host.
    pub fn copy(&mut self, path: &str, mode: u32, from: &Path) -> Result<(), BuildError> {
        let f = File::open(from).map_err(|e| self.err(e))?;
        let len = f.metadata().map_err(|e| self.err(e))?.len();
        let mut h = self.header(tar::EntryType::Regular, mode, len);
        self.tar
            .append_data(&mut h, path, f)
            .map_err(|e| self.err(e))
    }

    /// A symlink.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), BuildError> {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, 0);
        self.tar
            .append_link(&mut h, path, target)
            .map_err(|e| self.err(e))
    }

    /// `metadata.yaml`.
    pub fn metadata(&mut self, md: &ImageMetadata) -> Result<(), BuildError> {
        self.file("metadata.yaml", 0o644, md.to_yaml().as_bytes())
    }

    /// Appends every entry of a directory tree on the host under `prefix`, keeping modes and
    /// owners but never following symlinks.
    pub fn tree(&mut self, prefix: &str, from: &Path) -> Result<(), BuildError> {
        self.tar.follow_symlinks(false);
        self.tar.mode(tar::HeaderMode::Complete);
        let r = self
            .tar
            .append_dir_all(prefix, from)
            .map_err(|e| self.err(e));
        self.tar.mode(tar::HeaderMode::Deterministic);
        r
    }

    /// Finishes the tarball.
    pub fn finish(self) -> Result<(), BuildError> {
        let path = self.path.clone();
        let err = |source| BuildError::Write {
            path: path.clone(),
            source,
        };
        let gz = self.tar.into_inner().map_err(err)?;
        let mut file = gz.finish().map_err(err)?;
        file.flush().map_err(err)?;
        file.sync_all().map_err(err)
    }
}

/// The metadata of a built image: its properties and the `hostname`/`hosts` templates
/// every builder ships, rendered when an instance is created or copied.
pub(crate) fn image_metadata(
    created: i64,
    arch: &str,
    properties: &[(&str, String)],
) -> ImageMetadata {
    let template = |file: &str| crate::metadata::Template {
        when: vec!["create".to_owned(), "copy".to_owned()],
        template: file.to_owned(),
        ..Default::default()
    };
    let mut templates = std::collections::BTreeMap::new();
    templates.insert("/etc/hostname".to_owned(), template("hostname.tpl"));
    templates.insert("/etc/hosts".to_owned(), template("hosts.tpl"));
    ImageMetadata {
        architecture: arch.to_owned(),
        creation_date: created,
        expiry_date: 0,
        properties: properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        templates,
    }
}

/// Starts an image file at `out` with `metadata.yaml` and the templates of
/// [`image_metadata`].
pub(crate) fn begin(out: &Path, md: &ImageMetadata) -> Result<ImageWriter, BuildError> {
    let mut w = ImageWriter::create(out, md.creation_date.unsigned_abs())?;
    w.metadata(md)?;
    w.dir("templates", 0o755)?;
    w.file("templates/hostname.tpl", 0o644, b"{{ container.name }}\n")?;
    w.file(
        "templates/hosts.tpl",
        0o644,
        b"127.0.0.1\tlocalhost\n127.0.1.1\t{{ container.name }}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    )?;
    Ok(w)
}

/// The machine name of this host (`x86_64`, `aarch64`, …), as images name architectures.
pub fn host_architecture() -> String {
    std::process::Command::new("uname")
        .arg("-m")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
