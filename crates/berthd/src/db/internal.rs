//! The internal table: daemon-internal flags (`defaults`, interrupted restores…).

use rusqlite::{Connection, OptionalExtension, params};

use super::DbError;

/// A daemon-internal flag.
pub fn get(conn: &Connection, key: &str) -> Result<Option<String>, DbError> {
    Ok(conn
        .query_row("SELECT value FROM internal WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Removes a daemon-internal flag.
pub fn delete(conn: &Connection, key: &str) -> Result<(), DbError> {
    conn.execute("DELETE FROM internal WHERE key = ?1", [key])?;
    Ok(())
}

/// The daemon-internal flags whose key starts with `prefix`.
pub fn prefixed(conn: &Connection, prefix: &str) -> Result<Vec<(String, String)>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT key, value FROM internal WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
    )?;
    let rows = stmt.query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Sets a daemon-internal flag.
pub fn set(conn: &Connection, key: &str, value: &str) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO internal (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
        params![key, value],
    )?;
    Ok(())
}
