//! BackupPolicy reconcile flows against a scripted fake API server: every request the
//! reconciler sends is listed, in order, with checks on what it sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arca_api::crd::{BackupPolicy, BackupPolicyStatus};
use arca_api::{PolicySpec, Quiesce as QuiesceSpec, WorkloadRef};
use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::{reflector, watcher};
use serde_json::{json, Value};

use super::{reconcile, CONTROLLER};
use crate::config::JobSettings;
use crate::controllers::Context;
use crate::error::Error;
use crate::fixtures::{Call, FakeApi, Server};
use crate::metrics::Metrics;
use crate::status::{backup_status, BackupStatusInput};
use crate::testdata;

const NS: &str = "/api/v1/namespaces/clinic";
const POLICY_STATUS: &str = "/apis/arca.dev/v1alpha1/namespaces/clinic/backuppolicies/p/status";
const JOBS: &str = "/apis/batch/v1/namespaces/clinic/jobs";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/clinic/events";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/clinic/deployments/app";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn context(client: kube::Client, now: DateTime<Utc>, jobs: Vec<Job>) -> Arc<Context> {
    let (job_store, mut job_writer) = reflector::store::<Job>();
    for j in jobs {
        job_writer.apply_watcher_event(&watcher::Event::Apply(j));
    }
    let (policy_store, _policy_writer) = reflector::store::<DeserializeGuard<BackupPolicy>>();
    Arc::new(Context::new(
        client,
        JobSettings {
            image: "arca:test".into(),
            ..Default::default()
        },
        Metrics::default(),
        Context::reporter("test"),
        job_store,
        policy_store,
        Arc::new(move || now),
    ))
}

/// A context whose clock reads `clock`.
fn context_with_clock(
    client: kube::Client,
    clock: Arc<Mutex<DateTime<Utc>>>,
    jobs: Vec<Job>,
) -> Arc<Context> {
    let (job_store, mut job_writer) = reflector::store::<Job>();
    for j in jobs {
        job_writer.apply_watcher_event(&watcher::Event::Apply(j));
    }
    let (policy_store, _policy_writer) = reflector::store::<DeserializeGuard<BackupPolicy>>();
    Arc::new(Context::new(
        client,
        JobSettings {
            image: "arca:test".into(),
            ..Default::default()
        },
        Metrics::default(),
        Context::reporter("test"),
        job_store,
        policy_store,
        Arc::new(move || *clock.lock().unwrap()),
    ))
}

/// The same process (caches and memory of `previous`) talking to a new fake server.
fn context_with_store(
    client: kube::Client,
    clock: Arc<Mutex<DateTime<Utc>>>,
    previous: Arc<Context>,
) -> Arc<Context> {
    let previous = Arc::try_unwrap(previous)
        .ok()
        .expect("no other user of the context");
    Arc::new(previous.with_client(client, Arc::new(move || *clock.lock().unwrap())))
}

/// The status a previous reconcile would have left (Ready, observed generation 1).
fn settled(
    policy: &BackupPolicy,
    now: DateTime<Utc>,
    f: impl FnOnce(&mut BackupStatusInput<'_>),
) -> BackupPolicyStatus {
    let old = BackupPolicyStatus::default();
    let mut input = BackupStatusInput {
        old: &old,
        generation: policy.metadata.generation,
        now,
        created: t("2026-11-01T00:00:00Z"),
        ready: Ok(()),
        suspended: policy.spec.suspend,
        active_job: None,
        new_runs: vec![],
        last_schedule_time: None,
        next_schedule_time: None,
        last_manual_trigger: None,
        rpo: policy.spec.rpo,
        verify: policy.spec.verify.is_some(),
        verify_problem: None,
        new_verifications: vec![],
    };
    f(&mut input);
    backup_status(&input)
}

fn policy(spec: PolicySpec, status: Option<BackupPolicyStatus>) -> BackupPolicy {
    let mut p = testdata::policy("p", spec);
    p.status = status;
    p
}

async fn run(ctx: &Arc<Context>, p: &BackupPolicy) -> Result<Action, Error> {
    tokio::time::timeout(
        Duration::from_secs(10),
        reconcile(Arc::new(DeserializeGuard(Ok(p.clone()))), ctx.clone()),
    )
    .await
    .expect("reconcile finished")
}

fn secret_meta(name: &str) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": name, "namespace": "clinic"}})
}

fn pvc(name: &str, mode: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": "clinic"},
           "spec": {"accessModes": [mode]}})
}

fn reference_checks(mode: &str) -> Vec<Call> {
    vec![
        Call::get(&format!("{NS}/secrets/s3"))
            .accept("PartialObjectMetadata")
            .respond(&secret_meta("s3")),
        Call::get(&format!("{NS}/persistentvolumeclaims/docs")).respond(&pvc("docs", mode)),
    ]
}

fn event(reason: &'static str, type_: &'static str) -> Call {
    Call::post(EVENTS)
        .check(move |b| {
            assert_eq!(b["reason"], reason, "{b}");
            assert_eq!(b["type"], type_, "{b}");
        })
        .echo()
}

fn status_patch(p: &BackupPolicy, check: impl FnOnce(&Value) + Send + 'static) -> Call {
    Call::patch(POLICY_STATUS)
        .query("fieldManager=arca-operator")
        .query("force=true")
        .check(move |b| {
            assert_eq!(b["kind"], "BackupPolicy");
            check(&b["status"]);
        })
        .merged_into(p)
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {status}"))
}

/// A finished (or running) backup Job as the cache holds it.
fn job(name: &str, state: &str, scheduled: Option<&str>, extra: Value) -> Job {
    let conditions = match state {
        "Complete" => json!([{"type": "Complete", "status": "True"}]),
        "Failed" => json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                           "lastTransitionTime": "2026-11-23T02:05:00Z"}]),
        _ => json!([]),
    };
    let mut annotations = json!({"arca.dev/trigger": "schedule"});
    if let Some(s) = scheduled {
        annotations["arca.dev/scheduled-time"] = json!(s);
    }
    if let Some(a) = extra.get("annotations").and_then(Value::as_object) {
        for (k, v) in a {
            annotations[k] = v.clone();
        }
    }
    serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": "clinic", "uid": format!("uid-{name}"),
            "creationTimestamp": "2026-11-23T02:00:00Z",
            "labels": {"arca.dev/policy": "p", "app.kubernetes.io/managed-by": "arca-operator"},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "arca.dev/v1alpha1", "kind": "BackupPolicy",
                                 "name": "p", "uid": "uid-p", "controller": true}]
        },
        "spec": {"template": {}, "suspend": extra.get("suspend").cloned().unwrap_or(json!(false))},
        "status": {"startTime": "2026-11-23T02:00:01Z", "conditions": conditions}
    }))
    .unwrap()
}

fn pod_list(exit_code: i32, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
        "metadata": {"name": "p-202611230200-x7k2p", "namespace": "clinic",
                     "creationTimestamp": "2026-11-23T02:00:01Z"},
        "status": {"phase": if exit_code == 0 { "Succeeded" } else { "Failed" }, "containerStatuses": [{
            "name": "arca", "image": "arca:test", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "message": message,
                                      "startedAt": "2026-11-23T02:00:02Z", "finishedAt": "2026-11-23T02:04:02Z"}}
        }]}
    }]})
}

const OK_RESULT: &str = r#"{"format":"arca-result/1","command":"backup","policy":"p","ok":true,"snapshot":"20261123T020002Z","startedAt":"2026-11-23T02:00:02Z","completedAt":"2026-11-23T02:04:00Z","bytes":1048576,"plainBytes":4194304,"destinations":[{"name":"offsite","ok":true}],"components":[{"name":"docs","ok":true,"bytes":1048576,"durationSeconds":238.0}]}"#;
const FAILED_RESULT: &str = r#"{"format":"arca-result/1","command":"backup","policy":"p","ok":false,"startedAt":"2026-11-23T02:00:02Z","completedAt":"2026-11-23T02:00:09Z","error":"arca: backup of policy \"p\" failed: no destination could be written: offsite: bucket clinic does not exist: create it or fix the destination"}"#;

async fn finish(server: Server) -> Vec<Value> {
    server.done().await
}

#[tokio::test]
async fn a_due_schedule_creates_the_job() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T02:00:00.400Z");
    let p = policy(testdata::simple_spec(), None);
    let mut calls = reference_checks("ReadWriteMany");
    calls.extend([
        Call::patch(&format!("{NS}/configmaps/arca-p"))
            .query("fieldManager=arca-operator")
            .check(|b| {
                let backup = b["data"]["backup.yaml"].as_str().unwrap();
                assert!(
                    backup.contains("accessKeyIdFile: /run/secrets/arca/s3/id"),
                    "{backup}"
                );
                assert!(backup.contains("path: /sources/docs"), "{backup}");
                assert!(!backup.contains("SecretRef"), "{backup}");
                assert_eq!(b["metadata"]["ownerReferences"][0]["kind"], "BackupPolicy");
            })
            .echo(),
        Call::post(JOBS)
            .check(|b| {
                assert_eq!(b["metadata"]["name"], "p-202611230200");
                assert_eq!(
                    b["metadata"]["annotations"]["arca.dev/scheduled-time"],
                    "2026-11-23T02:00:00Z"
                );
                assert_eq!(b["spec"]["suspend"], false);
                let pod = &b["spec"]["template"]["spec"];
                assert_eq!(pod["automountServiceAccountToken"], false);
                assert!(pod["affinity"].is_null());
                assert_eq!(pod["containers"][0]["image"], "arca:test");
                assert_eq!(pod["containers"][0]["args"][0], "backup");
            })
            .echo(),
        status_patch(&p, |s| {
            assert_eq!(s["activeJob"], "p-202611230200");
            assert_eq!(s["state"], "Running");
            assert_eq!(s["lastScheduleTime"], "2026-11-23T02:00:00Z");
            assert_eq!(s["nextScheduleTime"], "2026-11-24T02:00:00Z");
            assert_eq!(s["observedGeneration"], 1);
            assert_eq!(condition(s, "Ready")["status"], "True");
        }),
        event("BackupStarted", "Normal"),
    ]);
    let server = fake.run(calls);
    let ctx = context(client, now, vec![]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(600)));
}

#[tokio::test]
async fn prepares_ahead_then_starts_the_job_on_the_second() {
    // 01:50: nothing due; wake 10 s before 02:00 (not by polling).
    let (client, fake) = FakeApi::new();
    let p = policy(testdata::simple_spec(), None);
    let mut calls = reference_checks("ReadWriteMany");
    calls.push(status_patch(&p, |s| {
        assert_eq!(s["state"], "Pending");
        assert_eq!(s["nextScheduleTime"], "2026-11-23T02:00:00Z");
        assert!(s["activeJob"].is_null());
    }));
    let server = fake.run(calls);
    let clock = Arc::new(Mutex::new(t("2026-11-23T01:50:00Z")));
    let ctx = context_with_clock(client, clock.clone(), vec![]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(590)));

    // 01:59:50: check the Secret and claim and apply the config now, then sleep until 02:00.
    let (client, fake) = FakeApi::new();
    *clock.lock().unwrap() = t("2026-11-23T01:59:50Z");
    let status = settled(&p, t("2026-11-23T01:50:00Z"), |i| {
        i.next_schedule_time = Some(t("2026-11-23T02:00:00Z"));
    });
    let p = policy(testdata::simple_spec(), Some(status));
    let mut calls = reference_checks("ReadWriteMany");
    calls.push(Call::patch(&format!("{NS}/configmaps/arca-p")).echo());
    let server = fake.run(calls);
    let ctx = context_with_store(client, clock.clone(), ctx);
    let result = run(&ctx, &p).await;
    finish(server).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(10)));

    // 02:00:00.2: only the Job is created before anything else.
    let (client, fake) = FakeApi::new();
    *clock.lock().unwrap() = t("2026-11-23T02:00:00.200Z");
    let server = fake.run(vec![
        Call::post(JOBS)
            .check(|b| assert_eq!(b["metadata"]["name"], "p-202611230200"))
            .echo(),
        status_patch(&p, |s| assert_eq!(s["activeJob"], "p-202611230200")),
        event("BackupStarted", "Normal"),
    ]);
    let ctx = context_with_store(client, clock, ctx);
    let result = run(&ctx, &p).await;
    finish(server).await;
    result.unwrap();
}

#[tokio::test]
async fn nothing_is_sent_when_nothing_changed() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T01:00:00Z");
    let spec = testdata::simple_spec();
    let base = policy(spec.clone(), None);
    let status = settled(&base, now, |i| {
        i.next_schedule_time = Some(t("2026-11-23T02:00:00Z"));
    });
    let p = policy(spec, Some(status));
    let server = fake.run(vec![]);
    let ctx = context(client, now, vec![]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    // Woken 10 s before 02:00 to prepare the run.
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(3590)));
}

#[tokio::test]
async fn backup_now_runs_once_per_value() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T10:00:00Z");
    let spec = testdata::simple_spec();
    let base = policy(spec.clone(), None);
    let status = settled(&base, now, |i| {
        i.next_schedule_time = Some(t("2026-11-24T02:00:00Z"));
        i.last_schedule_time = Some(t("2026-11-23T02:00:00Z"));
    });
    let mut p = policy(spec, Some(status));
    p.metadata.annotations = Some(
        [(
            "arca.dev/backup-now".to_string(),
            "2026-11-23 10:00".to_string(),
        )]
        .into(),
    );
    let mut calls = reference_checks("ReadWriteMany");
    calls.extend([
        Call::patch(&format!("{NS}/configmaps/arca-p")).echo(),
        Call::post(JOBS)
            .check(|b| {
                assert!(
                    b["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .starts_with("p-now-"),
                    "{b}"
                );
                assert_eq!(b["metadata"]["annotations"]["arca.dev/trigger"], "manual");
                assert_eq!(
                    b["metadata"]["annotations"]["arca.dev/manual-trigger"],
                    "2026-11-23 10:00"
                );
            })
            .echo(),
        status_patch(&p, |s| {
            assert_eq!(s["lastManualTrigger"], "2026-11-23 10:00");
            assert_eq!(s["state"], "Running");
            // A manual run does not move the schedule.
            assert_eq!(s["lastScheduleTime"], "2026-11-23T02:00:00Z");
        }),
        event("BackupStarted", "Normal"),
    ]);
    let server = fake.run(calls);
    let ctx = context(client, now, vec![]);
    let result = run(&ctx, &p).await;
    let bodies = finish(server).await;
    result.unwrap();

    // The same value again, with that run finished and recorded: nothing happens.
    let created: Job = serde_json::from_value(bodies[3].clone()).unwrap();
    let mut done = job(
        created.metadata.name.as_deref().unwrap(),
        "Complete",
        None,
        json!({"annotations": {"arca.dev/trigger": "manual",
                               "arca.dev/manual-trigger": "2026-11-23 10:00",
                               "arca.dev/recorded": "true"}}),
    );
    done.metadata.uid = Some("uid-manual".into());
    let (client, fake) = FakeApi::new();
    let mut again = p.clone();
    let mut s = again.status.clone().unwrap();
    s.last_manual_trigger = Some("2026-11-23 10:00".into());
    again.status = Some(s);
    let server = fake.run(vec![]);
    let ctx = context(client, now + TimeDelta::minutes(10), vec![done]);
    let result = run(&ctx, &again).await;
    finish(server).await;
    result.unwrap();
}

fn running_status(p: &BackupPolicy, now: DateTime<Utc>) -> BackupPolicyStatus {
    settled(p, now, |i| {
        i.active_job = Some("p-202611230200".into());
        i.last_schedule_time = Some(t("2026-11-23T02:00:00Z"));
        i.next_schedule_time = Some(t("2026-11-24T02:00:00Z"));
    })
}

#[tokio::test]
async fn a_successful_job_sets_the_last_snapshot_from_the_termination_message() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T02:05:00Z");
    let base = policy(testdata::simple_spec(), None);
    let p = policy(testdata::simple_spec(), Some(running_status(&base, now)));
    let server = fake.run(vec![
        Call::get(&format!("{NS}/pods"))
            .query("labelSelector=arca.dev/job=p-202611230200")
            .respond(&pod_list(0, OK_RESULT)),
        status_patch(&p, |s| {
            assert_eq!(s["lastSuccessfulSnapshot"], "20261123T020002Z");
            assert_eq!(s["lastSuccessTime"], "2026-11-23T02:00:02Z");
            assert_eq!(s["state"], "Succeeded");
            assert!(s["activeJob"].is_null());
            let c = condition(s, "BackupSucceeded");
            assert_eq!(c["status"], "True");
            assert_eq!(c["reason"], "Succeeded");
            let run = &s["recentRuns"][0];
            assert_eq!(run["job"], "p-202611230200");
            assert_eq!(run["result"], "Succeeded");
            assert_eq!(run["bytes"], 1_048_576);
            assert_eq!(run["durationSeconds"], 238);
            assert_eq!(run["scheduledTime"], "2026-11-23T02:00:00Z");
        }),
        Call::patch(&format!("{JOBS}/p-202611230200"))
            .check(|b| assert_eq!(b["metadata"]["annotations"]["arca.dev/recorded"], "true"))
            .echo(),
        event("BackupSucceeded", "Normal"),
    ]);
    let ctx = context(
        client,
        now,
        vec![job(
            "p-202611230200",
            "Complete",
            Some("2026-11-23T02:00:00Z"),
            json!({}),
        )],
    );
    let result = run(&ctx, &p).await;
    finish(server).await;
    result.unwrap();
}

#[tokio::test]
async fn a_failed_job_is_reported_with_its_error() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T02:05:00Z");
    let base = policy(testdata::simple_spec(), None);
    let p = policy(testdata::simple_spec(), Some(running_status(&base, now)));
    let server = fake.run(vec![
        Call::get(&format!("{NS}/pods")).respond(&pod_list(1, FAILED_RESULT)),
        status_patch(&p, |s| {
            let c = condition(s, "BackupSucceeded");
            assert_eq!(c["status"], "False");
            assert_eq!(c["reason"], "Failed");
            assert!(
                c["message"]
                    .as_str()
                    .unwrap()
                    .contains("bucket clinic does not exist"),
                "{c}"
            );
            assert_eq!(s["state"], "Failed");
            assert!(s["lastSuccessfulSnapshot"].is_null());
        }),
        Call::patch(&format!("{JOBS}/p-202611230200")).echo(),
        Call::post(EVENTS)
            .check(|b| {
                assert_eq!(b["reason"], "BackupFailed");
                assert_eq!(b["type"], "Warning");
                assert!(b["note"]
                    .as_str()
                    .unwrap()
                    .contains("bucket clinic does not exist"));
            })
            .echo(),
    ]);
    let ctx = context(
        client,
        now,
        vec![job(
            "p-202611230200",
            "Failed",
            Some("2026-11-23T02:00:00Z"),
            json!({}),
        )],
    );
    let result = run(&ctx, &p).await;
    finish(server).await;
    result.unwrap();
}

#[tokio::test]
async fn an_old_last_success_breaches_the_rpo() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-24T05:00:00Z");
    let mut spec = testdata::simple_spec();
    spec.rpo = Some("26h".parse().unwrap());
    let base = policy(spec.clone(), None);
    let mut status = settled(&base, t("2026-11-23T02:05:00Z"), |i| {
        i.last_schedule_time = Some(t("2026-11-24T02:00:00Z"));
        i.next_schedule_time = Some(t("2026-11-25T02:00:00Z"));
    });
    status.last_success_time = Some(arca_api::crd::Timestamp::new(t("2026-11-23T02:00:02Z")));
    status.last_successful_snapshot = Some("20261123T020002Z".into());
    // Recompute so the old WithinRPO is True as a previous reconcile left it.
    let status = {
        let mut i = BackupStatusInput {
            old: &status,
            generation: Some(1),
            now: t("2026-11-23T03:00:00Z"),
            created: t("2026-11-01T00:00:00Z"),
            ready: Ok(()),
            suspended: false,
            active_job: None,
            new_runs: vec![],
            last_schedule_time: Some(t("2026-11-24T02:00:00Z")),
            next_schedule_time: Some(t("2026-11-25T02:00:00Z")),
            last_manual_trigger: None,
            rpo: spec.rpo,
            verify: false,
            verify_problem: None,
            new_verifications: vec![],
        };
        i.now = t("2026-11-23T03:00:00Z");
        backup_status(&i)
    };
    assert_eq!(
        crate::status::find(&status.conditions, "WithinRPO")
            .unwrap()
            .status,
        "True"
    );
    let p = policy(spec, Some(status));
    let server = fake.run(vec![
        status_patch(&p, |s| {
            let c = condition(s, "WithinRPO");
            assert_eq!(c["status"], "False");
            assert_eq!(c["reason"], "RPOBreached");
            assert_eq!(c["lastTransitionTime"], "2026-11-24T05:00:00Z");
        }),
        event("RPOBreached", "Warning"),
    ]);
    let ctx = context(client, now, vec![]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    result.unwrap();
}

#[tokio::test]
async fn a_suspended_policy_starts_no_job() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T02:00:00Z");
    let mut spec = testdata::simple_spec();
    spec.suspend = true;
    let p = policy(spec, None);
    let mut calls = reference_checks("ReadWriteMany");
    calls.push(status_patch(&p, |s| {
        assert_eq!(s["state"], "Suspended");
        assert!(s["nextScheduleTime"].is_null());
        assert!(s["activeJob"].is_null());
    }));
    let server = fake.run(calls);
    let ctx = context(client, now, vec![]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    assert_eq!(result.unwrap(), Action::await_change());
}

#[tokio::test]
async fn a_job_on_a_rwo_claim_is_pinned_to_the_node_using_it() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T02:00:00Z");
    let p = policy(testdata::simple_spec(), None);
    let mut calls = reference_checks("ReadWriteOnce");
    calls.extend([
        Call::get(&format!("{NS}/pods")).respond(&json!({
        "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
            {"metadata": {"name": "web-1", "namespace": "clinic"},
             "spec": {"nodeName": "node-a", "containers": [], "volumes": [
                 {"name": "x", "persistentVolumeClaim": {"claimName": "other"}}]},
             "status": {"phase": "Running"}},
            {"metadata": {"name": "docs-app-1", "namespace": "clinic"},
             "spec": {"nodeName": "node-b", "containers": [], "volumes": [
                 {"name": "data", "persistentVolumeClaim": {"claimName": "docs"}}]},
             "status": {"phase": "Running"}}
        ]})),
        Call::patch(&format!("{NS}/configmaps/arca-p")).echo(),
        Call::post(JOBS)
            .check(|b| {
                let terms = &b["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
                    ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
                assert_eq!(terms[0]["matchFields"][0]["key"], "metadata.name");
                assert_eq!(terms[0]["matchFields"][0]["values"][0], "node-b");
            })
            .echo(),
        status_patch(&p, |_| {}),
        event("BackupStarted", "Normal"),
    ]);
    let server = fake.run(calls);
    let ctx = context(client, now, vec![]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    result.unwrap();
}

fn cold_spec() -> PolicySpec {
    let mut spec = testdata::simple_spec();
    spec.quiesce = Some(QuiesceSpec {
        scale_down: vec![WorkloadRef {
            kind: "Deployment".into(),
            name: "app".into(),
        }],
        ..Default::default()
    });
    spec
}

fn deployment(replicas: i32, annotations: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "app", "namespace": "clinic", "annotations": annotations},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "docs"}},
                    "template": {"metadata": {"labels": {"app": "docs"}}}}})
}

fn scale(replicas: i32) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
           "metadata": {"name": "app", "namespace": "clinic"}, "spec": {"replicas": replicas}})
}

fn quiesced() -> Value {
    json!({"arca.dev/original-replicas": "2", "arca.dev/quiesced-by": "BackupPolicy/p",
           "arca.dev/quiesce-job": "p-202611230200"})
}

#[tokio::test]
async fn cold_backup_scales_down_runs_and_scales_back_across_restarts() {
    // 1. Due: the Job is created suspended, the replica count recorded, then scaled to 0.
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T02:00:00Z");
    let p = policy(cold_spec(), None);
    // First sight of the policy: make sure nothing is left scaled down from before.
    let mut calls = vec![Call::get(DEPLOYMENT).respond(&deployment(2, json!({})))];
    calls.extend(reference_checks("ReadWriteMany"));
    calls.extend([
        Call::patch(&format!("{NS}/configmaps/arca-p")).echo(),
        Call::post(JOBS)
            .check(|b| {
                assert_eq!(b["spec"]["suspend"], true);
                assert_eq!(
                    b["metadata"]["annotations"]["arca.dev/scale-down"],
                    "Deployment/app"
                );
            })
            .echo(),
        Call::get(DEPLOYMENT).respond(&deployment(2, json!({}))),
        Call::patch(DEPLOYMENT)
            .check(|b| assert_eq!(b["metadata"]["annotations"], quiesced()))
            .respond(&deployment(2, quiesced())),
        Call::patch(&format!("{DEPLOYMENT}/scale"))
            .check(|b| assert_eq!(b["spec"]["replicas"], 0))
            .respond(&scale(0)),
        event("ScaledDown", "Normal"),
        status_patch(&p, |s| assert_eq!(s["activeJob"], "p-202611230200")),
        event("BackupStarted", "Normal"),
    ]);
    let server = fake.run(calls);
    let ctx = context(client, now, vec![]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(2)));

    // 2. The operator restarts while the Job waits: the pods are gone, so the Job is
    //    released. The record on the Deployment is left alone.
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T02:00:06Z");
    let status = running_status(&p, now);
    let p = policy(cold_spec(), Some(status));
    let suspended = job(
        "p-202611230200",
        "Active",
        Some("2026-11-23T02:00:00Z"),
        json!({"suspend": true, "annotations": {"arca.dev/scale-down": "Deployment/app"}}),
    );
    let server = fake.run(vec![
        Call::get(DEPLOYMENT).respond(&deployment(0, quiesced())),
        Call::get(DEPLOYMENT).respond(&deployment(0, quiesced())),
        Call::get(&format!("{NS}/pods"))
            .query("labelSelector=app=docs")
            .respond(&json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []})),
        Call::patch(&format!("{JOBS}/p-202611230200"))
            .check(|b| assert_eq!(b["spec"]["suspend"], false))
            .echo(),
    ]);
    let ctx = context(client, now, vec![suspended]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    result.unwrap();

    // 3. Restarted again; meanwhile the Job failed. The Deployment gets its 2 replicas
    //    back before anything else, then the failure is recorded.
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T02:06:00Z");
    let failed = job(
        "p-202611230200",
        "Failed",
        Some("2026-11-23T02:00:00Z"),
        json!({"annotations": {"arca.dev/scale-down": "Deployment/app"}}),
    );
    let server = fake.run(vec![
        Call::get(DEPLOYMENT).respond(&deployment(0, quiesced())),
        Call::patch(&format!("{DEPLOYMENT}/scale"))
            .check(|b| assert_eq!(b["spec"]["replicas"], 2))
            .respond(&scale(2)),
        Call::patch(DEPLOYMENT)
            .check(|b| {
                let a = &b["metadata"]["annotations"];
                assert!(
                    a["arca.dev/original-replicas"].is_null()
                        && a.get("arca.dev/original-replicas").is_some()
                );
                assert!(a.get("arca.dev/quiesced-by").is_some());
            })
            .respond(&deployment(2, json!({}))),
        event("ScaledUp", "Normal"),
        Call::get(&format!("{NS}/pods")).respond(&pod_list(1, FAILED_RESULT)),
        status_patch(&p, |s| {
            assert_eq!(condition(s, "BackupSucceeded")["status"], "False");
            assert!(s["activeJob"].is_null());
        }),
        Call::patch(&format!("{JOBS}/p-202611230200")).echo(),
        event("BackupFailed", "Warning"),
    ]);
    let ctx = context(client, now, vec![failed]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    result.unwrap();
}

#[tokio::test]
async fn workloads_come_back_when_the_job_vanished_during_a_restart() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T03:00:00Z");
    let base = policy(cold_spec(), None);
    let p = policy(cold_spec(), Some(running_status(&base, now)));
    let server = fake.run(vec![
        Call::get(&format!("{JOBS}/p-202611230200")).not_found(),
        Call::get(DEPLOYMENT).respond(&deployment(0, quiesced())),
        Call::patch(&format!("{DEPLOYMENT}/scale")).respond(&scale(2)),
        Call::patch(DEPLOYMENT).respond(&deployment(2, json!({}))),
        event("ScaledUp", "Normal"),
        status_patch(&p, |s| {
            let c = condition(s, "BackupSucceeded");
            assert_eq!(c["status"], "False");
            assert!(
                c["message"].as_str().unwrap().contains("disappeared"),
                "{c}"
            );
            assert!(s["activeJob"].is_null());
        }),
        event("BackupFailed", "Warning"),
    ]);
    let ctx = context(client, now, vec![]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    result.unwrap();
}

#[tokio::test]
async fn a_bad_cron_is_reported_and_runs_nothing() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T02:00:00Z");
    let mut spec = testdata::simple_spec();
    spec.schedule = Some("every night at two".into());
    let p = policy(spec, None);
    let server = fake.run(vec![
        status_patch(&p, |s| {
            let c = condition(s, "Ready");
            assert_eq!(c["status"], "False");
            assert_eq!(c["reason"], "InvalidSpec");
            let m = c["message"].as_str().unwrap();
            assert!(
                m.contains("schedule: invalid cron expression") && m.contains("use 5 fields"),
                "{m}"
            );
            assert_eq!(s["state"], "Invalid");
        }),
        event("Invalid", "Warning"),
    ]);
    let ctx = context(client, now, vec![]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)));
    assert!(!err.is_transient());
    assert_eq!(
        super::error_policy(Arc::new(DeserializeGuard(Ok(p))), &err, ctx),
        Action::await_change()
    );
}

#[tokio::test]
async fn a_missing_secret_is_reported_and_runs_nothing() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T02:00:00Z");
    let p = policy(testdata::simple_spec(), None);
    let server = fake.run(vec![
        Call::get(&format!("{NS}/secrets/s3")).not_found(),
        Call::get(&format!("{NS}/persistentvolumeclaims/docs")).respond(&pvc("docs", "ReadWriteMany")),
        status_patch(&p, |s| {
            let c = condition(s, "Ready");
            assert_eq!(c["reason"], "MissingReference");
            let m = c["message"].as_str().unwrap();
            assert!(
                m.contains("Secret \"s3\" (destinations[0].s3.accessKeyIdSecretRef) does not exist in namespace clinic: create it"),
                "{m}"
            );
            assert!(s["activeJob"].is_null());
        }),
        event("Invalid", "Warning"),
    ]);
    let ctx = context(client, now, vec![]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    let err = result.unwrap_err();
    assert!(
        err.is_transient(),
        "a created Secret must be noticed: {err}"
    );
    assert_eq!(
        super::error_policy(Arc::new(DeserializeGuard(Ok(p))), &err, ctx),
        Action::requeue(Duration::from_secs(5))
    );
}

#[tokio::test]
async fn duplicate_component_names_are_reported() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T02:00:00Z");
    let mut spec = testdata::simple_spec();
    let mut twin = spec.components[0].clone();
    twin.files.as_mut().unwrap().claim_name = Some("more-docs".into());
    spec.components.push(twin);
    let p = policy(spec, None);
    let server = fake.run(vec![
        status_patch(&p, |s| {
            let m = condition(s, "Ready")["message"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                m.contains(
                    "components[1].name: duplicate component name \"docs\": names must be unique"
                ),
                "{m}"
            );
        }),
        event("Invalid", "Warning"),
    ]);
    let ctx = context(client, now, vec![]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    assert!(matches!(result, Err(Error::InvalidSpec(_))));
}

#[tokio::test]
async fn an_unreadable_policy_is_reported_once() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T02:00:00Z");
    let raw = json!({"apiVersion": "arca.dev/v1alpha1", "kind": "BackupPolicy",
                     "metadata": {"name": "p", "namespace": "clinic", "uid": "uid-p", "generation": 4},
                     "spec": {"components": "not a list", "destinations": []}});
    let guard: DeserializeGuard<BackupPolicy> = serde_json::from_value(raw.clone()).unwrap();
    assert!(guard.0.is_err());
    let server = fake.run(vec![
        Call::patch(POLICY_STATUS)
            .check(|b| {
                let c = &b["status"]["conditions"][0];
                assert_eq!(c["reason"], "Unreadable");
                assert_eq!(c["status"], "False");
                assert_eq!(b["status"]["observedGeneration"], 4);
            })
            .respond(&raw),
        event("Invalid", "Warning"),
    ]);
    let ctx = context(client, now, vec![]);
    let guard = Arc::new(guard);
    let first = reconcile(guard.clone(), ctx.clone()).await;
    // The same generation again: no second patch or Event.
    let second = reconcile(guard, ctx.clone()).await;
    finish(server).await;
    assert!(matches!(first, Err(Error::Unreadable { .. })));
    assert!(matches!(second, Err(Error::Unreadable { .. })));
}

#[tokio::test]
async fn metrics_count_each_run_once() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T02:05:00Z");
    let base = policy(testdata::simple_spec(), None);
    let p = policy(testdata::simple_spec(), Some(running_status(&base, now)));
    let server = fake.run(vec![
        Call::get(&format!("{NS}/pods")).respond(&pod_list(0, OK_RESULT)),
        status_patch(&p, |_| {}),
        Call::patch(&format!("{JOBS}/p-202611230200")).echo(),
        event("BackupSucceeded", "Normal"),
    ]);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let (job_store, mut writer) = reflector::store::<Job>();
    writer.apply_watcher_event(&watcher::Event::Apply(job(
        "p-202611230200",
        "Complete",
        Some("2026-11-23T02:00:00Z"),
        json!({}),
    )));
    let (policy_store, _w) = reflector::store::<DeserializeGuard<BackupPolicy>>();
    let ctx = Arc::new(Context::new(
        client,
        JobSettings::default(),
        metrics,
        Context::reporter("test"),
        job_store,
        policy_store,
        Arc::new(move || now),
    ));
    run(&ctx, &p).await.unwrap();
    finish(server).await;
    let text = crate::metrics::encode(&registry).unwrap();
    assert!(
        text.contains(
            "arca_backup_runs_total{namespace=\"clinic\",policy=\"p\",result=\"succeeded\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("arca_backup_bytes{namespace=\"clinic\",policy=\"p\"} 1048576"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "arca_reconciles_total{{controller=\"{CONTROLLER}\"}} 1"
        )),
        "{text}"
    );
}

fn context_with(
    client: kube::Client,
    now: DateTime<Utc>,
    jobs: Vec<Job>,
    settings: JobSettings,
    metrics: Metrics,
) -> Arc<Context> {
    let (job_store, mut job_writer) = reflector::store::<Job>();
    for j in jobs {
        job_writer.apply_watcher_event(&watcher::Event::Apply(j));
    }
    let (policy_store, _policy_writer) = reflector::store::<DeserializeGuard<BackupPolicy>>();
    Arc::new(Context::new(
        client,
        settings,
        metrics,
        Context::reporter("test"),
        job_store,
        policy_store,
        Arc::new(move || now),
    ))
}

fn test_settings() -> JobSettings {
    JobSettings {
        image: "arca:test".into(),
        ..Default::default()
    }
}

// The Jobs' service account.

#[tokio::test]
async fn a_missing_job_service_account_is_reported_and_runs_nothing() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T02:00:00Z");
    let p = policy(testdata::simple_spec(), None);
    let mut calls = vec![Call::get(&format!("{NS}/serviceaccounts/arca-job"))
        .accept("PartialObjectMetadata")
        .not_found()];
    calls.extend(reference_checks("ReadWriteMany"));
    calls.extend([
        status_patch(&p, |s| {
            let c = condition(s, "Ready");
            assert_eq!(
                (&c["status"], &c["reason"]),
                (&json!("False"), &json!("MissingReference"))
            );
            let m = c["message"].as_str().unwrap();
            assert!(
                m.contains("ServiceAccount \"arca-job\"")
                    && m.contains("does not exist in namespace clinic")
                    && m.contains("kubectl apply -n clinic -f manifests/job-serviceaccount.yaml"),
                "{m}"
            );
            assert!(s["activeJob"].is_null());
            assert_eq!(s["state"], "Invalid");
        }),
        event("Invalid", "Warning"),
    ]);
    let server = fake.run(calls);
    let mut settings = test_settings();
    settings.service_account = Some("arca-job".into());
    let ctx = context_with(client, now, vec![], settings.clone(), Metrics::default());
    let result = run(&ctx, &p).await;
    finish(server).await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::MissingReference(_)));
    assert!(
        err.is_transient(),
        "a created ServiceAccount must be noticed"
    );

    // Created: the Job runs as it.
    let (client, fake) = FakeApi::new();
    let mut calls = vec![
        Call::get(&format!("{NS}/serviceaccounts/arca-job")).respond(
            &json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                          "metadata": {"name": "arca-job", "namespace": "clinic"}}),
        ),
    ];
    calls.extend(reference_checks("ReadWriteMany"));
    calls.extend([
        Call::patch(&format!("{NS}/configmaps/arca-p")).echo(),
        Call::post(JOBS)
            .check(|b| {
                assert_eq!(
                    b["spec"]["template"]["spec"]["serviceAccountName"],
                    "arca-job"
                );
            })
            .echo(),
        status_patch(&p, |s| assert_eq!(condition(s, "Ready")["status"], "True")),
        event("BackupStarted", "Normal"),
    ]);
    let server = fake.run(calls);
    let ctx = context_with(client, now, vec![], settings, Metrics::default());
    let result = run(&ctx, &p).await;
    finish(server).await;
    result.unwrap();
}

// Scheduled verification (spec.verify).

/// `simple_spec` encrypted, with the identity Secret `age`, verified Sundays at 06:00 UTC.
fn verify_spec() -> PolicySpec {
    let mut spec = testdata::simple_spec();
    spec.encryption = Some(arca_api::Encryption {
        age_recipients: vec![testdata::RECIPIENT.into()],
        age_identity_file: None,
        age_identity_secret_ref: Some(arca_api::SecretKeyRef {
            name: "age".into(),
            key: "key.txt".into(),
        }),
    });
    spec.verify = Some(arca_api::VerifySchedule {
        schedule: "0 6 * * 0".into(),
        deep: None,
    });
    spec
}

/// A verify Job for Sunday 2026-11-29 06:00 as the cache holds it.
fn verify_job(state: &str) -> Job {
    let mut j = job(
        "p-verify-202611290600",
        state,
        Some("2026-11-29T06:00:00Z"),
        json!({"annotations": {"arca.dev/verify-deep": "true"}}),
    );
    j.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("app.kubernetes.io/component".into(), "verify".into());
    j
}

/// The status after Sunday's 02:00 backup was started, with an earlier good snapshot.
fn sunday_status(p: &BackupPolicy, active: Option<&str>) -> BackupPolicyStatus {
    let mut s = settled(p, t("2026-11-29T02:05:00Z"), |i| {
        i.active_job = active.map(str::to_string);
        i.last_schedule_time = Some(t("2026-11-29T02:00:00Z"));
        i.next_schedule_time = Some(t("2026-11-30T02:00:00Z"));
    });
    s.last_successful_snapshot = Some("20261128T020002Z".into());
    s.last_success_time = Some(arca_api::crd::Timestamp::new(t("2026-11-28T02:00:02Z")));
    s
}

const VERIFY_OK_RESULT: &str = r#"{"format":"arca-result/1","command":"verify","policy":"p","ok":true,"snapshot":"20261129T020002Z","startedAt":"2026-11-29T06:00:02Z","completedAt":"2026-11-29T06:07:00Z"}"#;
const VERIFY_FAILED_RESULT: &str = r#"{"format":"arca-result/1","command":"verify","policy":"p","ok":false,"snapshot":"20261129T020002Z","startedAt":"2026-11-29T06:00:02Z","completedAt":"2026-11-29T06:01:00Z","error":"arca: verify of policy \"p\" failed: 20261129T020002Z at offsite: docs: sha256 of the stored object differs from the manifest"}"#;

#[tokio::test]
async fn a_due_verification_creates_the_verify_job_with_the_identity() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-29T06:00:00.300Z");
    let base = policy(verify_spec(), None);
    let p = policy(verify_spec(), Some(sunday_status(&base, None)));
    let server = fake.run(vec![
        // What the verify Job mounts: the S3 credentials and the age identity (metadata).
        Call::get(&format!("{NS}/secrets/s3"))
            .accept("PartialObjectMetadata")
            .respond(&secret_meta("s3")),
        Call::get(&format!("{NS}/secrets/age"))
            .accept("PartialObjectMetadata")
            .respond(&secret_meta("age")),
        Call::patch(&format!("{NS}/configmaps/arca-p"))
            .check(|b| {
                let restore = b["data"]["restore.yaml"].as_str().unwrap();
                assert!(
                    restore.contains("ageIdentityFile: /run/secrets/arca/age/key.txt"),
                    "{restore}"
                );
                let backup = b["data"]["backup.yaml"].as_str().unwrap();
                assert!(!backup.contains("ageIdentity"), "{backup}");
            })
            .echo(),
        Call::post(JOBS)
            .check(|b| {
                assert_eq!(b["metadata"]["name"], "p-verify-202611290600");
                assert_eq!(
                    b["metadata"]["labels"]["app.kubernetes.io/component"],
                    "verify"
                );
                assert_eq!(
                    b["metadata"]["annotations"]["arca.dev/scheduled-time"],
                    "2026-11-29T06:00:00Z"
                );
                let pod = &b["spec"]["template"]["spec"];
                let c = &pod["containers"][0];
                let args: Vec<&str> = c["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect();
                assert_eq!(
                    args.join(" "),
                    "verify --config /etc/arca/job.yaml --snapshot latest --deep --result-file /dev/termination-log"
                );
                let volumes = pod["volumes"].as_array().unwrap();
                let identity = volumes
                    .iter()
                    .find(|v| v["secret"]["secretName"] == "age")
                    .expect("identity volume");
                assert_eq!(identity["secret"]["items"][0]["key"], "key.txt");
                let mount = c["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["name"] == identity["name"])
                    .unwrap();
                assert_eq!(mount["readOnly"], true);
                // The live data is never mounted.
                assert!(volumes.iter().all(|v| v["persistentVolumeClaim"].is_null()));
                assert_eq!(pod["automountServiceAccountToken"], false);
                assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
            })
            .echo(),
        event("VerifyStarted", "Normal"),
    ]);
    let ctx = context(client, now, vec![]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(600)));
}

#[tokio::test]
async fn a_passed_verification_is_recorded_with_an_event_and_metrics() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-29T06:10:00Z");
    let base = policy(verify_spec(), None);
    let p = policy(verify_spec(), Some(sunday_status(&base, None)));
    let server = fake.run(vec![
        Call::get(&format!("{NS}/pods"))
            .query("labelSelector=arca.dev/job=p-verify-202611290600")
            .respond(&pod_list(0, VERIFY_OK_RESULT)),
        status_patch(&p, |s| {
            let v = &s["lastVerification"];
            assert_eq!(v["job"], "p-verify-202611290600");
            assert_eq!(v["ok"], true);
            assert_eq!(v["deep"], true);
            assert_eq!(v["snapshot"], "20261129T020002Z");
            assert_eq!(v["scheduledTime"], "2026-11-29T06:00:00Z");
            assert_eq!(v["time"], "2026-11-29T06:07:00Z");
            assert!(v["message"].as_str().unwrap().contains("verified"), "{v}");
            assert_eq!(s["lastSuccessfulVerificationTime"], "2026-11-29T06:07:00Z");
            let c = condition(s, "VerifySucceeded");
            assert_eq!(
                (&c["status"], &c["reason"]),
                (&json!("True"), &json!("Succeeded"))
            );
            assert_eq!(condition(s, "Ready")["status"], "True");
            // A verification is not a backup run.
            assert!(s["recentRuns"].is_null());
            assert!(s["activeJob"].is_null());
        }),
        Call::patch(&format!("{JOBS}/p-verify-202611290600"))
            .check(|b| assert_eq!(b["metadata"]["annotations"]["arca.dev/recorded"], "true"))
            .echo(),
        event("VerifySucceeded", "Normal"),
    ]);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let ctx = context_with(
        client,
        now,
        vec![verify_job("Complete")],
        test_settings(),
        metrics,
    );
    let result = run(&ctx, &p).await;
    finish(server).await;
    result.unwrap();
    let text = crate::metrics::encode(&registry).unwrap();
    for line in [
        "arca_verify_last_run_success{namespace=\"clinic\",policy=\"p\"} 1",
        "arca_verify_last_success_timestamp_seconds{namespace=\"clinic\",policy=\"p\"} 1795932420.0",
        "arca_verify_runs_total{namespace=\"clinic\",policy=\"p\",result=\"succeeded\"} 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn a_failed_verification_is_reported_with_its_error() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-29T06:10:00Z");
    let base = policy(verify_spec(), None);
    let p = policy(verify_spec(), Some(sunday_status(&base, None)));
    let server = fake.run(vec![
        Call::get(&format!("{NS}/pods")).respond(&pod_list(1, VERIFY_FAILED_RESULT)),
        status_patch(&p, |s| {
            let c = condition(s, "VerifySucceeded");
            assert_eq!(
                (&c["status"], &c["reason"]),
                (&json!("False"), &json!("Failed"))
            );
            assert!(
                c["message"]
                    .as_str()
                    .unwrap()
                    .contains("sha256 of the stored object"),
                "{c}"
            );
            assert_eq!(s["lastVerification"]["ok"], false);
            assert!(s["lastSuccessfulVerificationTime"].is_null());
            // The backups are fine.
            assert_eq!(condition(s, "Ready")["status"], "True");
            assert_eq!(s["state"], "Pending");
        }),
        Call::patch(&format!("{JOBS}/p-verify-202611290600")).echo(),
        Call::post(EVENTS)
            .check(|b| {
                assert_eq!(b["reason"], "VerifyFailed");
                assert_eq!(b["type"], "Warning");
                assert!(b["note"]
                    .as_str()
                    .unwrap()
                    .contains("sha256 of the stored object"));
            })
            .echo(),
    ]);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let ctx = context_with(
        client,
        now,
        vec![verify_job("Failed")],
        test_settings(),
        metrics,
    );
    let result = run(&ctx, &p).await;
    finish(server).await;
    result.unwrap();
    let text = crate::metrics::encode(&registry).unwrap();
    assert!(
        text.contains("arca_verify_last_run_success{namespace=\"clinic\",policy=\"p\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn verify_without_the_identity_is_not_ready_but_backups_still_run() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T02:00:00.400Z");
    let mut spec = verify_spec();
    spec.encryption.as_mut().unwrap().age_identity_secret_ref = None;
    let p = policy(spec, None);
    let mut calls = reference_checks("ReadWriteMany");
    calls.extend([
        Call::patch(&format!("{NS}/configmaps/arca-p")).echo(),
        Call::post(JOBS)
            .check(|b| {
                assert_eq!(b["metadata"]["name"], "p-202611230200");
                assert_eq!(
                    b["spec"]["template"]["spec"]["containers"][0]["args"][0],
                    "backup"
                );
            })
            .echo(),
        status_patch(&p, |s| {
            let c = condition(s, "Ready");
            assert_eq!(c["status"], "False");
            assert_eq!(c["reason"], "VerifyNeedsIdentity");
            let m = c["message"].as_str().unwrap();
            assert!(m.contains("add encryption.ageIdentitySecretRef"), "{m}");
            assert!(m.contains("backups still run"), "{m}");
            assert_eq!(s["state"], "Running");
            assert_eq!(s["activeJob"], "p-202611230200");
            assert_eq!(s["nextScheduleTime"], "2026-11-24T02:00:00Z");
            assert_eq!(condition(s, "VerifySucceeded")["status"], "Unknown");
        }),
        event("Invalid", "Warning"),
        event("BackupStarted", "Normal"),
    ]);
    let server = fake.run(calls);
    let ctx = context(client, now, vec![]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(600)));
}

#[tokio::test]
async fn a_missing_identity_secret_stops_verifications_only() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-29T06:00:00Z");
    let base = policy(verify_spec(), None);
    let p = policy(verify_spec(), Some(sunday_status(&base, None)));
    let server = fake.run(vec![
        Call::get(&format!("{NS}/secrets/s3")).respond(&secret_meta("s3")),
        Call::get(&format!("{NS}/secrets/age")).not_found(),
        status_patch(&p, |s| {
            let c = condition(s, "Ready");
            assert_eq!(c["reason"], "MissingReference");
            let m = c["message"].as_str().unwrap();
            assert!(
                m.contains("Secret \"age\" (encryption.ageIdentitySecretRef) does not exist"),
                "{m}"
            );
            assert!(m.contains("backups still run"), "{m}");
            assert_eq!(s["nextScheduleTime"], "2026-11-30T02:00:00Z");
        }),
        event("Invalid", "Warning"),
    ]);
    let ctx = context(client, now, vec![]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    // Looked at again soon: nothing watches Secrets.
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(60)));
}

#[tokio::test]
async fn a_due_verification_waits_for_the_running_backup() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-29T06:00:00Z");
    let base = policy(verify_spec(), None);
    let p = policy(
        verify_spec(),
        Some(sunday_status(&base, Some("p-202611290200"))),
    );
    let server = fake.run(vec![]);
    let running = job(
        "p-202611290200",
        "Active",
        Some("2026-11-29T02:00:00Z"),
        json!({}),
    );
    let ctx = context(client, now, vec![running]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    // The backup Job's end wakes the policy; this is the safety net.
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(600)));
}

#[tokio::test]
async fn a_due_backup_waits_for_the_running_verification_then_runs() {
    // 1. Monday 02:00: the verify Job still runs; nothing is started.
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-30T02:00:00.200Z");
    let base = policy(verify_spec(), None);
    let p = policy(verify_spec(), Some(sunday_status(&base, None)));
    let server = fake.run(vec![status_patch(&p, |s| {
        assert!(s["activeJob"].is_null());
        assert_eq!(s["lastScheduleTime"], "2026-11-29T02:00:00Z");
    })]);
    let ctx = context(client, now, vec![verify_job("Active")]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(600)));

    // 2. 02:20: the verification passed; it is recorded and the 02:00 backup starts.
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-30T02:20:00Z");
    let mut calls = vec![Call::get(&format!("{NS}/pods"))
        .query("labelSelector=arca.dev/job=p-verify-202611290600")
        .respond(&pod_list(0, VERIFY_OK_RESULT))];
    calls.extend(reference_checks("ReadWriteMany"));
    calls.extend([
        Call::patch(&format!("{NS}/configmaps/arca-p")).echo(),
        Call::post(JOBS)
            .check(|b| assert_eq!(b["metadata"]["name"], "p-202611300200"))
            .echo(),
        // Only what the verify Job adds to the backup's references.
        Call::get(&format!("{NS}/secrets/age")).respond(&secret_meta("age")),
        status_patch(&p, |s| {
            assert_eq!(s["activeJob"], "p-202611300200");
            assert_eq!(s["lastVerification"]["ok"], true);
            assert_eq!(condition(s, "VerifySucceeded")["status"], "True");
        }),
        Call::patch(&format!("{JOBS}/p-verify-202611290600")).echo(),
        event("VerifySucceeded", "Normal"),
        event("BackupStarted", "Normal"),
    ]);
    let server = fake.run(calls);
    let ctx = context(client, now, vec![verify_job("Complete")]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    result.unwrap();
}

#[tokio::test]
async fn no_verification_before_the_first_good_backup() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-29T06:00:00Z");
    let base = policy(verify_spec(), None);
    let mut status = sunday_status(&base, None);
    status.last_successful_snapshot = None;
    status.last_success_time = None;
    let p = policy(verify_spec(), Some(status));
    // Nothing is checked, created or written.
    let server = fake.run(vec![]);
    let ctx = context(client, now, vec![]);
    let result = run(&ctx, &p).await;
    finish(server).await;
    // Woken to prepare Monday's backup; its success lets the verification run.
    assert_eq!(
        result.unwrap(),
        Action::requeue(Duration::from_secs(20 * 3600 - 10))
    );
}
