//! Importing an uploaded image: inspected before anything is recorded (a bad image is a
//! 400 and leaves nothing behind), then its files renamed into the store and its row,
//! holding and aliases written in one transaction; a failure takes the files back.

use std::collections::BTreeMap;

use berth_api::image::{Image, ImageAlias};

use super::store::{InspectError, Upload, inspect};
use crate::ctx::Ctx;
use crate::db::DbError;
use crate::error::{Failure, Result};
use crate::model::names::AliasName;
use crate::model::records::ImageRecord;
use crate::revert::Reverter;

/// What the request says of the image besides its files.
#[derive(Debug, Default)]
pub struct ImportOptions {
    /// The fingerprint the client expects, if it gave one.
    pub fingerprint: Option<String>,
    pub public: bool,
    pub properties: BTreeMap<String, String>,
    /// Aliases to create with it; a name given twice is one alias.
    pub aliases: Vec<AliasName>,
    /// Fetched to make an instance: a cache entry (see [`super::cache`]).
    pub cached: bool,
}

/// What an import made: the fingerprint and size.
#[derive(Debug)]
pub struct Imported {
    pub fingerprint: String,
    pub size: u64,
}

/// Imports `upload` into `project`'s images.
pub async fn import(
    cx: &Ctx,
    project: &str,
    upload: Upload,
    opts: ImportOptions,
) -> Result<Imported> {
    let limits = cx.image_limits;
    let (upload, found) = tokio::task::spawn_blocking(move || {
        let r = inspect(&upload, &limits);
        (upload, r)
    })
    .await?;
    let found = found.map_err(|e| match e {
        InspectError::Io(io) => Failure::failed("Failed to read the upload", io),
        other => Failure::invalid(crate::error::chain(&other)),
    })?;
    let fp = found.fingerprint.clone();
    if let Some(expected) = opts.fingerprint.filter(|f| !f.is_empty())
        && expected != fp
    {
        return Err(Failure::invalid(format!(
            "Fingerprint mismatch: got {fp}, expected {expected}"
        )));
    }
    let mut properties = found.metadata.properties.clone();
    properties.extend(opts.properties);
    // An alias named twice is one alias; the order given is kept.
    let mut alias_names: Vec<String> = Vec::new();
    for a in &opts.aliases {
        if !alias_names.iter().any(|n| n == &**a) {
            alias_names.push(a.to_string());
        }
    }
    let now = crate::time::now_rfc3339();
    let created = chrono::DateTime::from_timestamp(found.metadata.creation_date, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| now.clone());
    let expires = chrono::DateTime::from_timestamp(found.metadata.expiry_date, 0)
        .filter(|_| found.metadata.expiry_date > 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| crate::time::NEVER.to_owned());
    let filename = if upload.meta_name.is_empty() {
        format!("{}{}", &fp, found.compression.tar_suffix())
    } else {
        upload.meta_name.clone()
    };
    let rec = ImageRecord {
        image: Image {
            fingerprint: fp.clone(),
            filename,
            size: found.size,
            public: opts.public,
            architecture: found.metadata.architecture.clone(),
            kind: "container".to_owned(),
            properties,
            profiles: vec!["default".to_owned()],
            created_at: created,
            uploaded_at: now,
            expires_at: expires,
            last_used_at: crate::time::NEVER.to_owned(),
            cached: opts.cached,
            project: project.to_owned(),
            ..Default::default()
        },
        split: upload.rootfs.is_some(),
        metadata: serde_json::to_string(&found.metadata)
            .map_err(|e| Failure::failed("Failed to keep the image's metadata", e))?,
    };
    let aliases: Vec<ImageAlias> = alias_names
        .iter()
        .map(|n| ImageAlias {
            name: n.clone(),
            description: String::new(),
            target: fp.clone(),
            kind: "container".to_owned(),
        })
        .collect();

    let _guard = cx.locks.images.lock().await;
    let (f, p, names) = (fp.clone(), project.to_owned(), alias_names.clone());
    let held_elsewhere = cx
        .db
        .read(move |c| {
            if crate::db::images::get(c, &p, &f)?.is_some() {
                return Err(Failure::exists(
                    "Image with same fingerprint already exists",
                ));
            }
            for n in &names {
                if crate::db::images::get_alias(c, &p, n)?.is_some() {
                    return Err(Failure::exists(format!("Alias {n:?} already exists")));
                }
            }
            Ok(crate::db::images::stored(c, &f)?)
        })
        .await?;
    let mut undo = Reverter::new();
    // An image another project holds is stored already: its files stay as they are (the
    // upload is dropped) and this project only gains its holding.
    if held_elsewhere {
        drop(upload);
    } else {
        let (dir, f) = (cx.paths.images(), fp.clone());
        let d = dir.clone();
        tokio::task::spawn_blocking(move || upload.commit(&d, &f))
            .await?
            .map_err(|e| Failure::failed("Failed to store the image", e))?;
        let f = fp.clone();
        undo.add("remove the image's files", move || {
            for file in [dir.join(&f), dir.join(format!("{f}.rootfs"))] {
                match std::fs::remove_file(&file) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Failure::failed(
                            format!("Failed to remove {}", file.display()),
                            e,
                        ));
                    }
                    _ => {}
                }
            }
            Ok(())
        });
    }
    let stored = rec.clone();
    let p = project.to_owned();
    cx.db
        .write(move |tx| crate::db::images::insert(tx, &p, &stored, &aliases))
        .await
        .map_err(|e| match e {
            DbError::Exists { ref table } if table == "image_aliases" => {
                Failure::exists("An alias of the image already exists").with_source(e)
            }
            other => other.into(),
        })?;
    undo.success();
    tracing::info!(fingerprint = %fp, size = rec.image.size, "Image imported");
    cx.events
        .lifecycle("image-created", &super::url(&fp, project), None);
    for a in &alias_names {
        cx.events
            .lifecycle("image-alias-created", &super::alias_url(a, project), None);
    }
    Ok(Imported {
        fingerprint: fp,
        size: rec.image.size,
    })
}
