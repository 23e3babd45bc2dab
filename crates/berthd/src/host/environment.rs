//! The `environment` block of `GET /1.0`, computed once at start-up.

use std::path::Path;

use berth_api::ServerEnvironment;

/// Name and version of the host OS from `etc/os-release` under `root`.
fn os_release(root: &Path) -> (String, String) {
    let text = std::fs::read_to_string(root.join("etc/os-release")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    (field("NAME"), field("VERSION_ID"))
}

/// The architectures containers can run on a host of `machine`.
pub fn architectures(machine: &str) -> Vec<String> {
    let list: &[&str] = match machine {
        "x86_64" => &["x86_64", "i686"],
        "aarch64" => &["aarch64", "armv7l"],
        "ppc64le" => &["ppc64le"],
        "s390x" => &["s390x"],
        other => return vec![other.to_owned()],
    };
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The server environment of this host.
pub fn read(root: &Path) -> ServerEnvironment {
    let uname = rustix::system::uname();
    let machine = uname.machine().to_string_lossy().into_owned();
    let (os_name, os_version) = os_release(root);
    ServerEnvironment {
        addresses: vec![],
        architectures: architectures(&machine),
        driver: "lxc".to_owned(),
        // Filled by the daemon from liblxc.
        driver_version: String::new(),
        firewall: "nftables".to_owned(),
        kernel: uname.sysname().to_string_lossy().into_owned(),
        kernel_architecture: machine,
        kernel_version: uname.release().to_string_lossy().into_owned(),
        os_name,
        os_version,
        project: berth_api::DEFAULT_PROJECT.to_owned(),
        server: "berth".to_owned(),
        server_clustered: false,
        server_event_mode: "full-mesh".to_owned(),
        server_name: uname.nodename().to_string_lossy().into_owned(),
        server_pid: std::process::id(),
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_os_release() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/os-release"),
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n",
        )
        .unwrap();
        let env = read(dir.path());
        assert_eq!(env.os_name, "Debian GNU/Linux");
        assert_eq!(env.os_version, "12");
        assert_eq!(env.server, "berth");
        assert_eq!(env.server_pid, std::process::id());
        assert_eq!(architectures("x86_64"), vec!["x86_64", "i686"]);
    }
}
