//! `arca restore`: a snapshot back into databases, files and SQLite files — by default to
//! where they came from, or under a new name. Roles first, then databases, then files.
//! A non-empty target is refused without `--force`; with it, a safety snapshot of the
//! current state is taken first, the artifact is checked before live data is touched, and
//! PostgreSQL is restored into a scratch database that replaces the target only on success.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arca_api::manifest::{ComponentRecord, Manifest, SnapshotReason};
use arca_api::result::{ComponentResult, RunResult, RESULT_FORMAT};
use arca_api::ComponentKind;
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::backup::{self, BackupOptions};
use crate::catalog::{self, object_key, Located};
use crate::config::{ComponentPlan, DestinationPlan, Policy};
use crate::extract;
use crate::pgarchive;
use crate::source::child::last_lines;
use crate::source::mysql::{find_tools, MyDatabase, OptionFile};
use crate::source::postgres::{choose_tool, installed_tools, PgConn};
use crate::source::Source;
use crate::store::path::{free_bytes, human_bytes};
use crate::unseal::{self, Artifact, UnsealError};

/// Which snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The newest ordinary snapshot.
    Latest,
    /// This id.
    Id(String),
    /// The newest ordinary snapshot that started before this time.
    Before(DateTime<Utc>),
}

/// A failed restore; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Bad request (unknown snapshot, component, ambiguous target...).
    #[error("{0}")]
    Request(String),
    /// The target is not empty.
    #[error("{0}")]
    NotEmpty(String),
    /// Reading the artifact failed.
    #[error(transparent)]
    Unseal(#[from] UnsealError),
    /// Restoring a component failed.
    #[error("restoring component {component:?} failed: {detail}")]
    Component {
        /// Component.
        component: String,
        /// What failed.
        detail: String,
    },
    /// The safety snapshot failed: nothing was touched.
    #[error("the safety backup of the current state failed, nothing was restored: {0}; fix it or use --no-safety-backup")]
    Safety(String),
}

/// Options of a restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Which snapshot.
    pub selector: Selector,
    /// Only these components (empty: all).
    pub components: Vec<String>,
    /// Read from this destination.
    pub from: Option<String>,
    /// New database name.
    pub to_database: Option<String>,
    /// New path (tree root for files, the file itself for sqlite).
    pub to_path: Option<PathBuf>,
    /// Make a files target exactly the snapshot's state.
    pub delete_newer: bool,
    /// Take a safety snapshot before overwriting.
    pub safety_backup: bool,
    /// Overwrite non-empty targets.
    pub force: bool,
    /// Only print the plan.
    pub dry_run: bool,
    /// Parallel pg_restore jobs.
    pub jobs: usize,
}

/// Resolve a selector among listed snapshots (oldest first).
pub fn select<'a>(list: &'a [Located], selector: &Selector) -> Result<&'a Located, String> {
    let ordinary = || {
        list.iter()
            .filter(|l| l.manifest.reason == SnapshotReason::Backup)
    };
    match selector {
        Selector::Latest => catalog::latest(list)
            .ok_or_else(|| "there is no snapshot yet: run arca backup first".to_string()),
        Selector::Id(id) => list
            .iter()
            .find(|l| &l.manifest.snapshot == id)
            .ok_or_else(|| {
                format!("snapshot {id} does not exist: run `arca snapshots` to list them")
            }),
        Selector::Before(t) => ordinary()
            .rfind(|l| l.manifest.started_at < *t)
            .ok_or_else(|| {
                format!(
                    "no snapshot started before {}: run `arca snapshots` to list them",
                    t.to_rfc3339()
                )
            }),
    }
}

/// Parse `latest`, an id, or (with `before`) an RFC 3339 time.
pub fn parse_selector(snapshot: Option<&str>, before: Option<&str>) -> Result<Selector, String> {
    match (snapshot, before) {
        (Some(_), Some(_)) => Err("give either --snapshot or --before, not both".into()),
        (None, Some(t)) => DateTime::parse_from_rfc3339(t)
            .map(|d| Selector::Before(d.with_timezone(&Utc)))
            .map_err(|_| {
                format!(
                    "--before {t:?} is not an RFC 3339 time: write e.g. 2026-11-23T03:00:00+01:00"
                )
            }),
        (Some("latest") | None, None) => Ok(Selector::Latest),
        (Some(id), None) => id
            .parse::<arca_api::SnapshotId>()
            .map(|_| Selector::Id(id.to_string()))
            .map_err(|e| e.to_string()),
    }
}

/// Where one component goes.
#[derive(Debug, Clone)]
enum Target {
    Globals(PgConn),
    Postgres { conn: PgConn, database: String },
    Mysql(MyDatabase),
    Sqlite(PathBuf),
    Files { root: PathBuf, plan: ComponentPlan },
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Self::Globals(c) => format!("roles on {}", c.describe(None)),
            Self::Postgres { conn, database } => {
                format!("database {}", conn.describe(Some(database)))
            }
            Self::Mysql(m) => format!("database {}", m.describe()),
            Self::Sqlite(p) => format!("file {}", p.display()),
            Self::Files { root, .. } => format!("directory {}", root.display()),
        }
    }
}

/// The state of a target before restoring.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Absent,
    Empty,
    Occupied(String),
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// Restored snapshot.
    pub snapshot: String,
    /// Destination read from.
    pub destination: String,
    /// Safety snapshot taken first.
    pub safety_snapshot: Option<String>,
    /// Per component: target and warnings.
    pub components: Vec<(String, String, f64)>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// Start.
    pub started_at: DateTime<Utc>,
}

impl RestoreReport {
    /// Machine-readable summary.
    pub fn result(&self, policy: &str) -> RunResult {
        RunResult {
            format: RESULT_FORMAT.into(),
            command: "restore".into(),
            policy: policy.to_string(),
            ok: true,
            snapshot: Some(self.snapshot.clone()),
            safety_snapshot: self.safety_snapshot.clone(),
            started_at: Some(self.started_at),
            completed_at: Some(Utc::now()),
            components: self
                .components
                .iter()
                .map(|(n, _, secs)| ComponentResult {
                    name: n.clone(),
                    ok: true,
                    duration_seconds: *secs,
                    ..Default::default()
                })
                .collect(),
            warnings: self.warnings.clone(),
            ..Default::default()
        }
    }
}

/// Find the snapshot and the destination to read it from.
pub async fn locate(
    policy: &Policy,
    selector: &Selector,
    from: Option<&str>,
) -> Result<(Manifest, DestinationPlan), RestoreError> {
    let dests = policy
        .destinations_from(from)
        .map_err(RestoreError::Request)?;
    let (list, errors) = catalog::list_all(&dests, &policy.name).await;
    if list.is_empty() && !errors.is_empty() {
        let (n, e) = &errors[0];
        return Err(RestoreError::Request(format!(
            "cannot list destination {n:?}: {e}"
        )));
    }
    let found = select(&list, selector).map_err(RestoreError::Request)?;
    let dest = dests
        .iter()
        .find(|d| found.destinations.contains(&d.name))
        .cloned()
        .ok_or_else(|| {
            RestoreError::Request("snapshot found at no configured destination".into())
        })?;
    Ok((found.manifest.clone(), dest))
}

fn pg_maintenance_db() -> &'static str {
    "postgres"
}

async fn target_state(t: &Target) -> Result<State, RestoreError> {
    let req = |e: crate::source::SourceError| RestoreError::Request(e.to_string());
    Ok(match t {
        Target::Globals(_) => State::Empty,
        Target::Postgres { conn, database } => {
            let client = conn.connect(pg_maintenance_db()).await.map_err(req)?;
            let exists = client
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[database])
                .await
                .map_err(|e| req(conn.map_error(e, database)))?
                .is_some();
            if exists {
                State::Occupied(format!("database {database} already exists"))
            } else {
                State::Absent
            }
        }
        Target::Mysql(m) => {
            let m = m.clone();
            tokio::task::spawn_blocking(move || mysql_exists(&m))
                .await
                .map_err(|e| RestoreError::Request(e.to_string()))??
        }
        Target::Sqlite(p) => match std::fs::metadata(p) {
            Ok(m) if m.len() > 0 => State::Occupied(format!("{} exists", p.display())),
            Ok(_) => State::Empty,
            Err(_) => State::Absent,
        },
        Target::Files { root, .. } => match std::fs::read_dir(root) {
            Ok(mut rd) => {
                if rd.next().is_some() {
                    State::Occupied(format!("{} is not empty", root.display()))
                } else {
                    State::Empty
                }
            }
            Err(_) => State::Absent,
        },
    })
}

fn mysql_exists(m: &MyDatabase) -> Result<State, RestoreError> {
    let tools = find_tools().map_err(|e| RestoreError::Request(e.to_string()))?;
    let opts =
        OptionFile::new(m.password.as_ref()).map_err(|e| RestoreError::Request(e.to_string()))?;
    let lit = m.database.replace('\\', "\\\\").replace('\'', "\\'");
    let mut cmd = m.command(&tools.client, &opts);
    cmd.args(["--batch", "--skip-column-names", "-e"])
        .arg(format!(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='{lit}'"
        ));
    let out = cmd
        .output()
        .map_err(|e| RestoreError::Request(e.to_string()))?;
    if !out.status.success() {
        return Err(RestoreError::Request(
            m.map_client_error(&String::from_utf8_lossy(&out.stderr))
                .to_string(),
        ));
    }
    Ok(if String::from_utf8_lossy(&out.stdout).trim() == "1" {
        State::Occupied(format!("database {} already exists", m.database))
    } else {
        State::Absent
    })
}

fn plan_targets(
    policy: &Policy,
    manifest: &Manifest,
    opts: &RestoreOptions,
) -> Result<Vec<(ComponentRecord, ComponentPlan, Target)>, RestoreError> {
    let mut chosen: Vec<&ComponentRecord> = Vec::new();
    for name in &opts.components {
        if !manifest.components.iter().any(|c| &c.name == name) {
            return Err(RestoreError::Request(format!(
                "snapshot {} has no component {name:?} (it has: {})",
                manifest.snapshot,
                manifest
                    .components
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    for c in &manifest.components {
        if opts.components.is_empty() || opts.components.contains(&c.name) {
            chosen.push(c);
        }
    }
    let dbs = chosen
        .iter()
        .filter(|c| matches!(c.kind, Some(ComponentKind::Postgres | ComponentKind::Mysql)))
        .count();
    let paths = chosen
        .iter()
        .filter(|c| matches!(c.kind, Some(ComponentKind::Sqlite | ComponentKind::Files)))
        .count();
    if opts.to_database.is_some() && dbs != 1 {
        return Err(RestoreError::Request(format!(
            "--to-database needs exactly one database component, but {dbs} are selected: pick one with --component"
        )));
    }
    if opts.to_path.is_some() && paths != 1 {
        return Err(RestoreError::Request(format!(
            "--to-path needs exactly one files or sqlite component, but {paths} are selected: pick one with --component"
        )));
    }
    let mut out = Vec::new();
    // Roles first, then the rest in capture order.
    chosen.sort_by_key(|c| c.kind != Some(ComponentKind::PostgresGlobals));
    for rec in chosen {
        let plan = policy
            .components
            .iter()
            .find(|p| p.name == rec.name)
            .cloned()
            .ok_or_else(|| {
                RestoreError::Request(format!(
                    "component {:?} of the snapshot is no longer in the policy: add it back (same name) to say where it goes",
                    rec.name
                ))
            })?;
        let target = match &plan.source {
            Source::PostgresGlobals(g) => Target::Globals(g.conn.clone()),
            Source::Postgres(p) => Target::Postgres {
                conn: p.conn.clone(),
                database: opts
                    .to_database
                    .clone()
                    .unwrap_or_else(|| p.database.clone()),
            },
            Source::Mysql(m) => {
                let mut m = m.clone();
                if let Some(d) = &opts.to_database {
                    m.database = d.clone();
                }
                Target::Mysql(m)
            }
            Source::Sqlite(s) => {
                Target::Sqlite(opts.to_path.clone().unwrap_or_else(|| s.path.clone()))
            }
            Source::Files(f) => Target::Files {
                root: opts.to_path.clone().unwrap_or_else(|| f.root.clone()),
                plan: plan.clone(),
            },
        };
        if Some(plan.source.kind()) != rec.kind {
            return Err(RestoreError::Request(format!(
                "component {:?} is a {} in the snapshot but a {} in the policy",
                rec.name,
                rec.kind.map(|k| k.to_string()).unwrap_or_default(),
                plan.source.kind()
            )));
        }
        out.push((rec.clone(), plan, target));
    }
    Ok(out)
}

/// The source that captures a target's current state (for the safety snapshot).
fn current_state_source(plan: &ComponentPlan, target: &Target) -> ComponentPlan {
    let mut p = plan.clone();
    match (&mut p.source, target) {
        (Source::Postgres(s), Target::Postgres { database, .. }) => s.database = database.clone(),
        (Source::Mysql(s), Target::Mysql(m)) => s.database = m.database.clone(),
        (Source::Sqlite(s), Target::Sqlite(path)) => s.path = path.clone(),
        (Source::Files(s), Target::Files { root, .. }) => s.root = root.clone(),
        _ => {}
    }
    p
}

/// Run a restore.
pub async fn run(policy: &Policy, opts: &RestoreOptions) -> Result<RestoreReport, RestoreError> {
    let started_at = Utc::now();
    let (manifest, dest) = locate(policy, &opts.selector, opts.from.as_deref()).await?;
    let identities =
        unseal::identities_for(policy.identity_file.as_deref()).map_err(RestoreError::Request)?;
    if !manifest.encryption_recipients.is_empty() {
        if identities.is_empty() {
            return Err(UnsealError::NoKey.into());
        }
        let mine: Vec<String> = identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect();
        if !manifest
            .encryption_recipients
            .iter()
            .any(|r| mine.contains(r))
        {
            return Err(UnsealError::WrongKey(manifest.encryption_recipients.join(", ")).into());
        }
    }
    let planned = plan_targets(policy, &manifest, opts)?;

    let mut occupied = Vec::new();
    let mut states = Vec::new();
    for (rec, _, target) in &planned {
        let st = target_state(target).await?;
        if let State::Occupied(why) = &st {
            occupied.push(format!("{} ({why})", rec.name));
        }
        states.push(st);
    }
    // Room for files and SQLite targets.
    for ((rec, _, target), st) in planned.iter().zip(&states) {
        let (path, need) = match target {
            Target::Files { root, .. } => (root.clone(), rec.items.bytes.unwrap_or(rec.plain_size)),
            Target::Sqlite(p) => (p.clone(), rec.plain_size * 2),
            _ => continue,
        };
        let existing = if matches!(st, State::Occupied(_)) {
            du(&path)
        } else {
            0
        };
        check_room(&path, need.saturating_sub(existing))?;
    }

    if opts.dry_run {
        println!(
            "restore plan: snapshot {} of policy {} from destination {}",
            manifest.snapshot, manifest.policy, dest.name
        );
        for ((rec, _, target), st) in planned.iter().zip(&states) {
            let what = match st {
                State::Absent => "new".to_string(),
                State::Empty => "empty target".to_string(),
                State::Occupied(why) if opts.force => format!("REPLACES current content ({why})"),
                State::Occupied(why) => format!("REFUSED without --force ({why})"),
            };
            let extra = if opts.delete_newer && matches!(target, Target::Files { .. }) {
                ", files not in the snapshot are deleted"
            } else {
                ""
            };
            println!(
                "  {:<12} {:<16} {:>10} -> {} [{what}{extra}]",
                rec.name,
                rec.kind.map(|k| k.to_string()).unwrap_or_default(),
                human_bytes(rec.plain_size),
                target.describe()
            );
        }
        if !occupied.is_empty() && opts.force && opts.safety_backup {
            println!(
                "  a safety snapshot of {} would be taken first",
                occupied.join(", ")
            );
        }
        return Ok(RestoreReport {
            snapshot: manifest.snapshot.clone(),
            destination: dest.name.clone(),
            safety_snapshot: None,
            components: vec![],
            warnings: vec![],
            started_at,
        });
    }

    if !occupied.is_empty() && !opts.force {
        return Err(RestoreError::NotEmpty(format!(
            "the restore target is not empty: {}; restore elsewhere with --to-database/--to-path, or replace it with --force (a safety backup is taken first)",
            occupied.join(", ")
        )));
    }

    // Safety snapshot of everything about to be overwritten.
    let mut safety_snapshot = None;
    if !occupied.is_empty() && opts.safety_backup {
        let mut safety = policy.clone();
        safety.components = planned
            .iter()
            .zip(&states)
            .filter(|(_, st)| matches!(st, State::Occupied(_)))
            .map(|((_, plan, target), _)| current_state_source(plan, target))
            .collect();
        info!(components = %occupied.join(", "), "taking a safety snapshot of the current state");
        let report = backup::run(
            &safety,
            &BackupOptions {
                reason: SnapshotReason::PreRestore,
                only: None,
                quiesced: false,
            },
        )
        .await
        .map_err(|e| RestoreError::Safety(e.to_string()))?;
        if !report.complete() {
            warn!(
                "the safety snapshot {} is missing at some destinations",
                report.snapshot
            );
        }
        info!(snapshot = %report.snapshot, "safety snapshot taken");
        safety_snapshot = Some(report.snapshot);
    }

    let mut done = Vec::new();
    let mut warnings = Vec::new();
    for ((rec, plan, target), st) in planned.into_iter().zip(states) {
        let t0 = Instant::now();
        info!(component = %rec.name, target = %target.describe(), size = %human_bytes(rec.plain_size), "restoring");
        let key = object_key(&policy.name, &manifest.snapshot, &rec.object);
        let ctx = Ctx {
            dest: &dest,
            key: &key,
            rec: &rec,
            identities: &identities,
            recipients: &manifest.encryption_recipients,
        };
        let occupied = matches!(st, State::Occupied(_));
        let w = match &target {
            Target::Globals(conn) => restore_globals(&ctx, conn).await,
            Target::Postgres { conn, database } => {
                restore_postgres(&ctx, conn, database, occupied, opts.jobs).await
            }
            Target::Mysql(m) => restore_mysql(&ctx, m, occupied).await,
            Target::Sqlite(path) => restore_sqlite(&ctx, path).await,
            Target::Files { root, plan } => {
                restore_files(&ctx, root, plan, occupied, opts.delete_newer).await
            }
        }
        .map_err(|e| match e {
            RestoreError::Component { detail, .. } => RestoreError::Component {
                component: rec.name.clone(),
                detail,
            },
            other => other,
        })?;
        let _ = plan;
        for x in &w {
            warn!(component = %rec.name, "{x}");
        }
        warnings.extend(w.into_iter().map(|x| format!("{}: {x}", rec.name)));
        let secs = t0.elapsed().as_secs_f64();
        info!(component = %rec.name, seconds = format!("{secs:.1}"), "restored");
        done.push((rec.name.clone(), target.describe(), secs));
    }
    Ok(RestoreReport {
        snapshot: manifest.snapshot,
        destination: dest.name,
        safety_snapshot,
        components: done,
        warnings,
        started_at,
    })
}

/// Disk usage of a path (files only), best effort.
fn du(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if m.is_file() {
            total += m.len();
        }
    }
    total
}

fn check_room(path: &Path, need: u64) -> Result<(), RestoreError> {
    if let Some(avail) = free_bytes(path) {
        if avail < need {
            return Err(RestoreError::Request(format!(
                "not enough room for the restore at {}: {} needed, {} free; free space or restore elsewhere with --to-path",
                path.display(),
                human_bytes(need),
                human_bytes(avail)
            )));
        }
    }
    Ok(())
}

struct Ctx<'a> {
    dest: &'a DestinationPlan,
    key: &'a str,
    rec: &'a ComponentRecord,
    identities: &'a [age::x25519::Identity],
    recipients: &'a [String],
}

impl Ctx<'_> {
    async fn open(&self) -> Result<Artifact, RestoreError> {
        Ok(unseal::open(
            &self.dest.store,
            self.key,
            self.rec,
            self.identities,
            self.recipients,
        )
        .await?)
    }

    fn fail(&self, detail: impl Into<String>) -> RestoreError {
        RestoreError::Component {
            component: self.rec.name.clone(),
            detail: detail.into(),
        }
    }

    /// Read the whole artifact and check it, writing nothing (before touching live data).
    async fn check_first(&self) -> Result<(), RestoreError> {
        let a = self.open().await?;
        tokio::task::spawn_blocking(move || a.finish())
            .await
            .map_err(|e| self.fail(e.to_string()))??;
        Ok(())
    }
}

/// Log progress every few seconds while a blocking restore runs.
fn progress_logger(
    name: String,
    total: u64,
    progress: unseal::Progress,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            tick.tick().await;
            let n = progress.bytes();
            let pct = (n * 100).checked_div(total).unwrap_or(100);
            info!(component = %name, "restored {} of {} ({pct}%)", human_bytes(n), human_bytes(total));
        }
    })
}

/// Stream the artifact into a child's stdin (lines filtered by `filter` when given);
/// checks the artifact and the child's exit; returns the child's stderr.
pub(crate) fn pipe_into_child(
    mut a: Artifact,
    mut cmd: Command,
    tool: &str,
    filter: Option<&dyn Fn(&str) -> bool>,
) -> Result<String, String> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {tool}: {e}"))?;
    let stderr = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let copied: Result<(), String> = match filter {
        None => std::io::copy(&mut a, &mut stdin)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Some(keep) => {
            let mut r = BufReader::with_capacity(1 << 20, &mut a);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) => break Ok(()),
                    Ok(_) => {
                        if keep(&line) {
                            if let Err(e) = stdin.write_all(line.as_bytes()) {
                                break Err(e.to_string());
                            }
                        }
                    }
                    Err(e) => break Err(e.to_string()),
                }
            }
        }
    };
    drop(stdin);
    let status = child.wait().map_err(|e| e.to_string())?;
    let err = err_thread.join().unwrap_or_default();
    if let Err(e) = copied {
        // The artifact failed (or the child stopped reading): report the artifact first.
        a.finish().map_err(|u| u.to_string())?;
        return Err(format!(
            "{tool} stopped reading: {e}: {}",
            last_lines(&err, 3)
        ));
    }
    a.finish().map_err(|u| u.to_string())?;
    if !status.success() {
        return Err(format!("{tool} failed: {}", last_lines(&err, 3)));
    }
    Ok(err)
}

async fn restore_globals(ctx: &Ctx<'_>, conn: &PgConn) -> Result<Vec<String>, RestoreError> {
    let a = ctx.open().await?;
    let client = conn
        .connect(pg_maintenance_db())
        .await
        .map_err(|e| ctx.fail(e.to_string()))?;
    let (major, _) = server_major(&client, conn).await.map_err(|e| ctx.fail(e))?;
    let _ = major;
    // Any psql replays plain SQL; take the newest installed.
    let tools = tokio::task::spawn_blocking(|| installed_tools("psql"))
        .await
        .unwrap_or_default();
    let psql = tools
        .into_iter()
        .max_by_key(|t| t.major)
        .ok_or_else(|| ctx.fail("psql is not installed: install the PostgreSQL client (Debian: apt-get install postgresql-client)"))?;
    let mut cmd = conn.command(&psql.path);
    cmd.args(["-X", "-q", "-d", pg_maintenance_db()]);
    let me = conn.user.clone();
    let stderr = tokio::task::spawn_blocking(move || {
        // NB: never replay the connecting role's own definition: restoring an old
        // password for it would lock this restore (and its operator) out.
        let quoted = format!("\"{}\"", me.replace('"', "\"\""));
        let keep = move |line: &str| {
            let own = |prefix: &str| {
                line.starts_with(&format!("{prefix} {me};"))
                    || line.starts_with(&format!("{prefix} {me} "))
                    || line.starts_with(&format!("{prefix} {quoted}"))
            };
            !(own("CREATE ROLE") || own("ALTER ROLE"))
        };
        pipe_into_child(a, cmd, "psql", Some(&keep))
    })
    .await
    .map_err(|e| ctx.fail(e.to_string()))?
    .map_err(|e| ctx.fail(e))?;
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ERROR:") && !l.contains("already exists"))
        .collect();
    Ok(errors
        .iter()
        .take(5)
        .map(|e| e.trim().to_string())
        .collect())
}

async fn server_major(
    client: &tokio_postgres::Client,
    conn: &PgConn,
) -> Result<(u32, String), String> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version')",
            &[],
        )
        .await
        .map_err(|e| conn.map_error(e, "").to_string())?;
    let n: i32 = row.get(0);
    Ok(((n / 10_000) as u32, row.get(1)))
}

fn q(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

async fn restore_postgres(
    ctx: &Ctx<'_>,
    conn: &PgConn,
    database: &str,
    occupied: bool,
    jobs: usize,
) -> Result<Vec<String>, RestoreError> {
    let mut warnings = Vec::new();
    let admin = conn
        .connect(pg_maintenance_db())
        .await
        .map_err(|e| ctx.fail(e.to_string()))?;
    let (major, _) = server_major(&admin, conn).await.map_err(|e| ctx.fail(e))?;
    let dump_major = ctx
        .rec
        .tool
        .as_deref()
        .and_then(crate::source::postgres::parse_tool_major)
        .unwrap_or(major);
    let tools = tokio::task::spawn_blocking(|| installed_tools("pg_restore"))
        .await
        .unwrap_or_default();
    let tool = choose_tool(&tools, "pg_restore", major.max(dump_major))
        .map_err(|e| ctx.fail(e.to_string()))?;

    // Restore into a scratch database when replacing, so the target changes only on success.
    let work = if occupied {
        format!("{database}__arca_restore")
    } else {
        database.to_string()
    };
    let owner_exists = match &ctx.rec.owner {
        Some(o) => admin
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[o])
            .await
            .map(|r| r.is_some())
            .unwrap_or(false),
        None => false,
    };
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {}", q(&work)))
        .await
        .map_err(|e| ctx.fail(conn.map_error(e, &work).to_string()))?;
    let mut create = format!("CREATE DATABASE {} TEMPLATE template0", q(&work));
    if let Some(enc) = &ctx.rec.encoding {
        create.push_str(&format!(" ENCODING '{}'", enc.replace('\'', "")));
    }
    if owner_exists {
        create.push_str(&format!(
            " OWNER {}",
            q(ctx.rec.owner.as_deref().unwrap_or_default())
        ));
    } else if let Some(o) = &ctx.rec.owner {
        warnings.push(format!("owner role {o} does not exist: the database belongs to {} (restore the globals component first)", conn.user));
    }
    admin
        .batch_execute(&create)
        .await
        .map_err(|e| ctx.fail(conn.map_error(e, &work).to_string()))?;

    let result = pg_restore_into(ctx, conn, &tool.path, &work, jobs).await;
    if let Err(e) = result {
        let _ = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {}", q(&work)))
            .await;
        return Err(e);
    }
    if occupied {
        let old = format!("{database}__arca_old");
        // NB: one statement per call: DROP DATABASE cannot run in a transaction block.
        let steps = [
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
                database.replace('\'', "''")
            ),
            format!("DROP DATABASE IF EXISTS {}", q(&old)),
            format!("ALTER DATABASE {} RENAME TO {}", q(database), q(&old)),
            format!("ALTER DATABASE {} RENAME TO {}", q(&work), q(database)),
            format!("DROP DATABASE {}", q(&old)),
        ];
        for sql in steps {
            admin.batch_execute(&sql).await.map_err(|e| {
                ctx.fail(format!(
                    "swapping the restored database in: {}",
                    conn.map_error(e, database)
                ))
            })?;
        }
    }
    Ok(warnings)
}

/// Restore a pg_dump custom archive into `db`. Parallel `pg_restore` needs a seekable
/// archive: with room in `TMPDIR` (and more than one job) the dump is staged to a file,
/// checked in full, and restored by `jobs` workers; without room, it streams through one
/// `pg_restore`. While staging, each table's data position is written into the TOC (see
/// [`crate::pgarchive`]), so the workers seek straight to their tables instead of each
/// reading through the whole dump.
async fn pg_restore_into(
    ctx: &Ctx<'_>,
    conn: &PgConn,
    tool: &Path,
    db: &str,
    jobs: usize,
) -> Result<(), RestoreError> {
    let a = ctx.open().await?;
    let progress = progress_logger(ctx.rec.name.clone(), ctx.rec.size, a.progress());
    let room = free_bytes(&std::env::temp_dir()).unwrap_or(0);
    let stage = jobs > 1 && room > ctx.rec.plain_size.saturating_mul(11) / 10 + (256 << 20);
    let mut cmd = conn.command(tool);
    cmd.arg("--exit-on-error").arg("--dbname").arg(db);
    let name = ctx.rec.name.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<(), String> {
        if stage {
            let file = stage_with_positions(a)?;
            cmd.arg(format!("--jobs={jobs}")).arg(file.path());
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            let out = cmd
                .output()
                .map_err(|e| format!("cannot start pg_restore: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "pg_restore failed: {}",
                    last_lines(&String::from_utf8_lossy(&out.stderr), 3)
                ));
            }
            Ok(())
        } else {
            pipe_into_child(a, cmd, "pg_restore", None).map(|_| ())
        }
    })
    .await;
    progress.abort();
    r.map_err(|e| ctx.fail(e.to_string()))?
        .map_err(|e| RestoreError::Component {
            component: name,
            detail: e,
        })
}

/// Stage the artifact to a checked temporary file, writing each table's data position
/// into its TOC entry as the table's block lands.
fn stage_with_positions(mut a: Artifact) -> Result<tempfile::NamedTempFile, String> {
    use std::os::unix::fs::FileExt as _;
    let stage_err = |e: std::io::Error| format!("staging the dump: {e}");
    let mut file = tempfile::Builder::new()
        .prefix("arca-restore-")
        .tempfile()
        .map_err(stage_err)?;
    let mut ix = pgarchive::Indexer::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = a.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        file.as_file_mut().write_all(&buf[..n]).map_err(stage_err)?;
        for b in ix.feed(&buf[..n]) {
            if let Some((at, bytes)) = ix.patch(b) {
                file.as_file().write_all_at(&bytes, at).map_err(stage_err)?;
            }
        }
    }
    a.finish().map_err(|e| e.to_string())?;
    if let Some(why) = ix.failed() {
        info!("restoring without data positions ({why}): pg_restore reads through the dump");
    }
    Ok(file)
}

async fn restore_mysql(
    ctx: &Ctx<'_>,
    m: &MyDatabase,
    occupied: bool,
) -> Result<Vec<String>, RestoreError> {
    if occupied {
        // Check the artifact end to end before the live database is dropped.
        ctx.check_first().await?;
    }
    let a = ctx.open().await?;
    let progress = progress_logger(ctx.rec.name.clone(), ctx.rec.size, a.progress());
    let m = m.clone();
    let name = ctx.rec.name.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let tools = find_tools().map_err(|e| e.to_string())?;
        let opts = OptionFile::new(m.password.as_ref()).map_err(|e| e.to_string())?;
        let db = format!("`{}`", m.database.replace('`', "``"));
        let mut admin = m.command(&tools.client, &opts);
        let drop = if occupied {
            format!("DROP DATABASE IF EXISTS {db}; ")
        } else {
            String::new()
        };
        admin.arg("-e").arg(format!("{drop}CREATE DATABASE {db}"));
        let out = admin.output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(m
                .map_client_error(&String::from_utf8_lossy(&out.stderr))
                .to_string());
        }
        let mut cmd = m.command(&tools.client, &opts);
        cmd.arg("--batch").arg("--database").arg(&m.database);
        let r = pipe_into_child(a, cmd, "mariadb", None);
        if r.is_err() && !occupied {
            let mut cleanup = m.command(&tools.client, &opts);
            cleanup
                .arg("-e")
                .arg(format!("DROP DATABASE IF EXISTS {db}"));
            let _ = cleanup.output();
        }
        r.map(|_| ())
    })
    .await;
    progress.abort();
    r.map_err(|e| ctx.fail(e.to_string()))?
        .map_err(|e| RestoreError::Component {
            component: name,
            detail: e,
        })?;
    Ok(vec![])
}

async fn restore_sqlite(ctx: &Ctx<'_>, path: &Path) -> Result<Vec<String>, RestoreError> {
    let a = ctx.open().await?;
    let path = path.to_path_buf();
    let name = ctx.rec.name.clone();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".arca-restore-")
            .tempfile_in(&dir)
            .map_err(|e| format!("creating a temporary file in {}: {e}", dir.display()))?;
        let mut a = a;
        std::io::copy(&mut a, tmp.as_file_mut()).map_err(|e| e.to_string())?;
        a.finish().map_err(|e| e.to_string())?;
        tmp.as_file().sync_all().map_err(|e| e.to_string())?;
        let conn = rusqlite::Connection::open(tmp.path()).map_err(|e| e.to_string())?;
        crate::source::sqlite::integrity_check(&conn)
            .map_err(|e| format!("the restored copy fails integrity_check: {e}"))?;
        drop(conn);
        // A stale WAL of the old file would be applied to the new one: remove it first.
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
        tmp.persist(&path)
            .map_err(|e| format!("moving the restored file into place: {e}"))?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })
    .await
    .map_err(|e| ctx.fail(e.to_string()))?
    .map_err(|e| RestoreError::Component {
        component: name,
        detail: e,
    })?;
    Ok(vec![])
}

async fn restore_files(
    ctx: &Ctx<'_>,
    root: &Path,
    plan: &ComponentPlan,
    occupied: bool,
    delete_newer: bool,
) -> Result<Vec<String>, RestoreError> {
    if occupied {
        ctx.check_first().await?;
    }
    let a = ctx.open().await?;
    let progress = progress_logger(ctx.rec.name.clone(), ctx.rec.size, a.progress());
    let root = root.to_path_buf();
    let excludes = match &plan.source {
        Source::Files(f) => Some(f.excludes.clone()),
        _ => None,
    };
    let name = ctx.rec.name.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<Vec<String>, String> {
        let mut a = a;
        let got = extract::extract(&mut a, &root).map_err(|e| e.to_string())?;
        a.finish().map_err(|e| e.to_string())?;
        let mut warnings = Vec::new();
        if delete_newer {
            let keep: BTreeSet<PathBuf> = got.paths.clone();
            let removed = extract::delete_newer(&root, &keep, &|p: &Path| {
                excludes
                    .as_ref()
                    .is_some_and(|ex| ex.matches(p, p.file_name().unwrap_or_default()))
            })
            .map_err(|e| e.to_string())?;
            if removed > 0 {
                warnings.push(format!(
                    "{removed} entries not in the snapshot were deleted (--delete-newer)"
                ));
            }
        }
        Ok(warnings)
    })
    .await;
    progress.abort();
    r.map_err(|e| ctx.fail(e.to_string()))?
        .map_err(|e| RestoreError::Component {
            component: name,
            detail: e,
        })
}
