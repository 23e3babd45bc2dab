//! `cargo xtask bench remote` (and part of `cargo xtask bench`): what goes between hosts.
//!
//! - `GET /1.0` over HTTPS with a trusted client certificate: 4 keep-alive clients for a
//!   fixed time; requests per second, p50 and p99.
//! - A stopped container copied between two berthd on this machine's loopback (pull), for
//!   the busybox and (when built) the Debian image: seconds and MB/s of its volume.
//! - A running checkpointable container moved live (CRIU, stop-and-copy), for the same
//!   images: the downtime its own processes see (a heartbeat loop inside writes a counter
//!   every 5 ms; the bench reads it on both hosts' volumes every millisecond: the time from
//!   its last change on the source to its first new value on the target), and the whole
//!   move's time.
//!
//! Both daemons listen on 127.0.0.1 only; nothing leaves the machine.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

const CLIENTS: usize = 4;
const DURATION: Duration = Duration::from_secs(5);
const PORTS: [u16; 2] = [18443, 18444];

/// The berth CLI against the daemon in `dir`, its client configuration in `conf`.
fn berth(root: &Path, dir: &Path, conf: &Path, args: &[&str]) -> anyhow::Result<String> {
    crate::bench_net::berth_with(root, dir, Some(conf), args)
}

/// The figures, each as (what, value).
pub fn run(
    root: &Path,
    busybox: &Path,
    debian: Option<&Path>,
) -> anyhow::Result<Vec<(String, String)>> {
    let berthd = root.join("target/release/berthd");
    let dirs = [
        tempfile::Builder::new()
            .prefix("berth-bench-h1-")
            .tempdir()?,
        tempfile::Builder::new()
            .prefix("berth-bench-h2-")
            .tempdir()?,
    ];
    let conf = tempfile::Builder::new()
        .prefix("berth-bench-conf-")
        .tempdir()?;
    let _h1 = crate::bench::Daemon::start(&berthd, dirs[0].path())?;
    let _h2 = crate::bench::Daemon::start(&berthd, dirs[1].path())?;
    let mut figures = Vec::new();
    for (i, (dir, port)) in dirs.iter().zip(PORTS).enumerate() {
        let d = dir.path();
        berth(
            root,
            d,
            conf.path(),
            &[
                "config",
                "set",
                "core.https_address",
                &format!("127.0.0.1:{port}"),
            ],
        )?;
        let out = berth(root, d, conf.path(), &["config", "trust", "add", "bench"])?;
        let token = out.lines().last().unwrap_or_default().trim().to_owned();
        berth(
            root,
            d,
            conf.path(),
            &["remote", "add", &format!("h{}", i + 1), &token],
        )?;
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (rps, p50, p99) = runtime.block_on(https_load(conf.path()))?;
    figures.push((
        format!(
            "GET /1.0 over HTTPS, {CLIENTS} keep-alive clients, {} s",
            DURATION.as_secs()
        ),
        format!("{rps:.0} requests/s, p50 {p50:.3} ms, p99 {p99:.3} ms"),
    ));

    let h1 = dirs[0].path();
    let mut images = vec![("busybox", busybox)];
    if let Some(d) = debian {
        images.push(("Debian", d));
    }
    for (name, image) in images {
        let alias = format!("bench-{}", name.to_lowercase());
        berth(
            root,
            h1,
            conf.path(),
            &[
                "image",
                "import",
                &image.display().to_string(),
                "--alias",
                &alias,
            ],
        )?;
        let src = format!("src-{}", name.to_lowercase());
        berth(root, h1, conf.path(), &["init", &alias, &src])?;
        let bytes = du_bytes(&h1.join("storage-pools/default/containers").join(&src))?;
        let t = Instant::now();
        berth(
            root,
            h1,
            conf.path(),
            &["copy", &format!("h1:{src}"), &format!("h2:{src}")],
        )?;
        let secs = t.elapsed().as_secs_f64();
        figures.push((
            format!(
                "copy between hosts (pull, rsync), {name} container ({:.1} MiB)",
                bytes as f64 / f64::from(1 << 20)
            ),
            format!("{secs:.3} s, {:.1} MB/s", bytes as f64 / 1e6 / secs),
        ));
        for (host, dir) in [("h1", h1), ("h2", dirs[1].path())] {
            let _ = berth(
                root,
                dir,
                conf.path(),
                &["delete", &format!("{host}:{src}")],
            );
        }
    }
    for (name, _) in [("busybox", ()), ("Debian", ())] {
        if name == "Debian" && debian.is_none() {
            continue;
        }
        let alias = format!("bench-{}", name.to_lowercase());
        let what = format!("live move between hosts (CRIU, stop-and-copy), {name} container");
        match live_move(root, [h1, dirs[1].path()], conf.path(), &alias) {
            Ok((down, total)) => figures.push((
                what,
                format!(
                    "downtime {:.0} ms, whole move {:.2} s",
                    down.as_secs_f64() * 1e3,
                    total.as_secs_f64()
                ),
            )),
            Err(e) => figures.push((
                what,
                format!(
                    "fails: {}",
                    e.to_string().lines().next().unwrap_or_default()
                ),
            )),
        }
    }
    Ok(figures)
}

/// Moves a running checkpointable container of image `alias` from h1 to h2 (`dirs`)
/// live; the downtime its heartbeat saw and the move's whole time.
fn live_move(
    root: &Path,
    dirs: [&Path; 2],
    conf: &Path,
    alias: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let name = format!("live-{alias}");
    berth(
        root,
        dirs[0],
        conf,
        &["launch", alias, &name, "-c", "migration.stateful=true"],
    )?;
    let result = (|| {
        // Give an init (systemd) a moment, then start the heartbeat.
        std::thread::sleep(Duration::from_secs(3));
        berth(
            root,
            dirs[0],
            conf,
            &[
                "exec",
                &name,
                "--",
                "sh",
                "-c",
                "(i=0; while :; do i=$((i+1)); echo $i > /root/beat; sleep 0.005; done) </dev/null >/dev/null 2>&1 &",
            ],
        )?;
        std::thread::sleep(Duration::from_secs(1));
        let file = |d: &Path| {
            d.join("storage-pools/default/containers")
                .join(&name)
                .join("rootfs/root/beat")
        };
        let (src, dst) = (file(dirs[0]), file(dirs[1]));
        let beat = |f: &Path| {
            std::fs::read_to_string(f)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = done.clone();
        let watcher = std::thread::spawn(move || {
            let mut last: Option<(u64, Instant)> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = Instant::now();
                if let Some(v) = beat(&src)
                    && last.is_none_or(|(l, _)| v > l)
                {
                    last = Some((v, now));
                }
                if let (Some(v), Some((l, at))) = (beat(&dst), last)
                    && v > l
                {
                    return Some(now - at);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            None
        });
        let t = Instant::now();
        let moved = berth(
            root,
            dirs[0],
            conf,
            &["move", &format!("h1:{name}"), &format!("h2:{name}")],
        );
        let total = t.elapsed();
        if moved.is_err() {
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        } else {
            // The target's heartbeat goes on within moments of the restore.
            std::thread::sleep(Duration::from_secs(2));
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let down = watcher.join().ok().flatten();
        moved?;
        let down = down.context("the heartbeat never went on on the target")?;
        Ok((down, total))
    })();
    for (host, dir) in [("h1", dirs[0]), ("h2", dirs[1])] {
        let _ = berth(
            root,
            dir,
            conf,
            &["delete", "-f", &format!("{host}:{name}")],
        );
    }
    result
}

/// The bytes a directory holds (`du -sb`).
fn du_bytes(path: &Path) -> anyhow::Result<u64> {
    let out = Command::new("du").arg("-sb").arg(path).output()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("du -sb {} printed nothing", path.display()))
}

/// 4 keep-alive HTTPS clients with the remote h1's saved certificates; requests per
/// second, p50 and p99 in ms.
async fn https_load(conf: &Path) -> anyhow::Result<(f64, f64, f64)> {
    let read = |p: &str| std::fs::read(conf.join(p)).with_context(|| format!("no {p}"));
    let identity =
        berth_client::ClientIdentity::from_pem(&read("client.crt")?, &read("client.key")?)?;
    let pem = String::from_utf8(read("servercerts/h1.crt")?)?;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD.decode(body)?;
    let addr = format!("127.0.0.1:{}", PORTS[0]);
    let client = berth_client::Client::https(addr.clone(), der, Some(&identity))?;
    let start = Instant::now();
    let deadline = start + DURATION;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, addr) = (client.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let stream = client.open_stream().await?;
            crate::bench::keep_alive(stream, &addr, deadline).await
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_unstable();
    let r = crate::bench::LoadResult {
        requests: all.len(),
        elapsed: start.elapsed(),
        latencies_us: all,
    };
    Ok((
        r.requests as f64 / r.elapsed.as_secs_f64(),
        r.percentile(50.0),
        r.percentile(99.0),
    ))
}
