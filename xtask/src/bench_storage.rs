//! `cargo xtask bench storage` (and part of `cargo xtask bench`): storage pools.
//!
//! For a `dir` pool and a `btrfs` pool on a loop file, and the busybox and (when built)
//! the Debian image: the time `berth launch` takes once the image is unpacked on the pool
//! (the median of three), and the time of a snapshot and of a copy of a stopped instance
//! holding 64 MiB and 2 GiB of data. Nothing is asserted; the pool and its loop file go
//! at the end.

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
    let _daemon = crate::bench::Daemon::start(&berthd, d)?;
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
        }
        Ok(())
    })();
    let _ = berth(&["storage", "delete", "bt"]);
    result?;
    Ok(figures)
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
    berth(&["init", "busybox", &name, "-s", pool])?;
    let data = dir
        .join("storage-pools")
        .join(pool)
        .join("containers")
        .join(&name)
        .join("rootfs/data");
    let status = std::process::Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "status=none"])
        .arg(format!("of={}", data.display()))
        .arg(format!("count={mib}"))
        .status()?;
    anyhow::ensure!(status.success(), "dd failed");
    let _ = std::process::Command::new("sync").status();
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
