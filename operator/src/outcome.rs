//! What a Job did: its state from its conditions, and its result from the terminated
//! container's termination message (the `arca-result/1` JSON `arca` writes to
//! `/dev/termination-log`), falling back to the exit code and the Job's conditions.
//! Pure functions of the Job and pod objects.

use arca_api::result::{RunResult, RESULT_FORMAT};
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::constants::{CONTAINER_NAME, MAX_MESSAGE};

/// Where a Job is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Created suspended (workloads are being scaled down); no pod yet.
    Suspended,
    /// Running or about to.
    Active,
    /// Finished successfully (condition Complete).
    Succeeded,
    /// Finished unsuccessfully (condition Failed), with the Job's reason and message.
    Failed {
        /// E.g. BackoffLimitExceeded, DeadlineExceeded.
        reason: String,
        /// The Job controller's message.
        message: String,
    },
}

impl JobState {
    /// Succeeded or Failed.
    pub fn is_finished(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed { .. })
    }
}

/// The state of `job` from its conditions and `spec.suspend`.
pub fn job_state(job: &Job) -> JobState {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    for c in conditions {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" => return JobState::Succeeded,
            "Failed" => {
                return JobState::Failed {
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                }
            }
            _ => {}
        }
    }
    if job.spec.as_ref().and_then(|s| s.suspend) == Some(true) {
        JobState::Suspended
    } else {
        JobState::Active
    }
}

/// The outcome of a finished Job.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobOutcome {
    /// Full success: the Job completed and the result (if any) says ok.
    pub succeeded: bool,
    /// The parsed `arca-result/1`, when the termination message held one.
    pub result: Option<RunResult>,
    /// One line for status and Events: the error, or a summary of success.
    pub message: String,
    /// Exit code of the `arca` container, when seen.
    pub exit_code: Option<i32>,
    /// When the run started.
    pub started: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished: Option<DateTime<Utc>>,
}

/// Convert a Kubernetes time to chrono.
pub fn to_chrono(t: &Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(
        t.0.as_second(),
        u32::try_from(t.0.subsec_nanosecond()).unwrap_or(0),
    )
}

/// Shorten `s` to at most `max` bytes (at a character boundary), on one line.
pub fn shorten(s: &str, max: usize) -> String {
    let one_line: String = s
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.len() <= max {
        return one_line;
    }
    let mut cut = max.saturating_sub(3);
    while !one_line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &one_line[..cut])
}

/// The terminated state of the `arca` container of `pod`.
pub fn terminated(pod: &Pod) -> Option<&ContainerStateTerminated> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let status = statuses.iter().find(|s| s.name == CONTAINER_NAME)?;
    status
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| {
            status
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
        })
}

/// Parse a termination message as an `arca-result/1`.
pub fn parse_result(message: &str) -> Option<RunResult> {
    let text = message.trim();
    let start = text.find('{')?;
    let result: RunResult = serde_json::from_str(&text[start..]).ok()?;
    (result.format == RESULT_FORMAT).then_some(result)
}

/// What a finished `job` did, from its pod (when still there) and its conditions.
pub fn outcome(job: &Job, pod: Option<&Pod>) -> JobOutcome {
    let state = job_state(job);
    let job_status = job.status.as_ref();
    let mut out = JobOutcome {
        started: job_status
            .and_then(|s| s.start_time.as_ref())
            .and_then(to_chrono),
        finished: job_status
            .and_then(|s| s.completion_time.as_ref())
            .and_then(to_chrono),
        ..Default::default()
    };
    let term = pod.and_then(terminated);
    if let Some(term) = term {
        out.exit_code = Some(term.exit_code);
        if let Some(t) = term.started_at.as_ref().and_then(to_chrono) {
            out.started = Some(t);
        }
        if let Some(t) = term.finished_at.as_ref().and_then(to_chrono) {
            out.finished = Some(t);
        }
    }
    if out.finished.is_none() {
        // A failed Job has no completionTime; its Failed condition has the time.
        out.finished = job_status
            .and_then(|s| s.conditions.as_deref())
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.type_ == "Failed" && c.status == "True")
            })
            .and_then(|c| c.last_transition_time.as_ref())
            .and_then(to_chrono);
    }

    let message = term.and_then(|t| t.message.as_deref()).unwrap_or_default();
    if let Some(result) = parse_result(message) {
        if let Some(t) = result.started_at {
            out.started = Some(t);
        }
        if let Some(t) = result.completed_at {
            out.finished = Some(t);
        }
        let exit_ok = out.exit_code.is_none_or(|c| c == 0);
        let job_failed = matches!(state, JobState::Failed { .. });
        out.succeeded = result.ok && exit_ok && !job_failed;
        out.message = if out.succeeded {
            summary(&result)
        } else {
            with_secret_hint(shorten(
                result
                    .error
                    .as_deref()
                    .unwrap_or("the run failed without an error message"),
                MAX_MESSAGE,
            ))
        };
        out.result = Some(result);
        return out;
    }

    match (&state, out.exit_code) {
        (JobState::Succeeded, None | Some(0)) => {
            out.succeeded = true;
            out.message = "the job completed (no result was reported)".into();
        }
        (_, Some(code)) => {
            let last_line = message.lines().rev().find(|l| !l.trim().is_empty());
            out.message = match last_line {
                Some(line) => {
                    with_secret_hint(shorten(&format!("exit code {code}: {line}"), MAX_MESSAGE))
                }
                None => format!("exit code {code}"),
            };
            out.succeeded = code == 0 && state == JobState::Succeeded;
        }
        (JobState::Failed { reason, message }, None) => {
            out.message = shorten(
                &format!(
                    "the job failed ({reason}): {}",
                    if message.is_empty() {
                        "no pod result"
                    } else {
                        message
                    }
                ),
                MAX_MESSAGE,
            );
        }
        _ => out.message = "the job ended without a result".into(),
    }
    out
}

/// When a failure names a secret file that is missing or empty
/// (`/run/secrets/arca/<secret>/<key>`), say which Secret key to add. Secret volumes are
/// mounted `optional`, so a key missing from an existing Secret shows up this way.
pub fn secret_hint(message: &str) -> Option<String> {
    let prefix = format!("{}/", crate::constants::paths::SECRETS);
    let start = message.find(&prefix)? + prefix.len();
    let rest = &message[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || matches!(c, ':' | ';' | ',' | '"' | '\'' | ')'))
        .unwrap_or(rest.len());
    let (secret, key) = rest[..end].split_once('/')?;
    if secret.is_empty() || key.is_empty() || key.contains('/') {
        return None;
    }
    let lower = message.to_lowercase();
    if lower.contains("no such file") || lower.contains("not found") || lower.contains("os error 2")
    {
        Some(format!(
            "Secret {secret:?} has no key {key:?}: add the key to the Secret or fix the key in the policy's *SecretRef"
        ))
    } else if lower.contains("is empty") {
        Some(format!(
            "key {key:?} of Secret {secret:?} is empty: put the value in it"
        ))
    } else {
        None
    }
}

/// `message`, led by a [`secret_hint`] when there is one.
fn with_secret_hint(message: String) -> String {
    match secret_hint(&message) {
        Some(hint) => shorten(&format!("{hint} ({message})"), MAX_MESSAGE),
        None => message,
    }
}

/// One line describing a successful run.
fn summary(r: &RunResult) -> String {
    let mut s = match &r.snapshot {
        Some(id) => format!("snapshot {id}"),
        None => format!("{} done", r.command),
    };
    if r.bytes > 0 {
        s.push_str(&format!(", {} stored", human_bytes(r.bytes)));
    }
    if !r.warnings.is_empty() {
        s.push_str(&format!(
            ", {} warning(s): {}",
            r.warnings.len(),
            r.warnings[0]
        ));
    }
    shorten(&s, MAX_MESSAGE)
}

/// Bytes for people (1.5 GiB).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(conditions: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "spec": {"template": {}},
            "status": {"startTime": "2026-11-23T03:15:01Z", "conditions": conditions}
        }))
        .unwrap()
    }

    fn pod(exit_code: i32, message: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "j-abcde"},
            "status": {"containerStatuses": [{
                "name": "arca", "image": "arca", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {
                    "exitCode": exit_code, "message": message,
                    "startedAt": "2026-11-23T03:15:02Z", "finishedAt": "2026-11-23T03:20:02Z"
                }}
            }]}
        }))
        .unwrap()
    }

    fn complete() -> serde_json::Value {
        json!([{"type": "Complete", "status": "True"}])
    }

    fn failed() -> serde_json::Value {
        json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": "2026-11-23T03:20:03Z"}])
    }

    const OK_RESULT: &str = r#"{"format":"arca-result/1","command":"backup","policy":"orthanc","ok":true,"snapshot":"20261123T031502Z","startedAt":"2026-11-23T03:15:02Z","completedAt":"2026-11-23T03:19:59Z","bytes":1610612736,"plainBytes":4000000000}"#;

    #[test]
    fn states_from_conditions() {
        assert_eq!(job_state(&job(complete())), JobState::Succeeded);
        assert!(
            matches!(job_state(&job(failed())), JobState::Failed { reason, .. } if reason == "BackoffLimitExceeded")
        );
        assert_eq!(job_state(&job(json!([]))), JobState::Active);
        let mut j = job(json!([]));
        j.spec.as_mut().unwrap().suspend = Some(true);
        assert_eq!(job_state(&j), JobState::Suspended);
        // Intermediate conditions of newer clusters are not final.
        assert_eq!(
            job_state(&job(
                json!([{"type": "SuccessCriteriaMet", "status": "True"}])
            )),
            JobState::Active
        );
    }

    #[test]
    fn success_from_the_termination_message() {
        let o = outcome(&job(complete()), Some(&pod(0, OK_RESULT)));
        assert!(o.succeeded);
        let r = o.result.unwrap();
        assert_eq!(r.snapshot.as_deref(), Some("20261123T031502Z"));
        assert_eq!(o.message, "snapshot 20261123T031502Z, 1.5 GiB stored");
        assert_eq!(o.started.unwrap().to_rfc3339(), "2026-11-23T03:15:02+00:00");
        assert_eq!(
            o.finished.unwrap().to_rfc3339(),
            "2026-11-23T03:19:59+00:00"
        );
    }

    #[test]
    fn failure_from_the_termination_message() {
        let msg = r#"{"format":"arca-result/1","command":"backup","policy":"orthanc","ok":false,"startedAt":"2026-11-23T03:15:02Z","completedAt":"2026-11-23T03:15:09Z","error":"arca: backup of policy \"orthanc\" failed: component \"index\" failed: PostgreSQL at db:5432 refused the login"}"#;
        let o = outcome(&job(failed()), Some(&pod(1, msg)));
        assert!(!o.succeeded);
        assert!(o.message.contains("refused the login"), "{}", o.message);
        assert_eq!(o.exit_code, Some(1));
    }

    #[test]
    fn an_ok_result_with_a_failing_exit_code_is_a_failure() {
        let o = outcome(&job(failed()), Some(&pod(1, OK_RESULT)));
        assert!(!o.succeeded);
    }

    #[test]
    fn falls_back_to_the_exit_code_and_log_tail() {
        let o = outcome(
            &job(failed()),
            Some(&pod(
                2,
                "starting\narca: cannot read /etc/arca/job.yaml: no such file\n",
            )),
        );
        assert!(!o.succeeded);
        assert_eq!(
            o.message,
            "exit code 2: arca: cannot read /etc/arca/job.yaml: no such file"
        );
    }

    #[test]
    fn falls_back_to_the_job_conditions_without_a_pod() {
        let o = outcome(&job(failed()), None);
        assert!(!o.succeeded);
        assert!(o.message.contains("BackoffLimitExceeded"), "{}", o.message);
        assert_eq!(
            o.finished.unwrap().to_rfc3339(),
            "2026-11-23T03:20:03+00:00"
        );
        let o = outcome(&job(complete()), None);
        assert!(o.succeeded);
    }

    #[test]
    fn ignores_messages_of_other_formats() {
        assert!(parse_result(r#"{"format":"other/1","ok":true}"#).is_none());
        assert!(parse_result("not json").is_none());
        assert!(parse_result(OK_RESULT).is_some());
    }

    #[test]
    fn a_missing_secret_key_is_named() {
        let msg = "postgres index: cannot read the password file /run/secrets/arca/pg/password: No such file or directory (os error 2); check that it exists and is readable by arca";
        assert_eq!(
            secret_hint(msg).as_deref(),
            Some("Secret \"pg\" has no key \"password\": add the key to the Secret or fix the key in the policy's *SecretRef")
        );
        let empty =
            "the password file /run/secrets/arca/pg/password is empty: put the password in it";
        assert!(secret_hint(empty).unwrap().contains("is empty"));
        assert_eq!(secret_hint("connection refused"), None);
        assert_eq!(
            secret_hint("permission denied on /run/secrets/arca/pg/password"),
            None
        );
    }

    #[test]
    fn a_failed_run_on_a_missing_secret_key_leads_with_the_fix() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j"},
            "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
        }))
        .unwrap();
        let result = serde_json::json!({
            "format": RESULT_FORMAT, "command": "backup", "policy": "p", "ok": false,
            "error": "s3 offsite: cannot read the access key id file /run/secrets/arca/s3/id: No such file or directory (os error 2)"
        });
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j-x"},
            "status": {"containerStatuses": [{"name": CONTAINER_NAME, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "message": result.to_string()}}}]}
        }))
        .unwrap();
        let out = outcome(&job, Some(&pod));
        assert!(!out.succeeded);
        assert!(
            out.message.starts_with("Secret \"s3\" has no key \"id\""),
            "{}",
            out.message
        );
        assert!(
            out.message.contains("access key id file"),
            "{}",
            out.message
        );
    }

    #[test]
    fn shorten_keeps_one_line_and_char_boundaries() {
        assert_eq!(shorten("a\nb", 10), "a b");
        let s = shorten(&"é".repeat(100), 11);
        assert!(s.len() <= 11, "{s}");
        assert!(s.ends_with('…'));
    }

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1_610_612_736), "1.5 GiB");
    }
}
