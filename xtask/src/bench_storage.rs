//! `cargo xtask bench storage` (and part of `cargo xtask bench`): storage pools.
//!
//! For a `dir` pool and a `btrfs` pool on a loop file, and the busybox and (when built)
//! the Debian image: the time `berth launch` takes once the image is unpacked on the pool
//! (the median of three), and the time of a snapshot and of a copy of a stopped instance
//! holding 64 MiB and 2 GiB of data; the rate of `berth export` (uncompressed, to a file)
//! and `berth import` of a container of each image and of one holding 1 GiB (on btrfs
//! also as an optimized backup: send streams), with berthd's resident memory before and at its highest during the transfer; and on
//! btrfs what a `statfs` costs inside a container with a sized root (answered by the syscall
//! proxy) beyond one without. Nothing is asserted; the pool and its loop file go at the end.

use std::path::Path;
use std::time::{Duration, Instant};

/// The figures, each as (what, value).
pub fn run(
    root: &Path,
    busybox: &Path,
    debian: Option<&Path>,
) -> anyhow::Result<Vec<(String, String)>> {
    let berthd = root.join("target/release/berthd");
    let dir = tempfile::Builder::new()
        .prefix("berth-bench-storage-")
        .tempdir()?;
    let d = dir.path();
    let daemon = crate::bench::Daemon::start(&berthd, d)?;
    let pid = daemon.pid();
    let berth = |args: &[&str]| crate::bench_net::berth_with(root, d, None, args);
    let mut images = vec![("busybox", busybox)];
    if let Some(deb) = debian {
        images.push(("Debian", deb));
    }
    for (name, file) in &images {
        berth(&[
            "image",
            "import",
            &file.display().to_string(),
            "--alias",
            &name.to_lowercase(),
        ])?;
    }
    berth(&["storage", "create", "bt", "btrfs", "size=12GiB"])?;
    let mut figures = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        for pool in ["default", "bt"] {
            let driver = if pool == "bt" { "btrfs" } else { "dir" };
            for (name, _) in &images {
                let alias = name.to_lowercase();
                let ms = launches(d, &berth, pool, &alias)?;
                figures.push((
                    format!("launch, {name} image, {driver} pool (median of 3, image unpacked)"),
                    format!("{ms:.0} ms"),
                ));
            }
            for (label, mib) in [("64 MiB", 64u64), ("2 GiB", 2048)] {
                let (snap, copy) = snapshot_and_copy(d, &berth, pool, mib)?;
                figures.push((
                    format!("snapshot, busybox container holding {label}, {driver} pool"),
                    format!("{snap:.0} ms"),
                ));
                figures.push((
                    format!("copy, busybox container holding {label}, {driver} pool"),
                    format!("{copy:.0} ms"),
                ));
            }
            // After the snapshots and copies: deleting a gigabyte keeps btrfs busy a while.
            let mut loads: Vec<(String, String, u64, bool)> = images
                .iter()
                .map(|(name, _)| (format!("{name} container"), name.to_lowercase(), 0, false))
                .collect();
            let big = "busybox container holding 1 GiB";
            loads.push((big.to_owned(), "busybox".to_owned(), 1024, false));
            if pool == "bt" {
                // btrfs send streams (each sent twice: once to size its tar member).
                loads.push((
                    format!("{big}, optimized"),
                    "busybox".to_owned(),
                    1024,
                    true,
                ));
            }
            for (label, alias, mib, optimized) in &loads {
                let what = Contents {
                    alias,
                    mib: *mib,
                    optimized: *optimized,
                };
                let t = transfer(root, d, &berth, pid, pool, what)?;
                t.push_to(&mut figures, label, driver);
            }
            if pool == "bt" {
                let us = statfs_cost(&berth)?;
                figures.push((
                    "statfs inside, sized root on btrfs (syscall proxy), beyond unsized".to_owned(),
                    format!("{us:.0} µs per call"),
                ));
            }
        }
        Ok(())
    })();
    let _ = berth(&["storage", "delete", "bt"]);
    result?;
    Ok(figures)
}

/// The µs a `statfs` costs in a busybox container whose root has a size on `bt` beyond
/// one in a container without: the time of 2,000 `stat -f /` in each (median of three).
fn statfs_cost(berth: &dyn Fn(&[&str]) -> anyhow::Result<String>) -> anyhow::Result<f64> {
    berth(&["init", "busybox", "sf-sized", "-s", "bt"])?;
    berth(&["config", "device", "set", "sf-sized", "root", "size=1GiB"])?;
    berth(&["launch", "busybox", "sf-plain", "-s", "bt"])?;
    berth(&["start", "sf-sized"])?;
    const N: u32 = 2000;
    let script = format!("i=0; while [ $i -lt {N} ]; do stat -f / >/dev/null; i=$((i+1)); done");
    let timed = |name: &str| -> anyhow::Result<f64> {
        let mut runs = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            berth(&["exec", name, "--", "sh", "-c", &script])?;
            runs.push(t.elapsed().as_secs_f64());
        }
        runs.sort_by(f64::total_cmp);
        Ok(runs[1])
    };
    let result = timed("sf-sized").and_then(|s| Ok((s - timed("sf-plain")?) * 1e6 / f64::from(N)));
    berth(&["delete", "-f", "sf-sized", "sf-plain"])?;
    result
}

fn millis(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// One launch to unpack the image on `pool`, then three timed; the median, in ms.
fn launches(
    dir: &Path,
    berth: &dyn Fn(&[&str]) -> anyhow::Result<String>,
    pool: &str,
    alias: &str,
) -> anyhow::Result<f64> {
    let first = format!("warm-{alias}-{pool}");
    berth(&["launch", alias, &first, "-s", pool])?;
    // The unpacked image (the spare volume) is made in the background after a launch.
    let pool_dir = dir.join("storage-pools").join(pool).join("containers");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_dir(&pool_dir)?.flatten().any(|e| {
        e.file_name().to_string_lossy().starts_with(".spare-")
            && !e.file_name().to_string_lossy().ends_with(".tmp")
    }) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the image was never unpacked on {pool}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut times = Vec::new();
    let mut names = vec![first];
    for i in 0..3 {
        let name = format!("l{i}-{alias}-{pool}");
        let t = Instant::now();
        berth(&["launch", alias, &name, "-s", pool])?;
        times.push(millis(t));
        names.push(name);
        // On dir the next launch would take a spare still being refilled: wait for it.
        std::thread::sleep(Duration::from_secs(2));
    }
    let mut args = vec!["delete", "-f"];
    args.extend(names.iter().map(String::as_str));
    berth(&args)?;
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

/// A stopped busybox container on `pool` given `mib` MiB of data; the ms of a snapshot
/// and of a copy.
fn snapshot_and_copy(
    dir: &Path,
    berth: &dyn Fn(&[&str]) -> anyhow::Result<String>,
    pool: &str,
    mib: u64,
) -> anyhow::Result<(f64, f64)> {
    let name = format!("data-{mib}-{pool}");
    stopped_with_data(dir, berth, pool, "busybox", &name, mib)?;
    let t = Instant::now();
    berth(&["snapshot", "create", &name, "s1"])?;
    let snap = millis(t);
    let copy_name = format!("{name}-copy");
    let t = Instant::now();
    berth(&["copy", &name, &copy_name])?;
    let copy = millis(t);
    berth(&["delete", &name, &copy_name])?;
    Ok((snap, copy))
}

/// What an export and an import of one container measured.
struct Transfer {
    bytes: u64,
    export_s: f64,
    import_s: f64,
    rss_before_kib: u64,
    rss_peak_kib: u64,
}

impl Transfer {
    fn push_to(&self, figures: &mut Vec<(String, String)>, what: &str, driver: &str) {
        let mb = self.bytes as f64 / 1e6;
        figures.push((
            format!("export, {what}, {driver} pool ({mb:.0} MB, uncompressed)"),
            format!("{:.0} MB/s", mb / self.export_s),
        ));
        figures.push((
            format!("import, {what}, {driver} pool"),
            format!("{:.0} MB/s", mb / self.import_s),
        ));
        figures.push((
            format!("berthd RSS, export and import of the {what}, {driver} pool"),
            format!(
                "{} MiB before, {} MiB at most",
                self.rss_before_kib / 1024,
                self.rss_peak_kib / 1024
            ),
        ));
    }
}

/// Runs `berth ARGS` to its end while sampling berthd's resident memory; the seconds it
/// took and the highest sample.
fn timed_sampling(root: &Path, dir: &Path, pid: u32, args: &[&str]) -> anyhow::Result<(f64, u64)> {
    let t = Instant::now();
    let mut child = std::process::Command::new(root.join("target/release/berth"))
        .args(args)
        .env("BERTH_DIR", dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut peak = 0;
    loop {
        if let Ok(kib) = crate::bench::rss_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "berth {} failed", args.join(" "));
            return Ok((t.elapsed().as_secs_f64(), peak));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a transferred container is and how it goes.
#[derive(Clone, Copy)]
struct Contents<'a> {
    /// Its image.
    alias: &'a str,
    /// The MiB of data it holds besides.
    mib: u64,
    /// Whether it goes as an optimized backup (the driver's streams).
    optimized: bool,
}

/// A stopped container of image `alias` on `pool` (given `mib` MiB of data besides),
/// exported to a file, deleted and imported back.
fn transfer(
    root: &Path,
    dir: &Path,
    berth: &dyn Fn(&[&str]) -> anyhow::Result<String>,
    pid: u32,
    pool: &str,
    what: Contents<'_>,
) -> anyhow::Result<Transfer> {
    let Contents {
        alias,
        mib,
        optimized,
    } = what;
    let name = format!("x-{alias}-{mib}-{pool}");
    stopped_with_data(dir, berth, pool, alias, &name, mib)?;
    let file = dir.join(format!("{name}.tar"));
    let path = file.display().to_string();
    let rss_before_kib = crate::bench::rss_kib(pid)?;
    let mut args = vec!["export", &name, &path, "--compression", "none"];
    if optimized {
        args.push("--optimized-storage");
    }
    let (export_s, peak_out) = timed_sampling(root, dir, pid, &args)?;
    let bytes = std::fs::metadata(&file)?.len();
    berth(&["delete", &name])?;
    let (import_s, peak_in) = timed_sampling(root, dir, pid, &["import", &path, "-s", pool])?;
    berth(&["delete", &name])?;
    let _ = std::fs::remove_file(&file);
    Ok(Transfer {
        bytes,
        export_s,
        import_s,
        rss_before_kib,
        rss_peak_kib: peak_out.max(peak_in),
    })
}

/// A stopped container `name` of image `alias` on `pool`, given `mib` MiB of random data
/// (`/data`), synced to disk.
fn stopped_with_data(
    dir: &Path,
    berth: &dyn Fn(&[&str]) -> anyhow::Result<String>,
    pool: &str,
    alias: &str,
    name: &str,
    mib: u64,
) -> anyhow::Result<()> {
    berth(&["init", alias, name, "-s", pool])?;
    if mib > 0 {
        let data = dir
            .join("storage-pools")
            .join(pool)
            .join("containers")
            .join(name)
            .join("rootfs/data");
        let status = std::process::Command::new("dd")
            .args(["if=/dev/urandom", "bs=1M", "status=none"])
            .arg(format!("of={}", data.display()))
            .arg(format!("count={mib}"))
            .status()?;
        anyhow::ensure!(status.success(), "dd failed");
    }
    let _ = std::process::Command::new("sync").status();
    Ok(())
}
