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

/// Replaces the whole server configuration in one transaction.
pub fn replace(conn: &mut Connection, config: &BTreeMap<String, String>) -> Result<(), DbError> {
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM config", [])?;
    {
        let mut stmt = tx.prepare("INSERT INTO config (key, value) VALUES (?1, ?2)")?;
        for (k, v) in config {
            stmt.execute([k, v])?;
        }
    }
    tx.commit()?;
    Ok(())
}
