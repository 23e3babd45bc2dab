//! Reading a send stream on its way to `btrfs receive`, to keep it to what it was given.
//!
//! `btrfs receive` finds a delta's parent and a clone's source by UUID anywhere on the
//! filesystem, whatever `--chroot` says: a crafted stream naming another volume's UUID
//! would copy that volume's data into the import. [`Checker::copy`] passes a stream
//! through command by command (`btrfs-stream` header; each command a 10-byte header —
//! length, type, CRC-32C — and its attributes, each read as `receive` reads them) and
//! refuses, before `receive` sees it:
//! - a command naming an attribute twice (`receive` keeps the last, a check the first),
//!   an attribute of no known type, or bytes left over;
//! - a path (`PATH`, `PATH_TO`, `PATH_LINK`, `CLONE_PATH`) that is absolute or climbs;
//! - a stream that does not start with its subvolume, or makes more than one;
//! - a snapshot whose parent, or a clone whose source, is not a stream received before
//!   into the same place (or, for a clone, the stream's own subvolume).
//!
//! And the UUIDs a stream gives its subvolume are replaced by fresh random ones (parents
//! and clone sources rewritten to match, each command's CRC made anew): `receive` looks a
//! parent up by the UUID it recorded, and only the subvolume received here has it.

use std::collections::HashMap;
use std::io::{self, Read, Write};

/// The stream's magic, with its NUL.
const MAGIC: &[u8; 13] = b"btrfs-stream\0";
const C_SUBVOL: u16 = 1;
const C_SNAPSHOT: u16 = 2;
/// A hard link: its `PATH_LINK` is a path in the subvolume.
const C_LINK: u16 = 10;
const C_CLONE: u16 = 16;
const C_END: u16 = 21;
const A_UUID: u16 = 1;
const A_PATH: u16 = 15;
const A_PATH_TO: u16 = 16;
const A_PATH_LINK: u16 = 17;
/// From stream version 2 on, a `DATA` attribute has no length: it runs to the command's end.
const A_DATA: u16 = 19;
const A_CLONE_UUID: u16 = 20;
const A_CLONE_PATH: u16 = 22;
/// The highest attribute type any stream version has (v3's verity attributes).
const A_MAX: u16 = 36;
/// The largest command taken (a v2 encoded write is at most a few hundred KiB).
const LARGEST_COMMAND: u32 = 16 << 20;

/// A subvolume's UUID as a stream carries it.
pub(super) type Uuid = [u8; 16];

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// The streams received into one place: the UUID each declared, and the fresh one it was
/// given instead.
#[derive(Debug, Default)]
pub(super) struct Checker {
    given: HashMap<Uuid, Uuid>,
}

/// One attribute of a command: its type and where its value lies in the command's body.
struct Attribute {
    kind: u16,
    at: usize,
    len: usize,
}

/// Reads a command's attributes as `receive` does for stream `version`; refuses repeats,
/// unknown types and leftovers.
fn attributes(body: &[u8], version: u32) -> io::Result<Vec<Attribute>> {
    let mut out: Vec<Attribute> = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let head = body
            .get(at..at + 2)
            .ok_or_else(|| bad("a command ends inside an attribute"))?;
        let kind = u16::from_le_bytes([head[0], head[1]]);
        if kind == 0 || kind > A_MAX {
            return Err(bad(format!(
                "a command has an attribute of unknown type {kind}"
            )));
        }
        if out.iter().any(|a| a.kind == kind) {
            return Err(bad("a command names an attribute twice"));
        }
        if kind == A_DATA && version >= 2 {
            out.push(Attribute {
                kind,
                at: at + 2,
                len: body.len() - at - 2,
            });
            break;
        }
        let len = body
            .get(at + 2..at + 4)
            .map(|l| usize::from(u16::from_le_bytes([l[0], l[1]])))
            .ok_or_else(|| bad("a command ends inside an attribute"))?;
        if at + 4 + len > body.len() {
            return Err(bad("a command's attribute runs past its end"));
        }
        out.push(Attribute {
            kind,
            at: at + 4,
            len,
        });
        at += 4 + len;
    }
    Ok(out)
}

/// The UUID attribute `kind` of a command, where its value lies, if present.
fn uuid_of(body: &[u8], attrs: &[Attribute], kind: u16) -> io::Result<Option<(usize, Uuid)>> {
    match attrs.iter().find(|a| a.kind == kind) {
        None => Ok(None),
        Some(a) => Uuid::try_from(&body[a.at..a.at + a.len])
            .map(|u| Some((a.at, u)))
            .map_err(|_| bad("a UUID attribute is not 16 bytes")),
    }
}

/// Refuses a path attribute of command `kind` that is absolute or climbs out of where it
/// is (a symlink's target, its `PATH_LINK`, is the link's content: anything goes).
fn check_paths(kind: u16, body: &[u8], attrs: &[Attribute]) -> io::Result<()> {
    for a in attrs {
        let path_like = matches!(a.kind, A_PATH | A_PATH_TO | A_CLONE_PATH)
            || (a.kind == A_PATH_LINK && kind == C_LINK);
        if path_like {
            let path = &body[a.at..a.at + a.len];
            if path.first() == Some(&b'/') || path.split(|b| *b == b'/').any(|c| c == b"..") {
                return Err(bad("a path in the stream is absolute or climbs"));
            }
        }
    }
    Ok(())
}

/// CRC-32C (Castagnoli) as btrfs computes a send command's: seed 0, no final inversion.
pub(super) fn crc32c(data: &[u8]) -> u32 {
    crc32c_from(0, data)
}

/// CRC-32C from `seed`, without inverting (the kernel's `crc32c()`).
fn crc32c_from(seed: u32, data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    data.iter().fold(seed, |crc, b| {
        table[((crc ^ u32::from(*b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

/// Sixteen random bytes.
fn fresh_uuid() -> io::Result<Uuid> {
    let mut u = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut u)?;
    Ok(u)
}

impl Checker {
    /// Copies the send stream `input` to `out` (see the module's header), stopping after
    /// its end command; the UUID the stream declared for its subvolume.
    pub(super) fn copy(&mut self, input: &mut dyn Read, out: &mut dyn Write) -> io::Result<Uuid> {
        let mut header = [0u8; 17];
        input.read_exact(&mut header)?;
        if &header[..13] != MAGIC {
            return Err(bad("not a btrfs send stream"));
        }
        let version = u32::from_le_bytes([header[13], header[14], header[15], header[16]]);
        if !(1..=3).contains(&version) {
            return Err(bad(format!("send stream version {version} is not known")));
        }
        out.write_all(&header)?;
        // The subvolume this stream makes: the UUID it declared and the one it is given.
        let mut own: Option<(Uuid, Uuid)> = None;
        let mut command = Vec::new();
        loop {
            let mut head = [0u8; 10];
            input.read_exact(&mut head).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => bad("the stream ends without its end command"),
                _ => e,
            })?;
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let kind = u16::from_le_bytes([head[4], head[5]]);
            if len > LARGEST_COMMAND {
                return Err(bad("a command is larger than any real one"));
            }
            command.clear();
            command.extend_from_slice(&head);
            command.resize(10 + len as usize, 0);
            input.read_exact(&mut command[10..])?;
            let body = &command[10..];
            let attrs = attributes(body, version)?;
            check_paths(kind, body, &attrs)?;
            let mut rewrite: Vec<(usize, Uuid)> = Vec::new();
            match kind {
                C_SUBVOL | C_SNAPSHOT => {
                    if own.is_some() {
                        return Err(bad("the stream makes more than one subvolume"));
                    }
                    let (at, declared) = uuid_of(body, &attrs, A_UUID)?
                        .ok_or_else(|| bad("a subvolume command has no UUID"))?;
                    if self.given.contains_key(&declared) {
                        return Err(bad("the stream's subvolume came before"));
                    }
                    let fresh = fresh_uuid()?;
                    rewrite.push((at, fresh));
                    if kind == C_SNAPSHOT {
                        let (at, parent) = uuid_of(body, &attrs, A_CLONE_UUID)?
                            .ok_or_else(|| bad("a snapshot command names no parent"))?;
                        let given = self.given.get(&parent).ok_or_else(|| {
                            bad("the stream builds on a subvolume that is not in the backup")
                        })?;
                        rewrite.push((at, *given));
                    }
                    own = Some((declared, fresh));
                }
                _ if own.is_none() => {
                    return Err(bad("the stream does not start with its subvolume"));
                }
                C_CLONE => {
                    let (at, source) = uuid_of(body, &attrs, A_CLONE_UUID)?
                        .ok_or_else(|| bad("a clone command names no source"))?;
                    let given = match own {
                        Some((declared, fresh)) if declared == source => fresh,
                        _ => *self.given.get(&source).ok_or_else(|| {
                            bad("the stream clones data from a subvolume that is not in the backup")
                        })?,
                    };
                    rewrite.push((at, given));
                }
                _ => {}
            }
            if !rewrite.is_empty() {
                for (at, uuid) in rewrite {
                    command[10 + at..10 + at + 16].copy_from_slice(&uuid);
                }
                command[6..10].fill(0);
                let crc = crc32c(&command);
                command[6..10].copy_from_slice(&crc.to_le_bytes());
            }
            out.write_all(&command)?;
            if kind == C_END {
                let (declared, fresh) = own.expect("checked above");
                self.given.insert(declared, fresh);
                return Ok(declared);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(kind: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend_from_slice(&t.to_le_bytes());
            body.extend_from_slice(&(v.len() as u16).to_le_bytes());
            body.extend_from_slice(v);
        }
        let mut c = (body.len() as u32).to_le_bytes().to_vec();
        c.extend_from_slice(&kind.to_le_bytes());
        c.extend_from_slice(&[0; 4]);
        c.extend_from_slice(&body);
        let crc = crc32c(&c);
        c[6..10].copy_from_slice(&crc.to_le_bytes());
        c
    }

    fn stream(commands: &[Vec<u8>]) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        s.extend_from_slice(&1u32.to_le_bytes());
        for c in commands {
            s.extend_from_slice(c);
        }
        s
    }

    fn run(checker: &mut Checker, s: &[u8]) -> io::Result<(Uuid, Vec<u8>)> {
        let mut out = Vec::new();
        checker.copy(&mut &s[..], &mut out).map(|u| (u, out))
    }

    #[test]
    fn crc32c_is_castagnoli() {
        // The standard check value is of the inverted form: seed !0, result inverted.
        assert_eq!(!crc32c_from(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn passes_streams_building_on_what_came_before_with_fresh_uuids() {
        let (a, b, other) = ([1u8; 16], [2u8; 16], [9u8; 16]);
        let end = command(C_END, &[]);
        let full = stream(&[
            command(C_SUBVOL, &[(A_PATH, b"0"), (A_UUID, &a)]),
            command(15, &[(A_PATH, b"f"), (A_DATA, b"data")]),
            command(C_CLONE, &[(A_CLONE_UUID, &a), (A_PATH, b"g")]),
            end.clone(),
        ]);
        let mut checker = Checker::default();
        let (declared, out) = run(&mut checker, &full).unwrap();
        assert_eq!(declared, a);
        assert_eq!(out.len(), full.len());
        // The subvolume's UUID and the self-clone's source became the same fresh one.
        let fresh = checker.given[&a];
        assert_ne!(fresh, a);
        assert!(out.windows(16).filter(|w| *w == fresh).count() == 2);
        assert!(!out.windows(16).any(|w| w == a));
        let delta = stream(&[
            command(C_SNAPSHOT, &[(A_UUID, &b), (A_CLONE_UUID, &a)]),
            command(C_CLONE, &[(A_CLONE_UUID, &a)]),
            end.clone(),
        ]);
        let (_, out) = run(&mut checker, &delta).unwrap();
        assert!(out.windows(16).filter(|w| *w == fresh).count() == 2);

        let e = |s: &[u8], c: &mut Checker| run(c, s).unwrap_err().to_string();
        assert!(e(&delta, &mut Checker::default()).contains("not in the backup"));
        let foreign = stream(&[
            command(C_SUBVOL, &[(A_UUID, &other)]),
            command(C_CLONE, &[(A_CLONE_UUID, &[7u8; 16])]),
        ]);
        assert!(e(&foreign, &mut Checker::default()).contains("clones data"));
        // An attribute named twice: receive would take the second, unchecked.
        let twice = stream(&[command(
            C_SNAPSHOT,
            &[
                (A_UUID, &other),
                (A_CLONE_UUID, &a),
                (A_CLONE_UUID, &[7u8; 16]),
            ],
        )]);
        assert!(e(&twice, &mut checker).contains("twice"));
        let two = stream(&[
            command(C_SUBVOL, &[(A_UUID, &[3u8; 16])]),
            command(C_SUBVOL, &[(A_UUID, &[4u8; 16])]),
        ]);
        assert!(e(&two, &mut Checker::default()).contains("more than one"));
        assert!(e(&full, &mut checker).contains("came before"));
        let first = stream(&[command(15, &[(A_PATH, b"f")]), end.clone()]);
        assert!(e(&first, &mut Checker::default()).contains("start with"));
        // A symlink may point anywhere; a hard link may not.
        let link = stream(&[
            command(C_SUBVOL, &[(A_UUID, &[6u8; 16])]),
            command(8, &[(A_PATH, b"l"), (A_PATH_LINK, b"/etc/../shadow")]),
            end.clone(),
        ]);
        run(&mut Checker::default(), &link).unwrap();
        let hard = stream(&[
            command(C_SUBVOL, &[(A_UUID, &[6u8; 16])]),
            command(C_LINK, &[(A_PATH, b"h"), (A_PATH_LINK, b"../x")]),
        ]);
        assert!(e(&hard, &mut Checker::default()).contains("climbs"));
        for path in [&b"/etc/shadow"[..], b"a/../../x", b".."] {
            let climbs = stream(&[command(C_SUBVOL, &[(A_UUID, &[5u8; 16]), (A_PATH, path)])]);
            assert!(e(&climbs, &mut Checker::default()).contains("climbs"));
        }
        assert!(e(b"not a stream at all", &mut Checker::default()).contains("not a btrfs"));
        let mut cut = full.clone();
        cut.truncate(full.len() - 10);
        assert!(e(&cut, &mut Checker::default()).contains("without its end"));
    }
}
