//! btrfs's volume streams: `btrfs send` of read-only snapshots frozen in a holding
//! directory, and `btrfs receive` confined (`--chroot`) to another.
//!
//! Holding directories are dot names ending `.tmp` in the volume type's directory, so a
//! crash leaves nothing the start's leftovers sweep does not remove. A receive is confined
//! to its holding directory: a stream can make nothing outside it, and a delta can only
//! build on a subvolume received there before (never on another volume of the pool).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use super::{Subvolumes, first_line, has_nested, remove_subvolume, run_tool};
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
    let path = dir
        .source()
        .join(vtype.dir_name())
        .join(format!(".{what}-{}-{n}.tmp", std::process::id()));
    std::fs::create_dir(&path)
        .and_then(|()| set_mode(&path, VOLUME_MODE))
        .map_err(|e| failed("hold", &path, e))?;
    Ok(path)
}

/// Removes a holding directory and the (read-only) subvolumes in it.
fn remove_holding(path: &Path) {
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        let _ = remove_subvolume(&entry.path());
    }
    let _ = std::fs::remove_dir(path);
}

/// Read-only snapshots of a volume's snapshots and of the volume, in a holding directory.
pub(super) struct Frozen {
    holding: PathBuf,
    subvolumes: Vec<PathBuf>,
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
        if i > 0 {
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
        Ok(Box::new(SendStream {
            child: Some(child),
            stdout,
        }))
    }
}

/// The output of a running `btrfs send`; its end is an error if the tool failed.
struct SendStream {
    child: Option<Child>,
    stdout: ChildStdout,
}

impl Read for SendStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stdout.read(buf)?;
        if n == 0
            && !buf.is_empty()
            && let Some(child) = self.child.take()
        {
            let out = child.wait_with_output()?;
            if !out.status.success() {
                return Err(io::Error::other(first_line(
                    &out.stderr,
                    "btrfs send failed",
                )));
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
    /// Each stream received: its snapshot's name (`None`: the volume) and subvolume.
    subvolumes: Vec<(Option<String>, PathBuf)>,
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
        })
    }

    fn entries(&self) -> Result<Vec<PathBuf>, StorageError> {
        let list =
            std::fs::read_dir(&self.holding).map_err(|e| failed("receive", &self.holding, e))?;
        Ok(list.flatten().map(|e| e.path()).collect())
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
            .args(["receive", "-e", "--chroot"])
            .arg(&self.holding)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed("receive", &self.holding, e))?;
        let mut stdin = child.stdin.take().expect("piped");
        let copied = io::copy(input, &mut stdin).and_then(|_| stdin.flush());
        drop(stdin);
        let out = child
            .wait_with_output()
            .map_err(|e| failed("receive", &self.holding, e))?;
        if !out.status.success() {
            // The tool's own complaint, not its progress lines.
            let text = String::from_utf8_lossy(&out.stderr);
            let why = text
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with("ERROR"))
                .map(|l| l.trim_start_matches("ERROR:").trim().to_owned())
                .unwrap_or_else(|| "btrfs receive failed".to_owned());
            return Err(failed("receive", &self.holding, why));
        }
        copied.map_err(|e| failed("receive", &self.holding, e))?;
        let made: Vec<PathBuf> = self
            .entries()?
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        match made.as_slice() {
            [one] if super::is_subvolume(one) => {
                self.subvolumes
                    .push((snapshot.map(str::to_owned), one.clone()));
                Ok(())
            }
            _ => Err(failed(
                "receive",
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
                for s in &placed {
                    let _ = remove_subvolume(&dir.snapshots_of(vtype, name).join(s));
                }
                let _ = remove_subvolume(&dir.volume_path(vtype, name));
                return Err(e);
            }
            placed.push(snap.clone());
        }
        let _ = set_mode(&dir.volume_path(vtype, name), VOLUME_MODE);
        Ok(())
    }
}
