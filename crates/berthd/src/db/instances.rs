//! The instances, profiles, projects and internal tables.
//!
//! An instance's `name` here is its host-wide name: the API name in the `default` project,
//! `PROJECT_NAME` in another (project names hold no `_`, instance names neither), so
//! containers, volumes and cgroups of different projects never collide. Profiles are keyed
//! by project and name.

use std::collections::BTreeMap;

use berth_api::instance::Device;
use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, from_json, to_json};

/// A stored instance.
#[derive(Debug, Clone, Default)]
pub struct InstanceRecord {
    /// The host-wide name (see the module header); [`InstanceRecord::api_name`] is the
    /// name the API shows.
    pub name: String,
    pub project: String,
    pub architecture: String,
    pub description: String,
    pub ephemeral: bool,
    pub profiles: Vec<String>,
    pub config: BTreeMap<String, String>,
    pub devices: BTreeMap<String, Device>,
    pub created_at: String,
    pub last_used_at: String,
}

impl InstanceRecord {
    /// The instance's name within its project.
    pub fn api_name(&self) -> &str {
        api_name(&self.name)
    }
}

/// The host-wide name of instance `name` in `project`.
pub fn host_name(project: &str, name: &str) -> String {
    if project == berth_api::DEFAULT_PROJECT || project.is_empty() {
        name.to_owned()
    } else {
        format!("{project}_{name}")
    }
}

/// The name within its project of a host-wide instance name.
pub fn api_name(host_name: &str) -> &str {
    host_name.split_once('_').map_or(host_name, |(_, n)| n)
}

/// A stored profile.
#[derive(Debug, Clone, Default)]
pub struct ProfileRecord {
    pub project: String,
    pub name: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
    pub devices: BTreeMap<String, Device>,
}

const COLUMNS: &str = "name, architecture, description, ephemeral, profiles, config, devices, created_at, last_used_at, project";

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
        project: r.get(9)?,
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
        &format!(
            "INSERT INTO instances ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ),
        params![
            i.name,
            i.architecture,
            i.description,
            i.ephemeral,
            to_json(&i.profiles),
            to_json(&i.config),
            to_json(&i.devices),
            i.created_at,
            i.last_used_at,
            i.project
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
    tx.execute("DELETE FROM snapshots WHERE instance = ?1", [name])?;
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
        "UPDATE snapshots SET instance = ?2 WHERE instance = ?1",
        params![from, to],
    )?;
    tx.execute(
        "UPDATE storage_volumes SET name = ?2 WHERE type = 'container' AND name = ?1",
        params![from, to],
    )?;
    tx.commit()?;
    Ok(true)
}

const PROFILE_COLUMNS: &str = "project, name, description, config, devices";

fn profile_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProfileRecord> {
    Ok(ProfileRecord {
        project: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        config: from_json(&r.get::<_, String>(3)?),
        devices: from_json(&r.get::<_, String>(4)?),
    })
}

/// One profile of `project`.
pub fn profile(
    conn: &Connection,
    project: &str,
    name: &str,
) -> Result<Option<ProfileRecord>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {PROFILE_COLUMNS} FROM profiles WHERE project = ?1 AND name = ?2"),
            [project, name],
            profile_record,
        )
        .optional()?)
}

/// Every profile of every project.
pub fn all_profiles(conn: &Connection) -> Result<Vec<ProfileRecord>, DbError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PROFILE_COLUMNS} FROM profiles ORDER BY project, name"
    ))?;
    let rows = stmt.query_map([], profile_record)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Inserts a profile; `false` when the name is taken in its project.
pub fn insert_profile(conn: &Connection, p: &ProfileRecord) -> Result<bool, DbError> {
    let n = conn.execute(
        "INSERT INTO profiles (project, name, description, config, devices)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (project, name) DO NOTHING",
        params![
            p.project,
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
pub fn delete_profile(conn: &Connection, project: &str, name: &str) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM profiles WHERE project = ?1 AND name = ?2",
        [project, name],
    )?;
    Ok(())
}

/// Renames a profile of `project` and the references to it of every instance of
/// `users` (the projects whose instances use `project`'s profiles), in one transaction;
/// `false` when `to` is taken.
pub fn rename_profile(
    conn: &mut Connection,
    project: &str,
    users: &[String],
    from: &str,
    to: &str,
) -> Result<bool, DbError> {
    let tx = conn.transaction()?;
    if profile(&tx, project, to)?.is_some() {
        return Ok(false);
    }
    tx.execute(
        "UPDATE profiles SET name = ?3 WHERE project = ?1 AND name = ?2",
        params![project, from, to],
    )?;
    for mut i in list(&tx)? {
        if users.contains(&i.project) && i.profiles.iter().any(|p| p == from) {
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

/// A stored project.
#[derive(Debug, Clone, Default)]
pub struct ProjectRecord {
    pub name: String,
    pub description: String,
    pub config: BTreeMap<String, String>,
}

impl ProjectRecord {
    fn flag(&self, key: &str) -> bool {
        self.config.get(key).is_some_and(|v| v == "true")
    }

    /// The project whose profiles this project's instances use.
    pub fn profiles_project(&self) -> &str {
        if self.flag("features.profiles") {
            &self.name
        } else {
            berth_api::DEFAULT_PROJECT
        }
    }

    /// The project whose images this project's requests and instances use.
    pub fn images_project(&self) -> &str {
        if self.flag("features.images") {
            &self.name
        } else {
            berth_api::DEFAULT_PROJECT
        }
    }

    /// Whether `restricted=true`.
    pub fn restricted(&self) -> bool {
        self.flag("restricted")
    }
}

fn project_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectRecord> {
    Ok(ProjectRecord {
        name: r.get(0)?,
        description: r.get(1)?,
        config: from_json(&r.get::<_, String>(2)?),
    })
}

/// Every project, by name.
pub fn projects(conn: &Connection) -> Result<Vec<ProjectRecord>, DbError> {
    let mut stmt =
        conn.prepare_cached("SELECT name, description, config FROM projects ORDER BY name")?;
    Ok(stmt
        .query_map([], project_record)?
        .collect::<Result<_, _>>()?)
}

/// One project.
pub fn project(conn: &Connection, name: &str) -> Result<Option<ProjectRecord>, DbError> {
    Ok(conn
        .query_row(
            "SELECT name, description, config FROM projects WHERE name = ?1",
            [name],
            project_record,
        )
        .optional()?)
}

/// Gives project `p`, when it has its own profiles, an empty `default` profile unless it
/// has one.
fn own_default_profile(conn: &Connection, p: &ProjectRecord) -> Result<(), DbError> {
    if p.profiles_project() == p.name {
        insert_profile(
            conn,
            &ProfileRecord {
                project: p.name.clone(),
                name: "default".to_owned(),
                description: format!("Default berth profile for project {}", p.name),
                ..ProfileRecord::default()
            },
        )?;
    }
    Ok(())
}

/// Inserts a project and, when it has its own profiles, its `default` profile;
/// `false` when the name is taken.
pub fn insert_project(conn: &mut Connection, p: &ProjectRecord) -> Result<bool, DbError> {
    let tx = conn.transaction()?;
    let n = tx.execute(
        "INSERT INTO projects (name, description, config) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO NOTHING",
        params![p.name, p.description, to_json(&p.config)],
    )?;
    if n == 0 {
        return Ok(false);
    }
    own_default_profile(&tx, p)?;
    tx.commit()?;
    Ok(true)
}

/// Replaces a project's description and config; a project that gains its own profiles
/// gets a `default` one.
pub fn update_project(conn: &mut Connection, p: &ProjectRecord) -> Result<(), DbError> {
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE projects SET description = ?2, config = ?3 WHERE name = ?1",
        params![p.name, p.description, to_json(&p.config)],
    )?;
    own_default_profile(&tx, p)?;
    tx.commit()?;
    Ok(())
}

/// Deletes a project and its profiles.
pub fn delete_project(conn: &mut Connection, name: &str) -> Result<(), DbError> {
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM profiles WHERE project = ?1", [name])?;
    tx.execute("DELETE FROM projects WHERE name = ?1", [name])?;
    tx.commit()?;
    Ok(())
}

/// Renames a project without instances, with its profiles, images and aliases.
pub fn rename_project(conn: &mut Connection, from: &str, to: &str) -> Result<bool, DbError> {
    let tx = conn.transaction()?;
    if project(&tx, to)?.is_some() {
        return Ok(false);
    }
    tx.execute(
        "UPDATE projects SET name = ?2 WHERE name = ?1",
        params![from, to],
    )?;
    for table in ["profiles", "image_projects", "image_aliases"] {
        tx.execute(
            &format!("UPDATE {table} SET project = ?2 WHERE project = ?1"),
            params![from, to],
        )?;
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

/// Removes a daemon-internal flag.
pub fn delete_internal(conn: &Connection, key: &str) -> Result<(), DbError> {
    conn.execute("DELETE FROM internal WHERE key = ?1", [key])?;
    Ok(())
}

/// The daemon-internal flags whose key starts with `prefix`.
pub fn internal_prefixed(
    conn: &Connection,
    prefix: &str,
) -> Result<Vec<(String, String)>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT key, value FROM internal WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
    )?;
    let rows = stmt.query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Sets a daemon-internal flag.
pub fn set_internal(conn: &Connection, key: &str, value: &str) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO internal (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
        params![key, value],
    )?;
    Ok(())
}
