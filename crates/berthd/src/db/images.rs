//! The images, image_projects and image_aliases tables.
//!
//! An image is stored once (one row, one file) and held by projects: `default`, and each
//! project with `features.images=true` that imported it. Every call takes the image
//! project (the request's, or `default` for projects sharing its images); an image a
//! project does not hold does not exist for it. What a user edits (public, auto_update,
//! properties, profiles, expiry) is kept per project, as are aliases.

use std::collections::BTreeMap;

use berth_api::image::{Image, ImageAlias, ImageAliasRef};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{DbError, from_json, to_json};
use crate::model::records::ImageRecord;

const COLUMNS: &str = "fingerprint, filename, size, public, auto_update, architecture, type, \
    split, properties, profiles, metadata, created_at, uploaded_at, expires_at, last_used_at, \
    cached";

/// [`COLUMNS`] as a project sees them: the editable ones from its holding.
const PROJECT_COLUMNS: &str = "i.fingerprint, i.filename, i.size, p.public, p.auto_update, \
    i.architecture, i.type, i.split, p.properties, p.profiles, i.metadata, i.created_at, \
    i.uploaded_at, p.expires_at, i.last_used_at, i.cached";

fn record(r: &Row<'_>) -> rusqlite::Result<ImageRecord> {
    let size: i64 = r.get(2)?;
    let fingerprint: String = r.get(0)?;
    let of = || format!("image {fingerprint:?}");
    Ok(ImageRecord {
        image: Image {
            filename: r.get(1)?,
            size: size.unsigned_abs(),
            public: r.get(3)?,
            auto_update: r.get(4)?,
            architecture: r.get(5)?,
            kind: r.get(6)?,
            properties: from_json(of, "properties", &r.get::<_, String>(8)?)?,
            profiles: from_json(of, "profiles", &r.get::<_, String>(9)?)?,
            created_at: r.get(11)?,
            uploaded_at: r.get(12)?,
            expires_at: r.get(13)?,
            last_used_at: r.get(14)?,
            cached: r.get(15)?,
            project: berth_api::DEFAULT_PROJECT.to_owned(),
            fingerprint,
            ..Default::default()
        },
        split: r.get(7)?,
        metadata: r.get(10)?,
    })
}

fn aliases_of(conn: &Connection, project: &str, fp: &str) -> Result<Vec<ImageAliasRef>, DbError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, description FROM image_aliases WHERE project = ?1 AND fingerprint = ?2
         ORDER BY name",
    )?;
    let rows = stmt.query_map([project, fp], |r| {
        Ok(ImageAliasRef {
            name: r.get(0)?,
            description: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every image of `project`, with its aliases there.
pub fn list(conn: &Connection, project: &str) -> Result<Vec<ImageRecord>, DbError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {PROJECT_COLUMNS} FROM images i JOIN image_projects p
         ON p.fingerprint = i.fingerprint WHERE p.project = ?1
         ORDER BY i.uploaded_at, i.fingerprint"
    ))?;
    let mut out: Vec<ImageRecord> = stmt
        .query_map([project], record)?
        .collect::<Result<_, _>>()?;
    for rec in &mut out {
        rec.image.aliases = aliases_of(conn, project, &rec.image.fingerprint)?;
        rec.image.project = project.to_owned();
    }
    Ok(out)
}

/// The fingerprints of `project`'s images starting with `prefix`.
pub fn matching(conn: &Connection, project: &str, prefix: &str) -> Result<Vec<String>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT fingerprint FROM image_projects
         WHERE project = ?1 AND substr(fingerprint, 1, length(?2)) = ?2",
    )?;
    let rows = stmt.query_map([project, prefix], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether any project holds image `fp` (its row and file exist).
pub fn stored(conn: &Connection, fp: &str) -> Result<bool, DbError> {
    Ok(conn
        .query_row("SELECT 1 FROM images WHERE fingerprint = ?1", [fp], |_| {
            Ok(())
        })
        .optional()?
        .is_some())
}

/// One image of `project` by full fingerprint.
pub fn get(conn: &Connection, project: &str, fp: &str) -> Result<Option<ImageRecord>, DbError> {
    let rec = conn
        .query_row(
            &format!(
                "SELECT {PROJECT_COLUMNS} FROM images i JOIN image_projects p
                 ON p.fingerprint = i.fingerprint WHERE p.project = ?1 AND i.fingerprint = ?2"
            ),
            [project, fp],
            record,
        )
        .optional()?;
    match rec {
        Some(mut rec) => {
            rec.image.aliases = aliases_of(conn, project, fp)?;
            rec.image.project = project.to_owned();
            Ok(Some(rec))
        }
        None => Ok(None),
    }
}

/// Records image `rec` for `project` with its aliases there: the row when no project
/// holds it yet, and the holding ([`DbError::Exists`] when an alias is taken).
pub fn insert(
    conn: &Connection,
    project: &str,
    rec: &ImageRecord,
    aliases: &[ImageAlias],
) -> Result<(), DbError> {
    let i = &rec.image;
    if !stored(conn, &i.fingerprint)? {
        insert_row(conn, rec)?;
    }
    hold(conn, project, i)?;
    for a in aliases {
        insert_alias(conn, project, a)?;
    }
    Ok(())
}

fn insert_row(conn: &Connection, rec: &ImageRecord) -> Result<(), DbError> {
    let i = &rec.image;
    conn.execute(
        &format!("INSERT INTO images ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
        params![
            i.fingerprint,
            i.filename,
            i.size as i64,
            i.public,
            i.auto_update,
            i.architecture,
            i.kind,
            rec.split,
            to_json(&i.properties),
            to_json(&i.profiles),
            rec.metadata,
            i.created_at,
            i.uploaded_at,
            i.expires_at,
            i.last_used_at,
            i.cached
        ],
    )?;
    Ok(())
}

/// Records that `project` holds image `i`, with `i`'s editable fields.
fn hold(conn: &Connection, project: &str, i: &Image) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO image_projects
            (fingerprint, project, public, auto_update, properties, profiles, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        params![
            i.fingerprint,
            project,
            i.public,
            i.auto_update,
            to_json(&i.properties),
            to_json(&i.profiles),
            i.expires_at
        ],
    )?;
    Ok(())
}

/// Updates the writable fields of an image, as `project` sees it.
#[allow(clippy::too_many_arguments)] // one per writable field, as the API has them
pub fn update(
    conn: &Connection,
    project: &str,
    fp: &str,
    public: bool,
    auto_update: bool,
    properties: &BTreeMap<String, String>,
    profiles: &[String],
    expires_at: &str,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE image_projects SET public = ?3, auto_update = ?4, properties = ?5,
         profiles = ?6, expires_at = ?7 WHERE fingerprint = ?1 AND project = ?2",
        params![
            fp,
            project,
            public,
            auto_update,
            to_json(properties),
            to_json(&profiles),
            expires_at
        ],
    )?;
    Ok(())
}

/// Removes image `fp` from `project` with its aliases there; the row goes (with every
/// alias) when no project holds it any more, and then `true` says its files can go.
pub fn delete(conn: &Connection, project: &str, fp: &str) -> Result<bool, DbError> {
    conn.execute(
        "DELETE FROM image_projects WHERE fingerprint = ?1 AND project = ?2",
        [fp, project],
    )?;
    conn.execute(
        "DELETE FROM image_aliases WHERE fingerprint = ?1 AND project = ?2",
        [fp, project],
    )?;
    let held: bool = conn
        .query_row(
            "SELECT 1 FROM image_projects WHERE fingerprint = ?1",
            [fp],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !held {
        conn.execute("DELETE FROM images WHERE fingerprint = ?1", [fp])?;
    }
    Ok(!held)
}

fn alias(r: &Row<'_>) -> rusqlite::Result<ImageAlias> {
    Ok(ImageAlias {
        name: r.get(0)?,
        target: r.get(1)?,
        description: r.get(2)?,
        kind: r.get(3)?,
    })
}

/// Every alias of `project`.
pub fn list_aliases(conn: &Connection, project: &str) -> Result<Vec<ImageAlias>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT name, fingerprint, description, type FROM image_aliases WHERE project = ?1
         ORDER BY name",
    )?;
    Ok(stmt
        .query_map([project], alias)?
        .collect::<Result<_, _>>()?)
}

/// One alias of `project`.
pub fn get_alias(
    conn: &Connection,
    project: &str,
    name: &str,
) -> Result<Option<ImageAlias>, DbError> {
    Ok(conn
        .query_row(
            "SELECT name, fingerprint, description, type FROM image_aliases
             WHERE project = ?1 AND name = ?2",
            [project, name],
            alias,
        )
        .optional()?)
}

/// Creates an alias in `project` ([`DbError::Exists`] when the name is taken).
pub fn insert_alias(conn: &Connection, project: &str, a: &ImageAlias) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO image_aliases (project, name, fingerprint, description, type)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![project, a.name, a.target, a.description, a.kind],
    )?;
    Ok(())
}

/// Records that an instance was made from image `fp` at `now`: a cached image so used is
/// kept another `images.remote_cache_expiry`.
pub fn touch(conn: &Connection, fp: &str, now: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE images SET last_used_at = ?2 WHERE fingerprint = ?1",
        params![fp, now],
    )?;
    Ok(())
}

/// The cached images, with the projects holding them, last used (or, never used, fetched)
/// before `before` (RFC 3339).
pub fn unused_cached(conn: &Connection, before: &str) -> Result<Vec<(String, String)>, DbError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT p.project, i.fingerprint FROM images i
         JOIN image_projects p ON p.fingerprint = i.fingerprint
         WHERE i.cached = 1
           AND (CASE WHEN i.last_used_at = '{never}' THEN i.uploaded_at ELSE i.last_used_at END) < ?1
         ORDER BY i.fingerprint, p.project",
        never = crate::time::NEVER
    ))?;
    let rows = stmt.query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Replaces an alias's target and description.
pub fn update_alias(conn: &Connection, project: &str, a: &ImageAlias) -> Result<(), DbError> {
    conn.execute(
        "UPDATE image_aliases SET fingerprint = ?3, description = ?4
         WHERE project = ?1 AND name = ?2",
        params![project, a.name, a.target, a.description],
    )?;
    Ok(())
}

/// Renames an alias ([`DbError::Exists`] when `to` is taken).
pub fn rename_alias(conn: &Connection, project: &str, from: &str, to: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE image_aliases SET name = ?3 WHERE project = ?1 AND name = ?2",
        params![project, from, to],
    )?;
    Ok(())
}

/// Deletes an alias.
pub fn delete_alias(conn: &Connection, project: &str, name: &str) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM image_aliases WHERE project = ?1 AND name = ?2",
        [project, name],
    )?;
    Ok(())
}
