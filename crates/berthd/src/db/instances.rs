//! The instances, profiles and internal tables.

use std::collections::BTreeMap;

use berth_api::instance::Device;
use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, from_json, to_json};

/// A stored instance.
#[derive(Debug, Clone, Default)]
pub struct InstanceRecord {
    pub name: String,
    pub architecture: String,
    pub description: String,
    pub ephemeral: bool,
    pub profiles: Vec<String>,
    pub config: BTreeMap<String, String>,
    pub devices: BTreeMap<String, Device>,
    pub created_at: String,
    pub last_used_at: String,
}

/// A stored profile.
#[derive(Debug, Clone, Default)]
pub struct ProfileRecord {
    pub name: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
    pub devices: BTreeMap<String, Device>,
}

const COLUMNS: &str = "name, architecture, description, ephemeral, profiles, config, devices, created_at, last_used_at";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<InstanceRecord> {
    Ok(InstanceRecord {
        name: r.get(0)?,
        architecture: r.get(1)?,
        description: r.get(2)?,
        ephemeral: r.get(3)?,
        profiles: from_json(&r.get::<_, String>(4)?),
        config: from_json(&r.get::<_, String>(5)?),
        devices: from_json(&r.get::<_, String>(6)?),
        created_at: r.get(7)?,
        last_used_at: r.get(8)?,
    })
}

/// Every instance, by name.
pub fn list(conn: &Connection) -> Result<Vec<InstanceRecord>, DbError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM instances ORDER BY name"))?;
    Ok(stmt.query_map([], record)?.collect::<Result<_, _>>()?)
}

/// One instance.
pub fn get(conn: &Connection, name: &str) -> Result<Option<InstanceRecord>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM instances WHERE name = ?1"),
            [name],
            record,
        )
        .optional()?)
}

/// Inserts an instance and its root volume record in one transaction.
pub fn insert(conn: &mut Connection, i: &InstanceRecord, pool: &str) -> Result<(), DbError> {
    let tx = conn.transaction()?;
    tx.execute(
        &format!("INSERT INTO instances ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        params![
            i.name,
            i.architecture,
            i.description,
            i.ephemeral,
            to_json(&i.profiles),
            to_json(&i.config),
            to_json(&i.devices),
            i.created_at,
            i.last_used_at
        ],
    )?;
    tx.execute(
        "INSERT INTO storage_volumes (pool, type, name, description, config, created_at)
         VALUES (?1, 'container', ?2, '', '{}', ?3)",
        params![pool, i.name, i.created_at],
    )?;
    tx.commit()?;
    Ok(())
}

/// Replaces an instance's writable fields.
pub fn update(conn: &Connection, i: &InstanceRecord) -> Result<(), DbError> {
    conn.execute(
        "UPDATE instances SET description = ?2, ephemeral = ?3, profiles = ?4, config = ?5, devices = ?6 WHERE name = ?1",
        params![i.name, i.description, i.ephemeral, to_json(&i.profiles), to_json(&i.config), to_json(&i.devices)],
    )?;
    Ok(())
}

/// Replaces an instance's configuration.
pub fn set_config(
    conn: &Connection,
    name: &str,
    config: &BTreeMap<String, String>,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE instances SET config = ?2 WHERE name = ?1",
        params![name, to_json(config)],
    )?;
    Ok(())
}

/// Deletes an instance and its volume records.
pub fn delete(conn: &mut Connection, name: &str) -> Result<(), DbError> {
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM instances WHERE name = ?1", [name])?;
    tx.execute(
        "DELETE FROM storage_volumes WHERE type = 'container' AND name = ?1",
        [name],
    )?;
    tx.commit()?;
    Ok(())
}

/// Renames an instance and its volume records; `false` when `to` is taken.
pub fn rename(conn: &mut Connection, from: &str, to: &str) -> Result<bool, DbError> {
    let tx = conn.transaction()?;
    if get(&tx, to)?.is_some() {
        return Ok(false);
    }
    tx.execute(
        "UPDATE instances SET name = ?2 WHERE name = ?1",
        params![from, to],
    )?;
    tx.execute(
        "UPDATE storage_volumes SET name = ?2 WHERE type = 'container' AND name = ?1",
        params![from, to],
    )?;
    tx.commit()?;
    Ok(true)
}

/// One profile.
pub fn profile(conn: &Connection, name: &str) -> Result<Option<ProfileRecord>, DbError> {
    Ok(conn
        .query_row(
            "SELECT name, description, config, devices FROM profiles WHERE name = ?1",
            [name],
            |r| {
                Ok(ProfileRecord {
                    name: r.get(0)?,
                    description: r.get(1)?,
                    config: from_json(&r.get::<_, String>(2)?),
                    devices: from_json(&r.get::<_, String>(3)?),
                })
            },
        )
        .optional()?)
}

/// Every profile.
pub fn all_profiles(conn: &Connection) -> Result<Vec<ProfileRecord>, DbError> {
    let mut stmt = conn
        .prepare_cached("SELECT name, description, config, devices FROM profiles ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok(ProfileRecord {
            name: r.get(0)?,
            description: r.get(1)?,
            config: from_json(&r.get::<_, String>(2)?),
            devices: from_json(&r.get::<_, String>(3)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Inserts a profile; `false` when the name is taken.
pub fn insert_profile(conn: &Connection, p: &ProfileRecord) -> Result<bool, DbError> {
    let n = conn.execute(
        "INSERT INTO profiles (name, description, config, devices) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO NOTHING",
        params![
            p.name,
            p.description,
            to_json(&p.config),
            to_json(&p.devices)
        ],
    )?;
    Ok(n == 1)
}

/// Replaces a profile's description, config and devices.
pub fn update_profile(conn: &Connection, p: &ProfileRecord) -> Result<(), DbError> {
    conn.execute(
        "UPDATE profiles SET description = ?2, config = ?3, devices = ?4 WHERE name = ?1",
        params![
            p.name,
            p.description,
            to_json(&p.config),
            to_json(&p.devices)
        ],
    )?;
    Ok(())
}

/// Deletes a profile.
pub fn delete_profile(conn: &Connection, name: &str) -> Result<(), DbError> {
    conn.execute("DELETE FROM profiles WHERE name = ?1", [name])?;
    Ok(())
}

/// Renames a profile and the references of every instance to it, in one transaction;
/// `false` when `to` is taken.
pub fn rename_profile(conn: &mut Connection, from: &str, to: &str) -> Result<bool, DbError> {
    let tx = conn.transaction()?;
    if profile(&tx, to)?.is_some() {
        return Ok(false);
    }
    tx.execute(
        "UPDATE profiles SET name = ?2 WHERE name = ?1",
        params![from, to],
    )?;
    for mut i in list(&tx)? {
        if i.profiles.iter().any(|p| p == from) {
            for p in &mut i.profiles {
                if p == from {
                    *p = to.to_owned();
                }
            }
            tx.execute(
                "UPDATE instances SET profiles = ?2 WHERE name = ?1",
                params![i.name, to_json(&i.profiles)],
            )?;
        }
    }
    tx.commit()?;
    Ok(true)
}

/// A daemon-internal flag.
pub fn internal(conn: &Connection, key: &str) -> Result<Option<String>, DbError> {
    Ok(conn
        .query_row("SELECT value FROM internal WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Sets a daemon-internal flag.
pub fn set_internal(conn: &Connection, key: &str, value: &str) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO internal (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
        params![key, value],
    )?;
    Ok(())
}
