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
                let raw = request.into_body().collect_bytes().await.unwrap();
                let body: Value = if raw.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&raw).unwrap_or(Value::Null)
                };
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
