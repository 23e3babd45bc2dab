//! The snapshots table: an instance's configuration at the moment of each snapshot (the
//! files are on the pool). Rows follow their instance's host-wide name.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, from_json, to_json};
use crate::model::records::SnapshotRecord;

const COLUMNS: &str = "instance, name, description, architecture, ephemeral, stateful, profiles, config, devices, created_at, expires_at";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<SnapshotRecord> {
    let (instance, name): (String, String) = (r.get(0)?, r.get(1)?);
    let of = || {
        format!(
            "snapshot {name:?} of instance {:?}",
            crate::model::names::api_name(&instance)
        )
    };
    Ok(SnapshotRecord {
        description: r.get(2)?,
        architecture: r.get(3)?,
        ephemeral: r.get(4)?,
        stateful: r.get(5)?,
        profiles: from_json(of, "profiles", &r.get::<_, String>(6)?)?,
        config: from_json(of, "config", &r.get::<_, String>(7)?)?,
        devices: from_json(of, "devices", &r.get::<_, String>(8)?)?,
        created_at: r.get(9)?,
        expires_at: r.get(10)?,
        instance,
        name,
    })
}

/// An instance's snapshots, oldest first.
pub fn list(conn: &Connection, instance: &str) -> Result<Vec<SnapshotRecord>, DbError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM snapshots WHERE instance = ?1 ORDER BY created_at, name"
    ))?;
    Ok(stmt
        .query_map([instance], record)?
        .collect::<Result<_, _>>()?)
}

/// Every snapshot of every instance, by instance (for lists).
pub fn all(conn: &Connection) -> Result<BTreeMap<String, Vec<SnapshotRecord>>, DbError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM snapshots ORDER BY instance, created_at, name"
    ))?;
    let mut out: BTreeMap<String, Vec<SnapshotRecord>> = BTreeMap::new();
    for row in stmt.query_map([], record)? {
        let s = row?;
        out.entry(s.instance.clone()).or_default().push(s);
    }
    Ok(out)
}

/// One snapshot.
pub fn get(
    conn: &Connection,
    instance: &str,
    name: &str,
) -> Result<Option<SnapshotRecord>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM snapshots WHERE instance = ?1 AND name = ?2"),
            [instance, name],
            record,
        )
        .optional()?)
}

/// Inserts a snapshot ([`DbError::Exists`] when the name is taken).
pub fn insert(conn: &Connection, s: &SnapshotRecord) -> Result<(), DbError> {
    conn.execute(
        &format!(
            "INSERT INTO snapshots ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
"
        ),
        params![
            s.instance,
            s.name,
            s.description,
            s.architecture,
            s.ephemeral,
            s.stateful,
            to_json(&s.profiles),
            to_json(&s.config),
            to_json(&s.devices),
            s.created_at,
            s.expires_at
        ],
    )?;
    Ok(())
}

/// Sets a snapshot's description and expiry.
pub fn update(conn: &Connection, s: &SnapshotRecord) -> Result<(), DbError> {
    conn.execute(
        "UPDATE snapshots SET description = ?3, expires_at = ?4 WHERE instance = ?1 AND name = ?2",
        params![s.instance, s.name, s.description, s.expires_at],
    )?;
    Ok(())
}

/// Sets a snapshot's devices (a volume it attaches was renamed or moved).
pub fn set_devices(conn: &Connection, s: &SnapshotRecord) -> Result<(), DbError> {
    conn.execute(
        "UPDATE snapshots SET devices = ?3 WHERE instance = ?1 AND name = ?2",
        params![s.instance, s.name, to_json(&s.devices)],
    )?;
    Ok(())
}

/// Deletes one snapshot.
pub fn delete(conn: &Connection, instance: &str, name: &str) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM snapshots WHERE instance = ?1 AND name = ?2",
        [instance, name],
    )?;
    Ok(())
}

/// Renames a snapshot ([`DbError::Exists`] when `to` is taken).
pub fn rename(conn: &Connection, instance: &str, from: &str, to: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE snapshots SET name = ?3 WHERE instance = ?1 AND name = ?2",
        params![instance, from, to],
    )?;
    Ok(())
}
