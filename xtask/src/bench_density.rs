//! `cargo xtask bench density`: how many containers this host runs, as a user would fill
//! it. For each image, a release berthd of its own in a network namespace of its own (the
//! containers have no nics: their own cost is measured), `instances.expected` set to the
//! count so that berthd raises the host's limits for it, then containers launched one
//! after another up to the count or the first failure, whose error names the limit hit:
//!
//! - busybox up to `BERTH_BENCH_BUSYBOX` (default 5,000);
//! - Debian (systemd, the image the e2e suite builds, else `berth image build debian`) up
//!   to `BERTH_BENCH_DEBIAN` (default 500), or until the host has less than 2 GiB
//!   available, on a btrfs pool on a loop file (each container a snapshot of the image, as
//!   a user running hundreds of full systems would choose: the `dir` pool copies ~180 MiB
//!   per container and fills the disk first); the pool goes at the end of the phase.
//!
//! Reported, for each phase as it ends (a count of 0 skips it): launch time, host memory
//! per running container (MemAvailable before and after, once settled), berthd's RSS,
//! `berth list` (median of 5) and delete of all (`berth delete -f` with 500 names at a
//! time, which works on eight at once).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::bench_net::{berth, median, with_daemon};

/// Memory the host keeps available while Debian containers are added.
const RESERVE_KIB: u64 = 2 << 20;

pub fn run(root: &Path) -> anyhow::Result<()> {
    crate::bench::build_release(root)?;
    let work = tempfile::Builder::new()
        .prefix("berth-bench-images-")
        .tempdir()?;
    let busybox = work.path().join("busybox.tar.gz");
    build(root, "busybox", &busybox)?;
    let count = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mut debian = root.join("target/debug/e2e-debian.tar.gz");
    if !debian.exists() && count("BERTH_BENCH_DEBIAN", 500) > 0 {
        debian = work.path().join("debian.tar.gz");
        build(root, "debian", &debian)?;
    }
    println!(
        "berth density benchmarks (release build, {} CPUs, {:.1} GiB)",
        std::thread::available_parallelism()?,
        meminfo_kib("MemTotal:")? as f64 / (1 << 20) as f64
    );
    // Each phase's figures as soon as it ends; a count of 0 skips the phase.
    for (image, what, count) in [
        (&busybox, "busybox", count("BERTH_BENCH_BUSYBOX", 5000)),
        (&debian, "Debian", count("BERTH_BENCH_DEBIAN", 500)),
    ] {
        if count == 0 {
            continue;
        }
        for (what, value) in fill_host(root, image, what, count)? {
            println!("{what}: {value}");
        }
    }
    Ok(())
}

fn build(root: &Path, what: &str, to: &Path) -> anyhow::Result<()> {
    crate::run(
        root,
        &root.join("target/release/berth").display().to_string(),
        &["image", "build", what, "-o", &to.display().to_string()],
    )
}

/// Bytes used on `pool`, as berthd reports it (`GET /1.0/storage-pools/POOL/resources`).
fn pool_used(root: &Path, dir: &Path, pool: &str) -> anyhow::Result<u64> {
    let out = berth(
        root,
        dir,
        &["query", &format!("/1.0/storage-pools/{pool}/resources")],
    )?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    v.pointer("/space/used")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| anyhow::anyhow!("no space.used for pool {pool}: {out}"))
}

/// A `kB` field of /proc/meminfo.
fn meminfo_kib(field: &str) -> anyhow::Result<u64> {
    std::fs::read_to_string("/proc/meminfo")?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/meminfo"))
}

/// Fills a fresh berthd with containers of `image` (`what` names it in the figures).
fn fill_host(
    root: &Path,
    image: &Path,
    what: &str,
    count: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    // The previous phase's writeback is not measured.
    std::process::Command::new("sync").status()?;
    with_daemon(root, "berth-bench-density-", |dir, pid| {
        fill(root, dir, pid, image, what, count)
    })
}

fn fill(
    root: &Path,
    dir: &Path,
    pid: u32,
    image: &Path,
    what: &str,
    count: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let debian = what == "Debian";
    berth(
        root,
        dir,
        &["config", "set", &format!("instances.expected={count}")],
    )?;
    berth(
        root,
        dir,
        &[
            "image",
            "import",
            &image.display().to_string(),
            "--alias",
            "img",
        ],
    )?;
    // Debian on a btrfs pool of its own (sparse: the file holds what is written).
    let pool = if debian {
        berth(
            root,
            dir,
            &["storage", "create", "bt", "btrfs", "size=40GiB"],
        )?;
        "bt"
    } else {
        "default"
    };
    let result = fill_pool(root, dir, pid, what, count, pool);
    if debian {
        // Whatever a failure left on the pool first: a pool in use is not deleted, and
        // its mount and loop device would outlive the daemon.
        if result.is_err() {
            delete_all(root, dir);
        }
        if let Err(e) = berth(root, dir, &["storage", "delete", "bt"]) {
            return Err(result.err().unwrap_or(e));
        }
    }
    result
}

/// Deletes every container of the daemon in `dir`, as far as it can.
fn delete_all(root: &Path, dir: &Path) {
    let Ok(names) = berth(root, dir, &["list", "-c", "n", "-f", "csv"]) else {
        return;
    };
    let names: Vec<&str> = names.lines().filter(|n| !n.is_empty()).collect();
    for chunk in names.chunks(500) {
        let mut args = vec!["delete", "-f"];
        args.extend(chunk);
        let _ = berth(root, dir, &args);
    }
}

/// Fills `pool` with containers of the image `img`, then deletes them.
fn fill_pool(
    root: &Path,
    dir: &Path,
    pid: u32,
    what: &str,
    count: usize,
    pool: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let debian = what == "Debian";
    std::thread::sleep(Duration::from_secs(2));
    let before = meminfo_kib("MemAvailable:")?;
    let t = Instant::now();
    let mut running = 0;
    let mut limit = String::from("none (the count was reached)");
    while running < count {
        if debian && meminfo_kib("MemAvailable:")? < RESERVE_KIB {
            limit = "host memory (less than 2 GiB available)".to_owned();
            break;
        }
        match berth(
            root,
            dir,
            &["launch", "img", &format!("c{running}"), "-s", pool],
        ) {
            Ok(_) => running += 1,
            Err(e) => {
                limit = e.to_string().lines().next().unwrap_or_default().to_owned();
                break;
            }
        }
        if running % if debian { 100 } else { 1000 } == 0 {
            eprintln!(
                "{what}: {running} running after {:.0} s",
                t.elapsed().as_secs_f64()
            );
        }
    }
    let launched = t.elapsed().as_secs_f64();
    // Systemd keeps booting after the launch returns; busybox settles at once.
    std::thread::sleep(Duration::from_secs(if debian { 90 } else { 15 }));
    let after = meminfo_kib("MemAvailable:")?;
    let per = before.saturating_sub(after) as f64 / running.max(1) as f64;
    let list: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            berth(root, dir, &["list"]).map(|_| t.elapsed().as_secs_f64() * 1000.0)
        })
        .collect::<anyhow::Result<_>>()?;
    let rss = crate::bench::rss_kib(pid)? as f64 / 1024.0;
    // The btrfs pool's space used (image included), per container (a `dir` pool reports
    // the host filesystem's).
    let disk = if debian {
        pool_used(root, dir, pool)? as f64 / running.max(1) as f64 / f64::from(1 << 20)
    } else {
        0.0
    };
    let names: Vec<String> = (0..running).map(|i| format!("c{i}")).collect();
    let t = Instant::now();
    for chunk in names.chunks(500) {
        let mut args = vec!["delete", "-f"];
        args.extend(chunk.iter().map(String::as_str));
        berth(root, dir, &args)?;
    }
    let deleted = t.elapsed().as_secs_f64();
    let mut figures = vec![
        (
            format!("{what} containers running (of {count} asked)"),
            running.to_string(),
        ),
        (format!("{what}: first limit hit"), limit),
        (
            format!("{what}: launched one after another in"),
            format!("{launched:.1} s"),
        ),
        (
            format!("{what}: host memory per running container"),
            format!("{:.1} MiB", per / 1024.0),
        ),
        (
            format!("{what}: berthd RSS with them"),
            format!("{rss:.1} MiB"),
        ),
        (
            format!("{what}: list with them, median of 5"),
            format!("{:.1} ms", median(list)),
        ),
        (format!("{what}: delete of all"), format!("{deleted:.1} s")),
    ];
    if debian {
        figures.push((
            format!("{what}: btrfs pool space used per container (image included)"),
            format!("{disk:.1} MiB"),
        ));
    }
    Ok(figures)
}
