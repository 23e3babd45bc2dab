//! Writing a backup tarball in LXD's layout, as a stream: `backup/index.yaml` first (so a
//! reader can check it before anything is unpacked), then each snapshot's tree under
//! `backup/snapshots/NAME/`, oldest first, then the instance's under `backup/container/`.
//!
//! Trees are walked here rather than by the `tar` crate, to keep what it leaves out:
//! hard links (written once, then as links), extended attributes (PAX `SCHILY.xattr.*`
//! records, as GNU tar and LXD write them), and owners as numbers only. Files keep the
//! container's numbering, as they are stored. Device nodes and sockets are left out (an
//! unprivileged container cannot make them, and an import refuses device nodes).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_api::backup::BackupIndex;
use berth_image::Compression;
use tar::{EntryType, Header, HeaderMode};

/// The trees a backup holds.
#[derive(Debug, Clone)]
pub struct Contents {
    /// The instance's volume.
    pub volume: PathBuf,
    /// Its snapshots' volumes, oldest first, by name.
    pub snapshots: Vec<(String, PathBuf)>,
    /// The instance's `backup.yaml`, written at the head of `backup/container/` (Incus
    /// updates it on import); one the volume holds is left out.
    pub backup_yaml: String,
}

/// Counts the bytes written, for progress reports.
struct Counting<W, F> {
    inner: W,
    done: u64,
    report: F,
}

impl<W: Write, F: FnMut(u64)> Write for Counting<W, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.done += n as u64;
        (self.report)(self.done);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the backup of `contents`, described by `index`, to `out` in `compression`;
/// `progress` hears the bytes written so far.
pub fn write<W: Write>(
    out: W,
    compression: Compression,
    index: &BackupIndex,
    contents: &Contents,
    progress: impl FnMut(u64),
) -> io::Result<()> {
    let counted = Counting {
        inner: out,
        done: 0,
        report: progress,
    };
    let encoder = compression.writer(io::BufWriter::with_capacity(1 << 20, counted))?;
    let mut tar = tar::Builder::new(encoder);
    let yaml = serde_saphyr::to_string(index).map_err(io::Error::other)?;
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(yaml.len() as u64);
    h.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
    tar.append_data(&mut h, "backup/index.yaml", yaml.as_bytes())?;
    let mut walker = Walker::default();
    for (name, path) in &contents.snapshots {
        walker.tree(&mut tar, path, &format!("backup/snapshots/{name}"), None)?;
    }
    walker.tree(
        &mut tar,
        &contents.volume,
        "backup/container",
        Some(&contents.backup_yaml),
    )?;
    tar.into_inner()?.finish()?.flush()
}

/// Walks trees into a tarball, remembering the files with several links.
#[derive(Default)]
struct Walker {
    /// Each multiply-linked file written so far (device, inode) and its archive path.
    links: HashMap<(u64, u64), PathBuf>,
}

impl Walker {
    /// Appends the tree at `root` under archive path `under` (the root itself included),
    /// with `backup_yaml` as its top `backup.yaml` when given.
    fn tree<W: Write>(
        &mut self,
        tar: &mut tar::Builder<W>,
        root: &Path,
        under: &str,
        backup_yaml: Option<&str>,
    ) -> io::Result<()> {
        let mut stack = vec![(root.to_path_buf(), PathBuf::from(under))];
        while let Some((path, name)) = stack.pop() {
            let md = std::fs::symlink_metadata(&path)?;
            let ft = md.file_type();
            if !ft.is_dir() {
                self.entry(tar, &path, &name, &md)?;
                continue;
            }
            self.entry(tar, &path, &name, &md)?;
            let top = path == root;
            if let (true, Some(yaml)) = (top, backup_yaml) {
                let mut h = Header::new_gnu();
                h.set_entry_type(EntryType::Regular);
                h.set_mode(0o600);
                h.set_size(yaml.len() as u64);
                h.set_mtime(md.mtime().max(0) as u64);
                tar.append_data(&mut h, name.join("backup.yaml"), yaml.as_bytes())?;
            }
            let mut children: Vec<_> = std::fs::read_dir(&path)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()?;
            if top && backup_yaml.is_some() {
                children.retain(|c| c != "backup.yaml");
            }
            // Reversed, so the stack pops them in name order.
            children.sort_by(|a, b| b.cmp(a));
            for c in children {
                stack.push((path.join(&c), name.join(&c)));
            }
        }
        Ok(())
    }

    fn entry<W: Write>(
        &mut self,
        tar: &mut tar::Builder<W>,
        path: &Path,
        name: &Path,
        md: &std::fs::Metadata,
    ) -> io::Result<()> {
        use std::os::unix::fs::FileTypeExt;
        let ft = md.file_type();
        if ft.is_block_device() || ft.is_char_device() || ft.is_socket() {
            tracing::debug!(path = %path.display(), "Left out of the backup (a device or socket)");
            return Ok(());
        }
        let mut h = Header::new_gnu();
        h.set_metadata_in_mode(md, HeaderMode::Complete);
        // Numbers only: names would be the host's, not the container's.
        let _ = h.set_username("");
        let _ = h.set_groupname("");
        if !ft.is_dir() && md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key) {
                h.set_entry_type(EntryType::Link);
                h.set_size(0);
                return tar.append_link(&mut h, name, first);
            }
            if ft.is_file() {
                self.links.insert(key, name.to_path_buf());
            }
        }
        xattrs(tar, path, name)?;
        if ft.is_symlink() {
            let target = std::fs::read_link(path)?;
            h.set_size(0);
            return tar.append_link(&mut h, name, target);
        }
        if ft.is_file() {
            let file = std::fs::File::open(path)?;
            // The size the header says is what goes, even if the file changed meanwhile.
            let size = h.size()?;
            let mut data = file.take(size);
            let mut pad = PadTo {
                inner: &mut data,
                left: size,
            };
            return tar.append_data(&mut h, name, &mut pad);
        }
        h.set_size(0);
        tar.append_data(&mut h, name, io::empty())
    }
}

/// A reader giving exactly `left` bytes: its inner reader's, then zeros if it ends early
/// (a file that shrank while it was read).
struct PadTo<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for PadTo<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let mut n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            buf[..want].fill(0);
            n = want;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes a PAX header with `path`'s extended attributes, if it has any.
fn xattrs<W: Write>(tar: &mut tar::Builder<W>, path: &Path, name: &Path) -> io::Result<()> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut names) {
        Ok(n) => n,
        // Too many to list here, or none supported: the file goes without them.
        Err(_) => return Ok(()),
    };
    let mut records = Vec::new();
    for attr in names[..n].split(|b| *b == 0).filter(|a| !a.is_empty()) {
        let Ok(attr_name) = std::str::from_utf8(attr) else {
            continue;
        };
        let mut value = vec![0u8; 65536];
        let Ok(len) = rustix::fs::lgetxattr(path, attr_name, &mut value) else {
            continue;
        };
        records.extend(pax_record(
            format!("SCHILY.xattr.{attr_name}").as_bytes(),
            &value[..len],
        ));
    }
    if records.is_empty() {
        return Ok(());
    }
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::XHeader);
    h.set_mode(0o644);
    h.set_size(records.len() as u64);
    // The name is informative; readers take the next entry's own.
    let short: Vec<u8> = name
        .as_os_str()
        .as_bytes()
        .iter()
        .rev()
        .take(80)
        .rev()
        .copied()
        .collect();
    let shown = format!("PaxHeaders/{}", String::from_utf8_lossy(&short));
    h.set_path(shown.chars().take(99).collect::<String>())?;
    h.set_cksum();
    tar.append(&h, &records[..])
}

/// One PAX record: `LEN key=value\n`, LEN counting the whole record.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_themselves() {
        let r = pax_record(b"SCHILY.xattr.user.k", b"v");
        assert_eq!(r, b"25 SCHILY.xattr.user.k=v\n");
        let long = pax_record(b"k", &[b'x'; 95]);
        assert_eq!(long.len().to_string(), String::from_utf8_lossy(&long[..3]));
    }

    #[test]
    fn writes_index_snapshots_then_the_volume_with_links_and_xattrs() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        std::fs::create_dir_all(vol.join("rootfs/etc")).unwrap();
        std::fs::write(vol.join("rootfs/etc/a"), "aaa").unwrap();
        std::fs::hard_link(vol.join("rootfs/etc/a"), vol.join("rootfs/etc/b")).unwrap();
        std::os::unix::fs::symlink("a", vol.join("rootfs/etc/s")).unwrap();
        rustix::fs::lsetxattr(
            vol.join("rootfs/etc/a"),
            "user.k",
            b"v",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let snap = tmp.path().join("s1");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("f"), "old").unwrap();
        let index = BackupIndex {
            name: "c1".into(),
            ..Default::default()
        };
        let contents = Contents {
            volume: vol,
            snapshots: vec![("s1".into(), snap)],
            backup_yaml: "container: {}\n".into(),
        };
        let mut out = Vec::new();
        write(&mut out, Compression::Gzip, &index, &contents, |_| {}).unwrap();
        let reader = Compression::Gzip.reader(&out[..]).unwrap();
        let mut archive = tar::Archive::new(reader);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let kind = e.header().entry_type();
            if path == "backup/container/rootfs/etc/a" {
                let x = e.pax_extensions().unwrap().unwrap();
                let keys: Vec<String> = x.map(|r| r.unwrap().key().unwrap().to_owned()).collect();
                assert_eq!(keys, ["SCHILY.xattr.user.k"]);
            }
            seen.push(format!("{path} {kind:?}"));
        }
        assert_eq!(
            seen,
            [
                "backup/index.yaml Regular",
                "backup/snapshots/s1 Directory",
                "backup/snapshots/s1/f Regular",
                "backup/container Directory",
                "backup/container/backup.yaml Regular",
                "backup/container/rootfs Directory",
                "backup/container/rootfs/etc Directory",
                "backup/container/rootfs/etc/a Regular",
                "backup/container/rootfs/etc/b Link",
                "backup/container/rootfs/etc/s Symlink",
            ]
        );
    }
}
