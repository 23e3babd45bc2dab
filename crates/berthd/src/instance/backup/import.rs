//! Importing a backup tarball as a new instance, from a stream, in one pass: nothing is
//! staged on disk but the instance itself.
//!
//! The tarball's first member must be `backup/index.yaml` (LXD and Incus write it first).
//! It is read (at most 1 MiB) and checked, and the instance recorded from it (marked
//! incoming, as a migration's is) before any file is written; each member after is checked
//! as it arrives ([`berth_image::EntryCheck`]: no absolute path, no `..`, nothing through
//! a symlink of the archive, no device node, a bounded count) and unpacked into the
//! instance's volume (`backup/container/`) or into a snapshot named in the index
//! (`backup/snapshots/NAME/`). Anything else, a truncated stream, a member larger than
//! the pool's free space or a metadata member over 1 MiB is refused with one line, and
//! everything made so far goes.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use berth_api::backup::{BackupFileConfig, BackupIndex};
use berth_api::instance::{InstanceSource, InstancesPost};
use berth_api::migration::IdMapType;
use berth_image::{Compression, EntryCheck, ScanError};
use berth_storage::VolumeType;

use crate::ctx::Ctx;
use crate::error::{Failure, Result};
use crate::instance::create::{make_runtime, undo_volume};
use crate::instance::migrate::INCOMING;
use crate::model::names::{InstanceName, SnapshotName};
use crate::model::records::{InstanceRecord, SnapshotRecord};
use crate::revert::Reverter;

/// The largest `index.yaml`, `metadata.yaml` or template member taken.
pub(super) const SMALL: u64 = 1 << 20;

/// What the request says beside the tarball (`X-Incus-name`, `X-Incus-pool` or LXD's).
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub project: String,
    /// The new instance's name; the index's when `None`.
    pub name: Option<String>,
    /// The pool for its volume; else the index's when it exists here, else the default
    /// profile's root pool.
    pub pool: Option<String>,
}

pub(super) fn refused(reason: impl std::fmt::Display) -> Failure {
    Failure::invalid(format!("Invalid backup: {reason}"))
}

fn from_scan(e: ScanError) -> Failure {
    match e {
        // `tar`'s detail can quote the damaged header's raw bytes: said as text, one line.
        ScanError::Read(io) => refused(format!(
            "the archive is truncated or corrupt ({})",
            crate::error::one_line(&io.to_string())
        )),
        other => refused(other),
    }
}

/// What `tar` may read to reach the next member (its header, GNU long names, PAX
/// records): a stream that makes it read more is refused rather than held in memory.
const HEADERS: u64 = 1 << 20;

/// Bounds the bytes `tar` reads while the budget is set (see [`HEADERS`]).
struct Budget<R> {
    inner: R,
    left: Rc<Cell<u64>>,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.left.get();
        if left == 0 {
            return Err(std::io::Error::other(
                "a member's header is larger than any real one",
            ));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if left != u64::MAX {
            self.left.set(left - n as u64);
        }
        Ok(n)
    }
}

/// The first bytes of `input` (up to `n`, fewer at its end), and the whole stream again.
fn peek(mut input: impl Read, n: usize) -> std::io::Result<(Vec<u8>, impl Read)> {
    let mut head = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match input.read(&mut head[got..])? {
            0 => break,
            k => got += k,
        }
    }
    head.truncate(got);
    Ok((head.clone(), std::io::Cursor::new(head).chain(input)))
}

/// Imports the backup read from `input` (a blocking reader: run it on a blocking thread,
/// with `rt` the runtime's handle); returns the new instance's host-wide name.
pub fn import(
    cx: &Arc<Ctx>,
    rt: &tokio::runtime::Handle,
    target: &Target,
    input: impl Read,
) -> Result<String> {
    let input = std::io::BufReader::with_capacity(1 << 20, input);
    let (head, input) = peek(input, 6).map_err(|e| refused(format!("unreadable ({e})")))?;
    let kind = Compression::detect(&head);
    let reader = kind
        .reader(input)
        .map_err(|e| refused(format!("cannot be decompressed ({e})")))?;
    let budget = Rc::new(Cell::new(HEADERS));
    let mut archive = tar::Archive::new(Budget {
        inner: std::io::BufReader::with_capacity(1 << 20, reader),
        left: budget.clone(),
    });
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let mut entries = archive
        .entries()
        .map_err(|e| from_scan(ScanError::Read(e)))?;
    let mut check = EntryCheck::new(cx.image_limits);
    let mut first = entries
        .next()
        .ok_or_else(|| refused("the archive is empty"))?
        .map_err(|e| from_scan(ScanError::Read(e)))?;
    budget.set(u64::MAX);
    let comps = check.check(&first).map_err(from_scan)?;
    if comps != ["backup", "index.yaml"] {
        return Err(refused("its first member is not backup/index.yaml"));
    }
    let raw =
        berth_image::scan::read_small(&mut first, "backup/index.yaml", SMALL).map_err(from_scan)?;
    drop(first);
    let text = std::str::from_utf8(&raw).map_err(|_| refused("index.yaml is not UTF-8"))?;
    let index: BackupIndex = serde_saphyr::from_str(text).map_err(|e| {
        refused(format!(
            "index.yaml does not read: {}",
            crate::error::one_line(&e.without_snippet().to_string())
        ))
    })?;
    // Held to the end: nothing else touches the instance while its files arrive.
    let plan = rt.block_on(record(cx, target, &index))?;
    let shifted = stored_map(index.config.as_ref());
    let mut undo = Reverter::new();
    let (db, n) = (cx.db.clone(), plan.rec.name.clone());
    undo.add("delete the instance's rows", move || {
        Ok(db.write_sync(|tx| crate::db::instances::delete(tx, &n))?)
    });
    make_runtime(cx, &plan.rec, &mut undo)?;
    let t = VolumeType::Container;
    let wanted: Vec<String> = plan.snapshots.iter().map(|s| s.name.clone()).collect();
    let mut sink = if index.optimized == Some(true) {
        Sink::Streams(super::streams::Streams::new(
            &plan.pool,
            &plan.rec.name,
            wanted,
        )?)
    } else {
        let volume = plan.pool.create_volume(t, &plan.rec.name)?;
        undo_volume(&plan.rec, &plan.pool, &mut undo);
        Sink::Trees(Unpack {
            volume,
            pool: plan.pool.clone(),
            instance: plan.rec.name.clone(),
            wanted,
            snapshots: HashMap::new(),
            seen_volume: false,
        })
    };
    let pool_root = plan.pool.volume_path(t, "");
    loop {
        budget.set(HEADERS);
        let Some(entry) = entries.next() else { break };
        let mut entry = entry.map_err(|e| from_scan(ScanError::Read(e)))?;
        budget.set(u64::MAX);
        let comps = check.check(&entry).map_err(from_scan)?;
        match &mut sink {
            Sink::Trees(unpack) => unpack.entry(&mut entry, &comps)?,
            Sink::Streams(streams) => streams.entry(&mut entry, &comps, &pool_root)?,
        }
        // What was not unpacked (a member left out) is read past here, not by `tar`.
        std::io::copy(&mut entry, &mut std::io::sink())
            .map_err(|e| from_scan(ScanError::Read(e)))?;
    }
    // Read to the very end, so a truncated or corrupt stream is refused.
    budget.set(u64::MAX);
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink())
        .map_err(|e| from_scan(ScanError::Read(e)))?;
    let trees = match sink {
        Sink::Trees(unpack) => unpack.trees()?,
        Sink::Streams(streams) => {
            undo_volume(&plan.rec, &plan.pool, &mut undo);
            streams.finish(plan.pool.as_ref(), &plan.rec.name)?
        }
    };
    // Saved states stay where they were made; files stored shifted (an LXD host without
    // idmapped mounts) are shifted back to the container's own numbering.
    for tree in &trees {
        crate::lxc::checkpoint::strip_volume(tree)?;
        if !shifted.is_empty() {
            crate::instance::migrate::unshift(tree, &shifted)?;
        }
    }
    let n = plan.rec.name.clone();
    cx.db.write_sync(|tx| {
        if let Some(mut r) = crate::db::instances::get(tx, &n)? {
            r.config.remove(INCOMING);
            crate::db::instances::set_config(tx, &n, &r.config)?;
        }
        Ok::<_, Failure>(())
    })?;
    undo.success();
    rt.block_on(super::save_file(cx, &plan.rec.name));
    let url = crate::model::names::instance_url(&plan.rec.name);
    cx.events.lifecycle("instance-created", &url, None);
    tracing::info!(instance = %plan.rec.name, "Instance imported from a backup");
    drop(plan.guard);
    Ok(plan.rec.name)
}

/// The map the backup's files were stored shifted by (`volatile.last_state.idmap`, LXD's
/// JSON), empty when they were not.
fn stored_map(config: Option<&BackupFileConfig>) -> Vec<IdMapType> {
    let text = config
        .and_then(|c| c.container.as_ref())
        .and_then(|c| c["config"]["volatile.last_state.idmap"].as_str())
        .unwrap_or("[]");
    let entries: Vec<serde_json::Value> = serde_json::from_str(text).unwrap_or_default();
    entries
        .iter()
        .filter_map(|e| {
            let num = |k: &str| e.get(k).and_then(serde_json::Value::as_i64);
            Some(IdMapType {
                isuid: e.get("Isuid")?.as_bool()?,
                isgid: e.get("Isgid")?.as_bool()?,
                hostid: i32::try_from(num("Hostid")?).ok()?,
                nsid: i32::try_from(num("Nsid")?).ok()?,
                maprange: i32::try_from(num("Maprange")?).ok()?,
            })
        })
        .collect()
}

/// The instance an import records, before its files arrive.
pub(in crate::instance) struct Plan {
    pub rec: InstanceRecord,
    pub pool: Arc<dyn berth_storage::Driver>,
    pub snapshots: Vec<SnapshotRecord>,
    /// The instance's lock, held until it is whole.
    pub guard: tokio::sync::OwnedMutexGuard<()>,
}

/// Checks the index and records the instance it describes (marked incoming) with its
/// snapshots' rows.
async fn record(cx: &Arc<Ctx>, target: &Target, index: &BackupIndex) -> Result<Plan> {
    if !index.kind.is_empty() && index.kind != "container" {
        return Err(refused(format!(
            "a {:?} backup cannot be imported here (containers only)",
            index.kind
        )));
    }
    let config = index.config.clone().unwrap_or_default();
    let name = target
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| index.name.clone());
    let name = InstanceName::parse(&name)?;
    let pool = choose_pool(cx, target, index).await?;
    if index.optimized == Some(true)
        && let Some(driver) = cx.pools.get(&pool)
    {
        super::streams::check_pool(index, &pool, driver.as_ref())?;
    }
    record_described(
        cx,
        &target.project,
        &name,
        &pool,
        &config,
        &index.snapshots,
        false,
    )
    .await
}

/// Records instance `name` of `project` as `config` (a `backup.yaml`) describes it, its
/// volume on `pool`, with its snapshots `snapshots` (marked incoming until its files are
/// in: the caller clears the mark).
pub(in crate::instance) async fn record_described(
    cx: &Arc<Ctx>,
    project: &str,
    name: &InstanceName,
    pool: &str,
    config: &BackupFileConfig,
    snapshots: &[String],
    recovered: bool,
) -> Result<Plan> {
    let container = config
        .container
        .clone()
        .ok_or_else(|| refused("it describes no container"))?;
    let string_map = |key: &str| -> Result<BTreeMap<String, String>> {
        match container.get(key) {
            None | Some(serde_json::Value::Null) => Ok(BTreeMap::new()),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| refused(format!("container {key:?} does not read: {e}"))),
        }
    };
    let mut devices: BTreeMap<String, BTreeMap<String, String>> = match container.get("devices") {
        None | Some(serde_json::Value::Null) => BTreeMap::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| refused(format!("container \"devices\" does not read: {e}")))?,
    };
    let profiles: Option<Vec<String>> = match container.get("profiles") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value(v.clone())
                .map_err(|e| refused(format!("container \"profiles\" does not read: {e}")))?,
        ),
    };
    // The volume is where the import or the recovery puts it: the root disk names that
    // pool, its own or (when they name it already) its profiles'.
    let root = devices.iter_mut().find(|(_, d)| {
        d.get("type").map(String::as_str) == Some("disk")
            && d.get("path").map(String::as_str) == Some("/")
    });
    let named = profiles
        .clone()
        .unwrap_or_else(|| vec!["default".to_owned()]);
    let profiles_pool = match crate::instance::profiles(cx, project, &named).await {
        Ok(found) => {
            let (_, expanded) =
                crate::model::expand::expand_parts(&found, &BTreeMap::new(), &BTreeMap::new());
            crate::model::expand::root_pool(&expanded)
        }
        Err(_) => None,
    };
    match root {
        Some((_, d)) => {
            d.insert("pool".to_owned(), pool.to_owned());
        }
        None if profiles_pool.as_deref() == Some(pool) => {}
        None => {
            devices.insert(
                "root".to_owned(),
                BTreeMap::from([
                    ("type".to_owned(), "disk".to_owned()),
                    ("path".to_owned(), "/".to_owned()),
                    ("pool".to_owned(), pool.to_owned()),
                ]),
            );
        }
    }
    let text = |key: &str| {
        container
            .get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let req = InstancesPost {
        name: name.to_string(),
        architecture: text("architecture"),
        description: text("description"),
        ephemeral: container
            .get("ephemeral")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
        config: string_map("config")?,
        devices,
        profiles,
        source: InstanceSource {
            kind: if recovered { "recover" } else { "backup" }.to_owned(),
            ..Default::default()
        },
        ..Default::default()
    };
    // The snapshots' names before anything is recorded.
    for s in snapshots {
        SnapshotName::parse(s).map_err(|e| refused(e.message()))?;
    }
    let pool_name = pool;
    let creation = crate::instance::create::prepare(cx, project, name, req).await?;
    let (rec, pool, _, guard) = creation.into_parts();
    // Recorded now: whatever fails takes its row back.
    let written = async {
        // Its profiles were read before their lock was taken: the volume's pool must still
        // be the root disk's (now that it uses them, no profile change can move it).
        let (_, expanded) = crate::instance::expanded(cx, &rec).await?;
        if crate::model::expand::root_pool(&expanded).as_deref() != Some(pool_name) {
            return Err(Failure::conflict(
                "The profiles' root disk changed while the instance was recorded: try again",
            ));
        }
        let mut rows = Vec::new();
        for s in snapshots {
            let described = config
                .snapshots
                .iter()
                .find(|v| v.get("name").and_then(serde_json::Value::as_str) == Some(s.as_str()));
            rows.push(snapshot_record(&rec, s, described)?);
        }
        let stored = rows.clone();
        cx.db
            .write(move |tx| {
                for s in &stored {
                    crate::db::snapshots::insert(tx, s)?;
                }
                Ok::<_, Failure>(())
            })
            .await?;
        Ok::<_, Failure>(rows)
    }
    .await;
    let snapshot_rows = match written {
        Ok(rows) => rows,
        Err(e) => {
            let n = rec.name.clone();
            let _ = cx
                .db
                .write(move |tx| crate::db::instances::delete(tx, &n))
                .await;
            return Err(e);
        }
    };
    Ok(Plan {
        rec,
        pool,
        snapshots: snapshot_rows,
        guard,
    })
}

/// The pool of the imported volume: the request's (which must exist), else the index's
/// when this server has it, else the default profile's root pool.
async fn choose_pool(cx: &Ctx, target: &Target, index: &BackupIndex) -> Result<String> {
    if let Some(p) = target.pool.clone().filter(|p| !p.is_empty()) {
        if cx.pools.get(&p).is_none() {
            return Err(Failure::invalid(format!(
                "Storage pool {p:?} does not exist"
            )));
        }
        return Ok(p);
    }
    if !index.pool.is_empty() && cx.pools.get(&index.pool).is_some() {
        return Ok(index.pool.clone());
    }
    let project = target.project.clone();
    let default = cx
        .db
        .read(move |c| {
            let projects = crate::db::projects::list(c)?;
            let holder = crate::model::expand::profiles_project(&projects, &project);
            crate::db::profiles::get(c, holder, "default")
        })
        .await?;
    default
        .as_ref()
        .and_then(|p| crate::model::expand::root_pool(&p.devices))
        .ok_or_else(|| {
            Failure::invalid(format!(
                "Storage pool {:?} of the backup does not exist here, and the default profile has no root disk: name a pool",
                index.pool
            ))
        })
}

/// A snapshot row from the index's description of it (its own config, devices, profiles
/// and dates; the instance's where it says nothing).
fn snapshot_record(
    rec: &InstanceRecord,
    name: &str,
    described: Option<&serde_json::Value>,
) -> Result<SnapshotRecord> {
    let empty = serde_json::Value::Null;
    let d = described.unwrap_or(&empty);
    let field = |key: &str| d.get(key).filter(|v| !v.is_null()).cloned();
    let read = |key: &str| -> Result<Option<serde_json::Value>> { Ok(field(key)) };
    let mut config: BTreeMap<String, String> = match read("config")? {
        Some(v) => serde_json::from_value(v)
            .map_err(|e| refused(format!("snapshot {name:?} config does not read: {e}")))?,
        None => rec.config.clone(),
    };
    config.retain(|k, _| !k.starts_with("volatile.") || k == "volatile.base_image");
    let devices = match read("devices")? {
        Some(v) => serde_json::from_value(v)
            .map_err(|e| refused(format!("snapshot {name:?} devices do not read: {e}")))?,
        None => rec.devices.clone(),
    };
    let profiles = match read("profiles")? {
        Some(v) => serde_json::from_value(v)
            .map_err(|e| refused(format!("snapshot {name:?} profiles do not read: {e}")))?,
        None => rec.profiles.clone(),
    };
    let text = |key: &str, default: &str| {
        d.get(key)
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(default)
            .to_owned()
    };
    Ok(SnapshotRecord {
        instance: rec.name.clone(),
        name: name.to_owned(),
        description: text("description", ""),
        architecture: text("architecture", &rec.architecture),
        ephemeral: d
            .get("ephemeral")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(rec.ephemeral),
        stateful: false,
        profiles,
        config,
        devices,
        created_at: text("created_at", &crate::time::now_rfc3339()),
        expires_at: text("expires_at", crate::time::NEVER),
    })
}

/// Where an archive's members go: trees unpacked, or a driver's streams received.
enum Sink {
    Trees(Unpack),
    Streams(super::streams::Streams),
}

/// Where the members of the archive go.
struct Unpack {
    volume: PathBuf,
    pool: Arc<dyn berth_storage::Driver>,
    instance: String,
    /// The snapshots the index names.
    wanted: Vec<String>,
    /// Those made so far, and where.
    snapshots: HashMap<String, PathBuf>,
    seen_volume: bool,
}

impl Unpack {
    /// The volume and snapshot trees, once the archive is read: refused if any is missing.
    fn trees(self) -> Result<Vec<PathBuf>> {
        if !self.seen_volume {
            return Err(refused("it holds no backup/container/"));
        }
        if let Some(missing) = self
            .wanted
            .iter()
            .find(|s| !self.snapshots.contains_key(*s))
        {
            return Err(refused(format!(
                "snapshot {missing:?} of index.yaml is not in the archive"
            )));
        }
        let mut trees = vec![self.volume];
        trees.extend(self.snapshots.into_values());
        Ok(trees)
    }

    /// The directory an archive path's tree goes to, and the rest of the path in it.
    fn place<'a>(&mut self, comps: &'a [String]) -> Result<(PathBuf, &'a [String])> {
        match comps {
            [b, c, rest @ ..] if b == "backup" && c == "container" => {
                self.seen_volume = true;
                Ok((self.volume.clone(), rest))
            }
            [b, s, name, rest @ ..] if b == "backup" && s == "snapshots" => {
                if !self.wanted.contains(name) {
                    return Err(refused(format!(
                        "snapshot {name:?} is not named in index.yaml"
                    )));
                }
                if let Some(p) = self.snapshots.get(name) {
                    return Ok((p.clone(), rest));
                }
                let p =
                    self.pool
                        .create_empty_snapshot(VolumeType::Container, &self.instance, name)?;
                self.snapshots.insert(name.clone(), p.clone());
                Ok((p, rest))
            }
            [b, bin] if b == "backup" && bin.ends_with(".bin") => Err(refused(
                "it holds a storage driver's stream (an optimized backup)",
            )),
            _ => Err(refused(format!("unexpected member {:?}", comps.join("/")))),
        }
    }

    /// Unpacks one (checked) member.
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, comps: &[String]) -> Result<()> {
        if comps.is_empty() || comps == ["backup"] || comps == ["backup", "snapshots"] {
            return Ok(());
        }
        let (root, rest) = self.place(comps)?;
        let kind = entry.header().entry_type();
        let size = entry.size();
        let file_like = matches!(
            kind,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse
        );
        let shown = comps.join("/");
        let must = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(refused(format!("member {shown:?} must be {what}")))
            }
        };
        // A tree's top holds what berthd reads as root (its rootfs, metadata, templates):
        // each must be what it says, never a link or a pipe; anything else there is left
        // out (the volume's own root keeps berthd's owner and mode; a backup.yaml is
        // written anew).
        match rest {
            [] => return Ok(()),
            [top, ..] if top == "rootfs" => {
                if rest.len() == 1 {
                    return must(kind == tar::EntryType::Directory, "a directory");
                }
            }
            [top] if top == "metadata.yaml" => {
                must(
                    file_like && size <= SMALL,
                    "a regular file of at most 1 MiB",
                )?;
            }
            [top] if top == "templates" => {
                return must(kind == tar::EntryType::Directory, "a directory");
            }
            [top, _] if top == "templates" => {
                must(
                    file_like && size <= SMALL,
                    "a regular file of at most 1 MiB",
                )?;
            }
            [top, ..] if top == "templates" => {
                return Err(refused(format!(
                    "member {shown:?}: templates hold no directories"
                )));
            }
            _ => return Ok(()),
        }
        // Built from the member's own bytes (names need not be UTF-8); the same
        // components the check read, so the tree's prefix is `comps.len() - rest.len()`.
        let dest = raw_path(&root, &entry.path_bytes(), comps.len() - rest.len());
        if file_like && size > 64 << 20 {
            fits(&root, size, &shown)?;
        }
        if kind.is_hard_link() {
            // The target is an archive path too, placed as this member's tree is.
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            let tcomps: Vec<String> = target
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .map(str::to_owned)
                .collect();
            let (troot, trest) = self.place(&tcomps)?;
            let in_rootfs = |r: &[String]| r.len() > 1 && r[0] == "rootfs";
            if troot != root || !in_rootfs(trest) || !in_rootfs(rest) {
                return Err(refused(format!(
                    "hard link {:?} leaves its tree",
                    comps.join("/")
                )));
            }
            let raw_target = entry.link_name_bytes().unwrap_or_default().into_owned();
            let src = raw_path(&troot, &raw_target, tcomps.len() - trest.len());
            let _ = std::fs::remove_file(&dest);
            return std::fs::hard_link(&src, &dest)
                .map_err(|e| refused(format!("hard link {:?}: {e}", comps.join("/"))));
        }
        if kind == tar::EntryType::Fifo {
            return make_fifo(entry.header(), &dest)
                .map_err(|e| unpack_failed(&comps.join("/"), &e));
        }
        if let Some(parent) = dest.parent()
            && !parent.exists()
        {
            // Only the archive's own directories are in the tree (and no symlink of the
            // archive is crossed), so this creates plain directories under `root`.
            std::fs::create_dir_all(parent)
                .map_err(|e| Failure::failed("Failed to unpack the backup", e))?;
        }
        entry
            .unpack(&dest)
            .map_err(|e| unpack_failed(&comps.join("/"), &e))?;
        Ok(())
    }
}

/// `root` joined with the components of archive path `raw` after its first `skip` (its
/// tree's prefix), as bytes. The entry check refused `..` and absolute paths before.
fn raw_path(root: &Path, raw: &[u8], skip: usize) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    raw.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .skip(skip)
        .fold(root.to_path_buf(), |p, c| {
            p.join(std::ffi::OsStr::from_bytes(c))
        })
}

/// Makes a named pipe with the member's owner and mode (the `tar` crate writes a file).
fn make_fifo(h: &tar::Header, dest: &Path) -> std::io::Result<()> {
    let mode = h.mode()? & 0o7777;
    let _ = std::fs::remove_file(dest);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dest,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(mode),
        0,
    )?;
    let id = |v: u64| u32::try_from(v).ok();
    std::os::unix::fs::lchown(dest, id(h.uid()?), id(h.gid()?))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode))
}

fn unpack_failed(member: &str, e: &std::io::Error) -> Failure {
    match e.raw_os_error() {
        Some(28) => Failure::invalid(format!(
            "Invalid backup: member {member:?} does not fit on the pool"
        )),
        // What the archive asked for that cannot be (a name too long, a file where a
        // directory is, a link to nothing): the backup's fault.
        Some(2 | 17 | 20 | 21 | 36 | 39) | None => {
            refused(format!("member {member:?} cannot be unpacked ({e})"))
        }
        // The host's (an I/O error, a read-only pool).
        Some(_) => Failure::failed(
            format!("Failed to unpack member {member:?}"),
            std::io::Error::new(e.kind(), e.to_string()),
        ),
    }
}

/// Refuses a member larger than the space left where it goes.
pub(super) fn fits(dir: &Path, size: u64, member: &str) -> Result<()> {
    if let Ok(s) = rustix::fs::statvfs(dir) {
        let free = s.f_bavail.saturating_mul(s.f_frsize);
        if size > free {
            return Err(refused(format!(
                "member {member:?} ({size} bytes) does not fit on the pool ({free} bytes free)"
            )));
        }
    }
    Ok(())
}
