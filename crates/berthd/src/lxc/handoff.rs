//! The final dump of a live migration, held until the target answers.
//!
//! ```text
//!   berthd ── forkmigrate dump stop ──► criu: freezes, dumps into DIR/final
//!                                        └─ post-dump action script:
//!                                           berthd forkhandoff @SOCKET ──► "dumped"
//!   berthd sends DIR, syncs the volume once more, waits for the target's answer
//!   berthd ── verdict ──► forkhandoff exits 0: criu ends the processes (the container stops)
//!                                   exits 1: criu lets them run on here
//! ```
//!
//! The processes stay frozen from the dump until the verdict, so the volume's last sync
//! sees everything they wrote. Anything but a yes (the target failed, the migration was
//! cancelled, berthd died and the socket closed) resumes them: a failed migration loses
//! nothing. The socket is abstract, checked to be root's; the script is berthd's own file
//! in the container's root-only directory.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;

use super::checkpoint;
use super::lifecycle::Liblxc;
use crate::error::{Failure, Result};

/// The working directory of a migration's dump in the container's directory: the dump
/// is its `final/`, as LXD lays it out, and the whole directory is what goes.
pub const WORK: &str = "migration";
/// The dump's directory in [`WORK`].
pub const FINAL: &str = "final";
/// The action script's name in the container's directory.
const SCRIPT: &str = "handoff.sh";

/// What the action script's helper says once CRIU has dumped.
const DUMPED: u8 = b'd';
/// The verdict that ends the processes here (anything else resumes them).
const MOVED: u8 = b'1';

/// Where the migration's dump is made and sent from, under the containers dir `lxcpath`.
pub fn work_dir(lxcpath: &Path, name: &str) -> PathBuf {
    lxcpath.join(name).join(WORK)
}

/// Writes the action script that runs `berthd forkhandoff @SOCKET` after the dump.
fn write_script(path: &Path, socket: &str) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Failure::failed("Failed to find berthd", e))?;
    let exe = exe.to_string_lossy();
    if exe.contains('\'') {
        return Err(Failure::internal(
            "berthd's path has a quote in it: no action script",
        ));
    }
    let text = format!(
        "#!/bin/sh\n[ \"$CRTOOLS_SCRIPT_ACTION\" = post-dump ] || exit 0\nexec '{exe}' forkhandoff @{socket}\n"
    );
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .custom_flags(i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0))
        .open(path)
        .map_err(|e| Failure::failed("Failed to write the migration's action script", e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Failure::failed("Failed to write the migration's action script", e))
}

/// Dumps the running container `name` for a live migration into a fresh
/// [`work_dir`]`/final`, sends the work dir's path on `dumped` once CRIU holds the frozen
/// processes, and ends them (the container stops) when `verdict` says `true`, or resumes
/// them otherwise. `Ok` when CRIU did as told; after a `false` verdict that means the
/// container runs on.
pub(super) async fn dump(
    lx: &Liblxc,
    name: &str,
    dumped: oneshot::Sender<PathBuf>,
    verdict: oneshot::Receiver<bool>,
) -> Result<()> {
    let work = work_dir(&lx.lxcpath, name);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir(&work)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755))
        })
        .map_err(|e| Failure::failed("Failed to make the migration's directory", e))?;
    let socket = format!("berth-handoff/{}", uuid::Uuid::new_v4().simple());
    let listener = listen(&socket)?;
    let script = lx.lxcpath.join(name).join(SCRIPT);
    write_script(&script, &socket)?;
    let result = held(lx, name, &work, &script, listener, dumped, verdict).await;
    let _ = std::fs::remove_file(&script);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

fn listen(socket: &str) -> Result<tokio::net::UnixListener> {
    use std::os::linux::net::SocketAddrExt as _;
    let fail = |e| Failure::failed("Failed to listen for the migration's dump", e);
    let addr =
        std::os::unix::net::SocketAddr::from_abstract_name(socket.as_bytes()).map_err(fail)?;
    let l = std::os::unix::net::UnixListener::bind_addr(&addr).map_err(fail)?;
    l.set_nonblocking(true).map_err(fail)?;
    tokio::net::UnixListener::from_std(l).map_err(fail)
}

async fn held(
    lx: &Liblxc,
    name: &str,
    work: &Path,
    script: &Path,
    listener: tokio::net::UnixListener,
    dumped: oneshot::Sender<PathBuf>,
    verdict: oneshot::Receiver<bool>,
) -> Result<()> {
    let dump_dir = work.join(FINAL);
    let run = checkpoint::dump_with(lx, name, &dump_dir, true, Some(script));
    tokio::pin!(run);
    let mut conn = loop {
        tokio::select! {
            r = &mut run => {
                r?;
                return Err(Failure::internal("CRIU ended the dump without handing it over"));
            }
            accepted = listener.accept() => {
                let Ok((s, _)) = accepted else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                if s.peer_cred().is_ok_and(|c| c.uid() == 0) {
                    break s;
                }
            }
        }
    };
    let mut hello = [0u8; 1];
    if conn.read_exact(&mut hello).await.is_err() || hello[0] != DUMPED {
        drop(conn);
        let _ = run.await;
        return Err(Failure::internal("The dump's action script said nothing"));
    }
    let _ = dumped.send(work.to_owned());
    let moved = verdict.await.unwrap_or(false);
    let said = conn.write_all(&[if moved { MOVED } else { b'0' }]).await;
    drop(conn);
    let ended = run.await;
    let running = {
        let (lxcpath, n) = (lx.lxcpath.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || {
            super::lifecycle::lxc_status(&lxcpath, &n).0 != berth_api::StatusCode::Stopped
        })
        .await
        .unwrap_or(true)
    };
    match (moved, ended) {
        (true, Ok(())) if said.is_ok() => Ok(()),
        (true, r) => {
            r?;
            Err(Failure::internal(
                "CRIU did not hear that the target took the instance over",
            ))
        }
        (false, _) if running => Ok(()),
        (false, _) => Err(Failure::internal(
            "The migration failed and the instance stopped on the source",
        )),
    }
}

/// `berthd forkhandoff @SOCKET`: the post-dump action script's helper. Tells berthd the
/// dump is done and exits 0 when berthd answers that the target took over (CRIU then
/// ends the processes), 1 otherwise (CRIU resumes them).
pub fn helper(socket: &str) -> std::io::Result<bool> {
    use std::io::Read as _;
    use std::os::linux::net::SocketAddrExt as _;
    let name = socket.strip_prefix('@').unwrap_or(socket);
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let mut s = std::os::unix::net::UnixStream::connect_addr(&addr)?;
    s.write_all(&[DUMPED])?;
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer)?;
    Ok(answer[0] == MOVED)
}

/// On the target: makes the dump received in [`work_dir`] the instance's saved state,
/// which a stateful start restores, and removes the rest of the work dir. Blocking.
pub fn adopt(lxcpath: &Path, name: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let work = work_dir(lxcpath, name);
    let dump = work.join(FINAL);
    let real_dir = std::fs::symlink_metadata(&dump).is_ok_and(|m| m.is_dir());
    if !real_dir || !dump.join("inventory.img").is_file() {
        return Err(Failure::invalid(
            "The migration source sent no CRIU dump of the instance",
        ));
    }
    checkpoint::discard(lxcpath, name)?;
    let state = checkpoint::state_dir(lxcpath, name);
    std::fs::rename(&dump, &state)
        .and_then(|()| std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)))
        .map_err(|e| Failure::failed("Failed to keep the received state", e))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
