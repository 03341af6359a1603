//! Prometheus metrics (prometheus-client), registered once and served on `/metrics`.
//!
//! Per-policy series carry `namespace` and `policy` labels; a deleted policy's series are
//! removed. Gauges that describe a policy are derived from its status on every reconcile,
//! so they are right again after a restart; counters and histograms count what this
//! process saw.

use std::sync::atomic::AtomicU64;

use arca_api::crd::{condition, condition_status, BackupPolicyStatus};
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
    runs: Family<RunLabels, Counter>,
    duration: Family<PolicyLabels, Histogram, fn() -> Histogram>,
    bytes: Family<PolicyLabels, Gauge>,
    within_rpo: Family<PolicyLabels, Gauge>,
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
            runs: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            bytes: Family::default(),
            within_rpo: Family::default(),
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
            "1 when the newest good snapshot is younger than the policy's rpo, 0 when not",
            m.within_rpo.clone(),
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

    /// Set the gauges derived from a policy's status.
    pub fn policy_status(&self, namespace: &str, policy: &str, status: &BackupPolicyStatus) {
        let labels = Self::policy(namespace, policy);
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
        match find(&status.conditions, condition::WITHIN_RPO).map(|c| c.status.as_str()) {
            Some(condition_status::TRUE) => {
                self.within_rpo.get_or_create(&labels).set(1);
            }
            Some(condition_status::FALSE) => {
                self.within_rpo.get_or_create(&labels).set(0);
            }
            _ => {
                self.within_rpo.remove(&labels);
            }
        }
    }

    /// Drop every series of a deleted policy.
    pub fn forget_policy(&self, namespace: &str, policy: &str) {
        let labels = Self::policy(namespace, policy);
        self.last_success.remove(&labels);
        self.duration.remove(&labels);
        self.bytes.remove(&labels);
        self.within_rpo.remove(&labels);
        for result in ["succeeded", "failed"] {
            self.runs.remove(&RunLabels {
                namespace: namespace.into(),
                policy: policy.into(),
                result: result.into(),
            });
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
    use arca_api::crd::{Condition, RunRecord, Timestamp};
    use chrono::{TimeZone, Utc};

    #[test]
    fn exports_policy_series_and_forgets_them() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.backup_run("clinic", "orthanc", true, Some(300.0), Some(1024));
        m.backup_run("clinic", "orthanc", false, Some(5.0), None);
        let t = Utc
            .with_ymd_and_hms(2026, 11, 23, 3, 15, 0)
            .single()
            .unwrap();
        let status = BackupPolicyStatus {
            last_success_time: Some(Timestamp::new(t)),
            last_successful_snapshot: Some("s1".into()),
            recent_runs: vec![RunRecord {
                job: "j".into(),
                snapshot: Some("s1".into()),
                bytes: Some(2048),
                ..Default::default()
            }],
            conditions: vec![Condition {
                type_: "WithinRPO".into(),
                status: "True".into(),
                observed_generation: None,
                last_transition_time: Timestamp::new(t),
                reason: "WithinRPO".into(),
                message: String::new(),
            }],
            ..Default::default()
        };
        m.policy_status("clinic", "orthanc", &status);
        let text = encode(&registry).unwrap();
        for line in [
            "arca_backup_runs_total{namespace=\"clinic\",policy=\"orthanc\",result=\"succeeded\"} 1",
            "arca_backup_runs_total{namespace=\"clinic\",policy=\"orthanc\",result=\"failed\"} 1",
            "arca_backup_last_success_timestamp_seconds{namespace=\"clinic\",policy=\"orthanc\"} 1795403700.0",
            "arca_backup_bytes{namespace=\"clinic\",policy=\"orthanc\"} 2048",
            "arca_backup_within_rpo{namespace=\"clinic\",policy=\"orthanc\"} 1",
            "arca_backup_duration_seconds_count{namespace=\"clinic\",policy=\"orthanc\"} 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        m.forget_policy("clinic", "orthanc");
        let text = encode(&registry).unwrap();
        assert!(!text.contains("policy=\"orthanc\""), "{text}");
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
