//! Stable machine-readable outputs: `--result-file` summaries (read by the operator from
//! the terminated container, at most 4 KiB) and `arca snapshots --json`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::manifest::SnapshotReason;

/// Format tag of [`RunResult`].
pub const RESULT_FORMAT: &str = "arca-result/1";
/// Format tag of [`SnapshotList`].
pub const SNAPSHOTS_FORMAT: &str = "arca-snapshots/1";
/// Largest result the operator reads (the termination message limit).
pub const RESULT_MAX_BYTES: usize = 4096;

/// Outcome of one `arca` command.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// Always [`RESULT_FORMAT`].
    pub format: String,
    /// `backup`, `restore`, `verify` or `prune`.
    pub command: String,
    /// Policy name.
    pub policy: String,
    /// True only on full success.
    pub ok: bool,
    /// The snapshot written, restored or verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The pre-restore safety snapshot, if one was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_snapshot: Option<String>,
    /// Start of the run.
    pub started_at: Option<DateTime<Utc>>,
    /// End of the run.
    pub completed_at: Option<DateTime<Utc>>,
    /// Stored bytes (all components, one destination).
    #[serde(default)]
    pub bytes: u64,
    /// Plain bytes before compression.
    #[serde(default)]
    pub plain_bytes: u64,
    /// Per destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<DestinationResult>,
    /// Per component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentResult>,
    /// Warnings, shortened.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The error line, when not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One destination's outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationResult {
    /// Destination name.
    pub name: String,
    /// Its snapshot is complete (manifest written).
    pub ok: bool,
    /// What failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One component's outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentResult {
    /// Component name.
    pub name: String,
    /// Succeeded.
    pub ok: bool,
    /// Stored bytes.
    #[serde(default)]
    pub bytes: u64,
    /// Seconds taken.
    #[serde(default)]
    pub duration_seconds: f64,
    /// What failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RunResult {
    /// Serialize to JSON no larger than [`RESULT_MAX_BYTES`], dropping detail as needed.
    pub fn to_bounded_json(&self) -> String {
        let mut r = self.clone();
        let fits = |r: &RunResult| {
            serde_json::to_string(r)
                .map(|s| s.len())
                .unwrap_or(usize::MAX)
        };
        let shorten = |s: &mut String, n: usize| {
            if s.len() > n {
                let mut cut = n;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push('…');
            }
        };
        for w in &mut r.warnings {
            shorten(w, 200);
        }
        if let Some(e) = &mut r.error {
            shorten(e, 600);
        }
        for d in &mut r.destinations {
            if let Some(e) = &mut d.error {
                shorten(e, 300);
            }
        }
        for c in &mut r.components {
            if let Some(e) = &mut c.error {
                shorten(e, 300);
            }
        }
        while fits(&r) > RESULT_MAX_BYTES && !r.warnings.is_empty() {
            r.warnings.pop();
        }
        while fits(&r) > RESULT_MAX_BYTES && !r.components.is_empty() {
            r.components.pop();
        }
        while fits(&r) > RESULT_MAX_BYTES && !r.destinations.is_empty() {
            r.destinations.pop();
        }
        if fits(&r) > RESULT_MAX_BYTES {
            if let Some(e) = &mut r.error {
                shorten(e, 200);
            }
        }
        serde_json::to_string(&r).unwrap_or_default()
    }
}

/// `arca snapshots --json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotList {
    /// Always [`SNAPSHOTS_FORMAT`].
    pub format: String,
    /// Policy name.
    pub policy: String,
    /// Newest first.
    pub snapshots: Vec<SnapshotEntry>,
}

/// One snapshot as listed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotEntry {
    /// Snapshot id.
    pub snapshot: String,
    /// Why it was taken.
    pub reason: SnapshotReason,
    /// Capture start.
    pub started_at: Option<DateTime<Utc>>,
    /// Capture end.
    pub completed_at: Option<DateTime<Utc>>,
    /// Stored bytes.
    pub size: u64,
    /// Plain bytes.
    pub plain_size: u64,
    /// Component names.
    pub components: Vec<String>,
    /// Destinations that hold it.
    pub destinations: Vec<String>,
    /// Latest verification, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationSummary>,
}

/// Latest verification of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationSummary {
    /// When.
    pub at: Option<DateTime<Utc>>,
    /// Passed.
    pub ok: bool,
    /// Deep (restored and counted).
    pub deep: bool,
    /// Destination verified.
    pub destination: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_json_stays_under_the_limit() {
        let r = RunResult {
            format: RESULT_FORMAT.into(),
            command: "backup".into(),
            policy: "p".into(),
            error: Some("x".repeat(10_000)),
            warnings: (0..200)
                .map(|i| format!("warning {i} {}", "y".repeat(100)))
                .collect(),
            components: (0..100)
                .map(|i| ComponentResult {
                    name: format!("c{i}"),
                    error: Some("z".repeat(1000)),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let json = r.to_bounded_json();
        assert!(json.len() <= RESULT_MAX_BYTES, "{}", json.len());
        let back: RunResult = serde_json::from_str(&json).expect("valid json");
        assert_eq!(back.policy, "p");
        assert!(back.error.is_some());
    }
}
