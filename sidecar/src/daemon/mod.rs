//! `arca daemon`: the compose sidecar. Every valid policy runs on its schedule in its time
//! zone (never two runs of one policy at once); a run missed while the daemon was down
//! runs once at start-up (within `startingDeadline` when set); retention runs after each
//! success; `verify: {schedule}` runs scheduled (deep) verifications. A broken policy is
//! shown in red with its reason while the others keep running. Webhooks get a JSON POST on
//! failure and when a policy breaches its RPO.

pub mod http;
pub mod status;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arca_api::config::{DaemonSettings, Webhook};
use arca_api::schedule::Schedule;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tracing::{error, info, warn};

use crate::config::{self, Policy};
use crate::runner::{self, RunnerSettings};
use status::{ComponentSize, LastSuccess, PolicyStatus, RunRecord, Status, STATUS_FORMAT};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9180";
/// How often RPO breaches are looked for.
const RPO_CHECK: Duration = Duration::from_secs(30);

/// One policy slot.
pub struct Slot {
    /// Name.
    pub name: String,
    /// The resolved policy, or why it is broken.
    pub policy: Result<Policy, String>,
    /// Its status.
    pub status: Mutex<PolicyStatus>,
    /// Held while a run is in progress (no overlap).
    pub running: Mutex<()>,
}

/// Shared daemon state.
pub struct App {
    /// Policies in config order.
    pub slots: Vec<Arc<Slot>>,
    /// Settings.
    pub settings: DaemonSettings,
    /// Runner settings.
    pub runner: RunnerSettings,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Scheduler running.
    pub ready: AtomicBool,
    http: reqwest::Client,
}

impl App {
    /// Snapshot of every status.
    pub async fn status(&self) -> Status {
        let now = Utc::now();
        let mut policies = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let mut st = s.status.lock().await.clone();
            st.refresh_rpo(now);
            policies.push(st);
        }
        Status {
            format: STATUS_FORMAT.into(),
            generated_at: Some(now),
            started_at: Some(self.started_at),
            policies,
        }
    }
}

/// Schedule state kept across restarts (for catch-up).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScheduleState {
    last_scheduled: Option<DateTime<Utc>>,
}

fn schedule_state_path(dir: &std::path::Path, policy: &str) -> PathBuf {
    dir.join(format!("schedule-{policy}.json"))
}

fn load_schedule_state(dir: &std::path::Path, policy: &str) -> ScheduleState {
    std::fs::read(schedule_state_path(dir, policy))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_schedule_state(dir: &std::path::Path, policy: &str, at: DateTime<Utc>) {
    let path = schedule_state_path(dir, policy);
    let tmp = path.with_extension("json.tmp");
    let data = serde_json::to_vec(&ScheduleState {
        last_scheduled: Some(at),
    })
    .unwrap_or_default();
    if std::fs::write(&tmp, data)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .is_err()
    {
        warn!(
            policy,
            "cannot save the schedule state in {}",
            dir.display()
        );
    }
}

/// Load the config and build the daemon state (broken policies become red slots).
pub async fn build(config_path: &str) -> Result<Arc<App>, String> {
    let cfg = config::load_file(config_path).map_err(|e| e.to_string())?;
    if cfg.policies.is_empty() {
        return Err(format!(
            "config {config_path} has no policies: add one under `policies:`"
        ));
    }
    let settings = cfg.daemon.clone().unwrap_or_default();
    let state_dir = settings
        .state_dir
        .clone()
        .map(PathBuf::from)
        .unwrap_or_else(runner::default_state_dir);
    std::fs::create_dir_all(&state_dir).map_err(|e| {
        format!(
            "cannot create the state directory {}: {e}",
            state_dir.display()
        )
    })?;
    let mut slots = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in &cfg.policies {
        let policy = if !seen.insert(p.name.clone()) {
            Err(format!(
                "two policies are named {:?}: policy names must be unique",
                p.name
            ))
        } else {
            config::resolve(p).map_err(|e| e.to_string())
        };
        let mut st = PolicyStatus {
            name: p.name.clone(),
            ok: policy.is_ok(),
            error: policy.as_ref().err().cloned(),
            schedule: p.spec.schedule.clone(),
            time_zone: p.spec.time_zone.clone().unwrap_or_else(|| "UTC".into()),
            rpo_seconds: p.spec.rpo.map(|d| d.as_secs()),
            ..Default::default()
        };
        if let Err(e) = &policy {
            error!(policy = %p.name, "policy is broken and will not run: {e}");
        }
        for run in status::read_log(&state_dir, &p.name, status::RECENT_RUNS * 3) {
            st.record(run);
        }
        slots.push(Arc::new(Slot {
            name: p.name.clone(),
            policy,
            status: Mutex::new(st),
            running: Mutex::new(()),
        }));
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(App {
        slots,
        runner: RunnerSettings {
            state_dir,
            docker_host: settings.docker_host.clone(),
        },
        settings,
        started_at: Utc::now(),
        ready: AtomicBool::new(false),
        http,
    }))
}

/// Refresh the newest-good-snapshot facts from the destinations (the truth, not the log).
async fn refresh_catalog(slot: &Slot) {
    let Ok(policy) = &slot.policy else { return };
    let (list, errors) = crate::catalog::list_all(&policy.destinations, &policy.name).await;
    for (d, e) in errors {
        warn!(policy = %slot.name, destination = %d, "cannot list: {e}");
    }
    let mut st = slot.status.lock().await;
    st.snapshot_count = list.len() as u64;
    if let Some(l) = crate::catalog::latest(&list) {
        let newer = st
            .last_success
            .as_ref()
            .is_none_or(|s| s.completed_at < l.manifest.completed_at);
        if newer {
            st.last_success = Some(LastSuccess {
                snapshot: l.manifest.snapshot.clone(),
                completed_at: l.manifest.completed_at,
                bytes: l.manifest.stored_size(),
            });
        }
    }
}

/// Run one backup of a slot now (waits if one is running).
pub async fn run_backup(app: &App, slot: &Slot) {
    let Ok(policy) = &slot.policy else { return };
    let _guard = slot.running.lock().await;
    slot.status.lock().await.running = true;
    let started = Utc::now();
    info!(policy = %slot.name, "scheduled backup starting");
    let outcome = runner::backup_policy(policy, &app.runner).await;
    let completed = Utc::now();
    let run = match &outcome {
        Ok(report) => {
            let m = &report.manifest;
            let failed: Vec<String> = report
                .destinations
                .iter()
                .filter_map(|(n, e)| e.as_ref().map(|e| format!("destination {n:?} failed: {e}")))
                .collect();
            RunRecord {
                kind: "backup".into(),
                result: if failed.is_empty() {
                    "success"
                } else {
                    "failure"
                }
                .into(),
                snapshot: Some(report.snapshot.clone()),
                started_at: started,
                completed_at: completed,
                duration_seconds: (completed - started).num_milliseconds() as f64 / 1000.0,
                bytes: m.stored_size(),
                plain_bytes: m.plain_size(),
                components: m
                    .components
                    .iter()
                    .map(|c| ComponentSize {
                        name: c.name.clone(),
                        size: c.size,
                        plain_size: c.plain_size,
                    })
                    .collect(),
                warnings: m
                    .components
                    .iter()
                    .flat_map(|c| c.warnings.iter().map(move |w| format!("{}: {w}", c.name)))
                    .collect(),
                error: (!failed.is_empty()).then(|| failed.join("; ")),
            }
        }
        Err(e) => RunRecord {
            kind: "backup".into(),
            result: "failure".into(),
            started_at: started,
            completed_at: completed,
            duration_seconds: (completed - started).num_milliseconds() as f64 / 1000.0,
            error: Some(e.clone()),
            ..Default::default()
        },
    };
    if let Err(e) = status::append_log(&app.runner.state_dir, &slot.name, &run) {
        warn!(policy = %slot.name, "cannot write the run log: {e}");
    }
    match &run.error {
        None => {
            info!(policy = %slot.name, snapshot = run.snapshot.as_deref().unwrap_or(""), "backup succeeded")
        }
        Some(e) => error!(policy = %slot.name, "backup failed: {e}"),
    }
    let failed = run.result != "success";
    {
        let mut st = slot.status.lock().await;
        st.running = false;
        st.record(run.clone());
    }
    refresh_catalog(slot).await;
    notify(
        app,
        &slot.name,
        if failed { "failure" } else { "success" },
        &run,
    )
    .await;
}

async fn run_verify(app: &App, slot: &Slot, deep: bool) {
    let Ok(policy) = &slot.policy else { return };
    let _guard = slot.running.lock().await;
    let started = Utc::now();
    let outcome = crate::verify::run(policy, &crate::verify::Which::Latest, None, deep).await;
    let completed = Utc::now();
    let (result, snapshot, error) = match outcome {
        Ok(r) if r.ok() => (
            "success",
            r.records.first().map(|x| x.snapshot.clone()),
            None,
        ),
        Ok(r) => (
            "failure",
            r.records.first().map(|x| x.snapshot.clone()),
            r.first_failure(),
        ),
        Err(e) => ("failure", None, Some(e)),
    };
    let run = RunRecord {
        kind: "verify".into(),
        result: result.into(),
        snapshot,
        started_at: started,
        completed_at: completed,
        duration_seconds: (completed - started).num_milliseconds() as f64 / 1000.0,
        error,
        ..Default::default()
    };
    let _ = status::append_log(&app.runner.state_dir, &slot.name, &run);
    slot.status.lock().await.record(run.clone());
    if result != "success" {
        notify(app, &slot.name, "failure", &run).await;
    }
}

fn wants(w: &Webhook, event: &str) -> bool {
    if w.events.is_empty() {
        event == "failure" || event == "rpoBreach"
    } else {
        w.events.iter().any(|e| e == event)
    }
}

/// POST a JSON event to every webhook that wants it (errors are logged, never fatal).
pub async fn notify(app: &App, policy: &str, event: &str, run: &RunRecord) {
    for w in app.settings.webhooks.iter().filter(|w| wants(w, event)) {
        let body = serde_json::json!({
            "format": "arca-event/1",
            "event": event,
            "policy": policy,
            "host": nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()),
            "at": Utc::now(),
            "run": run,
        });
        let mut req = app.http.post(&w.url).json(&body);
        if let Some(f) = &w.token_file {
            match crate::secret::read_secret_file(f, "webhook token") {
                Ok(t) => req = req.bearer_auth(t.expose()),
                Err(e) => warn!("webhook: {e}"),
            }
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => info!(policy, event, "webhook notified"),
            Ok(r) => warn!(policy, event, status = %r.status(), "webhook refused the event"),
            Err(e) => warn!(policy, event, "webhook unreachable: {e}"),
        }
    }
}

/// The scheduling loop of one policy.
async fn schedule_loop(app: Arc<App>, slot: Arc<Slot>) {
    let Ok(policy) = &slot.policy else { return };
    let Some(expr) = &policy.spec.schedule else {
        info!(policy = %slot.name, "no schedule: runs only on demand");
        return;
    };
    let schedule = match Schedule::parse(expr, policy.spec.time_zone.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            let mut st = slot.status.lock().await;
            st.ok = false;
            st.error = Some(e.to_string());
            return;
        }
    };
    let dir = app.runner.state_dir.clone();
    let now = Utc::now();
    match load_schedule_state(&dir, &slot.name).last_scheduled {
        Some(last) => {
            // A run missed while the daemon was down runs once now.
            if let Some(missed) = schedule.previous_at_or_before(now, now - last) {
                if missed > last {
                    let late = now - missed;
                    let too_late = policy
                        .spec
                        .starting_deadline
                        .is_some_and(|d| late > d.to_chrono());
                    if too_late {
                        warn!(policy = %slot.name, missed = %missed, "missed run is past its startingDeadline: skipped");
                    } else {
                        info!(policy = %slot.name, missed = %missed, "running the backup missed while the daemon was down");
                        save_schedule_state(&dir, &slot.name, missed);
                        run_backup(&app, &slot).await;
                    }
                }
            }
        }
        None => save_schedule_state(&dir, &slot.name, now),
    }
    loop {
        let now = Utc::now();
        let Some(next) = schedule.next_after(now) else {
            warn!(policy = %slot.name, "the schedule has no future run");
            return;
        };
        slot.status.lock().await.next_run = Some(next);
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        save_schedule_state(&dir, &slot.name, next);
        run_backup(&app, &slot).await;
    }
}

async fn verify_loop(app: Arc<App>, slot: Arc<Slot>) {
    let Ok(policy) = &slot.policy else { return };
    let Some(v) = &policy.spec.verify else { return };
    let Ok(schedule) = Schedule::parse(&v.schedule, policy.spec.time_zone.as_deref()) else {
        return;
    };
    let deep = v.deep.unwrap_or(true);
    loop {
        let now = Utc::now();
        let Some(next) = schedule.next_after(now) else {
            return;
        };
        tokio::time::sleep((next - now).to_std().unwrap_or_default()).await;
        run_verify(&app, &slot, deep).await;
    }
}

async fn rpo_loop(app: Arc<App>) {
    let mut breached: std::collections::HashSet<String> = Default::default();
    loop {
        tokio::time::sleep(RPO_CHECK).await;
        let now = Utc::now();
        for slot in &app.slots {
            let (within, run, none_yet) = {
                let mut st = slot.status.lock().await;
                st.refresh_rpo(now);
                (
                    st.within_rpo,
                    st.last_run.clone(),
                    st.last_success.is_none(),
                )
            };
            if within == Some(false) {
                if breached.insert(slot.name.clone()) {
                    if none_yet {
                        warn!(policy = %slot.name, "no good snapshot yet: the RPO is not met");
                    } else {
                        warn!(policy = %slot.name, "the newest good snapshot is older than the RPO");
                    }
                    notify(&app, &slot.name, "rpoBreach", &run.unwrap_or_default()).await;
                }
            } else {
                breached.remove(&slot.name);
            }
        }
    }
}

/// Run the daemon until SIGTERM/SIGINT.
pub async fn run(config_path: &str, listen: Option<&str>) -> Result<(), String> {
    let app = build(config_path).await?;
    let addr = listen
        .map(str::to_string)
        .or_else(|| app.settings.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
        format!("cannot listen on {addr}: {e}; choose another address with --listen")
    })?;
    info!(%addr, policies = app.slots.len(), state = %app.runner.state_dir.display(), "arca daemon started");

    // Containers left stopped by an interrupted run come back first.
    if app.slots.iter().any(|s| {
        s.policy
            .as_ref()
            .is_ok_and(|p| p.spec.quiesce.as_ref().is_some_and(|q| q.stop_containers))
    }) {
        match crate::quiesce::Quiescer::connect(
            app.runner.docker_host.as_deref(),
            &app.runner.state_dir,
        )
        .await
        {
            Ok(q) => q.recover().await,
            Err(e) => warn!("{e}"),
        }
    }
    for slot in &app.slots {
        refresh_catalog(slot).await;
    }
    let mut tasks = Vec::new();
    for slot in &app.slots {
        tasks.push(tokio::spawn(schedule_loop(app.clone(), slot.clone())));
        tasks.push(tokio::spawn(verify_loop(app.clone(), slot.clone())));
    }
    tasks.push(tokio::spawn(rpo_loop(app.clone())));
    app.ready.store(true, Ordering::SeqCst);

    let router = http::router(app.clone());
    let server = axum::serve(listener, router).with_graceful_shutdown(shutdown_signal());
    let result = server.await.map_err(|e| format!("http server: {e}"));
    info!("shutting down");
    for t in &tasks {
        t.abort();
    }
    // An interrupted cold backup must not leave the application stopped.
    if let Ok(q) =
        crate::quiesce::Quiescer::connect(app.runner.docker_host.as_deref(), &app.runner.state_dir)
            .await
    {
        q.recover().await;
    }
    result
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
