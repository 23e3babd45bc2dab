//! `cargo xtask bench`, networking: a berthd of its own in a network namespace of its own
//! (so its bridges, rules and sysctls never reach the host), then
//!
//! - launch to "address acquired" (the instance's eth0 has an IPv4 address) for busybox
//!   and, when the main bench built one, Debian;
//! - density: `BERTH_BENCH_NET_INSTANCES` (default 1,000) networked busybox containers
//!   spread over four managed bridges (a Linux bridge takes at most 1,024 ports, a /24 has
//!   253 leases), how many got a lease, `berth list` of them, berthd's RSS.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A network namespace held by `sleep`, gone when dropped.
struct Netns(Child);

impl Netns {
    fn new() -> anyhow::Result<Netns> {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "infinity"])
            .spawn()
            .context("unshare --net")?;
        let ns = Netns(child);
        let own = std::fs::read_link("/proc/self/ns/net")?;
        while std::fs::read_link(ns.path()).ok().as_ref() == Some(&own) {
            std::thread::sleep(Duration::from_millis(2));
        }
        ns.command("ip", &["link", "set", "lo", "up"]).status()?;
        Ok(ns)
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path()))
            .arg("--")
            .arg(program)
            .args(args);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `berth args` against `dir`; its stdout.
pub(crate) fn berth(root: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    berth_with(root, dir, None, args)
}

/// The berth CLI against the daemon in `dir`, with its client configuration in `conf`
/// when given (remotes); its stdout, or its error.
pub(crate) fn berth_with(
    root: &Path,
    dir: &Path,
    conf: Option<&Path>,
    args: &[&str],
) -> anyhow::Result<String> {
    let mut cmd = Command::new(root.join("target/release/berth"));
    cmd.args(args).env("BERTH_DIR", dir).stdin(Stdio::null());
    if let Some(conf) = conf {
        cmd.env("BERTH_CONF", conf)
            .env_remove("BERTH_SOCKET")
            .env_remove("BERTH_PROJECT");
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "berth {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Milliseconds from `berth launch` until the instance's eth0 has an IPv4 address.
fn launch_to_address(
    root: &Path,
    dir: &Path,
    image: &str,
    name: &str,
    extra: &[&str],
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut args = vec!["launch", image, name];
    args.extend(extra);
    berth(root, dir, &args)?;
    let deadline = t + Duration::from_secs(60);
    let state = format!("/1.0/instances/{name}/state");
    loop {
        let s = berth(root, dir, &["query", &state])?;
        let v: serde_json::Value = serde_json::from_str(&s).unwrap_or_default();
        let leased = v["network"]["eth0"]["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["family"] == "inet"));
        if leased {
            return Ok(t.elapsed().as_secs_f64() * 1000.0);
        }
        if Instant::now() > deadline {
            bail!("{name} got no address within 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The figures, as (what, value).
pub fn run(
    root: &Path,
    busybox: &Path,
    debian: Option<&Path>,
) -> anyhow::Result<Vec<(String, String)>> {
    // What the previous figures wrote (a 1 GiB transfer, say) goes to disk first: the
    // launch-to-address figures measure berth, not the previous phase's writeback.
    Command::new("sync").status()?;
    std::thread::sleep(Duration::from_secs(2));
    with_daemon(root, "berth-bench-net-", |dir, pid| {
        measure(root, dir, busybox, debian, pid)
    })
}

/// Runs `f` against a release berthd in a fresh directory and a network namespace of
/// its own (`f` gets the directory and berthd's pid), then takes everything away.
pub(crate) fn with_daemon<T>(
    root: &Path,
    prefix: &str,
    f: impl FnOnce(&Path, u32) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let ns = Netns::new()?;
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    let mut daemon = ns
        .command(root.join("target/release/berthd"), &[])
        .arg("--dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let socket = dir.path().join("unix.socket");
    let up = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if Instant::now() > up {
            bail!("berthd did not come up");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let result = f(dir.path(), daemon.id());
    // Containers first (their pairs go with them), then berthd, dnsmasq and lxcfs; the
    // namespace takes the bridges and rules with it.
    let _ = berth(root, dir.path(), &["list", "-c", "n", "-f", "csv"]).map(|names| {
        let names: Vec<&str> = names.lines().filter(|n| !n.is_empty()).collect();
        for chunk in names.chunks(200) {
            let mut args = vec!["delete", "-f"];
            args.extend(chunk);
            let _ = berth(root, dir.path(), &args);
        }
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    let needle = dir.path().display().to_string();
    let _ = Command::new("pkill")
        .args(["-f", &format!("dnsmasq.*{needle}")])
        .status();
    let _ = Command::new("pkill")
        .args(["-f", &format!("lxcfs.*{needle}")])
        .status();
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("umount")
        .arg("-l")
        .arg(dir.path().join("lxcfs"))
        .status();
    result
}

fn measure(
    root: &Path,
    dir: &Path,
    busybox: &Path,
    debian: Option<&Path>,
    pid: u32,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = vec![];
    berth(
        root,
        dir,
        &[
            "image",
            "import",
            &busybox.display().to_string(),
            "--alias",
            "bb",
        ],
    )?;
    for i in 0..4 {
        berth(
            root,
            dir,
            &[
                "network",
                "create",
                &format!("bench{i}"),
                "ipv6.address=none",
            ],
        )?;
        berth(root, dir, &["profile", "create", &format!("on{i}")])?;
        berth(
            root,
            dir,
            &[
                "network",
                "attach-profile",
                &format!("bench{i}"),
                &format!("on{i}"),
                "eth0",
                "eth0",
            ],
        )?;
    }
    let mut busy = vec![];
    for i in 0..5 {
        let name = format!("a{i}");
        busy.push(launch_to_address(
            root,
            dir,
            "bb",
            &name,
            &["-p", "default", "-p", "on0"],
        )?);
        berth(root, dir, &["delete", "-f", &name])?;
    }
    out.push((
        "busybox launch to address acquired (DHCP), median of 5".to_owned(),
        format!("{:.1} ms", median(busy)),
    ));
    if let Some(debian) = debian {
        berth(
            root,
            dir,
            &[
                "image",
                "import",
                &debian.display().to_string(),
                "--alias",
                "deb",
            ],
        )?;
        let mut deb = vec![];
        for i in 0..3 {
            let name = format!("d{i}");
            deb.push(launch_to_address(
                root,
                dir,
                "deb",
                &name,
                &["-p", "default", "-p", "on0"],
            )?);
            berth(root, dir, &["delete", "-f", &name])?;
        }
        out.push((
            "Debian launch to address acquired (systemd-networkd DHCP), median of 3".to_owned(),
            format!("{:.1} ms", median(deb)),
        ));
    }
    let many: usize = std::env::var("BERTH_BENCH_NET_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let t = Instant::now();
    for i in 0..many {
        let profile = format!("on{}", i % 4);
        berth(
            root,
            dir,
            &[
                "launch",
                "bb",
                &format!("n{i}"),
                "-p",
                "default",
                "-p",
                &profile,
            ],
        )?;
    }
    out.push((
        format!("{many} networked busybox containers launched (4 bridges)"),
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    ));
    // Leases come within seconds; wait for them (or two minutes).
    let deadline = Instant::now() + Duration::from_secs(120);
    let leased = loop {
        let mut n = 0;
        for i in 0..4 {
            let leases = berth(
                root,
                dir,
                &["network", "list-leases", &format!("bench{i}"), "-f", "csv"],
            )?;
            n += leases.lines().filter(|l| l.ends_with("DYNAMIC")).count();
        }
        if n >= many || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    out.push(("of them with a DHCP lease".to_owned(), leased.to_string()));
    // The list a user runs among running containers, not among a thousand new links the
    // kernel is still setting up.
    std::thread::sleep(Duration::from_secs(10));
    let list: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            berth(root, dir, &["list"]).map(|_| t.elapsed().as_secs_f64() * 1000.0)
        })
        .collect::<anyhow::Result<_>>()?;
    out.push((
        format!("list with {many} networked containers (10 s after the last lease), median of 5"),
        format!("{:.1} ms", median(list)),
    ));
    out.push((
        format!("berthd RSS with {many} networked containers"),
        format!("{:.1} MiB", crate::bench::rss_kib(pid)? as f64 / 1024.0),
    ));
    Ok(out)
}
