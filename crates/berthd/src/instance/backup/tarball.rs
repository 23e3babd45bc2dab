//! Writing a backup tarball in LXD's layout, as a stream: `backup/index.yaml` first (so a
//! reader can check it before anything is unpacked), then each snapshot's tree under
//! `backup/snapshots/NAME/`, oldest first, then the instance's under `backup/container/`.
//!
//! Trees are walked here rather than by the `tar` crate, by descriptor (never through a
//! link a running container swaps in), to keep what it leaves out: hard links (written
//! once, then as links), extended attributes (PAX `SCHILY.xattr.*` records, as GNU tar
//! and LXD write them), and owners as numbers only. Files keep the
//! container's numbering, as they are stored. Device nodes and sockets are left out (an
//! unprivileged container cannot make them, and an import refuses device nodes).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_api::backup::BackupIndex;
use berth_image::Compression;
use rustix::fs::{AtFlags, Mode, OFlags};
use tar::{EntryType, Header};

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
    let mut tar = start(out, compression, index, progress)?;
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

/// A tarball written through a compressor into a counted writer.
type Tarball<W, F> = tar::Builder<berth_image::compression::Encoder<io::BufWriter<Counting<W, F>>>>;

/// A tarball being written to `out` in `compression` (counted for `progress`), its
/// `backup/index.yaml` (`index`) in first.
fn start<W: Write, F: FnMut(u64)>(
    out: W,
    compression: Compression,
    index: &BackupIndex,
    progress: F,
) -> io::Result<Tarball<W, F>> {
    let counted = Counting {
        inner: out,
        done: 0,
        report: progress,
    };
    let encoder = compression.writer(io::BufWriter::with_capacity(1 << 20, counted))?;
    let mut tar = tar::Builder::new(encoder);
    let yaml = serde_saphyr::to_string(index).map_err(io::Error::other)?;
    small(&mut tar, "backup/index.yaml", &yaml)?;
    Ok(tar)
}

/// Appends `text` as the regular file `path` (0644, written now).
fn small<W: Write>(tar: &mut tar::Builder<W>, path: &str, text: &str) -> io::Result<()> {
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(text.len() as u64);
    h.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
    tar.append_data(&mut h, path, text.as_bytes())
}

/// Writes an optimized backup to `out` in `compression`: `index`, the driver's header
/// (`optimized_header.yaml`, the subvolumes as Incus lists them), then `sender`'s streams
/// as `backup/snapshots/NAME.bin` (for each of `snapshots`, oldest first) and
/// `backup/container.bin`. Each stream is read once to learn its size, then again into
/// the archive: nothing is staged on disk.
pub fn write_streams<W: Write>(
    out: W,
    compression: Compression,
    index: &BackupIndex,
    snapshots: &[String],
    sender: &dyn berth_storage::Sender,
    progress: impl FnMut(u64),
) -> io::Result<()> {
    let mut tar = start(out, compression, index, progress)?;
    let subvolumes: Vec<serde_json::Value> = snapshots
        .iter()
        .map(|s| serde_json::json!({"path": "/", "snapshot": s, "readonly": true, "uuid": ""}))
        .chain([serde_json::json!({"path": "/", "snapshot": "", "readonly": false, "uuid": ""})])
        .collect();
    let header = serde_saphyr::to_string(&serde_json::json!({ "subvolumes": subvolumes }))
        .map_err(io::Error::other)?;
    small(&mut tar, "backup/optimized_header.yaml", &header)?;
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let names = snapshots
        .iter()
        .map(|s| format!("backup/snapshots/{s}.bin"))
        .chain(["backup/container.bin".to_owned()]);
    for (i, name) in names.enumerate() {
        let stream = |i| sender.stream(i).map_err(io::Error::other);
        let size = io::copy(&mut stream(i)?, &mut io::sink())?;
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o600);
        h.set_size(size);
        h.set_mtime(now);
        tar.append_data(&mut h, name, berth_storage::Exact::new(stream(i)?, size))?;
    }
    tar.into_inner()?.finish()?.flush()
}

/// Walks trees into a tarball by descriptor (each entry opened relative to its opened
/// directory, never through a link: a running container swapping a file for a symlink
/// cannot make the walk read the host's files), remembering files with several links.
#[derive(Default)]
struct Walker {
    /// Each multiply-linked file written so far (device, inode) and its archive path.
    links: HashMap<(u64, u64), PathBuf>,
}

/// A header for an entry of type `kind` from its status.
fn header(st: &rustix::fs::Stat, kind: EntryType, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(size);
    h
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
        let dir = rustix::fs::open(root, dir_flags(), Mode::empty())?;
        self.dir(tar, &dir, Path::new(under), backup_yaml)
    }

    /// Appends directory `dir` (opened) as `name`, then what it holds, in name order.
    fn dir<W: Write>(
        &mut self,
        tar: &mut tar::Builder<W>,
        dir: &OwnedFd,
        name: &Path,
        backup_yaml: Option<&str>,
    ) -> io::Result<()> {
        let st = rustix::fs::fstat(dir)?;
        fd_xattrs(tar, dir, name)?;
        let mut h = header(&st, EntryType::Directory, 0);
        tar.append_data(&mut h, name, io::empty())?;
        if let Some(yaml) = backup_yaml {
            let mut h = header(&st, EntryType::Regular, yaml.len() as u64);
            h.set_mode(0o600);
            h.set_uid(0);
            h.set_gid(0);
            tar.append_data(&mut h, name.join("backup.yaml"), yaml.as_bytes())?;
        }
        let mut children: Vec<std::ffi::OsString> = Vec::new();
        for entry in rustix::fs::Dir::read_from(dir)? {
            let entry = entry?;
            let n = entry.file_name().to_bytes();
            if n == b"." || n == b".." || (backup_yaml.is_some() && n == b"backup.yaml") {
                continue;
            }
            children.push(std::ffi::OsStr::from_bytes(n).to_owned());
        }
        children.sort();
        for c in children {
            self.child(tar, dir, &c, &name.join(&c))?;
        }
        Ok(())
    }

    /// Appends entry `child` of directory `dir` as `name`.
    fn child<W: Write>(
        &mut self,
        tar: &mut tar::Builder<W>,
        dir: &OwnedFd,
        child: &std::ffi::OsStr,
        name: &Path,
    ) -> io::Result<()> {
        use rustix::fs::FileType;
        let st = match rustix::fs::statat(dir, child, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Gone meanwhile (the container runs on): left out.
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let kind = FileType::from_raw_mode(st.st_mode);
        let key = (st.st_dev, st.st_ino);
        if kind != FileType::Directory
            && st.st_nlink > 1
            && let Some(first) = self.links.get(&key)
        {
            let mut h = header(&st, EntryType::Link, 0);
            return tar.append_link(&mut h, name, first);
        }
        match kind {
            FileType::Directory => {
                let Ok(sub) = rustix::fs::openat(dir, child, dir_flags(), Mode::empty()) else {
                    return Ok(()); // Replaced meanwhile by something else: left out.
                };
                if same(&sub, &st) {
                    self.dir(tar, &sub, name, None)?;
                }
                Ok(())
            }
            FileType::RegularFile => {
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
                let Ok(fd) = rustix::fs::openat(dir, child, flags, Mode::empty()) else {
                    return Ok(());
                };
                if !same(&fd, &st) {
                    return Ok(());
                }
                let st = rustix::fs::fstat(&fd)?;
                if st.st_nlink > 1 {
                    self.links.insert(key, name.to_path_buf());
                }
                fd_xattrs(tar, &fd, name)?;
                let size = u64::try_from(st.st_size).unwrap_or(0);
                let mut h = header(&st, EntryType::Regular, size);
                // The size the header says is what goes, even if the file changed meanwhile.
                let file = std::fs::File::from(fd).take(size);
                let mut pad = PadTo {
                    inner: file,
                    left: size,
                };
                tar.append_data(&mut h, name, &mut pad)
            }
            FileType::Symlink => {
                let Ok(target) = rustix::fs::readlinkat(dir, child, Vec::new()) else {
                    return Ok(());
                };
                let target = std::ffi::OsStr::from_bytes(target.as_bytes()).to_owned();
                let mut h = header(&st, EntryType::Symlink, 0);
                tar.append_link(&mut h, name, target)
            }
            FileType::Fifo => {
                let mut h = header(&st, EntryType::Fifo, 0);
                tar.append_data(&mut h, name, io::empty())
            }
            // Device nodes and sockets: an unprivileged container cannot make the first,
            // and an import refuses them; sockets are not files to keep.
            _ => {
                tracing::debug!(entry = %name.display(), "Left out of the backup (a device or socket)");
                Ok(())
            }
        }
    }
}

/// How a directory of a tree is opened: never through a link.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Whether `fd` is the file `st` described (not one swapped in since).
fn same(fd: &OwnedFd, st: &rustix::fs::Stat) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|now| now.st_dev == st.st_dev && now.st_ino == st.st_ino)
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
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let mut n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            buf[..want].fill(0);
            n = want;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes a PAX header with the extended attributes of the file open as `fd`, if any.
fn fd_xattrs<W: Write>(tar: &mut tar::Builder<W>, fd: &OwnedFd, name: &Path) -> io::Result<()> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::flistxattr(fd, &mut names) {
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
        let Ok(len) = rustix::fs::fgetxattr(fd, attr_name, &mut value) else {
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
