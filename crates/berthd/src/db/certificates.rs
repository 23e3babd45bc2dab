//! The trust store: one row per trusted certificate, keyed by its fingerprint.

use rusqlite::{Connection, params};

use super::{DbError, from_json, to_json};
use crate::model::trust::TrustedCert;

const SELECT: &str = "SELECT fingerprint, type, name, description, certificate, restricted,
    projects FROM certificates";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<TrustedCert> {
    let fingerprint: String = r.get(0)?;
    let projects: String = r.get(6)?;
    Ok(TrustedCert {
        projects: from_json(
            || format!("certificate {fingerprint}"),
            "projects",
            &projects,
        )?,
        kind: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        der: r.get(4)?,
        restricted: r.get(5)?,
        fingerprint,
    })
}

/// Every trusted certificate, by name then fingerprint.
pub fn list(conn: &Connection) -> Result<Vec<TrustedCert>, DbError> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY name, fingerprint"))?;
    super::readable(stmt.query_map([], record)?)
}

/// Inserts a certificate ([`DbError::Exists`] when it is there already).
pub fn insert(conn: &Connection, c: &TrustedCert) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO certificates (fingerprint, type, name, description, certificate,
            restricted, projects) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            c.fingerprint,
            c.kind,
            c.name,
            c.description,
            c.der,
            c.restricted,
            to_json(&c.projects)
        ],
    )?;
    Ok(())
}

/// Replaces the certificate stored under `old` (its fingerprint changes with a new
/// certificate).
pub fn replace(conn: &Connection, old: &str, c: &TrustedCert) -> Result<(), DbError> {
    conn.execute("DELETE FROM certificates WHERE fingerprint = ?1", [old])?;
    insert(conn, c)
}

/// Deletes a certificate; whether it was there.
pub fn delete(conn: &Connection, fingerprint: &str) -> Result<bool, DbError> {
    Ok(conn.execute(
        "DELETE FROM certificates WHERE fingerprint = ?1",
        [fingerprint],
    )? > 0)
}
