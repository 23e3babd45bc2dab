//! Custom volumes as `disk` devices (`pool=`, `source=VOLUME`): who uses a volume, the
//! check that an attached volume exists, and the host path each such disk binds at start
//! or live (an idmapped bind through the container's map, see [`super::volume`]).

use std::collections::{BTreeMap, HashMap};

use berth_api::instance::Device;
use berth_storage::VolumeType;
use rusqlite::Connection;

use super::volume::host_name;
use crate::ctx::Ctx;
use crate::error::{Failure, Result};
use crate::model::names::{instance_url, with_project};
use crate::model::records::ProjectRecord;

/// Something a custom volume is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    /// An instance, by host-wide name (through its own devices or a profile's).
    Instance(String),
    /// A profile: its project and name.
    Profile(String, String),
}

impl User {
    /// Its URL, as `used_by` lists it.
    pub fn url(&self) -> String {
        match self {
            User::Instance(name) => instance_url(name),
            User::Profile(project, name) => with_project(&format!("/1.0/profiles/{name}"), project),
        }
    }
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            User::Instance(name) => write!(f, "instance {:?}", crate::model::names::api_name(name)),
            User::Profile(_, name) => write!(f, "profile {name:?}"),
        }
    }
}

/// A custom volume marked busy (being moved, renamed, restored or deleted): no instance
/// binds it until the mark goes, when this is dropped.
#[derive(Debug)]
pub struct Busy<'a> {
    cx: &'a Ctx,
    key: String,
}

impl<'a> Busy<'a> {
    /// Marks volume `host` (its host-wide name) of `pool`.
    pub fn mark(cx: &'a Ctx, pool: &str, host: &str) -> Self {
        let key = format!("{pool}/{host}");
        cx.busy_volumes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone());
        Busy { cx, key }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.cx
            .busy_volumes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

fn is_busy(cx: &Ctx, pool: &str, host: &str) -> bool {
    cx.busy_volumes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&format!("{pool}/{host}"))
}

/// The custom volume a device names, if it is one: its pool and volume name.
pub fn volume_of(d: &Device) -> Option<(&str, &str)> {
    if d.get("type").map(String::as_str) != Some("disk")
        || d.get("path").map(String::as_str) == Some("/")
    {
        return None;
    }
    Some((d.get("pool")?.as_str(), d.get("source")?.as_str()))
}

/// Whether a custom volume disk in `devices` names a volume with a size on a pool `on_pool`
/// accepts.
pub fn any_sized(
    cx: &Ctx,
    project: &str,
    devices: &BTreeMap<String, Device>,
    on_pool: impl Fn(&str) -> bool,
) -> bool {
    let wanted: Vec<(&str, &str)> = devices
        .values()
        .filter_map(volume_of)
        .filter(|(pool, _)| on_pool(pool))
        .collect();
    if wanted.is_empty() {
        return false;
    }
    let read = cx.db.read_sync(move |c| {
        let projects = crate::db::projects::list(c)?;
        let volumes = crate::db::volumes::list(c, None, Some(super::volume::CUSTOM))?;
        Ok::<_, Failure>((projects, volumes))
    });
    let Ok((projects, volumes)) = read else {
        return false;
    };
    let holder = volumes_project(&projects, project);
    wanted.iter().any(|(pool, vol)| {
        let host = host_name(holder, vol);
        volumes.iter().any(|v| {
            let size = v
                .config
                .get("size")
                .and_then(|s| crate::model::limits::parse_size(s));
            v.pool == *pool && v.name == host && size.is_some_and(|n| n > 0)
        })
    })
}

fn volumes_project<'a>(projects: &'a [ProjectRecord], project: &'a str) -> &'a str {
    projects
        .iter()
        .find(|p| p.name == project)
        .map_or(project, ProjectRecord::volumes_project)
}

/// Every custom volume in use, keyed by pool and host-wide name, with the URLs of its
/// users (instances, then profiles).
pub fn all_users(conn: &Connection) -> Result<HashMap<(String, String), Vec<String>>> {
    let mut out: HashMap<(String, String), Vec<String>> = HashMap::new();
    for (key, user) in scan(conn)? {
        out.entry(key).or_default().push(user.url());
    }
    Ok(out)
}

/// What uses custom volume `host` (its host-wide name) on `pool`.
pub fn users(conn: &Connection, pool: &str, host: &str) -> Result<Vec<User>> {
    Ok(scan(conn)?
        .into_iter()
        .filter(|((p, h), _)| p == pool && h == host)
        .map(|(_, u)| u)
        .collect())
}

/// Every (volume, user) pair: instances through their expanded devices, profiles
/// through their own.
fn scan(conn: &Connection) -> Result<Vec<((String, String), User)>> {
    let projects = crate::db::projects::list(conn)?;
    let profiles = crate::db::profiles::list(conn)?;
    let instances = crate::db::instances::list(conn)?;
    let mut out = Vec::new();
    for e in crate::model::expand::expand_all(instances, &profiles, &projects) {
        let holder = volumes_project(&projects, &e.rec.project);
        let mut seen = Vec::new();
        for (pool, vol) in e.devices.values().filter_map(volume_of) {
            let key = (pool.to_owned(), host_name(holder, vol));
            if !seen.contains(&key) {
                seen.push(key.clone());
                out.push((key, User::Instance(e.rec.name.clone())));
            }
        }
    }
    for p in &profiles {
        let holder = volumes_project(&projects, &p.project);
        for (pool, vol) in p.devices.values().filter_map(volume_of) {
            out.push((
                (pool.to_owned(), host_name(holder, vol)),
                User::Profile(p.project.clone(), p.name.clone()),
            ));
        }
    }
    Ok(out)
}

/// Checks that every custom volume `devices` attach exists, seen from `project`.
pub async fn check(cx: &Ctx, project: &str, devices: &BTreeMap<String, Device>) -> Result<()> {
    if !devices.values().any(|d| volume_of(d).is_some()) {
        return Ok(());
    }
    let devices = devices.clone();
    let project = project.to_owned();
    let cx_pools = cx.pools.clone();
    cx.db
        .read(move |c| {
            let projects = crate::db::projects::list(c)?;
            let holder = volumes_project(&projects, &project);
            for (dev, d) in &devices {
                let Some((pool, vol)) = volume_of(d) else {
                    continue;
                };
                if cx_pools.get(pool).is_none() {
                    return Err(Failure::invalid(format!(
                        "Device {dev:?}: storage pool {pool:?} does not exist"
                    )));
                }
                let host = host_name(holder, vol);
                if crate::db::volumes::get(c, pool, super::volume::CUSTOM, &host)?.is_none() {
                    return Err(Failure::invalid(format!(
                        "Device {dev:?}: storage volume {vol:?} not found on pool {pool:?}"
                    )));
                }
            }
            Ok(())
        })
        .await
}

/// Lets host user `uid` (a container's root) through directory `dir` (a pool's `custom/`,
/// 0700 root) and no one else: liblxc opens an attached volume's path as the container's
/// root while it starts the container. A POSIX ACL entry `user:UID:--x` is added to the
/// directory's (written as the `system.posix_acl_access` attribute), kept with the ones
/// already there.
pub fn grant_traversal(dir: &std::path::Path, uid: u32) -> std::io::Result<()> {
    const USER_OBJ: u16 = 0x01;
    const USER: u16 = 0x02;
    const GROUP_OBJ: u16 = 0x04;
    const MASK: u16 = 0x10;
    const OTHER: u16 = 0x20;
    const UNDEFINED: u32 = u32::MAX;
    let mut value = vec![0u8; 4096];
    let mut users: Vec<u32> = match rustix::fs::getxattr(dir, "system.posix_acl_access", &mut value)
    {
        Ok(n) if n >= 4 => value[4..n]
            .chunks_exact(8)
            .filter(|e| u16::from_le_bytes([e[0], e[1]]) == USER)
            .map(|e| u32::from_le_bytes([e[4], e[5], e[6], e[7]]))
            .collect(),
        _ => Vec::new(),
    };
    if users.contains(&uid) {
        // Present; the mask may have been reset by a chmod (a pool's mount): written anew.
    } else {
        users.push(uid);
    }
    users.sort_unstable();
    let mut acl = 2u32.to_le_bytes().to_vec();
    let mut entry = |tag: u16, perm: u16, id: u32| {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    };
    entry(USER_OBJ, 7, UNDEFINED);
    for u in &users {
        entry(USER, 1, *u);
    }
    entry(GROUP_OBJ, 0, UNDEFINED);
    entry(MASK, 1, UNDEFINED);
    entry(OTHER, 0, UNDEFINED);
    rustix::fs::setxattr(
        dir,
        "system.posix_acl_access",
        &acl,
        rustix::fs::XattrFlags::empty(),
    )?;
    Ok(())
}

/// `devices` with each custom volume disk turned into a bind of the volume's directory
/// (`shift` on, so a container with a map binds it idmapped). A volume gone since, or one
/// being changed, is an error naming the device.
pub fn resolve(
    cx: &Ctx,
    project: &str,
    devices: &BTreeMap<String, Device>,
) -> Result<BTreeMap<String, Device>> {
    resolve_with(cx, project, devices, false)
}

/// [`resolve`], leaving out the disks whose volume is gone (what a running container had
/// bound before a change: a device naming a volume deleted since can still be removed).
pub fn resolve_present(
    cx: &Ctx,
    project: &str,
    devices: &BTreeMap<String, Device>,
) -> Result<BTreeMap<String, Device>> {
    resolve_with(cx, project, devices, true)
}

fn resolve_with(
    cx: &Ctx,
    project: &str,
    devices: &BTreeMap<String, Device>,
    lenient: bool,
) -> Result<BTreeMap<String, Device>> {
    if !devices.values().any(|d| volume_of(d).is_some()) {
        return Ok(devices.clone());
    }
    let project = project.to_owned();
    let (projects, volumes) = cx.db.read_sync(move |c| {
        let projects = crate::db::projects::list(c)?;
        let volumes = crate::db::volumes::list(c, None, Some(super::volume::CUSTOM))?;
        Ok::<_, Failure>((projects, volumes))
    })?;
    let holder = volumes_project(&projects, &project);
    let mut out = devices.clone();
    for (dev, d) in devices {
        let Some((pool, vol)) = volume_of(d) else {
            continue;
        };
        let host = host_name(holder, vol);
        let missing = || {
            Failure::invalid(format!(
                "Device {dev:?}: storage volume {vol:?} not found on pool {pool:?}"
            ))
        };
        let Some(rec) = volumes.iter().find(|v| v.pool == pool && v.name == host) else {
            if lenient {
                out.remove(dev);
                continue;
            }
            return Err(missing());
        };
        if is_busy(cx, pool, &host) {
            return Err(Failure::conflict(format!(
                "Device {dev:?}: storage volume {vol:?} is being changed (moved, renamed, restored or deleted); try again"
            )));
        }
        let driver = super::driver(cx, pool)?;
        let path = driver.volume_path(VolumeType::Custom, &host);
        let _ = rec;
        let mut bind: Device = d
            .iter()
            .filter(|(k, _)| k.as_str() != "pool")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        bind.insert("source".to_owned(), path.to_string_lossy().into_owned());
        bind.insert("shift".to_owned(), "true".to_owned());
        out.insert(dev.clone(), bind);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::devices::dev;

    #[test]
    fn only_pool_disks_name_volumes() {
        let vol = dev(&[
            ("type", "disk"),
            ("pool", "p"),
            ("source", "v"),
            ("path", "/mnt"),
        ]);
        assert_eq!(volume_of(&vol), Some(("p", "v")));
        let root = dev(&[("type", "disk"), ("pool", "p"), ("path", "/")]);
        assert_eq!(volume_of(&root), None);
        let host = dev(&[("type", "disk"), ("source", "/srv"), ("path", "/mnt")]);
        assert_eq!(volume_of(&host), None);
        assert_eq!(
            User::Profile("p".into(), "web".into()).url(),
            "/1.0/profiles/web?project=p"
        );
        assert_eq!(User::Instance("c1".into()).url(), "/1.0/instances/c1");
    }
}
