//! Kubernetes custom resources (feature `crd`), group `arca.dev`, version `v1alpha1`:
//!
//! - [`BackupPolicy`]: the spec is the shared [`PolicySpec`](crate::PolicySpec) with cluster
//!   bindings (`claimName`, `*SecretRef`); the status is [`BackupPolicyStatus`].
//! - [`RestoreRequest`]: one restore of one policy's snapshot, run at most once.
//!
//! Doc comments become `kubectl explain` text. Validation that the API server can do
//! (patterns, list keys, CEL rules) is in the schema; arca-operator repeats every check and
//! reports problems on the resource's status.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::policy::BackupPolicy;
use crate::policy::WorkloadRef;

/// API group of Arca's resources.
pub const GROUP: &str = "arca.dev";
/// API version of Arca's resources.
pub const VERSION: &str = "v1alpha1";

/// Annotation on a `BackupPolicy` that starts a backup now: any new value triggers one run
/// (the handled value is recorded in `status.lastManualTrigger`), e.g.
/// `kubectl annotate backuppolicy orthanc arca.dev/backup-now="$(date +%s)" --overwrite`.
pub const BACKUP_NOW_ANNOTATION: &str = "arca.dev/backup-now";

/// Condition types used on Arca's resources.
pub mod condition {
    /// The spec is valid and everything it references exists.
    pub const READY: &str = "Ready";
    /// The most recent backup run succeeded.
    pub const BACKUP_SUCCEEDED: &str = "BackupSucceeded";
    /// The newest successful snapshot is younger than the policy's `rpo`.
    pub const WITHIN_RPO: &str = "WithinRPO";
    /// The most recent scheduled verification (`spec.verify`) passed.
    pub const VERIFY_SUCCEEDED: &str = "VerifySucceeded";
    /// The restore finished successfully (RestoreRequest).
    pub const SUCCEEDED: &str = "Succeeded";
}

/// `status` values of a condition.
pub mod condition_status {
    /// The condition holds.
    pub const TRUE: &str = "True";
    /// The condition does not hold.
    pub const FALSE: &str = "False";
    /// Not known yet.
    pub const UNKNOWN: &str = "Unknown";
}

/// A point in time, serialized as RFC 3339 UTC with second precision
/// (`2026-11-23T03:15:00Z`), like Kubernetes' `metav1.Time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    /// `time` truncated to whole seconds (what survives a round trip through the API).
    pub fn new(time: DateTime<Utc>) -> Self {
        Self(DateTime::from_timestamp(time.timestamp(), 0).unwrap_or(time))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(time: DateTime<Utc>) -> Self {
        Self::new(time)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| Self(t.with_timezone(&Utc)))
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "An RFC 3339 time, e.g. 2026-11-23T03:15:00Z."
        })
    }
}

/// A condition, shaped like Kubernetes' `metav1.Condition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: Ready, BackupSucceeded, WithinRPO, VerifySucceeded or Succeeded.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed.
    pub last_transition_time: Timestamp,
    /// Machine-readable reason in CamelCase.
    pub reason: String,
    /// What happened and, when something is wrong, what to do.
    #[serde(default)]
    pub message: String,
}

/// Observed state of a `BackupPolicy`, written by arca-operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicyStatus {
    /// The `metadata.generation` the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One word for `kubectl get`: Pending, Running, Succeeded, Failed, Suspended or Invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Ready (spec valid, references exist), BackupSucceeded (last run), WithinRPO and,
    /// with spec.verify, VerifySucceeded (last verification).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The scheduled time of the most recent scheduled run that was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Timestamp>,
    /// When the next scheduled run is due (absent when suspended or unscheduled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Timestamp>,
    /// Id of the newest snapshot written by a successful run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_snapshot: Option<String>,
    /// When the newest successful run started, i.e. the point in time its snapshot holds;
    /// the RPO is measured from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<Timestamp>,
    /// The Job of the run in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_job: Option<String>,
    /// The last value of the `arca.dev/backup-now` annotation that started a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_manual_trigger: Option<String>,
    /// The most recent runs, newest first (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub recent_runs: Vec<RunRecord>,
    /// The most recent scheduled verification (spec.verify) of the newest snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verification: Option<Verification>,
    /// When the most recent successful verification finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_verification_time: Option<Timestamp>,
}

/// One finished verification: `arca verify --snapshot latest` in a Job, which re-reads every
/// artifact at every destination and compares its digests (and, when deep, restores it into
/// a scratch database or directory and compares the counts with the manifest).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// The Job that ran it.
    pub job: String,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// The scheduled time it ran for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Timestamp>,
    /// The snapshot verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Restored into scratch targets and counted, not only digests compared.
    #[serde(default)]
    pub deep: bool,
    /// Every artifact at every destination passed.
    #[serde(default)]
    pub ok: bool,
    /// What failed (shortened), or a summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One finished backup run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The Job that ran it.
    pub job: String,
    /// `schedule` or `manual`.
    pub trigger: String,
    /// Succeeded or Failed.
    pub result: String,
    /// The scheduled time (scheduled runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Timestamp>,
    /// When the backup started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Timestamp>,
    /// Whole seconds from start to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    /// The snapshot written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Stored bytes (compressed and encrypted, one destination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// Plain bytes before compression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_bytes: Option<i64>,
    /// What failed (shortened), or warnings of a successful run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A request to restore one snapshot of a `BackupPolicy`. It runs at most once; its spec
/// cannot change after creation. Create a new RestoreRequest to restore again.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "arca.dev",
    version = "v1alpha1",
    kind = "RestoreRequest",
    plural = "restorerequests",
    namespaced,
    status = "RestoreRequestStatus",
    derive = "PartialEq",
    shortname = "rreq",
    category = "arca",
    doc = "One restore of a BackupPolicy's snapshot (latest, an id, or the newest before a time), run once as a Job by arca-operator. The spec is immutable; create a new RestoreRequest to restore again.",
    printcolumn = r#"{"name": "Policy", "type": "string", "jsonPath": ".spec.policyRef.name"}"#,
    printcolumn = r#"{"name": "Snapshot", "type": "string", "jsonPath": ".status.snapshot"}"#,
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Completed", "type": "date", "jsonPath": ".status.completionTime"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self == oldSelf", "message": "a RestoreRequest cannot be changed once created: create a new one"},
    {"rule": "!has(self.before) || !has(self.snapshot) || self.snapshot == 'latest'", "message": "set either snapshot or before, not both"},
    {"rule": "!has(self.toDatabase) || size(self.components) == 1", "message": "toDatabase needs exactly one component in components"},
    {"rule": "!has(self.toClaim) || size(self.components) == 1", "message": "toClaim needs exactly one component in components"}
]))]
pub struct RestoreRequestSpec {
    /// The BackupPolicy (same namespace) whose snapshots, sources and secrets are used.
    pub policy_ref: PolicyRef,
    /// Snapshot to restore: `latest` (default; the newest ordinary snapshot) or an id such
    /// as 20261123T031500Z.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(r"^(latest|[0-9]{8}T[0-9]{6}Z(-[0-9]+)?)$"))]
    pub snapshot: Option<String>,
    /// Restore the newest snapshot that started before this RFC 3339 time instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("format" = "date-time"))]
    pub before: Option<String>,
    /// Components to restore (default: all of the policy's, roles first).
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 63)))]
    pub components: Vec<String>,
    /// Destination to read from (default: the first that holds the snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub from: Option<String>,
    /// Restore the one database component under this database name (created) instead of
    /// over the original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub to_database: Option<String>,
    /// Restore the one files or sqlite component into this claim instead of in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_claim: Option<ClaimTarget>,
    /// Take a safety snapshot of the current state before overwriting it (default true).
    #[serde(default = "default_true")]
    pub safety_backup: bool,
    /// For files components: delete files that are not in the snapshot, reproducing its
    /// exact state (paths matching the policy's excludes are kept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_newer_files: bool,
    /// Overwrite non-empty targets; needed for an in-place restore over existing data.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// Workloads scaled to zero during the restore and brought back afterwards (default:
    /// the policy's quiesce.scaleDown; an empty list scales nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub scale_down: Option<Vec<WorkloadRef>>,
}

fn default_true() -> bool {
    true
}

/// A reference to a BackupPolicy in the same namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRef {
    /// Name of the BackupPolicy.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A place inside a PersistentVolumeClaim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimTarget {
    /// Name of the PersistentVolumeClaim (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Relative path inside the claim: the directory that becomes the tree root (files), or
    /// the database file itself (sqlite). Default: the claim's root (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub sub_path: Option<String>,
}

/// Where a RestoreRequest is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RestorePhase {
    /// Waiting: for the policy, for another Job of the policy, or to start.
    Pending,
    /// The restore Job has been created (workloads may be scaling down).
    Running,
    /// Restored. Final.
    Succeeded,
    /// Not restored. Final: the request is never run again.
    Failed,
}

impl RestorePhase {
    /// Succeeded or Failed: nothing will ever run for this request again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }

    /// The name as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }
}

/// Observed state of a RestoreRequest, written by arca-operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRequestStatus {
    /// Pending, Running, Succeeded or Failed (final).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// The `metadata.generation` the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (request and policy valid) and Succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The restore Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// UID of the restore Job once created (a request whose Job vanished is never re-run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_uid: Option<String>,
    /// The snapshot restored (`latest` and `before` resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The safety snapshot of the state before the restore, if one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_snapshot: Option<String>,
    /// Per component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentOutcome>,
    /// When the restore Job was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    /// When the request reached Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Timestamp>,
    /// What happened, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One component's restore outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentOutcome {
    /// Component name.
    pub name: String,
    /// Restored.
    pub ok: bool,
    /// Bytes read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// Whole seconds taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    /// What failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn timestamps_round_trip_at_second_precision() {
        let t: Timestamp = serde_json::from_str("\"2026-11-23T04:15:00.123+01:00\"").unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-23T03:15:00Z\""
        );
        let again = Timestamp::new(t.0);
        assert_eq!(
            serde_json::to_string(&again).unwrap(),
            "\"2026-11-23T03:15:00Z\""
        );
    }

    #[test]
    fn restore_defaults_safety_backup_on() {
        let spec: RestoreRequestSpec =
            serde_json::from_value(serde_json::json!({"policyRef": {"name": "orthanc"}})).unwrap();
        assert!(spec.safety_backup);
        assert!(spec.snapshot.is_none());
        assert!(spec.components.is_empty());
    }

    #[test]
    fn restore_rejects_unknown_fields() {
        let err = serde_json::from_value::<RestoreRequestSpec>(
            serde_json::json!({"policyRef": {"name": "p"}, "snapshots": "latest"}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn crds_name_group_and_version() {
        let bp = BackupPolicy::crd();
        assert_eq!(bp.metadata.name.as_deref(), Some("backuppolicies.arca.dev"));
        let rr = RestoreRequest::crd();
        assert_eq!(
            rr.metadata.name.as_deref(),
            Some("restorerequests.arca.dev")
        );
        assert_eq!(rr.spec.versions[0].name, VERSION);
        assert_eq!(rr.spec.group, GROUP);
    }

    #[test]
    fn phases_know_when_they_are_final() {
        assert!(RestorePhase::Succeeded.is_terminal());
        assert!(RestorePhase::Failed.is_terminal());
        assert!(!RestorePhase::Running.is_terminal());
        assert_eq!(
            serde_json::to_string(&RestorePhase::Pending).unwrap(),
            "\"Pending\""
        );
    }
}
