//! Images between servers, LXD's way: the source issues a secret for one image
//! (`POST /1.0/images/{fp}/secret`, a token-class operation holding it), which lets a
//! server that does not trust it read that image's record and export
//! (`GET /1.0/images/{fp}[/export]?secret=S`; the export spends the secret); the target
//! is asked `POST /1.0/images {source: {type: image, mode: pull, server, certificate,
//! secret, fingerprint}}` and fetches it ([`crate::image::remote`]).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use berth_api::OperationClass;

use super::ops::OpSpec;
use super::{ApiError, ApiResult, AppState, ImageProject, async_operation};
use crate::image::import::ImportOptions;
use crate::image::remote::RemoteImage;
use crate::model::names::AliasName;
use crate::model::trust::Identity;

/// How long an unused image secret lives.
const SECRET_LIFE: std::time::Duration = std::time::Duration::from_secs(3600);

/// What marks an image token's operation (a trust token's has none of it).
const KIND: &str = "image-token";

/// `POST /1.0/images/{fingerprint}/secret`.
pub async fn secret(
    State(st): State<AppState>,
    ImageProject(project): ImageProject,
    Path(fp): Path<String>,
) -> ApiResult {
    let rec = crate::image::resolve(&st.cx, &project, &fp).await?;
    let fp = rec.image.fingerprint;
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut metadata = serde_json::Map::new();
    metadata.insert("secret".into(), secret.into());
    metadata.insert("fingerprint".into(), fp.clone().into());
    metadata.insert("project".into(), project.clone().into());
    metadata.insert("kind".into(), KIND.into());
    let spec = OpSpec {
        class: OperationClass::Token,
        description: "Image download token".to_owned(),
        resources: Some(BTreeMap::from([(
            "images".to_owned(),
            vec![crate::image::url(&fp, &project)],
        )])),
        may_cancel: true,
        metadata,
        fds: vec![],
        fds_at_top: false,
    };
    let op = st.ops.start(spec, |_| async {
        tokio::time::sleep(SECRET_LIFE).await;
        Err(crate::error::Failure::forbidden("Image secret has expired"))
    });
    Ok(async_operation(op.render()))
}

/// Lets `identity` read image `fp` of `project` (its record, or its files when
/// `export`): anyone trusted; an untrusted server with a live secret issued for this very
/// image (its whole fingerprint, its project; an export spends it). Anything else is
/// refused as LXD does: not found.
pub fn allow(
    st: &AppState,
    identity: Option<&Identity>,
    project: &str,
    fp: &str,
    query: Option<&str>,
    export: bool,
) -> Result<(), ApiError> {
    if identity.is_none_or(Identity::trusted) {
        return Ok(());
    }
    let refused = || ApiError::not_found("Image not found");
    let secret = super::query_param(query, "secret").ok_or_else(refused)?;
    let op = st
        .ops
        .list()
        .into_iter()
        .find(|op| {
            let m = op.metadata();
            op.class() == OperationClass::Token
                && !op.status().is_final()
                && m.get("kind").and_then(|v| v.as_str()) == Some(KIND)
                && m.get("secret").and_then(|v| v.as_str()) == Some(secret)
                && m.get("fingerprint").and_then(|v| v.as_str()) == Some(fp)
                && m.get("project").and_then(|v| v.as_str()) == Some(project)
        })
        .ok_or_else(refused)?;
    if export {
        let _ = op.cancel();
    }
    Ok(())
}

/// What `POST /1.0/images` with a JSON body asks for.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ImagesPost {
    #[serde(deserialize_with = "berth_api::null_as_default")]
    pub source: Source,
    #[serde(deserialize_with = "berth_api::null_as_default")]
    pub aliases: Vec<AliasEntry>,
    pub public: bool,
    #[serde(deserialize_with = "berth_api::null_as_default")]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct Source {
    #[serde(rename = "type")]
    pub kind: String,
    pub mode: String,
    pub server: String,
    pub protocol: String,
    pub certificate: String,
    pub fingerprint: String,
    /// A simplestreams alias, when no fingerprint is given.
    pub alias: String,
    pub secret: String,
    /// `instance` or `snapshot`: `NAME` or `NAME/SNAP`.
    pub name: String,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct AliasEntry {
    pub name: String,
}

/// What the operation that made an image says of it, as LXD's clients read it.
fn made(imported: crate::image::import::Imported) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("fingerprint".into(), imported.fingerprint.into());
    m.insert("size".into(), imported.size.into());
    m
}

/// Alias names of a request, checked.
fn alias_names(req: &ImagesPost) -> Result<Vec<AliasName>, ApiError> {
    req.aliases
        .iter()
        .map(|a| super::parse(AliasName::parse, &a.name))
        .collect()
}

/// An instance (stopped) or snapshot published as an image of `project`.
async fn publish(
    st: &AppState,
    project: String,
    instance_project: String,
    req: ImagesPost,
) -> ApiResult {
    let name = req.source.name.clone();
    if name.is_empty() {
        return Err(ApiError::bad_request(
            "source.name is needed: the instance (or INSTANCE/SNAPSHOT) to publish",
        ));
    }
    if (req.source.kind == "snapshot") != name.contains('/') {
        return Err(ApiError::bad_request(format!(
            "Invalid source.name {name:?} for source.type {:?}",
            req.source.kind
        )));
    }
    let opts = ImportOptions {
        fingerprint: None,
        public: req.public,
        properties: req.properties.clone(),
        aliases: alias_names(&req)?,
        cached: false,
    };
    let cx = st.cx.clone();
    let spec = OpSpec::task("Publishing image", &[]);
    let op = st.ops.start(spec, move |ctx| async move {
        let imported =
            crate::instance::create::publish(&cx, &instance_project, &project, &name, opts).await?;
        ctx.set_metadata(made(imported));
        Ok(())
    });
    Ok(async_operation(op.render()))
}

/// `POST /1.0/images` with a JSON body: an image fetched from another server, or an
/// instance or snapshot published. What
/// berth does not do yet is refused with one line naming it.
pub async fn create(
    st: &AppState,
    project: String,
    instance_project: String,
    body: &[u8],
) -> ApiResult {
    let req: ImagesPost = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid image request: {e}")))?;
    let s = &req.source;
    match (s.kind.as_str(), s.mode.as_str(), s.protocol.as_str()) {
        ("image", "pull" | "", _) => {}
        ("image", other, _) => {
            return Err(ApiError::bad_request(format!(
                "Invalid source.mode {other:?}: only pull"
            )));
        }
        ("instance" | "container" | "snapshot", _, _) => {
            return publish(st, project, instance_project, req).await;
        }
        ("url", _, _) => {
            return Err(ApiError::bad_request(
                "Images from a URL are not supported yet",
            ));
        }
        (other, _, _) => {
            return Err(ApiError::bad_request(format!(
                "Invalid source.type {other:?}"
            )));
        }
    }
    let src = RemoteImage {
        server: s.server.clone(),
        protocol: s.protocol.clone(),
        certificate: s.certificate.clone(),
        fingerprint: s.fingerprint.clone(),
        alias: s.alias.clone(),
        secret: s.secret.clone(),
    };
    src.check()?;
    let aliases = alias_names(&req)?;
    let opts = ImportOptions {
        fingerprint: None,
        public: req.public,
        properties: req.properties,
        aliases,
        cached: false,
    };
    let cx = st.cx.clone();
    let spec = OpSpec::task("Downloading image", &[]);
    let op = st.ops.start(spec, move |ctx| async move {
        let imported = crate::image::remote::pull(&cx, &project, &src, opts).await?;
        ctx.set_metadata(made(imported));
        Ok(())
    });
    Ok(async_operation(op.render()))
}
