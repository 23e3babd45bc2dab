//! `GET /1.0/metadata/configuration`: every configuration key berth knows, in LXD's shape
//! (`configs` → entity → group → `keys` → `[{KEY: {type, defaultdesc, liveupdate, …}}]`).

use axum::extract::State;

use super::{ApiResult, AppState, sync};

fn entry(name: &str, kind: &str, default: &str, live: bool, desc: &str) -> serde_json::Value {
    serde_json::json!({ name: {
        "type": kind, "defaultdesc": default, "liveupdate": if live { "yes" } else { "no" },
        "condition": "", "shortdesc": desc, "longdesc": "",
    }})
}

/// `GET /1.0/metadata/configuration`.
pub async fn configuration(State(_st): State<AppState>) -> ApiResult {
    let mut server: Vec<serde_json::Value> = crate::config::SERVER_KEYS
        .iter()
        .map(|k| entry(k.name, "integer", k.default, true, k.description))
        .collect();
    server.push(entry("user.*", "string", "", true, "Free-form user data"));
    let pool = vec![
        entry(
            "source",
            "string",
            "DIR/storage-pools/NAME",
            false,
            "Where the pool's directory is",
        ),
        entry(
            "rsync.bwlimit",
            "string",
            "0 (no limit)",
            true,
            "Bandwidth limit of rsync transfers",
        ),
        entry(
            "rsync.compression",
            "bool",
            "true",
            true,
            "Whether rsync compresses transfers",
        ),
    ];
    Ok(sync(serde_json::json!({
        "configs": {
            "instance": crate::model::keys::metadata(),
            "server": {"core": {"keys": server}},
            "storage-dir": {"pool-conf": {"keys": pool}},
        }
    })))
}
