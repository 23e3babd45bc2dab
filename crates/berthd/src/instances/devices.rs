//! Devices beyond the root disk: `disk` devices binding a host path into the container.
//!
//! Keys: `source` (absolute host path), `path` (where, inside), `readonly`, `shift`
//! (an idmapped bind mount, so host ids show inside as the same numbers),
//! `required` (default true: a missing source refuses the start), `propagation`,
//! `recursive`. They are mounted at start through `lxc.mount.entry`; a change applies at
//! the next start.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use berth_api::instance::Device;

const PROPAGATION: [&str; 6] = [
    "private", "shared", "slave", "rprivate", "rshared", "rslave",
];

fn flag(d: &Device, key: &str, default: bool) -> bool {
    d.get(key).map_or(default, |v| v == "true")
}

/// Checks a non-root `disk` device; the error names the device and key.
pub fn check_disk(name: &str, d: &Device) -> Result<(), String> {
    for (k, v) in d {
        match k.as_str() {
            "type" | "path" | "source" => {}
            "readonly" | "shift" | "required" | "recursive" => {
                if !matches!(v.as_str(), "true" | "false") {
                    return Err(format!(
                        "Device {name:?}: invalid value {v:?} for {k:?}: expected true or false"
                    ));
                }
            }
            "propagation" => {
                if !PROPAGATION.contains(&v.as_str()) {
                    return Err(format!(
                        "Device {name:?}: invalid value {v:?} for \"propagation\": expected one of {}",
                        PROPAGATION.join(", ")
                    ));
                }
            }
            "pool" => {
                return Err(format!(
                    "Device {name:?}: custom storage volumes are not supported yet"
                ));
            }
            other => {
                return Err(format!("Device {name:?}: unknown key {other:?}"));
            }
        }
        if v.contains(['\n', '\r', '\0']) {
            return Err(format!(
                "Device {name:?}: line breaks are not allowed in {k:?}"
            ));
        }
    }
    let path = d.get("path").map(String::as_str).unwrap_or_default();
    let source = d.get("source").map(String::as_str).unwrap_or_default();
    let plain = |p: &str| {
        p.starts_with('/')
            && Path::new(p)
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
    };
    if !plain(path) || path == "/" {
        return Err(format!(
            "Device {name:?}: \"path\" must be an absolute path inside the instance, without .."
        ));
    }
    if !plain(source) {
        return Err(format!(
            "Device {name:?}: \"source\" must be an absolute host path, without .."
        ));
    }
    Ok(())
}

/// fstab escapes for a path in a mount entry.
fn escape(p: &str) -> String {
    p.replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
}

/// The mount entries of the expanded devices' host-path disks. `userns`: the container has
/// a user namespace (shift then makes an idmapped mount). A missing required source is an
/// error naming the device.
pub fn disk_mounts(
    devices: &BTreeMap<String, Device>,
    userns: bool,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (name, d) in devices {
        if d.get("type").map(String::as_str) != Some("disk")
            || d.get("path").map(String::as_str) == Some("/")
        {
            continue;
        }
        let (Some(source), Some(path)) = (d.get("source"), d.get("path")) else {
            continue;
        };
        let required = flag(d, "required", true);
        let kind = match std::fs::metadata(source) {
            Ok(m) if m.is_dir() => "dir",
            Ok(_) => "file",
            Err(_) if !required => continue,
            Err(e) => {
                return Err(format!("Device {name:?}: missing source {source:?}: {e}"));
            }
        };
        let mut opts = vec![
            if flag(d, "recursive", false) {
                "rbind"
            } else {
                "bind"
            }
            .to_owned(),
            format!("create={kind}"),
        ];
        if flag(d, "readonly", false) {
            opts.push("ro".to_owned());
        }
        if userns && flag(d, "shift", false) {
            opts.push("idmap=container".to_owned());
        }
        if let Some(p) = d.get("propagation") {
            opts.push(p.clone());
        }
        if !required {
            opts.push("optional".to_owned());
        }
        out.push(format!(
            "{} {} none {} 0 0",
            escape(source),
            escape(path.trim_start_matches('/')),
            opts.join(",")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(pairs: &[(&str, &str)]) -> Device {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn checks_and_renders_host_disks() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("my dir");
        std::fs::create_dir(&src).unwrap();
        let good = dev(&[
            ("type", "disk"),
            ("source", src.to_str().unwrap()),
            ("path", "/mnt/data"),
            ("readonly", "true"),
            ("shift", "true"),
        ]);
        check_disk("data", &good).unwrap();
        let mut all = BTreeMap::new();
        all.insert("data".to_owned(), good.clone());
        let m = disk_mounts(&all, true).unwrap();
        assert_eq!(m.len(), 1);
        assert!(
            m[0].contains("my\\040dir mnt/data none bind,create=dir,ro,idmap=container"),
            "{}",
            m[0]
        );
        for bad in [
            dev(&[("type", "disk"), ("source", "rel"), ("path", "/x")]),
            dev(&[("type", "disk"), ("source", "/a/../b"), ("path", "/x")]),
            dev(&[("type", "disk"), ("source", "/a"), ("path", "x")]),
            dev(&[
                ("type", "disk"),
                ("source", "/a"),
                ("path", "/x"),
                ("readonly", "yes"),
            ]),
            dev(&[
                ("type", "disk"),
                ("source", "/a"),
                ("path", "/x"),
                ("bogus", "1"),
            ]),
        ] {
            assert!(check_disk("d", &bad).is_err(), "{bad:?}");
        }
        let mut missing = BTreeMap::new();
        missing.insert(
            "gone".to_owned(),
            dev(&[
                ("type", "disk"),
                ("source", "/nonexistent/x"),
                ("path", "/x"),
            ]),
        );
        assert!(disk_mounts(&missing, true).unwrap_err().contains("gone"));
        missing
            .get_mut("gone")
            .unwrap()
            .insert("required".into(), "false".into());
        assert!(disk_mounts(&missing, true).unwrap().is_empty());
    }
}
