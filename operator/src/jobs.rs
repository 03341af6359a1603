//! The Job builder: pure functions from a validated resource (plus the operator's settings
//! and what the reconciler decided) to the Job and ConfigMap it creates. No client, no
//! clock: every Job the operator creates can be built and inspected in a unit test.
//!
//! Every Job runs the `arca` image non-root with a read-only root filesystem, no
//! capabilities, the RuntimeDefault seccomp profile and no service-account token; its only
//! writable places are `/tmp` (an emptyDir) and the claims it must write. The result comes
//! back through `/dev/termination-log`.

use std::collections::BTreeMap;

use arca_api::config::{ConfigFile, NamedPolicy};
use arca_api::crd::{BackupPolicy, RestoreRequest, RestoreRequestSpec, Timestamp};
use arca_api::{PolicySpec, WorkloadRef};
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource,
    EnvVar, KeyToPath, LocalObjectReference, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile,
    SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::config::JobSettings;
use crate::constants::{annotations, config_keys, labels, paths, triggers, CONTAINER_NAME};
use crate::error::{Error, Result};
use crate::render::Rendered;
use crate::scheduling::Due;

/// Longest Kubernetes name used as a label value or a Job name (DNS-1123 label).
const MAX_LABEL: usize = 63;

/// Where a Job must run: the node of the pod that mounts a ReadWriteOnce claim it needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// Node name to pin to.
    pub node: Option<String>,
    /// Tolerations copied from that pod, so the Job tolerates the node's taints too.
    pub tolerations: Vec<Toleration>,
}

/// Security settings of one Job (the operator's defaults, optionally overridden by the
/// policy's annotations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// `runAsUser` (never 0).
    pub user: i64,
    /// `runAsGroup`.
    pub group: i64,
    /// `fsGroup`.
    pub fs_group: Option<i64>,
}

/// The run-as settings for a policy: the defaults, overridden by the `arca.dev/run-as-user`,
/// `arca.dev/run-as-group` and `arca.dev/fs-group` annotations.
pub fn run_as(
    settings: &JobSettings,
    annotations_of_policy: Option<&BTreeMap<String, String>>,
) -> std::result::Result<RunAs, String> {
    let mut r = RunAs {
        user: settings.run_as_user,
        group: settings.run_as_group,
        fs_group: settings.fs_group,
    };
    let Some(a) = annotations_of_policy else {
        return Ok(r);
    };
    let id = |key: &str, v: &str| -> std::result::Result<i64, String> {
        v.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("annotation {key}: {v:?} is not a positive numeric id"))
    };
    if let Some(v) = a.get(annotations::RUN_AS_USER) {
        r.user = id(annotations::RUN_AS_USER, v)?;
    }
    if let Some(v) = a.get(annotations::RUN_AS_GROUP) {
        r.group = id(annotations::RUN_AS_GROUP, v)?;
    }
    if let Some(v) = a.get(annotations::FS_GROUP) {
        r.fs_group = if v.trim() == "none" {
            None
        } else {
            Some(id(annotations::FS_GROUP, v)?)
        };
    }
    Ok(r)
}

/// 64-bit FNV-1a: a stable short hash for names (no dependency, same on every platform).
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `name` if at most `max` bytes, else its first bytes and a hash of the whole, so distinct
/// names stay distinct.
pub fn fit_name(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let hash = format!("{:07x}", fnv1a(name) & 0xfff_ffff);
    let keep = max.saturating_sub(hash.len() + 1);
    let prefix = name[..keep].trim_end_matches(['-', '.']);
    format!("{prefix}-{hash}")
}

/// The value for a label naming `name` (at most 63 characters).
pub fn label_value(name: &str) -> String {
    fit_name(name, MAX_LABEL)
}

/// The Job name of a backup run: `<policy>-<YYYYMMDDHHMM>` for scheduled runs (one Job per
/// scheduled time, so a retry never starts a second run), `<policy>-now-<YYYYMMDDHHMM>-<hash
/// of the trigger value>` for a manual run started at `now` (a value used again later gets
/// a new Job).
pub fn backup_job_name(policy: &str, due: &Due, now: DateTime<Utc>) -> String {
    match (&due.scheduled, &due.manual) {
        (Some(t), _) => format!("{}-{}", fit_name(policy, 50), t.format("%Y%m%d%H%M")),
        (None, Some(value)) => format!(
            "{}-now-{}-{:08x}",
            fit_name(policy, 37),
            now.format("%Y%m%d%H%M"),
            fnv1a(value) & 0xffff_ffff
        ),
        (None, None) => format!("{}-{}", fit_name(policy, 50), now.format("%Y%m%d%H%M")),
    }
}

/// The Job name of a scheduled verification: `<policy>-verify-<YYYYMMDDHHMM>` (one Job per
/// scheduled time).
pub fn verify_job_name(policy: &str, scheduled: DateTime<Utc>) -> String {
    format!(
        "{}-verify-{}",
        fit_name(policy, 43),
        scheduled.format("%Y%m%d%H%M")
    )
}

/// The Job name of a restore: `<request>-restore`.
pub fn restore_job_name(request: &str) -> String {
    format!("{}-restore", fit_name(request, 55))
}

/// The ConfigMap holding a policy's rendered config files.
pub fn config_map_name(policy: &str) -> String {
    format!("arca-{policy}")
}

/// The config file a Job reads: the rendered policy as the only entry of an `arca.yaml`.
pub fn config_yaml(policy: &str, rendered: &PolicySpec) -> Result<String> {
    let file = ConfigFile {
        daemon: None,
        policies: vec![NamedPolicy {
            name: policy.to_string(),
            spec: rendered.clone(),
        }],
    };
    serde_yaml::to_string(&file).map_err(Error::Render)
}

fn owner_ref<K: Resource<DynamicType = ()>>(obj: &K) -> Result<OwnerReference> {
    let meta = obj.meta();
    Ok(OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: meta.name.clone().ok_or(Error::MissingObjectKey("name"))?,
        uid: meta.uid.clone().ok_or(Error::MissingObjectKey("uid"))?,
        controller: Some(true),
        block_owner_deletion: None,
    })
}

fn common_labels(policy: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.into(), labels::APP_NAME.into()),
        (labels::COMPONENT.into(), component.into()),
        (labels::INSTANCE.into(), label_value(policy)),
        (labels::MANAGED_BY.into(), labels::MANAGER.into()),
        (labels::POLICY.into(), label_value(policy)),
    ])
}

/// The ConfigMap with both config files of `policy`, owned by the policy. It holds paths,
/// never secret values.
pub fn config_map(
    policy: &BackupPolicy,
    backup_yaml: String,
    restore_yaml: String,
) -> Result<ConfigMap> {
    let name = policy
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingObjectKey("name"))?;
    Ok(ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(&name)),
            namespace: policy.meta().namespace.clone(),
            labels: Some(common_labels(&name, labels::COMPONENT_BACKUP)),
            owner_references: Some(vec![owner_ref(policy)?]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            (config_keys::BACKUP.into(), backup_yaml),
            (config_keys::RESTORE.into(), restore_yaml),
        ])),
        ..Default::default()
    })
}

/// Everything a Job needs beyond its arguments.
#[derive(Debug, Clone)]
pub struct JobParts<'a> {
    /// The rendered bindings (volumes and mounts).
    pub rendered: &'a Rendered,
    /// Operator settings.
    pub settings: &'a JobSettings,
    /// Run-as ids.
    pub run_as: RunAs,
    /// Node pinning.
    pub placement: &'a Placement,
    /// Create the Job suspended (workloads are scaled down first).
    pub suspend: bool,
    /// Workloads scaled down for this Job (recorded on the Job).
    pub scale_down: &'a [WorkloadRef],
}

/// `Deployment/a,StatefulSet/b`.
pub fn format_workloads(list: &[WorkloadRef]) -> String {
    list.iter()
        .map(|w| format!("{}/{}", w.kind, w.name))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parse [`format_workloads`] output.
pub fn parse_workloads(text: &str) -> Vec<WorkloadRef> {
    text.split(',')
        .filter_map(|w| w.trim().split_once('/'))
        .map(|(kind, name)| WorkloadRef {
            kind: kind.to_string(),
            name: name.to_string(),
        })
        .collect()
}

/// The backup Job of `policy` for `due`, started at `now`.
pub fn backup_job(
    policy: &BackupPolicy,
    due: &Due,
    now: DateTime<Utc>,
    parts: &JobParts<'_>,
) -> Result<Job> {
    let name = policy
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingObjectKey("name"))?;
    let job_name = backup_job_name(&name, due, now);
    let mut annotations = BTreeMap::new();
    match (&due.scheduled, &due.manual) {
        (_, Some(v)) => {
            annotations.insert(
                annotations::TRIGGER.to_string(),
                triggers::MANUAL.to_string(),
            );
            annotations.insert(annotations::MANUAL_TRIGGER.to_string(), v.clone());
        }
        _ => {
            annotations.insert(
                annotations::TRIGGER.to_string(),
                triggers::SCHEDULE.to_string(),
            );
        }
    }
    if let Some(t) = due.scheduled {
        annotations.insert(
            annotations::SCHEDULED_TIME.to_string(),
            Timestamp::new(t).to_string(),
        );
    }
    let args = vec![
        "backup".to_string(),
        "--config".into(),
        paths::CONFIG_FILE.into(),
        "--result-file".into(),
        paths::TERMINATION_LOG.into(),
    ];
    build_job(
        policy,
        &name,
        labels::COMPONENT_BACKUP,
        &job_name,
        annotations,
        config_keys::BACKUP,
        args,
        parts,
        BTreeMap::new(),
    )
}

/// The arguments of `arca verify` for the newest snapshot.
pub fn verify_args(deep: bool) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "verify".into(),
        "--config".into(),
        paths::CONFIG_FILE.into(),
        "--snapshot".into(),
        "latest".into(),
    ];
    if deep {
        args.push("--deep".into());
    }
    args.push("--result-file".into());
    args.push(paths::TERMINATION_LOG.into());
    args
}

/// The verify Job of `policy` for its scheduled time `scheduled`: `arca verify` of the
/// newest snapshot at every destination, reading the restore config (with the age
/// identity). `parts.rendered` is the policy rendered in [`crate::render::Mode::Verify`].
pub fn verify_job(
    policy: &BackupPolicy,
    scheduled: DateTime<Utc>,
    deep: bool,
    parts: &JobParts<'_>,
) -> Result<Job> {
    let name = policy
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingObjectKey("name"))?;
    let job_name = verify_job_name(&name, scheduled);
    let annotations = BTreeMap::from([
        (
            annotations::TRIGGER.to_string(),
            triggers::SCHEDULE.to_string(),
        ),
        (
            annotations::SCHEDULED_TIME.to_string(),
            Timestamp::new(scheduled).to_string(),
        ),
        (annotations::VERIFY_DEEP.to_string(), deep.to_string()),
    ]);
    build_job(
        policy,
        &name,
        labels::COMPONENT_VERIFY,
        &job_name,
        annotations,
        config_keys::RESTORE,
        verify_args(deep),
        parts,
        BTreeMap::new(),
    )
}

/// True for a verify Job (by its component label).
pub fn is_verify_job(job: &Job) -> bool {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::COMPONENT))
        .is_some_and(|c| c == labels::COMPONENT_VERIFY)
}

/// The arguments of `arca restore` for `spec` on policy `policy`.
pub fn restore_args(policy: &str, spec: &RestoreRequestSpec, to_path: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "restore".into(),
        "--config".into(),
        paths::CONFIG_FILE.into(),
        "--policy".into(),
        policy.into(),
    ];
    match (&spec.before, &spec.snapshot) {
        (Some(before), None) => {
            args.push("--before".into());
            args.push(before.clone());
        }
        (Some(before), Some(s)) if s == "latest" => {
            args.push("--before".into());
            args.push(before.clone());
        }
        (_, Some(s)) => {
            args.push("--snapshot".into());
            args.push(s.clone());
        }
        (None, None) => {
            args.push("--snapshot".into());
            args.push("latest".into());
        }
    }
    for c in &spec.components {
        args.push("--component".into());
        args.push(c.clone());
    }
    if let Some(from) = &spec.from {
        args.push("--from".into());
        args.push(from.clone());
    }
    if let Some(db) = &spec.to_database {
        args.push("--to-database".into());
        args.push(db.clone());
    }
    if let Some(p) = to_path {
        args.push("--to-path".into());
        args.push(p.to_string());
    }
    if spec.delete_newer_files {
        args.push("--delete-newer".into());
    }
    if !spec.safety_backup {
        args.push("--no-safety-backup".into());
    }
    if spec.force {
        args.push("--force".into());
    }
    args.push("--result-file".into());
    args.push(paths::TERMINATION_LOG.into());
    args
}

/// The restore Job of `request` on policy `policy_name`.
pub fn restore_job(
    request: &RestoreRequest,
    policy_name: &str,
    parts: &JobParts<'_>,
) -> Result<Job> {
    let name = request
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingObjectKey("name"))?;
    let job_name = restore_job_name(&name);
    let args = restore_args(
        policy_name,
        &request.spec,
        parts.rendered.to_path.as_deref(),
    );
    build_job(
        request,
        policy_name,
        labels::COMPONENT_RESTORE,
        &job_name,
        BTreeMap::new(),
        config_keys::RESTORE,
        args,
        parts,
        BTreeMap::from([(labels::RESTORE.to_string(), label_value(&name))]),
    )
}

#[allow(clippy::too_many_arguments)]
fn build_job<K: Resource<DynamicType = ()>>(
    owner: &K,
    policy: &str,
    component: &str,
    job_name: &str,
    mut job_annotations: BTreeMap<String, String>,
    config_key: &str,
    args: Vec<String>,
    parts: &JobParts<'_>,
    extra_labels: BTreeMap<String, String>,
) -> Result<Job> {
    let namespace = owner
        .meta()
        .namespace
        .clone()
        .ok_or(Error::MissingObjectKey("namespace"))?;
    let mut job_labels = common_labels(policy, component);
    job_labels.extend(extra_labels);
    let mut pod_labels = job_labels.clone();
    pod_labels.insert(labels::JOB.into(), job_name.to_string());
    if !parts.scale_down.is_empty() {
        job_annotations.insert(
            annotations::SCALE_DOWN.to_string(),
            format_workloads(parts.scale_down),
        );
    }

    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(policy),
                items: Some(vec![KeyToPath {
                    key: config_key.to_string(),
                    path: paths::CONFIG_NAME.into(),
                    mode: None,
                }]),
                default_mode: Some(0o444),
                optional: Some(false),
            }),
            ..Default::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ];
    volumes.extend(parts.rendered.volumes.iter().cloned());
    let mut mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: paths::CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: "tmp".into(),
            mount_path: paths::TMP.into(),
            ..Default::default()
        },
    ];
    mounts.extend(parts.rendered.mounts.iter().cloned());

    let s = parts.settings;
    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(s.image.clone()),
        image_pull_policy: s.image_pull_policy.clone(),
        args: Some(args),
        env: Some(vec![
            EnvVar {
                name: "TMPDIR".into(),
                value: Some(paths::TMP.into()),
                ..Default::default()
            },
            EnvVar {
                name: "HOME".into(),
                value: Some(paths::TMP.into()),
                ..Default::default()
            },
            // The image's state dir is on the read-only root filesystem; a Job keeps none.
            EnvVar {
                name: "ARCA_STATE_DIR".into(),
                value: Some(paths::STATE.into()),
                ..Default::default()
            },
        ]),
        resources: Some(s.resources.clone()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        termination_message_path: Some(paths::TERMINATION_LOG.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(mounts),
        ..Default::default()
    };

    let affinity = parts.placement.node.as_ref().map(|node| Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_fields: Some(vec![NodeSelectorRequirement {
                        key: "metadata.name".into(),
                        operator: "In".into(),
                        values: Some(vec![node.clone()]),
                    }]),
                    match_expressions: None,
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    });

    let pod = PodSpec {
        restart_policy: Some("Never".into()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        service_account_name: s.service_account.clone(),
        image_pull_secrets: (!s.image_pull_secrets.is_empty()).then(|| {
            s.image_pull_secrets
                .iter()
                .map(|n| LocalObjectReference { name: n.clone() })
                .collect()
        }),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(parts.run_as.user),
            run_as_group: Some(parts.run_as.group),
            fs_group: parts.run_as.fs_group,
            // NB: never chown a whole data volume on every run.
            fs_group_change_policy: parts.run_as.fs_group.map(|_| "OnRootMismatch".into()),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        affinity,
        tolerations: (!parts.placement.tolerations.is_empty())
            .then(|| parts.placement.tolerations.clone()),
        volumes: Some(volumes),
        containers: vec![container],
        ..Default::default()
    };

    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name.to_string()),
            namespace: Some(namespace),
            labels: Some(job_labels),
            annotations: (!job_annotations.is_empty()).then_some(job_annotations),
            owner_references: Some(vec![owner_ref(owner)?]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            ttl_seconds_after_finished: Some(s.ttl_seconds_after_finished),
            active_deadline_seconds: Some(s.active_deadline_seconds),
            suspend: Some(parts.suspend),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::render::{render, Mode};
    use crate::testdata;
    use arca_api::crd::{ClaimTarget, PolicyRef};
    use chrono::{TimeZone, Utc};

    fn settings() -> JobSettings {
        JobSettings {
            image: "ghcr.io/arca-backup/arca:1.0".into(),
            ..Default::default()
        }
    }

    fn scheduled() -> Due {
        Due {
            scheduled: Some(
                Utc.with_ymd_and_hms(2026, 11, 23, 2, 15, 0)
                    .single()
                    .unwrap(),
            ),
            manual: None,
        }
    }

    fn build(spec: arca_api::PolicySpec, placement: Placement, suspend: bool) -> Job {
        let policy = testdata::policy("orthanc", spec.clone());
        let rendered = render(&spec, &Mode::Backup);
        let s = settings();
        let scale = spec.quiesce.clone().unwrap_or_default().scale_down;
        let parts = JobParts {
            rendered: &rendered,
            settings: &s,
            run_as: run_as(&s, None).unwrap(),
            placement: &placement,
            suspend,
            scale_down: &scale,
        };
        backup_job(&policy, &scheduled(), now(), &parts).unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 30)
            .single()
            .unwrap()
    }

    fn pod(job: &Job) -> &PodSpec {
        job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn container(job: &Job) -> &Container {
        &pod(job).containers[0]
    }

    #[test]
    fn runs_arca_backup_with_the_result_in_the_termination_log() {
        let job = build(testdata::full_spec(), Placement::default(), false);
        let c = container(&job);
        assert_eq!(c.image.as_deref(), Some("ghcr.io/arca-backup/arca:1.0"));
        assert_eq!(
            c.args.as_ref().unwrap(),
            &vec![
                "backup",
                "--config",
                "/etc/arca/job.yaml",
                "--result-file",
                "/dev/termination-log"
            ]
        );
        assert_eq!(
            c.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        assert_eq!(
            c.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
    }

    #[test]
    fn is_locked_down() {
        let job = build(testdata::full_spec(), Placement::default(), false);
        let p = pod(&job);
        assert_eq!(p.automount_service_account_token, Some(false));
        assert_eq!(p.restart_policy.as_deref(), Some("Never"));
        let psc = p.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(10_001));
        assert_eq!(psc.fs_group, Some(10_001));
        assert_eq!(
            psc.fs_group_change_policy.as_deref(),
            Some("OnRootMismatch")
        );
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let sc = container(&job).security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
            &vec!["ALL".to_string()]
        );
    }

    #[test]
    fn one_attempt_a_deadline_and_a_ttl() {
        let job = build(testdata::full_spec(), Placement::default(), false);
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.ttl_seconds_after_finished, Some(86_400));
        assert_eq!(spec.active_deadline_seconds, Some(43_200));
        assert_eq!(spec.suspend, Some(false));
    }

    #[test]
    fn tmp_is_an_empty_dir_and_tmpdir_points_there() {
        let job = build(testdata::full_spec(), Placement::default(), false);
        let p = pod(&job);
        let tmp = p
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "tmp")
            .unwrap();
        assert!(tmp.empty_dir.is_some());
        let c = container(&job);
        let m = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "tmp")
            .unwrap();
        assert_eq!(m.mount_path, "/tmp");
        let env = c.env.as_ref().unwrap();
        assert!(env
            .iter()
            .any(|e| e.name == "TMPDIR" && e.value.as_deref() == Some("/tmp")));
        assert!(env
            .iter()
            .any(|e| e.name == "ARCA_STATE_DIR" && e.value.as_deref() == Some("/tmp/arca-state")));
    }

    #[test]
    fn config_comes_from_the_policy_config_map() {
        let job = build(testdata::full_spec(), Placement::default(), false);
        let p = pod(&job);
        let cfg = p
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "config")
            .unwrap();
        let cm = cfg.config_map.as_ref().unwrap();
        assert_eq!(cm.name, "arca-orthanc");
        let item = &cm.items.as_ref().unwrap()[0];
        assert_eq!(
            (item.key.as_str(), item.path.as_str()),
            ("backup.yaml", "job.yaml")
        );
        let m = container(&job)
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "config")
            .unwrap();
        assert_eq!(
            (m.mount_path.as_str(), m.read_only),
            ("/etc/arca", Some(true))
        );
    }

    #[test]
    fn resources_and_image_settings_come_from_the_operator() {
        let policy = testdata::policy("p", testdata::simple_spec());
        let rendered = render(&testdata::simple_spec(), &Mode::Backup);
        let mut s = settings();
        s.resources.limits = Some(BTreeMap::from([(
            "memory".to_string(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("2Gi".into()),
        )]));
        s.image_pull_policy = Some("Always".into());
        s.image_pull_secrets = vec!["registry".into()];
        s.service_account = Some("arca-job".into());
        let parts = JobParts {
            rendered: &rendered,
            settings: &s,
            run_as: run_as(&s, None).unwrap(),
            placement: &Placement::default(),
            suspend: false,
            scale_down: &[],
        };
        let job = backup_job(&policy, &scheduled(), now(), &parts).unwrap();
        let c = container(&job);
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(
            c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
            "2Gi"
        );
        let p = pod(&job);
        assert_eq!(p.service_account_name.as_deref(), Some("arca-job"));
        assert_eq!(p.image_pull_secrets.as_ref().unwrap()[0].name, "registry");
    }

    #[test]
    fn labelled_annotated_and_owned_by_the_policy() {
        let job = build(testdata::full_spec(), Placement::default(), false);
        let meta = &job.metadata;
        assert_eq!(meta.name.as_deref(), Some("orthanc-202611230215"));
        assert_eq!(meta.namespace.as_deref(), Some("clinic"));
        let l = meta.labels.as_ref().unwrap();
        assert_eq!(l["app.kubernetes.io/name"], "arca");
        assert_eq!(l["app.kubernetes.io/managed-by"], "arca-operator");
        assert_eq!(l["app.kubernetes.io/component"], "backup");
        assert_eq!(l["arca.dev/policy"], "orthanc");
        let a = meta.annotations.as_ref().unwrap();
        assert_eq!(a["arca.dev/trigger"], "schedule");
        assert_eq!(a["arca.dev/scheduled-time"], "2026-11-23T02:15:00Z");
        assert_eq!(a["arca.dev/scale-down"], "Deployment/orthanc");
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "BackupPolicy");
        assert_eq!(owner.api_version, "arca.dev/v1alpha1");
        assert_eq!(owner.uid, "uid-orthanc");
        assert_eq!(owner.controller, Some(true));
        let pod_labels = job
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(pod_labels["arca.dev/job"], "orthanc-202611230215");
    }

    #[test]
    fn manual_runs_are_marked() {
        let policy = testdata::policy("orthanc", testdata::simple_spec());
        let rendered = render(&testdata::simple_spec(), &Mode::Backup);
        let s = settings();
        let parts = JobParts {
            rendered: &rendered,
            settings: &s,
            run_as: run_as(&s, None).unwrap(),
            placement: &Placement::default(),
            suspend: false,
            scale_down: &[],
        };
        let due = Due {
            scheduled: None,
            manual: Some("2026-11-23T10:00".into()),
        };
        let job = backup_job(&policy, &due, now(), &parts).unwrap();
        let a = job.metadata.annotations.as_ref().unwrap();
        assert_eq!(a["arca.dev/trigger"], "manual");
        assert_eq!(a["arca.dev/manual-trigger"], "2026-11-23T10:00");
        assert!(!a.contains_key("arca.dev/scheduled-time"));
        let name = job.metadata.name.as_ref().unwrap();
        assert!(name.starts_with("orthanc-now-202611231000-"), "{name}");
        // The same value an hour later is another run with another Job.
        let later = backup_job_name("orthanc", &due, now() + chrono::TimeDelta::hours(1));
        assert_ne!(&later, name);
    }

    #[test]
    fn pinned_to_the_node_of_the_rwo_claim_with_its_tolerations() {
        let placement = Placement {
            node: Some("node-b".into()),
            tolerations: vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Equal".into()),
                value: Some("pacs".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }],
        };
        let job = build(testdata::full_spec(), placement, false);
        let p = pod(&job);
        let term = &p
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms[0];
        let field = &term.match_fields.as_ref().unwrap()[0];
        assert_eq!(field.key, "metadata.name");
        assert_eq!(field.values.as_ref().unwrap(), &vec!["node-b".to_string()]);
        assert_eq!(
            p.tolerations.as_ref().unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        let unpinned = build(testdata::full_spec(), Placement::default(), false);
        assert!(pod(&unpinned).affinity.is_none());
    }

    #[test]
    fn cold_backups_start_suspended() {
        let job = build(testdata::full_spec(), Placement::default(), true);
        assert_eq!(job.spec.as_ref().unwrap().suspend, Some(true));
    }

    #[test]
    fn run_as_overrides_from_annotations() {
        let s = settings();
        let a = BTreeMap::from([
            (annotations::RUN_AS_USER.to_string(), "1000".to_string()),
            (annotations::FS_GROUP.to_string(), "none".to_string()),
        ]);
        let r = run_as(&s, Some(&a)).unwrap();
        assert_eq!((r.user, r.group, r.fs_group), (1000, 10_001, None));
        let bad = BTreeMap::from([(annotations::RUN_AS_USER.to_string(), "0".to_string())]);
        assert!(run_as(&s, Some(&bad))
            .unwrap_err()
            .contains("arca.dev/run-as-user"));
    }

    fn verify(spec: arca_api::PolicySpec, deep: bool) -> Job {
        let policy = testdata::policy("orthanc", spec.clone());
        let rendered = render(&spec, &Mode::Verify);
        let s = settings();
        let parts = JobParts {
            rendered: &rendered,
            settings: &s,
            run_as: run_as(&s, None).unwrap(),
            placement: &Placement::default(),
            suspend: false,
            scale_down: &[],
        };
        verify_job(&policy, scheduled().scheduled.unwrap(), deep, &parts).unwrap()
    }

    #[test]
    fn verify_job_runs_arca_verify_of_the_latest_snapshot() {
        let job = verify(testdata::full_spec(), true);
        assert_eq!(
            container(&job).args.as_ref().unwrap().join(" "),
            "verify --config /etc/arca/job.yaml --snapshot latest --deep --result-file /dev/termination-log"
        );
        let shallow = verify(testdata::full_spec(), false);
        assert!(!container(&shallow)
            .args
            .as_ref()
            .unwrap()
            .contains(&"--deep".to_string()));
        let meta = &job.metadata;
        assert_eq!(meta.name.as_deref(), Some("orthanc-verify-202611230215"));
        let l = meta.labels.as_ref().unwrap();
        assert_eq!(l["app.kubernetes.io/component"], "verify");
        assert_eq!(l["arca.dev/policy"], "orthanc");
        let a = meta.annotations.as_ref().unwrap();
        assert_eq!(a["arca.dev/scheduled-time"], "2026-11-23T02:15:00Z");
        assert_eq!(a["arca.dev/verify-deep"], "true");
        assert!(!a.contains_key("arca.dev/scale-down"));
        assert_eq!(
            meta.owner_references.as_ref().unwrap()[0].kind,
            "BackupPolicy"
        );
        assert!(is_verify_job(&job));
        assert!(!is_verify_job(&build(
            testdata::full_spec(),
            Placement::default(),
            false
        )));
        // Never suspended: a verification scales nothing down.
        assert_eq!(job.spec.as_ref().unwrap().suspend, Some(false));
    }

    #[test]
    fn verify_job_mounts_the_identity_read_only_and_no_source() {
        let job = verify(testdata::full_spec(), true);
        let p = pod(&job);
        let volumes = p.volumes.as_ref().unwrap();
        let identity = volumes
            .iter()
            .find(|v| {
                v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("age-identity")
            })
            .expect("the age identity is mounted");
        let secret = identity.secret.as_ref().unwrap();
        assert_eq!(secret.default_mode, Some(0o400));
        assert_eq!(secret.items.as_ref().unwrap()[0].key, "key.txt");
        let mounts = container(&job).volume_mounts.as_ref().unwrap();
        let m = mounts.iter().find(|m| m.name == identity.name).unwrap();
        assert_eq!(m.read_only, Some(true));
        assert_eq!(m.mount_path, "/run/secrets/arca/age-identity");
        // Sources are never mounted: only the destination claim.
        let claims: Vec<&str> = volumes
            .iter()
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.as_str())
            .collect();
        assert_eq!(claims, vec!["backup-disk"]);
        assert!(mounts.iter().all(|m| !m.mount_path.starts_with("/sources")));
        // The config with the identity file.
        let cfg = volumes.iter().find(|v| v.name == "config").unwrap();
        assert_eq!(
            cfg.config_map.as_ref().unwrap().items.as_ref().unwrap()[0].key,
            "restore.yaml"
        );
        // The backup Job of the same policy holds public keys only.
        let backup = build(testdata::full_spec(), Placement::default(), false);
        assert!(pod(&backup).volumes.as_ref().unwrap().iter().all(|v| {
            v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) != Some("age-identity")
        }));
    }

    #[test]
    fn verify_job_is_locked_down_like_a_backup_job() {
        let v = verify(testdata::full_spec(), true);
        let b = build(testdata::full_spec(), Placement::default(), false);
        assert_eq!(pod(&v).security_context, pod(&b).security_context);
        assert_eq!(
            container(&v).security_context,
            container(&b).security_context
        );
        assert_eq!(pod(&v).automount_service_account_token, Some(false));
        assert_eq!(pod(&v).service_account_name, pod(&b).service_account_name);
        assert_eq!(container(&v).resources, container(&b).resources);
        assert_eq!(container(&v).env, container(&b).env);
        let (vs, bs) = (v.spec.as_ref().unwrap(), b.spec.as_ref().unwrap());
        assert_eq!(vs.backoff_limit, Some(0));
        assert_eq!(vs.active_deadline_seconds, bs.active_deadline_seconds);
        assert_eq!(vs.ttl_seconds_after_finished, bs.ttl_seconds_after_finished);
        assert_eq!(
            container(&v).termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
    }

    #[test]
    fn names_fit_kubernetes_limits() {
        let long = "a".repeat(63);
        let name = backup_job_name(&long, &scheduled(), now());
        assert!(name.len() <= 63, "{name}");
        let manual = Due {
            scheduled: None,
            manual: Some("x".repeat(100)),
        };
        let name = backup_job_name(&long, &manual, now());
        assert!(name.len() <= 63, "{name}");
        assert_ne!(
            backup_job_name(&format!("{long}x"), &scheduled(), now()),
            backup_job_name(&format!("{long}y"), &scheduled(), now())
        );
        let r = restore_job_name(&"r".repeat(253));
        assert!(r.len() <= 63 && r.ends_with("-restore"), "{r}");
        let v = verify_job_name(&long, scheduled().scheduled.unwrap());
        assert!(v.len() <= 63 && v.contains("-verify-"), "{v}");
        assert_eq!(label_value("short"), "short");
        assert_eq!(fit_name("abc", 63), "abc");
    }

    #[test]
    fn workloads_round_trip_through_the_annotation() {
        let list = vec![
            WorkloadRef {
                kind: "Deployment".into(),
                name: "orthanc".into(),
            },
            WorkloadRef {
                kind: "StatefulSet".into(),
                name: "db".into(),
            },
        ];
        let text = format_workloads(&list);
        assert_eq!(text, "Deployment/orthanc,StatefulSet/db");
        assert_eq!(parse_workloads(&text), list);
        assert!(parse_workloads("").is_empty());
    }

    #[test]
    fn config_file_is_a_single_policy_arca_yaml() {
        let rendered = render(&testdata::full_spec(), &Mode::Backup);
        let yaml = config_yaml("orthanc", &rendered.spec).unwrap();
        let parsed = ConfigFile::from_yaml(&yaml).unwrap();
        assert_eq!(parsed.policies.len(), 1);
        assert_eq!(parsed.policies[0].name, "orthanc");
        assert!(
            yaml.contains("/run/secrets/arca/pg-credentials/password"),
            "{yaml}"
        );
    }

    #[test]
    fn config_map_is_owned_by_the_policy() {
        let policy = testdata::policy("orthanc", testdata::full_spec());
        let cm = config_map(&policy, "b".into(), "r".into()).unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("arca-orthanc"));
        let data = cm.data.unwrap();
        assert_eq!(data["backup.yaml"], "b");
        assert_eq!(data["restore.yaml"], "r");
        assert_eq!(
            cm.metadata.owner_references.unwrap()[0].kind,
            "BackupPolicy"
        );
    }

    fn restore_spec() -> RestoreRequestSpec {
        RestoreRequestSpec {
            policy_ref: PolicyRef {
                name: "orthanc".into(),
            },
            safety_backup: true,
            ..Default::default()
        }
    }

    #[test]
    fn restore_args_default_to_latest_with_a_safety_backup() {
        assert_eq!(
            restore_args("orthanc", &restore_spec(), None),
            vec![
                "restore",
                "--config",
                "/etc/arca/job.yaml",
                "--policy",
                "orthanc",
                "--snapshot",
                "latest",
                "--result-file",
                "/dev/termination-log"
            ]
        );
    }

    #[test]
    fn restore_args_carry_every_option() {
        let mut spec = restore_spec();
        spec.before = Some("2026-11-20T00:00:00+01:00".into());
        spec.components = vec!["storage".into()];
        spec.from = Some("local".into());
        spec.delete_newer_files = true;
        spec.safety_backup = false;
        spec.force = true;
        let args = restore_args("orthanc", &spec, Some("/restore-target/copy"));
        let text = args.join(" ");
        assert_eq!(
            text,
            "restore --config /etc/arca/job.yaml --policy orthanc --before 2026-11-20T00:00:00+01:00 \
             --component storage --from local --to-path /restore-target/copy --delete-newer \
             --no-safety-backup --force --result-file /dev/termination-log"
        );
        let mut spec = restore_spec();
        spec.snapshot = Some("20261123T031500Z".into());
        spec.components = vec!["index".into()];
        spec.to_database = Some("orthanc_copy".into());
        let text = restore_args("orthanc", &spec, None).join(" ");
        assert!(text.contains("--snapshot 20261123T031500Z"), "{text}");
        assert!(text.contains("--to-database orthanc_copy"), "{text}");
    }

    #[test]
    fn restore_job_reads_the_restore_config_and_is_owned_by_the_request() {
        let mut spec = restore_spec();
        spec.components = vec!["storage".into()];
        spec.to_claim = Some(ClaimTarget {
            claim_name: "scratch".into(),
            sub_path: None,
        });
        let rr = testdata::restore_request("restore-1", spec.clone());
        let rendered = render(
            &testdata::full_spec(),
            &Mode::Restore {
                components: spec.components.clone(),
                to_claim: spec.to_claim.clone(),
            },
        );
        let s = settings();
        let parts = JobParts {
            rendered: &rendered,
            settings: &s,
            run_as: run_as(&s, None).unwrap(),
            placement: &Placement::default(),
            suspend: true,
            scale_down: &[],
        };
        let job = restore_job(&rr, "orthanc", &parts).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("restore-1-restore"));
        let l = job.metadata.labels.as_ref().unwrap();
        assert_eq!(l["arca.dev/policy"], "orthanc");
        assert_eq!(l["arca.dev/restore"], "restore-1");
        assert_eq!(l["app.kubernetes.io/component"], "restore");
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "RestoreRequest");
        let p = pod(&job);
        let cfg = p
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "config")
            .unwrap();
        assert_eq!(
            cfg.config_map.as_ref().unwrap().items.as_ref().unwrap()[0].key,
            "restore.yaml"
        );
        let args = container(&job).args.as_ref().unwrap().join(" ");
        assert!(args.contains("--to-path /restore-target"), "{args}");
        assert!(!args.contains("--no-safety-backup"), "{args}");
        assert_eq!(job.spec.as_ref().unwrap().backoff_limit, Some(0));
    }
}
