//! `arca daemon` end to end: a missed run caught up at start-up, a broken policy shown in
//! red while the others run, webhooks on failure, status/metrics/page over HTTP, and a
//! cold backup whose Docker API is unreachable refused with no container touched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

struct Daemon(std::process::Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// Poll `/api/status` until `pred` holds (never a fixed sleep).
fn wait_status(
    port: u16,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(body) = get(port, "/api/status") {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                if pred(&v) {
                    return v;
                }
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn daemon_catches_up_reports_and_notifies() {
    let ws = Workspace::new();
    let data = ws.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("letter.txt"), "hello").unwrap();
    let state = ws.path("state");
    std::fs::create_dir_all(&state).unwrap();
    // The daemon was last scheduled an hour ago: the hourly run in between was missed.
    let an_hour_ago = chrono::Utc::now() - chrono::TimeDelta::minutes(61);
    std::fs::write(
        state.join("schedule-letters.json"),
        format!("{{\"lastScheduled\":\"{}\"}}", an_hour_ago.to_rfc3339()),
    )
    .unwrap();
    std::fs::write(
        state.join("schedule-broken-db.json"),
        format!("{{\"lastScheduled\":\"{}\"}}", an_hour_ago.to_rfc3339()),
    )
    .unwrap();
    // A webhook receiver that records one POST body.
    let hook = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for conn in hook.incoming().flatten().take(4) {
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let mut w = conn;
            let _ = w.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
        }
    });
    let port = free_port();
    let cfg = ws.write_config(&format!(
        "daemon:
  stateDir: {state}
  listen: 127.0.0.1:{port}
  webhooks:
    - url: http://127.0.0.1:{hook_port}/arca
policies:
  - name: letters
    schedule: \"0 * * * *\"
    timeZone: Europe/Zurich
    rpo: 2h
    encryption: {{ageRecipients: [\"{rcpt}\"]}}
    components:
      - name: docs
        files: {{path: {data}}}
    destinations:
      - name: local
        path: {dest}
  - name: broken-db
    schedule: \"0 * * * *\"
    components:
      - name: db
        postgres: {{host: 127.0.0.1, port: 1, user: x, database: y}}
    destinations:
      - name: local
        path: {dest}
  - name: bad-config
    schedule: \"every night\"
    components:
      - name: f
        files: {{path: {data}}}
    destinations:
      - name: local
        path: {dest}
",
        state = state.display(),
        rcpt = ws.recipient,
        data = data.display(),
        dest = ws.path("backup").display(),
    ));
    let _d = Daemon(arca().args(["daemon", "--config", &cfg]).spawn().unwrap());

    let v = wait_status(port, "the caught-up runs", |v| {
        v["policies"][0]["lastRun"]["result"] == "success"
            && v["policies"][1]["lastRun"]["result"] == "failure"
    });
    assert_eq!(v["format"], "arca-status/1");
    let letters = &v["policies"][0];
    assert_eq!(letters["withinRpo"], true);
    assert_eq!(letters["snapshotCount"], 1);
    let snap = letters["lastSuccess"]["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        manifests_in(&ws.path("backup"), "letters"),
        vec![snap.clone()]
    );
    assert!(letters["nextRun"].is_string());
    let broken = &v["policies"][1];
    assert!(broken["lastRun"]["error"]
        .as_str()
        .unwrap()
        .contains("cannot connect to PostgreSQL"));
    let bad = &v["policies"][2];
    assert_eq!(bad["ok"], false);
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("invalid cron expression"),
        "{bad}"
    );

    // The failure reached the webhook.
    let body = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("webhook POST");
    let event: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["format"], "arca-event/1");
    assert_eq!(event["event"], "failure");
    assert_eq!(event["policy"], "broken-db");

    // Metrics and the page tell the same story.
    let metrics = get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("arca_within_rpo{policy=\"letters\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("arca_last_run_success{policy=\"broken-db\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("arca_policy_valid{policy=\"bad-config\"} 0"),
        "{metrics}"
    );
    let page = get(port, "/").unwrap();
    assert!(
        page.contains("<section class=\"good\"><h2>letters"),
        "{page}"
    );
    assert!(page.contains("<section class=\"bad\"><h2>broken-db"));
    assert_eq!(get(port, "/healthz").unwrap(), "ok");
    assert_eq!(get(port, "/readyz").unwrap(), "ready");

    // Every run is logged in the state directory.
    let log = std::fs::read_to_string(state.join("runs-letters.jsonl")).unwrap();
    assert!(log.contains(&snap));
}

#[test]
fn a_cold_backup_without_docker_fails_clearly() {
    let ws = Workspace::new();
    let data = ws.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("x"), "x").unwrap();
    let cfg = ws.write_config(&format!(
        "daemon:\n  stateDir: {}\n  dockerHost: unix:///nonexistent/docker.sock\npolicies:\n  - name: cold\n    quiesce: {{stopContainers: true}}\n    components:\n      - {{name: f, files: {{path: {}}}}}\n    destinations:\n      - {{name: d, path: {}}}\n",
        ws.path("state").display(),
        data.display(),
        ws.path("backup").display()
    ));
    let out = run_arca(&["backup", "--config", &cfg]);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(line.contains("cannot reach the Docker API"), "{line}");
    assert!(manifests_in(&ws.path("backup"), "cold").is_empty());
    let out = run_arca(&["check", "--config", &cfg]);
    assert!(out.status.success());
}

#[test]
fn a_killed_daemon_leaves_no_half_written_snapshot_visible() {
    let ws = Workspace::new();
    let data = ws.path("data");
    std::fs::create_dir_all(&data).unwrap();
    // Enough incompressible data that the backup is still running when the daemon dies.
    sh(&format!(
        "head -c 400000000 /dev/urandom > '{}/scan.bin'",
        data.display()
    ));
    let state = ws.path("state");
    std::fs::create_dir_all(&state).unwrap();
    let an_hour_ago = chrono::Utc::now() - chrono::TimeDelta::minutes(61);
    std::fs::write(
        state.join("schedule-big.json"),
        format!("{{\"lastScheduled\":\"{}\"}}", an_hour_ago.to_rfc3339()),
    )
    .unwrap();
    let port = free_port();
    let dest = ws.path("backup");
    let cfg = ws.write_config(&format!(
        "daemon:\n  stateDir: {}\n  listen: 127.0.0.1:{port}\npolicies:\n  - name: big\n    schedule: \"0 * * * *\"\n    components:\n      - {{name: f, files: {{path: {}}}}}\n    destinations:\n      - {{name: d, path: {}}}\n",
        state.display(),
        data.display(),
        dest.display()
    ));
    let mut d = Daemon(arca().args(["daemon", "--config", &cfg]).spawn().unwrap());
    // Wait until the caught-up run is writing, then kill the daemon hard.
    wait_status(port, "the run to start", |v| {
        v["policies"][0]["running"] == true
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while sh(&format!(
        "find '{}' -type f 2>/dev/null | wc -l",
        dest.display()
    ))
    .trim()
        == "0"
    {
        assert!(
            Instant::now() < deadline,
            "the backup never started writing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.0.kill().unwrap();
    let _ = d.0.wait();
    assert!(
        manifests_in(&dest, "big").is_empty(),
        "a snapshot without all its artifacts became visible"
    );
    let out = run_arca(&["snapshots", "--config", &cfg, "--json"]);
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["snapshots"].as_array().map(Vec::len), Some(0));
}
