//! btrfs's volume streams: `btrfs send` of read-only snapshots frozen in a holding
//! directory, and `btrfs receive` confined (`--chroot`) to another.
//!
//! Holding directories are dot names ending `.tmp` in the volume type's directory, so a
//! crash leaves nothing the start's leftovers sweep does not remove. A receive is confined
//! to its holding directory (`--chroot`): a stream can make nothing outside it. `receive`
//! itself would find a delta's parent or a clone's source anywhere on the filesystem by
//! UUID; each stream is read on its way ([`super::send_check`]) and refused unless it
//! builds only on streams received before into the same place. After each stream the
//! holding directory must hold exactly the subvolumes received so far, and a placed
//! volume's root is root's alone whatever the stream made of it.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use super::send_check::Checker;
use super::{Subvolumes, first_line, has_nested, is_subvolume, remove_subvolume, run_tool};
use crate::drivers::dir::{Dir, VOLUME_MODE, set_mode};
use crate::{Driver, Receiver, Sender, StorageError, VolumeType, validate_volume_name};

fn failed(what: &'static str, path: &Path, detail: impl std::fmt::Display) -> StorageError {
    StorageError::Stream {
        what,
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

/// A new holding directory in the directory of `vtype` volumes, root's only.
fn holding(dir: &Dir, vtype: VolumeType, what: &str) -> Result<PathBuf, StorageError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = dir
        .source()
        .join(vtype.dir_name())
        .join(format!(".{what}-{}-{now}-{n}.tmp", std::process::id()));
    std::fs::create_dir(&path)
        .and_then(|()| set_mode(&path, VOLUME_MODE))
        .map_err(|e| failed("hold", &path, e))?;
    Ok(path)
}

/// Removes a holding directory, the read-only subvolumes in it and anything a stream left
/// there, never following a link; what cannot go is left to the start's sweep.
fn remove_holding(path: &Path) {
    if let Err(e) = remove_subvolume(path) {
        // This crate has no logger: said where berthd's own output goes.
        eprintln!("berth-storage: {} not removed: {e}", path.display());
    }
}

/// Collects a child's standard error on a thread, keeping its first 64 KiB, so the child
/// never blocks on a full pipe while its other end is written or read.
fn drain(mut stderr: ChildStderr) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let _ = (&mut stderr).take(64 << 10).read_to_end(&mut kept);
        let _ = io::copy(&mut stderr, &mut io::sink());
        kept
    })
}

/// Read-only snapshots of a volume's snapshots and of the volume, in a holding directory.
pub(super) struct Frozen {
    holding: PathBuf,
    subvolumes: Vec<PathBuf>,
    /// Whether each is sent as its difference from the one before: only when their
    /// sources come by snapshots from one subvolume. The snapshots of a volume imported
    /// from a plain tarball were each unpacked anew: a difference between unrelated
    /// trees pairs inodes that merely share a number, and what it rebuilds is wrong.
    deltas: Vec<bool>,
}

/// Each subvolume's UUID by its id, and each UUID's parent UUID.
struct Lineage {
    uuids: HashMap<u64, String>,
    parents: HashMap<String, String>,
}

/// The [`Lineage`] of the filesystem holding `path` (`btrfs subvolume list -u -q`).
fn lineage(path: &Path) -> Result<Lineage, String> {
    let listed = super::tool_output(
        "btrfs",
        &["subvolume", "list", "-u", "-q", &path.display().to_string()],
    )?;
    let (mut uuids, mut parents) = (HashMap::new(), HashMap::new());
    for line in listed.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1).copied())
        };
        let (Some(id), Some(uuid), Some(parent)) = (
            after("ID").and_then(|v| v.parse::<u64>().ok()),
            after("uuid"),
            after("parent_uuid"),
        ) else {
            continue;
        };
        uuids.insert(id, uuid.to_owned());
        if parent != "-" {
            parents.insert(uuid.to_owned(), parent.to_owned());
        }
    }
    Ok(Lineage { uuids, parents })
}

/// For each of `sources` but the first, whether it and the one before come by snapshots
/// from one subvolume (one is the other's ancestor, or they share one, gone or not).
/// Unknown lineage sends whole streams.
fn related_pairs(root: &Path, sources: &[PathBuf]) -> Vec<bool> {
    let unrelated = vec![false; sources.len()];
    let Ok(Lineage { uuids, parents }) = lineage(root) else {
        return unrelated;
    };
    let ancestry = |source: &Path| -> Option<HashSet<String>> {
        let dir = std::fs::File::open(source).ok()?;
        let id = berth_host::btrfs::subvolume_id(&dir).ok()?;
        let mut seen = HashSet::new();
        let mut next = uuids.get(&id).cloned();
        while let Some(uuid) = next {
            if !seen.insert(uuid.clone()) {
                break;
            }
            next = parents.get(&uuid).cloned();
        }
        Some(seen)
    };
    let chains: Vec<Option<HashSet<String>>> = sources.iter().map(|s| ancestry(s)).collect();
    (0..sources.len())
        .map(|i| {
            i > 0
                && matches!(
                    (&chains[i - 1], &chains[i]),
                    (Some(a), Some(b)) if !a.is_disjoint(b)
                )
        })
        .collect()
}

impl Frozen {
    /// Freezes `sources` (snapshots oldest first, then the volume).
    pub(super) fn new(
        dir: &Dir,
        vtype: VolumeType,
        sources: &[PathBuf],
    ) -> Result<Self, StorageError> {
        let mut frozen = Frozen {
            holding: holding(dir, vtype, "send")?,
            subvolumes: Vec::new(),
            deltas: related_pairs(dir.source(), sources),
        };
        for (i, source) in sources.iter().enumerate() {
            // A snapshot leaves nested subvolumes out: such a volume has no whole stream.
            if has_nested(source) {
                return Err(failed(
                    "send",
                    source,
                    "it holds subvolumes of its own (make the backup without optimized storage)",
                ));
            }
            let to = frozen.holding.join(format!("{i}"));
            let (f, t) = (source.display().to_string(), to.display().to_string());
            run_tool("btrfs", &["subvolume", "snapshot", "-r", &f, &t])
                .map_err(|d| failed("freeze", source, d))?;
            frozen.subvolumes.push(to);
        }
        Ok(frozen)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        remove_holding(&self.holding);
    }
}

impl Sender for Frozen {
    fn count(&self) -> usize {
        self.subvolumes.len()
    }

    fn stream(&self, i: usize) -> Result<Box<dyn Read + Send>, StorageError> {
        let path = self
            .subvolumes
            .get(i)
            .ok_or_else(|| failed("send", &self.holding, format!("no stream {i}")))?;
        let mut cmd = Command::new("btrfs");
        berth_host::die_with_parent(&mut cmd);
        cmd.args(["send", "-q"]);
        if self.deltas.get(i).copied().unwrap_or(false) {
            cmd.arg("-p").arg(&self.subvolumes[i - 1]);
        }
        let mut child = cmd
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed("send", path, e))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = drain(child.stderr.take().expect("piped"));
        Ok(Box::new(SendStream {
            child: Some(child),
            stdout,
            stderr: Some(stderr),
        }))
    }
}

/// The output of a running `btrfs send`; its end is an error if the tool failed.
struct SendStream {
    child: Option<Child>,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Read for SendStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0
            && !buf.is_empty()
            && let Some(mut child) = self.child.take()
        {
            let status = child.wait()?;
            let stderr = self
                .stderr
                .take()
                .and_then(|t| t.join().ok())
                .unwrap_or_default();
            if !status.success() {
                return Err(io::Error::other(first_line(&stderr, "btrfs send failed")));
            }
        }
        Ok(n)
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Streams received into a holding directory, to be placed as volume `name`.
pub(super) struct Received {
    dir: Dir,
    vtype: VolumeType,
    name: String,
    holding: PathBuf,
    /// Each stream received: its snapshot's name (`None`: the volume) and its subvolume.
    subvolumes: Vec<(Option<String>, PathBuf)>,
    /// What the streams so far declared and were given instead.
    checker: Checker,
}

impl Received {
    pub(super) fn new(dir: &Dir, vtype: VolumeType, name: &str) -> Result<Self, StorageError> {
        validate_volume_name(name)?;
        Ok(Received {
            dir: dir.clone(),
            vtype,
            name: name.to_owned(),
            holding: holding(dir, vtype, "receive")?,
            subvolumes: Vec::new(),
            checker: Checker::default(),
        })
    }

    fn entries(&self) -> Result<Vec<PathBuf>, StorageError> {
        let list =
            std::fs::read_dir(&self.holding).map_err(|e| failed("receive", &self.holding, e))?;
        Ok(list.flatten().map(|e| e.path()).collect())
    }

    /// Gives the holding directory back to root alone (owner, 0700, no ACL) whatever the
    /// stream made of it; whether it had to.
    fn reclaim(&self) -> Result<bool, StorageError> {
        let meta = std::fs::symlink_metadata(&self.holding)
            .map_err(|e| failed("check", &self.holding, e))?;
        use std::os::unix::fs::MetadataExt;
        let acl = ["system.posix_acl_access", "system.posix_acl_default"]
            .iter()
            .any(|a| {
                let mut none: [u8; 0] = [];
                rustix::fs::lgetxattr(&self.holding, *a, &mut none[..]).is_ok()
            });
        let tampered =
            !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o7777 != VOLUME_MODE || acl;
        if tampered {
            own_root(&self.holding)?;
        }
        Ok(tampered)
    }

    /// Removes what was placed of volume `name` and its snapshots `placed`.
    fn unplace(&self, placed: &[String]) {
        let (vtype, name) = (self.vtype, self.name.as_str());
        for s in placed {
            let _ = remove_subvolume(&self.dir.snapshots_of(vtype, name).join(s));
        }
        let _ = remove_subvolume(&self.dir.volume_path(vtype, name));
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        remove_holding(&self.holding);
    }
}

impl Receiver for Received {
    fn receive(
        &mut self,
        snapshot: Option<&str>,
        input: &mut dyn Read,
    ) -> Result<(), StorageError> {
        if let Some(s) = snapshot {
            validate_volume_name(s)?;
        }
        if self
            .subvolumes
            .iter()
            .any(|(s, _)| s.as_deref() == snapshot)
        {
            let what = snapshot.map_or("the volume".to_owned(), |s| format!("snapshot {s:?}"));
            return Err(failed(
                "receive",
                &self.holding,
                format!("{what} came twice"),
            ));
        }
        let before = self.entries()?;
        let mut cmd = Command::new("btrfs");
        berth_host::die_with_parent(&mut cmd);
        let mut child = cmd
            .args(["receive", "-q", "-e", "--chroot"])
            .arg(&self.holding)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed("receive", &self.holding, e))?;
        let stderr = drain(child.stderr.take().expect("piped"));
        let mut stdin = child.stdin.take().expect("piped");
        let copied = self
            .checker
            .copy(input, &mut stdin)
            .and_then(|_| stdin.flush());
        drop(stdin);
        if copied.is_err() {
            // Refused or cut short: receive must not finish what it was given.
            let _ = child.kill();
        }
        let status = child.wait();
        let stderr = stderr.join().unwrap_or_default();
        let status = status.map_err(|e| failed("wait for", &self.holding, e))?;
        // A stream or its holding directory made into what they must not be is the
        // backup's fault: refused, the directory given back to root first.
        let tampered = self.reclaim()?;
        match copied {
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(failed("refuse", &self.holding, e));
            }
            // The archive's fault (a read that failed), not receive's.
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                return Err(failed("read", &self.holding, e));
            }
            _ if tampered => {
                return Err(failed(
                    "refuse",
                    &self.holding,
                    "the stream changed the directory it is received into",
                ));
            }
            _ => {}
        }
        match copied {
            Ok(()) if status.success() => {}
            _ => {
                // The tool's own complaint, not its progress lines.
                let text = String::from_utf8_lossy(&stderr);
                let why = text
                    .lines()
                    .map(str::trim)
                    .find(|l| l.starts_with("ERROR"))
                    .map(|l| l.trim_start_matches("ERROR:").trim().to_owned())
                    .unwrap_or_else(|| "btrfs receive failed".to_owned());
                return Err(failed("receive", &self.holding, why));
            }
        }
        // The holding directory holds what it held and one new subvolume, nothing else (a
        // stream that moved an earlier one, or left a link, is refused).
        let after = self.entries()?;
        let kept = self
            .subvolumes
            .iter()
            .all(|(_, p)| after.contains(p) && is_subvolume(p));
        let made: Vec<PathBuf> = after.into_iter().filter(|p| !before.contains(p)).collect();
        match made.as_slice() {
            [one] if kept && is_subvolume(one) => {
                self.subvolumes
                    .push((snapshot.map(str::to_owned), one.clone()));
                Ok(())
            }
            _ => Err(failed(
                "refuse",
                &self.holding,
                "the stream did not make one subvolume",
            )),
        }
    }

    fn finish(self: Box<Self>) -> Result<(), StorageError> {
        let Some((_, volume)) = self.subvolumes.iter().find(|(s, _)| s.is_none()) else {
            return Err(failed(
                "receive",
                &self.holding,
                "the volume's stream did not come",
            ));
        };
        let (dir, vtype, name) = (&self.dir, self.vtype, self.name.as_str());
        dir.volume_from_with(&Subvolumes, vtype, name, volume)?;
        let mut placed = Vec::new();
        for (snap, from) in &self.subvolumes {
            let Some(snap) = snap else { continue };
            if let Err(e) = dir.snapshot_from_with(&Subvolumes, vtype, name, snap, from) {
                self.unplace(&placed);
                return Err(e);
            }
            placed.push(snap.clone());
            if let Err(e) = own_root(&dir.snapshot_path(vtype, name, snap)) {
                self.unplace(&placed);
                return Err(e);
            }
        }
        if let Err(e) = own_root(&dir.volume_path(vtype, name)) {
            self.unplace(&placed);
            return Err(e);
        }
        Ok(())
    }
}

/// Gives a placed volume's root back to root alone (0700, no ACL), whatever the stream
/// made of it: the files under it keep the containers' numbering, set-user-ID ones
/// included, and only root may reach them.
fn own_root(path: &Path) -> Result<(), StorageError> {
    let fail = |e: io::Error| failed("place", path, e);
    std::os::unix::fs::lchown(path, Some(0), Some(0)).map_err(fail)?;
    set_mode(path, VOLUME_MODE).map_err(fail)?;
    for acl in ["system.posix_acl_access", "system.posix_acl_default"] {
        match rustix::fs::lremovexattr(path, acl) {
            Ok(()) | Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(fail(e.into())),
        }
    }
    Ok(())
}
