//! Prometheus metrics (prometheus-client), registered once and served on `/metrics`.
//!
//! Per-policy series carry `namespace` and `policy` labels; a deleted policy's series are
//! removed. Gauges that describe a policy are derived from its spec and status on every
//! reconcile, so they are right again after a restart; counters and histograms count what
//! this process saw.
//!
//! Alerts should use the gauges (charts/arca/templates/prometheusrule.yaml does): a policy
//! whose newest good snapshot is older than its rpo
//! (`time() - arca_backup_last_success_timestamp_seconds > arca_backup_rpo_seconds`, or
//! `arca_backup_within_rpo == 0` when there never was one), whose last run failed
//! (`arca_backup_last_run_success == 0`), or whose last verification failed
//! (`arca_verify_last_run_success == 0`).

use std::sync::atomic::AtomicU64;

use arca_api::crd::{condition, condition_status, BackupPolicyStatus};
use arca_api::PolicySpec;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::status::find;

/// Labels of per-policy series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// Namespace of the policy.
    pub namespace: String,
    /// Name of the policy.
    pub policy: String,
}

/// Labels of run counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// Namespace.
    pub namespace: String,
    /// Policy.
    pub policy: String,
    /// `succeeded` or `failed`.
    pub result: String,
}

/// Labels of reconcile counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `backuppolicy` or `restorerequest`.
    pub controller: String,
    /// [`crate::error::Error::metric_label`].
    pub error: String,
}

/// Labels naming a controller.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `backuppolicy` or `restorerequest`.
    pub controller: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the operator exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    last_success: Family<PolicyLabels, FloatGauge>,
    last_run_success: Family<PolicyLabels, Gauge>,
    created: Family<PolicyLabels, FloatGauge>,
    rpo_seconds: Family<PolicyLabels, Gauge>,
    runs: Family<RunLabels, Counter>,
    duration: Family<PolicyLabels, Histogram, fn() -> Histogram>,
    bytes: Family<PolicyLabels, Gauge>,
    within_rpo: Family<PolicyLabels, Gauge>,
    verify_last_success: Family<PolicyLabels, FloatGauge>,
    verify_last_run_success: Family<PolicyLabels, Gauge>,
    verify_runs: Family<RunLabels, Counter>,
    restores: Family<RunLabels, Counter>,
    reconciles: Family<ControllerLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    leader: Gauge,
}

fn duration_histogram() -> Histogram {
    // 10 s … ~11 h.
    Histogram::new(exponential_buckets(10.0, 2.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            last_success: Family::default(),
            last_run_success: Family::default(),
            created: Family::default(),
            rpo_seconds: Family::default(),
            runs: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            bytes: Family::default(),
            within_rpo: Family::default(),
            verify_last_success: Family::default(),
            verify_last_run_success: Family::default(),
            verify_runs: Family::default(),
            restores: Family::default(),
            reconciles: Family::default(),
            errors: Family::default(),
            leader: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Create the metrics and register them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "arca_backup_last_success_timestamp_seconds",
            "Unix time of the start of the newest successful backup",
            m.last_success.clone(),
        );
        registry.register(
            "arca_backup_last_run_success",
            "1 when the most recent finished backup run succeeded, 0 when it failed (absent before the first)",
            m.last_run_success.clone(),
        );
        registry.register(
            "arca_backup_policy_created_timestamp_seconds",
            "Unix time the BackupPolicy was created (for alerts on policies that never succeeded)",
            m.created.clone(),
        );
        registry.register(
            "arca_backup_rpo_seconds",
            "The policy's rpo: the greatest tolerated age of its newest good snapshot (absent without an rpo)",
            m.rpo_seconds.clone(),
        );
        registry.register(
            "arca_backup_runs",
            "Finished backup runs by result",
            m.runs.clone(),
        );
        registry.register(
            "arca_backup_duration_seconds",
            "Duration of finished backup runs",
            m.duration.clone(),
        );
        registry.register(
            "arca_backup_bytes",
            "Stored bytes of the newest successful backup",
            m.bytes.clone(),
        );
        registry.register(
            "arca_backup_within_rpo",
            "0 once the policy's rpo is breached (newest good snapshot, or creation without one, longer ago than the rpo), else 1; absent without an rpo",
            m.within_rpo.clone(),
        );
        registry.register(
            "arca_verify_last_success_timestamp_seconds",
            "Unix time the most recent successful verification (spec.verify) finished",
            m.verify_last_success.clone(),
        );
        registry.register(
            "arca_verify_last_run_success",
            "1 when the most recent verification passed, 0 when it failed (absent without spec.verify or before the first)",
            m.verify_last_run_success.clone(),
        );
        registry.register(
            "arca_verify_runs",
            "Finished verifications by result",
            m.verify_runs.clone(),
        );
        registry.register(
            "arca_restore_runs",
            "Finished restores by result",
            m.restores.clone(),
        );
        registry.register(
            "arca_reconciles",
            "Reconciliations by controller",
            m.reconciles.clone(),
        );
        registry.register(
            "arca_reconcile_errors",
            "Failed reconciliations by controller and error",
            m.errors.clone(),
        );
        registry.register(
            "arca_leader",
            "1 while this replica leads (or leader election is off)",
            m.leader.clone(),
        );
        m
    }

    fn policy(namespace: &str, policy: &str) -> PolicyLabels {
        PolicyLabels {
            namespace: namespace.into(),
            policy: policy.into(),
        }
    }

    /// Count a finished backup run.
    pub fn backup_run(
        &self,
        namespace: &str,
        policy: &str,
        succeeded: bool,
        duration_seconds: Option<f64>,
        bytes: Option<u64>,
    ) {
        self.runs
            .get_or_create(&RunLabels {
                namespace: namespace.into(),
                policy: policy.into(),
                result: if succeeded { "succeeded" } else { "failed" }.into(),
            })
            .inc();
        let labels = Self::policy(namespace, policy);
        if let Some(d) = duration_seconds {
            self.duration.get_or_create(&labels).observe(d);
        }
        if let (true, Some(b)) = (succeeded, bytes) {
            self.bytes
                .get_or_create(&labels)
                .set(i64::try_from(b).unwrap_or(i64::MAX));
        }
    }

    /// Count a finished verification.
    pub fn verify_run(&self, namespace: &str, policy: &str, succeeded: bool) {
        self.verify_runs
            .get_or_create(&RunLabels {
                namespace: namespace.into(),
                policy: policy.into(),
                result: if succeeded { "succeeded" } else { "failed" }.into(),
            })
            .inc();
    }

    /// Set the gauges derived from a policy: its creation time, its spec (`rpo`, `verify`)
    /// and its status as just written.
    pub fn policy_status(
        &self,
        namespace: &str,
        policy: &str,
        spec: &PolicySpec,
        created: DateTime<Utc>,
        status: &BackupPolicyStatus,
    ) {
        let labels = Self::policy(namespace, policy);
        self.created
            .get_or_create(&labels)
            .set(created.timestamp() as f64);
        if let Some(t) = status.last_success_time {
            self.last_success
                .get_or_create(&labels)
                .set(t.0.timestamp() as f64);
        }
        if let Some(bytes) = status
            .recent_runs
            .iter()
            .find(|r| r.snapshot.is_some() && r.snapshot == status.last_successful_snapshot)
            .and_then(|r| r.bytes)
        {
            self.bytes.get_or_create(&labels).set(bytes);
        }
        set_or_remove(
            &self.last_run_success,
            &labels,
            condition_value(status, condition::BACKUP_SUCCEEDED),
        );
        // within_rpo and rpo_seconds exist exactly for policies with an rpo. Before the
        // first backup, within_rpo is 1 until the first window (creation + rpo) passes.
        let rpo = spec
            .rpo
            .map(|r| i64::try_from(r.as_secs()).unwrap_or(i64::MAX));
        set_or_remove(&self.rpo_seconds, &labels, rpo);
        let within = rpo.and(
            match find(&status.conditions, condition::WITHIN_RPO).map(|c| c.status.as_str()) {
                Some(condition_status::FALSE) => Some(0),
                Some(_) => Some(1),
                None => None,
            },
        );
        set_or_remove(&self.within_rpo, &labels, within);
        // Verification gauges follow spec.verify: removing it silences its alerts.
        let verify = spec.verify.is_some();
        let last = status.last_verification.as_ref().filter(|_| verify);
        set_or_remove(
            &self.verify_last_run_success,
            &labels,
            last.map(|v| i64::from(v.ok)),
        );
        match status.last_successful_verification_time.filter(|_| verify) {
            Some(t) => {
                self.verify_last_success
                    .get_or_create(&labels)
                    .set(t.0.timestamp() as f64);
            }
            None => {
                self.verify_last_success.remove(&labels);
            }
        }
    }

    /// Drop every series of a deleted policy.
    pub fn forget_policy(&self, namespace: &str, policy: &str) {
        let labels = Self::policy(namespace, policy);
        self.last_success.remove(&labels);
        self.last_run_success.remove(&labels);
        self.created.remove(&labels);
        self.rpo_seconds.remove(&labels);
        self.duration.remove(&labels);
        self.bytes.remove(&labels);
        self.within_rpo.remove(&labels);
        self.verify_last_success.remove(&labels);
        self.verify_last_run_success.remove(&labels);
        for result in ["succeeded", "failed"] {
            let run = RunLabels {
                namespace: namespace.into(),
                policy: policy.into(),
                result: result.into(),
            };
            self.runs.remove(&run);
            self.verify_runs.remove(&run);
        }
    }

    /// Count a finished restore.
    pub fn restore_run(&self, namespace: &str, policy: &str, succeeded: bool) {
        self.restores
            .get_or_create(&RunLabels {
                namespace: namespace.into(),
                policy: policy.into(),
                result: if succeeded { "succeeded" } else { "failed" }.into(),
            })
            .inc();
    }

    /// Count a reconciliation.
    pub fn reconciled(&self, controller: &str) {
        self.reconciles
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .inc();
    }

    /// Count a failed reconciliation.
    pub fn reconcile_error(&self, controller: &str, label: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                controller: controller.into(),
                error: label.into(),
            })
            .inc();
    }

    /// Record leadership.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }
}

/// 1 for a True condition `type_`, 0 for False, None when Unknown or absent.
fn condition_value(status: &BackupPolicyStatus, type_: &str) -> Option<i64> {
    match find(&status.conditions, type_).map(|c| c.status.as_str()) {
        Some(condition_status::TRUE) => Some(1),
        Some(condition_status::FALSE) => Some(0),
        _ => None,
    }
}

/// Set the series `labels` of `family` to `value`, or remove it.
fn set_or_remove(family: &Family<PolicyLabels, Gauge>, labels: &PolicyLabels, value: Option<i64>) {
    match value {
        Some(v) => {
            family.get_or_create(labels).set(v);
        }
        None => {
            family.remove(labels);
        }
    }
}

/// Encode `registry` in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use arca_api::crd::{Condition, RunRecord, Timestamp, Verification};
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0)
            .single()
            .unwrap()
    }

    fn cond(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            observed_generation: None,
            last_transition_time: Timestamp::new(t(3, 15)),
            reason: "R".into(),
            message: String::new(),
        }
    }

    fn spec(rpo: Option<&str>, verify: bool) -> PolicySpec {
        let mut s = crate::testdata::simple_spec();
        s.rpo = rpo.map(|r| r.parse().unwrap());
        s.verify = verify.then(|| arca_api::VerifySchedule {
            schedule: "0 6 * * 0".into(),
            deep: None,
        });
        s
    }

    #[test]
    fn exports_policy_series_and_forgets_them() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.backup_run("clinic", "orthanc", true, Some(300.0), Some(1024));
        m.backup_run("clinic", "orthanc", false, Some(5.0), None);
        m.verify_run("clinic", "orthanc", true);
        let status = BackupPolicyStatus {
            last_success_time: Some(Timestamp::new(t(3, 15))),
            last_successful_snapshot: Some("s1".into()),
            recent_runs: vec![RunRecord {
                job: "j".into(),
                snapshot: Some("s1".into()),
                bytes: Some(2048),
                ..Default::default()
            }],
            conditions: vec![cond("WithinRPO", "True"), cond("BackupSucceeded", "False")],
            last_verification: Some(Verification {
                job: "v".into(),
                ok: true,
                ..Default::default()
            }),
            last_successful_verification_time: Some(Timestamp::new(t(6, 0))),
            ..Default::default()
        };
        m.policy_status(
            "clinic",
            "orthanc",
            &spec(Some("26h"), true),
            t(0, 0),
            &status,
        );
        let text = encode(&registry).unwrap();
        for line in [
            "arca_backup_runs_total{namespace=\"clinic\",policy=\"orthanc\",result=\"succeeded\"} 1",
            "arca_backup_runs_total{namespace=\"clinic\",policy=\"orthanc\",result=\"failed\"} 1",
            "arca_backup_last_success_timestamp_seconds{namespace=\"clinic\",policy=\"orthanc\"} 1795403700.0",
            "arca_backup_last_run_success{namespace=\"clinic\",policy=\"orthanc\"} 0",
            "arca_backup_policy_created_timestamp_seconds{namespace=\"clinic\",policy=\"orthanc\"} 1795392000.0",
            "arca_backup_rpo_seconds{namespace=\"clinic\",policy=\"orthanc\"} 93600",
            "arca_backup_bytes{namespace=\"clinic\",policy=\"orthanc\"} 2048",
            "arca_backup_within_rpo{namespace=\"clinic\",policy=\"orthanc\"} 1",
            "arca_backup_duration_seconds_count{namespace=\"clinic\",policy=\"orthanc\"} 2",
            "arca_verify_last_run_success{namespace=\"clinic\",policy=\"orthanc\"} 1",
            "arca_verify_last_success_timestamp_seconds{namespace=\"clinic\",policy=\"orthanc\"} 1795413600.0",
            "arca_verify_runs_total{namespace=\"clinic\",policy=\"orthanc\",result=\"succeeded\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        m.forget_policy("clinic", "orthanc");
        let text = encode(&registry).unwrap();
        assert!(!text.contains("policy=\"orthanc\""), "{text}");
    }

    #[test]
    fn rpo_gauges_exist_exactly_for_policies_with_an_rpo() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        // No backup yet, inside the first window: not breached.
        let fresh = BackupPolicyStatus {
            conditions: vec![
                cond("WithinRPO", "Unknown"),
                cond("BackupSucceeded", "Unknown"),
            ],
            ..Default::default()
        };
        m.policy_status("c", "p", &spec(Some("1h"), false), t(0, 0), &fresh);
        let text = encode(&registry).unwrap();
        assert!(
            text.contains("arca_backup_within_rpo{namespace=\"c\",policy=\"p\"} 1"),
            "{text}"
        );
        // Before the first run there is no last-run result.
        assert!(!text.contains("arca_backup_last_run_success{"), "{text}");
        let breached = BackupPolicyStatus {
            conditions: vec![cond("WithinRPO", "False")],
            ..Default::default()
        };
        m.policy_status("c", "p", &spec(Some("1h"), false), t(0, 0), &breached);
        let text = encode(&registry).unwrap();
        assert!(
            text.contains("arca_backup_within_rpo{namespace=\"c\",policy=\"p\"} 0"),
            "{text}"
        );
        // The rpo removed from the spec: no rpo series, only the timestamps remain.
        let no_rpo = BackupPolicyStatus {
            last_success_time: Some(Timestamp::new(t(3, 15))),
            conditions: vec![
                cond("WithinRPO", "Unknown"),
                cond("BackupSucceeded", "True"),
            ],
            ..Default::default()
        };
        m.policy_status("c", "p", &spec(None, false), t(0, 0), &no_rpo);
        let text = encode(&registry).unwrap();
        assert!(!text.contains("arca_backup_within_rpo{"), "{text}");
        assert!(!text.contains("arca_backup_rpo_seconds{"), "{text}");
        assert!(
            text.contains(
                "arca_backup_last_success_timestamp_seconds{namespace=\"c\",policy=\"p\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains("arca_backup_last_run_success{namespace=\"c\",policy=\"p\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn verify_gauges_follow_spec_verify() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        let status = BackupPolicyStatus {
            last_verification: Some(Verification {
                job: "v".into(),
                ok: false,
                ..Default::default()
            }),
            last_successful_verification_time: Some(Timestamp::new(t(6, 0))),
            ..Default::default()
        };
        m.policy_status("c", "p", &spec(None, true), t(0, 0), &status);
        let text = encode(&registry).unwrap();
        assert!(
            text.contains("arca_verify_last_run_success{namespace=\"c\",policy=\"p\"} 0"),
            "{text}"
        );
        m.policy_status("c", "p", &spec(None, false), t(0, 0), &status);
        let text = encode(&registry).unwrap();
        assert!(!text.contains("arca_verify_last_run_success{"), "{text}");
        assert!(
            !text.contains("arca_verify_last_success_timestamp_seconds{"),
            "{text}"
        );
    }

    #[test]
    fn counts_errors_by_label() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.reconcile_error("backuppolicy", "invalid_spec");
        m.reconciled("backuppolicy");
        m.set_leader(true);
        let text = encode(&registry).unwrap();
        assert!(text.contains(
            "arca_reconcile_errors_total{controller=\"backuppolicy\",error=\"invalid_spec\"} 1"
        ));
        assert!(text.contains("arca_reconciles_total{controller=\"backuppolicy\"} 1"));
        assert!(text.contains("arca_leader 1"));
    }
}
