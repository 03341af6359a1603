//! The RestoreRequest controller. A request runs at most once:
//!
//! - Pending: resolve and validate the policy and the request, wait for any other Job of
//!   the policy, check Secrets and claims.
//! - Running: the intent (phase Running + Job name) is written *before* the Job is
//!   created, and the Job's uid right after. A Running request whose Job vanished after
//!   it was created fails; it never gets a second Job.
//! - Succeeded/Failed are final: no Job is ever created again for the request, whatever
//!   happens to its Job, and a GitOps re-apply of the same spec changes nothing (the spec
//!   is immutable and the status is a subresource).
//!
//! Workloads are scaled down for the restore exactly like for a cold backup and always
//! brought back, also when the restore fails or the operator restarts in between.

use std::sync::Arc;
use std::time::Duration;

use arca_api::crd::{
    condition, condition_status, BackupPolicy, ComponentOutcome, RestorePhase, RestoreRequest,
    RestoreRequestStatus, Timestamp,
};
use arca_api::WorkloadRef;
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::error_boundary::InvalidObject;
use kube::core::{ApiResource, DeserializeGuard, DynamicObject};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use super::{
    apply_config_map, is_active, job_workloads, object_reference, owned_by, place, quiesce,
    single_node_claims, Context, Quiesce, DEFAULT_QUIESCE_TIMEOUT, QUIESCE_POLL,
};
use crate::constants::{events, reasons, FIELD_MANAGER, MAX_MESSAGE};
use crate::error::{is_already_exists, is_not_found, Error, Result};
use crate::jobs::{self, JobParts};
use crate::outcome::{job_state, outcome, shorten, JobState};
use crate::render::{render, Mode};
use crate::scaling::{owner_tag, ScaleDown, Scaler};
use crate::status::{condition_from, transitions, Wanted};
use crate::validation::{join, validate_policy, validate_restore};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "restorerequest";
/// Kind of the owner, in `arca.dev/quiesced-by`.
const KIND: &str = "RestoreRequest";
/// How often to look again while another Job of the policy runs.
const WAIT_POLL: Duration = Duration::from_secs(15);

/// Reconcile one RestoreRequest.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<RestoreRequest>>,
    ctx: Arc<Context>,
) -> Result<Action> {
    ctx.metrics.reconciled(CONTROLLER);
    let meta = obj.meta();
    let namespace = meta
        .namespace
        .clone()
        .ok_or(Error::MissingObjectKey("namespace"))?;
    let name = meta.name.clone().ok_or(Error::MissingObjectKey("name"))?;
    let span = tracing::info_span!("reconcile", controller = CONTROLLER, namespace = %namespace, name = %name);
    let result = async {
        match &obj.0 {
            Err(invalid) => report_unreadable(&ctx, &namespace, &name, invalid).await,
            Ok(request) => {
                Reconciler {
                    ctx: &ctx,
                    request,
                    namespace: &namespace,
                    name: &name,
                }
                .run()
                .await
            }
        }
    }
    .instrument(span)
    .await;
    if result.is_ok() {
        ctx.reset_backoff(&format!("rr/{namespace}/{name}"));
    }
    result
}

/// Decide the retry after a failed reconcile.
pub fn error_policy(
    obj: Arc<DeserializeGuard<RestoreRequest>>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.metrics.reconcile_error(CONTROLLER, err.metric_label());
    let key = format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    );
    if err.is_transient() {
        let wait = ctx.backoff(&format!("rr/{key}"));
        tracing::warn!(request = %key, error = %err, retry_in = ?wait, "reconcile failed");
        Action::requeue(wait)
    } else {
        tracing::info!(request = %key, error = %err, "waiting for the request to change");
        Action::await_change()
    }
}

async fn report_unreadable(
    ctx: &Context,
    namespace: &str,
    name: &str,
    invalid: &InvalidObject,
) -> Result<Action> {
    let uid = invalid.metadata.uid.clone().unwrap_or_default();
    let generation = invalid.metadata.generation;
    let message = format!(
        "the operator cannot read this RestoreRequest: {}; nothing was run — create a valid request",
        invalid.error
    );
    if ctx.first_unreadable_report(&uid, generation) {
        let api: Api<DynamicObject> = Api::namespaced_with(
            ctx.client.clone(),
            namespace,
            &ApiResource::erase::<RestoreRequest>(&()),
        );
        let patch = json!({"status": {
            "observedGeneration": generation,
            "message": shorten(&message, MAX_MESSAGE),
            "conditions": [{
                "type": condition::READY, "status": condition_status::FALSE,
                "observedGeneration": generation, "lastTransitionTime": Timestamp::new(ctx.now()),
                "reason": reasons::UNREADABLE, "message": shorten(&message, MAX_MESSAGE),
            }],
        }});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        api.patch_status(name, &params, &Patch::Merge(&patch))
            .await?;
        ctx.publish(
            &object_reference::<RestoreRequest>(&invalid.metadata),
            EventType::Warning,
            events::INVALID,
            &message,
        )
        .await;
    }
    Err(Error::Unreadable {
        kind: KIND,
        name: name.to_string(),
        message: invalid.error.clone(),
    })
}

struct Reconciler<'a> {
    ctx: &'a Context,
    request: &'a RestoreRequest,
    namespace: &'a str,
    name: &'a str,
}

/// How the status changes in one step.
struct Step {
    phase: RestorePhase,
    ready: (&'static str, &'static str, String),
    succeeded: (&'static str, &'static str, String),
}

impl Reconciler<'_> {
    fn owner(&self) -> String {
        owner_tag(KIND, self.name)
    }

    fn reference(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        object_reference::<RestoreRequest>(self.request.meta())
    }

    fn policy_name(&self) -> &str {
        &self.request.spec.policy_ref.name
    }

    fn job_name(&self) -> String {
        jobs::restore_job_name(self.name)
    }

    async fn run(&self) -> Result<Action> {
        let ctx = self.ctx;
        let now = ctx.now();
        let meta = self.request.meta();
        let uid = meta.uid.clone().ok_or(Error::MissingObjectKey("uid"))?;
        let old: RestoreRequestStatus = ctx
            .fresh_status(
                &uid,
                meta.resource_version.as_deref(),
                self.request.status.clone(),
            )
            .unwrap_or_default();
        let phase = old.phase.unwrap_or(RestorePhase::Pending);
        let first_sight = ctx.first_sight(&uid);
        let job_name = self.job_name();
        let job: Option<Arc<Job>> = ctx
            .jobs
            .state_filter(|j| {
                j.metadata.namespace.as_deref() == Some(self.namespace)
                    && j.metadata.name.as_deref() == Some(job_name.as_str())
                    && owned_by(j, &uid)
            })
            .into_iter()
            .next();

        if phase.is_terminal() {
            // Final. Never run again; only make sure nothing stays scaled down.
            if first_sight && job.as_ref().is_none_or(|j| !is_active(j)) {
                let list = self.workloads(job.as_deref());
                self.scale_up(&list).await?;
            }
            return Ok(Action::await_change());
        }

        match (&old.job_name, job) {
            (None, _) => self.start(&uid, &old, now).await,
            (Some(_), Some(job)) => self.follow(&uid, &old, &job, now).await,
            (Some(_), None) => {
                // The cache may lag behind a Job this process just created: ask.
                let api: Api<Job> = Api::namespaced(ctx.client.clone(), self.namespace);
                if let Some(found) = api.get_opt(&job_name).await? {
                    if owned_by(&found, &uid) {
                        return self.follow(&uid, &old, &found, now).await;
                    }
                }
                if old.job_uid.is_none() {
                    // The intent was written but the Job never created: create it now.
                    return self.start(&uid, &old, now).await;
                }
                let list = self.workloads(None);
                self.scale_up(&list).await?;
                self.finish_failed(
                    &uid,
                    &old,
                    now,
                    reasons::JOB_LOST,
                    format!("the restore job {job_name} disappeared before it reported a result; check the restored data, then create a new RestoreRequest if needed"),
                )
                .await?;
                Ok(Action::await_change())
            }
        }
    }

    /// The policy from the cache, validated.
    fn policy(&self) -> std::result::Result<Arc<DeserializeGuard<BackupPolicy>>, String> {
        let key = ObjectRef::new(self.policy_name()).within(self.namespace);
        self.ctx.policies.get(&key).ok_or_else(|| {
            format!(
                "BackupPolicy {:?} does not exist in namespace {}: create it or fix policyRef.name",
                self.policy_name(),
                self.namespace
            )
        })
    }

    /// The workloads to scale for this request: its own list, else the policy's.
    fn scale_list(&self, policy: Option<&BackupPolicy>) -> Vec<WorkloadRef> {
        match &self.request.spec.scale_down {
            Some(list) => list.clone(),
            None => policy
                .and_then(|p| p.spec.quiesce.as_ref())
                .map(|q| q.scale_down.clone())
                .unwrap_or_default(),
        }
    }

    /// Every workload this request may have scaled (for scaling back).
    fn workloads(&self, job: Option<&Job>) -> Vec<WorkloadRef> {
        let policy = self.policy().ok();
        let policy = policy.as_ref().and_then(|g| g.0.as_ref().ok());
        let mut list = self.scale_list(policy);
        for w in job.map(job_workloads).unwrap_or_default() {
            if !list.contains(&w) {
                list.push(w);
            }
        }
        list
    }

    async fn scale_up(&self, list: &[WorkloadRef]) -> Result<()> {
        if list.is_empty() {
            return Ok(());
        }
        let scaler = Scaler::new(self.ctx.client.clone(), self.namespace);
        let restored = scaler.scale_up(list, &self.owner(), |_| false).await?;
        if !restored.is_empty() {
            self.ctx
                .publish(
                    &self.reference(),
                    EventType::Normal,
                    events::SCALED_UP,
                    &format!("scaled back {}", restored.join(", ")),
                )
                .await;
        }
        Ok(())
    }

    /// Pending: check everything, then record the intent and create the Job.
    async fn start(
        &self,
        uid: &str,
        old: &RestoreRequestStatus,
        now: DateTime<Utc>,
    ) -> Result<Action> {
        let ctx = self.ctx;
        let policy_guard = match self.policy() {
            Ok(p) => p,
            Err(message) => {
                return self
                    .pending(uid, old, now, reasons::MISSING_REFERENCE, message)
                    .await
            }
        };
        let policy = match &policy_guard.0 {
            Ok(p) => p,
            Err(e) => {
                let message = format!(
                    "BackupPolicy {:?} cannot be read: {}",
                    self.policy_name(),
                    e.error
                );
                return self
                    .pending(uid, old, now, reasons::MISSING_REFERENCE, message)
                    .await;
            }
        };
        if let Err(problems) = validate_policy(self.policy_name(), &policy.spec) {
            let message = format!(
                "BackupPolicy {:?} is invalid: {}",
                self.policy_name(),
                join(&problems)
            );
            return self
                .pending(uid, old, now, reasons::INVALID_SPEC, message)
                .await;
        }
        let run_as = match jobs::run_as(&ctx.settings, policy.meta().annotations.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                let message = format!("BackupPolicy {:?} is invalid: {e}", self.policy_name());
                return self
                    .pending(uid, old, now, reasons::INVALID_SPEC, message)
                    .await;
            }
        };
        if let Err(problems) = validate_restore(&self.request.spec, &policy.spec) {
            // The spec is immutable: this request can never run. Final.
            let message = join(&problems);
            self.write(
                uid,
                old,
                now,
                Step {
                    phase: RestorePhase::Failed,
                    ready: (condition_status::FALSE, reasons::INVALID_SPEC, message.clone()),
                    succeeded: (
                        condition_status::FALSE,
                        reasons::INVALID_SPEC,
                        "nothing was restored: the request is invalid; create a corrected RestoreRequest".into(),
                    ),
                },
                |s| s.completion_time = Some(Timestamp::new(now)),
            )
            .await?;
            return Err(Error::InvalidSpec(message));
        }

        // One Job per policy at a time.
        let policy_jobs = ctx.jobs_of_policy(self.namespace, self.policy_name());
        if let Some(other) = policy_jobs
            .iter()
            .find(|j| is_active(j) && !owned_by(j, uid))
        {
            let message = format!(
                "waiting for job {} of policy {:?} to finish",
                other.name_any(),
                self.policy_name()
            );
            self.write(
                uid,
                old,
                now,
                Step {
                    phase: RestorePhase::Pending,
                    ready: ready_ok(),
                    succeeded: (condition_status::UNKNOWN, reasons::WAITING_FOR_JOB, message),
                },
                |_| {},
            )
            .await?;
            return Ok(Action::requeue(WAIT_POLL));
        }

        let mode = Mode::Restore {
            components: self.request.spec.components.clone(),
            to_claim: self.request.spec.to_claim.clone(),
        };
        let rendered = render(&policy.spec, &mode);
        let claims = match ctx
            .check_references(self.namespace, &policy.spec, &rendered)
            .await?
        {
            Ok(c) => c,
            Err(message) => {
                return self
                    .pending(uid, old, now, reasons::MISSING_REFERENCE, message)
                    .await
            }
        };
        let scale_down = self.scale_list(Some(policy));
        let rwo = single_node_claims(&claims);
        let placed = match place(ctx, self.namespace, &rwo, &scale_down).await? {
            Ok(p) => p,
            Err(message) => {
                return self
                    .pending(uid, old, now, reasons::UNSCHEDULABLE, message)
                    .await
            }
        };

        // The intent first: from here on this request never gets a second Job.
        let job_name = self.job_name();
        let running = self
            .write(
                uid,
                old,
                now,
                Step {
                    phase: RestorePhase::Running,
                    ready: ready_ok(),
                    succeeded: (
                        condition_status::UNKNOWN,
                        reasons::IN_PROGRESS,
                        format!("restore job {job_name} created"),
                    ),
                },
                |s| {
                    s.job_name = Some(job_name.clone());
                    s.start_time = s.start_time.or(Some(Timestamp::new(now)));
                },
            )
            .await?;

        apply_config_map(ctx, policy).await?;
        let suspend = !scale_down.is_empty();
        let job = jobs::restore_job(
            self.request,
            self.policy_name(),
            &JobParts {
                rendered: &rendered,
                settings: &ctx.settings,
                run_as,
                placement: &placed,
                suspend,
                scale_down: &scale_down,
            },
        )?;
        let api: Api<Job> = Api::namespaced(ctx.client.clone(), self.namespace);
        let created = match api.create(&crate::constants::post_params(), &job).await {
            Ok(j) => j,
            Err(e) if is_already_exists(&e) => {
                let existing = api.get(&job_name).await?;
                if !owned_by(&existing, uid) {
                    // Never adopt someone else's Job (e.g. a deleted request's, still being
                    // garbage-collected): wait until the name is free.
                    let message = format!(
                        "a Job named {job_name} already exists and does not belong to this request: wait for it to be deleted, or delete it"
                    );
                    return self
                        .pending(uid, &running, now, reasons::MISSING_REFERENCE, message)
                        .await;
                }
                existing
            }
            Err(e) => return Err(Error::Kube(e)),
        };
        let job_uid = created.metadata.uid.clone();
        self.write(
            uid,
            &running,
            now,
            Step {
                phase: RestorePhase::Running,
                ready: ready_ok(),
                succeeded: (
                    condition_status::UNKNOWN,
                    if suspend {
                        reasons::QUIESCING
                    } else {
                        reasons::IN_PROGRESS
                    },
                    if suspend {
                        format!("scaling workloads down for restore job {job_name}")
                    } else {
                        format!("restore job {job_name} is running")
                    },
                ),
            },
            |s| s.job_uid = job_uid.clone(),
        )
        .await?;
        tracing::info!(job = %job_name, node = ?placed.node, suspended = suspend, "restore job created");

        if suspend {
            let scaler = Scaler::new(ctx.client.clone(), self.namespace);
            if let ScaleDown::Done { scaled } = scaler
                .scale_down(&scale_down, &self.owner(), &job_name)
                .await?
            {
                if !scaled.is_empty() {
                    ctx.publish(
                        &self.reference(),
                        EventType::Normal,
                        events::SCALED_DOWN,
                        &format!(
                            "scaled {} to zero for restore job {job_name}",
                            scaled.join(", ")
                        ),
                    )
                    .await;
                }
            }
        }
        ctx.publish(
            &self.reference(),
            EventType::Normal,
            events::RESTORE_STARTED,
            &format!(
                "started restore job {job_name} for policy {}",
                self.policy_name()
            ),
        )
        .await;
        Ok(if suspend {
            Action::requeue(QUIESCE_POLL)
        } else {
            Action::await_change()
        })
    }

    /// Running: follow the Job to its end.
    async fn follow(
        &self,
        uid: &str,
        old: &RestoreRequestStatus,
        job: &Job,
        now: DateTime<Utc>,
    ) -> Result<Action> {
        let ctx = self.ctx;
        let job_name = job.name_any();
        let mut status = old.clone();
        if status.job_uid.is_none() {
            status = self
                .write(
                    uid,
                    old,
                    now,
                    Step {
                        phase: RestorePhase::Running,
                        ready: ready_ok(),
                        succeeded: (
                            condition_status::UNKNOWN,
                            reasons::IN_PROGRESS,
                            format!("restore job {job_name} is running"),
                        ),
                    },
                    |s| s.job_uid = job.metadata.uid.clone(),
                )
                .await?;
        }
        match job_state(job) {
            JobState::Suspended => {
                let timeout = self
                    .policy()
                    .ok()
                    .and_then(|g| {
                        g.0.as_ref()
                            .ok()
                            .and_then(|p| p.spec.quiesce.as_ref().and_then(|q| q.timeout))
                    })
                    .map(|t| t.to_chrono())
                    .unwrap_or(DEFAULT_QUIESCE_TIMEOUT);
                match quiesce(ctx, self.namespace, &self.owner(), job, timeout, now).await? {
                    Quiesce::Waiting => Ok(Action::requeue(QUIESCE_POLL)),
                    Quiesce::Released => {
                        self.write(
                            uid,
                            &status,
                            now,
                            Step {
                                phase: RestorePhase::Running,
                                ready: ready_ok(),
                                succeeded: (
                                    condition_status::UNKNOWN,
                                    reasons::IN_PROGRESS,
                                    format!("restore job {job_name} is running"),
                                ),
                            },
                            |_| {},
                        )
                        .await?;
                        Ok(Action::await_change())
                    }
                    Quiesce::TimedOut(message) => {
                        let api: Api<Job> = Api::namespaced(ctx.client.clone(), self.namespace);
                        if let Err(e) = api.delete(&job_name, &DeleteParams::background()).await {
                            if !is_not_found(&e) {
                                return Err(Error::Kube(e));
                            }
                        }
                        self.scale_up(&self.workloads(Some(job))).await?;
                        self.finish_failed(uid, &status, now, reasons::QUIESCE_TIMEOUT, message)
                            .await?;
                        Ok(Action::await_change())
                    }
                }
            }
            JobState::Active => Ok(Action::await_change()),
            JobState::Succeeded | JobState::Failed { .. } => {
                // Workloads first: whatever the result, the application comes back.
                self.scale_up(&self.workloads(Some(job))).await?;
                let pod = ctx.job_pod(self.namespace, &job_name).await?;
                let out = outcome(job, pod.as_ref());
                let result = out.result.clone().unwrap_or_default();
                let components: Vec<ComponentOutcome> = result
                    .components
                    .iter()
                    .map(|c| ComponentOutcome {
                        name: c.name.clone(),
                        ok: c.ok,
                        bytes: i64::try_from(c.bytes).ok().filter(|b| *b > 0),
                        duration_seconds: Some(c.duration_seconds.round() as i64),
                        error: c.error.as_deref().map(|e| shorten(e, 300)),
                    })
                    .collect();
                let step = Step {
                    phase: if out.succeeded {
                        RestorePhase::Succeeded
                    } else {
                        RestorePhase::Failed
                    },
                    ready: ready_ok(),
                    succeeded: if out.succeeded {
                        (
                            condition_status::TRUE,
                            reasons::SUCCEEDED,
                            out.message.clone(),
                        )
                    } else {
                        (
                            condition_status::FALSE,
                            reasons::FAILED,
                            out.message.clone(),
                        )
                    },
                };
                self.write(uid, &status, now, step, |s| {
                    s.snapshot = result.snapshot.clone().or(s.snapshot.take());
                    s.safety_snapshot = result.safety_snapshot.clone();
                    s.components = components.clone();
                    s.completion_time = Some(Timestamp::new(out.finished.unwrap_or(now)));
                    if let Some(t) = out.started {
                        s.start_time = s.start_time.or(Some(Timestamp::new(t)));
                    }
                })
                .await?;
                self.count(out.succeeded);
                let (type_, reason) = if out.succeeded {
                    (EventType::Normal, events::RESTORE_SUCCEEDED)
                } else {
                    (EventType::Warning, events::RESTORE_FAILED)
                };
                ctx.publish(
                    &self.reference(),
                    type_,
                    reason,
                    &format!("{job_name}: {}", out.message),
                )
                .await;
                Ok(Action::await_change())
            }
        }
    }

    async fn finish_failed(
        &self,
        uid: &str,
        old: &RestoreRequestStatus,
        now: DateTime<Utc>,
        reason: &'static str,
        message: String,
    ) -> Result<()> {
        self.write(
            uid,
            old,
            now,
            Step {
                phase: RestorePhase::Failed,
                ready: ready_ok(),
                succeeded: (condition_status::FALSE, reason, message.clone()),
            },
            |s| s.completion_time = Some(Timestamp::new(now)),
        )
        .await?;
        self.count(false);
        self.ctx
            .publish(
                &self.reference(),
                EventType::Warning,
                events::RESTORE_FAILED,
                &message,
            )
            .await;
        Ok(())
    }

    fn count(&self, ok: bool) {
        let key = format!("{}/{}", self.namespace, self.job_name());
        if self.ctx.first_count(&key) {
            self.ctx
                .metrics
                .restore_run(self.namespace, self.policy_name(), ok);
        }
    }

    /// Pending because of something outside the request (missing policy, Secret, claim):
    /// write it and retry with backoff.
    async fn pending(
        &self,
        uid: &str,
        old: &RestoreRequestStatus,
        now: DateTime<Utc>,
        reason: &'static str,
        message: String,
    ) -> Result<Action> {
        self.write(
            uid,
            old,
            now,
            Step {
                phase: RestorePhase::Pending,
                ready: (condition_status::FALSE, reason, message.clone()),
                succeeded: (
                    condition_status::UNKNOWN,
                    reason,
                    "not started: see the Ready condition".into(),
                ),
            },
            |_| {},
        )
        .await?;
        Err(if reason == reasons::MISSING_REFERENCE {
            Error::MissingReference(message)
        } else if reason == reasons::UNSCHEDULABLE {
            Error::Unschedulable(message)
        } else {
            Error::PolicyNotReady(message)
        })
    }

    /// Compute the next status from `old`, apply it when it changed, and publish Events
    /// for Ready transitions. Returns the status written.
    async fn write(
        &self,
        uid: &str,
        old: &RestoreRequestStatus,
        now: DateTime<Utc>,
        step: Step,
        edit: impl FnOnce(&mut RestoreRequestStatus),
    ) -> Result<RestoreRequestStatus> {
        let generation = self.request.meta().generation;
        let mut new = old.clone();
        new.phase = Some(step.phase);
        new.observed_generation = generation;
        new.message = Some(shorten(&step.succeeded.2, MAX_MESSAGE));
        if step.ready.0 == condition_status::FALSE {
            new.message = Some(shorten(&step.ready.2, MAX_MESSAGE));
        }
        new.conditions = vec![
            condition_from(
                &old.conditions,
                Wanted {
                    type_: condition::READY,
                    status: step.ready.0,
                    reason: step.ready.1,
                    message: step.ready.2,
                },
                generation,
                now,
            ),
            condition_from(
                &old.conditions,
                Wanted {
                    type_: condition::SUCCEEDED,
                    status: step.succeeded.0,
                    reason: step.succeeded.1,
                    message: step.succeeded.2,
                },
                generation,
                now,
            ),
        ];
        edit(&mut new);
        if &new == old {
            return Ok(new);
        }
        let api: Api<RestoreRequest> = Api::namespaced(self.ctx.client.clone(), self.namespace);
        let patch = json!({
            "apiVersion": RestoreRequest::api_version(&()),
            "kind": RestoreRequest::kind(&()),
            "status": new,
        });
        let written = api
            .patch_status(
                self.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        self.ctx.remember_status(
            uid,
            written.meta().resource_version.as_deref(),
            serde_json::to_value(&new).unwrap_or_default(),
        );
        for t in transitions(&old.conditions, &new.conditions) {
            if t.type_ == condition::READY && t.status == condition_status::FALSE {
                self.ctx
                    .publish(
                        &self.reference(),
                        EventType::Warning,
                        events::INVALID,
                        &t.message,
                    )
                    .await;
            }
        }
        Ok(new)
    }
}

fn ready_ok() -> (&'static str, &'static str, String) {
    (
        condition_status::TRUE,
        reasons::VALID,
        "the request and its policy are valid".into(),
    )
}

#[cfg(test)]
#[path = "restore_tests.rs"]
mod tests;
