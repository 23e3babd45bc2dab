//! berthd's state database: SQLite in WAL mode under `DIR/database/`.
//!
//! One connection, behind a mutex, used from blocking threads. Writes are synchronous
//! (`synchronous=FULL`), so nothing acknowledged to a client is lost on a crash or power cut.
//! The schema evolves through numbered, append-only updates (see [`schema`]).

pub mod config;
pub mod images;
pub mod instances;
pub mod pools;
pub mod schema;
pub mod snapshots;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

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
    #[error("Database query failed")]
    Query(#[from] rusqlite::Error),
    #[error("Database task failed")]
    Task,
}

/// The database handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Db {
    /// Opens (creating if needed) `dir/local.db` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Db, DbError> {
        create_private_dir(dir).map_err(|source| DbError::CreateDir {
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
            path,
        })
    }

    /// The database file.
    #[allow(dead_code)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on a blocking thread.
    pub async fn call<R, F>(&self, f: F) -> Result<R, DbError>
    where
        F: FnOnce(&mut Connection) -> Result<R, DbError> + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|_| DbError::Task)?
    }

    /// Runs `f` with the connection on the current thread (start-up only).
    pub fn call_sync<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, DbError>,
    ) -> Result<R, DbError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

/// A value as the JSON text stored in a column.
pub fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A JSON column back as a value (the type's default when the text is unusable).
pub fn from_json<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

/// Creates `dir` (and parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}
