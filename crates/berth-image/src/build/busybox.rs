//! `berth image build busybox`: a tiny system image from Debian's `busybox-static`.
//!
//! busybox's own init runs `/etc/init.d/rcS`, which sets the hostname, brings up `lo` and,
//! when the container has an `eth0`, runs `udhcpc` on it in the background. The whole image
//! is about 1 MB and builds in well under a second.

use std::path::Path;
use std::process::Command;

use super::{BuildError, begin, host_architecture, image_metadata, now};
use crate::metadata::ImageMetadata;

/// Where Debian's busybox-static installs the binary.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";

const INITTAB: &str = "\
::sysinit:/etc/init.d/rcS
::respawn:/etc/init.d/console
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/umount -a -r
";

/// The shell on the console. Re-opening the console makes it the shell's controlling
/// terminal (job control, Ctrl-C), except in a checkpointable container: CRIU cannot
/// restore a console held that way, so there the shell runs without one.
const CONSOLE: &str = "\
#!/bin/sh
if [ \"$BERTH_CHECKPOINTABLE\" = true ]; then
    exec /bin/sh -l
fi
exec /bin/sh -l </dev/console >/dev/console 2>&1
";

const RCS: &str = "\
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
grep -qs ' /run ' /proc/mounts || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
[ -s /etc/hostname ] && hostname -F /etc/hostname
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    udhcpc -b -S -t 10 -T 1 -i eth0 -p /run/udhcpc.eth0.pid -s /usr/share/udhcpc/default.script
fi
";

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# Called by udhcpc with the lease in its environment.
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    if [ -n "$router" ]; then
        ip route del default dev "$interface" 2>/dev/null
        for r in $router; do
            ip route add default via "$r" dev "$interface" && break
        done
    fi
    : > /etc/resolv.conf
    [ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    ;;
esac
exit 0
"#;

/// The version busybox reports, such as `1.35.0`.
fn version(busybox: &Path) -> Result<String, BuildError> {
    let name = busybox.display().to_string();
    let out = Command::new(busybox)
        .output()
        .map_err(|e| BuildError::Command(name.clone(), e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split_whitespace()
        .nth(1)
        .map(|v| v.trim_start_matches('v').to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    Ok(v)
}

/// The applets busybox provides, as paths relative to `/`.
fn applets(busybox: &Path) -> Result<Vec<String>, BuildError> {
    let name = busybox.display().to_string();
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| BuildError::Command(name.clone(), e))?;
    if !out.status.success() {
        return Err(BuildError::CommandFailed(
            name,
            String::from_utf8_lossy(&out.stderr).into(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_owned())
        .filter(|l| !l.is_empty() && !l.contains(".."))
        .collect())
}

/// Builds the busybox image at `out` from the busybox binary at `busybox`.
pub fn build(busybox: &Path, out: &Path) -> Result<ImageMetadata, BuildError> {
    if !busybox.exists() {
        return Err(BuildError::MissingTool(
            busybox.display().to_string(),
            "busybox-static",
        ));
    }
    let version = version(busybox)?;
    let arch = host_architecture();
    let created = now();
    let md = image_metadata(
        created,
        &arch,
        &[
            ("os", "BusyBox".to_owned()),
            ("release", version.clone()),
            ("architecture", arch.clone()),
            ("variant", "default".to_owned()),
            ("description", format!("BusyBox {version} {arch}")),
            ("name", format!("busybox-{version}-{arch}")),
        ],
    );
    let mut w = begin(out, &md)?;
    w.dir("rootfs", 0o755)?;
    for d in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "usr/share",
        "usr/share/udhcpc",
        "etc",
        "etc/init.d",
        "dev",
        "proc",
        "sys",
        "run",
        "var",
        "var/log",
        "home",
        "mnt",
    ] {
        w.dir(&format!("rootfs/{d}"), 0o755)?;
    }
    w.dir("rootfs/root", 0o700)?;
    w.dir("rootfs/tmp", 0o1777)?;
    w.symlink("rootfs/var/run", "../run")?;
    w.copy("rootfs/bin/busybox", 0o755, busybox)?;
    for applet in applets(busybox)? {
        if applet != "bin/busybox" {
            w.symlink(&format!("rootfs/{applet}"), "/bin/busybox")?;
        }
    }
    w.file("rootfs/etc/inittab", 0o644, INITTAB.as_bytes())?;
    w.file("rootfs/etc/init.d/rcS", 0o755, RCS.as_bytes())?;
    w.file("rootfs/etc/init.d/console", 0o755, CONSOLE.as_bytes())?;
    w.file(
        "rootfs/usr/share/udhcpc/default.script",
        0o755,
        UDHCPC_SCRIPT.as_bytes(),
    )?;
    w.file(
        "rootfs/etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n",
    )?;
    w.file("rootfs/etc/group", 0o644, b"root:x:0:\n")?;
    w.file("rootfs/etc/shadow", 0o600, b"root:*:19000:0:99999:7:::\n")?;
    w.file(
        "rootfs/etc/profile",
        0o644,
        b"export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1='\\h:\\w\\$ '\n",
    )?;
    w.file("rootfs/etc/hostname", 0o644, b"busybox\n")?;
    w.file("rootfs/etc/hosts", 0o644, b"127.0.0.1\tlocalhost\n")?;
    w.file("rootfs/etc/resolv.conf", 0o644, b"")?;
    w.finish()?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{Layout, Limits, scan};

    #[test]
    fn builds_a_scannable_image() {
        let bb = Path::new(DEFAULT_BUSYBOX);
        if !bb.exists() {
            panic!("{DEFAULT_BUSYBOX} is missing: install busybox-static (scripts/deps.sh)");
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("busybox.tar.gz");
        let md = build(bb, &out).unwrap();
        assert_eq!(md.properties["os"], "BusyBox");
        let size = std::fs::metadata(&out).unwrap().len();
        assert!(size < 4 << 20, "image is small: {size}");
        let reader = crate::compression::open(&out).unwrap();
        let s = scan(reader, Layout::Unified, &Limits::default()).unwrap();
        let parsed = ImageMetadata::parse(s.metadata.as_deref().unwrap()).unwrap();
        assert_eq!(parsed, md);
        assert!(s.templates.contains_key("hostname.tpl"));
        assert!(s.entries > 200);
    }
}
