//! Images and their aliases, per project: import ([`import`]), resolve by fingerprint
//! prefix or alias, edit, delete; the store on disk ([`store`]); unpacking into a volume
//! ([`unpack`]) and rendering an image's templates ([`templates`]); images from another
//! server ([`remote`]) and the public ones served as a simplestreams tree ([`streams`]).
//!
//! An image is stored once (one row, one file) and held by projects: `default`, and each
//! project with `features.images=true` that imported it; a project without that feature
//! uses `default`'s images ([`images_project`]). Image and alias writes are serialised by
//! the image lock.

pub mod cache;
pub mod import;
pub mod publish;
pub mod remote;
pub mod store;
pub mod streams;
pub mod templates;
pub mod unpack;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::image::{Image, ImageAlias, ImageAliasPut, ImagePut};

use crate::ctx::Ctx;
use crate::db::DbError;
use crate::error::{Failure, Result};
use crate::model::names::{AliasName, with_project};
use crate::model::records::{ImageRecord, InstanceRecord};

/// An image's URL as `project` sees it.
pub fn url(fp: &str, project: &str) -> String {
    with_project(&format!("/1.0/images/{fp}"), project)
}

/// An alias's URL as `project` sees it.
pub fn alias_url(name: &str, project: &str) -> String {
    with_project(&format!("/1.0/images/aliases/{name}"), project)
}

fn alias_exists(name: &str) -> Failure {
    Failure::exists(format!("Alias {name:?} already exists"))
}

/// The project whose images `project`'s requests and instances use.
pub async fn images_project(cx: &Ctx, project: &str) -> Result<String> {
    if project == berth_api::DEFAULT_PROJECT {
        return Ok(project.to_owned());
    }
    let p = project.to_owned();
    let rec = cx.db.read(move |c| crate::db::projects::get(c, &p)).await?;
    Ok(rec.map_or_else(
        || berth_api::DEFAULT_PROJECT.to_owned(),
        |r| r.images_project().to_owned(),
    ))
}

/// The one image of `project` whose fingerprint starts with `prefix`.
pub async fn resolve(cx: &Ctx, project: &str, prefix: &str) -> Result<ImageRecord> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::not_found("Image not found"));
    }
    let p = prefix.to_ascii_lowercase();
    let project = project.to_owned();
    let shown = prefix.to_owned();
    cx.db
        .read(move |c| {
            let fps = crate::db::images::matching(c, &project, &p)?;
            match fps.as_slice() {
                [one] => Ok(crate::db::images::get(c, &project, one)?),
                [] => Ok(None),
                _ => Err(Failure::invalid(format!(
                    "Image fingerprint prefix {shown:?} is ambiguous"
                ))),
            }
        })
        .await?
        .ok_or_else(|| Failure::not_found("Image not found"))
}

/// The image an instance of `project` is created from: by alias, else by fingerprint
/// (prefix), among its project's images.
pub async fn source(
    cx: &Ctx,
    project: &str,
    alias: &str,
    fingerprint: &str,
) -> Result<ImageRecord> {
    let images = images_project(cx, project).await?;
    if alias.is_empty() {
        return resolve(cx, &images, fingerprint).await;
    }
    let target = get_alias(cx, &images, alias).await?.target;
    resolve(cx, &images, &target).await
}

/// Every image of `project`.
pub async fn list(cx: &Ctx, project: &str) -> Result<Vec<ImageRecord>> {
    let p = project.to_owned();
    Ok(cx.db.read(move |c| crate::db::images::list(c, &p)).await?)
}

/// Changes an image's writable fields as `project` sees them: `change` gets the image
/// (after `precondition`, both under the image lock) and returns its new fields.
pub async fn update(
    cx: &Ctx,
    project: &str,
    fp: &str,
    precondition: impl FnOnce(&Image) -> Result<()>,
    change: impl FnOnce(&Image) -> Result<ImagePut>,
) -> Result<()> {
    let _guard = cx.locks.images.lock().await;
    let rec = resolve(cx, project, fp).await?;
    precondition(&rec.image)?;
    let req = change(&rec.image)?;
    let fingerprint = rec.image.fingerprint.clone();
    let expires = req.expires_at.unwrap_or_default();
    let profiles = req.profiles.unwrap_or_else(|| vec!["default".to_owned()]);
    let (f, p) = (fingerprint.clone(), project.to_owned());
    cx.db
        .write(move |tx| {
            crate::db::images::update(
                tx,
                &p,
                &f,
                req.public,
                req.auto_update,
                &req.properties,
                &profiles,
                &expires,
            )
        })
        .await?;
    cx.events
        .lifecycle("image-updated", &url(&fingerprint, project), None);
    Ok(())
}

/// Removes an image from `project`; its files go with the last project holding it.
/// Returns its full fingerprint.
pub async fn delete(cx: &Ctx, project: &str, fp: &str) -> Result<String> {
    let _guard = cx.locks.images.lock().await;
    let rec = resolve(cx, project, fp).await?;
    let fingerprint = rec.image.fingerprint.clone();
    let (f, p) = (fingerprint.clone(), project.to_owned());
    let last = cx
        .db
        .write(move |tx| crate::db::images::delete(tx, &p, &f))
        .await?;
    if last {
        let dir = cx.paths.images();
        for file in [
            dir.join(&fingerprint),
            dir.join(format!("{fingerprint}.rootfs")),
        ] {
            if let Err(e) = std::fs::remove_file(&file)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %file.display(), error = %e, "Image file not removed");
            }
        }
        crate::storage::spares::drop_image(cx, &fingerprint);
    }
    cx.events
        .lifecycle("image-deleted", &url(&fingerprint, project), None);
    Ok(fingerprint)
}

/// The files of an image: its metadata (or unified) tarball and, for a split image, its
/// rootfs.
pub fn files(cx: &Ctx, rec: &ImageRecord) -> (PathBuf, Option<PathBuf>) {
    let dir = cx.paths.images();
    let fp = &rec.image.fingerprint;
    (
        dir.join(fp),
        rec.split.then(|| dir.join(format!("{fp}.rootfs"))),
    )
}

/// Unpacks image `img` into volume directory `volume`, reporting progress.
pub fn unpack_into(
    cx: &Ctx,
    img: &ImageRecord,
    volume: &Path,
    progress: &unpack::Progress,
) -> Result<()> {
    let (meta, rootfs) = files(cx, img);
    unpack::unpack(&meta, rootfs.as_deref(), volume, progress)
        .map_err(|e| Failure::failed("Failed to unpack the image", e))
}

/// Unpacks image `img` once more on `pool`, in the background, as a spare volume for the
/// next instance made from it (see [`crate::storage::spares`]).
pub fn refill_spare(cx: Arc<Ctx>, pool: Arc<dyn berth_storage::Driver>, img: &ImageRecord) {
    let (meta, rootfs) = files(&cx, img);
    let fp = img.image.fingerprint.clone();
    let fill = move |volume: &Path| {
        let quiet: unpack::Progress = Arc::new(|_, _| {});
        unpack::unpack(&meta, rootfs.as_deref(), volume, &quiet)
            .map_err(|e| Failure::failed("Failed to unpack the image", e))
    };
    let image_file = cx.paths.images().join(&fp);
    crate::storage::spares::refill(cx, pool, fp, image_file, fill);
}

/// Renders image `img`'s `create` templates into a new instance's volume.
pub fn create_templates(img: &ImageRecord, rec: &InstanceRecord, volume: &Path) -> Result<()> {
    let md: berth_image::ImageMetadata = serde_json::from_str(&img.metadata).map_err(|e| {
        Failure::failed(
            format!(
                "The stored metadata of image {:?} is corrupt",
                img.image.fingerprint
            ),
            e,
        )
    })?;
    templates::apply(volume, &md, "create", &context(rec))
        .map_err(|e| Failure::failed("Failed to render the image's templates", e))
}

/// Renders the templates of the instance's image (kept in its volume) that `trigger`
/// fires: `start` at every start, `rename` after a rename, `copy` after a copy.
pub fn volume_templates(rec: &InstanceRecord, volume: &Path, trigger: &str) -> Result<()> {
    let text = match crate::paths::read_small_file(&volume.join("metadata.yaml"), 1 << 20) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Failure::failed(
                "The instance's metadata.yaml is unreadable",
                e,
            ));
        }
    };
    let md = berth_image::ImageMetadata::parse(&text)
        .map_err(|e| Failure::failed("The instance's metadata.yaml is invalid", e))?;
    templates::apply(volume, &md, trigger, &context(rec))
        .map_err(|e| Failure::failed("Failed to render the image's templates", e))
}

fn context(rec: &InstanceRecord) -> templates::Context<'_> {
    templates::Context {
        name: rec.api_name(),
        architecture: &rec.architecture,
        config: &rec.config,
    }
}

/// Every alias of `project`.
pub async fn list_aliases(cx: &Ctx, project: &str) -> Result<Vec<ImageAlias>> {
    let p = project.to_owned();
    Ok(cx
        .db
        .read(move |c| crate::db::images::list_aliases(c, &p))
        .await?)
}

/// Alias `name` of `project`.
pub async fn get_alias(cx: &Ctx, project: &str, name: &str) -> Result<ImageAlias> {
    let (p, n) = (project.to_owned(), name.to_owned());
    cx.db
        .read(move |c| crate::db::images::get_alias(c, &p, &n))
        .await?
        .ok_or_else(|| Failure::not_found(format!("Image alias {name:?} not found")))
}

/// Creates alias `name` of `project` for the image `target` (a fingerprint prefix).
pub async fn create_alias(
    cx: &Ctx,
    project: &str,
    name: &AliasName,
    target: &str,
    description: String,
    kind: String,
) -> Result<()> {
    let _guard = cx.locks.images.lock().await;
    let target = resolve(cx, project, target).await?.image.fingerprint;
    let kind = if kind.is_empty() {
        "container".to_owned()
    } else {
        kind
    };
    if kind != "container" {
        return Err(Failure::invalid(format!("Invalid alias type {kind:?}")));
    }
    let alias = ImageAlias {
        name: name.to_string(),
        description,
        target,
        kind,
    };
    let p = project.to_owned();
    cx.db
        .write(move |tx| crate::db::images::insert_alias(tx, &p, &alias))
        .await
        .map_err(|e| match e {
            DbError::Exists { .. } => alias_exists(name),
            other => other.into(),
        })?;
    cx.events
        .lifecycle("image-alias-created", &alias_url(name, project), None);
    Ok(())
}

/// Replaces (`replace`) or merges an alias's target and description.
pub async fn update_alias(
    cx: &Ctx,
    project: &str,
    name: &str,
    precondition: impl FnOnce(&ImageAlias) -> Result<()>,
    req: ImageAliasPut,
    replace: bool,
) -> Result<()> {
    let _guard = cx.locks.images.lock().await;
    let mut a = get_alias(cx, project, name).await?;
    precondition(&a)?;
    match req.target {
        Some(t) => a.target = resolve(cx, project, &t).await?.image.fingerprint,
        None if replace => return Err(Failure::invalid("Missing field \"target\"")),
        None => {}
    }
    crate::model::merge_description(&mut a.description, req.description, replace);
    let p = project.to_owned();
    cx.db
        .write(move |tx| crate::db::images::update_alias(tx, &p, &a))
        .await?;
    cx.events
        .lifecycle("image-alias-updated", &alias_url(name, project), None);
    Ok(())
}

/// Renames alias `name` of `project` to `to`.
pub async fn rename_alias(cx: &Ctx, project: &str, name: &str, to: &AliasName) -> Result<()> {
    let _guard = cx.locks.images.lock().await;
    get_alias(cx, project, name).await?;
    if name == &**to {
        return Err(alias_exists(to));
    }
    let (from, t, p) = (name.to_owned(), to.to_string(), project.to_owned());
    cx.db
        .write(move |tx| crate::db::images::rename_alias(tx, &p, &from, &t))
        .await
        .map_err(|e| match e {
            DbError::Exists { .. } => alias_exists(to),
            other => other.into(),
        })?;
    let mut ctx = serde_json::Map::new();
    ctx.insert("old_name".to_owned(), name.into());
    cx.events
        .lifecycle("image-alias-renamed", &alias_url(to, project), Some(ctx));
    Ok(())
}

/// Deletes alias `name` of `project`.
pub async fn delete_alias(cx: &Ctx, project: &str, name: &str) -> Result<()> {
    let _guard = cx.locks.images.lock().await;
    get_alias(cx, project, name).await?;
    let (p, n) = (project.to_owned(), name.to_owned());
    cx.db
        .write(move |tx| crate::db::images::delete_alias(tx, &p, &n))
        .await?;
    cx.events
        .lifecycle("image-alias-deleted", &alias_url(name, project), None);
    Ok(())
}
