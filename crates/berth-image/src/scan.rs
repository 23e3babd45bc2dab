//! Scanning untrusted image archives before anything is unpacked.
//!
//! Every entry of a tarball is read once, as a stream, and refused if unpacking it could
//! reach outside the target directory or harm the host:
//!
//! - absolute paths and `..` components;
//! - an entry whose path passes through a symlink the archive made earlier (the
//!   "symlink, then write through it" attack), or a directory replacing such a symlink;
//! - hard links with absolute or `..` targets, or targets that pass through a symlink;
//! - device nodes and entry types berth does not unpack;
//! - more entries, or a larger `metadata.yaml` or template, than [`Limits`] allow;
//! - a truncated or corrupt archive (the decompressed stream is read to its very end).
//!
//! Scanning also extracts `metadata.yaml` and `templates/*` into memory.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

use tar::EntryType;

/// Bounds on what an image may contain.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: u64,
    pub max_metadata_bytes: u64,
    pub max_template_bytes: u64,
    pub max_templates: usize,
    pub max_path_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 2_000_000,
            max_metadata_bytes: 1 << 20,
            max_template_bytes: 1 << 20,
            max_templates: 1024,
            max_path_bytes: 4096,
        }
    }
}

/// What kind of archive is scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `metadata.yaml`, `templates/`, `rootfs/`.
    Unified,
    /// The metadata half of a split image: `metadata.yaml`, `templates/`.
    Metadata,
    /// The rootfs half of a split image: the filesystem at the top level.
    Rootfs,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scanned {
    pub metadata: Option<Vec<u8>>,
    pub templates: BTreeMap<String, Vec<u8>>,
    pub entries: u64,
    pub has_rootfs: bool,
}

/// An archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("Invalid or truncated archive")]
    Read(#[source] std::io::Error),
    #[error("Unsafe entry {path:?} in the archive: {reason}")]
    Unsafe { path: String, reason: &'static str },
    #[error("The archive has more than {0} entries")]
    TooManyEntries(u64),
    #[error("{what} in the archive is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("Image has more than {0} templates")]
    TooManyTemplates(usize),
    #[error("Image has no {0}")]
    Missing(&'static str),
}

/// An entry's path as an error names it: whole, or a long one's start and end, so the
/// error stays a line a reader can take in.
fn shown(raw: &[u8]) -> String {
    let all = String::from_utf8_lossy(raw);
    let chars: Vec<char> = all.chars().collect();
    if chars.len() <= 200 {
        return all.into_owned();
    }
    let start: String = chars[..100].iter().collect();
    let end: String = chars[chars.len() - 60..].iter().collect();
    format!("{start}…{end}")
}

/// Splits a raw archive path into its components, refusing absolute paths and `..`.
fn components(raw: &[u8], limits: &Limits) -> Result<Vec<String>, &'static str> {
    if raw.len() > limits.max_path_bytes {
        return Err("path too long");
    }
    if raw.contains(&0) {
        return Err("NUL in path");
    }
    if raw.starts_with(b"/") {
        return Err("absolute path");
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("\"..\" in path"),
            c => out.push(String::from_utf8_lossy(c).into_owned()),
        }
    }
    Ok(out)
}

/// Tracks the symlinks an archive creates, to refuse writes through them.
#[derive(Debug, Default)]
struct Symlinks(HashSet<String>);

impl Symlinks {
    /// Whether a proper prefix of `comps` is a symlink made earlier.
    fn crossed(&self, comps: &[String]) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let mut prefix = String::new();
        for c in &comps[..comps.len().saturating_sub(1)] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(c);
            if self.0.contains(&prefix) {
                return true;
            }
        }
        false
    }
}

fn read_limited(r: &mut impl Read, what: &str, limit: u64) -> Result<Vec<u8>, ScanError> {
    let mut buf = Vec::new();
    r.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(ScanError::Read)?;
    if buf.len() as u64 > limit {
        return Err(ScanError::TooLarge {
            what: what.to_owned(),
            limit,
        });
    }
    Ok(buf)
}

/// The per-entry checks of an untrusted tar stream, entry by entry, so a stream can be
/// checked as it is unpacked (a backup import) as well as scanned before (an image).
#[derive(Debug, Default)]
pub struct EntryCheck {
    links: Symlinks,
    /// The bytes of the symlinks' paths kept so far.
    link_bytes: usize,
    entries: u64,
    limits: Limits,
}

/// The most path components an entry may have.
const MAX_DEPTH: usize = 256;

/// The most bytes of symlink paths an archive may make (each is kept to check later
/// entries against).
const MAX_LINK_BYTES: usize = 64 << 20;

impl EntryCheck {
    pub fn new(limits: Limits) -> Self {
        EntryCheck {
            limits,
            ..EntryCheck::default()
        }
    }

    /// Checks the next entry of the archive: its path's components (empty for the
    /// archive's root), or why it is refused.
    pub fn check<R: Read>(&mut self, entry: &tar::Entry<'_, R>) -> Result<Vec<String>, ScanError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ScanError::TooManyEntries(self.limits.max_entries));
        }
        let raw = entry.path_bytes().into_owned();
        let shown = shown(&raw);
        let unsafe_entry = |reason| ScanError::Unsafe {
            path: shown.clone(),
            reason,
        };
        let comps = components(&raw, &self.limits).map_err(unsafe_entry)?;
        if comps.is_empty() {
            return Ok(comps);
        }
        if comps.len() > MAX_DEPTH {
            return Err(unsafe_entry("path too deep"));
        }
        let links = &mut self.links;
        if links.crossed(&comps) {
            return Err(unsafe_entry("path passes through a symlink in the archive"));
        }
        let path = comps.join("/");
        match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                links.0.remove(&path);
            }
            EntryType::Directory => {
                if links.0.contains(&path) {
                    return Err(unsafe_entry("directory replaces a symlink"));
                }
            }
            EntryType::Symlink => {
                self.link_bytes += path.len();
                if self.link_bytes > MAX_LINK_BYTES {
                    return Err(unsafe_entry("too many symlinks"));
                }
                links.0.insert(path.clone());
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let tcomps = components(&target, &self.limits).map_err(|_| {
                    unsafe_entry("hard link target is absolute or leaves the archive")
                })?;
                if tcomps.is_empty()
                    || links.crossed(&tcomps)
                    || links.0.contains(&tcomps.join("/"))
                {
                    return Err(unsafe_entry("hard link target passes through a symlink"));
                }
                links.0.remove(&path);
            }
            EntryType::Fifo => {}
            EntryType::Char | EntryType::Block => return Err(unsafe_entry("device node")),
            _ => return Err(unsafe_entry("unsupported entry type")),
        }
        Ok(comps)
    }
}

/// Reads an entry's content whole, refusing more than `limit` bytes (`what` names it).
pub fn read_small(r: &mut impl Read, what: &str, limit: u64) -> Result<Vec<u8>, ScanError> {
    read_limited(r, what, limit)
}

/// Scans a (decompressed) tar stream laid out as `layout`.
pub fn scan(reader: impl Read, layout: Layout, limits: &Limits) -> Result<Scanned, ScanError> {
    let mut archive = tar::Archive::new(reader);
    let mut found = Scanned::default();
    let mut check = EntryCheck::new(*limits);
    for entry in archive.entries().map_err(ScanError::Read)? {
        let mut entry = entry.map_err(ScanError::Read)?;
        found.entries += 1;
        let comps = check.check(&entry)?;
        if comps.is_empty() {
            continue;
        }
        let path = comps.join("/");
        let kind = entry.header().entry_type();
        let top = comps[0].as_str();
        if layout == Layout::Rootfs || top == "rootfs" {
            found.has_rootfs = true;
            continue;
        }
        let regular = kind == EntryType::Regular || kind == EntryType::Continuous;
        if path == "metadata.yaml" && regular {
            found.metadata = Some(read_limited(
                &mut entry,
                "metadata.yaml",
                limits.max_metadata_bytes,
            )?);
        } else if top == "templates" && comps.len() == 2 && regular {
            if found.templates.len() >= limits.max_templates {
                return Err(ScanError::TooManyTemplates(limits.max_templates));
            }
            let data = read_limited(&mut entry, &path, limits.max_template_bytes)?;
            found.templates.insert(comps[1].clone(), data);
        }
    }
    // Read the stream to its end so a truncated or corrupt compressed file is refused.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(ScanError::Read)?;

    if layout != Layout::Rootfs && found.metadata.is_none() {
        return Err(ScanError::Missing("metadata.yaml"));
    }
    if layout != Layout::Metadata && !found.has_rootfs {
        return Err(ScanError::Missing("rootfs"));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    /// Builds a tarball from (path, kind, data or link target); paths are written raw so
    /// hostile names survive.
    fn tarball(entries: &[(&str, EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            match kind {
                EntryType::Symlink | EntryType::Link => {
                    let mut h = header(*kind, 0);
                    h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
                    h.set_link_name_literal(std::str::from_utf8(data).unwrap())
                        .unwrap();
                    h.set_cksum();
                    b.append(&h, &[][..]).unwrap();
                }
                _ => {
                    let mut h = header(*kind, data.len() as u64);
                    h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
                    h.set_cksum();
                    b.append(&h, *data).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    const MD: &[u8] = b"architecture: x86_64\ncreation_date: 1\n";

    fn good() -> Vec<(&'static str, EntryType, &'static [u8])> {
        vec![
            ("metadata.yaml", EntryType::Regular, MD),
            (
                "templates/hostname.tpl",
                EntryType::Regular,
                b"{{ container.name }}",
            ),
            ("rootfs/", EntryType::Directory, b""),
            ("rootfs/bin/", EntryType::Directory, b""),
            ("rootfs/bin/busybox", EntryType::Regular, b"ELF"),
            ("rootfs/bin/sh", EntryType::Symlink, b"busybox"),
            ("rootfs/bin/ash", EntryType::Link, b"rootfs/bin/busybox"),
            ("./rootfs/etc/", EntryType::Directory, b""),
            ("rootfs/etc/mtab", EntryType::Symlink, b"/proc/self/mounts"),
        ]
    }

    #[test]
    fn accepts_a_normal_image() {
        let s = scan(&tarball(&good())[..], Layout::Unified, &Limits::default()).unwrap();
        assert_eq!(s.metadata.as_deref(), Some(MD));
        assert_eq!(s.templates["hostname.tpl"], b"{{ container.name }}");
        assert!(s.has_rootfs);
        assert_eq!(s.entries, 9);
    }

    fn refused(extra: (&'static str, EntryType, &'static [u8])) -> String {
        let mut e = good();
        e.push(extra);
        scan(&tarball(&e)[..], Layout::Unified, &Limits::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_long_path_is_named_by_its_ends() {
        let long = format!("rootfs/{}x", "d/".repeat(2000));
        let said = shown(long.as_bytes());
        assert!(
            said.starts_with("rootfs/d/d/") && said.ends_with("d/d/x"),
            "{said}"
        );
        assert_eq!(said.chars().count(), 161);
        assert_eq!(shown(b"rootfs/x"), "rootfs/x");
    }

    #[test]
    fn refuses_hostile_entries() {
        assert!(refused(("/etc/passwd", EntryType::Regular, b"x")).contains("absolute"));
        assert!(refused(("rootfs/../../x", EntryType::Regular, b"x")).contains(".."));
        assert!(refused(("rootfs/dev/sda", EntryType::Block, b"")).contains("device"));
        assert!(refused(("rootfs/dev/mem", EntryType::Char, b"")).contains("device"));
        assert!(refused(("rootfs/etc/mtab/x", EntryType::Regular, b"x")).contains("symlink"));
        assert!(refused(("rootfs/bin/sh", EntryType::Directory, b"")).contains("symlink"));
        assert!(refused(("rootfs/h", EntryType::Link, b"/etc/shadow")).contains("hard link"));
        assert!(refused(("rootfs/h", EntryType::Link, b"rootfs/etc/mtab/x")).contains("hard link"));
    }

    #[test]
    fn refuses_missing_parts_limits_and_truncation() {
        let no_md = tarball(&good()[2..]);
        let e = scan(&no_md[..], Layout::Unified, &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("metadata.yaml"), "{e}");

        let limits = Limits {
            max_entries: 3,
            ..Limits::default()
        };
        let e = scan(&tarball(&good())[..], Layout::Unified, &limits).unwrap_err();
        assert!(matches!(e, ScanError::TooManyEntries(3)));

        let limits = Limits {
            max_metadata_bytes: 8,
            ..Limits::default()
        };
        let e = scan(&tarball(&good())[..], Layout::Unified, &limits).unwrap_err();
        assert!(e.to_string().contains("larger"), "{e}");

        let whole = tarball(&good());
        let cut = &whole[..whole.len() / 2 + 100];
        assert!(scan(cut, Layout::Unified, &Limits::default()).is_err());
    }
}
