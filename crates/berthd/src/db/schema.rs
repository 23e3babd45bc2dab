//! Numbered, append-only schema updates.
//!
//! `UPDATES[i]` takes the schema from version `i` to `i + 1`. Never edit or reorder an entry
//! that has landed: add a new one. Before updating an existing database, a consistent copy of
//! it is written to `local.db.bak`, so a failed or unwanted upgrade can be undone by hand.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use super::DbError;

/// The schema updates, in order.
const UPDATES: &[&str] = &[
    // 1: server configuration.
    "CREATE TABLE config (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );",
    // 2: images, their aliases, storage pools and volumes.
    "CREATE TABLE images (
        fingerprint TEXT PRIMARY KEY NOT NULL,
        filename TEXT NOT NULL,
        size INTEGER NOT NULL,
        public INTEGER NOT NULL,
        auto_update INTEGER NOT NULL,
        architecture TEXT NOT NULL,
        type TEXT NOT NULL,
        split INTEGER NOT NULL,
        properties TEXT NOT NULL,
        profiles TEXT NOT NULL,
        metadata TEXT NOT NULL,
        created_at TEXT NOT NULL,
        uploaded_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL
    );
    CREATE TABLE image_aliases (
        name TEXT PRIMARY KEY NOT NULL,
        fingerprint TEXT NOT NULL REFERENCES images (fingerprint) ON DELETE CASCADE,
        description TEXT NOT NULL,
        type TEXT NOT NULL
    );
    CREATE TABLE storage_pools (
        name TEXT PRIMARY KEY NOT NULL,
        driver TEXT NOT NULL,
        description TEXT NOT NULL,
        config TEXT NOT NULL
    );
    CREATE TABLE storage_volumes (
        pool TEXT NOT NULL REFERENCES storage_pools (name),
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        config TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (pool, type, name)
    );",
    // 3: instances, profiles (with the default profile) and daemon-internal flags.
    r#"CREATE TABLE instances (
        name TEXT PRIMARY KEY NOT NULL,
        architecture TEXT NOT NULL,
        description TEXT NOT NULL,
        ephemeral INTEGER NOT NULL,
        profiles TEXT NOT NULL,
        config TEXT NOT NULL,
        devices TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL
    );
    CREATE TABLE profiles (
        name TEXT PRIMARY KEY NOT NULL,
        description TEXT NOT NULL,
        config TEXT NOT NULL,
        devices TEXT NOT NULL
    );
    INSERT INTO profiles (name, description, config, devices) VALUES (
        'default', 'Default berth profile', '{}',
        '{"root":{"path":"/","pool":"default","type":"disk"}}'
    );
    CREATE TABLE internal (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );"#,
    // 4: projects. Instances keep their host-wide name (`PROJECT_NAME` outside `default`)
    // and record their project; profiles are keyed by project and name.
    r#"CREATE TABLE projects (
        name TEXT PRIMARY KEY NOT NULL,
        description TEXT NOT NULL,
        config TEXT NOT NULL
    );
    INSERT INTO projects (name, description, config) VALUES (
        'default', 'Default berth project',
        '{"features.images":"true","features.networks":"true","features.profiles":"true","features.storage.buckets":"true","features.storage.volumes":"true"}'
    );
    ALTER TABLE instances ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
    CREATE TABLE profiles_by_project (
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        config TEXT NOT NULL,
        devices TEXT NOT NULL,
        PRIMARY KEY (project, name)
    );
    INSERT INTO profiles_by_project (project, name, description, config, devices)
        SELECT 'default', name, description, config, devices FROM profiles;
    DROP TABLE profiles;
    ALTER TABLE profiles_by_project RENAME TO profiles;"#,
    // 5: instance snapshots, keyed by the instance's host-wide name.
    "CREATE TABLE snapshots (
        instance TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        architecture TEXT NOT NULL,
        ephemeral INTEGER NOT NULL,
        stateful INTEGER NOT NULL,
        profiles TEXT NOT NULL,
        config TEXT NOT NULL,
        devices TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        PRIMARY KEY (instance, name)
    );",
    // 6: images per project: one row and file per image; the projects holding it, each
    // with its own public flag, properties, profiles and expiry; aliases keyed by project.
    "CREATE TABLE image_projects (
        fingerprint TEXT NOT NULL REFERENCES images (fingerprint) ON DELETE CASCADE,
        project TEXT NOT NULL,
        public INTEGER NOT NULL,
        auto_update INTEGER NOT NULL,
        properties TEXT NOT NULL,
        profiles TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        PRIMARY KEY (fingerprint, project)
    );
    INSERT INTO image_projects
        (fingerprint, project, public, auto_update, properties, profiles, expires_at)
        SELECT fingerprint, 'default', public, auto_update, properties, profiles, expires_at
        FROM images;
    CREATE TABLE image_aliases_by_project (
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        fingerprint TEXT NOT NULL REFERENCES images (fingerprint) ON DELETE CASCADE,
        description TEXT NOT NULL,
        type TEXT NOT NULL,
        PRIMARY KEY (project, name)
    );
    INSERT INTO image_aliases_by_project (project, name, fingerprint, description, type)
        SELECT 'default', name, fingerprint, description, type FROM image_aliases;
    DROP TABLE image_aliases;
    ALTER TABLE image_aliases_by_project RENAME TO image_aliases;",
    // 7: managed networks, and the warnings the server raises (one row per type and
    // object, counted).
    "CREATE TABLE networks (
        name TEXT PRIMARY KEY NOT NULL,
        type TEXT NOT NULL,
        description TEXT NOT NULL,
        config TEXT NOT NULL
    );
    CREATE TABLE warnings (
        uuid TEXT PRIMARY KEY NOT NULL,
        project TEXT NOT NULL,
        type TEXT NOT NULL,
        entity_url TEXT NOT NULL,
        severity TEXT NOT NULL,
        status TEXT NOT NULL,
        count INTEGER NOT NULL,
        first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        last_message TEXT NOT NULL,
        UNIQUE (type, entity_url)
    );",
    // 8: the trust store: client certificates (DER, its SHA-256 the key) and the projects
    // a restricted one may reach.
    "CREATE TABLE certificates (
        fingerprint TEXT PRIMARY KEY NOT NULL,
        type TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        certificate BLOB NOT NULL,
        restricted INTEGER NOT NULL,
        projects TEXT NOT NULL
    );",
    // 9: images fetched for an instance (`cached`), flushed once unused for
    // `images.remote_cache_expiry` days.
    "ALTER TABLE images ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;",
    // 10: volumes record their project (an instance's, or the project holding a custom
    // volume; the `name` column stays the host-wide name, as on disk), and custom volumes
    // have snapshots.
    "ALTER TABLE storage_volumes ADD COLUMN project TEXT NOT NULL DEFAULT 'default';
    UPDATE storage_volumes SET project = (
        SELECT project FROM instances WHERE instances.name = storage_volumes.name
    ) WHERE type = 'container' AND name IN (SELECT name FROM instances);
    CREATE TABLE volume_snapshots (
        pool TEXT NOT NULL,
        volume TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        config TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        PRIMARY KEY (pool, volume, name)
    );",
    // 11: instance backups (their files are under DIR/backups/instances/INSTANCE/).
    "CREATE TABLE instance_backups (
        instance TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        instance_only INTEGER NOT NULL,
        optimized_storage INTEGER NOT NULL,
        compression_algorithm TEXT NOT NULL,
        PRIMARY KEY (instance, name)
    );",
];

/// The schema version this berthd writes.
#[cfg(test)]
fn latest() -> usize {
    UPDATES.len()
}

fn current(conn: &Connection) -> Result<usize, rusqlite::Error> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema (
            version INTEGER PRIMARY KEY NOT NULL,
            updated_at TEXT NOT NULL
        );",
    )?;
    let v: Option<i64> = conn
        .query_row("SELECT MAX(version) FROM schema", [], |r| r.get(0))
        .optional()?
        .flatten();
    Ok(usize::try_from(v.unwrap_or(0)).unwrap_or(0))
}

/// Brings the schema of the database at `path` up to [`latest`].
pub fn update(conn: &mut Connection, path: &Path) -> Result<(), DbError> {
    apply(conn, path, UPDATES)
}

fn apply(conn: &mut Connection, path: &Path, updates: &[&str]) -> Result<(), DbError> {
    let latest = updates.len();
    let found = current(conn)?;
    if found > latest {
        return Err(DbError::TooNew {
            found,
            known: latest,
        });
    }
    if found == latest {
        return Ok(());
    }
    if found > 0 {
        let bak = path.with_extension("db.bak");
        conn.backup(
            rusqlite::MAIN_DB,
            &bak,
            None::<fn(rusqlite::backup::Progress)>,
        )
        .map_err(|source| DbError::Backup {
            path: bak.display().to_string(),
            source,
        })?;
        tracing::warn!(from = found, to = latest, backup = %bak.display(), "Updating database schema");
    }
    for (i, sql) in updates.iter().enumerate().skip(found) {
        let version = i + 1;
        let err = |source| DbError::Update { version, source };
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.execute(
            "INSERT INTO schema (version, updated_at) VALUES (?1, ?2)",
            rusqlite::params![version as i64, crate::time::now_rfc3339()],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_reaches_latest_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.db");
        let mut conn = Connection::open(&path).unwrap();
        update(&mut conn, &path).unwrap();
        assert_eq!(current(&conn).unwrap(), latest());
        update(&mut conn, &path).unwrap();
        assert!(
            !dir.path().join("local.db.bak").exists(),
            "no backup without an update"
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.db");
        let mut conn = Connection::open(&path).unwrap();
        update(&mut conn, &path).unwrap();
        conn.execute("INSERT INTO schema VALUES (?1, 'x')", [latest() as i64 + 1])
            .unwrap();
        assert!(matches!(
            update(&mut conn, &path),
            Err(DbError::TooNew { .. })
        ));
    }

    #[test]
    fn older_schema_is_backed_up_then_updated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.db");
        let mut conn = Connection::open(&path).unwrap();
        let first = ["CREATE TABLE a (x TEXT);"];
        apply(&mut conn, &path, &first).unwrap();
        conn.execute("INSERT INTO a VALUES ('kept')", []).unwrap();
        apply(&mut conn, &path, &[first[0], "CREATE TABLE b (y TEXT);"]).unwrap();
        assert_eq!(current(&conn).unwrap(), 2);
        let bak = Connection::open(dir.path().join("local.db.bak")).unwrap();
        assert_eq!(
            current(&bak).unwrap(),
            1,
            "the backup holds the database before the update"
        );
        let x: String = bak.query_row("SELECT x FROM a", [], |r| r.get(0)).unwrap();
        assert_eq!(x, "kept");
    }
}
