//! The storage_pools table (volumes: [`super::volumes`]).

use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, from_json, to_json};
use crate::model::records::PoolRecord;

fn pool(r: &rusqlite::Row<'_>) -> rusqlite::Result<PoolRecord> {
    let name: String = r.get(0)?;
    let of = || format!("storage pool {name:?}");
    Ok(PoolRecord {
        driver: r.get(1)?,
        description: r.get(2)?,
        config: from_json(of, "config", &r.get::<_, String>(3)?)?,
        name,
    })
}

/// Every pool.
pub fn list(conn: &Connection) -> Result<Vec<PoolRecord>, DbError> {
    let mut stmt =
        conn.prepare("SELECT name, driver, description, config FROM storage_pools ORDER BY name")?;
    Ok(stmt.query_map([], pool)?.collect::<Result<_, _>>()?)
}

/// Every pool whose row reads (see [`super::readable`]).
pub fn list_readable(conn: &Connection) -> Result<Vec<PoolRecord>, DbError> {
    let mut stmt =
        conn.prepare("SELECT name, driver, description, config FROM storage_pools ORDER BY name")?;
    super::readable(stmt.query_map([], pool)?)
}

/// One pool.
pub fn get(conn: &Connection, name: &str) -> Result<Option<PoolRecord>, DbError> {
    Ok(conn
        .query_row(
            "SELECT name, driver, description, config FROM storage_pools WHERE name = ?1",
            [name],
            pool,
        )
        .optional()?)
}

/// Inserts a pool ([`DbError::Exists`] when the name is taken).
pub fn insert(conn: &Connection, p: &PoolRecord) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO storage_pools (name, driver, description, config) VALUES (?1, ?2, ?3, ?4)",
        params![p.name, p.driver, p.description, to_json(&p.config)],
    )?;
    Ok(())
}

/// Inserts or replaces a pool.
pub fn put(conn: &Connection, p: &PoolRecord) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO storage_pools (name, driver, description, config) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET driver = ?2, description = ?3, config = ?4",
        params![p.name, p.driver, p.description, to_json(&p.config)],
    )?;
    Ok(())
}

/// Deletes a pool.
pub fn delete(conn: &Connection, name: &str) -> Result<(), DbError> {
    conn.execute("DELETE FROM storage_pools WHERE name = ?1", [name])?;
    Ok(())
}
