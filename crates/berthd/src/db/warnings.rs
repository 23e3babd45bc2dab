//! The warnings table: one row per warning type and object, counted each time it is seen.

use berth_api::warning::Warning;
use rusqlite::{Connection, OptionalExtension, params};

use super::DbError;

const SELECT: &str = "SELECT uuid, project, type, entity_url, severity, status, count,
    first_seen_at, last_seen_at, last_message FROM warnings";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Warning> {
    Ok(Warning {
        uuid: r.get(0)?,
        project: r.get(1)?,
        kind: r.get(2)?,
        entity_url: r.get(3)?,
        severity: r.get(4)?,
        status: r.get(5)?,
        count: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
        first_seen_at: r.get(7)?,
        last_seen_at: r.get(8)?,
        last_message: r.get(9)?,
        location: "none".to_owned(),
    })
}

/// Every warning, oldest first.
pub fn list(conn: &Connection) -> Result<Vec<Warning>, DbError> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY first_seen_at, uuid"))?;
    Ok(stmt.query_map([], record)?.collect::<Result<_, _>>()?)
}

/// One warning.
pub fn get(conn: &Connection, uuid: &str) -> Result<Option<Warning>, DbError> {
    Ok(conn
        .query_row(&format!("{SELECT} WHERE uuid = ?1"), [uuid], record)
        .optional()?)
}

/// The warning of `kind` about `entity_url`, if one was raised.
pub fn find(conn: &Connection, kind: &str, entity_url: &str) -> Result<Option<Warning>, DbError> {
    Ok(conn
        .query_row(
            &format!("{SELECT} WHERE type = ?1 AND entity_url = ?2"),
            [kind, entity_url],
            record,
        )
        .optional()?)
}

/// Inserts or replaces a warning.
pub fn put(conn: &Connection, w: &Warning) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO warnings (uuid, project, type, entity_url, severity, status, count,
            first_seen_at, last_seen_at, last_message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (uuid) DO UPDATE SET status = ?6, count = ?7, last_seen_at = ?9,
            last_message = ?10",
        params![
            w.uuid,
            w.project,
            w.kind,
            w.entity_url,
            w.severity,
            w.status,
            i64::try_from(w.count).unwrap_or(i64::MAX),
            w.first_seen_at,
            w.last_seen_at,
            w.last_message
        ],
    )?;
    Ok(())
}

/// Deletes a warning.
pub fn delete(conn: &Connection, uuid: &str) -> Result<(), DbError> {
    conn.execute("DELETE FROM warnings WHERE uuid = ?1", [uuid])?;
    Ok(())
}
