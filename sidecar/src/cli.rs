//! The command line: argument types and the commands. Every failure ends as one line on
//! stderr (`arca: ...`) and a non-zero exit: 1 when the run failed, 2 for bad usage or
//! config.

use std::io::Write as _;
use std::path::PathBuf;

use arca_api::result::{RunResult, SnapshotEntry, SnapshotList, RESULT_FORMAT, SNAPSHOTS_FORMAT};
use clap::{Parser, Subcommand, ValueEnum};

use crate::catalog;
use crate::config::{self, ConfigError};
use crate::store::path::human_bytes;

/// Arca: verified, encrypted backups of clinical systems.
#[derive(Debug, Parser)]
#[command(name = "arca", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "ARCA_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up a policy now; prints the snapshot id as the last stdout line.
    Backup {
        /// Config file (arca.yaml).
        #[arg(long, short)]
        config: String,
        /// Policy name (optional when the config has one policy).
        #[arg(long, short)]
        policy: Option<String>,
        /// Write a JSON summary (arca-result/1, at most 4 KiB) to this file.
        #[arg(long)]
        result_file: Option<PathBuf>,
    },
    /// List the snapshots of a policy, newest first.
    Snapshots {
        /// Config file.
        #[arg(long, short)]
        config: String,
        /// Policy name.
        #[arg(long, short)]
        policy: Option<String>,
        /// Only this destination.
        #[arg(long)]
        from: Option<String>,
        /// Machine-readable output (arca-snapshots/1).
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot: roles first, then databases, SQLite files and file trees.
    Restore {
        /// Config file.
        #[arg(long, short)]
        config: String,
        /// Policy name.
        #[arg(long, short)]
        policy: Option<String>,
        /// Snapshot id or `latest` (default latest).
        #[arg(long, short)]
        snapshot: Option<String>,
        /// The newest snapshot started before this RFC 3339 time.
        #[arg(long, conflicts_with = "snapshot")]
        before: Option<String>,
        /// Only this component (repeatable).
        #[arg(long = "component")]
        components: Vec<String>,
        /// Read from this destination (default: the first that holds the snapshot).
        #[arg(long)]
        from: Option<String>,
        /// Restore the database component under this new name (created).
        #[arg(long)]
        to_database: Option<String>,
        /// Restore the files component into this directory, or the sqlite file to this path.
        #[arg(long)]
        to_path: Option<PathBuf>,
        /// Make the files target exactly the snapshot's state (delete what is not in it).
        #[arg(long)]
        delete_newer: bool,
        /// Do not back up the current state before overwriting it.
        #[arg(long)]
        no_safety_backup: bool,
        /// Overwrite non-empty targets.
        #[arg(long)]
        force: bool,
        /// Print what would be restored where, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Parallel pg_restore jobs (default: number of cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Write a JSON summary (arca-result/1) to this file.
        #[arg(long)]
        result_file: Option<PathBuf>,
    },
    /// Check snapshots: re-read, decrypt, decompress and compare both digests; with
    /// --deep also restore into a scratch database/directory and compare counts.
    Verify {
        /// Config file.
        #[arg(long, short)]
        config: String,
        /// Policy name.
        #[arg(long, short)]
        policy: Option<String>,
        /// Snapshot id, `latest` (default) or `all`.
        #[arg(long, short)]
        snapshot: Option<String>,
        /// Only this destination (default: every destination).
        #[arg(long)]
        from: Option<String>,
        /// Restore into scratch targets and compare tables, rows, files and bytes.
        #[arg(long)]
        deep: bool,
        /// Write a JSON summary (arca-result/1) to this file.
        #[arg(long)]
        result_file: Option<PathBuf>,
    },
    /// Apply each destination's retention and collect leftovers of interrupted runs.
    Prune {
        /// Config file.
        #[arg(long, short)]
        config: String,
        /// Policy name.
        #[arg(long, short)]
        policy: Option<String>,
        /// Only this destination.
        #[arg(long)]
        from: Option<String>,
        /// List every snapshot with keep or delete and the rule that decided; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run every policy on its schedule, with a status page, /api/status, /metrics,
    /// /healthz and /readyz (compose sidecar mode).
    Daemon {
        /// Config file.
        #[arg(long, short)]
        config: String,
        /// HTTP listen address (default: daemon.listen, else 0.0.0.0:9180).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Check a config: parse it and validate every policy; exit 2 on the first problem.
    Check {
        /// Config file.
        #[arg(long, short)]
        config: String,
    },
    /// Print a new age identity (secret) and, on stderr, its public recipient.
    Keygen {
        /// Write the identity to this file (mode 0600) instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Back up a built-in sample (a directory and a SQLite database) to a local folder.
    Demo {
        /// Working directory for the sample, the key and the backups.
        #[arg(long, default_value = "demo")]
        dir: PathBuf,
    },
}

/// Set up logging on stderr (`ARCA_LOG` or `RUST_LOG` choose the level; default info).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARCA_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "info,aws=warn,aws_smithy_runtime=warn,aws_config=warn",
            )
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => {
            let _ = builder
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .compact()
                .try_init();
        }
        LogFormat::Json => {
            let _ = builder.json().try_init();
        }
    }
}

/// A command's failure: the line to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// One line.
    pub message: String,
    /// Exit code.
    pub code: i32,
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Self {
            message: e.to_string(),
            code: 2,
        }
    }
}

fn fail(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        code: 1,
    }
}

/// Run a parsed command; returns the exit code.
pub async fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Backup {
            config,
            policy,
            result_file,
        } => cmd_backup(&config, policy.as_deref(), result_file).await,
        Command::Snapshots {
            config,
            policy,
            from,
            json,
        } => cmd_snapshots(&config, policy.as_deref(), from.as_deref(), json).await,
        Command::Restore {
            config,
            policy,
            snapshot,
            before,
            components,
            from,
            to_database,
            to_path,
            delete_newer,
            no_safety_backup,
            force,
            dry_run,
            jobs,
            result_file,
        } => {
            let opts = crate::restore::parse_selector(snapshot.as_deref(), before.as_deref())
                .map_err(|m| Failure {
                    message: m,
                    code: 2,
                })
                .map(|selector| crate::restore::RestoreOptions {
                    selector,
                    components,
                    from,
                    to_database,
                    to_path,
                    delete_newer,
                    safety_backup: !no_safety_backup,
                    force,
                    dry_run,
                    jobs: jobs.unwrap_or_else(|| {
                        std::thread::available_parallelism()
                            .map(|n| n.get())
                            .unwrap_or(1)
                    }),
                });
            match opts {
                Ok(o) => cmd_restore(&config, policy.as_deref(), &o, result_file).await,
                Err(f) => Err(f),
            }
        }
        Command::Verify {
            config,
            policy,
            snapshot,
            from,
            deep,
            result_file,
        } => {
            cmd_verify(
                &config,
                policy.as_deref(),
                snapshot.as_deref(),
                from.as_deref(),
                deep,
                result_file,
            )
            .await
        }
        Command::Prune {
            config,
            policy,
            from,
            dry_run,
        } => cmd_prune(&config, policy.as_deref(), from.as_deref(), dry_run).await,
        Command::Daemon { config, listen } => crate::daemon::run(&config, listen.as_deref())
            .await
            .map_err(|m| Failure {
                message: m,
                code: 1,
            }),
        Command::Check { config } => cmd_check(&config),
        Command::Keygen { output } => cmd_keygen(output),
        Command::Demo { dir } => crate::demo::run(&dir).await,
    };
    match result {
        Ok(()) => 0,
        Err(f) => {
            let line = f.message.replace(['\n', '\r'], " ");
            eprintln!("arca: {line}");
            f.code
        }
    }
}

/// State dir and Docker endpoint from the config's `daemon` section (or defaults).
fn runner_settings(config_path: &str) -> crate::runner::RunnerSettings {
    let daemon = config::load_file(config_path)
        .ok()
        .and_then(|c| c.daemon)
        .unwrap_or_default();
    crate::runner::RunnerSettings {
        state_dir: daemon
            .state_dir
            .map(PathBuf::from)
            .unwrap_or_else(crate::runner::default_state_dir),
        docker_host: daemon.docker_host,
    }
}

fn write_result(path: &Option<PathBuf>, result: &RunResult) {
    if let Some(p) = path {
        if let Err(e) = std::fs::write(p, result.to_bounded_json()) {
            tracing::warn!("cannot write the result file {}: {e}", p.display());
        }
    }
}

async fn cmd_backup(
    config_path: &str,
    policy: Option<&str>,
    result_file: Option<PathBuf>,
) -> Result<(), Failure> {
    let started = chrono::Utc::now();
    let base = RunResult {
        format: RESULT_FORMAT.into(),
        command: "backup".into(),
        policy: policy.unwrap_or_default().to_string(),
        started_at: Some(started),
        ..Default::default()
    };
    let policy = match config::load_policy(config_path, policy) {
        Ok(p) => p,
        Err(e) => {
            let f = Failure::from(e);
            write_result(
                &result_file,
                &RunResult {
                    error: Some(f.message.clone()),
                    completed_at: Some(chrono::Utc::now()),
                    ..base
                },
            );
            return Err(f);
        }
    };
    let settings = runner_settings(config_path);
    match crate::runner::backup_policy(&policy, &settings).await {
        Ok(report) => {
            let result = report.result();
            write_result(&result_file, &result);
            println!("{}", report.snapshot);
            if report.complete() {
                Ok(())
            } else {
                let good: Vec<&str> = report
                    .destinations
                    .iter()
                    .filter(|(_, e)| e.is_none())
                    .map(|(n, _)| n.as_str())
                    .collect();
                Err(fail(format!(
                    "{}; snapshot {} is complete at {}",
                    result.error.unwrap_or_default(),
                    report.snapshot,
                    good.join(", ")
                )))
            }
        }
        Err(message) => {
            write_result(
                &result_file,
                &RunResult {
                    policy: policy.name.clone(),
                    error: Some(message.clone()),
                    completed_at: Some(chrono::Utc::now()),
                    ..base
                },
            );
            Err(fail(message))
        }
    }
}

async fn cmd_snapshots(
    config_path: &str,
    policy: Option<&str>,
    from: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let policy = config::load_policy(config_path, policy)?;
    let dests = policy
        .destinations_from(from)
        .map_err(|message| Failure { message, code: 2 })?;
    let (found, errors) = catalog::list_all(&dests, &policy.name).await;
    for (name, e) in &errors {
        tracing::warn!(destination = %name, "cannot list: {e}");
    }
    if errors.len() == dests.len() {
        let (name, e) = &errors[0];
        return Err(fail(format!("cannot list destination {name:?}: {e}")));
    }
    let mut verified: std::collections::HashMap<String, arca_api::result::VerificationSummary> =
        Default::default();
    for d in &dests {
        for r in crate::verify::latest_records(&d.store, &policy.name).await {
            let newer = verified.get(&r.snapshot).is_none_or(|v| v.at < Some(r.at));
            if newer {
                verified.insert(
                    r.snapshot.clone(),
                    arca_api::result::VerificationSummary {
                        at: Some(r.at),
                        ok: r.ok,
                        deep: r.deep,
                        destination: r.destination.clone(),
                    },
                );
            }
        }
    }
    let entries: Vec<SnapshotEntry> = found
        .iter()
        .rev()
        .map(|l| SnapshotEntry {
            snapshot: l.manifest.snapshot.clone(),
            reason: l.manifest.reason,
            started_at: Some(l.manifest.started_at),
            completed_at: Some(l.manifest.completed_at),
            size: l.manifest.stored_size(),
            plain_size: l.manifest.plain_size(),
            components: l
                .manifest
                .components
                .iter()
                .map(|c| c.name.clone())
                .collect(),
            destinations: l.destinations.clone(),
            verification: verified.get(&l.manifest.snapshot).cloned(),
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        let list = SnapshotList {
            format: SNAPSHOTS_FORMAT.into(),
            policy: policy.name.clone(),
            snapshots: entries,
        };
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
    } else if entries.is_empty() {
        let _ = writeln!(out, "no snapshots of policy {} yet", policy.name);
    } else {
        let _ = writeln!(
            out,
            "{:<20} {:<11} {:>10} {:>10}  {:<24} {:<16} VERIFIED",
            "SNAPSHOT", "KIND", "STORED", "PLAIN", "COMPONENTS", "DESTINATIONS"
        );
        for e in entries {
            let _ = writeln!(
                out,
                "{:<20} {:<11} {:>10} {:>10}  {:<24} {:<16} {}",
                e.snapshot,
                match e.reason {
                    arca_api::manifest::SnapshotReason::Backup => "backup",
                    arca_api::manifest::SnapshotReason::PreRestore => "pre-restore",
                },
                human_bytes(e.size),
                human_bytes(e.plain_size),
                e.components.join(","),
                e.destinations.join(","),
                match &e.verification {
                    None => "never".to_string(),
                    Some(v) => format!(
                        "{} {} {}",
                        if v.ok { "ok" } else { "FAILED" },
                        if v.deep { "deep" } else { "digests" },
                        v.at.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_default()
                    ),
                }
            );
        }
    }
    Ok(())
}

async fn cmd_restore(
    config_path: &str,
    policy: Option<&str>,
    opts: &crate::restore::RestoreOptions,
    result_file: Option<PathBuf>,
) -> Result<(), Failure> {
    let policy = config::load_policy(config_path, policy)?;
    let started = chrono::Utc::now();
    match crate::restore::run(&policy, opts).await {
        Ok(report) => {
            write_result(&result_file, &report.result(&policy.name));
            if !opts.dry_run {
                if let Some(s) = &report.safety_snapshot {
                    eprintln!("safety snapshot of the previous state: {s}");
                }
                println!("{}", report.snapshot);
            }
            Ok(())
        }
        Err(e) => {
            let message = format!("restore of policy {:?} failed: {e}", policy.name);
            write_result(
                &result_file,
                &RunResult {
                    format: RESULT_FORMAT.into(),
                    command: "restore".into(),
                    policy: policy.name.clone(),
                    started_at: Some(started),
                    completed_at: Some(chrono::Utc::now()),
                    error: Some(message.clone()),
                    ..Default::default()
                },
            );
            Err(fail(message))
        }
    }
}

async fn cmd_verify(
    config_path: &str,
    policy: Option<&str>,
    snapshot: Option<&str>,
    from: Option<&str>,
    deep: bool,
    result_file: Option<PathBuf>,
) -> Result<(), Failure> {
    let policy = config::load_policy(config_path, policy)?;
    let which = match snapshot {
        None | Some("latest") => crate::verify::Which::Latest,
        Some("all") => crate::verify::Which::All,
        Some(id) => {
            id.parse::<arca_api::SnapshotId>().map_err(|e| Failure {
                message: e.to_string(),
                code: 2,
            })?;
            crate::verify::Which::Id(id.to_string())
        }
    };
    let started = chrono::Utc::now();
    let report = crate::verify::run(&policy, &which, from, deep)
        .await
        .map_err(|m| fail(format!("verify of policy {:?} failed: {m}", policy.name)))?;
    let mut out = std::io::stdout().lock();
    for r in &report.records {
        let _ = writeln!(
            out,
            "{} {:<20} {:<12} {}",
            if r.ok { "ok    " } else { "FAILED" },
            r.snapshot,
            r.destination,
            if r.deep { "deep" } else { "digests" }
        );
    }
    let ok = report.ok();
    write_result(
        &result_file,
        &RunResult {
            format: RESULT_FORMAT.into(),
            command: "verify".into(),
            policy: policy.name.clone(),
            ok,
            snapshot: report.records.first().map(|r| r.snapshot.clone()),
            started_at: Some(started),
            completed_at: Some(chrono::Utc::now()),
            error: report.first_failure(),
            ..Default::default()
        },
    );
    if ok {
        Ok(())
    } else {
        Err(fail(format!(
            "verify of policy {:?} failed: {}",
            policy.name,
            report
                .first_failure()
                .unwrap_or_else(|| "nothing was verified".into())
        )))
    }
}

async fn cmd_prune(
    config_path: &str,
    policy: Option<&str>,
    from: Option<&str>,
    dry_run: bool,
) -> Result<(), Failure> {
    let policy = config::load_policy(config_path, policy)?;
    if let Some(f) = from {
        if !policy.destinations.iter().any(|d| d.name == f) {
            return Err(Failure {
                message: format!("policy {:?} has no destination {f:?}", policy.name),
                code: 2,
            });
        }
    }
    let only: Option<Vec<String>> = from.map(|f| vec![f.to_string()]);
    let mut failures = Vec::new();
    let mut out = std::io::stdout().lock();
    for r in crate::prune::run(&policy, only.as_deref(), dry_run).await {
        match r {
            Ok(p) => {
                let _ = writeln!(out, "destination {}:", p.destination);
                for d in &p.decisions {
                    let _ = writeln!(
                        out,
                        "  {:<20} {:<6} {}",
                        d.id,
                        if d.keep { "keep" } else { "delete" },
                        d.reasons.join(", ")
                    );
                }
                for l in &p.leftovers {
                    let _ = writeln!(
                        out,
                        "  {l:<20} {:<6} incomplete (no manifest), older than a day",
                        "delete"
                    );
                }
                for k in &p.stale_uploads {
                    let _ = writeln!(
                        out,
                        "  {k} aborted: incomplete upload of an interrupted run, older than a day"
                    );
                }
                failures.extend(
                    p.errors
                        .into_iter()
                        .map(|e| format!("{}: {e}", p.destination)),
                );
            }
            Err(e) => failures.push(e),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(fail(format!(
            "prune of policy {:?} failed: {}",
            policy.name,
            failures.join("; ")
        )))
    }
}

fn cmd_check(config_path: &str) -> Result<(), Failure> {
    let cfg = config::load_file(config_path)?;
    for p in &cfg.policies {
        config::select(&cfg, Some(&p.name))?;
        config::resolve(p)?;
        println!("policy {}: ok", p.name);
    }
    if cfg.policies.is_empty() {
        return Err(Failure {
            message: format!("config {config_path} has no policies: add one under `policies:`"),
            code: 2,
        });
    }
    Ok(())
}

fn cmd_keygen(output: Option<PathBuf>) -> Result<(), Failure> {
    let (identity, recipient) = crate::keys::generate();
    match output {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| {
                    fail(format!(
                        "cannot create {}: {e} (keygen never overwrites a key file)",
                        path.display()
                    ))
                })?;
            f.write_all(identity.expose().as_bytes())
                .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
            println!("{recipient}");
        }
        None => {
            print!("{}", identity.expose());
        }
    }
    eprintln!("public key (put it in encryption.ageRecipients): {recipient}");
    Ok(())
}
