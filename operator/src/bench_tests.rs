//! Load check without a cluster (ignored by default; run with
//! `cargo test -p arca-operator --release -- --ignored --nocapture thousand`): the real
//! watch/controller wiring against an in-process fake API server holding 1,000
//! BackupPolicies that are all due at the same minute. Reports peak RSS (VmHWM of the
//! test process) and the delay between the scheduled time and each Job's creation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::http::{Method, Request, Response};
use chrono::{TimeDelta, Timelike, Utc};
use kube::client::Body;
use kube::Client;
use serde_json::json;
use tokio::sync::watch;

use crate::config::JobSettings;
use crate::manager::{run_scope, Shared};
use crate::metrics::Metrics;
use crate::testdata;

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load check, takes up to two minutes"]
async fn thousand_policies() {
    const N: usize = 1000;
    let now = Utc::now();
    // Due at the start of the next minute (at least 20 s away, so all are reconciled first).
    let mut due = now.with_second(0).unwrap().with_nanosecond(0).unwrap() + TimeDelta::minutes(1);
    if due - now < TimeDelta::seconds(20) {
        due += TimeDelta::minutes(1);
    }
    let schedule = format!("{} {} * * *", due.minute(), due.hour());
    let policies: Vec<serde_json::Value> = (0..N)
        .map(|i| {
            let mut spec = testdata::simple_spec();
            spec.schedule = Some(schedule.clone());
            spec.rpo = Some("26h".parse().unwrap());
            let mut p = testdata::policy(&format!("bench-{i}"), spec);
            p.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::from_second(now.timestamp() - 3600).unwrap(),
                ));
            p.metadata.uid = Some(format!("uid-bench-{i}"));
            serde_json::to_value(p).unwrap()
        })
        .collect();
    let by_name: std::collections::HashMap<String, serde_json::Value> = policies
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p.clone(),
            )
        })
        .collect();
    let created: Arc<Mutex<Vec<f64>>> = Arc::default();

    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let seen = created.clone();
    let policies = Arc::new(policies);
    let by_name = Arc::new(by_name);
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            // Answer concurrently, like an API server, so the fake is not the bottleneck.
            let (policies, by_name, seen) = (policies.clone(), by_name.clone(), seen.clone());
            tokio::spawn(async move {
                let path = request.uri().path().to_string();
                let query = request.uri().query().unwrap_or_default().to_string();
                let method = request.method().clone();
                let body = request.into_body().collect_bytes().await.unwrap();
                let reply = |code: u16, v: &serde_json::Value| {
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(v).unwrap()))
                        .unwrap()
                };
                if query.contains("watch=true") {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(290)).await;
                        send.send_response(reply(200, &json!({})));
                    });
                    return;
                }
                let list = |kind: &str, items: &[serde_json::Value]| json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "100"}, "items": items});
                let response = match (method, path.as_str()) {
                    (Method::GET, "/apis/arca.dev/v1alpha1/backuppolicies") => {
                        reply(200, &list("BackupPolicyList", &policies))
                    }
                    (Method::GET, "/apis/arca.dev/v1alpha1/restorerequests") => {
                        reply(200, &list("RestoreRequestList", &[]))
                    }
                    (Method::GET, "/apis/batch/v1/jobs") => reply(200, &list("JobList", &[])),
                    (Method::GET, p) if p.contains("/secrets/") => reply(
                        200,
                        &json!({
                    "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": {"name": "s3"}}),
                    ),
                    (Method::GET, p) if p.contains("/persistentvolumeclaims/") => reply(
                        200,
                        &json!({
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "docs"},
                    "spec": {"accessModes": ["ReadWriteMany"]}}),
                    ),
                    (Method::PATCH, p) if p.ends_with("/status") => {
                        let name = p.split('/').nth_back(1).unwrap();
                        let mut obj = by_name[name].clone();
                        let patch: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        obj["status"] = patch["status"].clone();
                        reply(200, &obj)
                    }
                    (Method::POST, "/apis/batch/v1/namespaces/clinic/jobs") => {
                        let delay = (Utc::now() - due).num_milliseconds() as f64 / 1000.0;
                        seen.lock().unwrap().push(delay);
                        let mut job: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        job["metadata"]["uid"] = json!("uid-job");
                        reply(201, &job)
                    }
                    (Method::PATCH, p) if p.contains("/configmaps/") => {
                        reply(200, &serde_json::from_slice(&body).unwrap())
                    }
                    (Method::POST, p) if p.contains("/events") => {
                        reply(201, &serde_json::from_slice(&body).unwrap())
                    }
                    (m, p) => panic!("unexpected {m} {p}?{query}"),
                };
                send.send_response(response);
            });
        }
    });

    let shared = Shared {
        client,
        settings: JobSettings::default(),
        metrics: Metrics::default(),
        identity: "bench".into(),
        concurrency: 32,
        clock: Arc::new(Utc::now),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let scope = tokio::spawn(run_scope(shared, None, stop_rx, || {}));
    let deadline = due + TimeDelta::seconds(30);
    while Utc::now() < deadline && created.lock().unwrap().len() < N {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut delays = created.lock().unwrap().clone();
    stop_tx.send(true).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), scope).await;
    delays.sort_by(f64::total_cmp);
    assert_eq!(delays.len(), N, "every due policy got its Job");
    let p = |q: f64| delays[((delays.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{N} policies, all due at {due}: Job created after p50 {:.2}s, p99 {:.2}s, max {:.2}s; peak RSS {:.1} MiB",
        p(0.5),
        p(0.99),
        delays[delays.len() - 1],
        peak_rss_kib() as f64 / 1024.0
    );
}
