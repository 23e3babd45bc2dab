//! An SFTP version 3 server over any byte stream, serving a container's root filesystem
//! through [`RootFs`], so every path stays inside the container.
//!
//! This is what `GET /1.0/instances/{name}/sftp` speaks after its HTTP upgrade, and what
//! the `incus` client uses for `file push|pull|delete|create|mount`. Requests are answered
//! in order; `OPEN` with read access also opens directories (the incus client opens a path
//! before it looks at it). Besides the base protocol it implements OpenSSH's
//! `posix-rename`, `hardlink`, `statvfs` and `fsync` extensions, as the Go SFTP server
//! incus embeds does.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;

mod wire;

use wire::*;

use crate::instance::files::{Kind, Meta, Owner, RootFs};

/// FSETSTAT: attributes applied through the open descriptor.
fn fset(file: &std::fs::File, a: &Attrs) -> std::io::Result<()> {
    if a.uid.is_some() || a.gid.is_some() {
        rustix::fs::fchown(
            file,
            a.uid.map(rustix::fs::Uid::from_raw),
            a.gid.map(rustix::fs::Gid::from_raw),
        )?;
    }
    if let Some(mode) = a.mode {
        rustix::fs::fchmod(file, rustix::fs::Mode::from_raw_mode(mode & 0o7777))?;
    }
    if let Some(size) = a.size {
        file.set_len(size)?;
    }
    if let Some((at, mt)) = a.times {
        let ts = |s: u32| rustix::fs::Timespec {
            tv_sec: i64::from(s),
            tv_nsec: 0,
        };
        rustix::fs::futimens(
            file,
            &rustix::fs::Timestamps {
                last_access: ts(at),
                last_modification: ts(mt),
            },
        )?;
    }
    Ok(())
}

enum Handle {
    File(std::fs::File),
    Dir(Vec<(String, Meta)>, usize),
}

/// One client session.
struct Session<'a> {
    fs: &'a RootFs,
    handles: HashMap<u32, Handle>,
    next: u32,
}

impl Session<'_> {
    fn handle(&mut self, id: u32, h: Handle) -> Vec<u8> {
        self.next = self.next.wrapping_add(1);
        self.handles.insert(self.next, h);
        Reply::new(HANDLE, id)
            .bytes(self.next.to_string().as_bytes())
            .finish()
    }

    fn lookup(&mut self, raw: &[u8]) -> Option<&mut Handle> {
        let n: u32 = std::str::from_utf8(raw).ok()?.parse().ok()?;
        self.handles.get_mut(&n)
    }

    fn set(&self, path: &str, a: &Attrs) -> std::io::Result<()> {
        if a.uid.is_some() || a.mode.is_some() {
            self.fs.set_attrs(
                path,
                Owner {
                    uid: a.uid,
                    gid: a.gid,
                    mode: a.mode.map(|m| m & 0o7777),
                },
            )?;
        }
        if let Some(size) = a.size {
            // An existing file only: a size never creates one.
            let f = self.fs.open_rw(
                path,
                crate::instance::files::OpenHow {
                    read: false,
                    write: true,
                    create: false,
                    truncate: false,
                    excl: false,
                    append: false,
                    mode: 0,
                },
            )?;
            f.set_len(size)?;
        }
        if let Some((at, mt)) = a.times {
            self.fs.set_times(path, i64::from(at), i64::from(mt))?;
        }
        Ok(())
    }

    /// Answers one request.
    fn serve(&mut self, kind: u8, id: u32, f: &mut Fields<'_>) -> Result<Vec<u8>, Bad> {
        let ok = |r: std::io::Result<()>| match r {
            Ok(()) => status(id, FX_OK, "Success"),
            Err(e) => io_status(id, &e),
        };
        Ok(match kind {
            OPEN => {
                let path = f.string()?;
                let pflags = f.u32()?;
                let attrs = f.attrs()?;
                let (read, write) = (pflags & OPEN_READ != 0, pflags & OPEN_WRITE != 0);
                let opened = self.fs.open_rw(
                    &path,
                    crate::instance::files::OpenHow {
                        read,
                        write,
                        create: pflags & OPEN_CREAT != 0,
                        truncate: pflags & OPEN_TRUNC != 0,
                        excl: pflags & OPEN_EXCL != 0,
                        append: pflags & OPEN_APPEND != 0,
                        mode: attrs.mode.unwrap_or(0o644),
                    },
                );
                match opened {
                    Ok(file) => self.handle(id, Handle::File(file)),
                    Err(e) => io_status(id, &e),
                }
            }
            CLOSE => {
                let h = f.bytes()?.to_vec();
                let n = std::str::from_utf8(&h)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok());
                match n.and_then(|n| self.handles.remove(&n)) {
                    Some(_) => status(id, FX_OK, "Success"),
                    None => status(id, FX_FAILURE, "invalid handle"),
                }
            }
            READ => {
                let h = f.bytes()?.to_vec();
                let offset = f.u64()?;
                let len = f.u32()?.min(MAX_READ) as usize;
                match self.lookup(&h) {
                    Some(Handle::File(file)) => {
                        let mut buf = vec![0u8; len];
                        match file.read_at(&mut buf, offset) {
                            Ok(0) if len > 0 => status(id, FX_EOF, "EOF"),
                            Ok(n) => Reply::new(DATA, id).bytes(&buf[..n]).finish(),
                            Err(e) => io_status(id, &e),
                        }
                    }
                    _ => status(id, FX_FAILURE, "invalid handle"),
                }
            }
            WRITE => {
                let h = f.bytes()?.to_vec();
                let offset = f.u64()?;
                let data = f.bytes()?;
                match self.lookup(&h) {
                    Some(Handle::File(file)) => ok(file.write_all_at(data, offset)),
                    _ => status(id, FX_FAILURE, "invalid handle"),
                }
            }
            LSTAT | STAT => {
                let path = f.string()?;
                let m = if kind == LSTAT {
                    self.fs.lstat(&path)
                } else {
                    self.fs.stat(&path)
                };
                match m {
                    Ok(m) => Reply::new(ATTRS, id).attrs(&m).finish(),
                    Err(e) => io_status(id, &e),
                }
            }
            FSTAT => {
                let h = f.bytes()?.to_vec();
                match self.lookup(&h) {
                    Some(Handle::File(file)) => match crate::instance::files::fmeta(file) {
                        Ok(m) => Reply::new(ATTRS, id).attrs(&m).finish(),
                        Err(e) => io_status(id, &e),
                    },
                    _ => status(id, FX_FAILURE, "invalid handle"),
                }
            }
            SETSTAT => {
                let path = f.string()?;
                let a = f.attrs()?;
                ok(self.set(&path, &a))
            }
            FSETSTAT => {
                let h = f.bytes()?.to_vec();
                let a = f.attrs()?;
                // On the open file itself, never on whatever its path names now.
                match self.lookup(&h) {
                    Some(Handle::File(file)) => ok(fset(file, &a)),
                    _ => status(id, FX_FAILURE, "invalid handle"),
                }
            }
            OPENDIR => {
                let path = f.string()?;
                match self.fs.read_dir(&path) {
                    Ok(entries) => self.handle(id, Handle::Dir(entries, 0)),
                    Err(e) => io_status(id, &e),
                }
            }
            READDIR => {
                let h = f.bytes()?.to_vec();
                match self.lookup(&h) {
                    Some(Handle::Dir(entries, at)) => {
                        if *at >= entries.len() {
                            status(id, FX_EOF, "EOF")
                        } else {
                            let batch = &entries[*at..entries.len().min(*at + 100)];
                            *at += batch.len();
                            let mut r =
                                Reply::new(NAME, id).u32(u32::try_from(batch.len()).unwrap_or(0));
                            for (name, m) in batch {
                                r = r
                                    .bytes(name.as_bytes())
                                    .bytes(long_name(name, m).as_bytes())
                                    .attrs(m);
                            }
                            r.finish()
                        }
                    }
                    _ => status(id, FX_FAILURE, "invalid handle"),
                }
            }
            REMOVE => {
                let path = f.string()?;
                match self.fs.lstat(&path) {
                    Ok(m) if m.kind == Kind::Directory => status(id, FX_FAILURE, "is a directory"),
                    _ => ok(self.fs.remove(&path)),
                }
            }
            MKDIR => {
                let path = f.string()?;
                let a = f.attrs()?;
                let owner = Owner {
                    mode: Some(a.mode.unwrap_or(0o755) & 0o7777),
                    ..Owner::default()
                };
                match self.fs.mkdir(&path, owner) {
                    Ok(true) => status(id, FX_OK, "Success"),
                    Ok(false) => status(id, FX_FAILURE, "file exists"),
                    Err(e) => io_status(id, &e),
                }
            }
            RMDIR => {
                let path = f.string()?;
                match self.fs.lstat(&path) {
                    Ok(m) if m.kind != Kind::Directory => status(id, FX_FAILURE, "not a directory"),
                    _ => ok(self.fs.remove(&path)),
                }
            }
            REALPATH => {
                let path = f.string()?;
                let p = crate::instance::files::normalize(&path);
                Reply::new(NAME, id)
                    .u32(1)
                    .bytes(p.as_bytes())
                    .bytes(p.as_bytes())
                    .u32(0)
                    .finish()
            }
            RENAME => {
                let from = f.string()?;
                let to = f.string()?;
                ok(self.fs.rename(&from, &to, true))
            }
            READLINK => {
                let path = f.string()?;
                match self.fs.readlink(&path) {
                    Ok(t) => Reply::new(NAME, id)
                        .u32(1)
                        .bytes(t.as_bytes())
                        .bytes(t.as_bytes())
                        .u32(0)
                        .finish(),
                    Err(e) => io_status(id, &e),
                }
            }
            SYMLINK => {
                // OpenSSH's order, which every client follows: target first, then link.
                let target = f.string()?;
                let link = f.string()?;
                match self.fs.symlink(&link, &target, Owner::default()) {
                    Ok(true) => status(id, FX_OK, "Success"),
                    Ok(false) => status(id, FX_FAILURE, "file exists"),
                    Err(e) => io_status(id, &e),
                }
            }
            EXTENDED => {
                let request = f.string()?;
                match request.as_str() {
                    "posix-rename@openssh.com" => {
                        let from = f.string()?;
                        let to = f.string()?;
                        ok(self.fs.rename(&from, &to, false))
                    }
                    "hardlink@openssh.com" => {
                        let from = f.string()?;
                        let to = f.string()?;
                        ok(self.fs.hard_link(&from, &to))
                    }
                    "fsync@openssh.com" => {
                        let h = f.bytes()?.to_vec();
                        match self.lookup(&h) {
                            Some(Handle::File(file)) => ok(file.sync_all()),
                            _ => status(id, FX_FAILURE, "invalid handle"),
                        }
                    }
                    "statvfs@openssh.com" => {
                        f.string()?;
                        match self.fs.statvfs() {
                            Ok(v) => Reply::new(EXTENDED_REPLY, id)
                                .u64(v.f_bsize)
                                .u64(v.f_frsize)
                                .u64(v.f_blocks)
                                .u64(v.f_bfree)
                                .u64(v.f_bavail)
                                .u64(v.f_files)
                                .u64(v.f_ffree)
                                .u64(v.f_favail)
                                .u64(v.f_fsid)
                                .u64(v.f_flag.bits())
                                .u64(v.f_namemax)
                                .finish(),
                            Err(e) => io_status(id, &e),
                        }
                    }
                    _ => status(id, FX_OP_UNSUPPORTED, "unsupported extension"),
                }
            }
            _ => status(id, FX_OP_UNSUPPORTED, "unsupported request"),
        })
    }
}

fn read_packet(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n == 0 || n > MAX_PACKET {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("SFTP packet of {n} bytes"),
        ));
    }
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

/// Serves one SFTP session on `r`/`w` until the client closes it. Blocking.
pub fn serve(fs: &RootFs, r: impl Read, w: impl Write) -> std::io::Result<()> {
    let mut r = std::io::BufReader::with_capacity(MAX_PACKET, r);
    let mut w = std::io::BufWriter::with_capacity(MAX_PACKET, w);
    let mut session = Session {
        fs,
        handles: HashMap::new(),
        next: 0,
    };
    while let Some(packet) = read_packet(&mut r)? {
        let kind = packet[0];
        let mut f = Fields { buf: &packet[1..] };
        let out = if kind == INIT {
            // VERSION carries the version where other replies carry a request id.
            let mut reply = Reply::new(VERSION, 3);
            for (name, data) in [
                ("posix-rename@openssh.com", "1"),
                ("hardlink@openssh.com", "1"),
                ("statvfs@openssh.com", "2"),
                ("fsync@openssh.com", "1"),
            ] {
                reply = reply.bytes(name.as_bytes()).bytes(data.as_bytes());
            }
            reply.finish()
        } else {
            match f.u32() {
                Ok(id) => session
                    .serve(kind, id, &mut f)
                    .unwrap_or_else(|Bad| status(id, FX_BAD_MESSAGE, "malformed request")),
                Err(Bad) => return Ok(()),
            }
        };
        w.write_all(&out)?;
        // Pipelined requests are answered in one write; flush when none is waiting.
        if r.buffer().is_empty() {
            w.flush()?;
        }
    }
    w.flush()
}
