//! Reading a send stream on its way to `btrfs receive`, to keep it to what it was given.
//!
//! `btrfs receive` finds a delta's parent and a clone's source by UUID anywhere on the
//! filesystem, whatever `--chroot` says: a crafted stream naming another volume's UUID
//! would copy that volume's data into the import. [`copy_checked`] passes a stream through
//! command by command (`btrfs-stream` header; each command a 10-byte header — length,
//! type, checksum — and its attributes) and refuses, before `receive` sees it, a stream
//! that makes more than one subvolume, a snapshot whose parent is not a stream received
//! before into the same place, or a clone from anything but those and the stream's own
//! subvolume. Everything else passes unread.

use std::io::{self, Read, Write};

/// The stream's magic, with its NUL.
const MAGIC: &[u8; 13] = b"btrfs-stream\0";
/// Commands whose attributes are read.
const C_SUBVOL: u16 = 1;
const C_SNAPSHOT: u16 = 2;
const C_CLONE: u16 = 16;
const C_END: u16 = 21;
/// Attributes read.
const A_UUID: u16 = 1;
const A_CLONE_UUID: u16 = 20;
/// The largest command whose attributes are read (a path and a few numbers).
const SMALL_COMMAND: u32 = 1 << 16;

/// A subvolume's UUID as a stream carries it.
pub(super) type Uuid = [u8; 16];

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// The UUID attribute `kind` of a command's attributes, if present.
fn attribute(attrs: &[u8], kind: u16) -> io::Result<Option<Uuid>> {
    let mut at = 0;
    while at + 4 <= attrs.len() {
        let t = u16::from_le_bytes([attrs[at], attrs[at + 1]]);
        let len = usize::from(u16::from_le_bytes([attrs[at + 2], attrs[at + 3]]));
        let value = attrs
            .get(at + 4..at + 4 + len)
            .ok_or_else(|| bad("a command's attribute runs past its end"))?;
        if t == kind {
            return Uuid::try_from(value)
                .map(Some)
                .map_err(|_| bad("a UUID attribute is not 16 bytes"));
        }
        at += 4 + len;
    }
    Ok(None)
}

/// Copies the send stream `input` to `out`, refusing what `known` (the UUIDs of streams
/// received before into the same place) does not allow; returns the stream's own UUID.
/// Stops after the end command.
pub(super) fn copy_checked(
    input: &mut dyn Read,
    out: &mut dyn Write,
    known: &[Uuid],
) -> io::Result<Uuid> {
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
    let mut own: Option<Uuid> = None;
    loop {
        let mut cmd = [0u8; 10];
        if let Err(e) = input.read_exact(&mut cmd) {
            // A stream may end without an end command (receive then stops at its end).
            return match (e.kind(), own) {
                (io::ErrorKind::UnexpectedEof, Some(uuid)) => Ok(uuid),
                _ => Err(e),
            };
        }
        let len = u32::from_le_bytes([cmd[0], cmd[1], cmd[2], cmd[3]]);
        let kind = u16::from_le_bytes([cmd[4], cmd[5]]);
        out.write_all(&cmd)?;
        if !matches!(kind, C_SUBVOL | C_SNAPSHOT | C_CLONE) {
            let copied = io::copy(&mut input.take(u64::from(len)), out)?;
            if copied != u64::from(len) {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if kind == C_END {
                return own.ok_or_else(|| bad("the stream makes no subvolume"));
            }
            continue;
        }
        if len > SMALL_COMMAND {
            return Err(bad(
                "a subvolume or clone command is larger than any real one",
            ));
        }
        let mut attrs = vec![0u8; len as usize];
        input.read_exact(&mut attrs)?;
        match kind {
            C_SUBVOL | C_SNAPSHOT => {
                if own.is_some() {
                    return Err(bad("the stream makes more than one subvolume"));
                }
                let uuid = attribute(&attrs, A_UUID)?
                    .ok_or_else(|| bad("a subvolume command has no UUID"))?;
                if known.contains(&uuid) {
                    return Err(bad("the stream's subvolume came before"));
                }
                if kind == C_SNAPSHOT {
                    let parent = attribute(&attrs, A_CLONE_UUID)?
                        .ok_or_else(|| bad("a snapshot command names no parent"))?;
                    if !known.contains(&parent) {
                        return Err(bad(
                            "the stream builds on a subvolume that is not in the backup",
                        ));
                    }
                }
                own = Some(uuid);
            }
            _ => {
                let source = attribute(&attrs, A_CLONE_UUID)?
                    .ok_or_else(|| bad("a clone command names no source"))?;
                if own.is_none() {
                    return Err(bad("a clone comes before the stream's subvolume"));
                }
                if Some(source) != own && !known.contains(&source) {
                    return Err(bad(
                        "the stream clones data from a subvolume that is not in the backup",
                    ));
                }
            }
        }
        out.write_all(&attrs)?;
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

    fn run(s: &[u8], known: &[Uuid]) -> io::Result<Uuid> {
        let mut out = Vec::new();
        let r = copy_checked(&mut &s[..], &mut out, known);
        if r.is_ok() {
            assert_eq!(out, s);
        }
        r
    }

    #[test]
    fn passes_streams_building_on_what_came_before() {
        let (a, b, other) = ([1u8; 16], [2u8; 16], [9u8; 16]);
        let write = command(15, &[(15, b"f"), (19, b"data")]);
        let end = command(C_END, &[]);
        let full = stream(&[
            command(C_SUBVOL, &[(15, b"0"), (A_UUID, &a)]),
            write.clone(),
            command(C_CLONE, &[(A_CLONE_UUID, &a)]),
            end.clone(),
        ]);
        assert_eq!(run(&full, &[]).unwrap(), a);
        let delta = stream(&[
            command(C_SNAPSHOT, &[(A_UUID, &b), (A_CLONE_UUID, &a)]),
            command(C_CLONE, &[(A_CLONE_UUID, &a)]),
            end.clone(),
        ]);
        assert_eq!(run(&delta, &[a]).unwrap(), b);

        let e = |s: &[u8], known: &[Uuid]| run(s, known).unwrap_err().to_string();
        assert!(e(&delta, &[]).contains("not in the backup"));
        let foreign = stream(&[
            command(C_SUBVOL, &[(A_UUID, &b)]),
            command(C_CLONE, &[(A_CLONE_UUID, &other)]),
        ]);
        assert!(e(&foreign, &[a]).contains("clones data"));
        let two = stream(&[
            command(C_SUBVOL, &[(A_UUID, &a)]),
            command(C_SUBVOL, &[(A_UUID, &b)]),
        ]);
        assert!(e(&two, &[]).contains("more than one"));
        assert!(e(&full, &[a]).contains("came before"));
        assert!(e(b"not a stream at all", &[]).contains("not a btrfs send stream"));
        assert!(e(&stream(&[end]), &[]).contains("no subvolume"));
        let mut cut = full.clone();
        cut.truncate(full.len() - 20);
        assert!(run(&cut, &[]).is_err());
    }
}
