//! File access inside a container's root filesystem that can never reach the host.
//!
//! Every path is resolved by the kernel relative to the rootfs directory with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: absolute symlinks and `..` stay inside
//! the rootfs, whatever the container planted and however it changes the tree meanwhile
//! (the resolution is atomic, so there is no window between a check and its use). Changes
//! go through descriptors: a parent directory is resolved that way, then only its final
//! component is created, opened (`O_NOFOLLOW`) or removed relative to it. Only regular files
//! and directories are ever opened for data, and never blocking (a planted FIFO cannot hang
//! berthd); devices are refused.
//!
//! The rootfs is the instance's volume on its pool, the same inodes a running container
//! sees through its idmapped mount; on disk, owners are the container's own ids (the mount
//! shifts them), so ids here are container ids for running and stopped containers alike.
//! Mounts made inside a running container (its /proc, /dev, tmpfs) are not part of it.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    Symlink,
    Other,
}

impl Kind {
    /// LXD's `X-LXD-type` name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Directory => "directory",
            Kind::Symlink => "symlink",
            Kind::Other => "other",
        }
    }
}

/// Metadata of one path, ids in the container's numbering.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub kind: Kind,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (with set-id and sticky bits), no file type.
    pub mode: u32,
    /// Full `st_mode`, file type included (SFTP wants it).
    pub raw_mode: u32,
    pub size: u64,
    pub atime: i64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

fn meta(st: &Stat) -> Meta {
    let ft = FileType::from_raw_mode(st.st_mode);
    Meta {
        kind: match ft {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Directory,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        },
        uid: st.st_uid,
        gid: st.st_gid,
        mode: st.st_mode & 0o7777,
        raw_mode: st.st_mode,
        size: u64::try_from(st.st_size).unwrap_or(0),
        atime: st.st_atime,
        mtime: st.st_mtime,
        mtime_nsec: i64::try_from(st.st_mtime_nsec).unwrap_or(0),
    }
}

/// Metadata of an open file.
pub fn fmeta(file: &File) -> std::io::Result<Meta> {
    rustix::fs::fstat(file).map(|s| meta(&s)).map_err(io)
}

/// How [`RootFs::write_file`] treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Overwrite,
    Append,
}

/// Owner and mode to give a created path; `None` keeps what creation gives.
#[derive(Debug, Clone, Copy, Default)]
pub struct Owner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
}

/// How SFTP's OPEN opens a file.
#[derive(Debug, Clone, Copy)]
pub struct OpenHow {
    pub read: bool,
    pub write: bool,
    pub create: bool,
    pub truncate: bool,
    pub excl: bool,
    pub append: bool,
    /// Permission bits of a created file.
    pub mode: u32,
}

/// A container's root filesystem.
#[derive(Debug)]
pub struct RootFs {
    root: OwnedFd,
}

/// The most entries a directory listing returns (a container could make millions).
const MAX_ENTRIES: usize = 1_000_000;
/// The deepest tree `remove_all` removes (each level holds a descriptor).
const MAX_DEPTH: usize = 256;

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

fn io(e: Errno) -> std::io::Error {
    e.into()
}

/// The normal components of `path` (`.` dropped; `..` kept for the kernel to clamp).
fn relative(path: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => out.push(".."),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// `path` as an absolute, normalised path inside the container (`..` clamped at `/`).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&OsStr> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let mut out = String::from("/");
    out.push_str(
        &parts
            .iter()
            .map(|p| p.to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
    );
    out
}

impl RootFs {
    /// Opens the rootfs directory `dir` (a host path berthd chose).
    pub fn open(dir: &Path) -> std::io::Result<RootFs> {
        // The rootfs itself is never a link (one planted by an import or a peer would
        // lead anywhere on the host).
        let root = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        Ok(RootFs { root })
    }

    fn resolve(&self, path: &Path, flags: OFlags) -> std::io::Result<OwnedFd> {
        let p = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        // RESOLVE_IN_ROOT answers EAGAIN when a rename or mount anywhere raced a `..`
        // step: try again, a bounded number of times.
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(
                &self.root,
                p,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                RESOLVE,
            ) {
                Err(Errno::AGAIN) if tries < 64 => tries += 1,
                r => return r.map_err(io),
            }
        }
    }

    /// The parent directory of `path` (resolved in the root) and its final component, which
    /// must be a plain name.
    fn parent(&self, path: &str) -> std::io::Result<(OwnedFd, PathBuf)> {
        let rel = relative(&normalize(path));
        let name = rel.file_name().map(PathBuf::from).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "the root has no parent")
        })?;
        let dir = rel.parent().unwrap_or(Path::new(""));
        Ok((self.resolve(dir, OFlags::PATH | OFlags::DIRECTORY)?, name))
    }

    /// Metadata of `path`, not following a final symlink.
    pub fn lstat(&self, path: &str) -> std::io::Result<Meta> {
        let rel = relative(path);
        if rel.as_os_str().is_empty() {
            return rustix::fs::fstat(&self.root).map(|s| meta(&s)).map_err(io);
        }
        let fd = self.resolve(&rel, OFlags::PATH | OFlags::NOFOLLOW)?;
        rustix::fs::fstat(&fd).map(|s| meta(&s)).map_err(io)
    }

    /// Metadata of `path`, following symlinks (inside the root).
    pub fn stat(&self, path: &str) -> std::io::Result<Meta> {
        let fd = self.resolve(&relative(path), OFlags::PATH)?;
        rustix::fs::fstat(&fd).map(|s| meta(&s)).map_err(io)
    }

    /// Opens a regular file (or a directory, when `dir_ok`) for reading, never following
    /// a final symlink and never blocking on a FIFO or device.
    pub fn open_read(&self, path: &str, dir_ok: bool) -> std::io::Result<(File, Meta)> {
        let fd = self.resolve(
            &relative(path),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY,
        )?;
        let m = meta(&rustix::fs::fstat(&fd).map_err(io)?);
        match m.kind {
            Kind::File => {}
            Kind::Directory if dir_ok => {}
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{path} is not a regular file"),
                ));
            }
        }
        rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(io)?;
        Ok((File::from(fd), m))
    }

    /// The entries of directory `path` (without `.` and `..`), sorted, with metadata.
    pub fn read_dir(&self, path: &str) -> std::io::Result<Vec<(String, Meta)>> {
        let fd = self.resolve(&relative(path), OFlags::RDONLY | OFlags::DIRECTORY)?;
        let mut dir = rustix::fs::Dir::read_from(&fd).map_err(io)?;
        let mut out = Vec::new();
        for entry in dir.by_ref() {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsStr::from_bytes(name);
            // An entry removed since readdir saw it is simply not listed.
            let st = match rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(io(e)),
            };
            out.push((name.to_string_lossy().into_owned(), meta(&st)));
            if out.len() > MAX_ENTRIES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{path} has more than {MAX_ENTRIES} entries"),
                ));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The target of symlink `path`, as stored.
    pub fn readlink(&self, path: &str) -> std::io::Result<String> {
        let (dir, name) = self.parent(path)?;
        let target = rustix::fs::readlinkat(&dir, &name, Vec::new()).map_err(io)?;
        Ok(target.to_string_lossy().into_owned())
    }

    /// Where symlink `path` points, as an absolute path inside the container (a relative
    /// target joined to the link's directory), normalised; as LXD's files API reports it.
    pub fn link_target(&self, path: &str) -> std::io::Result<String> {
        let target = self.readlink(path)?;
        if target.starts_with('/') {
            return Ok(normalize(&target));
        }
        let link = normalize(path);
        let dir = Path::new(&link).parent().unwrap_or(Path::new("/"));
        Ok(normalize(&dir.join(target).to_string_lossy()))
    }

    fn apply(&self, fd: &OwnedFd, owner: Owner) -> std::io::Result<()> {
        if owner.uid.is_some() || owner.gid.is_some() {
            rustix::fs::fchown(
                fd,
                owner.uid.map(rustix::fs::Uid::from_raw),
                owner.gid.map(rustix::fs::Gid::from_raw),
            )
            .map_err(io)?;
        }
        // After the owner: a change of owner clears set-id bits.
        if let Some(mode) = owner.mode {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(mode & 0o7777)).map_err(io)?;
        }
        Ok(())
    }

    /// Opens regular file `path` for writing, creating it when missing. Owner and mode are
    /// applied only to a file this call created (as LXD does). Returns the file and whether
    /// it was created.
    pub fn write_file(
        &self,
        path: &str,
        how: Write,
        owner: Owner,
    ) -> std::io::Result<(File, bool)> {
        let (dir, name) = self.parent(path)?;
        let base =
            OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(owner.mode.unwrap_or(0o644) & 0o777);
        let (fd, created) =
            match rustix::fs::openat(&dir, &name, base | OFlags::CREATE | OFlags::EXCL, mode) {
                Ok(fd) => (fd, true),
                Err(Errno::EXIST) => (
                    rustix::fs::openat(&dir, &name, base, Mode::empty()).map_err(io)?,
                    false,
                ),
                Err(e) => return Err(io(e)),
            };
        if meta(&rustix::fs::fstat(&fd).map_err(io)?).kind != Kind::File {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{path} is not a regular file"),
            ));
        }
        rustix::fs::fcntl_setfl(
            &fd,
            if how == Write::Append {
                OFlags::APPEND
            } else {
                OFlags::empty()
            },
        )
        .map_err(io)?;
        if how == Write::Overwrite && !created {
            rustix::fs::ftruncate(&fd, 0).map_err(io)?;
        }
        if created {
            self.apply(
                &fd,
                Owner {
                    mode: owner.mode.or(Some(0o644)),
                    ..owner
                },
            )?;
        }
        Ok((File::from(fd), created))
    }

    /// Opens regular file `path` as SFTP's OPEN asks (a directory too, read-only).
    pub fn open_rw(&self, path: &str, how: OpenHow) -> std::io::Result<File> {
        let mut flags = OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        flags |= match (how.read, how.write) {
            (true, true) => OFlags::RDWR,
            (false, true) => OFlags::WRONLY,
            _ => OFlags::RDONLY,
        };
        // An existing path is resolved whole (symlinks followed, inside the root); a new
        // file is created in its resolved parent and gets exactly `mode`.
        let existing = if how.excl {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        } else {
            self.resolve(&relative(path), flags)
        };
        let fd = match existing {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && how.create => {
                let (dir, name) = self.parent(path)?;
                let mut cflags = flags | OFlags::CREATE | OFlags::NOFOLLOW;
                if how.excl {
                    cflags |= OFlags::EXCL;
                }
                let fd = rustix::fs::openat(&dir, &name, cflags, Mode::from_raw_mode(0o600))
                    .map_err(io)?;
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(how.mode & 0o7777)).map_err(io)?;
                fd
            }
            Err(e) => return Err(e),
        };
        let k = meta(&rustix::fs::fstat(&fd).map_err(io)?).kind;
        if k != Kind::File && (k != Kind::Directory || how.write) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{path} is not a regular file"),
            ));
        }
        let keep = if how.append {
            OFlags::APPEND
        } else {
            OFlags::empty()
        };
        rustix::fs::fcntl_setfl(&fd, keep).map_err(io)?;
        if how.truncate && how.write {
            rustix::fs::ftruncate(&fd, 0).map_err(io)?;
        }
        Ok(File::from(fd))
    }

    /// Creates directory `path`; `Ok(false)` when a directory is already there.
    pub fn mkdir(&self, path: &str, owner: Owner) -> std::io::Result<bool> {
        let (dir, name) = self.parent(path)?;
        let mode = owner.mode.unwrap_or(0o750);
        match rustix::fs::mkdirat(&dir, &name, Mode::from_raw_mode(mode & 0o777)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(io)?;
                if meta(&st).kind == Kind::Directory {
                    return Ok(false);
                }
                return Err(io(Errno::EXIST));
            }
            Err(e) => return Err(io(e)),
        }
        let fd = rustix::fs::openat(
            &dir,
            &name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        self.apply(
            &fd,
            Owner {
                mode: Some(mode),
                ..owner
            },
        )?;
        Ok(true)
    }

    /// Creates symlink `path` pointing to `target`; `Ok(false)` when it already points
    /// there.
    pub fn symlink(&self, path: &str, target: &str, owner: Owner) -> std::io::Result<bool> {
        let (dir, name) = self.parent(path)?;
        match rustix::fs::symlinkat(target, &dir, &name) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let old = rustix::fs::readlinkat(&dir, &name, Vec::new());
                if old.is_ok_and(|o| o.as_bytes() == target.as_bytes()) {
                    return Ok(false);
                }
                return Err(io(Errno::EXIST));
            }
            Err(e) => return Err(io(e)),
        }
        if owner.uid.is_some() || owner.gid.is_some() {
            rustix::fs::chownat(
                &dir,
                &name,
                owner.uid.map(rustix::fs::Uid::from_raw),
                owner.gid.map(rustix::fs::Gid::from_raw),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(io)?;
        }
        Ok(true)
    }

    /// Removes a file, symlink or empty directory.
    pub fn remove(&self, path: &str) -> std::io::Result<()> {
        let (dir, name) = self.parent(path)?;
        let st = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(io)?;
        let flags = if meta(&st).kind == Kind::Directory {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        rustix::fs::unlinkat(&dir, &name, flags).map_err(io)
    }

    /// Removes `path` and everything below it.
    pub fn remove_all(&self, path: &str) -> std::io::Result<()> {
        let (dir, name) = self.parent(path)?;
        remove_tree(&dir, &name, 0)
    }

    /// Changes owner and mode of `path` (not following a final symlink for the owner; a
    /// mode applies only to regular files and directories).
    pub fn set_attrs(&self, path: &str, owner: Owner) -> std::io::Result<()> {
        let (dir, name) = self.parent(path)?;
        if owner.uid.is_some() || owner.gid.is_some() {
            rustix::fs::chownat(
                &dir,
                &name,
                owner.uid.map(rustix::fs::Uid::from_raw),
                owner.gid.map(rustix::fs::Gid::from_raw),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(io)?;
        }
        if let Some(mode) = owner.mode {
            let fd = rustix::fs::openat(
                &dir,
                &name,
                OFlags::RDONLY
                    | OFlags::NOFOLLOW
                    | OFlags::NONBLOCK
                    | OFlags::NOCTTY
                    | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io)?;
            if !matches!(
                meta(&rustix::fs::fstat(&fd).map_err(io)?).kind,
                Kind::File | Kind::Directory
            ) {
                return Err(io(Errno::INVAL));
            }
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777)).map_err(io)?;
        }
        Ok(())
    }

    /// Sets access and modification times of `path` (not following a final symlink).
    pub fn set_times(&self, path: &str, atime: i64, mtime: i64) -> std::io::Result<()> {
        let (dir, name) = self.parent(path)?;
        let ts = |s: i64| rustix::fs::Timespec {
            tv_sec: s,
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            &dir,
            &name,
            &rustix::fs::Timestamps {
                last_access: ts(atime),
                last_modification: ts(mtime),
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io)
    }

    /// Renames `from` to `to`, replacing `to` unless `no_replace`.
    pub fn rename(&self, from: &str, to: &str, no_replace: bool) -> std::io::Result<()> {
        let (fd, fname) = self.parent(from)?;
        let (td, tname) = self.parent(to)?;
        let flags = if no_replace {
            rustix::fs::RenameFlags::NOREPLACE
        } else {
            rustix::fs::RenameFlags::empty()
        };
        rustix::fs::renameat_with(&fd, &fname, &td, &tname, flags).map_err(io)
    }

    /// Hard-links `from` as `to` (both inside the root; a final symlink is not followed).
    pub fn hard_link(&self, from: &str, to: &str) -> std::io::Result<()> {
        let (fd, fname) = self.parent(from)?;
        let (td, tname) = self.parent(to)?;
        rustix::fs::linkat(&fd, &fname, &td, &tname, AtFlags::empty()).map_err(io)
    }

    /// The filesystem's statistics (for SFTP's statvfs).
    pub fn statvfs(&self) -> std::io::Result<rustix::fs::StatVfs> {
        rustix::fs::fstatvfs(self.root.as_fd()).map_err(io)
    }
}

/// Removes `name` in `dir` with everything below it, never following symlinks.
fn remove_tree(dir: &OwnedFd, name: &Path, depth: usize) -> std::io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("the tree is deeper than {MAX_DEPTH} levels"),
        ));
    }
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io)?;
    if meta(&st).kind != Kind::Directory {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(io);
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io)?;
    let mut names = Vec::new();
    {
        let mut d = rustix::fs::Dir::read_from(&sub).map_err(io)?;
        for e in d.by_ref() {
            let e = e.map_err(io)?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(PathBuf::from(OsStr::from_bytes(n)));
            }
        }
    }
    for n in names {
        remove_tree(&sub, &n, depth + 1)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, RootFs, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host-etc");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("passwd"), "host\n").unwrap();
        let root = tmp.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::write(root.join("etc/passwd"), "container\n").unwrap();
        // Escapes a naive resolver would follow: absolute, relative, and a host path.
        std::os::unix::fs::symlink("/etc", root.join("tmp/e")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("tmp/r")).unwrap();
        std::os::unix::fs::symlink(&host, root.join("tmp/h")).unwrap();
        let fs = RootFs::open(&root).unwrap();
        (tmp, fs, host)
    }

    #[test]
    fn symlinks_and_dotdot_stay_inside() {
        let (_tmp, fs, host) = tree();
        for p in ["/tmp/e/passwd", "/tmp/r/passwd", "tmp/../../../etc/passwd"] {
            let (mut f, _) = fs.open_read(p, false).unwrap();
            let mut s = String::new();
            std::io::Read::read_to_string(&mut f, &mut s).unwrap();
            assert_eq!(s, "container\n", "{p}");
        }
        // The host path does not exist inside.
        assert!(fs.open_read("/tmp/h/passwd", false).is_err());
        // Writes through the links land in the container's /etc.
        for p in ["/tmp/e/new", "/tmp/r/new2"] {
            let (mut f, created) = fs
                .write_file(p, Write::Overwrite, Owner::default())
                .unwrap();
            assert!(created);
            std::io::Write::write_all(&mut f, b"x").unwrap();
        }
        assert!(fs.lstat("/etc/new").is_ok() && fs.lstat("/etc/new2").is_ok());
        assert!(
            fs.write_file("/tmp/h/evil", Write::Overwrite, Owner::default())
                .is_err()
        );
        assert!(!host.join("evil").exists());
        assert_eq!(
            std::fs::read_to_string(host.join("passwd")).unwrap(),
            "host\n"
        );
        // A final symlink is never written through.
        assert!(
            fs.write_file("/tmp/e", Write::Overwrite, Owner::default())
                .is_err()
        );
        assert_eq!(fs.link_target("/tmp/r").unwrap(), "/etc");
        assert_eq!(fs.lstat("/tmp/e").unwrap().kind, Kind::Symlink);
    }

    #[test]
    fn creates_with_owners_and_modes_and_removes_trees() {
        let (_tmp, fs, _) = tree();
        let owner = Owner {
            uid: Some(1000),
            gid: Some(1001),
            mode: Some(0o640),
        };
        assert!(
            fs.write_file("/home/u/f", Write::Overwrite, owner).is_err(),
            "no parent"
        );
        fs.mkdir("/home", Owner::default()).unwrap();
        fs.mkdir(
            "/home/u",
            Owner {
                mode: Some(0o700),
                ..owner
            },
        )
        .unwrap();
        let (mut f, _) = fs.write_file("/home/u/f", Write::Overwrite, owner).unwrap();
        std::io::Write::write_all(&mut f, b"one").unwrap();
        drop(f);
        let (mut f, created) = fs
            .write_file("/home/u/f", Write::Append, Owner::default())
            .unwrap();
        assert!(!created);
        std::io::Write::write_all(&mut f, b"two").unwrap();
        let m = fs.lstat("/home/u/f").unwrap();
        assert_eq!((m.uid, m.gid, m.mode, m.size), (1000, 1001, 0o640, 6));
        assert_eq!(fs.lstat("/home/u").unwrap().mode, 0o700);
        assert!(
            !fs.mkdir("/home", Owner::default()).unwrap(),
            "existing directory"
        );
        assert!(fs.symlink("/home/l", "u/f", Owner::default()).unwrap());
        assert!(!fs.symlink("/home/l", "u/f", Owner::default()).unwrap());
        let names: Vec<String> = fs
            .read_dir("/home")
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(names, ["l", "u"]);
        assert!(fs.remove("/home").is_err(), "not empty");
        fs.remove_all("/home").unwrap();
        // Trees deeper than the limit are refused, not recursed into without end.
        let mut deep = String::from("/deep");
        fs.mkdir(&deep, Owner::default()).unwrap();
        for _ in 0..MAX_DEPTH + 2 {
            deep.push_str("/d");
            fs.mkdir(&deep, Owner::default()).unwrap();
        }
        assert!(
            fs.remove_all("/deep")
                .unwrap_err()
                .to_string()
                .contains("deeper")
        );
        assert!(fs.lstat("/home").is_err());
        assert!(fs.remove("/").is_err());
    }
}
