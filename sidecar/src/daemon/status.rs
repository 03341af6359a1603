//! What the daemon knows about each policy: shown on the status page, `/api/status`
//! (`arca-status/1`) and `/metrics`, and kept in the state directory as a run log.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Format tag of `/api/status`.
pub const STATUS_FORMAT: &str = "arca-status/1";
/// Runs shown per policy.
pub const RECENT_RUNS: usize = 10;
/// Run log lines kept per policy.
const LOG_KEEP: usize = 1000;

/// One run (backup or verify), as logged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// `backup` or `verify`.
    pub kind: String,
    /// `success` or `failure`.
    pub result: String,
    /// Snapshot written or verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub completed_at: DateTime<Utc>,
    /// Seconds.
    pub duration_seconds: f64,
    /// Stored bytes (one destination).
    #[serde(default)]
    pub bytes: u64,
    /// Plain bytes.
    #[serde(default)]
    pub plain_bytes: u64,
    /// Per component: name, stored and plain size.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentSize>,
    /// Warnings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The error line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A component's sizes in a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSize {
    /// Component.
    pub name: String,
    /// Stored bytes.
    pub size: u64,
    /// Plain bytes.
    pub plain_size: u64,
}

/// The newest good snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastSuccess {
    /// Snapshot id.
    pub snapshot: String,
    /// When it completed.
    pub completed_at: DateTime<Utc>,
    /// Stored bytes.
    pub bytes: u64,
}

/// One policy's status.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// Policy name.
    pub name: String,
    /// The policy's config is valid.
    pub ok: bool,
    /// Why it is not (config error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Cron schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Time zone.
    pub time_zone: String,
    /// Next scheduled run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<DateTime<Utc>>,
    /// A backup is running now.
    pub running: bool,
    /// RPO in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_seconds: Option<u64>,
    /// The newest good snapshot is younger than the RPO (None: no RPO set).
    pub within_rpo: Option<bool>,
    /// Age of the newest good snapshot in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_age_seconds: Option<i64>,
    /// Newest good snapshot.
    pub last_success: Option<LastSuccess>,
    /// Last backup run.
    pub last_run: Option<RunRecord>,
    /// Last verification run.
    pub last_verification: Option<RunRecord>,
    /// Complete snapshots at the first reachable destination.
    pub snapshot_count: u64,
    /// Recent runs, newest first.
    pub recent_runs: Vec<RunRecord>,
}

impl PolicyStatus {
    /// Recompute RPO fields at `now`.
    pub fn refresh_rpo(&mut self, now: DateTime<Utc>) {
        self.newest_age_seconds = self
            .last_success
            .as_ref()
            .map(|s| (now - s.completed_at).num_seconds().max(0));
        self.within_rpo = self.rpo_seconds.map(|rpo| {
            self.newest_age_seconds
                .is_some_and(|age| (age as u64) < rpo)
        });
    }

    /// Healthy at a glance: config ok, last run ok, within RPO (when set).
    pub fn healthy(&self) -> bool {
        self.ok
            && self.last_run.as_ref().is_none_or(|r| r.result == "success")
            && self.within_rpo != Some(false)
    }

    /// Fold a finished run in.
    pub fn record(&mut self, run: RunRecord) {
        if run.kind == "verify" {
            self.last_verification = Some(run.clone());
        } else {
            if run.result == "success" {
                if let Some(s) = &run.snapshot {
                    self.last_success = Some(LastSuccess {
                        snapshot: s.clone(),
                        completed_at: run.completed_at,
                        bytes: run.bytes,
                    });
                }
            }
            self.last_run = Some(run.clone());
        }
        self.recent_runs.insert(0, run);
        self.recent_runs.truncate(RECENT_RUNS);
    }
}

/// `/api/status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Always [`STATUS_FORMAT`].
    pub format: String,
    /// When this was produced.
    pub generated_at: Option<DateTime<Utc>>,
    /// Daemon start.
    pub started_at: Option<DateTime<Utc>>,
    /// Per policy, in config order.
    pub policies: Vec<PolicyStatus>,
}

/// The run log of a policy: `<state>/runs-<policy>.jsonl`.
pub fn log_path(state_dir: &Path, policy: &str) -> PathBuf {
    state_dir.join(format!("runs-{policy}.jsonl"))
}

/// Append a run to the log, trimming it to the last lines.
pub fn append_log(state_dir: &Path, policy: &str, run: &RunRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let path = log_path(state_dir, policy);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let mut line = serde_json::to_vec(run).map_err(std::io::Error::other)?;
    line.push(b'\n');
    f.write_all(&line)?;
    f.sync_data()?;
    drop(f);
    let runs = read_log(state_dir, policy, usize::MAX);
    if runs.len() > LOG_KEEP * 2 {
        let keep: Vec<u8> = runs[runs.len() - LOG_KEEP..]
            .iter()
            .flat_map(|r| {
                let mut l = serde_json::to_vec(r).unwrap_or_default();
                l.push(b'\n');
                l
            })
            .collect();
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, keep)?;
        std::fs::rename(tmp, &path)?;
    }
    Ok(())
}

/// The last `n` runs of a policy, oldest first.
pub fn read_log(state_dir: &Path, policy: &str, n: usize) -> Vec<RunRecord> {
    let Ok(f) = std::fs::File::open(log_path(state_dir, policy)) else {
        return vec![];
    };
    let all: Vec<RunRecord> = std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let start = all.len().saturating_sub(n);
    all[start..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: &str, result: &str, at: i64) -> RunRecord {
        let t = DateTime::from_timestamp(at, 0).unwrap_or_default();
        RunRecord {
            kind: kind.into(),
            result: result.into(),
            snapshot: Some(format!("s{at}")),
            started_at: t,
            completed_at: t,
            ..Default::default()
        }
    }

    #[test]
    fn rpo_and_health_follow_the_newest_good_snapshot() {
        let mut s = PolicyStatus {
            ok: true,
            rpo_seconds: Some(3600),
            ..Default::default()
        };
        let now = DateTime::from_timestamp(10_000, 0).unwrap_or_default();
        s.refresh_rpo(now);
        assert_eq!(
            s.within_rpo,
            Some(false),
            "no snapshot at all breaches the RPO"
        );
        s.record(run("backup", "success", 9_000));
        s.refresh_rpo(now);
        assert_eq!(s.within_rpo, Some(true));
        assert!(s.healthy());
        s.record(run("backup", "failure", 9_500));
        s.refresh_rpo(now);
        assert_eq!(
            s.last_success.as_ref().map(|l| l.snapshot.as_str()),
            Some("s9000")
        );
        assert!(!s.healthy(), "a failed last run is red");
        s.record(run("verify", "success", 9_600));
        assert_eq!(
            s.last_run.as_ref().map(|r| r.result.as_str()),
            Some("failure")
        );
        s.refresh_rpo(DateTime::from_timestamp(20_000, 0).unwrap_or_default());
        assert_eq!(s.within_rpo, Some(false));
    }

    #[test]
    fn run_log_round_trips() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        for i in 0..5 {
            append_log(dir.path(), "p", &run("backup", "success", i))?;
        }
        let last = read_log(dir.path(), "p", 2);
        assert_eq!(last.len(), 2);
        assert_eq!(last[1].snapshot.as_deref(), Some("s4"));
        Ok(())
    }
}
