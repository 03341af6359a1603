//! Start-up and wiring: one watcher per kind and namespace scope (BackupPolicies,
//! RestoreRequests, and one Job watcher shared by both controllers), caches stripped of
//! what the operator never reads, the HTTP endpoints, leader election and graceful
//! shutdown on SIGTERM.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arca_api::crd::{BackupPolicy, RestoreRequest};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{predicates, watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::config::{Config, ConfigError, JobSettings};
use crate::constants::labels;
use crate::controllers::{backup, restore, Clock, Context};
use crate::http::{self, AppState, Health, Phase};
use crate::leader::LeaderElector;
use crate::metrics::Metrics;

/// Why the operator could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag or variable is wrong.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// No usable cluster connection (KUBECONFIG or in-cluster).
    #[error("cannot connect to the Kubernetes API (set KUBECONFIG or run in a cluster): {0}")]
    Kube(#[from] kube::Error),
    /// The HTTP listener could not be opened.
    #[error("cannot listen for /metrics and /healthz: {0}")]
    Listen(#[from] std::io::Error),
    /// Logging could not be set up.
    #[error("cannot set up logging: {0}")]
    Logging(String),
    /// Leadership was lost; the process exits so it can restart as a candidate.
    #[error("lost the leader lease; exiting so no two replicas reconcile at once")]
    LostLease,
}

/// Set up logging once: text or JSON lines, filtered by `filter`.
pub fn init_logging(config: &Config) -> Result<(), StartError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_filter)
        .map_err(|e| StartError::Logging(e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.log_format {
        crate::config::LogFormat::Json => builder.json().flatten_event(true).try_init(),
        crate::config::LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| StartError::Logging(e.to_string()))
}

/// Resolve on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the operator");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A future resolving once `rx` says stop.
async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Drop what the operator never reads from cached objects: managed fields and kubectl's
/// copy of the last applied object.
fn strip_meta(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Cached Jobs keep metadata, `suspend` and status only: the pod template is never read.
fn strip_job(job: &mut Job) {
    strip_meta(&mut job.metadata);
    if let Some(spec) = job.spec.as_mut() {
        spec.template = Default::default();
        spec.selector = None;
    }
}

/// Reconcile a policy when its spec or one of its `arca.dev/*` annotations changed; its
/// own status writes do not trigger it again.
fn policy_trigger(obj: &DeserializeGuard<BackupPolicy>) -> Option<u64> {
    let meta = obj.meta();
    let mut h = DefaultHasher::new();
    meta.generation.hash(&mut h);
    for (k, v) in meta.annotations.iter().flatten() {
        if k.starts_with("arca.dev/") {
            k.hash(&mut h);
            v.hash(&mut h);
        }
    }
    Some(h.finish())
}

/// What every watch scope shares.
#[derive(Clone)]
pub struct Shared {
    /// Client.
    pub client: Client,
    /// Job settings.
    pub settings: JobSettings,
    /// Metrics.
    pub metrics: Metrics,
    /// Events reporter instance (the pod name).
    pub identity: String,
    /// Reconciles per controller at once.
    pub concurrency: u16,
    /// The clock.
    pub clock: Clock,
}

/// Run both controllers for one namespace (or all) until `stop`. Calls `ready` once the
/// caches are filled.
pub async fn run_scope(
    shared: Shared,
    namespace: Option<String>,
    stop: watch::Receiver<bool>,
    ready: impl FnOnce() + Send + 'static,
) {
    let client = shared.client.clone();
    let (policies, requests, jobs): (
        Api<DeserializeGuard<BackupPolicy>>,
        Api<DeserializeGuard<RestoreRequest>>,
        Api<Job>,
    ) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };

    // One Job watcher (only the operator's Jobs), shared by both controllers.
    let (job_store, job_writer) = reflector::store_shared::<Job>(256);
    let (Some(backup_jobs), Some(restore_jobs)) = (job_writer.subscribe(), job_writer.subscribe())
    else {
        tracing::error!("cannot subscribe to the shared job cache");
        return;
    };
    let job_config = watcher::Config::default()
        .labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER))
        .any_semantic();
    let job_root = watcher(jobs, job_config)
        .default_backoff()
        .modify(strip_job)
        .reflect_shared(job_writer)
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::warn!(error = %e, "job watch failed; retrying");
            }
        });

    let metrics = shared.metrics.clone();
    let (policy_store, policy_writer) = reflector::store::<DeserializeGuard<BackupPolicy>>();
    let policy_stream = watcher(policies, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|p: &mut DeserializeGuard<BackupPolicy>| strip_meta(p.meta_mut()))
        .reflect(policy_writer)
        .inspect(move |event| {
            if let Ok(watcher::Event::Delete(p)) = event {
                let meta = p.meta();
                metrics.forget_policy(
                    meta.namespace.as_deref().unwrap_or_default(),
                    meta.name.as_deref().unwrap_or_default(),
                );
            }
        })
        .applied_objects()
        .predicate_filter(policy_trigger, Default::default());

    let (request_store, request_writer) = reflector::store::<DeserializeGuard<RestoreRequest>>();
    let request_stream = watcher(requests, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|r: &mut DeserializeGuard<RestoreRequest>| strip_meta(r.meta_mut()))
        .reflect(request_writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());

    let ctx = Arc::new(Context::new(
        client,
        shared.settings.clone(),
        shared.metrics.clone(),
        Context::reporter(&shared.identity),
        job_store.clone(),
        policy_store.clone(),
        shared.clock.clone(),
    ));
    let config = controller::Config::default().concurrency(shared.concurrency);

    let backup = Controller::for_stream(policy_stream, policy_store.clone())
        .owns_shared_stream(backup_jobs)
        .with_config(config.clone())
        .graceful_shutdown_on(stopped(stop.clone()))
        .run(backup::reconcile, backup::error_policy, ctx.clone())
        .for_each(|r| async move { log_outcome(backup::CONTROLLER, r) });
    let restore = Controller::for_stream(request_stream, request_store.clone())
        .owns_shared_stream(restore_jobs)
        .with_config(config)
        .graceful_shutdown_on(stopped(stop.clone()))
        .run(restore::reconcile, restore::error_policy, ctx)
        .for_each(|r| async move { log_outcome(restore::CONTROLLER, r) });

    let readiness = async move {
        let synced = futures::future::join3(
            wait_ready(&job_store),
            wait_ready(&policy_store),
            wait_ready(&request_store),
        )
        .await;
        if matches!(synced, (true, true, true)) {
            ready();
        }
        futures::future::pending::<()>().await;
    };

    tokio::select! {
        _ = futures::future::join(backup, restore) => {}
        _ = job_root => {}
        _ = readiness => {}
    }
}

async fn wait_ready<K: Resource + Clone + 'static>(store: &Store<K>) -> bool
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.wait_until_ready().await.is_ok()
}

fn log_outcome<T: std::fmt::Debug, E: std::fmt::Display>(controller: &str, r: Result<T, E>) {
    match r {
        Ok(obj) => tracing::debug!(controller, object = ?obj, "reconciled"),
        // Reconcile errors are logged by error_policy; these are the runtime's own
        // (an object gone from the cache, a queue stream ended).
        Err(e) => tracing::debug!(controller, error = %e, "controller event"),
    }
}

/// Run the operator with `config` until SIGTERM.
pub async fn run(config: Config) -> Result<(), StartError> {
    let settings = config.job_settings()?;
    let client = Client::try_default().await?;
    let identity = config.identity();

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let health = Arc::new(Health::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });

    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %config.listen, "serving /metrics, /healthz and /readyz");
    let http_state = AppState {
        registry: Arc::new(registry),
        health: health.clone(),
    };
    let server = tokio::spawn(http::serve(listener, http_state, stopped(stop_rx.clone())));

    let elector = if config.leader_election {
        let namespace = config
            .lease_namespace
            .clone()
            .or_else(|| config.pod_namespace.clone())
            .unwrap_or_else(|| client.default_namespace().to_string());
        let elector = LeaderElector::new(
            Api::<Lease>::namespaced(client.clone(), &namespace),
            &config.lease_name,
            &identity,
            config.lease_duration(),
        );
        health.set(Phase::Standby);
        metrics.set_leader(false);
        tracing::info!(lease = %config.lease_name, %namespace, %identity, "waiting for the leader lease");
        if !elector.acquire(stopped(stop_rx.clone())).await {
            health.set(Phase::Stopping);
            let _ = server.await;
            return Ok(());
        }
        tracing::info!(%identity, "leading");
        Some(elector)
    } else {
        None
    };
    metrics.set_leader(true);
    health.set(Phase::Syncing);

    let shared = Shared {
        client,
        settings,
        metrics: metrics.clone(),
        identity,
        concurrency: config.concurrency.max(1),
        clock: Arc::new(chrono::Utc::now),
    };
    let scopes: Vec<Option<String>> = match config.watched_namespaces() {
        Some(list) => list.into_iter().map(Some).collect(),
        None => vec![None],
    };
    tracing::info!(namespaces = ?scopes, image = %shared.settings.image, "starting controllers");
    let pending = Arc::new(AtomicUsize::new(scopes.len()));
    let controllers = futures::future::join_all(scopes.into_iter().map(|scope| {
        let pending = pending.clone();
        let health = health.clone();
        run_scope(shared.clone(), scope, stop_rx.clone(), move || {
            if pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                health.set(Phase::Running);
                tracing::info!("caches synced; reconciling");
            }
        })
    }));

    let lost = async {
        match &elector {
            Some(e) => e.hold().await,
            None => futures::future::pending().await,
        }
    };
    let result = tokio::select! {
        _ = controllers => Ok(()),
        () = lost => Err(StartError::LostLease),
    };
    health.set(Phase::Stopping);
    metrics.set_leader(false);
    if let Some(e) = &elector {
        if let Err(err) = e.release().await {
            tracing::warn!(error = %err, "cannot release the leader lease; it expires by itself");
        }
    }
    if result.is_ok() {
        let _ = server.await;
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn status_writes_do_not_retrigger_a_policy() {
        let mut p = testdata::policy("p", testdata::simple_spec());
        let before = policy_trigger(&DeserializeGuard(Ok(p.clone())));
        p.status = Some(Default::default());
        p.metadata.resource_version = Some("101".into());
        assert_eq!(policy_trigger(&DeserializeGuard(Ok(p.clone()))), before);
        p.metadata.annotations =
            Some([("arca.dev/backup-now".to_string(), "1".to_string())].into());
        assert_ne!(policy_trigger(&DeserializeGuard(Ok(p.clone()))), before);
        let annotated = policy_trigger(&DeserializeGuard(Ok(p.clone())));
        p.metadata.generation = Some(2);
        assert_ne!(policy_trigger(&DeserializeGuard(Ok(p))), annotated);
    }

    /// The wiring end to end against a lenient fake API server: lists are answered, watches
    /// stay quiet, and the one (invalid) policy listed gets reconciled — its status is
    /// patched — before a stop signal shuts everything down.
    #[tokio::test]
    async fn a_scope_syncs_reconciles_and_stops() {
        use ::http::{Method, Request, Response};
        use kube::client::Body;
        use serde_json::json;
        use std::time::Duration;

        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let mut spec = testdata::simple_spec();
        spec.schedule = Some("nope".into());
        let policy = serde_json::to_value(testdata::policy("p", spec)).unwrap();
        let (patched_tx, patched_rx) = tokio::sync::oneshot::channel::<serde_json::Value>();
        tokio::spawn(async move {
            let mut patched_tx = Some(patched_tx);
            while let Some((request, send)) = handle.next_request().await {
                let path = request.uri().path().to_string();
                let query = request.uri().query().unwrap_or_default().to_string();
                let method = request.method().clone();
                let body = request.into_body().collect_bytes().await.unwrap();
                let reply = |code: u16, v: serde_json::Value| {
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&v).unwrap()))
                        .unwrap()
                };
                if query.contains("watch=true") {
                    // Hold watches open a while, then end them quietly.
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        send.send_response(reply(200, json!({})));
                    });
                    continue;
                }
                let response = match (method, path.as_str()) {
                    (Method::GET, "/apis/arca.dev/v1alpha1/backuppolicies") => reply(
                        200,
                        json!({"apiVersion": "arca.dev/v1alpha1", "kind": "BackupPolicyList",
                               "metadata": {"resourceVersion": "100"}, "items": [policy.clone()]}),
                    ),
                    (Method::GET, "/apis/arca.dev/v1alpha1/restorerequests") => reply(
                        200,
                        json!({"apiVersion": "arca.dev/v1alpha1", "kind": "RestoreRequestList",
                               "metadata": {"resourceVersion": "100"}, "items": []}),
                    ),
                    (Method::GET, "/apis/batch/v1/jobs") => {
                        assert!(query.contains("managed-by"), "{query}");
                        reply(
                            200,
                            json!({"apiVersion": "batch/v1", "kind": "JobList",
                                   "metadata": {"resourceVersion": "100"}, "items": []}),
                        )
                    }
                    (
                        Method::PATCH,
                        "/apis/arca.dev/v1alpha1/namespaces/clinic/backuppolicies/p/status",
                    ) => {
                        let patch: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        if let Some(tx) = patched_tx.take() {
                            let _ = tx.send(patch);
                        }
                        reply(200, policy.clone())
                    }
                    (Method::POST, "/apis/events.k8s.io/v1/namespaces/clinic/events") => {
                        reply(201, serde_json::from_slice(&body).unwrap())
                    }
                    (m, p) => panic!("unexpected {m} {p}?{query}"),
                };
                send.send_response(response);
            }
        });

        let shared = Shared {
            client,
            settings: JobSettings::default(),
            metrics: Metrics::default(),
            identity: "test".into(),
            concurrency: 2,
            clock: Arc::new(chrono::Utc::now),
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let scope = tokio::spawn(run_scope(shared, None, stop_rx, move || {
            let _ = ready_tx.send(());
        }));
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("caches synced")
            .unwrap();
        let patch = tokio::time::timeout(Duration::from_secs(10), patched_rx)
            .await
            .expect("the listed policy was reconciled")
            .unwrap();
        assert_eq!(patch["status"]["state"], "Invalid");
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), scope)
            .await
            .expect("stopped on the signal")
            .unwrap();
    }

    #[test]
    fn cached_jobs_drop_the_pod_template() {
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j", "managedFields": [{"manager": "x"}],
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "arca.dev/trigger": "schedule"}},
            "spec": {"suspend": true, "template": {"spec": {"containers": [{"name": "arca"}]}}}
        }))
        .unwrap();
        strip_job(&mut job);
        assert!(job.metadata.managed_fields.is_none());
        let a = job.metadata.annotations.as_ref().unwrap();
        assert!(a.contains_key("arca.dev/trigger"));
        assert!(!a.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        let spec = job.spec.unwrap();
        assert_eq!(spec.suspend, Some(true));
        assert!(spec.template.spec.is_none());
    }
}
