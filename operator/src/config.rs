//! The operator's configuration: parsed once at start from flags and environment variables
//! (every flag has an `ARCA_*` variable), never read again inside a reconcile.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// `arca-operator`: reconciles BackupPolicy and RestoreRequest resources by running the
/// `arca` binary in Jobs.
#[derive(Debug, Clone, Parser)]
#[command(name = "arca-operator", version, about)]
pub struct Config {
    /// Image of the `arca` binary that Jobs run.
    #[arg(long, env = "ARCA_SIDECAR_IMAGE")]
    pub sidecar_image: String,

    /// Pull policy of the Job image (Always, IfNotPresent, Never; default: Kubernetes' own).
    #[arg(long, env = "ARCA_IMAGE_PULL_POLICY")]
    pub image_pull_policy: Option<String>,

    /// Image pull secrets for Job pods (comma-separated Secret names, in each namespace).
    #[arg(long, env = "ARCA_IMAGE_PULL_SECRETS", value_delimiter = ',')]
    pub image_pull_secrets: Vec<String>,

    /// Namespaces to watch (comma-separated); empty watches all namespaces.
    #[arg(long, env = "ARCA_WATCH_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// CPU request of Job containers.
    #[arg(long, env = "ARCA_JOB_CPU_REQUEST", default_value = "100m")]
    pub job_cpu_request: String,

    /// Memory request of Job containers.
    #[arg(long, env = "ARCA_JOB_MEMORY_REQUEST", default_value = "256Mi")]
    pub job_memory_request: String,

    /// CPU limit of Job containers (none by default: compression uses what is free).
    #[arg(long, env = "ARCA_JOB_CPU_LIMIT")]
    pub job_cpu_limit: Option<String>,

    /// Memory limit of Job containers.
    #[arg(long, env = "ARCA_JOB_MEMORY_LIMIT", default_value = "1Gi")]
    pub job_memory_limit: Option<String>,

    /// Seconds a finished Job (and its pod, with the result) is kept.
    #[arg(long, env = "ARCA_JOB_TTL_SECONDS", default_value_t = 86_400)]
    pub job_ttl_seconds: i32,

    /// Longest a Job may run, in seconds, before Kubernetes stops it.
    #[arg(long, env = "ARCA_JOB_DEADLINE_SECONDS", default_value_t = 43_200)]
    pub job_deadline_seconds: i64,

    /// User id Job containers run as (non-root; the arca image's own user is 10001); a
    /// policy can override it with the `arca.dev/run-as-user` annotation.
    #[arg(long, env = "ARCA_JOB_RUN_AS_USER", default_value_t = 10_001)]
    pub job_run_as_user: i64,

    /// Group id Job containers run as.
    #[arg(long, env = "ARCA_JOB_RUN_AS_GROUP", default_value_t = 10_001)]
    pub job_run_as_group: i64,

    /// fsGroup of Job pods (makes the 0400 secret files readable); 0 leaves it unset.
    #[arg(long, env = "ARCA_JOB_FS_GROUP", default_value_t = 10_001)]
    pub job_fs_group: i64,

    /// Service account of Job pods (its token is never mounted); default: the namespace's.
    #[arg(long, env = "ARCA_JOB_SERVICE_ACCOUNT")]
    pub job_service_account: Option<String>,

    /// Listen address of /metrics, /healthz and /readyz.
    #[arg(long, env = "ARCA_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Elect a leader through a coordination.k8s.io Lease (run several replicas safely).
    #[arg(long, env = "ARCA_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "ARCA_LEASE_NAME", default_value = "arca-operator")]
    pub lease_name: String,

    /// Namespace of the Lease (default: the operator pod's namespace).
    #[arg(long, env = "ARCA_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Seconds a leader holds the Lease without renewing it.
    #[arg(long, env = "ARCA_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,

    /// This replica's identity (default: the pod name from POD_NAME or HOSTNAME).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// The namespace the operator runs in (from the downward API).
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,

    /// Log format.
    #[arg(long, env = "ARCA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter (tracing's env-filter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,

    /// Reconciles run at the same time (per kind).
    #[arg(long, env = "ARCA_CONCURRENCY", default_value_t = 32)]
    pub concurrency: u16,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration value that does not make sense.
#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {message}")]
pub struct ConfigError {
    /// The flag.
    pub flag: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

/// Everything the Job builder needs from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSettings {
    /// Image of the `arca` binary.
    pub image: String,
    /// Pull policy.
    pub image_pull_policy: Option<String>,
    /// Pull secrets.
    pub image_pull_secrets: Vec<String>,
    /// Container resources.
    pub resources: ResourceRequirements,
    /// `ttlSecondsAfterFinished`.
    pub ttl_seconds_after_finished: i32,
    /// `activeDeadlineSeconds`.
    pub active_deadline_seconds: i64,
    /// Default `runAsUser`.
    pub run_as_user: i64,
    /// Default `runAsGroup`.
    pub run_as_group: i64,
    /// Default `fsGroup` (None: unset).
    pub fs_group: Option<i64>,
    /// Service account of Job pods.
    pub service_account: Option<String>,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            image: "ghcr.io/arca-backup/arca:latest".into(),
            image_pull_policy: None,
            image_pull_secrets: Vec::new(),
            resources: ResourceRequirements::default(),
            ttl_seconds_after_finished: 86_400,
            active_deadline_seconds: 43_200,
            run_as_user: 10_001,
            run_as_group: 10_001,
            fs_group: Some(10_001),
            service_account: None,
        }
    }
}

impl Config {
    /// Check values and derive the Job settings.
    pub fn job_settings(&self) -> Result<JobSettings, ConfigError> {
        let quantity =
            |flag: &'static str, value: Option<&String>| -> Result<Option<Quantity>, ConfigError> {
                let Some(v) = value.map(|v| v.trim()).filter(|v| !v.is_empty()) else {
                    return Ok(None);
                };
                if is_quantity(v) {
                    Ok(Some(Quantity(v.to_string())))
                } else {
                    Err(ConfigError {
                        flag,
                        message: format!("{v:?} is not a Kubernetes quantity such as 500m or 1Gi"),
                    })
                }
            };
        let mut requests = BTreeMap::new();
        let mut limits = BTreeMap::new();
        if let Some(q) = quantity("job-cpu-request", Some(&self.job_cpu_request))? {
            requests.insert("cpu".to_string(), q);
        }
        if let Some(q) = quantity("job-memory-request", Some(&self.job_memory_request))? {
            requests.insert("memory".to_string(), q);
        }
        if let Some(q) = quantity("job-cpu-limit", self.job_cpu_limit.as_ref())? {
            limits.insert("cpu".to_string(), q);
        }
        if let Some(q) = quantity("job-memory-limit", self.job_memory_limit.as_ref())? {
            limits.insert("memory".to_string(), q);
        }
        if self.sidecar_image.trim().is_empty() {
            return Err(ConfigError {
                flag: "sidecar-image",
                message: "name the image of the arca binary".into(),
            });
        }
        if self.job_ttl_seconds < 0 {
            return Err(ConfigError {
                flag: "job-ttl-seconds",
                message: "must be 0 or more".into(),
            });
        }
        if self.job_deadline_seconds <= 0 {
            return Err(ConfigError {
                flag: "job-deadline-seconds",
                message: "must be more than 0".into(),
            });
        }
        if self.job_run_as_user <= 0 {
            return Err(ConfigError {
                flag: "job-run-as-user",
                message: "jobs never run as root: use a non-zero user id".into(),
            });
        }
        if let Some(p) = &self.image_pull_policy {
            if !["Always", "IfNotPresent", "Never"].contains(&p.as_str()) {
                return Err(ConfigError {
                    flag: "image-pull-policy",
                    message: format!("{p:?}: use Always, IfNotPresent or Never"),
                });
            }
        }
        Ok(JobSettings {
            image: self.sidecar_image.trim().to_string(),
            image_pull_policy: self.image_pull_policy.clone(),
            image_pull_secrets: self
                .image_pull_secrets
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect(),
            resources: ResourceRequirements {
                requests: (!requests.is_empty()).then_some(requests),
                limits: (!limits.is_empty()).then_some(limits),
                ..Default::default()
            },
            ttl_seconds_after_finished: self.job_ttl_seconds,
            active_deadline_seconds: self.job_deadline_seconds,
            run_as_user: self.job_run_as_user,
            run_as_group: self.job_run_as_group,
            fs_group: (self.job_fs_group > 0).then_some(self.job_fs_group),
            service_account: self.job_service_account.clone().filter(|s| !s.is_empty()),
        })
    }

    /// Namespaces to watch; `None` means all.
    pub fn watched_namespaces(&self) -> Option<Vec<String>> {
        let list: Vec<String> = self
            .namespaces
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        (!list.is_empty()).then_some(list)
    }

    /// The leader-election identity of this replica.
    pub fn identity(&self) -> String {
        self.pod_name
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "arca-operator".into())
    }

    /// How long a leader holds the Lease.
    pub fn lease_duration(&self) -> Duration {
        Duration::from_secs(self.lease_duration_seconds.max(5))
    }
}

/// A Kubernetes resource quantity: a decimal number with an optional suffix.
fn is_quantity(s: &str) -> bool {
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    !number.is_empty()
        && number.parse::<f64>().is_ok()
        && [
            "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
        ]
        .contains(&suffix)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["arca-operator", "--sidecar-image", "arca:1"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).expect("parses")
    }

    #[test]
    fn defaults_make_safe_job_settings() {
        let s = parse(&[]).job_settings().unwrap();
        assert_eq!(s.image, "arca:1");
        assert_eq!(s.run_as_user, 10_001);
        assert_eq!(s.fs_group, Some(10_001));
        let requests = s.resources.requests.unwrap();
        assert_eq!(requests["cpu"], Quantity("100m".into()));
        assert_eq!(requests["memory"], Quantity("256Mi".into()));
        assert_eq!(
            s.resources.limits.unwrap()["memory"],
            Quantity("1Gi".into())
        );
    }

    #[test]
    fn namespaces_split_on_commas() {
        let c = parse(&["--namespaces", "clinic-a, clinic-b,"]);
        assert_eq!(
            c.watched_namespaces(),
            Some(vec!["clinic-a".to_string(), "clinic-b".to_string()])
        );
        assert_eq!(parse(&[]).watched_namespaces(), None);
    }

    #[test]
    fn rejects_bad_values() {
        let err = parse(&["--job-memory-limit", "lots"])
            .job_settings()
            .unwrap_err();
        assert_eq!(err.flag, "job-memory-limit");
        let err = parse(&["--job-run-as-user", "0"])
            .job_settings()
            .unwrap_err();
        assert!(err.message.contains("root"));
        let err = parse(&["--image-pull-policy", "Sometimes"])
            .job_settings()
            .unwrap_err();
        assert_eq!(err.flag, "image-pull-policy");
    }

    #[test]
    fn zero_fs_group_leaves_it_unset() {
        let s = parse(&["--job-fs-group", "0"]).job_settings().unwrap();
        assert_eq!(s.fs_group, None);
    }

    #[test]
    fn quantities() {
        for ok in ["1", "100m", "1.5Gi", "2G", "512Mi"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "m", "1 Gi", "1gb", "lots"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
