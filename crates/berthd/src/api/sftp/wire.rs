//! The SFTP version 3 wire format: packet types, status codes, attribute flags, and
//! reading and writing the fields of a packet.

use crate::instance::files::{Kind, Meta};

pub(super) const INIT: u8 = 1;
pub(super) const VERSION: u8 = 2;
pub(super) const OPEN: u8 = 3;
pub(super) const CLOSE: u8 = 4;
pub(super) const READ: u8 = 5;
pub(super) const WRITE: u8 = 6;
pub(super) const LSTAT: u8 = 7;
pub(super) const FSTAT: u8 = 8;
pub(super) const SETSTAT: u8 = 9;
pub(super) const FSETSTAT: u8 = 10;
pub(super) const OPENDIR: u8 = 11;
pub(super) const READDIR: u8 = 12;
pub(super) const REMOVE: u8 = 13;
pub(super) const MKDIR: u8 = 14;
pub(super) const RMDIR: u8 = 15;
pub(super) const REALPATH: u8 = 16;
pub(super) const STAT: u8 = 17;
pub(super) const RENAME: u8 = 18;
pub(super) const READLINK: u8 = 19;
pub(super) const SYMLINK: u8 = 20;
pub(super) const EXTENDED: u8 = 200;
pub(super) const STATUS: u8 = 101;
pub(super) const HANDLE: u8 = 102;
pub(super) const DATA: u8 = 103;
pub(super) const NAME: u8 = 104;
pub(super) const ATTRS: u8 = 105;
pub(super) const EXTENDED_REPLY: u8 = 201;

pub(super) const FX_OK: u32 = 0;
pub(super) const FX_EOF: u32 = 1;
pub(super) const FX_NO_SUCH_FILE: u32 = 2;
pub(super) const FX_PERMISSION_DENIED: u32 = 3;
pub(super) const FX_FAILURE: u32 = 4;
pub(super) const FX_BAD_MESSAGE: u32 = 5;
pub(super) const FX_OP_UNSUPPORTED: u32 = 8;

pub(super) const ATTR_SIZE: u32 = 0x1;
pub(super) const ATTR_UIDGID: u32 = 0x2;
pub(super) const ATTR_PERMISSIONS: u32 = 0x4;
pub(super) const ATTR_ACMODTIME: u32 = 0x8;
pub(super) const ATTR_EXTENDED: u32 = 0x8000_0000;

pub(super) const OPEN_READ: u32 = 0x1;
pub(super) const OPEN_WRITE: u32 = 0x2;
pub(super) const OPEN_APPEND: u32 = 0x4;
pub(super) const OPEN_CREAT: u32 = 0x8;
pub(super) const OPEN_TRUNC: u32 = 0x10;
pub(super) const OPEN_EXCL: u32 = 0x20;

/// The largest packet a client may send: a 128 KiB write and its header fit easily.
pub(super) const MAX_PACKET: usize = 512 * 1024;
/// The most a single READ returns.
pub(super) const MAX_READ: u32 = 256 * 1024;

/// A malformed packet.
#[derive(Debug)]
pub(super) struct Bad;

/// Reads a packet's fields.
pub(super) struct Fields<'a> {
    pub(super) buf: &'a [u8],
}

impl Fields<'_> {
    pub(super) fn u32(&mut self) -> Result<u32, Bad> {
        let (head, rest) = self.buf.split_at_checked(4).ok_or(Bad)?;
        self.buf = rest;
        Ok(u32::from_be_bytes(head.try_into().map_err(|_| Bad)?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, Bad> {
        let (head, rest) = self.buf.split_at_checked(8).ok_or(Bad)?;
        self.buf = rest;
        Ok(u64::from_be_bytes(head.try_into().map_err(|_| Bad)?))
    }

    pub(super) fn bytes(&mut self) -> Result<&[u8], Bad> {
        let n = self.u32()? as usize;
        let (head, rest) = self.buf.split_at_checked(n).ok_or(Bad)?;
        self.buf = rest;
        Ok(head)
    }

    pub(super) fn string(&mut self) -> Result<String, Bad> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| Bad)
    }

    pub(super) fn attrs(&mut self) -> Result<Attrs, Bad> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            a.uid = Some(self.u32()?);
            a.gid = Some(self.u32()?);
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.mode = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            a.times = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_EXTENDED != 0 {
            for _ in 0..self.u32()? {
                self.bytes()?;
                self.bytes()?;
            }
        }
        Ok(a)
    }
}

/// Attributes a client sets.
#[derive(Debug, Default)]
pub(super) struct Attrs {
    pub(super) size: Option<u64>,
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
    pub(super) mode: Option<u32>,
    pub(super) times: Option<(u32, u32)>,
}

/// An outgoing packet.
pub(super) struct Reply {
    pub(super) buf: Vec<u8>,
}

impl Reply {
    pub(super) fn new(kind: u8, id: u32) -> Reply {
        let mut buf = vec![0, 0, 0, 0, kind];
        buf.extend_from_slice(&id.to_be_bytes());
        Reply { buf }
    }

    pub(super) fn u32(mut self, v: u32) -> Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(super) fn u64(mut self, v: u64) -> Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(super) fn bytes(mut self, v: &[u8]) -> Self {
        let n = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&n.to_be_bytes());
        self.buf.extend_from_slice(v);
        self
    }

    pub(super) fn attrs(self, m: &Meta) -> Self {
        let t = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        self.u32(ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME)
            .u64(m.size)
            .u32(m.uid)
            .u32(m.gid)
            .u32(m.raw_mode)
            .u32(t(m.atime))
            .u32(t(m.mtime))
    }

    pub(super) fn finish(mut self) -> Vec<u8> {
        let n = u32::try_from(self.buf.len() - 4).unwrap_or(u32::MAX);
        self.buf[..4].copy_from_slice(&n.to_be_bytes());
        self.buf
    }
}

pub(super) fn status(id: u32, code: u32, msg: &str) -> Vec<u8> {
    Reply::new(STATUS, id)
        .u32(code)
        .bytes(msg.as_bytes())
        .bytes(b"en")
        .finish()
}

pub(super) fn io_status(id: u32, e: &std::io::Error) -> Vec<u8> {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => FX_NO_SUCH_FILE,
        std::io::ErrorKind::PermissionDenied => FX_PERMISSION_DENIED,
        _ => FX_FAILURE,
    };
    status(id, code, &e.to_string())
}

/// `ls -l`-like text for READDIR's long name (clients display it, never parse it).
pub(super) fn long_name(name: &str, m: &Meta) -> String {
    let kind = match m.kind {
        Kind::Directory => 'd',
        Kind::Symlink => 'l',
        Kind::File => '-',
        Kind::Other => '?',
    };
    let bits: String = (0..9)
        .map(|i| {
            if m.mode & (0o400 >> i) == 0 {
                '-'
            } else {
                ['r', 'w', 'x'][i % 3]
            }
        })
        .collect();
    format!(
        "{kind}{bits} 1 {} {} {} {} {name}",
        m.uid, m.gid, m.size, m.mtime
    )
}
