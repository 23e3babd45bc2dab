//! An instance's effective configuration: its profiles merged in order, then its own
//! values; a `none` device masks one a profile gives.

use std::collections::{BTreeMap, HashMap};

use berth_api::instance::Device;

use super::records::{InstanceRecord, ProfileRecord, ProjectRecord};

/// Expanded configuration and devices.
pub type Expansion = (BTreeMap<String, String>, BTreeMap<String, Device>);

/// An instance with its expanded config and devices.
#[derive(Debug, Clone)]
pub struct Expanded {
    pub rec: InstanceRecord,
    pub config: BTreeMap<String, String>,
    pub devices: BTreeMap<String, Device>,
}

/// Profiles merged in order, then the instance's own values.
pub fn expand(profiles: &[ProfileRecord], rec: &InstanceRecord) -> Expansion {
    expand_parts(profiles, &rec.config, &rec.devices)
}

/// [`expand`] for a configuration and devices of one's own (a snapshot's, say).
pub fn expand_parts(
    profiles: &[ProfileRecord],
    own_config: &BTreeMap<String, String>,
    own_devices: &BTreeMap<String, Device>,
) -> Expansion {
    let mut config = BTreeMap::new();
    let mut devices = BTreeMap::new();
    for p in profiles {
        config.extend(p.config.clone());
        devices.extend(p.devices.clone());
    }
    config.extend(own_config.clone());
    devices.extend(own_devices.clone());
    devices.retain(|_, d: &mut Device| d.get("type").map(String::as_str) != Some("none"));
    (config, devices)
}

/// The root disk among expanded devices.
pub fn root_disk(devices: &BTreeMap<String, Device>) -> Option<&Device> {
    devices.values().find(|d| {
        d.get("type").map(String::as_str) == Some("disk")
            && d.get("path").map(String::as_str) == Some("/")
    })
}

/// The pool of the root disk among expanded devices.
pub fn root_pool(devices: &BTreeMap<String, Device>) -> Option<String> {
    root_disk(devices).and_then(|d| d.get("pool").cloned())
}

/// Whether `key` of an expanded configuration is `true`.
pub fn flag(config: &BTreeMap<String, String>, key: &str) -> bool {
    config.get(key).is_some_and(|v| v == "true")
}

/// The project whose profiles instances of `project` use, from every project.
pub fn profiles_project<'a>(projects: &'a [ProjectRecord], project: &'a str) -> &'a str {
    projects
        .iter()
        .find(|p| p.name == project)
        .map_or(project, ProjectRecord::profiles_project)
}

/// Pairs each instance with its profiles, resolved in memory from every profile and
/// project (a project without `features.profiles` uses `default`'s). A profile gone
/// since is left out.
pub fn with_profiles(
    recs: Vec<InstanceRecord>,
    all_profiles: &[ProfileRecord],
    projects: &[ProjectRecord],
) -> Vec<(InstanceRecord, Vec<ProfileRecord>)> {
    let all: HashMap<(&str, &str), &ProfileRecord> = all_profiles
        .iter()
        .map(|p| ((p.project.as_str(), p.name.as_str()), p))
        .collect();
    recs.into_iter()
        .map(|rec| {
            let from = profiles_project(projects, &rec.project).to_owned();
            let profiles = rec
                .profiles
                .iter()
                .filter_map(|p| all.get(&(from.as_str(), p.as_str())).map(|p| (*p).clone()))
                .collect();
            (rec, profiles)
        })
        .collect()
}

/// Every instance of `recs`, expanded.
pub fn expand_all(
    recs: Vec<InstanceRecord>,
    all_profiles: &[ProfileRecord],
    projects: &[ProjectRecord],
) -> Vec<Expanded> {
    with_profiles(recs, all_profiles, projects)
        .into_iter()
        .map(|(rec, profiles)| {
            let (config, devices) = expand(&profiles, &rec);
            Expanded {
                rec,
                config,
                devices,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn own_values_win_and_none_masks() {
        let mut root = BTreeMap::new();
        root.insert(
            "root".to_owned(),
            map(&[("type", "disk"), ("path", "/"), ("pool", "p")]),
        );
        root.insert(
            "d".to_owned(),
            map(&[("type", "disk"), ("path", "/x"), ("source", "/s")]),
        );
        let profile = ProfileRecord {
            name: "default".into(),
            config: map(&[("limits.cpu", "1"), ("user.a", "1")]),
            devices: root,
            ..Default::default()
        };
        let mut own_devices = BTreeMap::new();
        own_devices.insert("d".to_owned(), map(&[("type", "none")]));
        let rec = InstanceRecord {
            config: map(&[("limits.cpu", "2")]),
            devices: own_devices,
            ..Default::default()
        };
        let (config, devices) = expand(&[profile], &rec);
        assert_eq!(config["limits.cpu"], "2");
        assert_eq!(config["user.a"], "1");
        assert!(!devices.contains_key("d"));
        assert_eq!(root_pool(&devices).as_deref(), Some("p"));
    }

    #[test]
    fn projects_without_their_own_profiles_use_defaults() {
        let projects = vec![ProjectRecord {
            name: "p".into(),
            config: map(&[("features.profiles", "false")]),
            ..Default::default()
        }];
        let profiles = vec![ProfileRecord {
            project: "default".into(),
            name: "default".into(),
            config: map(&[("user.x", "1")]),
            ..Default::default()
        }];
        let rec = InstanceRecord {
            name: "p_c".into(),
            project: "p".into(),
            profiles: vec!["default".into(), "gone".into()],
            ..Default::default()
        };
        let all = expand_all(vec![rec], &profiles, &projects);
        assert_eq!(all[0].config["user.x"], "1");
    }
}
