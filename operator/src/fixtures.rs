//! A scripted fake API server for controller tests (tower-test, as kube-rs/controller-rs
//! does in `src/fixtures.rs`): each scenario lists the exact requests it expects, in
//! order, with checks on their bodies and the responses to send. Any other request fails
//! the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tower_test::mock::{self, Handle};

type Check = Box<dyn FnOnce(&Value) + Send>;
/// The test side of the mocked connection.
type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// How the fake server answers one request.
enum Reply {
    /// This status and body.
    Json(u16, Value),
    /// The request body back (with a uid and resourceVersion added), 201 for POST.
    Echo,
    /// `base` with the request body's top-level fields (status, spec...) merged in.
    Merged(Value),
}

/// One expected request.
pub struct Call {
    method: Method,
    path: String,
    query: Vec<String>,
    accept: Option<String>,
    check: Option<Check>,
    reply: Reply,
}

impl Call {
    fn new(method: Method, path: &str) -> Self {
        Self {
            method,
            path: path.to_string(),
            query: Vec::new(),
            accept: None,
            check: None,
            reply: Reply::Json(200, json!({})),
        }
    }

    /// Expect a GET of `path`.
    pub fn get(path: &str) -> Self {
        Self::new(Method::GET, path)
    }

    /// Expect a POST to `path`.
    pub fn post(path: &str) -> Self {
        Self::new(Method::POST, path)
    }

    /// Expect a PUT to `path`.
    pub fn put(path: &str) -> Self {
        Self::new(Method::PUT, path)
    }

    /// Expect a PATCH of `path`.
    pub fn patch(path: &str) -> Self {
        Self::new(Method::PATCH, path)
    }

    /// The (decoded) query string must contain `part`.
    pub fn query(mut self, part: &str) -> Self {
        self.query.push(part.to_string());
        self
    }

    /// The Accept header must contain `part`.
    pub fn accept(mut self, part: &str) -> Self {
        self.accept = Some(part.to_string());
        self
    }

    /// Check the request body.
    pub fn check(mut self, f: impl FnOnce(&Value) + Send + 'static) -> Self {
        self.check = Some(Box::new(f));
        self
    }

    /// Answer 200 with `obj`.
    pub fn respond(mut self, obj: &impl serde::Serialize) -> Self {
        self.reply = Reply::Json(200, serde_json::to_value(obj).unwrap());
        self
    }

    /// Answer with `code` and `body`.
    pub fn status(mut self, code: u16, body: Value) -> Self {
        self.reply = Reply::Json(code, body);
        self
    }

    /// Answer 404.
    pub fn not_found(self) -> Self {
        self.status(
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "reason": "NotFound", "code": 404, "message": "not found"}),
        )
    }

    /// Answer with the request body.
    pub fn echo(mut self) -> Self {
        self.reply = Reply::Echo;
        self
    }

    /// Answer with `base` updated by the request body's top-level fields.
    pub fn merged_into(mut self, base: &impl serde::Serialize) -> Self {
        self.reply = Reply::Merged(serde_json::to_value(base).unwrap());
        self
    }
}

/// The fake API server's side of a mocked client.
pub struct FakeApi {
    handle: ApiHandle,
}

/// A running script.
pub struct Server {
    task: tokio::task::JoinHandle<(ApiHandle, Vec<Value>)>,
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FakeApi {
    /// A client whose requests go to the returned fake server.
    pub fn new() -> (Client, Self) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(service, "default"), Self { handle })
    }

    /// Serve `calls` in order.
    pub fn run(self, calls: Vec<Call>) -> Server {
        let mut handle = self.handle;
        let task = tokio::spawn(async move {
            let mut bodies = Vec::new();
            for (n, call) in calls.into_iter().enumerate() {
                let next = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
                    .await
                    .unwrap_or_else(|_| {
                        panic!(
                            "call {n}: expected {} {} but no request came",
                            call.method, call.path
                        )
                    });
                let (request, send) = next.unwrap_or_else(|| {
                    panic!(
                        "call {n}: expected {} {} but the client is gone",
                        call.method, call.path
                    )
                });
                let method = request.method().clone();
                let path = request.uri().path().to_string();
                let query = decode(request.uri().query().unwrap_or_default());
                assert_eq!(
                    (&method, path.as_str()),
                    (&call.method, call.path.as_str()),
                    "call {n}: unexpected request {method} {path}?{query}"
                );
                if let Some(part) = &call.accept {
                    let accept = request
                        .headers()
                        .get("accept")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    assert!(
                        accept.contains(part.as_str()),
                        "call {n}: Accept {accept:?} lacks {part}"
                    );
                }
                for part in &call.query {
                    assert!(
                        query.contains(part.as_str()),
                        "call {n}: {path}?{query} lacks {part}"
                    );
                }
                let content_type = request
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let raw = request.into_body().collect_bytes().await.unwrap();
                let body: Value = if raw.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&raw).unwrap_or(Value::Null)
                };
                let problems = api_rules(&method, &path, &query, &content_type, &body);
                assert!(
                    problems.is_empty(),
                    "call {n}: a real API server would refuse {method} {path}?{query}: {problems:?}\n{body}"
                );
                if let Some(check) = call.check {
                    check(&body);
                }
                let (code, reply) = match call.reply {
                    Reply::Json(code, v) => (code, v),
                    Reply::Echo => {
                        let mut v = body.clone();
                        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                            let name = meta
                                .get("name")
                                .and_then(Value::as_str)
                                .unwrap_or("x")
                                .to_string();
                            meta.entry("uid").or_insert(json!(format!("uid-{name}")));
                            meta.entry("resourceVersion").or_insert(json!("1"));
                        }
                        (if method == Method::POST { 201 } else { 200 }, v)
                    }
                    Reply::Merged(mut base) => {
                        if let (Some(b), Some(patch)) = (base.as_object_mut(), body.as_object()) {
                            for (k, v) in patch {
                                if k != "apiVersion" && k != "kind" {
                                    b.insert(k.clone(), v.clone());
                                }
                            }
                        }
                        (200, base)
                    }
                };
                bodies.push(body);
                send.send_response(
                    Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                        .unwrap(),
                );
            }
            (handle, bodies)
        });
        Server { task }
    }
}

impl Server {
    /// Wait for every scripted call, fail on any further request, and return the request
    /// bodies in order.
    pub async fn done(self) -> Vec<Value> {
        let (mut handle, bodies) = match self.task.await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        if let Ok(Some((request, _))) =
            tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await
        {
            panic!(
                "unexpected extra request {} {}",
                request.method(),
                request.uri()
            );
        }
        bodies
    }
}

/// A DNS-1123 label: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain: at most 253, dot-separated labels.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A label value: empty, or at most 63 of `[A-Za-z0-9-_.]`, alphanumeric at both ends.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric())
}

/// A qualified name (label and annotation keys, `reportingController`): an optional
/// DNS-subdomain prefix and `/`, then at most 63 of `[A-Za-z0-9-_.]`.
pub fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// `2026-11-23T10:00:00.123456Z`: a `metav1.MicroTime` as the API server parses it.
pub fn is_micro_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 27
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[26] == b'Z'
        && b[20..26].iter().all(u8::is_ascii_digit)
}

fn check_meta(meta: &Value, what: &str, problems: &mut Vec<String>) {
    for (k, v) in meta["labels"].as_object().into_iter().flatten() {
        if !is_qualified_name(k) {
            problems.push(format!("{what}: label key {k:?} is not a qualified name"));
        }
        if !is_label_value(v.as_str().unwrap_or("?")) {
            problems.push(format!("{what}: label {k}={v} is not a valid label value"));
        }
    }
    for k in meta["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        if !is_qualified_name(k) {
            problems.push(format!(
                "{what}: annotation key {k:?} is not a qualified name"
            ));
        }
    }
    for o in meta["ownerReferences"].as_array().into_iter().flatten() {
        for f in ["apiVersion", "kind", "name", "uid"] {
            if o[f].as_str().unwrap_or_default().is_empty() {
                problems.push(format!("{what}: ownerReference without {f}"));
            }
        }
        // NB: blockOwnerDeletion needs `update` on the owner's finalizers where the
        // OwnerReferencesPermissionEnforcement admission plugin runs; the operator has no
        // such permission and needs none.
        if o.get("blockOwnerDeletion") == Some(&Value::Bool(true)) {
            problems.push(format!(
                "{what}: blockOwnerDeletion needs RBAC on the owner's finalizers"
            ));
        }
    }
}

/// Fields of `batch/v1` Jobs and pod specs that a 1.26 API server does not know (sent on
/// create they are dropped or refused under strict field validation).
const NEWER_THAN_1_26: &[&str] = &[
    "podReplacementPolicy",
    "backoffLimitPerIndex",
    "maxFailedIndexes",
    "managedBy",
    "successPolicy",
    "resizePolicy",
    "appArmorProfile",
    "supplementalGroupsPolicy",
    "seLinuxChangePolicy",
];

fn check_job(b: &Value, problems: &mut Vec<String>) {
    let name = b["metadata"]["name"].as_str().unwrap_or_default();
    // The Job controller labels pods with `batch.kubernetes.io/job-name=<name>`, so the
    // API server refuses Job names longer than 63.
    if !(name.len() <= 63 && is_dns_subdomain(name)) {
        problems.push(format!(
            "job name {name:?} must be a DNS subdomain of at most 63"
        ));
    }
    if b["metadata"].get("generateName").is_some() {
        problems.push("jobs are named per run (idempotent), never generateName".into());
    }
    check_meta(&b["metadata"], "job", problems);
    let template = &b["spec"]["template"];
    check_meta(&template["metadata"], "pod template", problems);
    let pod = &template["spec"];
    let restart = pod["restartPolicy"].as_str().unwrap_or_default();
    if restart != "Never" && restart != "OnFailure" {
        problems.push(format!(
            "a Job's pods need restartPolicy Never or OnFailure, not {restart:?}"
        ));
    }
    if let Some(account) = pod.get("serviceAccountName") {
        if !is_dns_subdomain(account.as_str().unwrap_or_default()) {
            problems.push(format!(
                "serviceAccountName {account} is not a ServiceAccount name"
            ));
        }
    }
    if pod.get("serviceAccount").is_some() {
        problems.push("serviceAccount is deprecated: set serviceAccountName".into());
    }
    for k in NEWER_THAN_1_26 {
        if b["spec"].get(*k).is_some() || pod.get(*k).is_some() {
            problems.push(format!("{k} is not known to Kubernetes 1.26"));
        }
    }
    let volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v["name"].as_str().unwrap_or_default())
        .collect();
    for v in &volumes {
        if !is_dns_label(v) {
            problems.push(format!("volume name {v:?} is not a DNS label"));
        }
    }
    for c in pod["containers"].as_array().into_iter().flatten() {
        if !is_dns_label(c["name"].as_str().unwrap_or_default()) {
            problems.push(format!("container name {} is not a DNS label", c["name"]));
        }
        for k in ["restartPolicy", "resizePolicy"] {
            if c.get(k).is_some() {
                problems.push(format!("container {k} is not known to Kubernetes 1.26"));
            }
        }
        if c["securityContext"].get("appArmorProfile").is_some() {
            problems.push("appArmorProfile is not known to Kubernetes 1.26".into());
        }
        let mut paths = std::collections::HashSet::new();
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let n = m["name"].as_str().unwrap_or_default();
            if !volumes.contains(&n) {
                problems.push(format!("mount of unknown volume {n:?}"));
            }
            if !paths.insert(m["mountPath"].as_str().unwrap_or_default().to_string()) {
                problems.push(format!("mountPath {} used twice", m["mountPath"]));
            }
        }
    }
}

fn check_event(b: &Value, path: &str, problems: &mut Vec<String>) {
    for f in [
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
    ] {
        let v = b[f].as_str().unwrap_or_default();
        if v.is_empty() || v.len() > 128 {
            problems.push(format!("event {f} must be 1-128 characters, is {v:?}"));
        }
    }
    if !is_qualified_name(b["reportingController"].as_str().unwrap_or_default()) {
        problems.push("event reportingController must be a qualified name".into());
    }
    if !is_micro_time(b["eventTime"].as_str().unwrap_or_default()) {
        problems.push(format!(
            "event eventTime {} is not a MicroTime",
            b["eventTime"]
        ));
    }
    if b["note"].as_str().unwrap_or_default().len() > 1024 {
        problems.push("event note longer than 1 KiB".into());
    }
    let t = b["type"].as_str().unwrap_or_default();
    if t != "Normal" && t != "Warning" {
        problems.push(format!("event type {t:?}"));
    }
    for f in [
        "deprecatedCount",
        "deprecatedFirstTimestamp",
        "deprecatedLastTimestamp",
        "deprecatedSource",
    ] {
        if b.get(f).is_some_and(|v| !v.is_null()) {
            problems.push(format!("event {f} must be unset"));
        }
    }
    let ns = b["metadata"]["namespace"].as_str().unwrap_or_default();
    if !path.contains(&format!("/namespaces/{ns}/")) || b["regarding"]["namespace"] != json!(ns) {
        problems.push("event namespace must match the URL and the regarding object".into());
    }
    if !is_dns_subdomain(b["metadata"]["name"].as_str().unwrap_or_default()) {
        problems.push(format!(
            "event name {} is not a DNS subdomain",
            b["metadata"]["name"]
        ));
    }
}

/// The operator's install (the chart rendered with its defaults), whose ClusterRole is
/// what the operator may do.
const INSTALL: &str = include_str!("../../manifests/install/20-operator.yaml");

/// One RBAC rule: `(apiGroups, resources, verbs)`.
type Rule = (Vec<String>, Vec<String>, Vec<String>);

/// The rules of the operator's ClusterRole in manifests/install (parsed once).
fn operator_rules() -> &'static [Rule] {
    static RULES: std::sync::OnceLock<Vec<Rule>> = std::sync::OnceLock::new();
    RULES.get_or_init(parse_rules)
}

fn parse_rules() -> Vec<Rule> {
    use serde::Deserialize;
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    };
    serde_yaml::Deserializer::from_str(INSTALL)
        .filter_map(|doc| Value::deserialize(doc).ok())
        .filter(|d| d["kind"] == "ClusterRole")
        .flat_map(|d| d["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                strings(&r["apiGroups"]),
                strings(&r["resources"]),
                strings(&r["verbs"]),
            )
        })
        .collect()
}

/// The RBAC `(apiGroup, resource[/subresource], verb)` of a request.
pub fn rbac_request(method: &Method, path: &str, query: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_string(), rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [resource] => ((*resource).to_string(), false),
        [resource, _name] => ((*resource).to_string(), true),
        [resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => return None,
    };
    let verb = if *method == Method::GET {
        if named {
            "get"
        } else if query.contains("watch=true") {
            "watch"
        } else {
            "list"
        }
    } else if *method == Method::POST {
        "create"
    } else if *method == Method::PUT {
        "update"
    } else if *method == Method::PATCH {
        "patch"
    } else if *method == Method::DELETE {
        "delete"
    } else {
        return None;
    };
    Some((group, resource, verb.to_string()))
}

/// What a real API server (1.26+) would refuse in a request the operator sends: used on
/// every request of every scripted scenario.
pub fn api_rules(
    method: &Method,
    path: &str,
    query: &str,
    content_type: &str,
    body: &Value,
) -> Vec<String> {
    let mut problems = Vec::new();
    // RBAC: the install's ClusterRole must allow it. NB: Leases are granted by the
    // leader-election Role, which the chart renders only with replicaCount > 1.
    if let Some((group, resource, verb)) = rbac_request(method, path, query) {
        let allowed = resource == "leases"
            || operator_rules().iter().any(|(groups, resources, verbs)| {
                groups.contains(&group) && resources.contains(&resource) && verbs.contains(&verb)
            });
        if !allowed {
            problems.push(format!(
                "RBAC: the operator's ClusterRole (charts/arca/templates/rbac.yaml) does not allow {verb} on {resource:?} in API group {group:?}"
            ));
        }
    }
    let apply = content_type.contains("apply-patch");
    let is_event = path.starts_with("/apis/events.k8s.io/");
    if *method == Method::PATCH || *method == Method::POST || *method == Method::PUT {
        if !is_event && !query.contains("fieldManager=arca-operator") {
            problems.push("every write carries fieldManager=arca-operator".into());
        }
        if query.contains("force=true") && !apply {
            problems.push("force is only valid for server-side apply".into());
        }
        if apply
            && (body["apiVersion"].as_str().unwrap_or_default().is_empty()
                || body["kind"].as_str().unwrap_or_default().is_empty())
        {
            problems.push("an apply patch needs apiVersion and kind".into());
        }
        if path.contains("/apis/arca.dev/")
            && body.get("status").is_some()
            && !path.ends_with("/status")
        {
            problems.push("status goes through the status subresource".into());
        }
        if path.ends_with("/status") && body.get("spec").is_some() {
            problems.push("a status write carries no spec".into());
        }
    }
    if *method == Method::POST && path.ends_with("/jobs") {
        check_job(body, &mut problems);
    }
    if *method == Method::POST && is_event {
        check_event(body, path, &mut problems);
    }
    if path.contains("/configmaps/") && *method == Method::PATCH {
        check_meta(&body["metadata"], "configmap", &mut problems);
        let size: usize = body["data"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if size > 1024 * 1024 {
            problems.push("a ConfigMap holds at most 1 MiB".into());
        }
    }
    if path.contains("/leases") && (*method == Method::POST || *method == Method::PUT) {
        for f in ["acquireTime", "renewTime"] {
            if let Some(t) = body["spec"][f].as_str() {
                if !is_micro_time(t) {
                    problems.push(format!("lease {f} {t} is not a MicroTime"));
                }
            }
        }
    }
    if *method == Method::PATCH
        && path.ends_with("/scale")
        && body["spec"]["replicas"].as_i64().is_none()
    {
        problems.push("a scale patch sets spec.replicas".into());
    }
    problems
}

#[test]
fn api_rules_catch_what_a_server_refuses() {
    let post = Method::POST;
    let job = json!({"metadata": {"name": "a".repeat(64), "labels": {"x": "bad value"},
                                   "ownerReferences": [{"apiVersion": "v", "kind": "K", "name": "n", "uid": "u", "blockOwnerDeletion": true}]},
                     "spec": {"podReplacementPolicy": "Failed", "template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "arca", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]}}}});
    let p = api_rules(
        &post,
        "/apis/batch/v1/namespaces/n/jobs",
        "",
        "application/json",
        &job,
    )
    .join("\n");
    for e in [
        "fieldManager",
        "job name",
        "bad value",
        "blockOwnerDeletion",
        "restartPolicy",
        "podReplacementPolicy",
        "unknown volume",
    ] {
        assert!(p.contains(e), "{e} in {p}");
    }
    let event = json!({"metadata": {"name": "p.1", "namespace": "n"}, "regarding": {"namespace": "n"},
                       "reportingController": "arca.dev/arca-operator", "reportingInstance": "i", "action": "Reconcile",
                       "reason": "R", "type": "Normal", "eventTime": "2026-11-23T10:00:00Z"});
    let p = api_rules(
        &post,
        "/apis/events.k8s.io/v1/namespaces/n/events",
        "",
        "application/json",
        &event,
    );
    assert_eq!(
        p,
        vec!["event eventTime \"2026-11-23T10:00:00Z\" is not a MicroTime".to_string()]
    );
    let p = api_rules(
        &Method::PATCH,
        "/apis/arca.dev/v1alpha1/namespaces/n/backuppolicies/p/status",
        "fieldManager=arca-operator&force=true",
        "application/apply-patch+yaml",
        &json!({"status": {}}),
    );
    assert!(p.iter().any(|m| m.contains("apiVersion and kind")), "{p:?}");
    let p = api_rules(
        &Method::PATCH,
        "/apis/batch/v1/namespaces/n/jobs/j",
        "fieldManager=arca-operator&force=true",
        "application/merge-patch+json",
        &json!({}),
    );
    assert!(p.iter().any(|m| m.contains("force")), "{p:?}");
}

#[test]
fn api_rules_hold_requests_to_the_operators_rbac() {
    let get = Method::GET;
    let none = json!(null);
    // Allowed: the Job service account check, Secret metadata, status patches, scaling.
    for (method, path) in [
        (&get, "/api/v1/namespaces/n/serviceaccounts/arca-job"),
        (&get, "/api/v1/namespaces/n/secrets/s3"),
        (&get, "/api/v1/namespaces/n/pods"),
        (
            &Method::PATCH,
            "/apis/apps/v1/namespaces/n/deployments/app/scale",
        ),
    ] {
        let p = api_rules(
            method,
            path,
            "fieldManager=arca-operator",
            "application/merge-patch+json",
            &none,
        );
        assert!(
            !p.iter().any(|m| m.starts_with("RBAC")),
            "{method} {path}: {p:?}"
        );
    }
    // Refused: listing Secrets (values!), writing Secrets, touching RBAC or nodes.
    for (method, path) in [
        (&get, "/api/v1/namespaces/n/secrets"),
        (&Method::PATCH, "/api/v1/namespaces/n/secrets/s3"),
        (&Method::POST, "/api/v1/namespaces/n/serviceaccounts"),
        (&get, "/api/v1/nodes/node-a"),
        (
            &Method::POST,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/n/roles",
        ),
    ] {
        let p = api_rules(
            method,
            path,
            "fieldManager=arca-operator",
            "application/merge-patch+json",
            &none,
        );
        assert!(
            p.iter().any(|m| m.starts_with("RBAC")),
            "{method} {path} passed: {p:?}"
        );
    }
    assert_eq!(
        rbac_request(&get, "/apis/batch/v1/namespaces/n/jobs", "watch=true"),
        Some(("batch".into(), "jobs".into(), "watch".into()))
    );
    assert_eq!(
        rbac_request(
            &Method::PATCH,
            "/apis/arca.dev/v1alpha1/namespaces/n/backuppolicies/p/status",
            ""
        ),
        Some((
            "arca.dev".into(),
            "backuppolicies/status".into(),
            "patch".into()
        ))
    );
}
