//! `berth image build debian`: a Debian system image made with `debootstrap`.
//!
//! A `minbase` bootstrap plus systemd as init and systemd-networkd taking DHCP on `eth0`.
//! Device nodes that debootstrap creates in `/dev` are dropped (the container manager mounts
//! its own `/dev`, and berth refuses images that carry device nodes), and so are apt's caches.
//! Packages come from the mirror the host's debootstrap uses, unless one is given.

use std::path::Path;
use std::process::Command;

use super::{BuildError, begin, host_architecture, image_metadata, now};
use crate::metadata::ImageMetadata;

/// What to build.
#[derive(Debug, Clone)]
pub struct DebianOptions {
    pub release: String,
    /// A mirror URL; `None` lets debootstrap use its default.
    pub mirror: Option<String>,
}

/// DHCP on eth0; the lease's search domain is used (so bare names of the network's other
/// instances resolve) and the MAC is the client id (the manager's static leases match it).
const NETWORK: &str = "[Match]\nName=eth0\n\n[Network]\nDHCP=yes\n\n[DHCPv4]\nUseDomains=true\nClientIdentifier=mac\n";

fn debian_arch(machine: &str) -> &str {
    match machine {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "armv7l" => "armhf",
        "i686" => "i386",
        other => other,
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), BuildError> {
    let out = cmd
        .output()
        .map_err(|e| BuildError::Command(what.to_owned(), e))?;
    if !out.status.success() {
        // debootstrap reports on both streams; the last lines say what went wrong.
        let err = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let tail: Vec<&str> = err
            .lines()
            .filter(|l| !l.trim().is_empty())
            .rev()
            .take(3)
            .collect();
        return Err(BuildError::CommandFailed(
            what.to_owned(),
            tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
        ));
    }
    Ok(())
}

fn write(path: &Path, content: &str) -> Result<(), BuildError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| BuildError::Write {
            path: parent.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, content).map_err(|source| BuildError::Write {
        path: path.to_owned(),
        source,
    })
}

fn link(target: &str, at: &Path) -> Result<(), BuildError> {
    if let Some(parent) = at.parent() {
        std::fs::create_dir_all(parent).map_err(|source| BuildError::Write {
            path: parent.to_owned(),
            source,
        })?;
    }
    let _ = std::fs::remove_file(at);
    std::os::unix::fs::symlink(target, at).map_err(|source| BuildError::Write {
        path: at.to_owned(),
        source,
    })
}

/// Empties a directory without removing it.
fn empty_dir(dir: &Path) -> Result<(), BuildError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let p = e.path();
        let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.map_err(|source| BuildError::Write { path: p, source })?;
    }
    Ok(())
}

/// Bootstraps Debian `opts.release` in `work` (an empty directory on a local filesystem)
/// and writes the image to `out`.
pub fn build(opts: &DebianOptions, work: &Path, out: &Path) -> Result<ImageMetadata, BuildError> {
    if Command::new("debootstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err(BuildError::MissingTool(
            "debootstrap".to_owned(),
            "debootstrap",
        ));
    }
    let arch = host_architecture();
    let rootfs = work.join("rootfs");
    let mut cmd = Command::new("debootstrap");
    cmd.args([
        "--variant=minbase",
        "--include=systemd,systemd-sysv,systemd-resolved,dbus,iproute2,netbase,ca-certificates",
    ])
    .arg(format!("--arch={}", debian_arch(&arch)))
    .arg(&opts.release)
    .arg(&rootfs);
    if let Some(m) = &opts.mirror {
        cmd.arg(m);
    }
    run(&mut cmd, "debootstrap")?;

    // Networking: DHCP on eth0 through systemd-networkd, names through systemd-resolved.
    write(&rootfs.join("etc/systemd/network/eth0.network"), NETWORK)?;
    link(
        "/lib/systemd/system/systemd-networkd.service",
        &rootfs.join("etc/systemd/system/multi-user.target.wants/systemd-networkd.service"),
    )?;
    link(
        "/lib/systemd/system/systemd-networkd.socket",
        &rootfs.join("etc/systemd/system/sockets.target.wants/systemd-networkd.socket"),
    )?;
    link(
        "/lib/systemd/system/systemd-resolved.service",
        &rootfs.join("etc/systemd/system/multi-user.target.wants/systemd-resolved.service"),
    )?;
    link(
        "../run/systemd/resolve/stub-resolv.conf",
        &rootfs.join("etc/resolv.conf"),
    )?;
    // A fresh machine id on first boot; no device nodes; no package caches.
    write(&rootfs.join("etc/machine-id"), "")?;
    write(&rootfs.join("etc/hostname"), "debian\n")?;
    empty_dir(&rootfs.join("dev"))?;
    empty_dir(&rootfs.join("var/cache/apt/archives"))?;
    empty_dir(&rootfs.join("var/lib/apt/lists"))?;
    empty_dir(&rootfs.join("run"))?;

    let created = now();
    let version = std::fs::read_to_string(rootfs.join("etc/debian_version"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let release = &opts.release;
    let md = image_metadata(
        created,
        &arch,
        &[
            ("os", "Debian".to_owned()),
            ("release", release.clone()),
            ("architecture", arch.clone()),
            ("variant", "minbase".to_owned()),
            (
                "description",
                format!("Debian {release} ({version}) {arch}"),
            ),
            ("name", format!("debian-{release}-{arch}")),
        ],
    );
    let mut w = begin(out, &md)?;
    w.tree("rootfs", &rootfs)?;
    w.finish()?;
    Ok(md)
}
