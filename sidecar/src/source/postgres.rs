//! PostgreSQL: `pg_dumpall --globals-only` for roles and tablespaces, and `pg_dump -Fc`
//! (compression off; the pipeline compresses) for one database. The dump reads a snapshot
//! exported from a transaction that Arca holds open, and every table's rows are counted in
//! that same snapshot while the dump streams. The client tool is chosen among those
//! installed: the oldest major version that is not older than the server's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use arca_api::manifest::TableCount;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{NoTls, Socket};

use super::child::{run_capture, stream_child};
use super::pgtls::{self, TlsSetting};
use super::{blocking, CaptureInfo, SourceError};
use crate::pipeline::PipelineWriter;
use crate::secret::Secret;

/// Connection settings with the password resolved.
#[derive(Debug, Clone)]
pub struct PgConn {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Login role.
    pub user: String,
    /// Password, if any.
    pub password: Option<Secret>,
    /// libpq sslmode.
    pub ssl_mode: Option<String>,
}

impl PgConn {
    /// `postgres://user@host:port/db` (no password).
    pub fn describe(&self, database: Option<&str>) -> String {
        format!(
            "postgres://{}@{}:{}/{}",
            self.user,
            self.host,
            self.port,
            database.unwrap_or("")
        )
    }

    fn server(&self) -> String {
        format!("PostgreSQL at {}:{}", self.host, self.port)
    }

    /// Open a connection to `database`.
    pub async fn connect(&self, database: &str) -> Result<tokio_postgres::Client, SourceError> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(database)
            .application_name("arca")
            .connect_timeout(Duration::from_secs(10));
        if let Some(p) = &self.password {
            cfg.password(p.expose());
        }
        let tls = pgtls::setting(self.ssl_mode.as_deref()).map_err(|detail| SourceError::Tls {
            what: self.server(),
            detail,
        })?;
        let opened = match tls {
            TlsSetting::Off => {
                cfg.ssl_mode(SslMode::Disable);
                open(&cfg, NoTls).await
            }
            TlsSetting::On { mode, connector } => {
                cfg.ssl_mode(mode);
                open(&cfg, connector).await
            }
        };
        opened.map_err(|e| self.map_error(e, database))
    }

    /// Map a connection or query error to what the user must fix.
    pub fn map_error(&self, e: tokio_postgres::Error, database: &str) -> SourceError {
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            // NB: pg_hba.conf refuses plain connections where it allows only TLS.
            if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                && db.message().contains("no encryption")
            {
                return SourceError::Tls {
                    what: self.server(),
                    detail: format!(
                        "{}: the server accepts this login over TLS only: set sslMode to prefer, require or verify-full",
                        db.message()
                    ),
                };
            }
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            {
                return SourceError::Login {
                    what: self.server(),
                    user: self.user.clone(),
                    detail: db.message().to_string(),
                };
            }
            if *code == SqlState::INVALID_CATALOG_NAME {
                return SourceError::NoDatabase {
                    what: self.server(),
                    database: database.to_string(),
                };
            }
            return SourceError::Query {
                what: self.server(),
                detail: db.message().to_string(),
            };
        }
        let mut detail = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            detail = format!("{detail}: {s}");
            src = s.source();
        }
        if detail.contains("invalid peer certificate") {
            return SourceError::Tls {
                what: self.server(),
                detail: format!(
                    "the server's certificate is not trusted ({}): set PGSSLROOTCERT to the CA that signed it, or use sslMode require to encrypt without checking",
                    detail.rsplit(": ").next().unwrap_or(&detail)
                ),
            };
        }
        if detail.contains("server does not support TLS") {
            return SourceError::Tls {
                what: self.server(),
                detail: "the server does not offer TLS: enable ssl on the server or set sslMode to prefer".into(),
            };
        }
        if detail.contains("password") {
            return SourceError::Login {
                what: self.server(),
                user: self.user.clone(),
                detail,
            };
        }
        SourceError::Unreachable {
            what: self.server(),
            detail,
        }
    }

    pub(crate) fn command(&self, tool: &Path) -> Command {
        let mut cmd = Command::new(tool);
        cmd.arg("--no-password")
            .arg("--host")
            .arg(&self.host)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--username")
            .arg(&self.user)
            .env("PGAPPNAME", "arca")
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGPASSWORD");
        // NB: the password reaches the child through its environment, never argv.
        if let Some(p) = &self.password {
            cmd.env("PGPASSWORD", p.expose());
        }
        if let Some(m) = &self.ssl_mode {
            cmd.env("PGSSLMODE", m);
        }
        cmd
    }

    async fn server_version(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<(u32, String), SourceError> {
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
                &[],
            )
            .await
            .map_err(|e| self.map_error(e, ""))?;
        let num: i32 = row.get(0);
        let text: String = row.get(1);
        Ok(((num / 10_000) as u32, text))
    }
}

/// Connect with `tls` and drive the connection in the background.
async fn open<T>(
    cfg: &tokio_postgres::Config,
    tls: T,
) -> Result<tokio_postgres::Client, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = cfg.connect(tls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// An installed PostgreSQL client tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTool {
    /// Path of the binary.
    pub path: PathBuf,
    /// Major version.
    pub major: u32,
    /// `pg_dump (PostgreSQL) 15.18`.
    pub version: String,
}

/// Parse the major version from `pg_dump (PostgreSQL) 15.18 (Debian ...)`.
pub fn parse_tool_major(version_line: &str) -> Option<u32> {
    let after = version_line.split(')').nth(1)?.trim();
    let num = after.split(|c: char| !c.is_ascii_digit()).next()?;
    num.parse().ok()
}

/// Every installed copy of `name` with its major version.
pub fn installed_tools(name: &str) -> Vec<PgTool> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    // ARCA_PG_BIN_DIR pins the client directory (images with their own client builds).
    if let Some(d) = std::env::var_os("ARCA_PG_BIN_DIR") {
        dirs.push(PathBuf::from(d));
        return probe_tools(name, dirs);
    }
    for pattern in ["/usr/lib/postgresql", "/usr/local/lib/postgresql"] {
        if let Ok(rd) = std::fs::read_dir(pattern) {
            for e in rd.flatten() {
                dirs.push(e.path().join("bin"));
            }
        }
    }
    for base in ["/usr", "/opt/homebrew/opt"] {
        if let Ok(rd) = std::fs::read_dir(base) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("pgsql-") || n.starts_with("postgresql@") {
                    dirs.push(e.path().join("bin"));
                }
            }
        }
    }
    dirs.push(PathBuf::from("/usr/local/pgsql/bin"));
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    probe_tools(name, dirs)
}

fn probe_tools(name: &str, dirs: Vec<PathBuf>) -> Vec<PgTool> {
    let mut out: Vec<PgTool> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for d in dirs {
        let path = d.join(name);
        let Ok(real) = std::fs::canonicalize(&path) else {
            continue;
        };
        if !seen.insert(real.clone()) {
            continue;
        }
        // NB: Debian's /usr/bin/pg_dump is a wrapper; the versioned binaries are listed
        // first, so it only ever adds a duplicate major version.
        let mut cmd = Command::new(&path);
        cmd.arg("--version");
        let Ok(text) = run_capture(cmd, name) else {
            continue;
        };
        let line = text.lines().next().unwrap_or_default().trim().to_string();
        if let Some(major) = parse_tool_major(&line) {
            out.push(PgTool {
                path,
                major,
                version: line,
            });
        }
    }
    out
}

/// The tool to use against a server of major `server_major`: the oldest installed major
/// that is not older than the server (a newer pg_dump reads older servers; an older one
/// cannot dump a newer server).
pub fn choose_tool(tools: &[PgTool], name: &str, server_major: u32) -> Result<PgTool, SourceError> {
    let best = tools
        .iter()
        .filter(|t| t.major >= server_major)
        .min_by_key(|t| t.major);
    match best {
        Some(t) => Ok(t.clone()),
        None if tools.is_empty() => Err(SourceError::MissingTool(format!(
            "{name} is not installed: install the PostgreSQL client {server_major} or newer (Debian: apt-get install postgresql-client-{server_major})"
        ))),
        None => {
            let mut found: Vec<String> = tools.iter().map(|t| t.major.to_string()).collect();
            found.sort();
            found.dedup();
            Err(SourceError::MissingTool(format!(
                "{name} {} is older than the server ({server_major}) and cannot dump it: install the PostgreSQL client {server_major} or newer (Debian: apt-get install postgresql-client-{server_major})",
                found.join(", ")
            )))
        }
    }
}

/// Roles and tablespaces.
#[derive(Debug, Clone)]
pub struct PgGlobals {
    /// Connection.
    pub conn: PgConn,
    /// Database to connect to.
    pub database: String,
    /// Leave role passwords out.
    pub no_role_passwords: bool,
}

/// Globals ready to dump.
pub struct PreparedGlobals {
    src: PgGlobals,
    tool: PgTool,
    server_version: String,
    roles: u64,
}

impl PgGlobals {
    /// Connect, count roles and choose `pg_dumpall`.
    pub async fn prepare(&self) -> Result<PreparedGlobals, SourceError> {
        let client = self.conn.connect(&self.database).await?;
        let (major, server_version) = self.conn.server_version(&client).await?;
        let roles: i64 = client
            .query_one("SELECT count(*) FROM pg_roles WHERE rolname !~ '^pg_'", &[])
            .await
            .map_err(|e| self.conn.map_error(e, &self.database))?
            .get(0);
        let tools = blocking(|| Ok(installed_tools("pg_dumpall"))).await?;
        let tool = choose_tool(&tools, "pg_dumpall", major)?;
        Ok(PreparedGlobals {
            src: self.clone(),
            tool,
            server_version,
            roles: roles.max(0) as u64,
        })
    }
}

impl PreparedGlobals {
    /// Stream `pg_dumpall --globals-only`.
    pub async fn capture(
        self,
        mut w: PipelineWriter,
    ) -> Result<(PipelineWriter, CaptureInfo), SourceError> {
        let mut cmd = self.src.conn.command(&self.tool.path);
        cmd.arg("--globals-only")
            .arg("--database")
            .arg(&self.src.database);
        if self.src.no_role_passwords {
            cmd.arg("--no-role-passwords");
        }
        let out = blocking(move || {
            let out = stream_child(cmd, "pg_dumpall", &mut w, &mut |_| {})?;
            Ok((w, out))
        })
        .await?;
        let (w, out) = out;
        let mut info = CaptureInfo {
            server_version: Some(self.server_version),
            tool: Some(self.tool.version),
            warnings: out.warnings,
            ..Default::default()
        };
        info.items.roles = Some(self.roles);
        Ok((w, info))
    }
}

/// One database.
#[derive(Debug, Clone)]
pub struct PgDatabase {
    /// Connection.
    pub conn: PgConn,
    /// Database name.
    pub database: String,
    /// SERIALIZABLE READ ONLY DEFERRABLE snapshot.
    pub serializable_deferrable: bool,
}

/// A database with an exported snapshot held open.
pub struct PreparedDatabase {
    src: PgDatabase,
    client: tokio_postgres::Client,
    snapshot: String,
    tool: PgTool,
    server_version: String,
    owner: String,
    encoding: String,
    tables: Vec<(String, String)>,
    /// Database size on the server.
    pub size_hint: Option<u64>,
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl PgDatabase {
    /// Connect, open the snapshot transaction, list tables and choose `pg_dump`.
    pub async fn prepare(&self) -> Result<PreparedDatabase, SourceError> {
        let client = self.conn.connect(&self.database).await?;
        let (major, server_version) = self.conn.server_version(&client).await?;
        let tools = blocking(|| Ok(installed_tools("pg_dump"))).await?;
        let tool = choose_tool(&tools, "pg_dump", major)?;
        let q = |e| self.conn.map_error(e, &self.database);
        let begin = if self.serializable_deferrable {
            "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE"
        } else {
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
        };
        client.batch_execute(begin).await.map_err(q)?;
        let snapshot: String = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(q)?
            .get(0);
        let row = client
            .query_one(
                "SELECT pg_catalog.pg_get_userbyid(datdba)::text, pg_database_size(oid), pg_encoding_to_char(encoding)::text
                 FROM pg_database WHERE datname = current_database()",
                &[],
            )
            .await
            .map_err(q)?;
        let owner: String = row.get(0);
        let size: i64 = row.get(1);
        let encoding: String = row.get(2);
        let rows = client
            .query(
                "SELECT n.nspname::text, c.relname::text FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind = 'r' AND n.nspname <> 'information_schema'
                   AND n.nspname !~ '^pg_'
                 ORDER BY 1, 2",
                &[],
            )
            .await
            .map_err(q)?;
        let tables = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(PreparedDatabase {
            src: self.clone(),
            client,
            snapshot,
            tool,
            server_version,
            owner,
            encoding,
            tables,
            size_hint: Some(size.max(0) as u64),
        })
    }
}

impl PreparedDatabase {
    /// Stream `pg_dump -Fc` from the exported snapshot while counting rows in it.
    pub async fn capture(
        self,
        mut w: PipelineWriter,
    ) -> Result<(PipelineWriter, CaptureInfo), SourceError> {
        let mut cmd = self.src.conn.command(&self.tool.path);
        cmd.arg("--format=custom")
            .arg("--compress=0")
            .arg(format!("--snapshot={}", self.snapshot))
            .arg("--dbname")
            .arg(&self.src.database);
        let dump = blocking(move || {
            let out = stream_child(cmd, "pg_dump", &mut w, &mut |_| {})?;
            Ok((w, out))
        });
        let counts = async {
            let mut out = Vec::with_capacity(self.tables.len());
            for (schema, table) in &self.tables {
                let sql = format!(
                    "SELECT count(*) FROM {}.{}",
                    quote_ident(schema),
                    quote_ident(table)
                );
                let n: i64 = self
                    .client
                    .query_one(sql.as_str(), &[])
                    .await
                    .map_err(|e| self.src.conn.map_error(e, &self.src.database))?
                    .get(0);
                out.push(TableCount {
                    name: format!("{schema}.{table}"),
                    rows: n.max(0) as u64,
                });
            }
            let lo: i64 = self
                .client
                .query_one("SELECT count(*) FROM pg_largeobject_metadata", &[])
                .await
                .map_err(|e| self.src.conn.map_error(e, &self.src.database))?
                .get(0);
            Ok::<_, SourceError>((out, lo.max(0) as u64))
        };
        let (dumped, counted) = tokio::join!(dump, counts);
        let _ = self.client.batch_execute("COMMIT").await;
        let (w, out) = dumped?;
        let (tables, large_objects) = counted?;
        let mut info = CaptureInfo {
            server_version: Some(self.server_version),
            tool: Some(self.tool.version),
            database: Some(self.src.database.clone()),
            owner: Some(self.owner),
            encoding: Some(self.encoding),
            warnings: out.warnings,
            ..Default::default()
        };
        if tables.is_empty() {
            info.warnings
                .push(format!("database {} has no tables", self.src.database));
        }
        info.items.tables = tables;
        info.items.large_objects = Some(large_objects);
        Ok((w, info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(major: u32) -> PgTool {
        PgTool {
            path: PathBuf::from(format!("/usr/lib/postgresql/{major}/bin/pg_dump")),
            major,
            version: format!("pg_dump (PostgreSQL) {major}.1"),
        }
    }

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_tool_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_tool_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(
            parse_tool_major("pg_dumpall (PostgreSQL) 17beta1"),
            Some(17)
        );
        assert_eq!(parse_tool_major("garbage"), None);
    }

    #[test]
    fn chooses_the_oldest_client_not_older_than_the_server() {
        let tools = vec![tool(13), tool(17), tool(15)];
        assert_eq!(
            choose_tool(&tools, "pg_dump", 14).map(|t| t.major).ok(),
            Some(15)
        );
        assert_eq!(
            choose_tool(&tools, "pg_dump", 15).map(|t| t.major).ok(),
            Some(15)
        );
        assert_eq!(
            choose_tool(&tools, "pg_dump", 12).map(|t| t.major).ok(),
            Some(13)
        );
        let err = choose_tool(&tools, "pg_dump", 18).expect_err("too old");
        let msg = err.to_string();
        assert!(msg.contains("older than the server (18)"), "{msg}");
        assert!(msg.contains("postgresql-client-18"), "{msg}");
        let err = choose_tool(&[], "pg_dump", 16).expect_err("missing");
        assert!(err.to_string().contains("not installed"));
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
