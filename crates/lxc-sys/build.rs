//! Links liblxc and checks that the installed version is the 5.0 series the committed
//! bindings were generated from.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let version = Command::new("pkg-config")
        .args(["--modversion", "lxc"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match version.as_deref() {
        Some(v) if v.starts_with("5.0.") => {}
        Some(v) => panic!("liblxc {v} found, but berth's bindings are for liblxc 5.0"),
        None => panic!(
            "liblxc 5.0 development files not found: install lxc-dev and pkg-config (scripts/deps.sh)"
        ),
    }
    println!("cargo:rustc-link-lib=lxc");
}
