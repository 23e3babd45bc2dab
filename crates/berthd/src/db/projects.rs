//! The projects table.

use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, from_json, to_json};
use crate::model::records::ProjectRecord;

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectRecord> {
    let name: String = r.get(0)?;
    let of = || format!("project {name:?}");
    Ok(ProjectRecord {
        description: r.get(1)?,
        config: from_json(of, "config", &r.get::<_, String>(2)?)?,
        name,
    })
}

/// Every project, by name.
pub fn list(conn: &Connection) -> Result<Vec<ProjectRecord>, DbError> {
    let mut stmt =
        conn.prepare_cached("SELECT name, description, config FROM projects ORDER BY name")?;
    Ok(stmt.query_map([], record)?.collect::<Result<_, _>>()?)
}

/// One project.
pub fn get(conn: &Connection, name: &str) -> Result<Option<ProjectRecord>, DbError> {
    Ok(conn
        .query_row(
            "SELECT name, description, config FROM projects WHERE name = ?1",
            [name],
            record,
        )
        .optional()?)
}

/// Inserts a project ([`DbError::Exists`] when the name is taken).
pub fn insert(conn: &Connection, p: &ProjectRecord) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO projects (name, description, config) VALUES (?1, ?2, ?3)",
        params![p.name, p.description, to_json(&p.config)],
    )?;
    Ok(())
}

/// Replaces a project's description and config.
pub fn update(conn: &Connection, p: &ProjectRecord) -> Result<(), DbError> {
    conn.execute(
        "UPDATE projects SET description = ?2, config = ?3 WHERE name = ?1",
        params![p.name, p.description, to_json(&p.config)],
    )?;
    Ok(())
}

/// Deletes a project (its profiles go with [`super::profiles::delete_all`]).
pub fn delete(conn: &Connection, name: &str) -> Result<(), DbError> {
    conn.execute("DELETE FROM projects WHERE name = ?1", [name])?;
    Ok(())
}

/// Renames a project with what is keyed by it: its profiles, image holdings and aliases
/// ([`DbError::Exists`] when `to` is taken).
pub fn rename(conn: &Connection, from: &str, to: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE projects SET name = ?2 WHERE name = ?1",
        params![from, to],
    )?;
    for table in ["profiles", "image_projects", "image_aliases"] {
        conn.execute(
            &format!("UPDATE {table} SET project = ?2 WHERE project = ?1"),
            params![from, to],
        )?;
    }
    Ok(())
}
