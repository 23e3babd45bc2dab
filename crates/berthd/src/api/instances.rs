//! `/1.0/instances`: create, list, inspect, change, rename and delete instances (see
//! [`crate::instance`]).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use berth_api::instance::InstancesPost;

use super::ops::{OpCtx, OpSpec};
use super::{
    ApiError, ApiResult, AppState, InstanceName, Json, async_operation, etag_of, field, if_match,
    parse, project_param, recursion_fields, sync_empty, sync_etag,
};
use crate::instance::config::InstanceChange;
use crate::instance::{self, create, query};
use crate::model::names::{self, instance_url};
use crate::model::records::{InstanceRecord, SnapshotRecord};

/// An operation about instance `name`.
pub(super) fn spec(description: &str, name: &str) -> OpSpec {
    OpSpec::task(description, &[("instances", instance_url(name))])
}

/// A snapshot as a list shows it: without the expansion, which needs its profiles.
#[derive(serde::Serialize)]
pub(super) struct ListedSnapshot<'a> {
    name: &'a str,
    description: &'a str,
    architecture: &'a str,
    config: &'a std::collections::BTreeMap<String, String>,
    devices: &'a std::collections::BTreeMap<String, berth_api::instance::Device>,
    ephemeral: bool,
    profiles: &'a [String],
    stateful: bool,
    created_at: &'a str,
    expires_at: &'a str,
    last_used_at: &'static str,
    size: i64,
}

impl<'a> ListedSnapshot<'a> {
    pub(super) fn of(s: &'a SnapshotRecord) -> Self {
        ListedSnapshot {
            name: &s.name,
            description: &s.description,
            architecture: &s.architecture,
            config: &s.config,
            devices: &s.devices,
            ephemeral: s.ephemeral,
            profiles: &s.profiles,
            stateful: s.stateful,
            created_at: &s.created_at,
            expires_at: &s.expires_at,
            last_used_at: crate::time::NEVER,
            size: -1,
        }
    }
}

/// A snapshot as a list shows it, as JSON.
pub(super) fn render_snapshot(s: &SnapshotRecord) -> serde_json::Value {
    serde_json::to_value(ListedSnapshot::of(s)).unwrap_or_default()
}

fn etag(rec: &InstanceRecord) -> String {
    etag_of(&(
        &rec.architecture,
        &rec.config,
        &rec.devices,
        rec.ephemeral,
        &rec.profiles,
        &rec.description,
    ))
}

/// `GET /1.0/instances/{name}`; with `recursion=1`, also its state, snapshots and backups
/// (LXD's `instance_get_full`, which `lxc info` uses); `recursion=N;fields=…` as a list's
/// (state parts only).
pub async fn get(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let (level, fields) = recursion_fields(q.as_deref())?;
    // LXD's selective recursion: the disk and the network only when named.
    let (how, disk) = match &fields {
        Some(f) => {
            let how = query::observation(f)?.as_lxd();
            (how, f.iter().any(|f| f == "state.disk"))
        }
        None => (crate::lxc::Observe::FULL, true),
    };
    let (rec, view) = query::get(&st.cx, &name).await?;
    let etag = etag(&rec);
    if level == 0 {
        return Ok(sync_etag(view, &etag));
    }
    let mut v = serde_json::to_value(view).map_err(|e| ApiError::internal(&e))?;
    let state = query::state_with(&st.cx, &rec, how, disk).await;
    v["state"] = serde_json::to_value(state).unwrap_or_default();
    v["snapshots"] = super::snapshots::rendered(&st, &rec).await?;
    v["backups"] = serde_json::Value::Array(vec![]);
    Ok(sync_etag(v, &etag))
}

/// `POST /1.0/instances`: creates an instance from a local image, empty, or as a copy,
/// and starts it when asked. Everything a request can get wrong is refused before the
/// reply; the operation builds it.
pub async fn post(
    State(st): State<AppState>,
    axum::Extension(identity): axum::Extension<crate::model::trust::Identity>,
    RawQuery(q): RawQuery,
    request: axum::extract::Request,
) -> ApiResult {
    let upload = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    if upload {
        return super::backups::import(&st, q.as_deref(), request).await;
    }
    let Json(req) =
        <Json<InstancesPost> as axum::extract::FromRequest<()>>::from_request(request, &()).await?;
    if req.source.kind == "backup" {
        return Err(ApiError::bad_request(
            "An instance from a backup is made by sending the backup file (application/octet-stream)",
        ));
    }
    // berthd's own source for what a recovery brings back (it keeps volatile keys).
    if req.source.kind == "recover" {
        return Err(ApiError::bad_request(
            "An instance is recovered through /internal/recover (berth admin recover)",
        ));
    }
    let name = parse(names::InstanceName::parse, &req.name)?;
    let project = project_param(q.as_deref());
    // A copy's source project is the client's to reach too.
    if !req.source.project.is_empty() && !identity.allows(&req.source.project) {
        return Err(ApiError::new(
            berth_api::ErrorKind::Forbidden,
            format!(
                "not authorized to copy from project {:?}",
                req.source.project
            ),
        ));
    }
    if req.source.kind == "migration" {
        return super::migration::target(&st, &project, &name, req).await;
    }
    let creation = create::prepare(&st.cx, &project, &name, req).await?;
    let cx = st.cx.clone();
    let spec = spec("Creating instance", creation.name());
    let op = st.ops.start(spec, move |ctx: OpCtx| async move {
        // Progress goes out as operation metadata, as LXD's clients show it.
        let set = ctx.metadata_setter();
        let progress: create::Progress = Arc::new(move |percent| {
            let mut md = serde_json::Map::new();
            md.insert(
                "progress".into(),
                serde_json::json!({"stage": "unpack", "percent": percent.to_string()}),
            );
            set(md);
        });
        creation.run(&cx, progress).await
    });
    Ok(async_operation(op.render()))
}

/// The body of `POST /1.0/instances/{name}` for a rename.
#[derive(Debug, serde::Deserialize)]
pub struct InstancePost {
    #[serde(default)]
    name: String,
    #[serde(default)]
    migration: bool,
}

/// `POST /1.0/instances/{name}`: migrates the instance to another host (`migration:
/// true`, see [`super::migration`]), or renames a stopped instance (its records, volume,
/// runtime directory and logs) in an operation, as LXD.
pub async fn rename(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    Json(raw): Json<serde_json::Value>,
) -> ApiResult {
    instance::find(&st.cx, &name).await?;
    let req: InstancePost = serde_json::from_value(raw.clone())
        .map_err(|e| ApiError::bad_request(format!("Invalid request: {e}")))?;
    if req.migration {
        return super::migration::source(&st, name, raw).await;
    }
    let to = if req.name.is_empty() {
        names::api_name(&name).to_owned()
    } else {
        req.name
    };
    if to.contains('/') {
        return Err(ApiError::bad_request(
            "The character \"/\" is reserved for snapshots",
        ));
    }
    let to = parse(names::InstanceName::parse, &to)?;
    let to = create::check_rename(&st.cx, &name, &to).await?;
    let cx = st.cx.clone();
    let op = st
        .ops
        .start(spec("Renaming instance", &name), move |_| async move {
            create::rename(&cx, &name, &to).await
        });
    Ok(async_operation(op.render()))
}

/// What PUT (`replace`) and PATCH do: `{"restore": SNAPSHOT}` restores a snapshot (its
/// operation is the reply); anything else changes the instance (`None`: done).
async fn update(
    st: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: &serde_json::Value,
    replace: bool,
) -> Result<Option<axum::response::Response>, ApiError> {
    if let Some(snap) = field::<String>(body, "restore")?.filter(|s| !s.is_empty()) {
        let stateful = field::<bool>(body, "stateful")?.unwrap_or(false);
        return super::snapshots::restore(st, name, &snap, stateful)
            .await
            .map(Some);
    }
    // Not found before a bad field, as the lookup came first before.
    instance::find(&st.cx, name).await?;
    let change = InstanceChange {
        config: field(body, "config")?,
        devices: field(body, "devices")?,
        profiles: field(body, "profiles")?,
        description: field(body, "description")?,
        ephemeral: field(body, "ephemeral")?,
    };
    instance::config::update(&st.cx, name, if_match(headers, etag), change, replace).await?;
    Ok(None)
}

/// `PUT /1.0/instances/{name}`: replaces the writable fields; an operation, as LXD (which
/// does the update in it).
pub async fn put(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> ApiResult {
    if let Some(restoring) = update(&st, &name, &headers, &body, true).await? {
        return Ok(restoring);
    }
    let op = st
        .ops
        .start(spec("Updating instance", &name), |_| async { Ok(()) });
    Ok(async_operation(op.render()))
}

/// `PATCH /1.0/instances/{name}`: merges into the writable fields (an empty config value
/// unsets the key); an empty sync reply, as LXD and Incus answer it.
pub async fn patch(
    State(st): State<AppState>,
    InstanceName(name): InstanceName,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> ApiResult {
    if let Some(restoring) = update(&st, &name, &headers, &body, false).await? {
        return Ok(restoring);
    }
    Ok(sync_empty())
}

/// `DELETE /1.0/instances/{name}`: the instance must be stopped.
pub async fn delete(State(st): State<AppState>, InstanceName(name): InstanceName) -> ApiResult {
    let deletion = create::begin_delete(&st.cx, &name).await?;
    let cx = st.cx.clone();
    let op = st
        .ops
        .start(spec("Deleting instance", &name), move |_| async move {
            deletion.run(&cx).await
        });
    Ok(async_operation(op.render()))
}
