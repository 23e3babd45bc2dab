//! The images and image_aliases tables.

use std::collections::BTreeMap;

use berth_api::image::{Image, ImageAlias, ImageAliasRef};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{DbError, from_json, to_json};

/// An image row, with what the API does not show.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub image: Image,
    /// Whether the rootfs is a separate file (`<fp>.rootfs`).
    pub split: bool,
    /// The image's metadata.yaml, as JSON.
    pub metadata: String,
}

const COLUMNS: &str = "fingerprint, filename, size, public, auto_update, architecture, type, \
    split, properties, profiles, metadata, created_at, uploaded_at, expires_at, last_used_at";

fn record(r: &Row<'_>) -> rusqlite::Result<ImageRecord> {
    let size: i64 = r.get(2)?;
    Ok(ImageRecord {
        image: Image {
            fingerprint: r.get(0)?,
            filename: r.get(1)?,
            size: size.unsigned_abs(),
            public: r.get(3)?,
            auto_update: r.get(4)?,
            architecture: r.get(5)?,
            kind: r.get(6)?,
            properties: from_json(&r.get::<_, String>(8)?),
            profiles: from_json(&r.get::<_, String>(9)?),
            created_at: r.get(11)?,
            uploaded_at: r.get(12)?,
            expires_at: r.get(13)?,
            last_used_at: r.get(14)?,
            project: berth_api::DEFAULT_PROJECT.to_owned(),
            ..Default::default()
        },
        split: r.get(7)?,
        metadata: r.get(10)?,
    })
}

fn aliases_of(conn: &Connection, fp: &str) -> Result<Vec<ImageAliasRef>, DbError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, description FROM image_aliases WHERE fingerprint = ?1 ORDER BY name",
    )?;
    let rows = stmt.query_map([fp], |r| {
        Ok(ImageAliasRef {
            name: r.get(0)?,
            description: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every image, with its aliases.
pub fn list(conn: &Connection) -> Result<Vec<ImageRecord>, DbError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM images ORDER BY uploaded_at, fingerprint"
    ))?;
    let mut out: Vec<ImageRecord> = stmt.query_map([], record)?.collect::<Result<_, _>>()?;
    for rec in &mut out {
        rec.image.aliases = aliases_of(conn, &rec.image.fingerprint)?;
    }
    Ok(out)
}

/// The fingerprints starting with `prefix`.
pub fn matching(conn: &Connection, prefix: &str) -> Result<Vec<String>, DbError> {
    let mut stmt = conn
        .prepare("SELECT fingerprint FROM images WHERE substr(fingerprint, 1, length(?1)) = ?1")?;
    let rows = stmt.query_map([prefix], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One image by full fingerprint.
pub fn get(conn: &Connection, fp: &str) -> Result<Option<ImageRecord>, DbError> {
    let rec = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM images WHERE fingerprint = ?1"),
            [fp],
            record,
        )
        .optional()?;
    match rec {
        Some(mut rec) => {
            rec.image.aliases = aliases_of(conn, fp)?;
            Ok(Some(rec))
        }
        None => Ok(None),
    }
}

/// Inserts an image and its aliases in one transaction.
pub fn insert(
    conn: &mut Connection,
    rec: &ImageRecord,
    aliases: &[ImageAlias],
) -> Result<(), DbError> {
    let tx = conn.transaction()?;
    let i = &rec.image;
    tx.execute(
        &format!("INSERT INTO images ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
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
            i.last_used_at
        ],
    )?;
    for a in aliases {
        insert_alias_tx(&tx, a)?;
    }
    tx.commit()?;
    Ok(())
}

/// Updates the writable fields of an image.
pub fn update(
    conn: &Connection,
    fp: &str,
    public: bool,
    auto_update: bool,
    properties: &BTreeMap<String, String>,
    profiles: &[String],
    expires_at: &str,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE images SET public = ?2, auto_update = ?3, properties = ?4, profiles = ?5, expires_at = ?6 WHERE fingerprint = ?1",
        params![fp, public, auto_update, to_json(properties), to_json(&profiles), expires_at],
    )?;
    Ok(())
}

/// Deletes an image (its aliases go with it).
pub fn delete(conn: &Connection, fp: &str) -> Result<(), DbError> {
    conn.execute("DELETE FROM images WHERE fingerprint = ?1", [fp])?;
    Ok(())
}

fn alias(r: &Row<'_>) -> rusqlite::Result<ImageAlias> {
    Ok(ImageAlias {
        name: r.get(0)?,
        target: r.get(1)?,
        description: r.get(2)?,
        kind: r.get(3)?,
    })
}

/// Every alias.
pub fn list_aliases(conn: &Connection) -> Result<Vec<ImageAlias>, DbError> {
    let mut stmt = conn
        .prepare("SELECT name, fingerprint, description, type FROM image_aliases ORDER BY name")?;
    Ok(stmt.query_map([], alias)?.collect::<Result<_, _>>()?)
}

/// One alias.
pub fn get_alias(conn: &Connection, name: &str) -> Result<Option<ImageAlias>, DbError> {
    Ok(conn
        .query_row(
            "SELECT name, fingerprint, description, type FROM image_aliases WHERE name = ?1",
            [name],
            alias,
        )
        .optional()?)
}

fn insert_alias_tx(conn: &Connection, a: &ImageAlias) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO image_aliases (name, fingerprint, description, type) VALUES (?1, ?2, ?3, ?4)",
        params![a.name, a.target, a.description, a.kind],
    )?;
    Ok(())
}

/// Creates an alias.
pub fn insert_alias(conn: &Connection, a: &ImageAlias) -> Result<(), DbError> {
    insert_alias_tx(conn, a)
}

/// Replaces an alias's target and description.
pub fn update_alias(conn: &Connection, a: &ImageAlias) -> Result<(), DbError> {
    conn.execute(
        "UPDATE image_aliases SET fingerprint = ?2, description = ?3 WHERE name = ?1",
        params![a.name, a.target, a.description],
    )?;
    Ok(())
}

/// Renames an alias.
pub fn rename_alias(conn: &Connection, from: &str, to: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE image_aliases SET name = ?2 WHERE name = ?1",
        params![from, to],
    )?;
    Ok(())
}

/// Deletes an alias.
pub fn delete_alias(conn: &Connection, name: &str) -> Result<(), DbError> {
    conn.execute("DELETE FROM image_aliases WHERE name = ?1", [name])?;
    Ok(())
}
