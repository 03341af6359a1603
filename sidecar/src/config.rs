//! Loading `arca.yaml`: parse (unknown fields are errors), pick the policy, validate it for
//! file bindings, and resolve it into sources and stores with their secrets read. All of
//! this happens before anything is captured, so a bad config fails fast and clearly.

use std::path::PathBuf;
use std::str::FromStr;

use arca_api::validate::Platform;
use arca_api::{ConfigFile, NamedPolicy, SourceRef, Validator};

use crate::secret::{read_secret_file, Secret, SecretError};
use crate::source::files::{Excludes, FileTree};
use crate::source::mysql::MyDatabase;
use crate::source::postgres::{PgConn, PgDatabase, PgGlobals};
use crate::source::sqlite::SqliteFile;
use crate::source::Source;
use crate::store::path::PathStore;
use crate::store::s3::{S3Settings, S3Store, DEFAULT_IN_FLIGHT};
use crate::store::Store;

/// A config problem; the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// Path.
        path: String,
        /// Error.
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error("config {path} is invalid: {detail}")]
    Parse {
        /// Path.
        path: String,
        /// Parser message.
        detail: String,
    },
    /// No such policy, or none chosen.
    #[error("{0}")]
    Policy(String),
    /// The policy breaks a rule.
    #[error("policy {policy:?} is invalid: {}", .errors.join("; "))]
    Invalid {
        /// Policy.
        policy: String,
        /// Every problem found.
        errors: Vec<String>,
    },
    /// A secret file is unusable.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// A policy resolved for running.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Name.
    pub name: String,
    /// The declared spec.
    pub spec: arca_api::PolicySpec,
    /// Components in capture order.
    pub components: Vec<ComponentPlan>,
    /// Destinations.
    pub destinations: Vec<DestinationPlan>,
    /// age recipients.
    pub recipients: Vec<age::x25519::Recipient>,
    /// age identity file (restore/verify).
    pub identity_file: Option<String>,
}

/// A component with its resolved source.
#[derive(Debug, Clone)]
pub struct ComponentPlan {
    /// Name.
    pub name: String,
    /// Source.
    pub source: Source,
}

/// A destination with its store.
#[derive(Debug, Clone)]
pub struct DestinationPlan {
    /// Name.
    pub name: String,
    /// Store.
    pub store: Store,
    /// Retention.
    pub retention: arca_api::Retention,
}

impl Policy {
    /// The destinations to use: all, or the one named `from` (an error names the choices).
    pub fn destinations_from(&self, from: Option<&str>) -> Result<Vec<DestinationPlan>, String> {
        match from {
            None => Ok(self.destinations.clone()),
            Some(name) => {
                let d: Vec<_> = self
                    .destinations
                    .iter()
                    .filter(|d| d.name == name)
                    .cloned()
                    .collect();
                if d.is_empty() {
                    let names: Vec<&str> =
                        self.destinations.iter().map(|d| d.name.as_str()).collect();
                    Err(format!(
                        "policy {:?} has no destination {name:?} (it has: {})",
                        self.name,
                        names.join(", ")
                    ))
                } else {
                    Ok(d)
                }
            }
        }
    }
}

/// Read and parse a config file.
pub fn load_file(path: &str) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_string(),
        source,
    })?;
    ConfigFile::from_yaml(&text).map_err(|e| ConfigError::Parse {
        path: path.to_string(),
        detail: e.to_string(),
    })
}

/// Pick `name`, or the only policy when `name` is None.
pub fn select<'a>(cfg: &'a ConfigFile, name: Option<&str>) -> Result<&'a NamedPolicy, ConfigError> {
    let names: Vec<&str> = cfg.policies.iter().map(|p| p.name.as_str()).collect();
    let mut seen = std::collections::HashSet::new();
    for n in &names {
        if !seen.insert(*n) {
            return Err(ConfigError::Policy(format!(
                "two policies are named {n:?}: policy names must be unique"
            )));
        }
    }
    match name {
        Some(n) => cfg.policies.iter().find(|p| p.name == n).ok_or_else(|| {
            ConfigError::Policy(format!(
                "no policy named {n:?} in the config (it has: {})",
                names.join(", ")
            ))
        }),
        None if cfg.policies.len() == 1 => Ok(&cfg.policies[0]),
        None if cfg.policies.is_empty() => Err(ConfigError::Policy(
            "the config has no policies: add one under `policies:`".into(),
        )),
        None => Err(ConfigError::Policy(format!(
            "the config has several policies ({}): choose one with --policy",
            names.join(", ")
        ))),
    }
}

fn secret(file: Option<&String>, what: &str) -> Result<Option<Secret>, SecretError> {
    file.map(|f| read_secret_file(f, what)).transpose()
}

/// Validate and resolve a policy (reads secret files).
pub fn resolve(p: &NamedPolicy) -> Result<Policy, ConfigError> {
    let invalid = |errors: Vec<String>| ConfigError::Invalid {
        policy: p.name.clone(),
        errors,
    };
    Validator::validate(&p.name, &p.spec, Platform::Files)
        .map_err(|errs| invalid(errs.into_iter().map(|e| e.to_string()).collect()))?;

    let mut recipients = Vec::new();
    let mut identity_file = None;
    if let Some(enc) = &p.spec.encryption {
        for (i, r) in enc.age_recipients.iter().enumerate() {
            let parsed = age::x25519::Recipient::from_str(r.trim()).map_err(|e| {
                invalid(vec![format!(
                    "encryption.ageRecipients[{i}]: {e}: use the public key printed by `arca keygen`"
                )])
            })?;
            recipients.push(parsed);
        }
        identity_file = enc.age_identity_file.clone();
    }
    if p.spec.quiesce.as_ref().is_some_and(|q| q.stop_containers) {
        // Resolved by the daemon/CLI quiesce step; nothing to check here.
    }

    let mut components = Vec::new();
    for c in &p.spec.components {
        let source = match c.source() {
            Some(SourceRef::PostgresGlobals(s)) => Source::PostgresGlobals(PgGlobals {
                conn: pg_conn(&s.connection(), &c.name)?,
                database: s.database.clone().unwrap_or_else(|| "postgres".into()),
                no_role_passwords: s.no_role_passwords,
            }),
            Some(SourceRef::Postgres(s)) => Source::Postgres(PgDatabase {
                conn: pg_conn(&s.connection(), &c.name)?,
                database: s.database.clone(),
                serializable_deferrable: s.serializable_deferrable,
            }),
            Some(SourceRef::Mysql(s)) => Source::Mysql(MyDatabase {
                host: s.host.clone(),
                port: s.port.unwrap_or(3306),
                user: s.user.clone(),
                password: secret(s.password_file.as_ref(), &format!("password ({})", c.name))?,
                database: s.database.clone(),
            }),
            Some(SourceRef::Sqlite(s)) => Source::Sqlite(SqliteFile {
                path: PathBuf::from(s.path.clone().unwrap_or_default()),
            }),
            Some(SourceRef::Files(s)) => Source::Files(FileTree {
                root: PathBuf::from(s.path.clone().unwrap_or_default()),
                excludes: Excludes::new(&s.exclude).map_err(|e| {
                    invalid(vec![format!("components.{}.files.exclude: {e}", c.name)])
                })?,
            }),
            None => return Err(invalid(vec![format!("component {} has no source", c.name)])),
        };
        components.push(ComponentPlan {
            name: c.name.clone(),
            source,
        });
    }

    let mut destinations = Vec::new();
    for d in &p.spec.destinations {
        let store = if let Some(path) = &d.path {
            Store::Path(PathStore::new(path))
        } else if let Some(s3) = &d.s3 {
            let credentials = match (&s3.access_key_id_file, &s3.secret_access_key_file) {
                (Some(id), Some(key)) => Some((
                    read_secret_file(id, &format!("S3 access key id ({})", d.name))?,
                    read_secret_file(key, &format!("S3 secret access key ({})", d.name))?,
                )),
                _ => None,
            };
            Store::S3(S3Store::new(S3Settings {
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone().unwrap_or_else(|| "us-east-1".into()),
                bucket: s3.bucket.clone(),
                prefix: s3.prefix.clone().unwrap_or_default(),
                path_style: s3.path_style,
                credentials,
                max_in_flight: s3
                    .max_parts_in_flight
                    .map(usize::from)
                    .unwrap_or(DEFAULT_IN_FLIGHT),
            }))
        } else {
            return Err(invalid(vec![format!(
                "destination {}: set path or s3",
                d.name
            )]));
        };
        destinations.push(DestinationPlan {
            name: d.name.clone(),
            store,
            retention: d.retention.clone().unwrap_or_default(),
        });
    }

    Ok(Policy {
        name: p.name.clone(),
        spec: p.spec.clone(),
        components,
        destinations,
        recipients,
        identity_file,
    })
}

fn pg_conn(c: &arca_api::PostgresConnection<'_>, component: &str) -> Result<PgConn, ConfigError> {
    Ok(PgConn {
        host: c.host.to_string(),
        port: c.port,
        user: c.user.to_string(),
        password: c
            .password_file
            .map(|f| read_secret_file(f, &format!("password ({component})")))
            .transpose()?,
        ssl_mode: c.ssl_mode.map(str::to_string),
    })
}

/// Load, select and resolve in one step.
pub fn load_policy(path: &str, name: Option<&str>) -> Result<Policy, ConfigError> {
    let cfg = load_file(path)?;
    let p = select(&cfg, name)?;
    resolve(p)
}
