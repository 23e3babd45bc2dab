//! The server configuration table.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::DbError;

/// All stored server configuration keys.
pub fn load(conn: &Connection) -> Result<BTreeMap<String, String>, DbError> {
    let mut stmt = conn.prepare("SELECT key, value FROM config")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Replaces the whole server configuration.
pub fn replace(conn: &Connection, config: &BTreeMap<String, String>) -> Result<(), DbError> {
    conn.execute("DELETE FROM config", [])?;
    let mut stmt = conn.prepare("INSERT INTO config (key, value) VALUES (?1, ?2)")?;
    for (k, v) in config {
        stmt.execute([k, v])?;
    }
    Ok(())
}
