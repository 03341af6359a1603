//! Sources: what a component captures. Each kind is prepared first (connect, check
//! versions and credentials, estimate size) so that bad settings fail before any upload
//! starts, then captured into the pipeline on a blocking thread.

pub mod child;
pub mod files;
pub mod mysql;
pub mod pgtls;
pub mod postgres;
pub mod sqlite;

use arca_api::manifest::Items;
use arca_api::ComponentKind;

use crate::pipeline::PipelineWriter;

/// What went wrong while capturing; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The server cannot be reached.
    #[error("cannot connect to {what}: {detail}; check host, port and that the server is running")]
    Unreachable {
        /// Server description.
        what: String,
        /// Underlying error.
        detail: String,
    },
    /// TLS with the server failed or is required.
    #[error("TLS with {what} failed: {detail}")]
    Tls {
        /// Server description.
        what: String,
        /// What to change.
        detail: String,
    },
    /// Login refused.
    #[error("{what} refused the login for user {user:?}: {detail}; check the user and its password file")]
    Login {
        /// Server description.
        what: String,
        /// User.
        user: String,
        /// Server message.
        detail: String,
    },
    /// Database does not exist.
    #[error("database {database:?} does not exist on {what}: check the component's database name")]
    NoDatabase {
        /// Server description.
        what: String,
        /// Database.
        database: String,
    },
    /// A needed tool is missing or too old.
    #[error("{0}")]
    MissingTool(String),
    /// A tool failed.
    #[error("{tool} failed: {detail}")]
    Tool {
        /// The tool.
        tool: String,
        /// What it said.
        detail: String,
    },
    /// A tool produced nothing.
    #[error("{tool} produced an empty dump: refusing to store an empty backup; check the database and its permissions")]
    Empty {
        /// The tool.
        tool: String,
    },
    /// A query failed.
    #[error("{what}: {detail}")]
    Query {
        /// What was asked.
        what: String,
        /// Server message.
        detail: String,
    },
    /// A path to capture is missing or unreadable.
    #[error("{0}")]
    Path(String),
    /// The SQLite copy is damaged.
    #[error("{0}")]
    Integrity(String),
    /// The pipeline (compression, encryption, upload) failed.
    #[error("writing the artifact failed: {0}")]
    Write(std::io::Error),
    /// Local I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// What a capture learned, for the manifest.
#[derive(Debug, Clone, Default)]
pub struct CaptureInfo {
    /// Server version.
    pub server_version: Option<String>,
    /// Tool and version.
    pub tool: Option<String>,
    /// Database name.
    pub database: Option<String>,
    /// Database owner.
    pub owner: Option<String>,
    /// Database encoding.
    pub encoding: Option<String>,
    /// Captured path.
    pub path: Option<String>,
    /// Counts.
    pub items: Items,
    /// Warnings (no patient data).
    pub warnings: Vec<String>,
}

/// A configured source with its secrets resolved.
#[derive(Debug, Clone)]
pub enum Source {
    /// Roles and tablespaces.
    PostgresGlobals(postgres::PgGlobals),
    /// One PostgreSQL database.
    Postgres(postgres::PgDatabase),
    /// One MariaDB/MySQL database.
    Mysql(mysql::MyDatabase),
    /// A SQLite file.
    Sqlite(sqlite::SqliteFile),
    /// A directory tree.
    Files(files::FileTree),
}

/// A source ready to stream (connections open, snapshot taken).
pub enum Prepared {
    /// See [`postgres::PreparedGlobals`].
    PostgresGlobals(postgres::PreparedGlobals),
    /// See [`postgres::PreparedDatabase`].
    Postgres(Box<postgres::PreparedDatabase>),
    /// See [`mysql::PreparedMysql`].
    Mysql(mysql::PreparedMysql),
    /// See [`sqlite::PreparedSqlite`].
    Sqlite(sqlite::PreparedSqlite),
    /// See [`files::FileTree`].
    Files(files::FileTree),
}

impl Source {
    /// The component kind.
    pub fn kind(&self) -> ComponentKind {
        match self {
            Self::PostgresGlobals(_) => ComponentKind::PostgresGlobals,
            Self::Postgres(_) => ComponentKind::Postgres,
            Self::Mysql(_) => ComponentKind::Mysql,
            Self::Sqlite(_) => ComponentKind::Sqlite,
            Self::Files(_) => ComponentKind::Files,
        }
    }

    /// A description without secrets.
    pub fn describe(&self) -> String {
        match self {
            Self::PostgresGlobals(s) => s.conn.describe(None),
            Self::Postgres(s) => s.conn.describe(Some(&s.database)),
            Self::Mysql(s) => s.describe(),
            Self::Sqlite(s) => format!("sqlite:{}", s.path.display()),
            Self::Files(s) => format!("files:{}", s.root.display()),
        }
    }

    /// Connect, check tools and credentials, take the snapshot; estimate the size.
    pub async fn prepare(&self) -> Result<(Prepared, Option<u64>), SourceError> {
        Ok(match self {
            Self::PostgresGlobals(s) => {
                let p = s.prepare().await?;
                (Prepared::PostgresGlobals(p), None)
            }
            Self::Postgres(s) => {
                let p = s.prepare().await?;
                let hint = p.size_hint;
                (Prepared::Postgres(Box::new(p)), hint)
            }
            Self::Mysql(s) => {
                let p = s.prepare().await?;
                let hint = p.size_hint;
                (Prepared::Mysql(p), hint)
            }
            Self::Sqlite(s) => {
                let p = s.prepare().await?;
                let hint = Some(p.size);
                (Prepared::Sqlite(p), hint)
            }
            Self::Files(s) => {
                let hint = s.size_hint().await?;
                (Prepared::Files(s.clone()), Some(hint))
            }
        })
    }
}

impl Prepared {
    /// Stream the native format into `w`; returns the writer for finishing.
    pub async fn capture(
        self,
        w: PipelineWriter,
    ) -> Result<(PipelineWriter, CaptureInfo), SourceError> {
        match self {
            Self::PostgresGlobals(p) => p.capture(w).await,
            Self::Postgres(p) => p.capture(w).await,
            Self::Mysql(p) => p.capture(w).await,
            Self::Sqlite(p) => p.capture(w).await,
            Self::Files(p) => p.capture(w).await,
        }
    }
}

/// Run a blocking capture closure on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SourceError::Io {
            what: "capture thread".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}
