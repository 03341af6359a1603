//! The two controllers and what they share: the [`Context`] (client, settings, caches,
//! metrics, Events, clock) and small helpers around Jobs, status writes and Events.

pub mod backup;
pub mod restore;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arca_api::crd::BackupPolicy;
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, ObjectReference, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
};
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};

use crate::config::JobSettings;
use crate::constants::{annotations, events, labels, CONTROLLER_NAME, FIELD_MANAGER, MAX_MESSAGE};
use crate::error::Result;
use crate::jobs::{label_value, Placement};
use crate::metrics::Metrics;
use crate::outcome::{job_state, shorten, to_chrono};
use crate::pinning::{is_single_node, placement};
use crate::render::{render, Mode, Rendered};
use crate::scaling::{ScaleDown, Scaler};
use crate::validation::secret_refs;

/// Annotation the operator puts on a finished Job once its result is in the owner's status.
pub const RECORDED_ANNOTATION: &str = "arca.dev/recorded";

/// The time source (injectable for tests).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Shared state of both controllers in one watch scope.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// How Jobs are built.
    pub settings: JobSettings,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Every Job the operator manages (label-selected, pod templates stripped).
    pub jobs: Store<Job>,
    /// Every BackupPolicy (for RestoreRequests).
    pub policies: Store<DeserializeGuard<BackupPolicy>>,
    /// The clock.
    pub clock: Clock,
    memory: Mutex<Memory>,
}

/// In-memory bookkeeping that only saves work or noise; losing it (a restart) is safe.
#[derive(Default)]
struct Memory {
    /// Consecutive transient failures per object, for backoff.
    failures: HashMap<String, u32>,
    /// Objects reconciled at least once by this process.
    seen: HashSet<String>,
    /// Jobs whose run was counted in metrics and announced (bounded).
    counted: HashSet<String>,
    counted_order: VecDeque<String>,
    /// Status written by this process that the watch may not have delivered yet:
    /// uid → (resourceVersion, status as JSON).
    written: HashMap<String, (u64, serde_json::Value)>,
    /// Unreadable objects already reported: uid → generation.
    unreadable: HashMap<String, Option<i64>>,
    /// Scheduled runs whose references were checked and ConfigMap applied ahead of time.
    prepared: HashMap<String, Prepared>,
}

/// A scheduled run prepared ahead of its time (see [`PREPARE_AHEAD`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The scheduled time it was prepared for.
    pub scheduled: DateTime<Utc>,
    /// The policy generation it was prepared from.
    pub generation: Option<i64>,
    /// The ReadWriteOnce claims the Job mounts (for node pinning at start).
    pub rwo_claims: Vec<String>,
}

/// How long before a scheduled time its run is prepared (Secrets and claims checked,
/// ConfigMap applied), so at the scheduled second only the Job is created.
pub const PREPARE_AHEAD: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

const COUNTED_MAX: usize = 8192;

impl Context {
    /// A context for `client`.
    pub fn new(
        client: Client,
        settings: JobSettings,
        metrics: Metrics,
        reporter: Reporter,
        jobs: Store<Job>,
        policies: Store<DeserializeGuard<BackupPolicy>>,
        clock: Clock,
    ) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            jobs,
            policies,
            clock,
            memory: Mutex::default(),
        }
    }

    /// The same context (caches, memory, metrics) with another client and clock.
    #[cfg(test)]
    pub fn with_client(self, client: Client, clock: Clock) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), Self::reporter("test")),
            client,
            clock,
            ..self
        }
    }

    /// The events reporter of this replica.
    pub fn reporter(instance: &str) -> Reporter {
        Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: Some(instance.into()),
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        // A panic while holding the lock cannot corrupt these maps meaningfully.
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True the first time this process reconciles `uid`.
    pub fn first_sight(&self, uid: &str) -> bool {
        self.memory().seen.insert(uid.to_string())
    }

    /// True the first time `job_key` is counted (metrics and Events once per run).
    pub fn first_count(&self, job_key: &str) -> bool {
        let mut m = self.memory();
        if !m.counted.insert(job_key.to_string()) {
            return false;
        }
        m.counted_order.push_back(job_key.to_string());
        while m.counted_order.len() > COUNTED_MAX {
            if let Some(old) = m.counted_order.pop_front() {
                m.counted.remove(&old);
            }
        }
        true
    }

    /// Exponential backoff for `key` (5 s doubling, at most 5 min).
    pub fn backoff(&self, key: &str) -> Duration {
        let mut m = self.memory();
        let n = m.failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let secs = 5u64.saturating_mul(1u64 << (*n - 1).min(6));
        Duration::from_secs(secs.min(300))
    }

    /// Forget `key`'s failures.
    pub fn reset_backoff(&self, key: &str) {
        self.memory().failures.remove(key);
    }

    /// Remember the status just written for `uid` at `resource_version`.
    pub fn remember_status(
        &self,
        uid: &str,
        resource_version: Option<&str>,
        status: serde_json::Value,
    ) {
        if let Some(rv) = resource_version.and_then(|v| v.parse::<u64>().ok()) {
            self.memory().written.insert(uid.to_string(), (rv, status));
        }
    }

    /// The freshest status of `uid`: the one in the cache when the watch has not delivered
    /// our last write yet, else `from_store` (and the cache entry is dropped).
    pub fn fresh_status<S: serde::de::DeserializeOwned>(
        &self,
        uid: &str,
        store_resource_version: Option<&str>,
        from_store: Option<S>,
    ) -> Option<S> {
        let mut m = self.memory();
        let store_rv = store_resource_version.and_then(|v| v.parse::<u64>().ok());
        match (m.written.get(uid), store_rv) {
            (Some((written_rv, status)), Some(rv)) if rv < *written_rv => {
                serde_json::from_value(status.clone()).ok().or(from_store)
            }
            (Some(_), _) => {
                m.written.remove(uid);
                from_store
            }
            (None, _) => from_store,
        }
    }

    /// The run prepared ahead for `uid`, if it is for `scheduled` at `generation`.
    pub fn prepared(
        &self,
        uid: &str,
        scheduled: Option<DateTime<Utc>>,
        generation: Option<i64>,
    ) -> Option<Prepared> {
        let m = self.memory();
        m.prepared
            .get(uid)
            .filter(|p| Some(p.scheduled) == scheduled && p.generation == generation)
            .cloned()
    }

    /// Remember that `uid`'s run at `p.scheduled` is prepared.
    pub fn set_prepared(&self, uid: &str, p: Prepared) {
        self.memory().prepared.insert(uid.to_string(), p);
    }

    /// Remember that an unreadable object was reported at `generation`; true if new.
    pub fn first_unreadable_report(&self, uid: &str, generation: Option<i64>) -> bool {
        self.memory().unreadable.insert(uid.to_string(), generation) != Some(generation)
    }

    /// Every Job of `policy` in `namespace` (backup Jobs and restore Jobs).
    pub fn jobs_of_policy(&self, namespace: &str, policy: &str) -> Vec<Arc<Job>> {
        let value = label_value(policy);
        self.jobs.state_filter(|j| {
            j.metadata.namespace.as_deref() == Some(namespace)
                && j.labels().get(labels::POLICY) == Some(&value)
        })
    }

    /// Publish an Event about `reference`; failures are logged, never fatal.
    pub async fn publish(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(shorten(note, MAX_MESSAGE)),
            action: events::ACTION_RECONCILE.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, reference).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }

    /// The newest pod of Job `job` (for its termination message).
    pub async fn job_pod(&self, namespace: &str, job: &str) -> Result<Option<Pod>> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let list = pods
            .list(&ListParams::default().labels(&format!("{}={job}", labels::JOB)))
            .await?;
        Ok(list
            .items
            .into_iter()
            .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0)))
    }

    /// Check that the Job service account and every Secret and claim `rendered` mounts
    /// exist. Returns the claims (for node pinning), or what is missing and where it is
    /// referenced.
    pub async fn check_references(
        &self,
        namespace: &str,
        spec: &arca_api::PolicySpec,
        rendered: &Rendered,
    ) -> Result<std::result::Result<Vec<PersistentVolumeClaim>, String>> {
        let account = self.check_service_account(namespace).await?;
        let mounts = self.check_mounts(namespace, spec, rendered).await?;
        Ok(match (account, mounts) {
            (None, mounts) => mounts,
            (Some(a), Ok(_)) => Err(a),
            (Some(a), Err(m)) => Err(format!("{a}; {m}")),
        })
    }

    /// What is wrong when the Jobs' service account (`--job-service-account`) does not
    /// exist in `namespace`, or None (also when Jobs use the namespace's default account).
    pub async fn check_service_account(&self, namespace: &str) -> Result<Option<String>> {
        let Some(account) = &self.settings.service_account else {
            return Ok(None);
        };
        // NB: without it the Job controller cannot create the Job's pods, and the Job
        // would sit without a pod until its deadline. Metadata only, like Secrets.
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        Ok(accounts.get_metadata_opt(account).await?.is_none().then(|| {
            format!(
                "ServiceAccount {account:?} (the Jobs' service account, --job-service-account) does not exist in namespace {namespace}, so no Job pod could start: create it with `kubectl apply -n {namespace} -f manifests/job-serviceaccount.yaml`"
            )
        }))
    }

    /// Check that every Secret and claim `rendered` mounts exists. Returns the claims (for
    /// node pinning), or what is missing and where it is referenced.
    pub async fn check_mounts(
        &self,
        namespace: &str,
        spec: &arca_api::PolicySpec,
        rendered: &Rendered,
    ) -> Result<std::result::Result<Vec<PersistentVolumeClaim>, String>> {
        let mut missing = Vec::new();
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let refs = secret_refs(spec);
        for name in &rendered.secrets {
            // Metadata only: the operator never reads secret values.
            if secrets.get_metadata_opt(name).await?.is_none() {
                let field = refs
                    .iter()
                    .find(|(_, r)| &r.name == name)
                    .map(|(f, _)| format!(" ({f})"))
                    .unwrap_or_default();
                missing.push(format!(
                    "Secret {name:?}{field} does not exist in namespace {namespace}: create it or fix the reference"
                ));
            }
        }
        let claims_api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), namespace);
        let mut claims = Vec::new();
        for name in &rendered.claims {
            match claims_api.get_opt(name).await? {
                Some(c) => claims.push(c),
                None => missing.push(format!(
                    "PersistentVolumeClaim {name:?} does not exist in namespace {namespace}: create it or fix claimName"
                )),
            }
        }
        Ok(if missing.is_empty() {
            Ok(claims)
        } else {
            Err(missing.join("; "))
        })
    }
}

/// An object reference for Events, also for objects that failed to deserialize.
pub fn object_reference<K: Resource<DynamicType = ()>>(
    meta: &kube::api::ObjectMeta,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: None,
        field_path: None,
    }
}

/// True when `job` is controlled by the object with `uid`.
pub fn owned_by(job: &Job, uid: &str) -> bool {
    job.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// True when the Job's result is already in its owner's status.
pub fn is_recorded(job: &Job) -> bool {
    job.annotations().contains_key(RECORDED_ANNOTATION)
}

/// True when the Job has not finished.
pub fn is_active(job: &Job) -> bool {
    !job_state(job).is_finished()
}

/// The workloads a Job records as scaled down for it.
pub fn job_workloads(job: &Job) -> Vec<arca_api::WorkloadRef> {
    job.annotations()
        .get(annotations::SCALE_DOWN)
        .map(|s| crate::jobs::parse_workloads(s))
        .unwrap_or_default()
}

/// Default time to wait for scaled-down workloads to stop.
pub const DEFAULT_QUIESCE_TIMEOUT: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// How often to look at workloads that are stopping.
pub const QUIESCE_POLL: Duration = Duration::from_secs(2);

/// Progress of a cold run's scale-down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quiesce {
    /// Still stopping; look again soon.
    Waiting,
    /// Pods gone; the Job was released and runs now.
    Released,
    /// Gave up; the run failed with this message.
    TimedOut(String),
}

/// Drive a suspended Job's scale-down (idempotent, safe to repeat after a restart): make
/// sure its workloads are recorded and at zero, and release the Job once their pods are
/// gone. After `timeout` since the Job's creation, give up.
pub async fn quiesce(
    ctx: &Context,
    namespace: &str,
    owner: &str,
    job: &Job,
    timeout: chrono::TimeDelta,
    now: DateTime<Utc>,
) -> Result<Quiesce> {
    let scaler = Scaler::new(ctx.client.clone(), namespace);
    let job_name = job.name_any();
    let list = job_workloads(job);
    let since = job
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(to_chrono)
        .unwrap_or(now);
    let overdue = now.signed_duration_since(since) > timeout;
    let timeout_text =
        arca_api::HumanDuration::from_secs(u64::try_from(timeout.num_seconds()).unwrap_or(0));

    if let ScaleDown::HeldBy {
        workload,
        owner: other,
    } = scaler.scale_down(&list, owner, &job_name).await?
    {
        if overdue {
            return Ok(Quiesce::TimedOut(format!(
                "{workload} stayed scaled down by {other} for more than {timeout_text}: nothing was run"
            )));
        }
        tracing::info!(%workload, owner = %other, "waiting for another owner to release a workload");
        return Ok(Quiesce::Waiting);
    }
    let remaining = scaler.remaining_pods(&list).await?;
    if remaining.is_empty() {
        let api: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        api.patch(
            &job_name,
            &params,
            &Patch::Merge(serde_json::json!({"spec": {"suspend": false}})),
        )
        .await?;
        tracing::info!(job = %job_name, "workloads stopped; job released");
        return Ok(Quiesce::Released);
    }
    if overdue {
        let pods: Vec<String> = remaining
            .iter()
            .map(|(w, n)| format!("{w} still has {n} pod(s)"))
            .collect();
        return Ok(Quiesce::TimedOut(format!(
            "the workloads did not stop within {timeout_text} ({}): nothing was run; check the pods' termination grace period or raise quiesce.timeout",
            pods.join(", ")
        )));
    }
    Ok(Quiesce::Waiting)
}

/// The names of the single-node (ReadWriteOnce) claims among `claims`.
pub fn single_node_claims(claims: &[PersistentVolumeClaim]) -> Vec<String> {
    claims
        .iter()
        .filter(|c| is_single_node(c))
        .filter_map(|c| c.metadata.name.clone())
        .collect()
}

/// Where a Job mounting the ReadWriteOnce claims `rwo` must run: on the node of a running
/// pod that mounts one of them (pods of `scale_down` workloads excluded: they will be
/// gone). `Err(message)` when no single node fits.
pub async fn place(
    ctx: &Context,
    namespace: &str,
    rwo: &[String],
    scale_down: &[arca_api::WorkloadRef],
) -> Result<std::result::Result<Placement, String>> {
    if rwo.is_empty() {
        return Ok(Ok(Placement::default()));
    }
    let scaler = Scaler::new(ctx.client.clone(), namespace);
    let mut stopping = Vec::new();
    for w in scale_down {
        if let Some(sel) = scaler.get(w).await?.and_then(|w| w.selector) {
            stopping.push(sel);
        }
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let list = pods.list(&ListParams::default()).await?;
    Ok(placement(rwo, &list.items, &stopping))
}

/// Apply (server-side) the ConfigMap with the policy's rendered config files.
pub async fn apply_config_map(ctx: &Context, policy: &BackupPolicy) -> Result<()> {
    let name = policy.name_any();
    let namespace = policy
        .metadata
        .namespace
        .clone()
        .ok_or(crate::error::Error::MissingObjectKey("namespace"))?;
    let backup = render(&policy.spec, &Mode::Backup);
    let restore = render(
        &policy.spec,
        &Mode::Restore {
            components: Vec::new(),
            to_claim: None,
        },
    );
    let cm = crate::jobs::config_map(
        policy,
        crate::jobs::config_yaml(&name, &backup.spec)?,
        crate::jobs::config_yaml(&name, &restore.spec)?,
    )?;
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch(
        &crate::jobs::config_map_name(&name),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await?;
    Ok(())
}

/// Requeue at the earliest of `times` (at least `floor` from now), or wait for a change.
pub fn requeue_at(
    now: DateTime<Utc>,
    times: impl IntoIterator<Item = Option<DateTime<Utc>>>,
    floor: Duration,
) -> kube::runtime::controller::Action {
    let earliest = times.into_iter().flatten().min();
    match earliest {
        Some(t) => {
            let wait = t
                .signed_duration_since(now)
                .to_std()
                .unwrap_or(Duration::ZERO)
                .max(floor);
            kube::runtime::controller::Action::requeue(wait)
        }
        None => kube::runtime::controller::Action::await_change(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    #[test]
    fn requeue_picks_the_earliest_time() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 23, 3, 0, 0)
            .single()
            .unwrap();
        let a = requeue_at(
            now,
            [
                Some(now + TimeDelta::seconds(90)),
                None,
                Some(now + TimeDelta::seconds(30)),
            ],
            Duration::from_millis(100),
        );
        assert_eq!(
            a,
            kube::runtime::controller::Action::requeue(Duration::from_secs(30))
        );
        assert_eq!(
            requeue_at(now, [None], Duration::ZERO),
            kube::runtime::controller::Action::await_change()
        );
        assert_eq!(
            requeue_at(
                now,
                [Some(now - TimeDelta::seconds(5))],
                Duration::from_millis(100)
            ),
            kube::runtime::controller::Action::requeue(Duration::from_millis(100))
        );
    }
}
