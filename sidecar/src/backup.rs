//! One backup run: every component streamed once, in order, to every destination at once;
//! the manifest written last at each destination that received every artifact.

use std::time::Instant;

use arca_api::manifest::{
    ComponentRecord, Manifest, SnapshotReason, MANIFEST_FORMAT, MANIFEST_NAME,
};
use arca_api::result::{ComponentResult, DestinationResult, RunResult, RESULT_FORMAT};
use arca_api::SnapshotId;
use bytes::Bytes;
use chrono::Utc;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::catalog::{object_key, snapshot_folders};
use crate::config::{ComponentPlan, Policy};
use crate::pipeline::{PipelineSettings, PipelineWriter, QUEUE_DEPTH};
use crate::source::SourceError;
use crate::store::path::human_bytes;
use crate::store::StoreError;

/// Why a run failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A component could not be captured; no snapshot was written anywhere.
    #[error("component {component:?} failed: {source}")]
    Component {
        /// Component name.
        component: String,
        /// What went wrong.
        source: SourceError,
    },
    /// No destination could take the snapshot.
    #[error("no destination could be written: {0}")]
    Destinations(String),
    /// The compression/encryption pipeline failed.
    #[error("component {component:?}: {detail}")]
    Pipeline {
        /// Component name.
        component: String,
        /// What went wrong.
        detail: String,
    },
}

/// Options of a run.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Ordinary backup or pre-restore safety snapshot.
    pub reason: SnapshotReason,
    /// Capture only these components (safety snapshots); None: all.
    pub only: Option<Vec<String>>,
    /// The application was stopped for this run.
    pub quiesced: bool,
}

/// The outcome of a run in which at least one destination succeeded.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// Snapshot id.
    pub snapshot: String,
    /// The manifest written.
    pub manifest: Manifest,
    /// Per destination: None on success, the error otherwise.
    pub destinations: Vec<(String, Option<String>)>,
}

impl BackupReport {
    /// True when every destination holds the snapshot.
    pub fn complete(&self) -> bool {
        self.destinations.iter().all(|(_, e)| e.is_none())
    }

    /// The machine-readable summary.
    pub fn result(&self) -> RunResult {
        let failed: Vec<String> = self
            .destinations
            .iter()
            .filter_map(|(n, e)| e.as_ref().map(|e| format!("destination {n:?} failed: {e}")))
            .collect();
        RunResult {
            format: RESULT_FORMAT.into(),
            command: "backup".into(),
            policy: self.manifest.policy.clone(),
            ok: failed.is_empty(),
            snapshot: Some(self.snapshot.clone()),
            started_at: Some(self.manifest.started_at),
            completed_at: Some(self.manifest.completed_at),
            bytes: self.manifest.stored_size(),
            plain_bytes: self.manifest.plain_size(),
            destinations: self
                .destinations
                .iter()
                .map(|(n, e)| DestinationResult {
                    name: n.clone(),
                    ok: e.is_none(),
                    error: e.clone(),
                })
                .collect(),
            components: self
                .manifest
                .components
                .iter()
                .map(|c| ComponentResult {
                    name: c.name.clone(),
                    ok: true,
                    bytes: c.size,
                    duration_seconds: c.duration_seconds,
                    error: None,
                })
                .collect(),
            warnings: self
                .manifest
                .components
                .iter()
                .flat_map(|c| c.warnings.iter().map(move |w| format!("{}: {w}", c.name)))
                .collect(),
            error: if failed.is_empty() {
                None
            } else {
                Some(failed.join("; "))
            },
            ..Default::default()
        }
    }
}

struct Dest<'a> {
    name: &'a str,
    store: &'a crate::store::Store,
    error: Option<String>,
}

fn hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
}

/// Run a backup of `policy`.
pub async fn run(policy: &Policy, opts: &BackupOptions) -> Result<BackupReport, BackupError> {
    let started = Utc::now();
    let mut dests: Vec<Dest<'_>> = policy
        .destinations
        .iter()
        .map(|d| Dest {
            name: &d.name,
            store: &d.store,
            error: None,
        })
        .collect();

    // Reachable, writable, room for the reserve: before anything is captured.
    let probes = futures::future::join_all(dests.iter().map(|d| async move {
        d.store.probe().await?;
        d.store.check_space(0).await
    }))
    .await;
    for (d, r) in dests.iter_mut().zip(probes) {
        if let Err(e) = r {
            warn!(destination = d.name, "{e}");
            d.error = Some(e.to_string());
        }
    }
    ensure_live(&dests)?;

    // A unique id across destinations.
    let mut id = SnapshotId::at(started);
    let mut taken = Vec::new();
    for d in dests.iter().filter(|d| d.error.is_none()) {
        if let Ok(ids) = snapshot_folders(d.store, &policy.name).await {
            taken.extend(ids);
        }
    }
    // Past the highest suffix of this second, so ids keep sorting in run order even after
    // prune removed a same-second snapshot.
    if let Some(max) = taken.iter().filter(|t| t.time == id.time).max() {
        id = max.next_seq();
    }
    let snapshot = id.to_string();
    info!(policy = %policy.name, snapshot = %snapshot, "backup started");

    let settings = PipelineSettings::new(policy.recipients.clone());
    let mut records = Vec::new();
    let selected: Vec<&ComponentPlan> = policy
        .components
        .iter()
        .filter(|c| opts.only.as_ref().is_none_or(|o| o.contains(&c.name)))
        .collect();
    for comp in selected {
        match capture_component(policy, &snapshot, comp, &settings, &mut dests).await {
            Ok(rec) => records.push(rec),
            Err(e) => {
                cleanup(&dests, &policy.name, &snapshot).await;
                return Err(e);
            }
        }
    }

    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        policy: policy.name.clone(),
        snapshot: snapshot.clone(),
        reason: opts.reason,
        started_at: started,
        completed_at: Utc::now(),
        tool_version: format!("arca {}", env!("CARGO_PKG_VERSION")),
        host: hostname(),
        compression: "zstd".into(),
        encryption_recipients: policy.recipients.iter().map(|r| r.to_string()).collect(),
        quiesced: opts.quiesced,
        components: records,
    };
    let json = Bytes::from(serde_json::to_vec_pretty(&manifest).unwrap_or_default());
    let key = object_key(&policy.name, &snapshot, MANIFEST_NAME);
    for d in dests.iter_mut().filter(|d| d.error.is_none()) {
        if let Err(e) = d.store.put_bytes(&key, json.clone()).await {
            warn!(destination = d.name, "{e}");
            d.error = Some(e.to_string());
        }
    }
    if let Err(e) = ensure_live(&dests) {
        cleanup(&dests, &policy.name, &snapshot).await;
        return Err(e);
    }
    // A destination that failed midway keeps no partial snapshot.
    for d in dests.iter().filter(|d| d.error.is_some()) {
        remove_snapshot(d.store, &policy.name, &snapshot).await;
    }
    info!(
        policy = %policy.name,
        snapshot = %snapshot,
        stored = %human_bytes(manifest.stored_size()),
        plain = %human_bytes(manifest.plain_size()),
        "backup finished"
    );
    Ok(BackupReport {
        snapshot,
        manifest,
        destinations: dests
            .iter()
            .map(|d| (d.name.to_string(), d.error.clone()))
            .collect(),
    })
}

fn ensure_live(dests: &[Dest<'_>]) -> Result<(), BackupError> {
    if dests.iter().any(|d| d.error.is_none()) {
        return Ok(());
    }
    Err(BackupError::Destinations(
        dests
            .iter()
            .map(|d| format!("{}: {}", d.name, d.error.as_deref().unwrap_or("failed")))
            .collect::<Vec<_>>()
            .join("; "),
    ))
}

async fn capture_component(
    policy: &Policy,
    snapshot: &str,
    comp: &ComponentPlan,
    settings: &PipelineSettings,
    dests: &mut [Dest<'_>],
) -> Result<ComponentRecord, BackupError> {
    let t0 = Instant::now();
    let kind = comp.source.kind();
    let object = if policy.recipients.is_empty() {
        format!("{}.{}.zst", comp.name, kind.format())
    } else {
        format!("{}.{}.zst.age", comp.name, kind.format())
    };
    let fail = |source: SourceError| BackupError::Component {
        component: comp.name.clone(),
        source,
    };
    info!(component = %comp.name, kind = %kind, source = %comp.source.describe(), "capturing");
    let (prepared, hint) = comp.source.prepare().await.map_err(fail)?;

    let key = object_key(&policy.name, snapshot, &object);
    let mut senders = Vec::new();
    let mut uploads = Vec::new();
    let live: Vec<usize> = (0..dests.len())
        .filter(|&i| dests[i].error.is_none())
        .collect();
    for &i in &live {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        senders.push(tx);
        let store = dests[i].store.clone();
        let key = key.clone();
        uploads.push(tokio::spawn(async move {
            store.put_stream(&key, rx, hint).await
        }));
    }
    let writer = PipelineWriter::new(settings, senders).map_err(|e| BackupError::Pipeline {
        component: comp.name.clone(),
        detail: e.to_string(),
    })?;

    let captured = prepared.capture(writer).await;
    let (writer, info) = match captured {
        Ok(v) => v,
        Err(e) => {
            // Dropping the writer closed every channel: the uploads abort.
            let results = futures::future::join_all(uploads).await;
            return Err(upload_cause(&comp.name, e, &live, dests, results));
        }
    };
    let finished = tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| BackupError::Pipeline {
            component: comp.name.clone(),
            detail: e.to_string(),
        })?;
    let (digests, live_senders) = match finished {
        Ok(v) => v,
        Err(e) => {
            let results = futures::future::join_all(uploads).await;
            return Err(upload_cause(
                &comp.name,
                SourceError::Write(e),
                &live,
                dests,
                results,
            ));
        }
    };
    for tx in live_senders.into_iter().flatten() {
        let _ = tx.send(crate::store::Chunk::Commit).await;
    }
    let results = futures::future::join_all(uploads).await;
    for (&i, r) in live.iter().zip(results) {
        let outcome: Result<u64, StoreError> = r.unwrap_or_else(|e| {
            Err(StoreError::Other {
                op: "upload",
                key: key.clone(),
                target: dests[i].name.to_string(),
                detail: e.to_string(),
            })
        });
        match outcome {
            Ok(n) if n == digests.size => {}
            Ok(n) => {
                dests[i].error = Some(format!(
                    "stored {n} bytes of {object} but {} were produced",
                    digests.size
                ))
            }
            Err(e) => {
                warn!(destination = dests[i].name, "{e}");
                dests[i].error = Some(e.to_string());
            }
        }
    }
    ensure_live(dests)?;

    let secs = t0.elapsed().as_secs_f64();
    for w in &info.warnings {
        warn!(component = %comp.name, "{w}");
    }
    info!(
        component = %comp.name,
        plain = %human_bytes(digests.plain_size),
        stored = %human_bytes(digests.size),
        seconds = format!("{secs:.1}"),
        "captured"
    );
    Ok(ComponentRecord {
        name: comp.name.clone(),
        kind: Some(kind),
        source: comp.source.describe(),
        object,
        size: digests.size,
        sha256: digests.sha256,
        plain_size: digests.plain_size,
        plain_sha256: digests.plain_sha256,
        server_version: info.server_version,
        tool: info.tool,
        database: info.database,
        owner: info.owner,
        encoding: info.encoding,
        path: info.path,
        items: info.items,
        duration_seconds: (secs * 1000.0).round() / 1000.0,
        warnings: info.warnings,
    })
}

/// When the pipeline failed because every upload failed, report the uploads' errors
/// (the real cause) rather than "every destination failed".
fn upload_cause(
    component: &str,
    e: SourceError,
    live: &[usize],
    dests: &mut [Dest<'_>],
    results: Vec<Result<Result<u64, StoreError>, tokio::task::JoinError>>,
) -> BackupError {
    let mut upload_errors = Vec::new();
    for (&i, r) in live.iter().zip(results) {
        if let Ok(Err(err)) = r {
            if !matches!(err, StoreError::Aborted { .. }) {
                upload_errors.push(format!("{}: {err}", dests[i].name));
                dests[i].error = Some(err.to_string());
            }
        }
    }
    if matches!(e, SourceError::Write(_)) && !upload_errors.is_empty() {
        return BackupError::Destinations(upload_errors.join("; "));
    }
    BackupError::Component {
        component: component.to_string(),
        source: e,
    }
}

async fn cleanup(dests: &[Dest<'_>], policy: &str, snapshot: &str) {
    for d in dests {
        remove_snapshot(d.store, policy, snapshot).await;
    }
}

/// Best-effort removal of a snapshot's objects (manifest first).
pub async fn remove_snapshot(store: &crate::store::Store, policy: &str, snapshot: &str) {
    let prefix = format!("{policy}/{snapshot}/");
    let _ = store.delete(&format!("{prefix}{MANIFEST_NAME}")).await;
    if let Ok(objects) = store.list_objects(&prefix).await {
        for o in objects {
            let _ = store.delete(&o.key).await;
        }
    }
}
