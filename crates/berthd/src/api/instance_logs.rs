//! `/1.0/instances/{name}/logs`: the instance's LXC log and configuration, and the
//! recorded output of `exec` (`record-output`), as LXD serves them.
//!
//! They live in the instance's runtime directory beside files berthd keeps to itself;
//! only names LXD allows are listed or served: `lxc.log`, `lxc.conf`, and names starting
//! with `exec_`, `snapshot_` or `migration_`. `lxc.log` and `lxc.conf` cannot be deleted.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::IntoResponse;

use super::{ApiError, ApiResult, AppState, sync};

/// Whether `file` is a log name clients may read.
fn valid(file: &str) -> bool {
    !file.contains('/')
        && file != ".."
        && (matches!(file, "lxc.log" | "lxc.conf")
            || ["exec_", "snapshot_", "migration_"]
                .iter()
                .any(|p| file.starts_with(p) && file.len() > p.len()))
}

async fn exists(st: &AppState, name: &str) -> Result<(), ApiError> {
    super::instances::find(st, name).await.map(|_| ())
}

fn checked(file: &str) -> Result<(), ApiError> {
    if valid(file) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Log file name {file:?} not valid"
        )))
    }
}

/// `GET /1.0/instances/{name}/logs`.
pub async fn list(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
) -> ApiResult {
    exists(&st, &name).await?;
    let dir = crate::instances::container_dir(&st, &name);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| valid(f))
        .collect();
    files.sort();
    Ok(sync(
        files
            .iter()
            .map(|f| super::instances::url_sub(&name, &format!("/logs/{f}")))
            .collect::<Vec<_>>(),
    ))
}

/// `GET /1.0/instances/{name}/logs/{file}`: the file itself, streamed.
pub async fn get(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
    Path((_, file)): Path<(String, String)>,
) -> ApiResult {
    exists(&st, &name).await?;
    checked(&file)?;
    let path = crate::instances::container_dir(&st, &name).join(&file);
    let f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        // An instance that never started has an empty LXC log, not a missing one.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && file == "lxc.log" => {
            return Ok(Body::empty().into_response());
        }
        Err(_) => return Err(ApiError::not_found(format!("Log file {file:?} not found"))),
    };
    let len = f
        .metadata()
        .await
        .map_err(|e| ApiError::internal(&e))?
        .len();
    let resp = super::inline_file(
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 16)),
        len,
        &file,
    );
    st.events.lifecycle(
        "instance-log-retrieved",
        &super::instances::url_sub(&name, &format!("/logs/{file}")),
        None,
    );
    Ok(resp)
}

/// `DELETE /1.0/instances/{name}/logs/{file}`.
pub async fn delete(
    State(st): State<AppState>,
    super::InstanceName(name): super::InstanceName,
    Path((_, file)): Path<(String, String)>,
) -> ApiResult {
    exists(&st, &name).await?;
    checked(&file)?;
    if matches!(file.as_str(), "lxc.log" | "lxc.conf") {
        return Err(ApiError::bad_request(
            "lxc.log and lxc.conf may not be deleted",
        ));
    }
    let path = crate::instances::container_dir(&st, &name).join(&file);
    std::fs::remove_file(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ApiError::not_found(format!("Log file {file:?} not found"))
        } else {
            ApiError::internal(&e)
        }
    })?;
    st.events.lifecycle(
        "instance-log-deleted",
        &super::instances::url_sub(&name, &format!("/logs/{file}")),
        None,
    );
    Ok(sync(serde_json::Value::Object(serde_json::Map::new())))
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
