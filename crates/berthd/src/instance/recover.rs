//! Recovery: instances and custom volumes found on pools that the database no longer
//! knows, brought back from what lies beside them (LXD's `lxd recover`, Incus's
//! `incus admin recover`, through `/internal/recover/validate` and `…/import`).
//!
//! Each pool asked for is scanned: the known ones as they are loaded, lost ones from the
//! driver and `source` given (loaded and mounted, recorded only on import). An instance's
//! volume holds its `backup.yaml` (see [`super::backup::save_file`]); a custom volume its
//! description `custom/.PROJECT_NAME.yaml`, or nothing (it comes back with an empty
//! configuration, as Incus brings such volumes back). Their snapshots are those on disk.
//! What would keep one from coming back (a project or profile gone, a network its nics
//! use gone or their host parent missing, a description that does not read) is a
//! dependency error, and nothing is imported while any remains.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use berth_api::backup::{BackupFileConfig, RecoverPool, RecoverResult, RecoverVolume};
use berth_storage::{Driver, VolumeType};

use crate::ctx::Ctx;
use crate::error::{Failure, Result};
use crate::model::names::{InstanceName, split_host_name};
use crate::model::records::{PoolRecord, VolumeRecord, VolumeSnapshotRecord};

/// The largest description read.
const DESCRIPTION_LIMIT: u64 = 1 << 20;

/// A volume the database does not know, and what describes it.
#[derive(Debug, Clone)]
enum Unknown {
    Instance {
        pool: String,
        project: String,
        name: String,
        config: BackupFileConfig,
        snapshots: Vec<String>,
    },
    Custom {
        pool: String,
        project: String,
        name: String,
        host: String,
        config: Option<BackupFileConfig>,
        snapshots: Vec<String>,
    },
}

/// What a scan found: the volumes, the errors that block them, and the lost pools.
struct Found {
    unknown: Vec<Unknown>,
    errors: Vec<String>,
    new_pools: Vec<(PoolRecord, Arc<dyn Driver>)>,
}

/// Reads a description file, at most [`DESCRIPTION_LIMIT`] bytes.
fn read_description(path: &Path) -> std::result::Result<Option<BackupFileConfig>, String> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut text = String::new();
    file.take(DESCRIPTION_LIMIT)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    serde_saphyr::from_str(&text)
        .map(Some)
        .map_err(|e| crate::error::one_line(&e.without_snippet().to_string()))
}

/// The snapshots on disk of volume `host`.
fn snapshots_on_disk(driver: &dyn Driver, vtype: VolumeType, host: &str) -> Vec<String> {
    let dir = driver.snapshot_path(vtype, host, "_").with_file_name("");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    out.sort();
    out
}

/// The pools to scan: each known pool by its loaded driver, each lost one loaded and
/// mounted from the request.
async fn pools(
    cx: &Ctx,
    asked: &[RecoverPool],
    errors: &mut Vec<String>,
) -> Result<(
    Vec<(String, Arc<dyn Driver>)>,
    Vec<(PoolRecord, Arc<dyn Driver>)>,
)> {
    let mut scan = Vec::new();
    let mut new = Vec::new();
    for p in asked {
        if crate::storage::get(cx, &p.name).await.is_ok() {
            match cx.pools.get(&p.name) {
                Some(d) => scan.push((p.name.clone(), d)),
                None => errors.push(format!("Storage pool {:?} is not available", p.name)),
            }
            continue;
        }
        crate::model::names::PoolName::parse(&p.name)?;
        let default = cx.paths.default_pool_source(&p.name);
        let driver: Arc<dyn Driver> =
            berth_storage::load(&p.driver, &p.name, p.config.clone(), &default)
                .map(Arc::from)
                .map_err(|e| Failure::from(e).about(format_args!("Storage pool {:?}", p.name)))?;
        let d = driver.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || d.mount()).await? {
            errors.push(format!(
                "Storage pool {:?} cannot be mounted: {}",
                p.name,
                crate::error::chain(&e)
            ));
            continue;
        }
        scan.push((p.name.clone(), driver.clone()));
        let rec = PoolRecord {
            name: p.name.clone(),
            driver: p.driver.clone(),
            description: p.description.clone(),
            config: driver.config().clone(),
        };
        new.push((rec, driver));
    }
    Ok((scan, new))
}

/// Checks the nics of the instance `described` (with its `profiles`, all found) against
/// the networks and the host, as its import will.
async fn check_nics(
    cx: &Ctx,
    profiles: &[crate::model::records::ProfileRecord],
    described: &BackupFileConfig,
) -> Result<()> {
    let container = described.container.as_ref();
    let part = |key: &str| container.and_then(|c| c.get(key)).cloned();
    let mut config: BTreeMap<String, String> = part("config")
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    // As the import keeps them: a nic's host link of before is not its own then.
    config.retain(|k, _| !k.starts_with("volatile.") || k.ends_with(".hwaddr"));
    let devices: BTreeMap<String, berth_api::instance::Device> = part("devices")
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let (_, devices) = crate::model::expand::expand_parts(profiles, &config, &devices);
    super::nic::check(cx, &config, &devices).await
}

/// Scans the pools asked for.
async fn scan(cx: &Ctx, asked: &[RecoverPool]) -> Result<Found> {
    let mut errors = Vec::new();
    let (to_scan, new_pools) = pools(cx, asked, &mut errors).await?;
    let (instances, volumes, projects, profiles) = cx
        .db
        .read(|c| {
            Ok::<_, Failure>((
                crate::db::instances::list(c)?,
                crate::db::volumes::list(c, None, None)?,
                crate::db::projects::list(c)?,
                crate::db::profiles::list(c)?,
            ))
        })
        .await?;
    let mut unknown = Vec::new();
    for (pool, driver) in to_scan {
        let d = driver.clone();
        let (containers, customs) = tokio::task::spawn_blocking(move || {
            (
                d.list_volumes(VolumeType::Container).unwrap_or_default(),
                d.list_volumes(VolumeType::Custom).unwrap_or_default(),
            )
        })
        .await?;
        for host in containers {
            if instances.iter().any(|i| i.name == host) {
                continue;
            }
            let path = driver
                .volume_path(VolumeType::Container, &host)
                .join(super::backup::BACKUP_FILE);
            let config = match read_description(&path) {
                Ok(Some(c)) if c.container.is_some() => c,
                Ok(_) => {
                    errors.push(format!(
                        "Instance volume {host:?} on pool {pool:?} has no backup.yaml describing it"
                    ));
                    continue;
                }
                Err(e) => {
                    errors.push(format!(
                        "The backup.yaml of instance volume {host:?} on pool {pool:?} does not read: {e}"
                    ));
                    continue;
                }
            };
            let (project, name) = split_host_name(&host);
            let (project, name) = (project.to_owned(), name.to_owned());
            let Some(p) = projects.iter().find(|p| p.name == project) else {
                errors.push(format!(
                    "Project {project:?} of instance {name:?} does not exist"
                ));
                continue;
            };
            // No profiles named is the default profile, as the import takes it.
            let wanted: Vec<String> =
                match config.container.as_ref().and_then(|c| c.get("profiles")) {
                    None | Some(serde_json::Value::Null) => vec!["default".to_owned()],
                    Some(v) => match serde_json::from_value(v.clone()) {
                        Ok(wanted) => wanted,
                        Err(e) => {
                            errors
                                .push(format!("Instance {name:?}: its profiles do not read: {e}"));
                            continue;
                        }
                    },
                };
            let mut found = Vec::new();
            for w in &wanted {
                match profiles
                    .iter()
                    .find(|pr| pr.project == p.profiles_project() && &pr.name == w)
                {
                    Some(pr) => found.push(pr.clone()),
                    None => errors.push(format!(
                        "Profile {w:?} of instance {name:?} does not exist in project {project:?}"
                    )),
                }
            }
            // Networks live in the database too: those its nics use must be made again
            // before it comes back (as LXD asks), and their host parents must exist.
            if found.len() == wanted.len()
                && let Err(e) = check_nics(cx, &found, &config).await
            {
                errors.push(format!("Instance {name:?}: {}", e.message()));
            }
            let snapshots = snapshots_on_disk(driver.as_ref(), VolumeType::Container, &host);
            unknown.push(Unknown::Instance {
                pool: pool.clone(),
                project,
                name,
                config,
                snapshots,
            });
        }
        for host in customs {
            if volumes
                .iter()
                .any(|v| v.pool == pool && v.kind == "custom" && v.name == host)
            {
                continue;
            }
            let Some((project, name)) = host.split_once('_') else {
                errors.push(format!(
                    "Custom volume {host:?} on pool {pool:?} is not named PROJECT_NAME"
                ));
                continue;
            };
            if !projects.iter().any(|p| p.name == project) {
                errors.push(format!(
                    "Project {project:?} of custom volume {name:?} does not exist"
                ));
                continue;
            }
            let config = read_description(&crate::storage::volume::sidecar(driver.as_ref(), &host))
                .unwrap_or(None);
            let snapshots = snapshots_on_disk(driver.as_ref(), VolumeType::Custom, &host);
            unknown.push(Unknown::Custom {
                pool: pool.clone(),
                project: project.to_owned(),
                name: name.to_owned(),
                host: host.clone(),
                config,
                snapshots,
            });
        }
    }
    Ok(Found {
        unknown,
        errors,
        new_pools,
    })
}

/// `POST /internal/recover/validate`: what is there to recover, and what stands in the
/// way. Lost pools are mounted to look, then released.
pub async fn validate(cx: &Ctx, asked: &[RecoverPool]) -> Result<RecoverResult> {
    let found = scan(cx, asked).await?;
    for (_, driver) in &found.new_pools {
        let _ = driver.unmount();
    }
    Ok(RecoverResult {
        unknown_volumes: found
            .unknown
            .iter()
            .map(|u| match u {
                Unknown::Instance {
                    pool,
                    project,
                    name,
                    snapshots,
                    ..
                } => RecoverVolume {
                    name: name.clone(),
                    kind: "container".to_owned(),
                    snapshot_count: snapshots.len(),
                    project: project.clone(),
                    pool: pool.clone(),
                },
                Unknown::Custom {
                    pool,
                    project,
                    name,
                    snapshots,
                    ..
                } => RecoverVolume {
                    name: name.clone(),
                    kind: "custom".to_owned(),
                    snapshot_count: snapshots.len(),
                    project: project.clone(),
                    pool: pool.clone(),
                },
            })
            .collect(),
        dependency_errors: found.errors,
    })
}

/// `POST /internal/recover/import`: records the lost pools, then every volume found;
/// refused while any dependency error remains.
pub async fn import(cx: &Arc<Ctx>, asked: &[RecoverPool]) -> Result<()> {
    let found = scan(cx, asked).await?;
    if let Some(first) = found.errors.first() {
        for (_, driver) in &found.new_pools {
            let _ = driver.unmount();
        }
        return Err(Failure::invalid(format!(
            "Recovery is blocked: {first} ({} problem(s) in all)",
            found.errors.len()
        )));
    }
    for (rec, driver) in found.new_pools {
        let row = rec.clone();
        cx.db
            .write(move |tx| crate::db::pools::insert(tx, &row))
            .await?;
        cx.pools.insert(&rec.name, driver);
        tracing::info!(pool = %rec.name, "Storage pool recovered");
        cx.events.lifecycle(
            "storage-pool-created",
            &crate::storage::url(&rec.name),
            None,
        );
    }
    // Custom volumes first: an instance may attach one of them.
    let mut unknown = found.unknown;
    unknown.sort_by_key(|u| matches!(u, Unknown::Instance { .. }));
    for u in unknown {
        match u {
            Unknown::Instance {
                pool,
                project,
                name,
                config,
                snapshots,
            } => instance(cx, &pool, &project, &name, &config, &snapshots).await?,
            Unknown::Custom {
                pool,
                project,
                name,
                host,
                config,
                snapshots,
            } => custom(cx, &pool, &project, &name, &host, config, &snapshots).await?,
        }
    }
    Ok(())
}

/// Records instance `name` of `project`, whose volume and snapshots are on `pool`.
async fn instance(
    cx: &Arc<Ctx>,
    pool: &str,
    project: &str,
    name: &str,
    config: &BackupFileConfig,
    snapshots: &[String],
) -> Result<()> {
    let parsed = InstanceName::parse(name)?;
    let plan = super::backup::import::record_described(
        cx, project, &parsed, pool, config, snapshots, true,
    )
    .await?;
    let mut undo = crate::revert::Reverter::new();
    let (db, n) = (cx.db.clone(), plan.rec.name.clone());
    undo.add("forget the instance", move || {
        Ok(db.write_sync(|tx| crate::db::instances::delete(tx, &n))?)
    });
    super::create::make_runtime(cx, &plan.rec, &mut undo)?;
    undo.success();
    super::backup::save_file(cx, &plan.rec.name).await;
    tracing::info!(instance = %plan.rec.name, "Instance recovered");
    cx.events.lifecycle(
        "instance-created",
        &crate::model::names::instance_url(&plan.rec.name),
        None,
    );
    Ok(())
}

/// Records custom volume `name` of `project` on `pool` (on disk as `host`).
async fn custom(
    cx: &Ctx,
    pool: &str,
    project: &str,
    name: &str,
    host: &str,
    config: Option<BackupFileConfig>,
    snapshots: &[String],
) -> Result<()> {
    let described = config.unwrap_or_default();
    let volume = described.volume.unwrap_or_default();
    let string_map = |v: &serde_json::Value, key: &str| -> BTreeMap<String, String> {
        v.get(key)
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default()
    };
    let text = |v: &serde_json::Value, key: &str| {
        v.get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut vol_config = string_map(&volume, "config");
    vol_config.retain(|k, _| !k.starts_with("volatile."));
    let created = text(&volume, "created_at");
    let rec = VolumeRecord {
        pool: pool.to_owned(),
        project: project.to_owned(),
        kind: "custom".to_owned(),
        name: host.to_owned(),
        description: text(&volume, "description"),
        config: vol_config,
        created_at: if created.is_empty() {
            crate::time::now_rfc3339()
        } else {
            created
        },
    };
    let snaps: Vec<VolumeSnapshotRecord> = snapshots
        .iter()
        .map(|s| {
            let d = described
                .volume_snapshots
                .iter()
                .find(|v| v.get("name").and_then(serde_json::Value::as_str) == Some(s.as_str()))
                .cloned()
                .unwrap_or_default();
            let when = |key: &str, default: &str| {
                let t = text(&d, key);
                if t.is_empty() { default.to_owned() } else { t }
            };
            VolumeSnapshotRecord {
                pool: pool.to_owned(),
                volume: host.to_owned(),
                name: s.clone(),
                description: text(&d, "description"),
                config: string_map(&d, "config"),
                created_at: when("created_at", &crate::time::now_rfc3339()),
                expires_at: when("expires_at", crate::time::NEVER),
            }
        })
        .collect();
    let row = rec.clone();
    cx.db
        .write(move |tx| {
            crate::db::volumes::insert(tx, &row)?;
            for s in &snaps {
                crate::db::volumes::put_snapshot(tx, s)?;
            }
            Ok::<_, Failure>(())
        })
        .await?;
    crate::storage::volume::save_sidecar(cx, pool, host).await;
    tracing::info!(volume = %name, pool, project, "Custom volume recovered");
    cx.events.lifecycle(
        "storage-volume-created",
        &crate::storage::volume::url(&rec),
        None,
    );
    Ok(())
}
