//! berthd's state database: SQLite in WAL mode under `DIR/database/`.
//!
//! One connection, behind a mutex, used from blocking threads. Writes are synchronous
//! (`synchronous=FULL`), so nothing acknowledged to a client is lost on a crash or power
//! cut. The schema evolves through numbered, append-only updates (see [`schema`]).
//!
//! Transactions belong to the services: [`Db::read`] hands a connection, [`Db::write`] a
//! transaction that commits when the closure returns `Ok` and rolls back on `Err`;
//! [`Db::read_kept`] keeps what it read until the database changes. The
//! repository functions (one file per table group) take a `&Connection` (a transaction
//! is one) and never begin a transaction themselves, so a state change made of several
//! rows is one write. Constraint violations are classified ([`DbError::Exists`],
//! [`DbError::Missing`]) for the services to name the object; no SQLite text reaches a
//! user.

pub mod backups;
pub mod certificates;
pub mod config;
pub mod images;
pub mod instances;
pub mod internal;
pub mod networks;
pub mod pools;
pub mod profiles;
pub mod projects;
pub mod schema;
pub mod snapshots;
pub mod volumes;
pub mod warnings;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Transaction};

use crate::error::Failure;

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("Failed to create database directory {path}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Failed to open database {path}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("Database schema version {found} is newer than this berthd knows ({known})")]
    TooNew { found: usize, known: usize },
    #[error("Failed to back up database to {path}")]
    Backup {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("Failed to apply database update {version}")]
    Update {
        version: usize,
        #[source]
        source: rusqlite::Error,
    },
    /// A row with the same key exists (a unique or primary key constraint).
    #[error("A record in {table} with the same key exists")]
    Exists { table: String },
    /// A row refers to one that does not exist, or one being deleted is still referred
    /// to (a foreign key constraint).
    #[error("A record refers to one that does not exist")]
    Missing,
    /// A stored JSON column no longer parses.
    #[error("The stored {field} of {object} is corrupt")]
    Corrupt {
        object: String,
        field: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("Database query failed")]
    Query(#[source] rusqlite::Error),
    #[error("Database task failed")]
    Task,
}

/// What a JSON column that fails to parse reports through rusqlite.
#[derive(Debug, thiserror::Error)]
#[error("The stored {field} of {object} is corrupt")]
struct CorruptColumn {
    object: String,
    field: &'static str,
    #[source]
    source: serde_json::Error,
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi::{
            SQLITE_CONSTRAINT_FOREIGNKEY, SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE,
        };
        match e {
            rusqlite::Error::SqliteFailure(f, msg)
                if f.extended_code == SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                // "UNIQUE constraint failed: image_aliases.project, image_aliases.name"
                let table = msg
                    .as_deref()
                    .and_then(|m| m.split(": ").nth(1))
                    .and_then(|cols| cols.split('.').next())
                    .unwrap_or("the database")
                    .to_owned();
                DbError::Exists { table }
            }
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == SQLITE_CONSTRAINT_FOREIGNKEY =>
            {
                DbError::Missing
            }
            rusqlite::Error::FromSqlConversionFailure(_, _, boxed) => {
                match boxed.downcast::<CorruptColumn>() {
                    Ok(c) => DbError::Corrupt {
                        object: c.object,
                        field: c.field,
                        source: c.source,
                    },
                    Err(other) => DbError::Query(rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Text,
                        other,
                    )),
                }
            }
            other => DbError::Query(other),
        }
    }
}

impl From<DbError> for Failure {
    /// What the user sees of a database failure: a constraint as the conflict it is, a
    /// corrupt column naming its object; anything else one generic line (the log has the
    /// cause). Services that know the object name it themselves before this applies.
    fn from(e: DbError) -> Self {
        let message = e.to_string();
        match e {
            DbError::Exists { .. } => Failure::exists(message).with_source(e),
            DbError::Missing => Failure::conflict(message).with_source(e),
            other => Failure::internal(message).with_source(other),
        }
    }
}

/// The database handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    /// What [`Db::read_kept`] keeps, by type: the database's version when it was read,
    /// and the value.
    kept: Arc<Mutex<HashMap<TypeId, KeptValue>>>,
}

/// A value made from the database that [`Db::read_kept`] keeps until the database
/// changes: one per type, made by the type's own `read` (so two readers never share a
/// kept value).
pub trait Kept: Sized + Send + Sync + 'static {
    fn read(c: &Connection) -> Result<Self, DbError>;
}

/// A kept value and the [`version`] it was read at.
type KeptValue = ((u64, i64), Arc<dyn Any + Send + Sync>);

/// Which state of the database a connection reads: the rows this connection changed so
/// far, and SQLite's `data_version`, which moves when another connection commits (an
/// administrator's `sqlite3`, say).
fn version(conn: &Connection) -> rusqlite::Result<(u64, i64)> {
    let other = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
    Ok((conn.total_changes(), other))
}

impl Db {
    /// Opens (creating if needed) `dir/local.db` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Db, DbError> {
        crate::paths::create_private_dir(dir).map_err(|source| DbError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join("local.db");
        let open_err = |source| DbError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
        )
        .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        schema::update(&mut conn, &path)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            kept: Arc::default(),
        })
    }

    /// Runs `f` with the connection on a blocking thread: reads.
    pub async fn read<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&Connection) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&guard)
        })
        .await
        .map_err(|_| E::from(DbError::Task))?
    }

    /// [`Db::read`] of a [`Kept`] value, kept until the database changes. A list of
    /// thousands then parses its records once per change, not once per list.
    pub async fn read_kept<T: Kept, E: From<DbError> + Send + 'static>(&self) -> Result<Arc<T>, E> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let guard = db.conn.lock().unwrap_or_else(|p| p.into_inner());
            let now = version(&guard).map_err(DbError::from)?;
            let lock = || db.kept.lock().unwrap_or_else(|p| p.into_inner());
            let found = lock().get(&TypeId::of::<T>()).cloned();
            if let Some((at, value)) = found
                && at == now
                && let Ok(value) = value.downcast::<T>()
            {
                return Ok(value);
            }
            let value = Arc::new(T::read(&guard)?);
            lock().insert(TypeId::of::<T>(), (now, value.clone()));
            Ok(value)
        })
        .await
        .map_err(|_| E::from(DbError::Task))?
    }

    /// Runs `f` in a transaction on a blocking thread: committed when `f` returns `Ok`,
    /// rolled back on `Err`.
    pub async fn write<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnOnce(&Transaction<'_>) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.write_sync(f))
            .await
            .map_err(|_| E::from(DbError::Task))?
    }

    /// [`Db::read`] on the current thread (start-up, undo steps).
    pub fn read_sync<R, E>(&self, f: impl FnOnce(&Connection) -> Result<R, E>) -> Result<R, E> {
        let guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    /// [`Db::write`] on the current thread (start-up, undo steps).
    pub fn write_sync<R, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = guard.transaction().map_err(DbError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(DbError::from)?;
        Ok(out)
    }
}

/// The rows of a pass over many objects (start-up, background passes): a row whose stored
/// JSON is corrupt is logged and left out, so one broken object does not stop the others;
/// any other failure fails the read.
pub fn readable<T>(rows: impl Iterator<Item = rusqlite::Result<T>>) -> Result<Vec<T>, DbError> {
    let mut out = Vec::new();
    for row in rows {
        match row.map_err(DbError::from) {
            Ok(r) => out.push(r),
            Err(e @ DbError::Corrupt { .. }) => {
                tracing::error!(error = %crate::error::chain(&e), "Left out of a pass");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// A value as the JSON text stored in a column.
pub fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A JSON column back as a value; one that does not parse is an error naming `object`
/// (and, through [`DbError::Corrupt`], the field), never a silent default.
pub fn from_json<T: serde::de::DeserializeOwned>(
    object: impl FnOnce() -> String,
    field: &'static str,
    text: &str,
) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|source| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            Box::new(CorruptColumn {
                object: object(),
                field,
                source,
            }),
        )
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh database in a temporary directory.
    pub fn open() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        (dir, db)
    }

    #[test]
    fn constraints_are_classified() {
        let (_dir, db) = open();
        let e = db
            .write_sync(|tx| {
                tx.execute("INSERT INTO config (key, value) VALUES ('a', '1')", [])?;
                tx.execute("INSERT INTO config (key, value) VALUES ('a', '2')", [])?;
                Ok::<_, DbError>(())
            })
            .unwrap_err();
        assert!(
            matches!(&e, DbError::Exists { table } if table == "config"),
            "{e:?}"
        );
        let e = db
            .write_sync(|tx| {
                tx.execute(
                    "INSERT INTO storage_volumes (pool, type, name, description, config, created_at)
                     VALUES ('nowhere', 'container', 'c', '', '{}', '')",
                    [],
                )?;
                Ok::<_, DbError>(())
            })
            .unwrap_err();
        assert!(matches!(e, DbError::Missing), "{e:?}");
        let user: Failure = e.into();
        assert!(
            !user.message().contains("FOREIGN KEY"),
            "{}",
            user.message()
        );
    }

    #[tokio::test]
    async fn kept_reads_last_until_the_database_changes() {
        #[derive(Debug, PartialEq)]
        struct Count(i64);
        impl Kept for Count {
            fn read(c: &Connection) -> Result<Count, DbError> {
                Ok(Count(c.query_row(
                    "SELECT COUNT(*) FROM config",
                    [],
                    |r| r.get(0),
                )?))
            }
        }
        let (dir, db) = open();
        let count = || db.read_kept::<Count, DbError>();
        let first = count().await.unwrap();
        let again = count().await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "kept while nothing changed");
        db.write_sync(|tx| {
            tx.execute("INSERT INTO config (key, value) VALUES ('a', '1')", [])?;
            Ok::<_, DbError>(())
        })
        .unwrap();
        assert_eq!(
            *count().await.unwrap(),
            Count(1),
            "read again after a write"
        );
        // Another connection's commit (an administrator's sqlite3) is seen too.
        let other = Connection::open(dir.path().join("local.db")).unwrap();
        other
            .execute("INSERT INTO config (key, value) VALUES ('b', '2')", [])
            .unwrap();
        assert_eq!(*count().await.unwrap(), Count(2));
    }

    #[test]
    fn failed_writes_roll_back() {
        let (_dir, db) = open();
        let _ = db.write_sync(|tx| {
            tx.execute("INSERT INTO config (key, value) VALUES ('a', '1')", [])?;
            Err::<(), _>(DbError::Task)
        });
        let n: i64 = db
            .read_sync(|c| {
                Ok::<_, DbError>(c.query_row("SELECT COUNT(*) FROM config", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(n, 0);
    }
}
