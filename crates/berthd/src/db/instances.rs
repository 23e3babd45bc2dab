//! The instances table, with each instance's root volume row in `storage_volumes`.
//!
//! An instance's `name` here is its host-wide name (see [`crate::model::names`]).

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::{DbError, from_json, to_json};
use crate::model::records::InstanceRecord;

const COLUMNS: &str = "name, architecture, description, ephemeral, profiles, config, devices, created_at, last_used_at, project";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<InstanceRecord> {
    let name: String = r.get(0)?;
    let of = || format!("instance {:?}", crate::model::names::api_name(&name));
    Ok(InstanceRecord {
        architecture: r.get(1)?,
        description: r.get(2)?,
        ephemeral: r.get(3)?,
        profiles: from_json(of, "profiles", &r.get::<_, String>(4)?)?,
        config: from_json(of, "config", &r.get::<_, String>(5)?)?,
        devices: from_json(of, "devices", &r.get::<_, String>(6)?)?,
        created_at: r.get(7)?,
        last_used_at: r.get(8)?,
        project: r.get(9)?,
        name,
    })
}

/// Every instance, by name.
pub fn list(conn: &Connection) -> Result<Vec<InstanceRecord>, DbError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM instances ORDER BY name"))?;
    Ok(stmt.query_map([], record)?.collect::<Result<_, _>>()?)
}

/// The `volatile.idmap.next` and `volatile.idmap.current` keys of every instance but
/// `except`, as configs holding only those: a create reads them with thousands of
/// instances stored, without decoding every record.
pub fn idmaps(conn: &Connection, except: &str) -> Result<Vec<BTreeMap<String, String>>, DbError> {
    const KEYS: [&str; 2] = ["volatile.idmap.next", "volatile.idmap.current"];
    let mut stmt = conn.prepare_cached(
        "SELECT json_extract(config, '$.\"volatile.idmap.next\"'), \
                json_extract(config, '$.\"volatile.idmap.current\"') \
         FROM instances WHERE name != ?1",
    )?;
    let rows = stmt.query_map([except], |r| {
        let mut config = BTreeMap::new();
        for (i, key) in KEYS.into_iter().enumerate() {
            if let Some(v) = r.get::<_, Option<String>>(i)? {
                config.insert(key.to_owned(), v);
            }
        }
        Ok(config)
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every instance whose row reads, by name (see [`super::readable`]).
pub fn list_readable(conn: &Connection) -> Result<Vec<InstanceRecord>, DbError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM instances ORDER BY name"))?;
    super::readable(stmt.query_map([], record)?)
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

/// Inserts an instance and its root volume row on `pool` ([`DbError::Exists`] when the
/// name is taken, [`DbError::Missing`] when the pool is gone).
pub fn insert(conn: &Connection, i: &InstanceRecord, pool: &str) -> Result<(), DbError> {
    conn.execute(
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
    conn.execute(
        "INSERT INTO storage_volumes (pool, type, name, description, config, created_at, project)
         VALUES (?1, 'container', ?2, '', '{}', ?3, ?4)",
        params![pool, i.name, i.created_at, i.project],
    )?;
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

/// Records when an instance was last started.
pub fn set_last_used(conn: &Connection, name: &str, at: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE instances SET last_used_at = ?2 WHERE name = ?1",
        params![name, at],
    )?;
    Ok(())
}

/// Deletes an instance, its snapshot, backup and volume rows.
pub fn delete(conn: &Connection, name: &str) -> Result<(), DbError> {
    conn.execute("DELETE FROM instances WHERE name = ?1", [name])?;
    conn.execute("DELETE FROM snapshots WHERE instance = ?1", [name])?;
    conn.execute("DELETE FROM instance_backups WHERE instance = ?1", [name])?;
    conn.execute(
        "DELETE FROM storage_volumes WHERE type = 'container' AND name = ?1",
        [name],
    )?;
    Ok(())
}

/// Renames an instance with its snapshot and volume rows ([`DbError::Exists`] when `to`
/// is taken).
pub fn rename(conn: &Connection, from: &str, to: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE instances SET name = ?2 WHERE name = ?1",
        params![from, to],
    )?;
    conn.execute(
        "UPDATE snapshots SET instance = ?2 WHERE instance = ?1",
        params![from, to],
    )?;
    super::backups::rename_instance(conn, from, to)?;
    conn.execute(
        "UPDATE storage_volumes SET name = ?2 WHERE type = 'container' AND name = ?1",
        params![from, to],
    )?;
    Ok(())
}

/// Replaces the profile list of instance `name`.
pub fn set_profiles(conn: &Connection, name: &str, profiles: &[String]) -> Result<(), DbError> {
    conn.execute(
        "UPDATE instances SET profiles = ?2 WHERE name = ?1",
        params![name, to_json(&profiles)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::open;

    fn rec(name: &str) -> InstanceRecord {
        InstanceRecord {
            name: name.to_owned(),
            project: "default".to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn names_are_unique_and_pools_must_exist() {
        let (_dir, db) = open();
        db.write_sync(|tx| {
            tx.execute(
                "INSERT INTO storage_pools (name, driver, description, config) VALUES ('p', 'dir', '', '{}')",
                [],
            )?;
            insert(tx, &rec("c1"), "p")
        })
        .unwrap();
        let again = db.write_sync(|tx| insert(tx, &rec("c1"), "p"));
        assert!(matches!(again, Err(DbError::Exists { .. })));
        let gone = db.write_sync(|tx| insert(tx, &rec("c2"), "nowhere"));
        assert!(matches!(gone, Err(DbError::Missing)));
        assert!(
            db.read_sync(|c| get(c, "c2")).unwrap().is_none(),
            "nothing half-made"
        );
    }

    #[test]
    fn idmaps_are_read_without_the_records() {
        let (_dir, db) = open();
        let with = |name: &str, next: Option<&str>| {
            let mut r = rec(name);
            if let Some(n) = next {
                r.config
                    .insert("volatile.idmap.next".to_owned(), n.to_owned());
                r.config
                    .insert("volatile.idmap.current".to_owned(), "[]".to_owned());
            }
            r.config.insert("limits.cpu".to_owned(), "1".to_owned());
            r
        };
        db.write_sync(|tx| {
            tx.execute(
                "INSERT INTO storage_pools (name, driver, description, config) VALUES ('p', 'dir', '', '{}')",
                [],
            )?;
            insert(tx, &with("a", Some(r#"[{"Isuid":true}]"#)), "p")?;
            insert(tx, &with("b", None), "p")?;
            insert(tx, &with("me", Some("[]")), "p")
        })
        .unwrap();
        let mut got = db.read_sync(|c| idmaps(c, "me")).unwrap();
        got.sort();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].is_empty(), "{got:?}");
        assert_eq!(got[1]["volatile.idmap.next"], r#"[{"Isuid":true}]"#);
        assert_eq!(got[1]["volatile.idmap.current"], "[]");
        assert_eq!(got[1].len(), 2);
    }

    #[test]
    fn corrupt_columns_name_their_instance() {
        let (_dir, db) = open();
        db.write_sync(|tx| {
            tx.execute(
                "INSERT INTO storage_pools (name, driver, description, config) VALUES ('p', 'dir', '', '{}')",
                [],
            )?;
            insert(tx, &rec("c1"), "p")?;
            tx.execute("UPDATE instances SET config = 'not json'", [])?;
            Ok::<_, DbError>(())
        })
        .unwrap();
        let e = db.read_sync(|c| get(c, "c1")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "The stored config of instance \"c1\" is corrupt"
        );
        // A pass over every instance leaves the broken one out and goes on.
        db.write_sync(|tx| insert(tx, &rec("c2"), "p")).unwrap();
        assert!(db.read_sync(list).is_err());
        let readable = db.read_sync(list_readable).unwrap();
        assert_eq!(readable.len(), 1);
        assert_eq!(readable[0].name, "c2");
    }
}
