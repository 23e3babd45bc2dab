//! `cargo xtask bench`: measures release builds of berth on this machine.
//!
//! - `GET /1.0` over the unix socket: 4 concurrent keep-alive clients for a fixed time;
//!   requests per second, p50 and p99 latency.
//! - berthd's resident memory when idle and after the load.
//! - images, the container lifecycle, files (see each function), networking
//!   (`bench_net.rs`), what goes between hosts (`bench_remote.rs`) and storage pools
//!   (`bench_storage.rs`).
//!
//! Figures are printed, never asserted: tests do not depend on the machine's speed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

const CLIENTS: usize = 4;
const DURATION: Duration = Duration::from_secs(5);

/// Builds the release binaries the benchmarks run.
pub(crate) fn build_release(root: &Path) -> anyhow::Result<()> {
    crate::run(
        root,
        "cargo",
        &["build", "--release", "--workspace", "--bins"],
    )
}

/// `cargo xtask bench net`: the networking figures alone, on a host the other figures
/// have not just loaded (busybox built here; Debian when the e2e suite has built it).
pub fn run_net(root: &Path) -> anyhow::Result<()> {
    alone(root, "networking benchmarks", crate::bench_net::run)
}

/// A set of benchmarks: the root, the busybox image, the Debian image if built; the
/// figures, each as (what, value).
type Figures = fn(&Path, &Path, Option<&Path>) -> anyhow::Result<Vec<(String, String)>>;

/// Builds the release binaries and the busybox image, then prints the figures `bench`
/// gives for it and the Debian image (when the e2e suite has built it).
fn alone(root: &Path, title: &str, bench: Figures) -> anyhow::Result<()> {
    build_release(root)?;
    let work = tempfile::Builder::new().prefix("berth-bench-").tempdir()?;
    let busybox = work.path().join("busybox.tar.gz");
    crate::run(
        root,
        &root.join("target/release/berth").display().to_string(),
        &[
            "image",
            "build",
            "busybox",
            "-o",
            &busybox.display().to_string(),
        ],
    )?;
    let debian = root.join("target/debug/e2e-debian.tar.gz");
    let figures = bench(root, &busybox, debian.exists().then_some(debian.as_path()))?;
    println!(
        "berth {title} (release build, {} CPUs)",
        std::thread::available_parallelism()?
    );
    for (what, value) in figures {
        println!("{what}: {value}");
    }
    Ok(())
}

/// `cargo xtask bench storage`: the storage pools' figures alone (see `bench_storage.rs`).
pub fn run_storage(root: &Path) -> anyhow::Result<()> {
    alone(root, "storage", crate::bench_storage::run)
}

/// `cargo xtask bench remote`: what goes between hosts alone (see `bench_remote.rs`).
pub fn run_remote(root: &Path) -> anyhow::Result<()> {
    alone(root, "between hosts", crate::bench_remote::run)
}

pub fn run(root: &Path) -> anyhow::Result<()> {
    build_release(root)?;
    let berthd = root.join("target/release/berthd");
    let dir = tempfile::Builder::new().prefix("berth-bench-").tempdir()?;
    let mut daemon = Daemon::start(&berthd, dir.path())?;
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_kib(daemon.pid())?;

    let socket = dir.path().join("unix.socket");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(load(&socket))?;
    let loaded = rss_kib(daemon.pid())?;
    let kept = tempfile::Builder::new()
        .prefix("berth-bench-kept-")
        .tempdir()?;
    let imports = images(root, dir.path(), daemon.pid(), kept.path())?;
    let containers = instances(root, dir.path(), daemon.pid())?;
    let transfers = files(root, dir.path(), daemon.pid())?;
    daemon.stop();
    let debian = kept.path().join("debian.tar.gz");
    let networking = crate::bench_net::run(
        root,
        &kept.path().join("busybox.tar.gz"),
        debian.exists().then_some(debian.as_path()),
    )?;
    let remote = crate::bench_remote::run(
        root,
        &kept.path().join("busybox.tar.gz"),
        debian.exists().then_some(debian.as_path()),
    )?;
    let storage = crate::bench_storage::run(
        root,
        &kept.path().join("busybox.tar.gz"),
        debian.exists().then_some(debian.as_path()),
    )?;

    println!(
        "berth benchmarks (release build, {} CPUs)",
        std::thread::available_parallelism()?
    );
    println!(
        "GET /1.0 over the unix socket, {CLIENTS} clients, {} s: {:.0} requests/s, p50 {:.3} ms, p99 {:.3} ms",
        DURATION.as_secs(),
        result.requests as f64 / result.elapsed.as_secs_f64(),
        result.percentile(50.0),
        result.percentile(99.0),
    );
    println!("berthd RSS idle: {:.1} MiB", idle as f64 / 1024.0);
    println!(
        "berthd RSS after the load: {:.1} MiB",
        loaded as f64 / 1024.0
    );
    for (name, size, secs, peak) in imports {
        println!(
            "image import, {name} ({:.1} MiB): {:.3} s, berthd peak RSS {:.1} MiB",
            size as f64 / (1 << 20) as f64,
            secs,
            peak as f64 / 1024.0
        );
    }
    for (what, value) in containers
        .into_iter()
        .chain(transfers)
        .chain(networking)
        .chain(remote)
        .chain(storage)
    {
        println!("{what}: {value}");
    }
    Ok(())
}

/// Runs the berth CLI as a user would (stdin and stdout to nothing); its wall time in
/// seconds, or its error.
fn timed(berth: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = Command::new(berth)
        .args(args)
        .env("BERTH_DIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "berth {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Times the busybox container lifecycle from the CLI, as a user would, then `list` and
/// berthd's RSS with many containers running, and each container's monitor PSS.
fn instances(root: &Path, dir: &Path, pid: u32) -> anyhow::Result<Vec<(String, String)>> {
    let berth = root.join("target/release/berth");
    let run = |args: &[&str]| timed(&berth, dir, args).map(|secs| secs * 1000.0);
    let mut out = vec![];
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // The busybox image was imported by `images` under its fingerprint; give it a name.
    let fp = String::from_utf8_lossy(
        &Command::new(&berth)
            .args(["image", "list", "-f", "csv"])
            .env("BERTH_DIR", dir)
            .output()?
            .stdout,
    )
    .lines()
    .find(|l| l.contains("BusyBox"))
    .and_then(|l| l.split(',').nth(1))
    .unwrap_or_default()
    .to_owned();
    run(&["image", "alias", "create", "bb", &fp])?;
    let (mut launch, mut stop, mut start, mut exec, mut force, mut delete, mut restart) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..5 {
        let name = format!("b{i}");
        launch.push(run(&["launch", "bb", &name])?);
        exec.push(run(&["exec", &name, "--", "true"])?);
        restart.push(run(&["restart", "-f", &name])?);
        force.push(run(&["stop", "-f", &name])?);
        start.push(run(&["start", &name])?);
        stop.push(run(&["stop", &name])?);
        delete.push(run(&["delete", &name])?);
    }
    for (what, v) in [
        ("launch to RUNNING", launch),
        ("start", start),
        ("stop (clean; busybox init takes ~2 s)", stop),
        ("stop --force", force),
        ("restart --force", restart),
        ("exec true", exec),
        ("delete", delete),
    ] {
        out.push((
            format!("busybox {what}, median of 5"),
            format!("{:.1} ms", median(v)),
        ));
    }
    // Checkpoint and restore with CRIU (a checkpointable container, console keeper and
    // all); the start restores the saved state.
    let (mut dump, mut restore) = (vec![], vec![]);
    run(&["launch", "bb", "ck", "-c", "migration.stateful=true"])?;
    for _ in 0..5 {
        dump.push(run(&["stop", "--stateful", "ck"])?);
        restore.push(run(&["start", "ck"])?);
    }
    run(&["delete", "-f", "ck"])?;
    for (what, v) in [
        ("stop --stateful (CRIU dump)", dump),
        ("start from a saved state (CRIU restore)", restore),
    ] {
        out.push((
            format!("busybox {what}, median of 5"),
            format!("{:.1} ms", median(v)),
        ));
    }
    let many: usize = std::env::var("BERTH_BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    for i in 0..many {
        let name = format!("m{i}");
        run(&["launch", "bb", &name])?;
        if i + 1 == 1 || i + 1 == 50 || i + 1 == many {
            let t = median(
                (0..3)
                    .map(|_| run(&["list"]))
                    .collect::<anyhow::Result<Vec<_>>>()?,
            );
            out.push((
                format!("list with {} running containers", i + 1),
                format!("{t:.1} ms"),
            ));
        }
    }
    out.push((
        format!("berthd RSS with {many} running containers"),
        format!("{:.1} MiB", rss_kib(pid)? as f64 / 1024.0),
    ));
    // Each container's host-side cost: its liblxc monitor (the parent of its init).
    let state = Command::new(&berth)
        .args(["query", "/1.0/instances/m0/state"])
        .env("BERTH_DIR", dir)
        .output()?;
    let init: u32 = String::from_utf8_lossy(&state.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("\"pid\": "))
        .and_then(|v| v.trim_end_matches(',').parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap_or_default();
    let monitor: u32 = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let pss = std::fs::read_to_string(format!("/proc/{monitor}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    out.push((
        "one container's liblxc monitor PSS".to_owned(),
        format!("{:.2} MiB", pss as f64 / 1024.0),
    ));
    for i in 0..many {
        run(&["delete", "-f", &format!("m{i}")])?;
    }
    Ok(out)
}

/// Pushes a 1 GiB file into a busybox container and pulls it back with `berth file`, as a
/// user would: throughput of each, and berthd's peak RSS after them (it must not grow with
/// the file).
fn files(root: &Path, dir: &Path, pid: u32) -> anyhow::Result<Vec<(String, String)>> {
    let berth = root.join("target/release/berth");
    let run = |args: &[&str]| timed(&berth, dir, args);
    let work = tempfile::Builder::new()
        .prefix("berth-bench-files-")
        .tempdir()?;
    let big = work.path().join("big.bin");
    let status = Command::new("dd")
        .arg("if=/dev/urandom")
        .arg(format!("of={}", big.display()))
        .args(["bs=1M", "count=1024", "status=none"])
        .status()?;
    if !status.success() {
        bail!("dd failed");
    }
    let size = std::fs::metadata(&big)?.len() as f64;
    run(&["launch", "bb", "files-bench"])?;
    let before = hwm_kib(pid)?;
    let push = run(&[
        "file",
        "push",
        big.to_str().unwrap_or_default(),
        "files-bench/root/big.bin",
    ])?;
    // The push leaves a GiB of dirty pages; written back during the pull they would make
    // the pull measure this disk rather than berth.
    Command::new("sync").status()?;
    let back = work.path().join("back.bin");
    let pull = run(&[
        "file",
        "pull",
        "files-bench/root/big.bin",
        back.to_str().unwrap_or_default(),
    ])?;
    let after = hwm_kib(pid)?;
    if std::fs::metadata(&back)?.len() != std::fs::metadata(&big)?.len() {
        bail!("the pulled file differs in size");
    }
    run(&["delete", "-f", "files-bench"])?;
    let mbs = |secs: f64| size / secs / 1e6;
    Ok(vec![
        (
            "file push 1 GiB".to_owned(),
            format!("{push:.2} s, {:.0} MB/s", mbs(push)),
        ),
        (
            "file pull 1 GiB".to_owned(),
            format!("{pull:.2} s, {:.0} MB/s", mbs(pull)),
        ),
        (
            "berthd peak RSS before and after the transfers".to_owned(),
            format!(
                "{:.1} MiB, {:.1} MiB",
                before as f64 / 1024.0,
                after as f64 / 1024.0
            ),
        ),
    ])
}

/// Imports the busybox image, then a 512 MiB one, from the CLI as a user would; reports the
/// time and berthd's peak RSS (VmHWM) after each, to show memory does not grow with size.
/// Imports busybox, a 512 MiB image and (when debootstrap can reach its mirror) Debian;
/// the busybox and Debian tarballs are kept in `kept` for the networking figures.
fn images(
    root: &Path,
    dir: &Path,
    pid: u32,
    kept: &Path,
) -> anyhow::Result<Vec<(String, u64, f64, u64)>> {
    let berth = root.join("target/release/berth");
    let work = tempfile::Builder::new()
        .prefix("berth-bench-images-")
        .tempdir()?;
    let busybox = work.path().join("busybox.tar.gz");
    let status = Command::new(&berth)
        .args(["image", "build", "busybox", "-o"])
        .arg(&busybox)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("berth image build busybox failed");
    }
    // A large image of incompressible data, as an uncompressed tarball.
    let big_root = work.path().join("big");
    std::fs::create_dir_all(big_root.join("rootfs"))?;
    std::fs::write(
        big_root.join("metadata.yaml"),
        "architecture: x86_64\ncreation_date: 1700000000\n",
    )?;
    let status = Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=512", "status=none"])
        .arg(format!("of={}", big_root.join("rootfs/blob").display()))
        .status()?;
    if !status.success() {
        bail!("dd failed");
    }
    let big = work.path().join("big.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&big)
        .arg("-C")
        .arg(&big_root)
        .args(["metadata.yaml", "rootfs"])
        .status()?;
    if !status.success() {
        bail!("tar failed");
    }
    // A Debian image, bootstrapped from the Debian mirror debootstrap uses (network needed).
    let debian = work.path().join("debian.tar.gz");
    let status = Command::new(&berth)
        .args(["image", "build", "debian", "-o"])
        .arg(&debian)
        .stdout(Stdio::null())
        .status()?;
    let mut files = vec![
        ("busybox", busybox.clone()),
        ("512 MiB random", big.clone()),
    ];
    if status.success() {
        files.push(("Debian bookworm", debian.clone()));
    } else {
        eprintln!("(berth image build debian failed: no Debian image import figure)");
    }
    std::fs::copy(&busybox, kept.join("busybox.tar.gz"))?;
    if status.success() {
        std::fs::copy(&debian, kept.join("debian.tar.gz"))?;
    }
    let mut out = vec![];
    for (name, file) in &files {
        let size = std::fs::metadata(file)?.len();
        let t = Instant::now();
        let status = Command::new(&berth)
            .args(["image", "import"])
            .arg(file)
            .env("BERTH_DIR", dir)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("berth image import {name} failed");
        }
        out.push((
            (*name).to_owned(),
            size,
            t.elapsed().as_secs_f64(),
            hwm_kib(pid)?,
        ));
    }
    Ok(out)
}

fn hwm_kib(pid: u32) -> anyhow::Result<u64> {
    proc_status_kib(pid, "VmHWM:")
}

pub(crate) struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Daemon {
    pub(crate) fn start(berthd: &Path, dir: &Path) -> anyhow::Result<Daemon> {
        let child = Command::new(berthd)
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("failed to start berthd")?;
        let socket = dir.join("unix.socket");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if Instant::now() > deadline {
                bail!("berthd did not come up");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Daemon {
            child,
            dir: dir.to_owned(),
        })
    }

    /// The daemon's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // So does its syscall proxy (berthd, which would start another, is gone first).
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("syscalls.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        // The lxcfs berthd started for its containers outlives it: stop it (it unmounts
        // itself) before the state directory goes.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("lxcfs.pid")) {
            let pid = pid.trim().to_owned();
            let _ = Command::new("kill").arg(&pid).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            let mount = format!(" {} ", self.dir.join("lxcfs").display());
            while std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.contains(&mount))
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    proc_status_kib(pid, "VmRSS:")
}

/// A `kB` field of /proc/PID/status.
fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// A load's outcome: its requests, how long it ran, each request's latency (sorted).
pub(crate) struct LoadResult {
    pub(crate) requests: usize,
    pub(crate) elapsed: Duration,
    pub(crate) latencies_us: Vec<u32>,
}

impl LoadResult {
    /// The `p`th percentile latency, in milliseconds.
    pub(crate) fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let idx = ((p / 100.0) * (self.latencies_us.len() - 1) as f64).round() as usize;
        f64::from(self.latencies_us[idx]) / 1000.0
    }
}

async fn load(socket: &Path) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let deadline = start + DURATION;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let socket = socket.to_path_buf();
        tasks.push(tokio::spawn(async move { client(&socket, deadline).await }));
    }
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await??);
    }
    let elapsed = start.elapsed();
    latencies_us.sort_unstable();
    Ok(LoadResult {
        requests: latencies_us.len(),
        elapsed,
        latencies_us,
    })
}

/// One keep-alive client over the unix socket.
async fn client(socket: &Path, deadline: Instant) -> anyhow::Result<Vec<u32>> {
    keep_alive(UnixStream::connect(socket).await?, "unix.socket", deadline).await
}

/// One keep-alive client sending `GET /1.0` back to back over `stream` until `deadline`;
/// each request's latency in microseconds.
pub(crate) async fn keep_alive<S>(
    stream: S,
    host: &str,
    deadline: Instant,
) -> anyhow::Result<Vec<u32>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut latencies = Vec::with_capacity(100_000);
    while Instant::now() < deadline {
        let req = hyper::Request::get("/1.0")
            .header(hyper::header::HOST, host)
            .body(Empty::<Bytes>::new())?;
        let t = Instant::now();
        let resp = sender.send_request(req).await?;
        if !resp.status().is_success() {
            bail!("GET /1.0 returned {}", resp.status());
        }
        resp.into_body().collect().await?;
        latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    Ok(latencies)
}
