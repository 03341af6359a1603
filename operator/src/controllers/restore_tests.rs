//! RestoreRequest reconcile flows against a scripted fake API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use arca_api::crd::{
    BackupPolicy, PolicyRef, RestorePhase, RestoreRequest, RestoreRequestSpec,
    RestoreRequestStatus, Timestamp,
};
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::{reflector, watcher};
use serde_json::{json, Value};

use super::reconcile;
use crate::config::JobSettings;
use crate::controllers::Context;
use crate::error::Error;
use crate::fixtures::{Call, FakeApi};
use crate::metrics::Metrics;
use crate::testdata;

const NS: &str = "/api/v1/namespaces/clinic";
const RR_STATUS: &str = "/apis/arca.dev/v1alpha1/namespaces/clinic/restorerequests/r/status";
const JOBS: &str = "/apis/batch/v1/namespaces/clinic/jobs";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/clinic/events";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn context(
    client: kube::Client,
    now: DateTime<Utc>,
    jobs: Vec<Job>,
    policies: Vec<BackupPolicy>,
) -> Arc<Context> {
    context_with_settings(
        client,
        now,
        jobs,
        policies,
        JobSettings {
            image: "arca:test".into(),
            ..Default::default()
        },
    )
}

fn context_with_settings(
    client: kube::Client,
    now: DateTime<Utc>,
    jobs: Vec<Job>,
    policies: Vec<BackupPolicy>,
    settings: JobSettings,
) -> Arc<Context> {
    let (job_store, mut job_writer) = reflector::store::<Job>();
    for j in jobs {
        job_writer.apply_watcher_event(&watcher::Event::Apply(j));
    }
    let (policy_store, mut policy_writer) = reflector::store::<DeserializeGuard<BackupPolicy>>();
    for p in policies {
        policy_writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(p))));
    }
    Arc::new(Context::new(
        client,
        settings,
        Metrics::default(),
        Context::reporter("test"),
        job_store,
        policy_store,
        Arc::new(move || now),
    ))
}

fn spec() -> RestoreRequestSpec {
    RestoreRequestSpec {
        policy_ref: PolicyRef { name: "p".into() },
        safety_backup: true,
        ..Default::default()
    }
}

fn request(spec: RestoreRequestSpec, status: Option<RestoreRequestStatus>) -> RestoreRequest {
    let mut r = testdata::restore_request("r", spec);
    r.status = status;
    r
}

fn policy() -> BackupPolicy {
    testdata::policy("p", testdata::simple_spec())
}

async fn run(ctx: &Arc<Context>, r: &RestoreRequest) -> Result<Action, Error> {
    tokio::time::timeout(
        Duration::from_secs(10),
        reconcile(Arc::new(DeserializeGuard(Ok(r.clone()))), ctx.clone()),
    )
    .await
    .expect("reconcile finished")
}

fn status_patch(r: &RestoreRequest, check: impl FnOnce(&Value) + Send + 'static) -> Call {
    Call::patch(RR_STATUS)
        .query("fieldManager=arca-operator")
        .check(move |b| check(&b["status"]))
        .merged_into(r)
}

fn event(reason: &'static str) -> Call {
    Call::post(EVENTS)
        .check(move |b| assert_eq!(b["reason"], reason, "{b}"))
        .echo()
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {status}"))
}

fn restore_job(state: &str) -> Job {
    let conditions = match state {
        "Complete" => json!([{"type": "Complete", "status": "True"}]),
        "Failed" => json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]),
        _ => json!([]),
    };
    serde_json::from_value(json!({
        "metadata": {
            "name": "r-restore", "namespace": "clinic", "uid": "uid-job",
            "creationTimestamp": "2026-11-23T08:00:01Z",
            "labels": {"arca.dev/policy": "p", "arca.dev/restore": "r",
                       "app.kubernetes.io/managed-by": "arca-operator"},
            "ownerReferences": [{"apiVersion": "arca.dev/v1alpha1", "kind": "RestoreRequest",
                                 "name": "r", "uid": "uid-r", "controller": true}]
        },
        "spec": {"template": {}},
        "status": {"startTime": "2026-11-23T08:00:02Z", "conditions": conditions}
    }))
    .unwrap()
}

fn running() -> RestoreRequestStatus {
    RestoreRequestStatus {
        phase: Some(RestorePhase::Running),
        observed_generation: Some(1),
        job_name: Some("r-restore".into()),
        job_uid: Some("uid-job".into()),
        start_time: Some(Timestamp::new(t("2026-11-23T08:00:00Z"))),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_new_request_records_its_intent_then_creates_one_job() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T08:00:00Z");
    let r = request(spec(), None);
    let server = fake.run(vec![
        Call::get(&format!("{NS}/secrets/s3"))
            .accept("PartialObjectMetadata")
            .respond(&json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                             "metadata": {"name": "s3", "namespace": "clinic"}})),
        Call::get(&format!("{NS}/persistentvolumeclaims/docs")).respond(&json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "docs", "namespace": "clinic"},
            "spec": {"accessModes": ["ReadWriteMany"]}})),
        status_patch(&r, |s| {
            assert_eq!(s["phase"], "Running");
            assert_eq!(s["jobName"], "r-restore");
            assert!(s["jobUid"].is_null());
            assert_eq!(s["startTime"], "2026-11-23T08:00:00Z");
        }),
        Call::patch(&format!("{NS}/configmaps/arca-p")).echo(),
        Call::post(JOBS)
            .check(|b| {
                let args: Vec<&str> = b["spec"]["template"]["spec"]["containers"][0]["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect();
                assert_eq!(
                    args.join(" "),
                    "restore --config /etc/arca/job.yaml --policy p --snapshot latest --result-file /dev/termination-log"
                );
                assert_eq!(b["metadata"]["labels"]["arca.dev/policy"], "p");
                assert_eq!(b["metadata"]["ownerReferences"][0]["kind"], "RestoreRequest");
                let mounts = &b["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
                let docs = mounts.as_array().unwrap().iter().find(|m| m["mountPath"] == "/sources/docs").unwrap();
                assert_eq!(docs["readOnly"], false);
            })
            .echo(),
        status_patch(&r, |s| {
            assert_eq!(s["jobUid"], "uid-r-restore");
            assert_eq!(condition(s, "Succeeded")["status"], "Unknown");
        }),
        event("RestoreStarted"),
    ]);
    let ctx = context(client, now, vec![], vec![policy()]);
    let result = run(&ctx, &r).await;
    server.done().await;
    assert_eq!(result.unwrap(), Action::await_change());
}

#[tokio::test]
async fn a_finished_request_never_gets_another_job() {
    let now = t("2026-11-24T08:00:00Z");
    for phase in [RestorePhase::Succeeded, RestorePhase::Failed] {
        let status = RestoreRequestStatus {
            phase: Some(phase),
            completion_time: Some(Timestamp::new(t("2026-11-23T08:05:00Z"))),
            ..running()
        };
        // Its Job is gone (TTL), or still there: either way, nothing is sent.
        for jobs in [vec![], vec![restore_job("Complete")]] {
            let (client, fake) = FakeApi::new();
            let r = request(spec(), Some(status.clone()));
            let server = fake.run(vec![]);
            let ctx = context(client, now, jobs, vec![policy()]);
            let result = run(&ctx, &r).await;
            // A GitOps tool re-applying the same spec triggers another reconcile.
            let again = run(&ctx, &r).await;
            server.done().await;
            assert_eq!(result.unwrap(), Action::await_change());
            assert_eq!(again.unwrap(), Action::await_change());
        }
    }
}

#[tokio::test]
async fn a_running_request_whose_job_vanished_fails_instead_of_rerunning() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T09:00:00Z");
    let r = request(spec(), Some(running()));
    let server = fake.run(vec![
        Call::get(&format!("{JOBS}/r-restore")).not_found(),
        status_patch(&r, |s| {
            assert_eq!(s["phase"], "Failed");
            let c = condition(s, "Succeeded");
            assert_eq!(c["status"], "False");
            assert_eq!(c["reason"], "JobLost");
            assert_eq!(s["completionTime"], "2026-11-23T09:00:00Z");
        }),
        event("RestoreFailed"),
    ]);
    let ctx = context(client, now, vec![], vec![policy()]);
    let result = run(&ctx, &r).await;
    server.done().await;
    assert_eq!(result.unwrap(), Action::await_change());
}

#[tokio::test]
async fn an_interrupted_start_creates_the_job_it_recorded() {
    // The intent (phase Running, jobName) was written, then the operator stopped before
    // creating the Job: no uid was recorded, so the Job never existed. Create it once.
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T08:00:30Z");
    let status = RestoreRequestStatus {
        job_uid: None,
        ..running()
    };
    let r = request(spec(), Some(status));
    let server = fake.run(vec![
        Call::get(&format!("{JOBS}/r-restore")).not_found(),
        Call::get(&format!("{NS}/secrets/s3")).respond(&json!({"apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata", "metadata": {"name": "s3"}})),
        Call::get(&format!("{NS}/persistentvolumeclaims/docs")).respond(&json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "docs"},
            "spec": {"accessModes": ["ReadWriteMany"]}})),
        status_patch(&r, |s| assert_eq!(s["startTime"], "2026-11-23T08:00:00Z")),
        Call::patch(&format!("{NS}/configmaps/arca-p")).echo(),
        Call::post(JOBS).echo(),
        status_patch(&r, |s| assert_eq!(s["jobUid"], "uid-r-restore")),
        event("RestoreStarted"),
    ]);
    let ctx = context(client, now, vec![], vec![policy()]);
    let result = run(&ctx, &r).await;
    server.done().await;
    result.unwrap();
}

#[tokio::test]
async fn never_adopts_a_job_of_another_owner() {
    // A Job with the request's Job name exists but belongs to someone else (say, a deleted
    // request of the same name whose Job is still being garbage-collected).
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T08:00:00Z");
    let r = request(spec(), None);
    let foreign = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "r-restore", "namespace": "clinic", "uid": "uid-old",
                     "ownerReferences": [{"apiVersion": "arca.dev/v1alpha1", "kind": "RestoreRequest",
                                          "name": "r", "uid": "uid-old-r", "controller": true}]},
        "spec": {"template": {}}});
    let server = fake.run(vec![
        Call::get(&format!("{NS}/secrets/s3")).respond(&json!({"apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata", "metadata": {"name": "s3"}})),
        Call::get(&format!("{NS}/persistentvolumeclaims/docs")).respond(&json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "docs"},
            "spec": {"accessModes": ["ReadWriteMany"]}})),
        status_patch(&r, |s| assert_eq!(s["phase"], "Running")),
        Call::patch(&format!("{NS}/configmaps/arca-p")).echo(),
        Call::post(JOBS).status(409, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": "AlreadyExists", "code": 409, "message": "jobs.batch \"r-restore\" already exists"})),
        Call::get(&format!("{JOBS}/r-restore")).respond(&foreign),
        status_patch(&r, |s| {
            assert_eq!(s["phase"], "Pending");
            assert!(s["jobUid"].is_null());
            assert!(condition(s, "Ready")["message"].as_str().unwrap().contains("does not belong"));
        }),
        event("Invalid"),
    ]);
    let ctx = context(client, now, vec![], vec![policy()]);
    let result = run(&ctx, &r).await;
    server.done().await;
    assert!(result.unwrap_err().is_transient());
}

#[tokio::test]
async fn a_successful_restore_reports_snapshot_safety_snapshot_and_components() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T08:10:00Z");
    let r = request(spec(), Some(running()));
    let message = r#"{"format":"arca-result/1","command":"restore","policy":"p","ok":true,"snapshot":"20261123T020002Z","safetySnapshot":"20261123T080005Z","startedAt":"2026-11-23T08:00:03Z","completedAt":"2026-11-23T08:09:00Z","bytes":1048576,"components":[{"name":"docs","ok":true,"bytes":1048576,"durationSeconds":530.4}]}"#;
    let server = fake.run(vec![
        Call::get(&format!("{NS}/pods"))
            .query("labelSelector=arca.dev/job=r-restore")
            .respond(
                &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
                "metadata": {"name": "r-restore-abcde"},
                "status": {"containerStatuses": [{"name": "arca", "image": "arca", "imageID": "",
                    "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "message": message}}}]}}]}),
            ),
        status_patch(&r, |s| {
            assert_eq!(s["phase"], "Succeeded");
            assert_eq!(s["snapshot"], "20261123T020002Z");
            assert_eq!(s["safetySnapshot"], "20261123T080005Z");
            assert_eq!(s["components"][0]["name"], "docs");
            assert_eq!(s["components"][0]["ok"], true);
            assert_eq!(s["components"][0]["durationSeconds"], 530);
            assert_eq!(s["completionTime"], "2026-11-23T08:09:00Z");
            assert_eq!(condition(s, "Succeeded")["status"], "True");
        }),
        event("RestoreSucceeded"),
    ]);
    let ctx = context(client, now, vec![restore_job("Complete")], vec![policy()]);
    let result = run(&ctx, &r).await;
    server.done().await;
    assert_eq!(result.unwrap(), Action::await_change());
}

#[tokio::test]
async fn a_failed_restore_scales_the_workloads_back_first() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T08:10:00Z");
    let mut s = spec();
    s.scale_down = Some(vec![arca_api::WorkloadRef {
        kind: "StatefulSet".into(),
        name: "db".into(),
    }]);
    let r = request(s, Some(running()));
    let sts = |replicas: i32, annotations: Value| {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
               "metadata": {"name": "db", "namespace": "clinic", "annotations": annotations},
               "spec": {"replicas": replicas, "serviceName": "db",
                        "selector": {"matchLabels": {"app": "db"}}, "template": {}}})
    };
    let path = "/apis/apps/v1/namespaces/clinic/statefulsets/db";
    let server = fake.run(vec![
        Call::get(path).respond(&sts(
            0,
            json!({"arca.dev/original-replicas": "1",
            "arca.dev/quiesced-by": "RestoreRequest/r", "arca.dev/quiesce-job": "r-restore"}),
        )),
        Call::patch(&format!("{path}/scale"))
            .check(|b| assert_eq!(b["spec"]["replicas"], 1))
            .respond(&json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                             "metadata": {"name": "db"}, "spec": {"replicas": 1}})),
        Call::patch(path).respond(&sts(1, json!({}))),
        event("ScaledUp"),
        Call::get(&format!("{NS}/pods"))
            .respond(&json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []})),
        status_patch(&r, |s| {
            assert_eq!(s["phase"], "Failed");
            assert_eq!(condition(s, "Succeeded")["reason"], "Failed");
        }),
        event("RestoreFailed"),
    ]);
    let ctx = context(client, now, vec![restore_job("Failed")], vec![policy()]);
    let result = run(&ctx, &r).await;
    server.done().await;
    result.unwrap();
}

#[tokio::test]
async fn an_invalid_request_fails_for_good() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T08:00:00Z");
    let mut s = spec();
    s.components = vec!["nope".into()];
    let r = request(s, None);
    let server = fake.run(vec![
        status_patch(&r, |s| {
            assert_eq!(s["phase"], "Failed");
            let c = condition(s, "Ready");
            assert_eq!(c["reason"], "InvalidSpec");
            assert!(
                c["message"]
                    .as_str()
                    .unwrap()
                    .contains("no component \"nope\""),
                "{c}"
            );
        }),
        event("Invalid"),
    ]);
    let ctx = context(client, now, vec![], vec![policy()]);
    let result = run(&ctx, &r).await;
    server.done().await;
    assert!(matches!(result, Err(Error::InvalidSpec(_))));
}

#[tokio::test]
async fn waits_for_a_running_backup_of_the_policy() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T08:00:00Z");
    let r = request(spec(), None);
    let backup: Job = serde_json::from_value(json!({
        "metadata": {"name": "p-202611230800", "namespace": "clinic",
                     "labels": {"arca.dev/policy": "p"},
                     "ownerReferences": [{"apiVersion": "arca.dev/v1alpha1", "kind": "BackupPolicy",
                                          "name": "p", "uid": "uid-p", "controller": true}]},
        "spec": {"template": {}}, "status": {}
    }))
    .unwrap();
    let server = fake.run(vec![status_patch(&r, |s| {
        assert_eq!(s["phase"], "Pending");
        let c = condition(s, "Succeeded");
        assert_eq!(c["reason"], "WaitingForJob");
        assert!(c["message"].as_str().unwrap().contains("p-202611230800"));
    })]);
    let ctx = context(client, now, vec![backup], vec![policy()]);
    let result = run(&ctx, &r).await;
    server.done().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(15)));
}

#[tokio::test]
async fn a_missing_policy_keeps_the_request_pending() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T08:00:00Z");
    let r = request(spec(), None);
    let server = fake.run(vec![
        status_patch(&r, |s| {
            assert_eq!(s["phase"], "Pending");
            let c = condition(s, "Ready");
            assert_eq!(c["reason"], "MissingReference");
            assert!(c["message"]
                .as_str()
                .unwrap()
                .contains("BackupPolicy \"p\" does not exist"));
        }),
        event("Invalid"),
    ]);
    let ctx = context(client, now, vec![], vec![]);
    let result = run(&ctx, &r).await;
    server.done().await;
    let err = result.unwrap_err();
    assert!(err.is_transient());
}

#[tokio::test]
async fn waits_for_a_running_verification_of_the_policy() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T08:00:00Z");
    let r = request(spec(), None);
    let verify: Job = serde_json::from_value(json!({
        "metadata": {"name": "p-verify-202611230600", "namespace": "clinic",
                     "labels": {"arca.dev/policy": "p", "app.kubernetes.io/component": "verify"},
                     "ownerReferences": [{"apiVersion": "arca.dev/v1alpha1", "kind": "BackupPolicy",
                                          "name": "p", "uid": "uid-p", "controller": true}]},
        "spec": {"template": {}}, "status": {}
    }))
    .unwrap();
    let server = fake.run(vec![status_patch(&r, |s| {
        assert_eq!(s["phase"], "Pending");
        let c = condition(s, "Succeeded");
        assert_eq!(c["reason"], "WaitingForJob");
        assert!(c["message"]
            .as_str()
            .unwrap()
            .contains("p-verify-202611230600"));
    })]);
    let ctx = context(client, now, vec![verify], vec![policy()]);
    let result = run(&ctx, &r).await;
    server.done().await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(15)));
}

#[tokio::test]
async fn a_missing_job_service_account_keeps_the_request_pending() {
    let (client, fake) = FakeApi::new();
    let now = t("2026-11-23T08:00:00Z");
    let r = request(spec(), None);
    let server = fake.run(vec![
        Call::get(&format!("{NS}/serviceaccounts/arca-job"))
            .accept("PartialObjectMetadata")
            .not_found(),
        Call::get(&format!("{NS}/secrets/s3")).respond(
            &json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                             "metadata": {"name": "s3", "namespace": "clinic"}}),
        ),
        Call::get(&format!("{NS}/persistentvolumeclaims/docs")).respond(&json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "docs", "namespace": "clinic"},
            "spec": {"accessModes": ["ReadWriteMany"]}})),
        status_patch(&r, |s| {
            assert_eq!(s["phase"], "Pending");
            assert!(s["jobName"].is_null());
            let c = condition(s, "Ready");
            assert_eq!(c["reason"], "MissingReference");
            let m = c["message"].as_str().unwrap();
            assert!(
                m.contains("ServiceAccount \"arca-job\"")
                    && m.contains("kubectl apply -n clinic -f manifests/job-serviceaccount.yaml"),
                "{m}"
            );
        }),
        event("Invalid"),
    ]);
    let settings = JobSettings {
        image: "arca:test".into(),
        service_account: Some("arca-job".into()),
        ..Default::default()
    };
    let ctx = context_with_settings(client, now, vec![], vec![policy()], settings);
    let result = run(&ctx, &r).await;
    server.done().await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::MissingReference(_)), "{err}");
    assert!(err.is_transient());
}
