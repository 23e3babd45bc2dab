//! rsync over a migration's `fs` stream: the source's rsync client, whose remote shell
//! is `berthd forknetcat @SOCKET` (`berth_host::netcat`) joined here to the frames, and
//! the target's `rsync --server` (LXD's line, so LXD and Incus senders fit), its stdio
//! joined to them. Each run is one sub-stream, each direction ended by a barrier.

use std::path::Path;
use std::time::Duration;

use berth_api::migration::RsyncFeatures;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Conn, Frame, IDLE, gone, silent};
use crate::error::{Failure, Result};

/// The rsync options a feature set stands for (LXD's mapping).
pub(super) fn feature_args(f: &RsyncFeatures) -> Vec<&'static str> {
    let mut args = Vec::new();
    if f.xattrs == Some(true) {
        args.extend(["--xattrs", "--filter=-x security.selinux"]);
    }
    if f.delete == Some(true) {
        args.push("--delete");
    }
    if f.compress == Some(true) {
        args.extend(["--compress", "--compress-level=2"]);
    }
    args
}

/// Where rsync's remote shell connects: an abstract socket of this migration's own.
fn socket_name() -> String {
    format!("berth-migrate/{}", uuid::Uuid::new_v4().simple())
}

/// Sends directory `dir` (its content) with rsync over `fs`, ending our direction with a
/// barrier and reading the receiver's up to its barrier.
pub(super) async fn rsync_send(dir: &Path, features: &RsyncFeatures, fs: &mut Conn) -> Result<()> {
    use std::os::linux::net::SocketAddrExt as _;
    let name = socket_name();
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .map_err(|e| Failure::failed("Failed to name the rsync socket", e))?;
    let std_listener = std::os::unix::net::UnixListener::bind_addr(&addr)
        .map_err(|e| Failure::failed("Failed to listen for rsync", e))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| Failure::failed("Failed to listen for rsync", e))?;
    let listener = tokio::net::UnixListener::from_std(std_listener)
        .map_err(|e| Failure::failed("Failed to listen for rsync", e))?;
    // berthd's own binary as rsync's child finds it, even when a newer one replaced it.
    let exe = format!("/proc/{}/exe", std::process::id());
    let mut src = dir.as_os_str().to_owned();
    src.push("/");
    let mut cmd = tokio::process::Command::new("rsync");
    cmd.args(["-ar", "--devices", "--numeric-ids", "--partial", "--sparse"])
        .args(feature_args(features))
        .arg(&src)
        .arg("localhost:/tmp/foo")
        .arg("-e")
        .arg(format!("{exe} forknetcat @{name}"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure::failed("Failed to run rsync", e))?;
    let stderr = collect_stderr(&mut child);
    let stream = tokio::select! {
        accepted = listener.accept() => accepted.map_err(|e| Failure::failed("rsync did not connect", e))?.0,
        _ = tokio::time::sleep(Duration::from_secs(10)) => {
            return Err(Failure::internal("rsync did not connect within 10 s"));
        }
        status = child.wait() => {
            let status = status.map(|s| s.to_string()).unwrap_or_default();
            let err = stderr.await.unwrap_or_default();
            return Err(Failure::internal(format!(
                "rsync exited before it connected ({status}): {}",
                err.trim()
            )));
        }
    };
    // The socket is abstract (no file permissions): only root's rsync may be the sender.
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == 0 => {}
        _ => {
            return Err(Failure::internal(
                "Something other than berthd's rsync connected to the migration socket",
            ));
        }
    }
    let (mut from_rsync, to_rsync) = stream.into_split();
    let pumped = pump(&mut from_rsync, to_rsync, fs).await;
    finish(child, stderr, pumped, &format!("sending {}", dir.display())).await
}

/// Collects what rsync says on stderr as it says it (it must never block on a full pipe).
fn collect_stderr(child: &mut tokio::process::Child) -> tokio::task::JoinHandle<String> {
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        let mut err = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut err).await;
        }
        err
    })
}

/// Waits for rsync after its sub-stream (killing it when the peer went away: it would
/// wait for it forever); its failure names `what` and carries what it said.
async fn finish(
    mut child: tokio::process::Child,
    stderr: tokio::task::JoinHandle<String>,
    pumped: Result<()>,
    what: &str,
) -> Result<()> {
    if pumped.is_err() {
        let _ = child.start_kill();
    }
    let status = child
        .wait()
        .await
        .map_err(|e| Failure::failed("Failed to wait for rsync", e))?;
    let err = stderr.await.unwrap_or_default();
    pumped?;
    if !status.success() {
        return Err(Failure::internal(format!(
            "rsync {what} failed ({status}): {}",
            err.trim()
        )));
    }
    Ok(())
}

/// Receives into directory `dir` with LXD's receiving rsync line, over `fs`.
pub(super) async fn rsync_receive(
    dir: &Path,
    features: &RsyncFeatures,
    fs: &mut Conn,
) -> Result<()> {
    let mut dest = dir.as_os_str().to_owned();
    dest.push("/");
    let mut child = tokio::process::Command::new("rsync")
        .args([
            "--server",
            "-vlogDtpre.iLsfx",
            "--numeric-ids",
            "--devices",
            "--partial",
            "--sparse",
        ])
        .args(feature_args(features))
        .arg(".")
        .arg(&dest)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure::failed("Failed to run rsync", e))?;
    let stderr = collect_stderr(&mut child);
    let (Some(mut out), Some(input)) = (child.stdout.take(), child.stdin.take()) else {
        return Err(Failure::internal("rsync has no pipes"));
    };
    let pumped = pump(&mut out, input, fs).await;
    finish(
        child,
        stderr,
        pumped,
        &format!("receiving into {}", dir.display()),
    )
    .await
}

/// Joins a local rsync's output and input to `fs` for one sub-stream: its output goes as
/// binary frames, then a barrier; frames from the peer go to its input up to the peer's
/// barrier, then its input is closed.
async fn pump(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    mut to: impl tokio::io::AsyncWrite + Unpin,
    fs: &mut Conn,
) -> Result<()> {
    let tx = fs.tx.clone();
    let up = async {
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let n = from
                .read(&mut buf)
                .await
                .map_err(|e| Failure::failed("Failed to read from rsync", e))?;
            if n == 0 {
                break;
            }
            tx.send(Frame::Binary(buf[..n].to_vec()))
                .await
                .map_err(|_| gone("fs"))?;
        }
        tx.send(Frame::Text(String::new()))
            .await
            .map_err(|_| gone("fs"))
    };
    let rx = &mut fs.rx;
    let down = async {
        let mut broken = false;
        loop {
            let Ok(next) = tokio::time::timeout(IDLE, rx.recv()).await else {
                return Err(silent(IDLE));
            };
            match next {
                Some(Frame::Binary(b)) => {
                    // rsync may be gone (it failed): drain to the barrier all the same.
                    if !broken && to.write_all(&b).await.is_err() {
                        broken = true;
                    }
                }
                Some(Frame::Text(_)) => break,
                None => {
                    // rsync must see the end too (its input closed, as `to` drops), or it
                    // waits for the peer forever.
                    return Err(gone("fs"));
                }
            }
        }
        let _ = to.shutdown().await;
        drop(to);
        Ok(())
    };
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}
