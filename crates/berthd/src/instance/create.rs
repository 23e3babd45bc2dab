//! Making, copying, renaming and deleting instances.
//!
//! A creation is checked and recorded first ([`prepare`]: a 4xx before anything is made,
//! the instance's lock held from then on), then built ([`Creation::run`]: its volume from
//! a spare, an unpacked image, nothing, or a copy; templates; an optional start). Every
//! step registers its undo, so a failure half-way leaves nothing: no volume, no runtime
//! directory, no rows.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use berth_api::instance::{Device, InstanceSource, InstancesPost};
use berth_storage::{Driver, VolumeType};

use super::query::is_stopped;
use super::state::set_power;
use super::{find, pool_of, profiles, volume};
use crate::ctx::Ctx;
use crate::db::DbError;
use crate::error::{Failure, Result};
use crate::lxc::checkpoint;
use crate::model::expand::{expand, root_pool};
use crate::model::names::{InstanceName, api_name, host_name, instance_url};
use crate::model::records::{ImageRecord, InstanceRecord, SnapshotRecord};
use crate::revert::Reverter;

/// Progress of a long step, in percent.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

fn name_taken(host: &str) -> Failure {
    Failure::exists(format!("Instance {:?} already exists", api_name(host)))
}

/// What a copy is made from: a running or stopped instance's volume, or one of its
/// snapshots, with the snapshots that go along.
#[derive(Debug)]
struct CopyFrom {
    rec: InstanceRecord,
    /// The directory copied.
    path: PathBuf,
    /// The source runs: it is frozen while copied.
    running: bool,
    /// The source's snapshots copied too, with their directories.
    snapshots: Vec<(SnapshotRecord, PathBuf)>,
}

/// A recorded instance, to be built.
#[derive(Debug)]
pub struct Creation {
    rec: InstanceRecord,
    image: Option<ImageRecord>,
    copy: Option<CopyFrom>,
    pool: Arc<dyn Driver>,
    start: bool,
    /// The instance's lock, held until it is built.
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Creation {
    /// The new instance's host-wide name.
    pub fn name(&self) -> &str {
        &self.rec.name
    }

    /// The recorded instance, its pool, whether to start it, and its lock: what a
    /// migration's receiving end builds on (see [`super::migrate`]).
    pub(super) fn into_parts(
        self,
    ) -> (
        InstanceRecord,
        Arc<dyn Driver>,
        bool,
        tokio::sync::OwnedMutexGuard<()>,
    ) {
        (self.rec, self.pool, self.start, self._guard)
    }
}

/// Checks a new instance of `project` and records it (its row, its volume's row, the
/// snapshots of a copy), holding its lock: everything a request can get wrong is refused
/// here, before anything is made.
pub async fn prepare(
    cx: &Ctx,
    project: &str,
    name: &InstanceName,
    req: InstancesPost,
) -> Result<Creation> {
    let host = host_name(project, name);
    if !req.kind.is_empty() && req.kind != "container" {
        return Err(Failure::invalid(format!(
            "Instance type {:?} is not supported",
            req.kind
        )));
    }
    let mut config = req.config;
    // A backup's import (`backup`) and a recovery (`recover`), sources berthd sets and a
    // client never does, keep the volatile keys a migration's target keeps.
    let migrated = matches!(req.source.kind.as_str(), "migration" | "backup" | "recover");
    // Kept from a migrated instance: its image, and its nics' MAC addresses (its network
    // identity moves with it); a recovered one is the same instance: its UUID too.
    let recovered = req.source.kind == "recover";
    let kept = |k: &str| {
        k == "volatile.base_image" || k.ends_with(".hwaddr") || (recovered && k == "volatile.uuid")
    };
    if req.source.kind == "copy" {
        // Clients copying an instance send its config, volatile keys and all: berthd sets
        // those of the copy itself.
        config.retain(|k, _| !k.starts_with("volatile."));
    } else if migrated {
        config.retain(|k, _| !k.starts_with("volatile.") || kept(k));
    } else if config.keys().any(|k| k.starts_with("volatile.")) {
        return Err(Failure::invalid("volatile.* keys are set by berthd"));
    }
    let copy = if req.source.kind == "copy" {
        Some(copy_source(cx, project, &req.source).await?)
    } else {
        None
    };
    let image = match req.source.kind.as_str() {
        "image" => {
            // An alias names an image on the other server: what it names is fetched, and
            // found here by its fingerprint.
            if req.source.server.is_empty() {
                let s = &req.source;
                Some(crate::image::source(cx, project, &s.alias, &s.fingerprint).await?)
            } else {
                let fp = fetch_image(cx, project, &req.source).await?;
                Some(crate::image::source(cx, project, "", &fp).await?)
            }
        }
        "none" | "" | "copy" | "migration" | "backup" | "recover" => None,
        other => {
            return Err(Failure::invalid(format!(
                "Instance source {other:?} is not supported yet"
            )));
        }
    };
    if let Some(img) = &image {
        crate::image::cache::used(cx, &img.image.fingerprint).await;
    }
    let mut own_config = config.clone();
    own_config.retain(|k, _| !k.starts_with("volatile."));
    let profile_names = req.profiles.unwrap_or_else(|| vec!["default".to_owned()]);
    // The instance's lock, then the profile lock (the order every path takes them in),
    // held until the instance is recorded: its profiles cannot change or go meanwhile.
    let guard = cx.locks.instance(&host).lock_owned().await;
    let profile_guard = cx.locks.profiles.lock().await;
    let profiles = profiles(cx, project, &profile_names).await?;
    let architecture = image
        .as_ref()
        .map(|i| i.image.architecture.clone())
        .or_else(|| copy.as_ref().map(|c| c.rec.architecture.clone()))
        .or_else(|| (migrated && !req.architecture.is_empty()).then(|| req.architecture.clone()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    if let Some(base) = copy
        .as_ref()
        .and_then(|c| c.rec.config.get("volatile.base_image"))
    {
        config.insert("volatile.base_image".to_owned(), base.clone());
    }
    if let Some(img) = &image {
        for (k, v) in &img.image.properties {
            config.insert(format!("image.{k}"), v.clone());
        }
        config.insert(
            "volatile.base_image".to_owned(),
            img.image.fingerprint.clone(),
        );
    }
    if !config.contains_key("volatile.uuid") {
        config.insert("volatile.uuid".to_owned(), uuid::Uuid::new_v4().to_string());
    }
    // Every new instance is marked incoming until it is built: one that berthd's death
    // cut short is removed at the next start (see `background::sweep`). A recovered one
    // is not: its volume was there before and must never be swept.
    if req.source.kind != "recover" {
        config.insert(super::migrate::INCOMING.to_owned(), "true".to_owned());
    }
    config.insert("volatile.last_state.power".to_owned(), "STOPPED".to_owned());
    let rec = InstanceRecord {
        name: host.clone(),
        project: project.to_owned(),
        architecture,
        description: req.description,
        ephemeral: req.ephemeral,
        profiles: profile_names,
        config,
        devices: req.devices,
        created_at: crate::time::now_rfc3339(),
        last_used_at: crate::time::NEVER.to_owned(),
    };
    let (expanded, devices) = expand(&profiles, &rec);
    let candidate = (host.clone(), expanded.clone(), devices.clone());
    crate::project::check_allowed(cx, project, &candidate).await?;
    let own = InstanceRecord {
        config: own_config,
        ..rec.clone()
    };
    super::config::validate(cx, &own, &expanded)?;
    super::nic::check(cx, &rec.config, &devices).await?;
    crate::storage::disks::check(cx, project, &devices).await?;
    super::quota::check(cx, None, &devices)?;
    crate::project::check_limits(cx, project, std::slice::from_ref(&candidate)).await?;
    let pool = root_pool_driver(cx, &devices)?;
    let pool_name = root_pool(&devices).unwrap_or_default();
    let mut stored = rec.clone();
    let ids = cx.ids;
    let snapshots: Vec<SnapshotRecord> = copy
        .iter()
        .flat_map(|c| &c.snapshots)
        .map(|(s, _)| SnapshotRecord {
            instance: host.clone(),
            // Saved states stay with the source: a copy's snapshots restore files only.
            stateful: false,
            ..s.clone()
        })
        .collect();
    let rec = cx
        .db
        .write(move |tx| {
            if crate::db::instances::get(tx, &stored.name)?.is_some() {
                return Err(name_taken(&stored.name));
            }
            // The id map is chosen where the others are read, so two creates never take
            // the same isolated range.
            super::config::assign_idmap(tx, &mut stored, &expanded, ids, true)?;
            crate::db::instances::insert(tx, &stored, &pool_name).map_err(|e| match e {
                DbError::Exists { .. } => name_taken(&stored.name),
                DbError::Missing => Failure::invalid(format!(
                    "Storage pool {pool_name:?} of the root disk is not available"
                )),
                other => other.into(),
            })?;
            for s in &snapshots {
                crate::db::snapshots::insert(tx, s)?;
            }
            Ok::<_, Failure>(stored)
        })
        .await?;
    drop(profile_guard);
    Ok(Creation {
        rec,
        image,
        copy,
        pool,
        start: req.start,
        _guard: guard,
    })
}

/// The driver of the root disk's pool, or a 400 naming it.
fn root_pool_driver(cx: &Ctx, devices: &BTreeMap<String, Device>) -> Result<Arc<dyn Driver>> {
    let pool_name = root_pool(devices)
        .ok_or_else(|| Failure::invalid("The instance has no root disk device"))?;
    cx.pools.get(&pool_name).ok_or_else(|| {
        Failure::invalid(format!(
            "Storage pool {pool_name:?} of the root disk is not available"
        ))
    })
}

impl Creation {
    /// Builds the recorded instance, and starts it when asked; a failure takes back
    /// everything, rows included.
    pub async fn run(self, cx: &Arc<Ctx>, progress: Progress) -> Result<()> {
        let Creation {
            rec,
            image,
            copy,
            pool,
            start,
            _guard,
        } = self;
        let mut undo = Reverter::new();
        let (db, n) = (cx.db.clone(), rec.name.clone());
        undo.add("delete the instance's rows", move || {
            Ok(db.write_sync(|tx| crate::db::instances::delete(tx, &n))?)
        });
        let began = std::time::Instant::now();
        match &copy {
            Some(from) => build_copy(cx, &rec, from, &pool, &mut undo).await?,
            None => build(cx, &rec, image.as_ref(), &pool, progress, &mut undo).await?,
        }
        let (_, devices) = super::expanded(cx, &rec).await?;
        super::quota::apply(cx, &rec.name, None, &devices).await?;
        let mut rec = rec;
        rec.config.remove(super::migrate::INCOMING);
        let n = rec.name.clone();
        cx.db
            .write(move |tx| {
                if let Some(mut r) = crate::db::instances::get(tx, &n)? {
                    r.config.remove(super::migrate::INCOMING);
                    crate::db::instances::set_config(tx, &n, &r.config)?;
                }
                Ok::<_, Failure>(())
            })
            .await?;
        tracing::debug!(instance = %rec.name, ms = began.elapsed().as_millis(), "Instance created");
        cx.events
            .lifecycle("instance-created", &instance_url(&rec.name), None);
        undo.success();
        super::backup::save_file(cx, &rec.name).await;
        if start {
            let began = std::time::Instant::now();
            super::state::start(cx, &rec, false).await?;
            set_power(cx, &rec.name, "RUNNING").await;
            tracing::debug!(instance = %rec.name, ms = began.elapsed().as_millis(), "Instance started");
            cx.events
                .lifecycle("instance-started", &instance_url(&rec.name), None);
        }
        // The next instance from this image takes a volume unpacked meanwhile.
        if let Some(img) = image {
            crate::image::refill_spare(cx.clone(), pool, &img);
        }
        Ok(())
    }
}

/// Makes the instance's runtime directory, registering its undo.
pub(super) fn make_runtime(cx: &Arc<Ctx>, rec: &InstanceRecord, undo: &mut Reverter) -> Result<()> {
    cx.driver.create(&rec.name)?;
    let (driver, n) = (cx.driver.clone(), rec.name.clone());
    undo.add("delete the runtime directory", move || {
        driver.delete(&n);
        Ok(())
    });
    Ok(())
}

/// Registers the undo of an instance's volume (just made) and its snapshots.
pub(super) fn undo_volume(rec: &InstanceRecord, pool: &Arc<dyn Driver>, undo: &mut Reverter) {
    let (p, n) = (pool.clone(), rec.name.clone());
    undo.add("delete the instance's volume", move || {
        match p.delete_volume(VolumeType::Container, &n) {
            Err(e) if !crate::storage::is_not_found(&e) => return Err(e.into()),
            _ => {}
        }
        Ok(p.delete_snapshots(VolumeType::Container, &n)?)
    });
}

async fn build(
    cx: &Arc<Ctx>,
    rec: &InstanceRecord,
    image: Option<&ImageRecord>,
    pool: &Arc<dyn Driver>,
    progress: Progress,
    undo: &mut Reverter,
) -> Result<()> {
    make_runtime(cx, rec, undo)?;
    // The image unpacked ahead (a spare volume) is cloned where clones cost nothing, else
    // taken with one rename.
    if let Some(img) = image
        && {
            let fp = &img.image.fingerprint;
            if pool.info().optimized_images {
                crate::storage::spares::clone(pool.as_ref(), fp, &rec.name)
            } else {
                crate::storage::spares::claim(pool.as_ref(), fp, &rec.name)
            }
        }
    {
        undo_volume(rec, pool, undo);
        return crate::image::create_templates(img, rec, &volume(pool.as_ref(), &rec.name));
    }
    let vol = pool.create_volume(VolumeType::Container, &rec.name)?;
    undo_volume(rec, pool, undo);
    let Some(img) = image else {
        return std::fs::create_dir(vol.join("rootfs"))
            .map_err(|e| Failure::failed("Failed to create rootfs", e));
    };
    // Progress goes out at most once per percent.
    let (tx, mut rx) = tokio::sync::watch::channel((0u64, 0u64));
    let report: crate::image::unpack::Progress = Arc::new(move |done, total| {
        let pct = |d: u64, t: u64| (d * 100).checked_div(t).unwrap_or(0);
        tx.send_if_modified(|cur| {
            let changed = pct(done, total) != pct(cur.0, cur.1);
            *cur = (done, total);
            changed
        });
    });
    let (c, i, v) = (cx.clone(), img.clone(), vol.clone());
    let unpack =
        tokio::task::spawn_blocking(move || crate::image::unpack_into(&c, &i, &v, &report));
    let watch = async {
        while rx.changed().await.is_ok() {
            let (done, total) = *rx.borrow();
            progress((done * 100).checked_div(total).unwrap_or(0));
        }
    };
    let began = std::time::Instant::now();
    let (result, ()) = tokio::join!(unpack, watch);
    tracing::debug!(instance = %rec.name, ms = began.elapsed().as_millis(), "Image unpacked");
    result??;
    crate::image::create_templates(img, rec, &vol)
}

/// An image on another server (`source.server`, as `lxc launch other:IMAGE` sends it):
/// fetched into `project`'s images unless there already (it stays, as LXD's cache).
async fn fetch_image(cx: &Ctx, project: &str, source: &InstanceSource) -> Result<String> {
    let images = crate::image::images_project(cx, project).await?;
    let remote = crate::image::remote::RemoteImage {
        server: source.server.clone(),
        protocol: source.protocol.clone(),
        certificate: source.certificate.clone(),
        fingerprint: source.fingerprint.clone(),
        alias: source.alias.clone(),
        secret: source.secret.clone(),
    };
    crate::image::remote::for_instance(cx, &images, &remote).await
}

/// Publishes `source` (`NAME` of a stopped instance, or `NAME/SNAP`, in `project`) as an
/// image of `image_project` (see [`crate::image::publish`]).
pub async fn publish(
    cx: &Ctx,
    project: &str,
    image_project: &str,
    source: &str,
    opts: crate::image::import::ImportOptions,
) -> Result<crate::image::import::Imported> {
    let from = copy_source(
        cx,
        project,
        &InstanceSource {
            source: source.to_owned(),
            instance_only: true,
            ..Default::default()
        },
    )
    .await?;
    // Neither started, changed nor deleted while it is packed.
    let _lock = cx.locks.instance(&from.rec.name).lock_owned().await;
    if !source.contains('/') && !is_stopped(cx, &from.rec.name).await {
        return Err(Failure::invalid(
            "The instance is running: stop it first to publish it",
        ));
    }
    crate::image::publish::publish(cx, image_project, &from.path, opts).await
}

/// Resolves a copy's `source` (`NAME` or `NAME/SNAP`, in `source.project` or `project`).
async fn copy_source(cx: &Ctx, project: &str, source: &InstanceSource) -> Result<CopyFrom> {
    // `live` (which lxc sends for a running source) is served by a stateless copy of the
    // frozen instance, as LXD serves local copies (running state moves with migration).
    if !source.server.is_empty() {
        return Err(Failure::invalid(
            "Copies between servers are not supported yet",
        ));
    }
    let src_project = if source.project.is_empty() {
        project
    } else {
        &source.project
    };
    let (name, snap) = match source.source.split_once('/') {
        Some((n, s)) => (n, Some(s)),
        None => (source.source.as_str(), None),
    };
    let name = InstanceName::parse(name)?;
    let host = host_name(src_project, &name);
    let rec = find(cx, &host).await?;
    let pool = pool_of(cx, &rec).await?;
    let t = VolumeType::Container;
    let h = host.clone();
    let all = cx
        .db
        .read(move |c| crate::db::snapshots::list(c, &h))
        .await?;
    if let Some(snap) = snap {
        if !all.iter().any(|s| s.name == snap) {
            return Err(Failure::not_found(format!(
                "Snapshot {snap:?} of instance {name:?} not found"
            )));
        }
        return Ok(CopyFrom {
            path: pool.snapshot_path(t, &host, snap),
            rec,
            running: false,
            snapshots: vec![],
        });
    }
    let running = !is_stopped(cx, &host).await;
    let snapshots = if source.instance_only {
        vec![]
    } else {
        all.into_iter()
            .map(|s| {
                let p = pool.snapshot_path(t, &host, &s.name);
                (s, p)
            })
            .collect()
    };
    Ok(CopyFrom {
        path: pool.volume_path(t, &host),
        running,
        rec,
        snapshots,
    })
}

/// Makes instance `rec`'s volume (and snapshots) as copies of `from`, a running source
/// frozen meanwhile, then renders the image's `copy` templates.
async fn build_copy(
    cx: &Arc<Ctx>,
    rec: &InstanceRecord,
    from: &CopyFrom,
    pool: &Arc<dyn Driver>,
    undo: &mut Reverter,
) -> Result<()> {
    make_runtime(cx, rec, undo)?;
    // The source cannot change, stop or go while it is copied.
    let _source = cx.locks.instance(&from.rec.name).lock_owned().await;
    let t = VolumeType::Container;
    let source = from.rec.name.as_str();
    let freeze = from.running && !cx.driver.is_frozen(source);
    if freeze {
        cx.driver
            .set_frozen(source, true)
            .map_err(|e| e.about("Failed to freeze the source for its copy"))?;
    }
    let copied = tokio::task::block_in_place(|| pool.create_volume_from(t, &rec.name, &from.path));
    if freeze && let Err(e) = cx.driver.set_frozen(source, false) {
        tracing::error!(error = %e, "Failed to thaw the source after its copy");
    }
    copied?;
    undo_volume(rec, pool, undo);
    tokio::task::block_in_place(|| {
        // Saved states stay with the source: a copy's snapshots restore files only.
        checkpoint::strip_volume(&pool.volume_path(t, &rec.name))?;
        for (s, path) in &from.snapshots {
            pool.create_snapshot_from(t, &rec.name, &s.name, path)?;
            checkpoint::strip_volume(&pool.snapshot_path(t, &rec.name, &s.name))?;
        }
        Ok::<_, Failure>(())
    })?;
    crate::image::volume_templates(rec, &pool.volume_path(t, &rec.name), "copy")
}

/// Checks that instance `name` can be renamed `to` (in its project); returns the new
/// host-wide name.
pub async fn check_rename(cx: &Ctx, name: &str, to: &InstanceName) -> Result<String> {
    let rec = find(cx, name).await?;
    let to = host_name(&rec.project, to);
    if to != name {
        let t = to.clone();
        if cx
            .db
            .read(move |c| crate::db::instances::get(c, &t))
            .await?
            .is_some()
        {
            return Err(Failure::exists(format!(
                "Name {:?} already in use",
                api_name(&to)
            )));
        }
    }
    Ok(to)
}

/// Renames stopped instance `name` to host-wide name `to`: its rows, volume, snapshots
/// and runtime directory. Both names are held for the whole rename: nothing can start
/// the old one or create the new one meanwhile.
pub async fn rename(cx: &Ctx, name: &str, to: &str) -> Result<()> {
    let _old = cx.locks.instance(name).lock_owned().await;
    if to == name {
        return Ok(());
    }
    let _new = cx.locks.instance(to).lock_owned().await;
    let rec = find(cx, name).await?;
    if !is_stopped(cx, name).await {
        return Err(Failure::conflict(
            "Renaming of running instance not allowed",
        ));
    }
    let (_, devices) = super::expanded(cx, &rec).await?;
    // Its nics' static entries carry its old name; its next start writes new ones.
    super::nic::forget_all(cx, name, &devices);
    let pool = root_pool(&devices).and_then(|p| cx.pools.get(&p));
    let (from, t) = (name.to_owned(), to.to_owned());
    cx.db
        .write(move |tx| crate::db::instances::rename(tx, &from, &t))
        .await
        .map_err(|e| match e {
            DbError::Exists { .. } => {
                Failure::exists(format!("Name {:?} already in use", api_name(to)))
            }
            other => other.into(),
        })?;
    let mut undo = Reverter::new();
    let (db, from, t) = (cx.db.clone(), name.to_owned(), to.to_owned());
    undo.add("give the rows their old name", move || {
        Ok(db.write_sync(|tx| crate::db::instances::rename(tx, &t, &from))?)
    });
    let vt = VolumeType::Container;
    if let Some(pool) = &pool {
        match pool.rename_volume(vt, name, to) {
            Err(e) if !crate::storage::is_not_found(&e) => return Err(e.into()),
            _ => {}
        }
        let (p, from, t) = (pool.clone(), name.to_owned(), to.to_owned());
        undo.add("give the volume its old name", move || {
            Ok(p.rename_volume(vt, &t, &from)?)
        });
        pool.rename_snapshots(vt, name, to)?;
        let (p, from, t) = (pool.clone(), name.to_owned(), to.to_owned());
        undo.add("give the snapshots their old name", move || {
            Ok(p.rename_snapshots(vt, &t, &from)?)
        });
    }
    cx.driver.rename(name, to)?;
    let (driver, from, t) = (cx.driver.clone(), name.to_owned(), to.to_owned());
    undo.add("give the runtime directory its old name", move || {
        driver.rename(&t, &from)
    });
    super::backup::rename_files(cx, name, to)?;
    undo.success();
    // The old device nodes named the old paths; the next start makes new ones.
    let _ = std::fs::remove_dir_all(cx.paths.nodes(name));
    if let Some(pool) = &pool {
        let renamed = InstanceRecord {
            name: to.to_owned(),
            ..rec.clone()
        };
        if let Err(e) =
            crate::image::volume_templates(&renamed, &volume(pool.as_ref(), to), "rename")
        {
            tracing::warn!(instance = %to, error = %e, "Rename templates failed");
        }
    }
    cx.locks.forget(name);
    let mut ctx = serde_json::Map::new();
    ctx.insert("old_name".into(), api_name(name).into());
    cx.events
        .lifecycle("instance-renamed", &instance_url(to), Some(ctx));
    super::backup::save_file(cx, to).await;
    Ok(())
}

/// A stopped instance about to be deleted, its lock held.
#[derive(Debug)]
pub struct Deletion {
    rec: InstanceRecord,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

/// Takes instance `name`'s lock (waiting for what runs on it) and checks that it can be
/// deleted: it is stopped.
pub async fn begin_delete(cx: &Ctx, name: &str) -> Result<Deletion> {
    find(cx, name).await?;
    let guard = cx.locks.instance(name).lock_owned().await;
    let rec = find(cx, name).await?;
    if !is_stopped(cx, name).await {
        return Err(Failure::invalid(
            "Instance is running; stop it first (or delete with force)",
        ));
    }
    Ok(Deletion { rec, _guard: guard })
}

impl Deletion {
    /// Deletes the instance.
    pub async fn run(self, cx: &Ctx) -> Result<()> {
        remove(cx, &self.rec).await
    }
}

/// Removes instance `rec` (stopped, its lock held): volume, snapshots, runtime directory,
/// device nodes, rows, backups.
pub async fn remove(cx: &Ctx, rec: &InstanceRecord) -> Result<()> {
    let (_, devices) = super::expanded(cx, rec).await?;
    if let Some(pool) = root_pool(&devices).and_then(|p| cx.pools.get(&p)) {
        match pool.delete_volume(VolumeType::Container, &rec.name) {
            Err(e) if !crate::storage::is_not_found(&e) => return Err(e.into()),
            _ => {}
        }
        pool.delete_snapshots(VolumeType::Container, &rec.name)?;
    }
    let n = rec.name.clone();
    super::blocking(cx, move |d| d.delete(&n)).await?;
    if let Err(e) = std::fs::remove_dir_all(cx.paths.nodes(&rec.name))
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(instance = %rec.name, error = %e, "Device nodes not removed");
    }
    // Its backups' files go with their rows; a file kept without one stays.
    let n = rec.name.clone();
    let backups: Vec<String> = cx
        .db
        .read(move |c| crate::db::backups::list(c, Some(&n)))
        .await?
        .into_iter()
        .map(|b| b.name)
        .collect();
    let n = rec.name.clone();
    cx.db
        .write(move |tx| crate::db::instances::delete(tx, &n))
        .await?;
    super::backup::remove_files(cx, &rec.name, &backups);
    super::nic::forget_all(cx, &rec.name, &devices);
    super::proxy::stop_all(cx, &rec.name, &devices).await;
    cx.locks.forget(&rec.name);
    cx.events
        .lifecycle("instance-deleted", &instance_url(&rec.name), None);
    Ok(())
}
