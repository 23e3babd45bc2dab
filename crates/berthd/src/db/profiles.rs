//! The profiles table: profiles keyed by project and name.

use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, from_json, to_json};
use crate::model::records::ProfileRecord;

const COLUMNS: &str = "project, name, description, config, devices";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProfileRecord> {
    let (project, name): (String, String) = (r.get(0)?, r.get(1)?);
    let of = || format!("profile {name:?} of project {project:?}");
    Ok(ProfileRecord {
        description: r.get(2)?,
        config: from_json(of, "config", &r.get::<_, String>(3)?)?,
        devices: from_json(of, "devices", &r.get::<_, String>(4)?)?,
        project,
        name,
    })
}

/// One profile of `project`.
pub fn get(conn: &Connection, project: &str, name: &str) -> Result<Option<ProfileRecord>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM profiles WHERE project = ?1 AND name = ?2"),
            [project, name],
            record,
        )
        .optional()?)
}

/// Every profile of every project.
pub fn list(conn: &Connection) -> Result<Vec<ProfileRecord>, DbError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM profiles ORDER BY project, name"
    ))?;
    let rows = stmt.query_map([], record)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Inserts a profile ([`DbError::Exists`] when the name is taken in its project).
pub fn insert(conn: &Connection, p: &ProfileRecord) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO profiles (project, name, description, config, devices)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            p.project,
            p.name,
            p.description,
            to_json(&p.config),
            to_json(&p.devices)
        ],
    )?;
    Ok(())
}

/// Replaces a profile's description, config and devices.
pub fn update(conn: &Connection, p: &ProfileRecord) -> Result<(), DbError> {
    conn.execute(
        "UPDATE profiles SET description = ?3, config = ?4, devices = ?5
         WHERE project = ?1 AND name = ?2",
        params![
            p.project,
            p.name,
            p.description,
            to_json(&p.config),
            to_json(&p.devices)
        ],
    )?;
    Ok(())
}

/// Deletes a profile.
pub fn delete(conn: &Connection, project: &str, name: &str) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM profiles WHERE project = ?1 AND name = ?2",
        [project, name],
    )?;
    Ok(())
}

/// Renames a profile of `project` ([`DbError::Exists`] when `to` is taken).
pub fn rename(conn: &Connection, project: &str, from: &str, to: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE profiles SET name = ?3 WHERE project = ?1 AND name = ?2",
        params![project, from, to],
    )?;
    Ok(())
}

/// Deletes every profile of `project`.
pub fn delete_all(conn: &Connection, project: &str) -> Result<(), DbError> {
    conn.execute("DELETE FROM profiles WHERE project = ?1", [project])?;
    Ok(())
}
