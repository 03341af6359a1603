//! The backup policy: ordered components, destinations, schedule, retention, encryption.
//!
//! Kubernetes-only bindings (`claimName`, `*SecretRef`) and compose-only bindings (`path`,
//! `*File`) sit side by side. The operator translates the first into the second when it
//! renders a Job, so the `arca` binary only ever reads paths and files.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

/// A backup policy: what to capture, where to store it, when, and how long to keep it.
// With the `crd` feature this is also the spec of the `BackupPolicy` custom resource
// (`arca.dev/v1alpha1`, see `crate::crd`); doc comments become `kubectl explain` text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "crd", derive(kube::CustomResource))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "arca.dev",
        version = "v1alpha1",
        kind = "BackupPolicy",
        plural = "backuppolicies",
        namespaced,
        status = "crate::crd::BackupPolicyStatus",
        derive = "PartialEq",
        shortname = "bpol",
        category = "arca",
        doc = "What to back up (databases, SQLite files, volumes), where to (S3, volumes), when (cron in a time zone) and how long to keep it. arca-operator runs each backup as a Job and reports the outcome in status.",
        printcolumn = r#"{"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"}"#,
        printcolumn = r#"{"name": "Status", "type": "string", "jsonPath": ".status.state"}"#,
        printcolumn = r#"{"name": "Last Success", "type": "date", "jsonPath": ".status.lastSuccessTime"}"#,
        printcolumn = r#"{"name": "Snapshot", "type": "string", "jsonPath": ".status.lastSuccessfulSnapshot", "priority": 1}"#,
        printcolumn = r#"{"name": "Within RPO", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"WithinRPO\")].status", "priority": 1}"#,
        printcolumn = r#"{"name": "Verified", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"VerifySucceeded\")].status", "priority": 1}"#,
        printcolumn = r#"{"name": "Next", "type": "date", "jsonPath": ".status.nextScheduleTime", "priority": 1}"#,
        printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// When to back up: a 5-field cron expression (minute hour day-of-month month day-of-week).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128), pattern(r"^\s*\S+(\s+\S+){4}\s*$"))]
    pub schedule: Option<String>,
    /// IANA time zone the schedule and retention buckets are read in (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        pattern(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")
    )]
    pub time_zone: Option<String>,
    /// Pause scheduled runs; manual runs still work.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Recovery point objective: the newest good snapshot must be younger than this (e.g. 26h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<HumanDuration>,
    /// A scheduled run missed by more than this is skipped rather than caught up (default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline: Option<HumanDuration>,
    /// Client-side encryption with age; strongly recommended for patient data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// Cold backup: stop or scale down the application while its data is captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiesce: Option<Quiesce>,
    /// What to capture, in capture order.
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub components: Vec<Component>,
    /// Where to store each snapshot; all are written in the same run.
    #[schemars(length(min = 1, max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub destinations: Vec<Destination>,
    /// Scheduled restore tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySchedule>,
}

/// age encryption: the backup side holds public recipients only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Encryption {
    /// age recipients (public keys, `age1...`); every artifact is encrypted to all of them.
    #[serde(default)]
    pub age_recipients: Vec<String>,
    /// File holding the age identity (secret key); read by restore and verify only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_identity_file: Option<String>,
    /// Secret key holding the age identity (Kubernetes); read by restore and verify only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_identity_secret_ref: Option<SecretKeyRef>,
}

/// A key in a Kubernetes Secret of the policy's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
}

/// Cold-backup settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Quiesce {
    /// Compose: stop the containers labelled `arca.stop-during-backup=<policy>` during capture.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_containers: bool,
    /// Kubernetes: workloads scaled to zero during capture and restored afterwards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub scale_down: Vec<WorkloadRef>,
    /// Give up waiting for the application to stop after this long (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

/// A Deployment or StatefulSet in the policy's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadRef {
    /// `Deployment` or `StatefulSet`.
    #[schemars(extend("enum" = ["Deployment", "StatefulSet"]))]
    pub kind: String,
    /// Name of the workload.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Scheduled verification.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifySchedule {
    /// When to verify the newest snapshot: a 5-field cron expression.
    pub schedule: String,
    /// Restore into a scratch database/directory and compare counts (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deep: Option<bool>,
}

/// One thing to capture. Exactly one source kind is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.postgresGlobals), has(self.postgres), has(self.mysql), has(self.sqlite), has(self.files)].filter(x, x).size() == 1",
    "message": "set exactly one of postgresGlobals, postgres, mysql, sqlite, files"
}]))]
pub struct Component {
    /// Name, unique in the policy ([a-z0-9-]); becomes the artifact's file name.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"))]
    pub name: String,
    /// Roles and tablespaces of a PostgreSQL server (`pg_dumpall --globals-only`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_globals: Option<PostgresGlobalsSource>,
    /// One PostgreSQL database (`pg_dump -Fc` from one consistent snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSource>,
    /// One MariaDB/MySQL database (single-transaction dump with routines, triggers, events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<MysqlSource>,
    /// A live SQLite database file (online backup API, integrity-checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<SqliteSource>,
    /// A directory tree (POSIX tar keeping modes, mtimes and symlinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesSource>,
}

/// The kind of a component, as recorded in manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ComponentKind {
    /// `pg_dumpall --globals-only`.
    PostgresGlobals,
    /// `pg_dump -Fc`.
    Postgres,
    /// `mariadb-dump` / `mysqldump`.
    Mysql,
    /// SQLite database file.
    Sqlite,
    /// Directory tree as tar.
    Files,
}

impl ComponentKind {
    /// The native format's file-name part (`<component>.<format>.zst.age`).
    pub fn format(self) -> &'static str {
        match self {
            Self::PostgresGlobals => "sql",
            Self::Postgres => "pgdump",
            Self::Mysql => "sql",
            Self::Sqlite => "sqlite",
            Self::Files => "tar",
        }
    }

    /// The field name used in the policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PostgresGlobals => "postgresGlobals",
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Sqlite => "sqlite",
            Self::Files => "files",
        }
    }
}

impl std::fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The source of a component, borrowed from whichever field is set.
#[derive(Debug, Clone, Copy)]
pub enum SourceRef<'a> {
    /// See [`PostgresGlobalsSource`].
    PostgresGlobals(&'a PostgresGlobalsSource),
    /// See [`PostgresSource`].
    Postgres(&'a PostgresSource),
    /// See [`MysqlSource`].
    Mysql(&'a MysqlSource),
    /// See [`SqliteSource`].
    Sqlite(&'a SqliteSource),
    /// See [`FilesSource`].
    Files(&'a FilesSource),
}

impl SourceRef<'_> {
    /// The kind of this source.
    pub fn kind(&self) -> ComponentKind {
        match self {
            Self::PostgresGlobals(_) => ComponentKind::PostgresGlobals,
            Self::Postgres(_) => ComponentKind::Postgres,
            Self::Mysql(_) => ComponentKind::Mysql,
            Self::Sqlite(_) => ComponentKind::Sqlite,
            Self::Files(_) => ComponentKind::Files,
        }
    }
}

impl Component {
    /// All source kinds that are set (validation requires exactly one).
    pub fn sources(&self) -> Vec<SourceRef<'_>> {
        let mut out = Vec::new();
        if let Some(s) = &self.postgres_globals {
            out.push(SourceRef::PostgresGlobals(s));
        }
        if let Some(s) = &self.postgres {
            out.push(SourceRef::Postgres(s));
        }
        if let Some(s) = &self.mysql {
            out.push(SourceRef::Mysql(s));
        }
        if let Some(s) = &self.sqlite {
            out.push(SourceRef::Sqlite(s));
        }
        if let Some(s) = &self.files {
            out.push(SourceRef::Files(s));
        }
        out
    }

    /// The one source of a validated component.
    pub fn source(&self) -> Option<SourceRef<'_>> {
        let sources = self.sources();
        if sources.len() == 1 {
            sources.into_iter().next()
        } else {
            None
        }
    }

    /// The kind of a validated component.
    pub fn kind(&self) -> Option<ComponentKind> {
        self.source().map(|s| s.kind())
    }
}

/// Connection settings shared by the PostgreSQL component kinds.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresConnection<'a> {
    /// Host name or address.
    pub host: &'a str,
    /// TCP port.
    pub port: u16,
    /// Login role.
    pub user: &'a str,
    /// Password file (compose binding).
    pub password_file: Option<&'a str>,
    /// libpq sslmode.
    pub ssl_mode: Option<&'a str>,
}

macro_rules! postgres_connection {
    ($t:ty) => {
        impl $t {
            /// The connection settings of this source.
            pub fn connection(&self) -> PostgresConnection<'_> {
                PostgresConnection {
                    host: &self.host,
                    port: self.port.unwrap_or(5432),
                    user: &self.user,
                    password_file: self.password_file.as_deref(),
                    ssl_mode: self.ssl_mode.as_deref(),
                }
            }
        }
    };
}
postgres_connection!(PostgresGlobalsSource);
postgres_connection!(PostgresSource);

/// Roles and tablespaces of a PostgreSQL server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresGlobalsSource {
    /// Host name or address of the server.
    pub host: String,
    /// TCP port (default 5432).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Login role.
    pub user: String,
    /// File holding the password (compose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    /// Secret key holding the password (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// libpq sslmode: disable, prefer (default), require, verify-ca or verify-full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<String>,
    /// Database to connect to for the dump (default `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Leave role passwords out (needed on managed servers without superuser).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_role_passwords: bool,
}

/// One PostgreSQL database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresSource {
    /// Host name or address of the server.
    pub host: String,
    /// TCP port (default 5432).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Login role.
    pub user: String,
    /// File holding the password (compose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    /// Secret key holding the password (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// libpq sslmode: disable, prefer (default), require, verify-ca or verify-full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<String>,
    /// Database to dump.
    pub database: String,
    /// Take the snapshot as SERIALIZABLE READ ONLY DEFERRABLE (waits for a safe snapshot).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub serializable_deferrable: bool,
}

/// One MariaDB/MySQL database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MysqlSource {
    /// Host name or address of the server.
    pub host: String,
    /// TCP port (default 3306).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Login user.
    pub user: String,
    /// File holding the password (compose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    /// Secret key holding the password (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// Database to dump.
    pub database: String,
}

/// A SQLite database file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqliteSource {
    /// Path of the database file (compose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// PersistentVolumeClaim holding the file (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// Path of the file inside the claim (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// A directory tree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilesSource {
    /// Directory to capture (compose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// PersistentVolumeClaim to capture (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// Directory inside the claim (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// Glob patterns to leave out; a pattern without `/` matches a name at any depth.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// Where snapshots are stored. Exactly one of `path`, `claimName` or `s3` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "[has(self.path), has(self.claimName), has(self.s3)].filter(x, x).size() == 1",
    "message": "set exactly one of claimName, s3 (or path in compose)"
}]))]
pub struct Destination {
    /// Name, unique in the policy ([a-z0-9-]).
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"))]
    pub name: String,
    /// A directory (NAS mount, USB disk) (compose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A PersistentVolumeClaim used as a directory destination (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_name: Option<String>,
    /// An S3-compatible bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Destination>,
    /// Which snapshots to keep at this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Destination {
    /// Endpoint URL, e.g. `https://s3.example.org` (default: AWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region (default `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Path-style addressing (most self-hosted servers need it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub path_style: bool,
    /// File holding the access key id (compose); default: AWS_ACCESS_KEY_ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_file: Option<String>,
    /// File holding the secret access key (compose); default: AWS_SECRET_ACCESS_KEY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_file: Option<String>,
    /// Secret key holding the access key id (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding the secret access key (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_secret_ref: Option<SecretKeyRef>,
    /// Upload parts in flight per artifact (default 4); bounds memory use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parts_in_flight: Option<u16>,
}

/// Which snapshots to keep. Rules combine: a snapshot kept by any rule stays. With no rule
/// set, every snapshot is kept. The newest successful snapshot is never deleted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retention {
    /// Keep the newest N snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot younger than this (e.g. 14d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<HumanDuration>,
}

impl Retention {
    /// True when no rule is set (keep everything).
    pub fn is_unbounded(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_yearly.is_none()
            && self.keep_within.is_none()
    }
}

/// The kind of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationKind {
    /// A directory.
    Path,
    /// A PersistentVolumeClaim (rendered as a directory inside Jobs).
    Claim,
    /// An S3 bucket.
    S3,
}

impl Destination {
    /// All kinds that are set (validation requires exactly one).
    pub fn kinds(&self) -> Vec<DestinationKind> {
        let mut out = Vec::new();
        if self.path.is_some() {
            out.push(DestinationKind::Path);
        }
        if self.claim_name.is_some() {
            out.push(DestinationKind::Claim);
        }
        if self.s3.is_some() {
            out.push(DestinationKind::S3);
        }
        out
    }

    /// A description without secrets, e.g. `s3://bucket/prefix` or `/backup`.
    pub fn describe(&self) -> String {
        if let Some(s3) = &self.s3 {
            match s3.prefix.as_deref().map(|p| p.trim_matches('/')) {
                Some(p) if !p.is_empty() => format!("s3://{}/{}", s3.bucket, p),
                _ => format!("s3://{}", s3.bucket),
            }
        } else if let Some(p) = &self.path {
            p.clone()
        } else if let Some(c) = &self.claim_name {
            format!("pvc/{c}")
        } else {
            "(none)".into()
        }
    }
}
