//! Custom volumes as `disk` devices (`pool=`, `source=VOLUME`): who uses a volume, the
//! check that an attached volume exists, and the host path each such disk binds at start
//! or live (an idmapped bind through the container's map, see [`super::volume`]).

use std::collections::{BTreeMap, HashMap};

use berth_api::instance::Device;
use berth_storage::VolumeType;
use rusqlite::Connection;

use crate::ctx::Ctx;
use crate::error::{Failure, Result};
use crate::model::names::{host_name, instance_url, with_project};
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

/// The custom volume a device names, if it is one: its pool and volume name.
pub fn volume_of(d: &Device) -> Option<(&str, &str)> {
    if d.get("type").map(String::as_str) != Some("disk")
        || d.get("path").map(String::as_str) == Some("/")
    {
        return None;
    }
    Some((d.get("pool")?.as_str(), d.get("source")?.as_str()))
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

/// `devices` with each custom volume disk turned into a bind of the volume's directory
/// (`shift` on, so a container with a map binds it idmapped, unless the volume is
/// `security.unmapped`). A volume gone since is an error naming the device.
pub fn resolve(
    cx: &Ctx,
    project: &str,
    devices: &BTreeMap<String, Device>,
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
        let rec = volumes
            .iter()
            .find(|v| v.pool == pool && v.name == host)
            .ok_or_else(missing)?;
        let driver = super::driver(cx, pool)?;
        let path = driver.volume_path(VolumeType::Custom, &host);
        let unmapped = rec
            .config
            .get("security.unmapped")
            .is_some_and(|v| v == "true");
        let mut bind: Device = d
            .iter()
            .filter(|(k, _)| k.as_str() != "pool")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        bind.insert("source".to_owned(), path.to_string_lossy().into_owned());
        bind.insert("shift".to_owned(), (!unmapped).to_string());
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
