//! The BackupPolicy controller. Each reconcile is a pipeline of small steps:
//!
//! 1. observe the policy's Jobs (from the shared Job cache);
//! 2. bring back workloads of a finished, failed or vanished run;
//! 3. read the result of finished runs from their pods;
//! 4. validate the spec and check that its Secrets and claims exist;
//! 5. decide what is due ([`crate::scheduling`]) and start it when no other Job of the
//!    policy runs (cold backups: create the Job suspended, record and scale the workloads
//!    to zero, release the Job once their pods are gone); a scheduled verification
//!    (`spec.verify`) starts when no backup is due and no other Job of the policy runs;
//! 6. compute the status ([`crate::status`]), apply it when it changed, emit Events for
//!    transitions and finished runs;
//! 7. requeue at the next scheduled time, the RPO deadline or the next quiesce check.
//!
//! No state lives in memory that matters after a restart: the Jobs (named per scheduled
//! time, annotated with their trigger and the workloads they scaled) and the workloads'
//! annotations are the record.

use std::sync::Arc;
use std::time::Duration;

use arca_api::crd::{
    condition, condition_status, BackupPolicy, BackupPolicyStatus, RunRecord, Timestamp,
    Verification,
};
use arca_api::WorkloadRef;
use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::error_boundary::InvalidObject;
use kube::core::{ApiResource, DeserializeGuard, DynamicObject};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use super::{
    apply_config_map, is_active, is_recorded, job_workloads, object_reference, owned_by, place,
    quiesce, requeue_at, single_node_claims, Context, Prepared, Quiesce, DEFAULT_QUIESCE_TIMEOUT,
    PREPARE_AHEAD, QUIESCE_POLL, RECORDED_ANNOTATION,
};
use crate::constants::{annotations, events, reasons, triggers, FIELD_MANAGER};
use crate::error::{is_already_exists, Error, Result};
use crate::jobs::{self, JobParts};
use crate::outcome::{job_state, outcome, to_chrono, JobOutcome, JobState};
use crate::render::{render, Mode, Rendered};
use crate::scaling::{owner_tag, ScaleDown, Scaler};
use crate::scheduling::{plan, Due, ScheduleInput, DEFAULT_STARTING_DEADLINE};
use crate::status::{
    self, backup_status, transitions, BackupStatusInput, RESULT_FAILED, RESULT_SUCCEEDED,
};
use crate::validation::{join, validate_policy};

/// Controller name in metrics and logs.
pub const CONTROLLER: &str = "backuppolicy";
/// Kind of the owner, in `arca.dev/quiesced-by`.
const KIND: &str = "BackupPolicy";
/// How often to look again while another Job of the policy (a restore) runs.
const BLOCKED_POLL: Duration = Duration::from_secs(30);
/// Safety net while a Job runs (its changes trigger reconciles anyway).
const ACTIVE_POLL: Duration = Duration::from_secs(600);
/// How often to look again while a Secret or claim only verifications need is missing.
const VERIFY_RETRY: Duration = Duration::from_secs(60);
/// A scheduled verification missed (operator down) or held up (a long backup or restore of
/// the policy runs) by less than this still runs, once.
const VERIFY_STARTING_DEADLINE: TimeDelta = TimeDelta::hours(24);

/// Reconcile one BackupPolicy.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<BackupPolicy>>,
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
            Ok(policy) => {
                Reconciler {
                    ctx: &ctx,
                    policy,
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
        ctx.reset_backoff(&format!("{namespace}/{name}"));
    }
    result
}

/// Decide the retry after a failed reconcile: transient errors back off, permanent ones
/// wait for the policy to change.
pub fn error_policy(
    obj: Arc<DeserializeGuard<BackupPolicy>>,
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
        let wait = ctx.backoff(&key);
        tracing::warn!(policy = %key, error = %err, retry_in = ?wait, "reconcile failed");
        Action::requeue(wait)
    } else {
        tracing::info!(policy = %key, error = %err, "waiting for the policy to change");
        Action::await_change()
    }
}

/// A policy that cannot be deserialized: say so on its status (merge patch, since its
/// status cannot be read either) and in one Event per generation.
async fn report_unreadable(
    ctx: &Context,
    namespace: &str,
    name: &str,
    invalid: &InvalidObject,
) -> Result<Action> {
    let uid = invalid.metadata.uid.clone().unwrap_or_default();
    let generation = invalid.metadata.generation;
    let message = format!(
        "the operator cannot read this BackupPolicy: {}; fix the field or upgrade arca-operator to the CRD's version",
        invalid.error
    );
    if ctx.first_unreadable_report(&uid, generation) {
        let api: Api<DynamicObject> = Api::namespaced_with(
            ctx.client.clone(),
            namespace,
            &ApiResource::erase::<BackupPolicy>(&()),
        );
        let now = Timestamp::new(ctx.now());
        let patch = json!({"status": {
            "observedGeneration": generation,
            "state": status::state::INVALID,
            "conditions": [{
                "type": condition::READY, "status": condition_status::FALSE,
                "observedGeneration": generation, "lastTransitionTime": now,
                "reason": reasons::UNREADABLE, "message": crate::outcome::shorten(&message, crate::constants::MAX_MESSAGE),
            }],
        }});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        api.patch_status(name, &params, &Patch::Merge(&patch))
            .await?;
        ctx.publish(
            &object_reference::<BackupPolicy>(&invalid.metadata),
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
    policy: &'a BackupPolicy,
    namespace: &'a str,
    name: &'a str,
}

/// What happened to a Job this reconcile started.
struct Started {
    job: String,
    suspended: bool,
}

impl Reconciler<'_> {
    fn owner(&self) -> String {
        owner_tag(KIND, self.name)
    }

    fn reference(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        object_reference::<BackupPolicy>(self.policy.meta())
    }

    async fn run(&self) -> Result<Action> {
        let ctx = self.ctx;
        let now = ctx.now();
        let meta = self.policy.meta();
        let spec = &self.policy.spec;
        let uid = meta.uid.clone().ok_or(Error::MissingObjectKey("uid"))?;
        let generation = meta.generation;
        let created = meta
            .creation_timestamp
            .as_ref()
            .and_then(to_chrono)
            .unwrap_or(now);
        let old: BackupPolicyStatus = ctx
            .fresh_status(
                &uid,
                meta.resource_version.as_deref(),
                self.policy.status.clone(),
            )
            .unwrap_or_default();
        let first_sight = ctx.first_sight(&uid);
        let scaler = Scaler::new(ctx.client.clone(), self.namespace);
        let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), self.namespace);

        // 1. Observe.
        let all = ctx.jobs_of_policy(self.namespace, self.name);
        let (own, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|j| owned_by(j, &uid));
        // Verify Jobs are the policy's too, but not backup runs.
        let (verify_own, own): (Vec<_>, Vec<_>) =
            own.into_iter().partition(|j| jobs::is_verify_job(j));
        let verify_active = verify_own.iter().find(|j| is_active(j)).cloned();
        let mut verify_unrecorded: Vec<Arc<Job>> = verify_own
            .iter()
            .filter(|j| !is_active(j) && !is_recorded(j))
            .filter(|j| {
                old.last_verification
                    .as_ref()
                    .is_none_or(|v| Some(&v.job) != j.metadata.name.as_ref())
            })
            .cloned()
            .collect();
        verify_unrecorded.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let mut active: Option<Arc<Job>> = own
            .iter()
            .filter(|j| is_active(j))
            .min_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .cloned();
        let other_active = others.iter().find(|j| is_active(j)).cloned();
        let mut unrecorded: Vec<Arc<Job>> = own
            .iter()
            .filter(|j| !is_active(j) && !is_recorded(j))
            .filter(|j| {
                !old.recent_runs
                    .iter()
                    .any(|r| Some(&r.job) == j.metadata.name.as_ref())
            })
            .cloned()
            .collect();
        unrecorded.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
        // Finished Jobs already in the status but not yet marked (a crash after the write).
        let to_mark: Vec<String> = own
            .iter()
            .chain(verify_own.iter())
            .filter(|j| !is_active(j) && !is_recorded(j))
            .filter_map(|j| j.metadata.name.clone())
            .collect();

        let mut new_runs: Vec<RunRecord> = Vec::new();
        let mut new_verifications: Vec<Verification> = Vec::new();

        // A run the status calls active whose Job is gone (deleted before it reported).
        if let Some(lost) = &old.active_job {
            let known = own.iter().any(|j| j.metadata.name.as_ref() == Some(lost));
            let recorded = old.recent_runs.iter().any(|r| &r.job == lost);
            if active.is_none() && !known && !recorded {
                // The cache may lag behind a Job this process just created: ask.
                if jobs_api.get_opt(lost).await?.is_some() {
                    return Ok(Action::requeue(QUIESCE_POLL));
                }
                new_runs.push(RunRecord {
                    job: lost.clone(),
                    trigger: triggers::SCHEDULE.into(),
                    result: RESULT_FAILED.into(),
                    completion_time: Some(Timestamp::new(now)),
                    message: Some(format!(
                        "job {lost} disappeared before it reported a result (deleted?); the next scheduled run will try again"
                    )),
                    ..Default::default()
                });
            }
        }

        // 2. Bring workloads back when no run of ours is in progress.
        let mut workloads: Vec<WorkloadRef> = spec
            .quiesce
            .as_ref()
            .map(|q| q.scale_down.clone())
            .unwrap_or_default();
        for j in &unrecorded {
            for w in job_workloads(j) {
                if !workloads.contains(&w) {
                    workloads.push(w);
                }
            }
        }
        if active.is_none()
            && !workloads.is_empty()
            && (first_sight || !unrecorded.is_empty() || old.active_job.is_some())
        {
            let restored = scaler
                .scale_up(&workloads, &self.owner(), |_| false)
                .await?;
            if !restored.is_empty() {
                tracing::info!(workloads = ?restored, "scaled workloads back");
                ctx.publish(
                    &self.reference(),
                    EventType::Normal,
                    events::SCALED_UP,
                    &format!("scaled back {}", restored.join(", ")),
                )
                .await;
            }
        }

        // 3. Results of finished runs.
        for j in &unrecorded {
            let job_name = j.name_any();
            let pod = ctx.job_pod(self.namespace, &job_name).await?;
            let out = outcome(j, pod.as_ref());
            new_runs.push(run_record(j, &out));
        }
        for j in &verify_unrecorded {
            let pod = ctx.job_pod(self.namespace, &j.name_any()).await?;
            new_verifications.push(verification_record(j, &outcome(j, pod.as_ref()), now));
        }

        // 4. Validate.
        let valid = validate_policy(self.name, spec).and_then(|v| {
            jobs::run_as(&ctx.settings, meta.annotations.as_ref())
                .map(|r| (v, r))
                .map_err(|e| vec![e])
        });
        let (valid, run_as) = match valid {
            Ok(v) => v,
            Err(problems) => {
                let message = join(&problems);
                self.finish(
                    &uid,
                    &old,
                    BackupStatusInput {
                        old: &old,
                        generation,
                        now,
                        created,
                        ready: Err((reasons::INVALID_SPEC, message.clone())),
                        suspended: spec.suspend,
                        active_job: active.as_ref().map(|j| j.name_any()),
                        new_runs,
                        last_schedule_time: None,
                        next_schedule_time: None,
                        last_manual_trigger: None,
                        rpo: spec.rpo,
                        verify: spec.verify.is_some(),
                        verify_problem: None,
                        new_verifications,
                    },
                    &to_mark,
                )
                .await?;
                return Err(Error::InvalidSpec(message));
            }
        };

        // 5. Decide.
        let last_schedule_time = own
            .iter()
            .filter_map(|j| j.annotations().get(annotations::SCHEDULED_TIME))
            .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .chain(old.last_schedule_time.map(|t| t.0))
            .max();
        let manual_value = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::BACKUP_NOW))
            .cloned();
        let manual_in_jobs = manual_value.as_ref().filter(|v| {
            own.iter()
                .any(|j| j.annotations().get(annotations::MANUAL_TRIGGER) == Some(*v))
        });
        let manual_handled = manual_in_jobs
            .cloned()
            .or_else(|| old.last_manual_trigger.clone());
        let schedule_plan = plan(&ScheduleInput {
            now,
            schedule: valid.schedule.as_ref(),
            suspend: spec.suspend,
            starting_deadline: spec
                .starting_deadline
                .map(|d| d.to_chrono())
                .unwrap_or(DEFAULT_STARTING_DEADLINE),
            last_schedule_time,
            created,
            manual_value: manual_value.as_deref(),
            manual_handled: manual_handled.as_deref(),
        });
        if let Some(skipped) = schedule_plan.skipped {
            tracing::info!(scheduled = %Timestamp::new(skipped), "missed a scheduled run by more than the starting deadline; skipped");
        }
        let blocked = active.is_some() || other_active.is_some() || verify_active.is_some();
        let start = schedule_plan.due.clone().filter(|_| !blocked);
        if let (Some(_), Some(other)) = (
            &schedule_plan.due,
            other_active.as_ref().or(verify_active.as_ref()),
        ) {
            tracing::info!(job = %other.name_any(), "a backup is due but another job of the policy runs; waiting");
        }
        // The scheduled verification: never beside another Job of the policy, and a due
        // backup goes first.
        let last_verify_time = verify_own
            .iter()
            .filter_map(|j| j.annotations().get(annotations::SCHEDULED_TIME))
            .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .chain(
                old.last_verification
                    .as_ref()
                    .and_then(|v| v.scheduled_time)
                    .map(|t| t.0),
            )
            .max();
        let verify_plan = valid.verify_schedule.as_ref().map(|schedule| {
            plan(&ScheduleInput {
                now,
                schedule: Some(schedule),
                suspend: spec.suspend,
                starting_deadline: VERIFY_STARTING_DEADLINE,
                last_schedule_time: last_verify_time,
                created,
                manual_value: None,
                manual_handled: None,
            })
        });
        let verify_due = verify_plan
            .as_ref()
            .and_then(|p| p.due.as_ref())
            .and_then(|d| d.scheduled);
        let mut verify_problem =
            crate::validation::verify_problem(spec).map(|m| (reasons::VERIFY_NEEDS_IDENTITY, m));
        // NB: nothing to verify before the first good backup; a verification due then
        // runs after it (within its starting deadline) instead of failing.
        let has_snapshot = old.last_successful_snapshot.is_some()
            || new_runs.iter().any(|r| r.result == RESULT_SUCCEEDED);
        if verify_due.is_some() && !has_snapshot {
            tracing::info!("a verification is due but no backup has succeeded yet; waiting");
        }
        let verify_start = verify_due.filter(|_| {
            !blocked && schedule_plan.due.is_none() && verify_problem.is_none() && has_snapshot
        });

        let ready_before = status::find(&old.conditions, condition::READY)
            .is_some_and(|c| c.status == condition_status::TRUE);
        let rendered = render(spec, &Mode::Backup);
        // A scheduled run prepared ahead needs no checks at its second; manual runs and
        // unprepared ones check first.
        let prepared = start
            .as_ref()
            .and_then(|d| d.scheduled)
            .and_then(|t| ctx.prepared(&uid, Some(t), generation))
            .filter(|_| start.as_ref().is_some_and(|d| d.manual.is_none()));
        // Prepare the next scheduled run when it is close.
        let prepare = start.is_none()
            && !blocked
            && schedule_plan
                .next
                .is_some_and(|n| n.signed_duration_since(now) <= PREPARE_AHEAD)
            && ctx.prepared(&uid, schedule_plan.next, generation).is_none();
        let mut rwo_claims = prepared
            .as_ref()
            .map(|p| p.rwo_claims.clone())
            .unwrap_or_default();
        let check = (start.is_some() && prepared.is_none())
            || prepare
            || !ready_before
            || old.observed_generation != generation;
        if check {
            match ctx
                .check_references(self.namespace, spec, &rendered)
                .await?
            {
                Ok(found) => rwo_claims = single_node_claims(&found),
                Err(message) => {
                    return self
                        .fail_ready(
                            &uid,
                            &old,
                            generation,
                            now,
                            created,
                            active.as_ref(),
                            new_runs,
                            new_verifications,
                            &to_mark,
                            reasons::MISSING_REFERENCE,
                            message.clone(),
                            Error::MissingReference(message),
                        )
                        .await;
                }
            }
        }

        if prepare {
            if let Some(next) = schedule_plan.next {
                apply_config_map(ctx, self.policy).await?;
                ctx.set_prepared(
                    &uid,
                    Prepared {
                        scheduled: next,
                        generation,
                        rwo_claims: rwo_claims.clone(),
                    },
                );
                tracing::debug!(scheduled = %Timestamp::new(next), "next run prepared");
            }
        }

        // Start a due run.
        let mut last_manual_trigger = manual_handled;
        let mut new_schedule_time = last_schedule_time;
        let mut started_job = None;
        if let Some(due) = &start {
            let scale_down = spec
                .quiesce
                .as_ref()
                .map(|q| q.scale_down.clone())
                .unwrap_or_default();
            match self
                .start(
                    due,
                    &rendered,
                    &rwo_claims,
                    prepared.is_none(),
                    &scale_down,
                    run_as,
                )
                .await?
            {
                Ok(started) => {
                    if due.manual.is_some() {
                        last_manual_trigger = due.manual.clone();
                    }
                    if due.scheduled.is_some() {
                        new_schedule_time = due.scheduled;
                    }
                    started_job = Some(started);
                }
                Err(message) => {
                    return self
                        .fail_ready(
                            &uid,
                            &old,
                            generation,
                            now,
                            created,
                            active.as_ref(),
                            new_runs,
                            new_verifications,
                            &to_mark,
                            reasons::UNSCHEDULABLE,
                            message.clone(),
                            Error::Unschedulable(message),
                        )
                        .await;
                }
            }
        }

        // The scheduled verification. What only it mounts (the age identity) is checked on
        // the same occasions as the backup's references (which it shares), and everything
        // it mounts when it starts without them.
        let mut verify_started = None;
        if spec.verify.is_some() && verify_problem.is_none() && (check || verify_start.is_some()) {
            let verify_rendered = render(spec, &Mode::Verify);
            let checked = if check {
                let only_verify = Rendered {
                    secrets: verify_rendered
                        .secrets
                        .iter()
                        .filter(|s| !rendered.secrets.contains(s))
                        .cloned()
                        .collect(),
                    claims: verify_rendered
                        .claims
                        .iter()
                        .filter(|c| !rendered.claims.contains(c))
                        .cloned()
                        .collect(),
                    ..Default::default()
                };
                ctx.check_mounts(self.namespace, spec, &only_verify)
                    .await?
                    .map(|found| {
                        let mut rwo: Vec<String> = rwo_claims
                            .iter()
                            .filter(|c| verify_rendered.claims.contains(c))
                            .cloned()
                            .collect();
                        rwo.extend(single_node_claims(&found));
                        rwo
                    })
            } else {
                ctx.check_references(self.namespace, spec, &verify_rendered)
                    .await?
                    .map(|found| single_node_claims(&found))
            };
            match checked {
                Err(message) => verify_problem = Some((reasons::MISSING_REFERENCE, message)),
                Ok(verify_rwo) => {
                    if let Some(scheduled) = verify_start {
                        match self
                            .start_verify(scheduled, &verify_rendered, &verify_rwo, run_as)
                            .await?
                        {
                            Ok(job) => verify_started = Some(job),
                            Err(message) => {
                                verify_problem = Some((reasons::UNSCHEDULABLE, message));
                            }
                        }
                    }
                }
            }
        }
        if let Some((reason, message)) = &verify_problem {
            tracing::info!(reason, message = %message, "scheduled verification cannot run");
        }

        // Cold backups in progress: release the Job once the workloads stopped.
        let mut quiescing = started_job.as_ref().is_some_and(|s| s.suspended);
        if let Some(job) = active.clone() {
            if job_state(&job) == JobState::Suspended {
                let timeout = spec
                    .quiesce
                    .as_ref()
                    .and_then(|q| q.timeout)
                    .map(|t| t.to_chrono())
                    .unwrap_or(DEFAULT_QUIESCE_TIMEOUT);
                match quiesce(ctx, self.namespace, &self.owner(), &job, timeout, now).await? {
                    Quiesce::Waiting => quiescing = true,
                    Quiesce::Released => {}
                    Quiesce::TimedOut(message) => {
                        let list = job_workloads(&job);
                        let params = DeleteParams::background();
                        if let Err(e) = jobs_api.delete(&job.name_any(), &params).await {
                            if !crate::error::is_not_found(&e) {
                                return Err(Error::Kube(e));
                            }
                        }
                        scaler.scale_up(&list, &self.owner(), |_| false).await?;
                        let mut record = run_record(
                            &job,
                            &JobOutcome {
                                succeeded: false,
                                message,
                                finished: Some(now),
                                ..Default::default()
                            },
                        );
                        record.start_time = job
                            .metadata
                            .creation_timestamp
                            .as_ref()
                            .and_then(to_chrono)
                            .map(Timestamp::new);
                        new_runs.push(record);
                        active = None;
                    }
                }
            }
        }

        // 6. Status, Events, metrics.
        let active_job = started_job
            .as_ref()
            .map(|s| s.job.clone())
            .or_else(|| active.as_ref().map(|j| j.name_any()));
        let new_status = self
            .finish(
                &uid,
                &old,
                BackupStatusInput {
                    old: &old,
                    generation,
                    now,
                    created,
                    ready: Ok(()),
                    suspended: spec.suspend,
                    active_job: active_job.clone(),
                    new_runs,
                    last_schedule_time: new_schedule_time,
                    next_schedule_time: schedule_plan.next,
                    last_manual_trigger,
                    rpo: spec.rpo,
                    verify: spec.verify.is_some(),
                    verify_problem: verify_problem.clone(),
                    new_verifications,
                },
                &to_mark,
            )
            .await?;
        if let Some(job) = &verify_started {
            // Once per Job, also when a lagging cache let a second reconcile re-create it.
            if ctx.first_count(&format!("{}/{job}/started", self.namespace)) {
                ctx.publish(
                    &self.reference(),
                    EventType::Normal,
                    events::VERIFY_STARTED,
                    &format!("started job {job}"),
                )
                .await;
            }
        }
        if let Some(s) = &started_job {
            ctx.publish(
                &self.reference(),
                EventType::Normal,
                events::BACKUP_STARTED,
                &format!(
                    "started job {}{}",
                    s.job,
                    if s.suspended {
                        " (scaling workloads down first)"
                    } else {
                        ""
                    }
                ),
            )
            .await;
        }

        // 7. Requeue.
        let rpo_at = status::rpo_deadline(
            spec.rpo,
            new_status.last_success_time.map(|t| t.0),
            created,
            now,
        );
        let soon = |d: Duration| Some(now + TimeDelta::from_std(d).unwrap_or(TimeDelta::zero()));
        // Wake to prepare the next run ahead of its time, unless that moment has passed.
        let wake_for_next = schedule_plan.next.map(|next| {
            let prepare_at = next - PREPARE_AHEAD;
            if prepare_at > now && ctx.prepared(&uid, Some(next), generation).is_none() {
                prepare_at
            } else {
                next
            }
        });
        let running = active_job.is_some() || verify_active.is_some() || verify_started.is_some();
        let retry_verify = verify_problem
            .as_ref()
            .is_some_and(|(reason, _)| *reason != reasons::VERIFY_NEEDS_IDENTITY);
        Ok(requeue_at(
            now,
            [
                wake_for_next,
                rpo_at,
                verify_plan.as_ref().and_then(|p| p.next),
                quiescing.then(|| soon(QUIESCE_POLL)).flatten(),
                (running && !quiescing).then(|| soon(ACTIVE_POLL)).flatten(),
                ((schedule_plan.due.is_some() || verify_due.is_some()) && other_active.is_some())
                    .then(|| soon(BLOCKED_POLL))
                    .flatten(),
                retry_verify.then(|| soon(VERIFY_RETRY)).flatten(),
            ],
            Duration::from_millis(100),
        ))
    }

    /// Ready=False for a problem found outside the spec (missing reference, placement):
    /// write it and return `err` (retried with backoff).
    #[allow(clippy::too_many_arguments)]
    async fn fail_ready(
        &self,
        uid: &str,
        old: &BackupPolicyStatus,
        generation: Option<i64>,
        now: DateTime<Utc>,
        created: DateTime<Utc>,
        active: Option<&Arc<Job>>,
        new_runs: Vec<RunRecord>,
        new_verifications: Vec<Verification>,
        to_mark: &[String],
        reason: &'static str,
        message: String,
        err: Error,
    ) -> Result<Action> {
        let spec = &self.policy.spec;
        self.finish(
            uid,
            old,
            BackupStatusInput {
                old,
                generation,
                now,
                created,
                ready: Err((reason, message)),
                suspended: spec.suspend,
                active_job: active.map(|j| j.name_any()),
                new_runs,
                last_schedule_time: None,
                next_schedule_time: None,
                last_manual_trigger: None,
                rpo: spec.rpo,
                verify: spec.verify.is_some(),
                verify_problem: None,
                new_verifications,
            },
            to_mark,
        )
        .await?;
        Err(err)
    }

    /// Compute and write the status (when it changed), then mark recorded Jobs, update
    /// metrics and publish Events for transitions and finished runs.
    async fn finish(
        &self,
        uid: &str,
        old: &BackupPolicyStatus,
        input: BackupStatusInput<'_>,
        to_mark: &[String],
    ) -> Result<BackupPolicyStatus> {
        let ctx = self.ctx;
        let new_runs = input.new_runs.clone();
        let new_verifications = input.new_verifications.clone();
        let new = backup_status(&input);
        if &new != old {
            let api: Api<BackupPolicy> = Api::namespaced(ctx.client.clone(), self.namespace);
            let patch = json!({
                "apiVersion": BackupPolicy::api_version(&()),
                "kind": BackupPolicy::kind(&()),
                "status": new,
            });
            let written = api
                .patch_status(
                    self.name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await?;
            ctx.remember_status(
                uid,
                written.meta().resource_version.as_deref(),
                serde_json::to_value(&new).unwrap_or_default(),
            );
        }

        // The status holds the results now: mark their Jobs so no later reconcile reads
        // them again (the status history is bounded; the Jobs live until their TTL).
        let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), self.namespace);
        let mut marks: Vec<&str> = to_mark.iter().map(String::as_str).collect();
        for r in &new_runs {
            if !marks.contains(&r.job.as_str()) && self.job_exists(&r.job) {
                marks.push(&r.job);
            }
        }
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        for job in marks {
            let patch = json!({"metadata": {"annotations": {RECORDED_ANNOTATION: "true"}}});
            if let Err(e) = jobs_api.patch(job, &params, &Patch::Merge(&patch)).await {
                if !crate::error::is_not_found(&e) {
                    return Err(Error::Kube(e));
                }
            }
        }

        ctx.metrics.policy_status(
            self.namespace,
            self.name,
            &self.policy.spec,
            input.created,
            &new,
        );
        let reference = self.reference();
        for r in &new_runs {
            if !ctx.first_count(&format!("{}/{}", self.namespace, r.job)) {
                continue;
            }
            let ok = r.result == RESULT_SUCCEEDED;
            ctx.metrics.backup_run(
                self.namespace,
                self.name,
                ok,
                r.duration_seconds.map(|d| d as f64),
                r.bytes.and_then(|b| u64::try_from(b).ok()),
            );
            let note = format!("{}: {}", r.job, r.message.as_deref().unwrap_or_default());
            if ok {
                tracing::info!(job = %r.job, snapshot = ?r.snapshot, "backup succeeded");
                ctx.publish(
                    &reference,
                    EventType::Normal,
                    events::BACKUP_SUCCEEDED,
                    &note,
                )
                .await;
            } else {
                tracing::warn!(job = %r.job, message = ?r.message, "backup failed");
                ctx.publish(&reference, EventType::Warning, events::BACKUP_FAILED, &note)
                    .await;
            }
        }
        for v in &new_verifications {
            if !ctx.first_count(&format!("{}/{}", self.namespace, v.job)) {
                continue;
            }
            ctx.metrics.verify_run(self.namespace, self.name, v.ok);
            let note = format!("{}: {}", v.job, v.message.as_deref().unwrap_or_default());
            if v.ok {
                tracing::info!(job = %v.job, snapshot = ?v.snapshot, deep = v.deep, "verification passed");
                ctx.publish(
                    &reference,
                    EventType::Normal,
                    events::VERIFY_SUCCEEDED,
                    &note,
                )
                .await;
            } else {
                tracing::warn!(job = %v.job, message = ?v.message, "verification failed");
                ctx.publish(&reference, EventType::Warning, events::VERIFY_FAILED, &note)
                    .await;
            }
        }
        for t in transitions(&old.conditions, &new.conditions) {
            let (type_, reason) = match (t.type_.as_str(), t.status.as_str()) {
                (condition::READY, condition_status::FALSE) => {
                    (EventType::Warning, events::INVALID)
                }
                (condition::READY, condition_status::TRUE) => (EventType::Normal, events::READY),
                (condition::WITHIN_RPO, condition_status::FALSE) => {
                    (EventType::Warning, events::RPO_BREACHED)
                }
                (condition::WITHIN_RPO, condition_status::TRUE) => {
                    (EventType::Normal, events::RPO_RESTORED)
                }
                _ => continue,
            };
            ctx.publish(&reference, type_, reason, &t.message).await;
        }
        Ok(new)
    }

    fn job_exists(&self, job: &str) -> bool {
        self.ctx.jobs.state().iter().any(|j| {
            j.metadata.namespace.as_deref() == Some(self.namespace)
                && j.metadata.name.as_deref() == Some(job)
        })
    }

    /// Create the Job for `due` (suspended when workloads must stop first), after its
    /// ConfigMap (unless the run was prepared ahead); scale the workloads down.
    /// `Err(message)`: the Job cannot be placed.
    async fn start(
        &self,
        due: &Due,
        rendered: &crate::render::Rendered,
        rwo_claims: &[String],
        apply_config: bool,
        scale_down: &[WorkloadRef],
        run_as: jobs::RunAs,
    ) -> Result<std::result::Result<Started, String>> {
        let ctx = self.ctx;
        let scaler = Scaler::new(ctx.client.clone(), self.namespace);

        let placed = match place(ctx, self.namespace, rwo_claims, scale_down).await? {
            Ok(p) => p,
            Err(message) => return Ok(Err(message)),
        };
        if apply_config {
            apply_config_map(ctx, self.policy).await?;
        }

        let suspend = !scale_down.is_empty();
        let job = jobs::backup_job(
            self.policy,
            due,
            self.ctx.now(),
            &JobParts {
                rendered,
                settings: &ctx.settings,
                run_as,
                placement: &placed,
                suspend,
                scale_down,
            },
        )?;
        let job_name = job.name_any();
        create_job(&ctx.client, self.namespace, &job).await?;
        tracing::info!(job = %job_name, node = ?placed.node, suspended = suspend, "backup job created");

        if suspend {
            if let ScaleDown::Done { scaled } = scaler
                .scale_down(scale_down, &self.owner(), &job_name)
                .await?
            {
                if !scaled.is_empty() {
                    ctx.publish(
                        &self.reference(),
                        EventType::Normal,
                        events::SCALED_DOWN,
                        &format!("scaled {} to zero for job {job_name}", scaled.join(", ")),
                    )
                    .await;
                }
            }
        }
        Ok(Ok(Started {
            job: job_name,
            suspended: suspend,
        }))
    }
}

impl Reconciler<'_> {
    /// Create the verify Job for the scheduled time `scheduled` (after the ConfigMap, so
    /// its restore config is current). `Err(message)`: the Job cannot be placed.
    async fn start_verify(
        &self,
        scheduled: DateTime<Utc>,
        rendered: &Rendered,
        rwo_claims: &[String],
        run_as: jobs::RunAs,
    ) -> Result<std::result::Result<String, String>> {
        let ctx = self.ctx;
        let placed = match place(ctx, self.namespace, rwo_claims, &[]).await? {
            Ok(p) => p,
            Err(message) => return Ok(Err(message)),
        };
        apply_config_map(ctx, self.policy).await?;
        // NB: deep by default, as in the compose daemon.
        let deep = self
            .policy
            .spec
            .verify
            .as_ref()
            .and_then(|v| v.deep)
            .unwrap_or(true);
        let job = jobs::verify_job(
            self.policy,
            scheduled,
            deep,
            &JobParts {
                rendered,
                settings: &ctx.settings,
                run_as,
                placement: &placed,
                suspend: false,
                scale_down: &[],
            },
        )?;
        let job_name = job.name_any();
        create_job(&ctx.client, self.namespace, &job).await?;
        tracing::info!(job = %job_name, node = ?placed.node, deep, "verify job created");
        Ok(Ok(job_name))
    }
}

/// The status record of a finished verify Job.
fn verification_record(job: &Job, out: &JobOutcome, now: DateTime<Utc>) -> Verification {
    let a = job.annotations();
    let deep = a.get(annotations::VERIFY_DEEP).is_some_and(|v| v == "true");
    let snapshot = out.result.as_ref().and_then(|r| r.snapshot.clone());
    let message = if out.succeeded {
        format!(
            "snapshot {} verified at every destination ({})",
            snapshot.as_deref().unwrap_or("(unknown id)"),
            if deep {
                "deep: restored into scratch targets and counted"
            } else {
                "digests"
            }
        )
    } else {
        out.message.clone()
    };
    Verification {
        job: job.name_any(),
        time: Some(Timestamp::new(out.finished.unwrap_or(now))),
        scheduled_time: a
            .get(annotations::SCHEDULED_TIME)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| Timestamp::new(t.with_timezone(&Utc))),
        snapshot,
        deep,
        ok: out.succeeded,
        message: Some(message).filter(|m| !m.is_empty()),
    }
}

/// The status record of a finished Job.
fn run_record(job: &Job, out: &JobOutcome) -> RunRecord {
    let a = job.annotations();
    let trigger = a
        .get(annotations::TRIGGER)
        .cloned()
        .unwrap_or_else(|| triggers::SCHEDULE.to_string());
    let scheduled_time = a
        .get(annotations::SCHEDULED_TIME)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| Timestamp::new(t.with_timezone(&Utc)));
    let duration_seconds = match (out.started, out.finished) {
        (Some(s), Some(f)) if f >= s => Some(f.signed_duration_since(s).num_seconds()),
        _ => None,
    };
    let result = out.result.as_ref();
    RunRecord {
        job: job.name_any(),
        trigger,
        result: if out.succeeded {
            RESULT_SUCCEEDED
        } else {
            RESULT_FAILED
        }
        .into(),
        scheduled_time,
        start_time: out.started.map(Timestamp::new),
        completion_time: out.finished.map(Timestamp::new),
        duration_seconds,
        snapshot: result.and_then(|r| r.snapshot.clone()),
        bytes: result
            .and_then(|r| i64::try_from(r.bytes).ok())
            .filter(|b| *b > 0),
        plain_bytes: result
            .and_then(|r| i64::try_from(r.plain_bytes).ok())
            .filter(|b| *b > 0),
        message: Some(out.message.clone()).filter(|m| !m.is_empty()),
    }
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;

/// Create a Job; one that exists already was created by an earlier attempt of the same
/// run (Job names are per scheduled time), which is fine.
async fn create_job(client: &kube::Client, namespace: &str, job: &Job) -> Result<()> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    match api.create(&crate::constants::post_params(), job).await {
        Ok(_) => Ok(()),
        Err(e) if is_already_exists(&e) => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}
