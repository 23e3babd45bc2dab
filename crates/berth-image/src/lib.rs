//! Image formats for berth.
//!
//! An image is either *unified* (one tarball holding `metadata.yaml`, `templates/` and
//! `rootfs/`) or *split* (a metadata tarball plus a rootfs that is a squashfs or a tarball).
//! Its fingerprint is the SHA-256 of the file, or of the metadata file followed by the rootfs
//! file. This crate recognises compressions, parses and validates `metadata.yaml`, scans
//! untrusted archives for anything that could escape or harm the host ([`scan`]), and builds
//! images offline ([`build`]). It knows nothing of the daemon or its database.

pub mod build;
pub mod compression;
pub mod metadata;
pub mod scan;
pub mod squashfs;

pub use compression::Compression;
pub use metadata::{ImageMetadata, Template};
pub use scan::{EntryCheck, Limits, ScanError, Scanned};

/// A SHA-256 digest as lower-case hex.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
