//! An instance's logs: its LXC log and configuration, and the recorded output of `exec`
//! (`record-output`), as LXD serves them.
//!
//! They live in the instance's runtime directory beside files berthd keeps to itself;
//! only names LXD allows are listed or served: `lxc.log`, `lxc.conf`, and names starting
//! with `exec_`, `snapshot_` or `migration_`. `lxc.log` and `lxc.conf` cannot be deleted.

use std::path::PathBuf;

use super::find;
use crate::ctx::Ctx;
use crate::error::{Failure, Result};
use crate::model::names::instance_url_sub;

/// Whether `file` is a log name clients may read.
fn valid(file: &str) -> bool {
    !file.contains('/')
        && file != ".."
        && (matches!(file, "lxc.log" | "lxc.conf")
            || ["exec_", "snapshot_", "migration_"]
                .iter()
                .any(|p| file.starts_with(p) && file.len() > p.len()))
}

fn checked(file: &str) -> Result<()> {
    if valid(file) {
        Ok(())
    } else {
        Err(Failure::invalid(format!(
            "Log file name {file:?} not valid"
        )))
    }
}

/// A log's URL.
pub fn url(name: &str, file: &str) -> String {
    instance_url_sub(name, &format!("/logs/{file}"))
}

/// The log files of instance `name`, sorted.
pub async fn list(cx: &Ctx, name: &str) -> Result<Vec<String>> {
    find(cx, name).await?;
    let dir = cx.paths.container(name);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| valid(f))
        .collect();
    files.sort();
    Ok(files)
}

/// The path of log `file` of instance `name` (checked; it may not exist).
pub async fn path(cx: &Ctx, name: &str, file: &str) -> Result<PathBuf> {
    find(cx, name).await?;
    checked(file)?;
    Ok(cx.paths.container(name).join(file))
}

/// Records that log `file` was retrieved.
pub fn retrieved(cx: &Ctx, name: &str, file: &str) {
    cx.events
        .lifecycle("instance-log-retrieved", &url(name, file), None);
}

/// Deletes log `file` of instance `name` (not `lxc.log` nor `lxc.conf`).
pub async fn delete(cx: &Ctx, name: &str, file: &str) -> Result<()> {
    let path = path(cx, name, file).await?;
    if matches!(file, "lxc.log" | "lxc.conf") {
        return Err(Failure::invalid("lxc.log and lxc.conf may not be deleted"));
    }
    std::fs::remove_file(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Failure::not_found(format!("Log file {file:?} not found"))
        } else {
            Failure::failed(format!("Failed to delete {file}"), e)
        }
    })?;
    cx.events
        .lifecycle("instance-log-deleted", &url(name, file), None);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn only_lxd_log_names_are_served() {
        for ok in [
            "lxc.log",
            "lxc.conf",
            "exec_1.stdout",
            "snapshot_x",
            "migration_y",
        ] {
            assert!(valid(ok), "{ok}");
        }
        for bad in [
            "init.pid",
            "seccomp",
            "exec_",
            "../x",
            "exec_/../../etc",
            "forkstart.log",
        ] {
            assert!(!valid(bad), "{bad}");
        }
    }
}
