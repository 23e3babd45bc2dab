//! The networks table: managed networks by name.

use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, from_json, to_json};
use crate::model::records::NetworkRecord;

const SELECT: &str = "SELECT name, type, description, config FROM networks";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<NetworkRecord> {
    let name: String = r.get(0)?;
    let of = || format!("network {name:?}");
    Ok(NetworkRecord {
        kind: r.get(1)?,
        description: r.get(2)?,
        config: from_json(of, "config", &r.get::<_, String>(3)?)?,
        name,
    })
}

/// Every network.
pub fn list(conn: &Connection) -> Result<Vec<NetworkRecord>, DbError> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY name"))?;
    Ok(stmt.query_map([], record)?.collect::<Result<_, _>>()?)
}

/// Every network whose row reads (see [`super::readable`]).
pub fn list_readable(conn: &Connection) -> Result<Vec<NetworkRecord>, DbError> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY name"))?;
    super::readable(stmt.query_map([], record)?)
}

/// One network.
pub fn get(conn: &Connection, name: &str) -> Result<Option<NetworkRecord>, DbError> {
    Ok(conn
        .query_row(&format!("{SELECT} WHERE name = ?1"), [name], record)
        .optional()?)
}

/// Inserts a network ([`DbError::Exists`] when the name is taken).
pub fn insert(conn: &Connection, n: &NetworkRecord) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO networks (name, type, description, config) VALUES (?1, ?2, ?3, ?4)",
        params![n.name, n.kind, n.description, to_json(&n.config)],
    )?;
    Ok(())
}

/// Replaces a network's description and config.
pub fn update(conn: &Connection, n: &NetworkRecord) -> Result<(), DbError> {
    conn.execute(
        "UPDATE networks SET description = ?2, config = ?3 WHERE name = ?1",
        params![n.name, n.description, to_json(&n.config)],
    )?;
    Ok(())
}

/// Renames a network ([`DbError::Exists`] when `to` is taken).
pub fn rename(conn: &Connection, from: &str, to: &str) -> Result<(), DbError> {
    conn.execute("UPDATE networks SET name = ?2 WHERE name = ?1", [from, to])?;
    Ok(())
}

/// Deletes a network.
pub fn delete(conn: &Connection, name: &str) -> Result<(), DbError> {
    conn.execute("DELETE FROM networks WHERE name = ?1", [name])?;
    Ok(())
}
