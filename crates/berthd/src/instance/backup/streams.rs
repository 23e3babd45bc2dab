//! Importing an optimized backup: the pool driver's own streams (`backup/snapshots/
//! NAME.bin`, oldest first, then `backup/container.bin`), each received as it arrives
//! into a holding place of the pool and put in place once all came; an
//! `optimized_header.yaml` naming subvolumes inside the volume is refused (they are not
//! kept), as is a stream of another driver.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::backup::BackupIndex;
use berth_storage::{Driver, Receiver, VolumeType};

use super::import::{SMALL, fits, refused};
use crate::error::{Failure, Result};

/// Refuses an optimized backup that pool `pool` cannot receive.
pub(super) fn check_pool(index: &BackupIndex, pool_name: &str, pool: &dyn Driver) -> Result<()> {
    let info = pool.info();
    match berth_storage::supported()
        .into_iter()
        .find(|d| d.name == index.backend)
    {
        // A driver that makes no streams (dir) cannot have made these.
        Some(d) if !d.optimized_backups => {
            return Err(refused(format!(
                "it claims storage streams of a {:?} pool, which makes none",
                index.backend
            )));
        }
        Some(_) => {}
        None => {
            return Err(refused(format!(
                "it holds storage streams of a {:?} pool, a driver this server does not have",
                index.backend
            )));
        }
    }
    if !info.optimized_backups {
        return Err(refused(format!(
            "it is optimized (storage streams), which a {} pool such as {pool_name:?} cannot take: import it into a {:?} pool",
            info.name, index.backend
        )));
    }
    if info.name != index.backend {
        return Err(refused(format!(
            "an optimized backup of a {:?} pool goes only to a pool of that driver, and {pool_name:?} is a {} pool",
            index.backend, info.name
        )));
    }
    Ok(())
}

/// The streams of an optimized backup, as they arrive.
pub(super) struct Streams {
    receiver: Option<Box<dyn Receiver>>,
    /// The snapshots the index names.
    wanted: Vec<String>,
    got: BTreeSet<String>,
    volume: bool,
}

impl Streams {
    pub(super) fn new(pool: &Arc<dyn Driver>, instance: &str, wanted: Vec<String>) -> Result<Self> {
        Ok(Streams {
            receiver: Some(pool.receiver(VolumeType::Container, instance)?),
            wanted,
            got: BTreeSet::new(),
            volume: false,
        })
    }

    /// Takes one (checked) member.
    pub(super) fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        comps: &[String],
        root: &Path,
    ) -> Result<()> {
        let shown = comps.join("/");
        let kind = entry.header().entry_type();
        let regular = matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous);
        let snapshot = match comps {
            [] => return Ok(()),
            [b] | [b, _] if b == "backup" && (comps.len() == 1 || comps[1] == "snapshots") => {
                if kind != tar::EntryType::Directory {
                    return Err(refused(format!("member {shown:?} must be a directory")));
                }
                return Ok(());
            }
            [b, h] if b == "backup" && h == "optimized_header.yaml" && regular => {
                let raw = berth_image::scan::read_small(entry, &shown, SMALL)
                    .map_err(|e| refused(e.to_string()))?;
                return check_header(&raw);
            }
            [b, c] if b == "backup" && c == "container.bin" && regular => None,
            [b, s, file] if b == "backup" && s == "snapshots" && regular => {
                let Some(name) = file.strip_suffix(".bin") else {
                    return Err(refused(format!("unexpected member {shown:?}")));
                };
                if !self.wanted.iter().any(|w| w == name) {
                    return Err(refused(format!(
                        "snapshot {name:?} is not named in index.yaml"
                    )));
                }
                Some(name.to_owned())
            }
            _ => return Err(refused(format!("unexpected member {shown:?}"))),
        };
        if self.volume {
            return Err(refused(format!(
                "member {shown:?} comes after backup/container.bin"
            )));
        }
        fits(root, entry.size(), &shown)?;
        let receiver = self.receiver.as_mut().expect("taken at finish only");
        receiver
            .receive(snapshot.as_deref(), entry)
            .map_err(|e| match &e {
                // The stream's fault, the archive's, or what receive made of the stream.
                berth_storage::StorageError::Stream {
                    what: "refuse" | "read" | "receive",
                    detail,
                    ..
                } => refused(format!("member {shown:?} does not receive: {detail}")),
                _ => Failure::from(e),
            })?;
        match snapshot {
            Some(s) => {
                self.got.insert(s);
            }
            None => self.volume = true,
        }
        Ok(())
    }

    /// Puts the volume and its snapshots in place once all came; their trees.
    pub(super) fn finish(mut self, pool: &dyn Driver, instance: &str) -> Result<Vec<PathBuf>> {
        if !self.volume {
            return Err(refused("it holds no backup/container.bin"));
        }
        if let Some(missing) = self.wanted.iter().find(|s| !self.got.contains(*s)) {
            return Err(refused(format!(
                "snapshot {missing:?} of index.yaml is not in the archive"
            )));
        }
        let receiver = self.receiver.take().expect("finished once");
        receiver.finish()?;
        let t = VolumeType::Container;
        let mut trees = vec![pool.volume_path(t, instance)];
        trees.extend(
            self.wanted
                .iter()
                .map(|s| pool.snapshot_path(t, instance, s)),
        );
        for tree in &trees {
            check_top(tree)?;
            no_devices(tree)?;
        }
        Ok(trees)
    }
}

/// A received tree's top holds what berthd reads as root, as a tarball's import checks
/// it: `rootfs` and `templates` real directories, `metadata.yaml`, `backup.yaml` and each
/// template regular files of at most 1 MiB; anything else there is removed.
fn check_top(tree: &Path) -> Result<()> {
    let small_file = |p: &Path| {
        std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file() && m.len() <= SMALL)
    };
    let real_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_dir());
    let entries = std::fs::read_dir(tree)
        .map_err(|e| Failure::failed("Failed to read the received volume", e))?;
    for e in entries.flatten() {
        let (path, name) = (e.path(), e.file_name());
        let ok = match name.to_str() {
            Some("rootfs") => real_dir(&path),
            Some("metadata.yaml" | "backup.yaml") => small_file(&path),
            Some("templates") => {
                real_dir(&path)
                    && std::fs::read_dir(&path)
                        .map_err(|e| Failure::failed("Failed to read the received volume", e))?
                        .flatten()
                        .all(|t| small_file(&t.path()))
            }
            _ => {
                let gone = match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.file_type().is_dir() => std::fs::remove_dir_all(&path),
                    _ => std::fs::remove_file(&path),
                };
                gone.map_err(|e| Failure::failed("Failed to tidy the received volume", e))?;
                true
            }
        };
        if !ok {
            return Err(refused(format!(
                "{:?} at the top of its volume is not what berthd reads there (rootfs and \
                 templates directories; metadata.yaml, backup.yaml and templates regular \
                 files of at most 1 MiB)",
                name.to_string_lossy()
            )));
        }
    }
    Ok(())
}

/// Refuses a header naming subvolumes inside the volume (they would be lost).
fn check_header(raw: &[u8]) -> Result<()> {
    let text =
        std::str::from_utf8(raw).map_err(|_| refused("optimized_header.yaml is not UTF-8"))?;
    let header: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| {
        refused(format!(
            "optimized_header.yaml does not read: {}",
            crate::error::one_line(&e.without_snippet().to_string())
        ))
    })?;
    let nested = header["subvolumes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["path"].as_str().is_some_and(|p| p != "/"));
    if nested {
        return Err(refused(
            "it holds subvolumes inside the volume, which berthd does not keep",
        ));
    }
    Ok(())
}

/// Refuses a received tree holding a device node (a tarball's import refuses them too).
fn no_devices(root: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Failure::failed(format!("Failed to read {}", dir.display()), e))?;
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_block_device() || t.is_char_device() {
                let inner = e.path();
                let shown = inner.strip_prefix(root).unwrap_or(&inner);
                return Err(refused(format!(
                    "its stream makes device node {}",
                    shown.display()
                )));
            }
            if t.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}
