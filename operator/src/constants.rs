//! Every label, annotation, reason, path and name the operator writes, in one place.

/// Field manager of every server-side apply and patch the operator sends.
pub const FIELD_MANAGER: &str = "arca-operator";
/// Parameters of every create/replace the operator sends: its field manager, so
/// `kubectl get -o yaml --show-managed-fields` names who wrote what.
pub fn post_params() -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// Name used for Events (`reportingController`).
pub const CONTROLLER_NAME: &str = "arca.dev/arca-operator";

/// Labels on Jobs, their pods and ConfigMaps.
pub mod labels {
    /// `app.kubernetes.io/name`: always [`APP_NAME`].
    pub const NAME: &str = "app.kubernetes.io/name";
    /// Value of [`NAME`].
    pub const APP_NAME: &str = "arca";
    /// `app.kubernetes.io/component`: `backup`, `verify` or `restore`.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// `app.kubernetes.io/instance`: the policy's name.
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// `app.kubernetes.io/managed-by`: always [`MANAGER`]; the operator watches Jobs with it.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// Value of [`MANAGED_BY`].
    pub const MANAGER: &str = "arca-operator";
    /// The policy whose data a Job touches (backup, verify and restore Jobs); one Job per
    /// policy runs at a time.
    pub const POLICY: &str = "arca.dev/policy";
    /// The RestoreRequest a restore Job belongs to.
    pub const RESTORE: &str = "arca.dev/restore";
    /// On pods: the Job that created them (the `job-name` label is not guaranteed on
    /// every distribution).
    pub const JOB: &str = "arca.dev/job";
    /// Value of [`COMPONENT`] on backup Jobs.
    pub const COMPONENT_BACKUP: &str = "backup";
    /// Value of [`COMPONENT`] on restore Jobs.
    pub const COMPONENT_RESTORE: &str = "restore";
    /// Value of [`COMPONENT`] on verify Jobs (`spec.verify`).
    pub const COMPONENT_VERIFY: &str = "verify";
}

/// Annotations the operator reads or writes.
pub mod annotations {
    /// On a BackupPolicy: any new value starts one backup (see
    /// [`arca_api::crd::BACKUP_NOW_ANNOTATION`]).
    pub const BACKUP_NOW: &str = arca_api::crd::BACKUP_NOW_ANNOTATION;
    /// On a BackupPolicy: overrides the Job's `runAsUser` (to read the application's files).
    pub const RUN_AS_USER: &str = "arca.dev/run-as-user";
    /// On a BackupPolicy: overrides the Job's `runAsGroup`.
    pub const RUN_AS_GROUP: &str = "arca.dev/run-as-group";
    /// On a BackupPolicy: overrides the Job's `fsGroup` (`none` leaves it unset).
    pub const FS_GROUP: &str = "arca.dev/fs-group";
    /// On a backup or verify Job: `schedule` or `manual`.
    pub const TRIGGER: &str = "arca.dev/trigger";
    /// On a scheduled backup or verify Job: the scheduled time it runs for (RFC 3339).
    pub const SCHEDULED_TIME: &str = "arca.dev/scheduled-time";
    /// On a verify Job: `true` when it runs `arca verify --deep`.
    pub const VERIFY_DEEP: &str = "arca.dev/verify-deep";
    /// On a manual backup Job: the `arca.dev/backup-now` value it runs for.
    pub const MANUAL_TRIGGER: &str = "arca.dev/manual-trigger";
    /// On a Job: the workloads it scales down (`Deployment/a,StatefulSet/b`).
    pub const SCALE_DOWN: &str = "arca.dev/scale-down";
    /// On a workload: its replica count before the operator scaled it to zero. Written
    /// before scaling, removed after scaling back.
    pub const ORIGINAL_REPLICAS: &str = "arca.dev/original-replicas";
    /// On a workload: who scaled it down (`BackupPolicy/<name>` or `RestoreRequest/<name>`).
    pub const QUIESCED_BY: &str = "arca.dev/quiesced-by";
    /// On a workload: the Job it was scaled down for.
    pub const QUIESCE_JOB: &str = "arca.dev/quiesce-job";
}

/// Values of [`annotations::TRIGGER`].
pub mod triggers {
    /// A run started by the cron schedule.
    pub const SCHEDULE: &str = "schedule";
    /// A run started by the `arca.dev/backup-now` annotation.
    pub const MANUAL: &str = "manual";
}

/// Condition reasons (CamelCase, stable: alerts may match on them).
pub mod reasons {
    /// Ready=True: spec valid, references found.
    pub const VALID: &str = "Valid";
    /// Ready=False: the spec breaks a rule.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Ready=False: the object cannot be read by this operator version.
    pub const UNREADABLE: &str = "Unreadable";
    /// Ready=False: a Secret, claim or policy it names does not exist.
    pub const MISSING_REFERENCE: &str = "MissingReference";
    /// Ready=False: the claims are mounted on different nodes.
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    /// Ready=False: `spec.verify` is set and snapshots are encrypted, but no
    /// `encryption.ageIdentitySecretRef` says how verify Jobs decrypt them (backups still run).
    pub const VERIFY_NEEDS_IDENTITY: &str = "VerifyNeedsIdentity";
    /// BackupSucceeded=Unknown / VerifySucceeded=Unknown: no run finished yet.
    pub const NO_RUN_YET: &str = "NoRunYet";
    /// BackupSucceeded=Unknown: a run is in progress (the previous outcome is kept).
    pub const RUNNING: &str = "Running";
    /// BackupSucceeded=True / VerifySucceeded=True / Succeeded=True.
    pub const SUCCEEDED: &str = "Succeeded";
    /// BackupSucceeded=False / VerifySucceeded=False / Succeeded=False: the Job failed.
    pub const FAILED: &str = "Failed";
    /// The workloads did not stop in time.
    pub const QUIESCE_TIMEOUT: &str = "QuiesceTimeout";
    /// The Job disappeared before reporting.
    pub const JOB_LOST: &str = "JobLost";
    /// WithinRPO=True.
    pub const WITHIN_RPO: &str = "WithinRPO";
    /// WithinRPO=False: the newest good snapshot is too old.
    pub const RPO_BREACHED: &str = "RPOBreached";
    /// WithinRPO=Unknown: no `rpo` set.
    pub const NO_RPO: &str = "NoRPO";
    /// WithinRPO=Unknown: no successful backup yet, still inside the first RPO window.
    pub const NO_BACKUP_YET: &str = "NoBackupYet";
    /// RestoreRequest pending: waiting for the policy's other Job.
    pub const WAITING_FOR_JOB: &str = "WaitingForJob";
    /// RestoreRequest pending/running: scaling workloads down.
    pub const QUIESCING: &str = "Quiescing";
    /// Succeeded=Unknown while the restore Job runs.
    pub const IN_PROGRESS: &str = "InProgress";
}

/// Event reasons (shown by `kubectl describe` / `kubectl events`).
pub mod events {
    /// A backup Job was created.
    pub const BACKUP_STARTED: &str = "BackupStarted";
    /// A backup run succeeded.
    pub const BACKUP_SUCCEEDED: &str = "BackupSucceeded";
    /// A backup run failed.
    pub const BACKUP_FAILED: &str = "BackupFailed";
    /// The spec became invalid (or a reference went missing).
    pub const INVALID: &str = "Invalid";
    /// The spec became valid again.
    pub const READY: &str = "Ready";
    /// WithinRPO turned False.
    pub const RPO_BREACHED: &str = "RPOBreached";
    /// WithinRPO turned True again.
    pub const RPO_RESTORED: &str = "WithinRPO";
    /// Workloads were scaled to zero.
    pub const SCALED_DOWN: &str = "ScaledDown";
    /// Workloads were scaled back.
    pub const SCALED_UP: &str = "ScaledUp";
    /// A verify Job was created.
    pub const VERIFY_STARTED: &str = "VerifyStarted";
    /// A verification passed.
    pub const VERIFY_SUCCEEDED: &str = "VerifySucceeded";
    /// A verification failed.
    pub const VERIFY_FAILED: &str = "VerifyFailed";
    /// A restore Job was created.
    pub const RESTORE_STARTED: &str = "RestoreStarted";
    /// A restore succeeded.
    pub const RESTORE_SUCCEEDED: &str = "RestoreSucceeded";
    /// A restore failed.
    pub const RESTORE_FAILED: &str = "RestoreFailed";
    /// Event `action` for everything the reconciler does.
    pub const ACTION_RECONCILE: &str = "Reconcile";
}

/// Paths inside Job containers.
pub mod paths {
    /// The rendered config file.
    pub const CONFIG_FILE: &str = "/etc/arca/job.yaml";
    /// Directory the config volume is mounted at.
    pub const CONFIG_DIR: &str = "/etc/arca";
    /// File name of the config inside [`CONFIG_DIR`].
    pub const CONFIG_NAME: &str = "job.yaml";
    /// Where the result is written (and read back as the termination message).
    pub const TERMINATION_LOG: &str = "/dev/termination-log";
    /// Source claims are mounted at `/sources/<component>`.
    pub const SOURCES: &str = "/sources";
    /// Destination claims are mounted at `/destinations/<destination>`.
    pub const DESTINATIONS: &str = "/destinations";
    /// Secrets are mounted at `/run/secrets/arca/<secret>/<key>`.
    pub const SECRETS: &str = "/run/secrets/arca";
    /// A restore's `toClaim` is mounted here.
    pub const RESTORE_TARGET: &str = "/restore-target";
    /// The writable scratch directory (TMPDIR).
    pub const TMP: &str = "/tmp";
    /// `ARCA_STATE_DIR` inside Jobs (scratch: a Job keeps no state).
    pub const STATE: &str = "/tmp/arca-state";
}

/// Keys of the per-policy ConfigMap.
pub mod config_keys {
    /// The config backup Jobs read (no age identity).
    pub const BACKUP: &str = "backup.yaml";
    /// The config restore and verify Jobs read (with the age identity file).
    pub const RESTORE: &str = "restore.yaml";
}

/// Name of the container in every Job.
pub const CONTAINER_NAME: &str = "arca";
/// Secret files are readable by their owner only (0400); `fsGroup` grants the group.
pub const SECRET_FILE_MODE: i32 = 0o400;
/// Runs kept in `status.recentRuns`.
pub const RECENT_RUNS: usize = 10;
/// Longest message written to status or an Event.
pub const MAX_MESSAGE: usize = 1000;
