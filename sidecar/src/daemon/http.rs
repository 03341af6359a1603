//! The daemon's HTTP side: `/` (status page), `/api/status` (`arca-status/1`),
//! `/metrics` (Prometheus text), `/healthz` (alive) and `/readyz` (scheduler running).
//! Read-only: nothing here starts, changes or deletes anything.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::status::{PolicyStatus, Status};
use super::App;
use crate::store::path::human_bytes;

/// The routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/status", get(api_status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(app)
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.ready.load(Ordering::SeqCst) {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
    }
}

async fn api_status(State(app): State<Arc<App>>) -> Json<Status> {
    Json(app.status().await)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabel {
    policy: String,
}

/// Render the metrics of `status` in Prometheus text format.
pub fn render_metrics(status: &Status) -> String {
    let mut reg = Registry::with_prefix("arca");
    let g = |reg: &mut Registry, name: &str, help: &str| {
        let f = Family::<PolicyLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        reg.register(name, help, f.clone());
        f
    };
    let last_success = g(
        &mut reg,
        "last_success_timestamp_seconds",
        "Completion time of the newest good snapshot",
    );
    let last_ok = g(
        &mut reg,
        "last_run_success",
        "1 when the last backup run succeeded, 0 when it failed",
    );
    let duration = g(
        &mut reg,
        "last_run_duration_seconds",
        "Duration of the last backup run",
    );
    let bytes = g(
        &mut reg,
        "last_run_bytes",
        "Bytes stored by the last backup run (one destination)",
    );
    let count = g(
        &mut reg,
        "snapshots",
        "Complete snapshots at the first reachable destination",
    );
    let age = g(
        &mut reg,
        "newest_snapshot_age_seconds",
        "Age of the newest good snapshot",
    );
    let rpo = g(
        &mut reg,
        "rpo_seconds",
        "The policy's recovery point objective",
    );
    let within = g(
        &mut reg,
        "within_rpo",
        "1 when the newest good snapshot is younger than the RPO",
    );
    let valid = g(
        &mut reg,
        "policy_valid",
        "1 when the policy's configuration is valid",
    );
    let verified = g(
        &mut reg,
        "last_verification_success",
        "1 when the last verification passed",
    );
    for p in &status.policies {
        let l = PolicyLabel {
            policy: p.name.clone(),
        };
        valid.get_or_create(&l).set(if p.ok { 1.0 } else { 0.0 });
        if let Some(s) = &p.last_success {
            last_success
                .get_or_create(&l)
                .set(s.completed_at.timestamp() as f64);
        }
        if let Some(r) = &p.last_run {
            last_ok
                .get_or_create(&l)
                .set(if r.result == "success" { 1.0 } else { 0.0 });
            duration.get_or_create(&l).set(r.duration_seconds);
            bytes.get_or_create(&l).set(r.bytes as f64);
        }
        if let Some(v) = &p.last_verification {
            verified
                .get_or_create(&l)
                .set(if v.result == "success" { 1.0 } else { 0.0 });
        }
        count.get_or_create(&l).set(p.snapshot_count as f64);
        if let Some(a) = p.newest_age_seconds {
            age.get_or_create(&l).set(a as f64);
        }
        if let Some(r) = p.rpo_seconds {
            rpo.get_or_create(&l).set(r as f64);
        }
        if let Some(w) = p.within_rpo {
            within.get_or_create(&l).set(if w { 1.0 } else { 0.0 });
        }
    }
    let mut out = String::new();
    let _ = encode(&mut out, &reg);
    out
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let body = render_metrics(&app.status().await);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

fn policy_card(p: &PolicyStatus, out: &mut String) {
    let (class, verdict) = if !p.ok {
        ("bad", "BROKEN")
    } else if p.running {
        ("run", "RUNNING")
    } else if p.healthy() {
        ("good", "OK")
    } else {
        ("bad", "ATTENTION")
    };
    let _ = write!(
        out,
        "<section class=\"{class}\"><h2>{} <span class=\"badge\">{verdict}</span></h2><table>",
        esc(&p.name)
    );
    if let Some(e) = &p.error {
        let _ = write!(
            out,
            "<tr><th>Problem</th><td class=\"err\">{}</td></tr>",
            esc(e)
        );
    }
    let newest = match (&p.last_success, p.newest_age_seconds) {
        (Some(s), Some(a)) => format!(
            "{} — {} ago ({}){}",
            esc(&s.snapshot),
            age(a),
            human_bytes(s.bytes),
            match (p.rpo_seconds, p.within_rpo) {
                (Some(r), Some(true)) => format!(", within the RPO of {}", age(r as i64)),
                (Some(r), Some(false)) =>
                    format!(", <b>older than the RPO of {}</b>", age(r as i64)),
                _ => String::new(),
            }
        ),
        _ => "<b>none yet</b>".into(),
    };
    let _ = write!(out, "<tr><th>Newest good backup</th><td>{newest}</td></tr>");
    let _ = write!(
        out,
        "<tr><th>Schedule</th><td>{} ({}) — next run {}</td></tr>",
        esc(p.schedule.as_deref().unwrap_or("none")),
        esc(&p.time_zone),
        p.next_run
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| "—".into())
    );
    let _ = write!(
        out,
        "<tr><th>Snapshots kept</th><td>{}</td></tr>",
        p.snapshot_count
    );
    if let Some(r) = &p.last_run {
        let _ = write!(
            out,
            "<tr><th>Last run</th><td>{} at {} in {:.0} s{}</td></tr>",
            if r.result == "success" {
                "succeeded"
            } else {
                "<b>FAILED</b>"
            },
            r.started_at.format("%Y-%m-%d %H:%M UTC"),
            r.duration_seconds,
            r.error
                .as_ref()
                .map(|e| format!("<div class=\"err\">{}</div>", esc(e)))
                .unwrap_or_default()
        );
    }
    let _ = write!(
        out,
        "<tr><th>Last verification</th><td>{}</td></tr>",
        match &p.last_verification {
            None => "never".into(),
            Some(v) => format!(
                "{} at {}{}",
                if v.result == "success" {
                    "passed"
                } else {
                    "<b>FAILED</b>"
                },
                v.completed_at.format("%Y-%m-%d %H:%M UTC"),
                v.error
                    .as_ref()
                    .map(|e| format!("<div class=\"err\">{}</div>", esc(e)))
                    .unwrap_or_default()
            ),
        }
    );
    out.push_str("</table>");
    if !p.recent_runs.is_empty() {
        out.push_str("<details><summary>Recent runs</summary><table class=\"runs\"><tr><th>Start</th><th>Kind</th><th>Result</th><th>Snapshot</th><th>Stored</th><th>Seconds</th><th>Notes</th></tr>");
        for r in &p.recent_runs {
            let notes = r
                .error
                .iter()
                .chain(r.warnings.iter())
                .map(|x| esc(x))
                .collect::<Vec<_>>()
                .join("<br>");
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{notes}</td></tr>",
                r.started_at.format("%Y-%m-%d %H:%M"),
                esc(&r.kind),
                esc(&r.result),
                esc(r.snapshot.as_deref().unwrap_or("")),
                human_bytes(r.bytes),
                r.duration_seconds
            );
        }
        out.push_str("</table></details>");
    }
    out.push_str("</section>");
}

/// Render the status page.
pub fn render_page(status: &Status) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"30\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>Arca backups</title><style>\
         body{font-family:system-ui,sans-serif;margin:2em;background:#f6f7f9;color:#222}\
         section{background:#fff;border-left:10px solid #999;margin:1em 0;padding:.5em 1em;border-radius:4px}\
         section.good{border-color:#2e7d32}section.bad{border-color:#c62828}section.run{border-color:#f9a825}\
         .good .badge{background:#2e7d32}.bad .badge{background:#c62828}.run .badge{background:#f9a825}\
         .badge{color:#fff;font-size:.6em;padding:.2em .6em;border-radius:3px;vertical-align:middle}\
         th{text-align:left;padding-right:1.5em;vertical-align:top;font-weight:600}td{padding:.15em 0}\
         .err{color:#c62828}table.runs td,table.runs th{padding:.1em .8em .1em 0;font-size:.9em}\
         </style></head><body><h1>Arca backups</h1>",
    );
    let all_ok = status.policies.iter().all(|p| p.healthy());
    let _ = write!(
        out,
        "<p>{} — page generated {}</p>",
        if all_ok {
            "All policies are fine."
        } else {
            "<b class=\"err\">Some policies need attention.</b>"
        },
        status
            .generated_at
            .unwrap_or_else(Utc::now)
            .format("%Y-%m-%d %H:%M:%S UTC")
    );
    for p in &status.policies {
        policy_card(p, &mut out);
    }
    out.push_str(
        "<p><a href=\"/api/status\">JSON</a> · <a href=\"/metrics\">metrics</a></p></body></html>",
    );
    out
}

async fn page(State(app): State<Arc<App>>) -> Html<String> {
    Html(render_page(&app.status().await))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::status::{LastSuccess, RunRecord};

    fn status() -> Status {
        let now = Utc::now();
        let good = PolicyStatus {
            name: "orthanc".into(),
            ok: true,
            rpo_seconds: Some(26 * 3600),
            last_success: Some(LastSuccess {
                snapshot: "20261123T031500Z".into(),
                completed_at: now - chrono::TimeDelta::hours(2),
                bytes: 1 << 30,
            }),
            last_run: Some(RunRecord {
                kind: "backup".into(),
                result: "success".into(),
                started_at: now,
                completed_at: now,
                bytes: 1 << 30,
                ..Default::default()
            }),
            snapshot_count: 3,
            ..Default::default()
        };
        let broken = PolicyStatus {
            name: "elexis".into(),
            ok: false,
            error: Some("policy \"elexis\" is invalid: schedule: <bad>".into()),
            ..Default::default()
        };
        let mut s = Status {
            format: "arca-status/1".into(),
            policies: vec![good, broken],
            ..Default::default()
        };
        for p in &mut s.policies {
            p.refresh_rpo(now);
        }
        s
    }

    #[test]
    fn metrics_expose_freshness_per_policy() {
        let text = render_metrics(&status());
        assert!(
            text.contains("arca_within_rpo{policy=\"orthanc\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("arca_policy_valid{policy=\"elexis\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("arca_snapshots{policy=\"orthanc\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("arca_last_success_timestamp_seconds{policy=\"orthanc\"}"),
            "{text}"
        );
    }

    #[test]
    fn page_shows_green_and_red_and_escapes() {
        let html = render_page(&status());
        assert!(html.contains("<section class=\"good\"><h2>orthanc"));
        assert!(html.contains("<section class=\"bad\"><h2>elexis"));
        assert!(html.contains("&lt;bad&gt;"), "errors are escaped");
        assert!(html.contains("within the RPO of 26 h"));
    }
}
