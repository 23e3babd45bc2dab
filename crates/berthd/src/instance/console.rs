//! An instance's console: attached over the API's websockets, its log read and cleared.
//!
//! The console is liblxc's (a pty the container's monitor holds, so it outlives berthd
//! and any client, with a ring buffer and `console.log`), or for a checkpointable
//! instance its console keeper's (see `lxc::console`).

use std::path::PathBuf;

use berth_api::StatusCode;

use super::{blocking, find};
use crate::ctx::Ctx;
use crate::error::{Failure, Result};

/// How to reach a running instance's console.
#[derive(Debug)]
pub enum Console {
    /// Its keeper, through the socket in its directory.
    Keeper(PathBuf),
    /// liblxc's, through `berthd forkconsole` (this command, without its stdio).
    Liblxc(std::process::Command),
}

async fn running(cx: &Ctx, name: &str) -> Result<bool> {
    find(cx, name).await?;
    let n = name.to_owned();
    Ok(blocking(cx, move |d| d.status(&n)).await?.0 != StatusCode::Stopped)
}

/// The console of instance `name`, which must run.
pub async fn attach(cx: &Ctx, name: &str) -> Result<Console> {
    if !running(cx, name).await? {
        return Err(Failure::invalid("Instance is not running"));
    }
    let lxcpath = cx.driver.lxcpath();
    let dir = lxcpath.join(name);
    if crate::lxc::console::has_keeper(&dir) {
        return Ok(Console::Keeper(dir));
    }
    Ok(Console::Liblxc(crate::lxc::console::attach_command(
        lxcpath, name,
    )?))
}

/// The console log of instance `name`.
pub async fn log(cx: &Ctx, name: &str) -> Result<Vec<u8>> {
    let is_running = running(cx, name).await?;
    let (lxcpath, n) = (cx.driver.lxcpath().to_owned(), name.to_owned());
    Ok(
        tokio::task::spawn_blocking(move || crate::lxc::console::log(&lxcpath, &n, is_running))
            .await?,
    )
}

/// Clears the console log of instance `name`.
pub async fn clear(cx: &Ctx, name: &str) -> Result<()> {
    let is_running = running(cx, name).await?;
    let (lxcpath, n) = (cx.driver.lxcpath().to_owned(), name.to_owned());
    tokio::task::spawn_blocking(move || crate::lxc::console::clear_log(&lxcpath, &n, is_running))
        .await?;
    Ok(())
}

/// Sends `cmd` to the console keeper in `dir` and reads its reply. Blocking.
pub fn keeper_request(dir: &std::path::Path, cmd: &str) -> std::io::Result<Vec<u8>> {
    crate::lxc::console::request(dir, cmd)
}

/// Attaches to the console keeper in `dir`: raw bytes both ways. Blocking.
pub fn keeper_attach(dir: &std::path::Path) -> std::io::Result<std::os::unix::net::UnixStream> {
    crate::lxc::console::connect(dir, "attach")
}
