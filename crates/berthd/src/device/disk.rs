//! Host-path disks at start: `lxc.mount.entry` lines naming each source with its
//! symlinks resolved.

use std::collections::BTreeMap;

use berth_api::instance::Device;

use crate::error::{Failure, Result};
use crate::model::devices::{flag, is_host_disk};

/// The mount entries of the expanded devices' host-path disks. `userns`: the container has
/// a user namespace (shift then makes an idmapped mount). A missing required source is an
/// error naming the device.
pub fn disk_mounts(devices: &BTreeMap<String, Device>, userns: bool) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (name, d) in devices.iter().filter(|(_, d)| is_host_disk(d)) {
        let (Some(source), Some(path)) = (d.get("source"), d.get("path")) else {
            continue;
        };
        let required = flag(d, "required", true);
        let kind = match std::fs::metadata(source) {
            Ok(m) if m.is_dir() => "dir",
            Ok(_) => "file",
            Err(_) if !required => continue,
            Err(e) => {
                return Err(Failure::invalid(format!(
                    "Device {name:?}: missing source {source:?}: {e}"
                )));
            }
        };
        // The entry names the source with its symlinks resolved now, so one swapped in
        // later (say by a container writing to a directory another disk exposes) is not
        // followed at mount time.
        let source = std::fs::canonicalize(source)
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|e| {
                Failure::invalid(format!(
                    "Device {name:?}: cannot resolve source {source:?}: {e}"
                ))
            })?;
        let source = &source;
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
            super::escape(source),
            super::escape(path.trim_start_matches('/')),
            opts.join(",")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::devices::dev;

    #[test]
    fn renders_host_disks() {
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
        let mut all = BTreeMap::new();
        all.insert("data".to_owned(), good.clone());
        let m = disk_mounts(&all, true).unwrap();
        assert_eq!(m.len(), 1);
        assert!(
            m[0].contains("my\\040dir mnt/data none bind,create=dir,ro,idmap=container"),
            "{}",
            m[0]
        );
        let mut missing = BTreeMap::new();
        missing.insert(
            "gone".to_owned(),
            dev(&[
                ("type", "disk"),
                ("source", "/nonexistent/x"),
                ("path", "/x"),
            ]),
        );
        assert!(
            disk_mounts(&missing, true)
                .unwrap_err()
                .message()
                .contains("gone")
        );
        missing
            .get_mut("gone")
            .unwrap()
            .insert("required".into(), "false".into());
        assert!(disk_mounts(&missing, true).unwrap().is_empty());
    }
}
