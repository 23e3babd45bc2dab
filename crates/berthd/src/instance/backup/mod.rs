//! Instance backups: tarballs in LXD's layout ([`tarball`]), kept as files under
//! `DIR/backups/instances/INSTANCE/` with a row each, or streamed straight to a client;
//! and imports of such a tarball as a new instance ([`import`]), from a stream.
//!
//! A backup file is written under a temporary dot-name, recorded, then renamed into
//! place; what a crash leaves (a temporary file, a row without its file, a file without
//! its row) is swept at start ([`sweep`]). A backup of a running instance is taken as it
//! runs, as LXD takes one on `dir`.

pub mod import;
mod streams;
pub mod tarball;

use std::path::{Path, PathBuf};

use berth_api::backup::{BackupFileConfig, BackupIndex, InstanceBackup};
use berth_image::Compression;
use berth_storage::VolumeType;

use super::{expanded, find, pool_of, profiles};
use crate::ctx::Ctx;
use crate::db::DbError;
use crate::error::{Failure, Result};
use crate::model::names::{api_name, instance_url_sub};
use crate::model::records::{BackupRecord, InstanceRecord, SnapshotRecord};
use crate::time::NEVER;

/// A backup's URL.
pub fn url(instance: &str, name: &str) -> String {
    instance_url_sub(instance, &format!("/backups/{name}"))
}

fn not_found(instance: &str, name: &str) -> Failure {
    Failure::not_found(format!(
        "Backup {name:?} of instance {:?} not found",
        api_name(instance)
    ))
}

fn exists(name: &str) -> Failure {
    Failure::exists(format!("Backup {name:?} already exists"))
}

/// A file kept under backup name `name` that no row names (see [`sweep`]).
fn kept(name: &str) -> Failure {
    Failure::exists(format!(
        "A backup file named {name:?} is kept on the server without a record (from before the database was lost): move it away first"
    ))
}

/// Puts backup file `from` at `to`, never over a file there (one [`sweep`] kept).
fn place(from: &Path, to: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(std::io::Error::from)
}

/// Checks a backup's name: one path component LXD would take.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name.starts_with('.')
        || name.contains(['/', '\\', '\n', '\0'])
    {
        return Err(Failure::invalid(format!(
            "Invalid backup name {name:?}: one path component, not starting with a dot"
        )));
    }
    Ok(())
}

/// A backup as the API shows it.
pub fn render(b: &BackupRecord) -> InstanceBackup {
    InstanceBackup {
        name: b.name.clone(),
        created_at: b.created_at.clone(),
        expires_at: b.expires_at.clone(),
        instance_only: b.instance_only,
        container_only: b.instance_only,
        optimized_storage: b.optimized_storage,
    }
}

/// The backups of instance `instance`, oldest first.
pub async fn list(cx: &Ctx, instance: &str) -> Result<Vec<BackupRecord>> {
    find(cx, instance).await?;
    let n = instance.to_owned();
    Ok(cx
        .db
        .read(move |c| crate::db::backups::list(c, Some(&n)))
        .await?)
}

/// Backup `name` of instance `instance`.
pub async fn get(cx: &Ctx, instance: &str, name: &str) -> Result<BackupRecord> {
    let (i, n) = (instance.to_owned(), name.to_owned());
    cx.db
        .read(move |c| crate::db::backups::get(c, &i, &n))
        .await?
        .ok_or_else(|| not_found(instance, name))
}

/// What a new backup is.
#[derive(Debug, Clone, Default)]
pub struct NewBackup {
    /// Its name; `backupN`, the first free N, when `None`.
    pub name: Option<String>,
    pub expires_at: Option<String>,
    pub instance_only: bool,
    /// Whether the pool driver's own streams are asked for (`optimized_storage`); made as
    /// trees where the driver has none, as LXD does.
    pub optimized: bool,
    /// As the request names it; empty: the project's, else the server's
    /// `backups.compression_algorithm`.
    pub compression: String,
}

/// A checked backup request: its name, compression and record.
#[derive(Debug, Clone)]
pub struct Planned {
    pub record: BackupRecord,
    pub compression: Compression,
}

/// Checks a backup request for instance `instance`; the record it will have.
pub async fn plan(cx: &Ctx, instance: &str, new: NewBackup) -> Result<Planned> {
    let rec = find(cx, instance).await?;
    let mut existing: Vec<String> = list(cx, instance)
        .await?
        .into_iter()
        .map(|b| b.name)
        .collect();
    let name = match new.name.filter(|n| !n.is_empty()) {
        Some(n) => {
            check_name(&n)?;
            if existing.contains(&n) {
                return Err(exists(&n));
            }
            if cx.paths.backup(instance, &n).exists() {
                return Err(kept(&n));
            }
            n
        }
        None => {
            // Files kept without a row hold their names too.
            existing.extend(
                std::fs::read_dir(cx.paths.backups(instance))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
            crate::model::schedule::next_name("backup%d", &existing)
        }
    };
    let algorithm = if new.compression.is_empty() {
        let project = rec.project.clone();
        let (server, project) = cx
            .db
            .read(move |c| {
                let server = crate::db::config::load(c)?;
                let project = crate::db::projects::get(c, &project)?;
                Ok::<_, DbError>((server, project))
            })
            .await?;
        project
            .and_then(|p| p.config.get(crate::config::BACKUPS_COMPRESSION).cloned())
            .unwrap_or_else(|| {
                crate::config::get(&server, crate::config::BACKUPS_COMPRESSION).to_owned()
            })
    } else {
        new.compression
    };
    let compression = Compression::parse(&algorithm).ok_or_else(|| {
        Failure::invalid(format!(
            "Invalid compression algorithm {algorithm:?}: expected none, gzip, zstd, xz or bzip2"
        ))
    })?;
    let expires_at = match new.expires_at {
        Some(e) if !e.is_empty() => {
            chrono::DateTime::parse_from_rfc3339(&e).map_err(|_| {
                Failure::invalid(format!(
                    "Invalid value {e:?} for \"expires_at\": expected an RFC 3339 time"
                ))
            })?;
            e
        }
        _ => NEVER.to_owned(),
    };
    Ok(Planned {
        record: BackupRecord {
            instance: instance.to_owned(),
            name,
            created_at: crate::time::now_rfc3339(),
            expires_at,
            instance_only: new.instance_only,
            optimized_storage: new.optimized && pool_of(cx, &rec).await?.info().optimized_backups,
            compression_algorithm: algorithm,
        },
        compression,
    })
}

/// The index and the trees of a backup of instance `rec`.
async fn describe(
    cx: &Ctx,
    rec: &InstanceRecord,
    instance_only: bool,
) -> Result<(BackupIndex, tarball::Contents)> {
    let (_, view) = super::query::get(cx, &rec.name).await?;
    let pool = pool_of(cx, rec).await?;
    let (_, devices) = expanded(cx, rec).await?;
    let pool_name = crate::model::expand::root_pool(&devices).unwrap_or_default();
    let pool_rec = crate::storage::get(cx, &pool_name).await?;
    let snapshots = if instance_only {
        Vec::new()
    } else {
        super::snapshot::list(cx, &rec.name).await?
    };
    let own_profiles = profiles(cx, &rec.project, &rec.profiles).await?;
    let t = VolumeType::Container;
    let mut contents = tarball::Contents {
        volume: pool.volume_path(t, &rec.name),
        snapshots: snapshots
            .iter()
            .map(|s| (s.name.clone(), pool.snapshot_path(t, &rec.name, &s.name)))
            .collect(),
        backup_yaml: String::new(),
    };
    let short = api_name(&rec.name).to_owned();
    let mut container =
        serde_json::to_value(&view).map_err(|e| Failure::internal(e.to_string()))?;
    // The tarball's files are as the container sees them (no shift on disk): say so, as
    // an importer shifts them from this map to its own.
    if let Some(config) = container["config"].as_object_mut() {
        config.insert("volatile.last_state.idmap".to_owned(), "[]".into());
    }
    let config = BackupFileConfig {
        container: Some(container),
        snapshots: snapshots.iter().map(snapshot_json).collect(),
        pool: Some(serde_json::json!({
            "name": pool_rec.name,
            "description": pool_rec.description,
            "driver": pool_rec.driver,
            "config": pool_rec.config,
            "status": "Created",
        })),
        profiles: own_profiles
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "description": p.description,
                    "config": p.config,
                    "devices": p.devices,
                })
            })
            .collect(),
        volume: Some(serde_json::json!({
            "name": short,
            "type": "container",
            "content_type": "filesystem",
            "config": {},
            "project": rec.project,
            "created_at": rec.created_at,
        })),
        volume_snapshots: snapshots
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "description": s.description,
                    "content_type": "filesystem",
                    "config": {},
                    "created_at": s.created_at,
                    "expires_at": s.expires_at,
                })
            })
            .collect(),
    };
    contents.backup_yaml = serde_saphyr::to_string(&config)
        .map_err(|e| Failure::internal(format!("Failed to write backup.yaml: {e}")))?;
    let index = BackupIndex {
        name: short,
        backend: pool.info().name.to_owned(),
        pool: pool_name,
        snapshots: snapshots.iter().map(|s| s.name.clone()).collect(),
        optimized: Some(false),
        optimized_header: Some(false),
        kind: "container".to_owned(),
        config: Some(config),
    };
    Ok((index, contents))
}

/// A snapshot as `backup.yaml` (and a migration's index) describes it: the API's object.
pub fn snapshot_json(s: &SnapshotRecord) -> serde_json::Value {
    serde_json::json!({
        "name": s.name,
        "description": s.description,
        "architecture": s.architecture,
        "config": s.config,
        "devices": s.devices,
        "ephemeral": s.ephemeral,
        "profiles": s.profiles,
        "stateful": false,
        "created_at": s.created_at,
        "expires_at": s.expires_at,
        "last_used_at": NEVER,
    })
}

/// The name of the file beside each instance's volume data describing it (LXD's).
pub const BACKUP_FILE: &str = "backup.yaml";

/// Rewrites instance `name`'s `backup.yaml` in its volume (beside `rootfs/`): what
/// recovery rebuilds its records from. Best effort: a failure is logged, the change it
/// follows stands.
pub async fn save_file(cx: &Ctx, name: &str) {
    let written = async {
        let rec = find(cx, name).await?;
        let (_, contents) = describe(cx, &rec, false).await?;
        let path = contents.volume.join(BACKUP_FILE);
        tokio::task::spawn_blocking(move || {
            crate::paths::replace_file(&path, contents.backup_yaml.as_bytes())
        })
        .await?
        .map_err(|e| Failure::failed("Failed to write backup.yaml", e))
    }
    .await;
    if let Err(e) = written {
        tracing::warn!(instance = name, error = %e, "backup.yaml not written");
    }
}

/// Writes the backup `planned` of instance `instance` to `out` (a pipe to a client, or a
/// file), reporting the bytes written.
pub async fn write_to(
    cx: &Ctx,
    planned: &Planned,
    out: impl std::io::Write + Send + 'static,
    progress: impl FnMut(u64) + Send + 'static,
) -> Result<()> {
    let rec = find(cx, &planned.record.instance).await?;
    let (mut index, mut contents) = describe(cx, &rec, planned.record.instance_only).await?;
    let compression = planned.compression;
    if planned.record.optimized_storage {
        index.optimized = Some(true);
        index.optimized_header = Some(true);
        let pool = pool_of(cx, &rec).await?;
        let (name, snapshots) = (rec.name.clone(), index.snapshots.clone());
        return tokio::task::spawn_blocking(move || {
            let sender = pool.sender(VolumeType::Container, &name, &snapshots)?;
            tarball::write_streams(
                out,
                compression,
                &index,
                &snapshots,
                sender.as_ref(),
                progress,
            )
            .map_err(|e| Failure::failed("Failed to write the backup", e))
        })
        .await?;
    }
    // A running instance on a pool whose snapshots cost nothing (btrfs) is written from
    // a snapshot of this moment, so its files are of one time, as Incus does.
    let pool = pool_of(cx, &rec).await?;
    let frozen = if pool.info().instant_snapshots && !super::query::is_stopped(cx, &rec.name).await
    {
        let snap = format!(".backup-{}", uuid::Uuid::new_v4().simple());
        let (p, n, s) = (pool.clone(), rec.name.clone(), snap.clone());
        tokio::task::spawn_blocking(move || p.create_snapshot(VolumeType::Container, &n, &s))
            .await??;
        contents.volume = pool.snapshot_path(VolumeType::Container, &rec.name, &snap);
        Some(snap)
    } else {
        None
    };
    let written = tokio::task::spawn_blocking(move || {
        tarball::write(out, compression, &index, &contents, progress)
    })
    .await;
    if let Some(snap) = frozen {
        let (p, n) = (pool.clone(), rec.name.clone());
        let _ = tokio::task::spawn_blocking(move || {
            p.delete_snapshot(VolumeType::Container, &n, &snap)
        })
        .await;
    }
    written?.map_err(|e| Failure::failed("Failed to write the backup", e))
}

/// Makes backup `planned` as a file and records it.
pub async fn create(
    cx: &Ctx,
    planned: Planned,
    progress: impl FnMut(u64) + Send + 'static,
) -> Result<()> {
    let b = planned.record.clone();
    let dir = cx.paths.backups(&b.instance);
    crate::paths::create_private_dir(&dir)
        .map_err(|e| Failure::failed("Failed to make the backups directory", e))?;
    let tmp = dir.join(format!(".{}.{}.tmp", b.name, uuid::Uuid::new_v4()));
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
    }
    .map_err(|e| Failure::failed("Failed to create the backup file", e))?;
    let written = async {
        write_to(cx, &planned, file, progress).await?;
        let t = tmp.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(&t).and_then(|f| f.sync_all()))
            .await?
            .map_err(|e| Failure::failed("Failed to write the backup file", e))?;
        let row = b.clone();
        cx.db
            .write(move |tx| crate::db::backups::insert(tx, &row))
            .await
            .map_err(|e| match e {
                DbError::Exists { .. } => exists(&b.name),
                other => other.into(),
            })?;
        if let Err(e) = place(&tmp, &cx.paths.backup(&b.instance, &b.name)) {
            let (i, n) = (b.instance.clone(), b.name.clone());
            let _ = cx
                .db
                .write(move |tx| crate::db::backups::delete(tx, &i, &n))
                .await;
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                return Err(kept(&b.name));
            }
            return Err(Failure::failed("Failed to put the backup file in place", e));
        }
        Ok(())
    }
    .await;
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    cx.events
        .lifecycle("instance-backup-created", &url(&b.instance, &b.name), None);
    Ok(())
}

/// The file of backup `name` of `instance`, and its size.
pub async fn file(cx: &Ctx, instance: &str, name: &str) -> Result<(PathBuf, u64)> {
    get(cx, instance, name).await?;
    let path = cx.paths.backup(instance, name);
    let len = std::fs::metadata(&path)
        .map_err(|e| Failure::failed("The backup's file is unreadable", e))?
        .len();
    Ok((path, len))
}

/// Renames a backup.
pub async fn rename(cx: &Ctx, instance: &str, name: &str, to: &str) -> Result<()> {
    check_name(to)?;
    get(cx, instance, name).await?;
    let (from_path, to_path) = (
        cx.paths.backup(instance, name),
        cx.paths.backup(instance, to),
    );
    let (i, f, t) = (instance.to_owned(), name.to_owned(), to.to_owned());
    cx.db
        .write(move |tx| crate::db::backups::rename(tx, &i, &f, &t))
        .await
        .map_err(|e| match e {
            DbError::Exists { .. } => exists(to),
            other => other.into(),
        })?;
    if let Err(e) = place(&from_path, &to_path) {
        let (i, f, t) = (instance.to_owned(), name.to_owned(), to.to_owned());
        let _ = cx
            .db
            .write(move |tx| crate::db::backups::rename(tx, &i, &t, &f))
            .await;
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(kept(to));
        }
        return Err(Failure::failed("Failed to rename the backup file", e));
    }
    cx.events
        .lifecycle("instance-backup-renamed", &url(instance, to), None);
    Ok(())
}

/// Deletes a backup: its file, then its row.
pub async fn delete(cx: &Ctx, instance: &str, name: &str) -> Result<()> {
    get(cx, instance, name).await?;
    // The file first: a row whose file is gone is forgotten at the next start, while a
    // file no row names is kept there (see [`sweep`]).
    match std::fs::remove_file(cx.paths.backup(instance, name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Failure::failed("Failed to remove the backup file", e));
        }
        _ => {}
    }
    let (i, n) = (instance.to_owned(), name.to_owned());
    cx.db
        .write(move |tx| crate::db::backups::delete(tx, &i, &n))
        .await?;
    cx.events
        .lifecycle("instance-backup-deleted", &url(instance, name), None);
    Ok(())
}

/// Removes the backup files `names` of a deleted instance (its rows went with it), and
/// their directory when nothing else is kept there.
pub fn remove_files(cx: &Ctx, instance: &str, names: &[String]) {
    for name in names {
        match std::fs::remove_file(cx.paths.backup(instance, name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(instance, backup = %name, error = %e, "Backup file not removed");
            }
            _ => {}
        }
    }
    let _ = std::fs::remove_dir(cx.paths.backups(instance));
}

/// Moves the backup files of a renamed instance (its rows moved with it), never over a
/// file kept under the new name.
pub fn rename_files(cx: &Ctx, from: &str, to: &str) -> Result<()> {
    let (old, new) = (cx.paths.backups(from), cx.paths.backups(to));
    let failed = |e| Failure::failed("Failed to move the instance's backups", e);
    if !old.exists() {
        return Ok(());
    }
    if !new.exists() {
        return std::fs::rename(&old, &new).map_err(failed);
    }
    // Files kept under the new name are there: the moved ones go beside them.
    let names: Vec<_> = std::fs::read_dir(&old)
        .map_err(failed)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    for (i, name) in names.iter().enumerate() {
        if let Err(e) = place(&old.join(name), &new.join(name)) {
            // Back as they were.
            for done in &names[..i] {
                let _ = place(&new.join(done), &old.join(done));
            }
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                kept(&name.to_string_lossy())
            } else {
                failed(e)
            });
        }
    }
    let _ = std::fs::remove_dir(&old);
    Ok(())
}

/// Deletes the backups whose expiry has passed.
pub async fn prune_expired(cx: &Ctx) {
    let Ok(all) = cx.db.read(|c| crate::db::backups::list(c, None)).await else {
        return;
    };
    let now = chrono::Utc::now();
    for b in all {
        let due = b.expires_at != NEVER
            && chrono::DateTime::parse_from_rfc3339(&b.expires_at).is_ok_and(|t| t <= now);
        if due && let Err(e) = delete(cx, &b.instance, &b.name).await {
            tracing::warn!(instance = %b.instance, backup = %b.name, error = %e, "Expired backup not deleted");
        }
    }
}

/// At start: removes temporary files a crash left and rows whose file is gone. A file no
/// row names is kept, and said: it may be all that is left of an instance after the
/// database was lost (`berth import` takes it), as LXD keeps it.
pub async fn sweep(cx: &Ctx) {
    let Ok(rows) = cx.db.read(|c| crate::db::backups::list(c, None)).await else {
        return;
    };
    let root = cx.paths.backups("");
    for dir in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let instance = dir.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                tracing::info!(instance, file = name, "Removing a backup a crash cut short");
                let _ = std::fs::remove_file(f.path());
                continue;
            }
            let known = rows
                .iter()
                .any(|b| b.instance == instance && b.name == name);
            if !known {
                tracing::warn!(
                    instance,
                    file = %f.path().display(),
                    "Keeping a backup file no row names (berth import takes it)"
                );
            }
        }
    }
    for b in rows {
        if !cx.paths.backup(&b.instance, &b.name).exists() {
            tracing::warn!(instance = %b.instance, backup = %b.name, "Forgetting a backup whose file is gone");
            let (i, n) = (b.instance.clone(), b.name.clone());
            let _ = cx
                .db
                .write(move |tx| crate::db::backups::delete(tx, &i, &n))
                .await;
        }
    }
}
