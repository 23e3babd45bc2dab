//! The instance_backups table.

use rusqlite::{Connection, OptionalExtension, params};

use super::DbError;
use crate::model::records::BackupRecord;

const COLUMNS: &str = "instance, name, created_at, expires_at, instance_only, optimized_storage, compression_algorithm";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<BackupRecord> {
    Ok(BackupRecord {
        instance: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
        expires_at: r.get(3)?,
        instance_only: r.get(4)?,
        optimized_storage: r.get(5)?,
        compression_algorithm: r.get(6)?,
    })
}

/// The backups of `instance` (every instance's when `None`), oldest first.
pub fn list(conn: &Connection, instance: Option<&str>) -> Result<Vec<BackupRecord>, DbError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM instance_backups WHERE ?1 IS NULL OR instance = ?1
         ORDER BY instance, created_at, name"
    ))?;
    Ok(stmt
        .query_map(params![instance], record)?
        .collect::<Result<_, _>>()?)
}

/// One backup.
pub fn get(conn: &Connection, instance: &str, name: &str) -> Result<Option<BackupRecord>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM instance_backups WHERE instance = ?1 AND name = ?2"),
            params![instance, name],
            record,
        )
        .optional()?)
}

/// Inserts a backup ([`DbError::Exists`] when its name is taken).
pub fn insert(conn: &Connection, b: &BackupRecord) -> Result<(), DbError> {
    conn.execute(
        &format!("INSERT INTO instance_backups ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![
            b.instance,
            b.name,
            b.created_at,
            b.expires_at,
            b.instance_only,
            b.optimized_storage,
            b.compression_algorithm
        ],
    )?;
    Ok(())
}

/// Renames a backup ([`DbError::Exists`] when `to` is taken).
pub fn rename(conn: &Connection, instance: &str, from: &str, to: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE instance_backups SET name = ?3 WHERE instance = ?1 AND name = ?2",
        params![instance, from, to],
    )?;
    Ok(())
}

/// Deletes a backup row.
pub fn delete(conn: &Connection, instance: &str, name: &str) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM instance_backups WHERE instance = ?1 AND name = ?2",
        params![instance, name],
    )?;
    Ok(())
}

/// Moves every backup row of instance `from` to `to` (a rename).
pub fn rename_instance(conn: &Connection, from: &str, to: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE instance_backups SET instance = ?2 WHERE instance = ?1",
        params![from, to],
    )?;
    Ok(())
}
