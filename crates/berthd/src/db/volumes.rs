//! Volume rows of `storage_volumes` (custom volumes; instances' root volume rows are
//! written with their instance, in [`super::instances`]) and the `volume_snapshots` table.
//!
//! A volume's `name` is its host-wide name, as on disk (see [`crate::model::names`]).

use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, from_json, to_json};
use crate::model::records::{VolumeRecord, VolumeSnapshotRecord};

const COLUMNS: &str = "pool, project, type, name, description, config, created_at";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRecord> {
    let name: String = r.get(3)?;
    let of = || format!("storage volume {name:?}");
    Ok(VolumeRecord {
        pool: r.get(0)?,
        project: r.get(1)?,
        kind: r.get(2)?,
        description: r.get(4)?,
        config: from_json(of, "config", &r.get::<_, String>(5)?)?,
        created_at: r.get(6)?,
        name,
    })
}

/// The volumes of `pool` (every pool when `None`), optionally of one type, by type and
/// name.
pub fn list(
    conn: &Connection,
    pool: Option<&str>,
    kind: Option<&str>,
) -> Result<Vec<VolumeRecord>, DbError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM storage_volumes
         WHERE (?1 IS NULL OR pool = ?1) AND (?2 IS NULL OR type = ?2) ORDER BY type, name"
    ))?;
    Ok(stmt
        .query_map(params![pool, kind], record)?
        .collect::<Result<_, _>>()?)
}

/// One volume.
pub fn get(
    conn: &Connection,
    pool: &str,
    kind: &str,
    name: &str,
) -> Result<Option<VolumeRecord>, DbError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM storage_volumes WHERE pool = ?1 AND type = ?2 AND name = ?3"
            ),
            params![pool, kind, name],
            record,
        )
        .optional()?)
}

/// Inserts a volume ([`DbError::Exists`] when the name is taken on its pool,
/// [`DbError::Missing`] when the pool is gone).
pub fn insert(conn: &Connection, v: &VolumeRecord) -> Result<(), DbError> {
    conn.execute(
        &format!("INSERT INTO storage_volumes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![
            v.pool,
            v.project,
            v.kind,
            v.name,
            v.description,
            to_json(&v.config),
            v.created_at
        ],
    )?;
    Ok(())
}

/// Replaces a volume's description and configuration.
pub fn update(conn: &Connection, v: &VolumeRecord) -> Result<(), DbError> {
    conn.execute(
        "UPDATE storage_volumes SET description = ?4, config = ?5
         WHERE pool = ?1 AND type = ?2 AND name = ?3",
        params![v.pool, v.kind, v.name, v.description, to_json(&v.config)],
    )?;
    Ok(())
}

/// Deletes a volume and its snapshot rows.
pub fn delete(conn: &Connection, pool: &str, kind: &str, name: &str) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM storage_volumes WHERE pool = ?1 AND type = ?2 AND name = ?3",
        params![pool, kind, name],
    )?;
    conn.execute(
        "DELETE FROM volume_snapshots WHERE pool = ?1 AND volume = ?2",
        params![pool, name],
    )?;
    Ok(())
}

/// Renames a custom volume with its snapshot rows, and records its project
/// ([`DbError::Exists`] when `to` is taken).
pub fn rename(
    conn: &Connection,
    pool: &str,
    from: &str,
    to: &str,
    project: &str,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE storage_volumes SET name = ?3, project = ?4
         WHERE pool = ?1 AND type = 'custom' AND name = ?2",
        params![pool, from, to, project],
    )?;
    conn.execute(
        "UPDATE volume_snapshots SET volume = ?3 WHERE pool = ?1 AND volume = ?2",
        params![pool, from, to],
    )?;
    Ok(())
}

const SNAPSHOT_COLUMNS: &str = "pool, volume, name, description, config, created_at, expires_at";

fn snapshot(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeSnapshotRecord> {
    let name: String = r.get(2)?;
    let of = || format!("storage volume snapshot {name:?}");
    Ok(VolumeSnapshotRecord {
        pool: r.get(0)?,
        volume: r.get(1)?,
        description: r.get(3)?,
        config: from_json(of, "config", &r.get::<_, String>(4)?)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
        name,
    })
}

/// The snapshots of a custom volume, oldest first.
pub fn snapshots(
    conn: &Connection,
    pool: &str,
    volume: &str,
) -> Result<Vec<VolumeSnapshotRecord>, DbError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM volume_snapshots WHERE pool = ?1 AND volume = ?2
         ORDER BY created_at, name"
    ))?;
    Ok(stmt
        .query_map(params![pool, volume], snapshot)?
        .collect::<Result<_, _>>()?)
}

/// One snapshot of a custom volume.
pub fn get_snapshot(
    conn: &Connection,
    pool: &str,
    volume: &str,
    name: &str,
) -> Result<Option<VolumeSnapshotRecord>, DbError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {SNAPSHOT_COLUMNS} FROM volume_snapshots
                 WHERE pool = ?1 AND volume = ?2 AND name = ?3"
            ),
            params![pool, volume, name],
            snapshot,
        )
        .optional()?)
}

/// Inserts or replaces a snapshot row.
pub fn put_snapshot(conn: &Connection, s: &VolumeSnapshotRecord) -> Result<(), DbError> {
    conn.execute(
        &format!(
            "INSERT INTO volume_snapshots ({SNAPSHOT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (pool, volume, name) DO UPDATE SET
                description = ?4, config = ?5, created_at = ?6, expires_at = ?7"
        ),
        params![
            s.pool,
            s.volume,
            s.name,
            s.description,
            to_json(&s.config),
            s.created_at,
            s.expires_at
        ],
    )?;
    Ok(())
}

/// Inserts a snapshot row ([`DbError::Exists`] when the name is taken).
pub fn insert_snapshot(conn: &Connection, s: &VolumeSnapshotRecord) -> Result<(), DbError> {
    if get_snapshot(conn, &s.pool, &s.volume, &s.name)?.is_some() {
        return Err(DbError::Exists {
            table: "volume_snapshots".to_owned(),
        });
    }
    put_snapshot(conn, s)
}

/// Renames a snapshot.
pub fn rename_snapshot(
    conn: &Connection,
    pool: &str,
    volume: &str,
    from: &str,
    to: &str,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE volume_snapshots SET name = ?4 WHERE pool = ?1 AND volume = ?2 AND name = ?3",
        params![pool, volume, from, to],
    )?;
    Ok(())
}

/// Deletes a snapshot row.
pub fn delete_snapshot(
    conn: &Connection,
    pool: &str,
    volume: &str,
    name: &str,
) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM volume_snapshots WHERE pool = ?1 AND volume = ?2 AND name = ?3",
        params![pool, volume, name],
    )?;
    Ok(())
}
