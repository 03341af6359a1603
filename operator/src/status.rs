//! Status as a pure function of what the reconciler observed: conditions that keep their
//! `lastTransitionTime` unless their status flips, a bounded run history, the RPO check,
//! and the transitions worth an Event. Nothing here reads the clock or the API.

use arca_api::crd::{
    condition, condition_status, BackupPolicyStatus, Condition, RunRecord, Timestamp, Verification,
};
use arca_api::HumanDuration;
use chrono::{DateTime, Utc};

use crate::constants::{reasons, MAX_MESSAGE, RECENT_RUNS};
use crate::outcome::shorten;

/// `result` of a successful run.
pub const RESULT_SUCCEEDED: &str = "Succeeded";
/// `result` of a failed run.
pub const RESULT_FAILED: &str = "Failed";

/// One-word states shown in the `Status` printer column.
pub mod state {
    /// The spec is invalid or references are missing.
    pub const INVALID: &str = "Invalid";
    /// A run is in progress.
    pub const RUNNING: &str = "Running";
    /// Scheduled runs are paused.
    pub const SUSPENDED: &str = "Suspended";
    /// The last run succeeded.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The last run failed.
    pub const FAILED: &str = "Failed";
    /// No run finished yet.
    pub const PENDING: &str = "Pending";
}

/// A condition to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted<'a> {
    /// Condition type.
    pub type_: &'a str,
    /// True, False or Unknown.
    pub status: &'a str,
    /// CamelCase reason.
    pub reason: &'a str,
    /// Human message.
    pub message: String,
}

/// Build condition `w`, keeping the `lastTransitionTime` of the same-typed condition in
/// `old` when its status did not change.
pub fn condition_from(
    old: &[Condition],
    w: Wanted<'_>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    let previous = old.iter().find(|c| c.type_ == w.type_);
    let last_transition_time = match previous {
        Some(p) if p.status == w.status => p.last_transition_time,
        _ => Timestamp::new(now),
    };
    Condition {
        type_: w.type_.to_string(),
        status: w.status.to_string(),
        observed_generation: generation,
        last_transition_time,
        reason: w.reason.to_string(),
        message: shorten(&w.message, MAX_MESSAGE),
    }
}

/// Find condition `type_` in `conditions`.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Everything [`backup_status`] needs.
#[derive(Debug, Clone)]
pub struct BackupStatusInput<'a> {
    /// The status as last written.
    pub old: &'a BackupPolicyStatus,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The current time.
    pub now: DateTime<Utc>,
    /// `metadata.creationTimestamp`.
    pub created: DateTime<Utc>,
    /// Ok, or the Ready=False reason and message.
    pub ready: Result<(), (&'static str, String)>,
    /// `spec.suspend`.
    pub suspended: bool,
    /// The backup Job in progress.
    pub active_job: Option<String>,
    /// Runs that finished since the last write, oldest first.
    pub new_runs: Vec<RunRecord>,
    /// The scheduled time of the last run started.
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// The next scheduled time.
    pub next_schedule_time: Option<DateTime<Utc>>,
    /// The last `arca.dev/backup-now` value that started a run.
    pub last_manual_trigger: Option<String>,
    /// `spec.rpo`.
    pub rpo: Option<HumanDuration>,
    /// `spec.verify` is set: report the VerifySucceeded condition.
    pub verify: bool,
    /// Why scheduled verifications cannot run (Ready=False with this reason and message);
    /// backups are not affected.
    pub verify_problem: Option<(&'static str, String)>,
    /// Verifications that finished since the last write, oldest first.
    pub new_verifications: Vec<Verification>,
}

/// The status a BackupPolicy should have.
pub fn backup_status(i: &BackupStatusInput<'_>) -> BackupPolicyStatus {
    let old = i.old;
    let mut runs: Vec<RunRecord> = i.new_runs.iter().rev().cloned().collect();
    for r in &old.recent_runs {
        if !runs.iter().any(|n| n.job == r.job) {
            runs.push(r.clone());
        }
    }
    runs.truncate(RECENT_RUNS);

    let mut last_successful_snapshot = old.last_successful_snapshot.clone();
    let mut last_success_time = old.last_success_time;
    if let Some(ok) = i
        .new_runs
        .iter()
        .rev()
        .find(|r| r.result == RESULT_SUCCEEDED)
    {
        let time = ok.start_time.or(ok.completion_time);
        if time >= last_success_time || last_success_time.is_none() {
            last_successful_snapshot = ok.snapshot.clone().or(last_successful_snapshot);
            last_success_time = time.or(last_success_time);
        }
    }

    let ready = match (&i.ready, &i.verify_problem) {
        (Ok(()), None) => Wanted {
            type_: condition::READY,
            status: condition_status::TRUE,
            reason: reasons::VALID,
            message: "the policy is valid and everything it references exists".into(),
        },
        (Ok(()), Some((reason, message))) => Wanted {
            type_: condition::READY,
            status: condition_status::FALSE,
            reason,
            message: format!("{message} (backups still run; verifications do not)"),
        },
        (Err((reason, message)), _) => Wanted {
            type_: condition::READY,
            status: condition_status::FALSE,
            reason,
            message: message.clone(),
        },
    };

    let succeeded = outcome_condition(
        condition::BACKUP_SUCCEEDED,
        runs.first().map(|r| {
            (
                r.job.as_str(),
                r.result == RESULT_SUCCEEDED,
                r.message.as_deref(),
            )
        }),
        "backup complete",
        "no backup has finished yet",
    );

    let rpo = rpo_condition(
        i.rpo,
        last_success_time.map(|t| t.0),
        last_successful_snapshot.as_deref(),
        i.created,
        i.now,
    );

    let mut last_verification = old.last_verification.clone();
    let mut last_successful_verification_time = old.last_successful_verification_time;
    for v in &i.new_verifications {
        if last_verification
            .as_ref()
            .is_none_or(|l| l.job == v.job || v.time >= l.time)
        {
            last_verification = Some(v.clone());
        }
        if v.ok && v.time > last_successful_verification_time {
            last_successful_verification_time = v.time;
        }
    }
    let verified = i
        .verify
        .then(|| verify_condition(last_verification.as_ref()));

    let conditions = [Some(ready), Some(succeeded), Some(rpo), verified]
        .into_iter()
        .flatten()
        .map(|w| condition_from(&old.conditions, w, i.generation, i.now))
        .collect();

    let state = if i.ready.is_err() {
        state::INVALID
    } else if i.active_job.is_some() {
        state::RUNNING
    } else if i.suspended {
        state::SUSPENDED
    } else {
        match runs.first() {
            Some(r) if r.result == RESULT_SUCCEEDED => state::SUCCEEDED,
            Some(_) => state::FAILED,
            None => state::PENDING,
        }
    };

    BackupPolicyStatus {
        observed_generation: i.generation,
        state: Some(state.to_string()),
        conditions,
        last_schedule_time: i
            .last_schedule_time
            .map(Timestamp::new)
            .or(old.last_schedule_time),
        next_schedule_time: if i.ready.is_ok() {
            i.next_schedule_time.map(Timestamp::new)
        } else {
            None
        },
        last_successful_snapshot,
        last_success_time,
        active_job: i.active_job.clone(),
        last_manual_trigger: i
            .last_manual_trigger
            .clone()
            .or_else(|| old.last_manual_trigger.clone()),
        recent_runs: runs,
        last_verification,
        last_successful_verification_time,
    }
}

/// The VerifySucceeded condition: the outcome of the most recent verification.
fn verify_condition(last: Option<&Verification>) -> Wanted<'static> {
    outcome_condition(
        condition::VERIFY_SUCCEEDED,
        last.map(|v| (v.job.as_str(), v.ok, v.message.as_deref())),
        "verified",
        "no verification has finished yet",
    )
}

/// A condition telling how the latest run of a kind ended: `last` is its Job, whether it
/// succeeded and its message; `done` stands in for a missing success message.
fn outcome_condition(
    type_: &'static str,
    last: Option<(&str, bool, Option<&str>)>,
    done: &str,
    none_yet: &str,
) -> Wanted<'static> {
    match last {
        Some((job, true, message)) => Wanted {
            type_,
            status: condition_status::TRUE,
            reason: reasons::SUCCEEDED,
            message: format!("{job} succeeded: {}", message.unwrap_or(done)),
        },
        Some((job, false, message)) => Wanted {
            type_,
            status: condition_status::FALSE,
            reason: reasons::FAILED,
            message: format!("{job} failed: {}", message.unwrap_or("no details")),
        },
        None => Wanted {
            type_,
            status: condition_status::UNKNOWN,
            reason: reasons::NO_RUN_YET,
            message: none_yet.into(),
        },
    }
}

/// The WithinRPO condition. Its message never contains the live age, so it only changes
/// when something happens (a new snapshot, the deadline passing).
fn rpo_condition(
    rpo: Option<HumanDuration>,
    last_success: Option<DateTime<Utc>>,
    snapshot: Option<&str>,
    created: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Wanted<'static> {
    let Some(rpo) = rpo else {
        return Wanted {
            type_: condition::WITHIN_RPO,
            status: condition_status::UNKNOWN,
            reason: reasons::NO_RPO,
            message: "the policy sets no rpo".into(),
        };
    };
    let snap = snapshot.unwrap_or("(unknown id)");
    match last_success {
        Some(t) if now.signed_duration_since(t) <= rpo.to_chrono() => Wanted {
            type_: condition::WITHIN_RPO,
            status: condition_status::TRUE,
            reason: reasons::WITHIN_RPO,
            message: format!(
                "the newest good snapshot {snap} (taken {}) is within the RPO of {rpo}",
                Timestamp::new(t)
            ),
        },
        Some(t) => Wanted {
            type_: condition::WITHIN_RPO,
            status: condition_status::FALSE,
            reason: reasons::RPO_BREACHED,
            message: format!(
                "the newest good snapshot {snap} (taken {}) is older than the RPO of {rpo}: check the recent runs and the schedule",
                Timestamp::new(t)
            ),
        },
        None if now.signed_duration_since(created) <= rpo.to_chrono() => Wanted {
            type_: condition::WITHIN_RPO,
            status: condition_status::UNKNOWN,
            reason: reasons::NO_BACKUP_YET,
            message: format!(
                "no successful backup yet; the RPO of {rpo} is breached at {} without one",
                Timestamp::new(created + rpo.to_chrono())
            ),
        },
        None => Wanted {
            type_: condition::WITHIN_RPO,
            status: condition_status::FALSE,
            reason: reasons::RPO_BREACHED,
            message: format!(
                "no successful backup since the policy was created ({}), longer than the RPO of {rpo}: check the recent runs and the schedule",
                Timestamp::new(created)
            ),
        },
    }
}

/// When WithinRPO will flip to False if no new snapshot arrives (for requeueing).
pub fn rpo_deadline(
    rpo: Option<HumanDuration>,
    last_success: Option<DateTime<Utc>>,
    created: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let rpo = rpo?.to_chrono();
    let at = last_success.unwrap_or(created) + rpo;
    (at > now).then_some(at + chrono::TimeDelta::seconds(1))
}

/// A change worth an Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Condition type.
    pub type_: String,
    /// The new status.
    pub status: String,
    /// The new reason.
    pub reason: String,
    /// The new message.
    pub message: String,
}

/// Conditions of `new` whose status flipped from `old` (or that appeared as False), plus
/// Ready=False conditions whose message changed (a different problem).
pub fn transitions(old: &[Condition], new: &[Condition]) -> Vec<Transition> {
    let mut out = Vec::new();
    for c in new {
        let before = find(old, &c.type_);
        let flipped = match before {
            Some(b) => b.status != c.status,
            None => c.status == condition_status::FALSE,
        };
        let new_problem = c.type_ == condition::READY
            && c.status == condition_status::FALSE
            && before.is_some_and(|b| b.status == c.status && b.message != c.message);
        if flipped || new_problem {
            out.push(Transition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0)
            .single()
            .unwrap()
    }

    fn run(job: &str, ok: bool, start: DateTime<Utc>) -> RunRecord {
        RunRecord {
            job: job.into(),
            trigger: "schedule".into(),
            result: if ok { RESULT_SUCCEEDED } else { RESULT_FAILED }.into(),
            start_time: Some(Timestamp::new(start)),
            completion_time: Some(Timestamp::new(start + TimeDelta::minutes(5))),
            duration_seconds: Some(300),
            snapshot: ok.then(|| format!("snap-{job}")),
            message: Some(if ok { "snapshot ok" } else { "db down" }.into()),
            ..Default::default()
        }
    }

    fn input(old: &BackupPolicyStatus) -> BackupStatusInput<'_> {
        BackupStatusInput {
            old,
            generation: Some(3),
            now: t(4, 0),
            created: t(0, 0),
            ready: Ok(()),
            suspended: false,
            active_job: None,
            new_runs: vec![],
            last_schedule_time: None,
            next_schedule_time: Some(t(5, 0)),
            last_manual_trigger: None,
            rpo: Some("26h".parse().unwrap()),
            verify: false,
            verify_problem: None,
            new_verifications: vec![],
        }
    }

    fn cond<'a>(s: &'a BackupPolicyStatus, type_: &str) -> &'a Condition {
        find(&s.conditions, type_).unwrap()
    }

    #[test]
    fn fresh_policy_is_ready_pending_and_not_yet_judged_on_rpo() {
        let old = BackupPolicyStatus::default();
        let s = backup_status(&input(&old));
        assert_eq!(s.state.as_deref(), Some("Pending"));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "BackupSucceeded").status, "Unknown");
        assert_eq!(cond(&s, "WithinRPO").status, "Unknown");
        assert_eq!(cond(&s, "WithinRPO").reason, "NoBackupYet");
        assert_eq!(s.observed_generation, Some(3));
        assert!(s
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(3)));
        assert_eq!(s.next_schedule_time, Some(Timestamp::new(t(5, 0))));
    }

    #[test]
    fn a_successful_run_sets_the_last_snapshot() {
        let old = BackupPolicyStatus::default();
        let mut i = input(&old);
        i.new_runs = vec![run("p-1", true, t(3, 15))];
        let s = backup_status(&i);
        assert_eq!(s.last_successful_snapshot.as_deref(), Some("snap-p-1"));
        assert_eq!(s.last_success_time, Some(Timestamp::new(t(3, 15))));
        assert_eq!(cond(&s, "BackupSucceeded").status, "True");
        assert_eq!(cond(&s, "WithinRPO").status, "True");
        assert_eq!(s.state.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn a_failed_run_keeps_the_last_good_snapshot() {
        let old = BackupPolicyStatus::default();
        let mut i = input(&old);
        i.new_runs = vec![run("p-1", true, t(1, 0)), run("p-2", false, t(3, 15))];
        let s = backup_status(&i);
        assert_eq!(s.last_successful_snapshot.as_deref(), Some("snap-p-1"));
        let c = cond(&s, "BackupSucceeded");
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Failed"));
        assert!(c.message.contains("db down"));
        assert_eq!(s.state.as_deref(), Some("Failed"));
        assert_eq!(s.recent_runs[0].job, "p-2");
    }

    #[test]
    fn rpo_breach_when_the_newest_good_snapshot_is_too_old() {
        let old = BackupPolicyStatus {
            last_successful_snapshot: Some("old".into()),
            last_success_time: Some(Timestamp::new(t(3, 0) - TimeDelta::hours(27))),
            ..Default::default()
        };
        let s = backup_status(&input(&old));
        let c = cond(&s, "WithinRPO");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "RPOBreached")
        );
        assert!(
            c.message.contains("older than the RPO of 26h"),
            "{}",
            c.message
        );
    }

    #[test]
    fn rpo_breach_without_any_success_after_the_first_window() {
        let old = BackupPolicyStatus::default();
        let mut i = input(&old);
        i.now = t(0, 0) + TimeDelta::hours(27);
        let s = backup_status(&i);
        assert_eq!(cond(&s, "WithinRPO").status, "False");
    }

    #[test]
    fn no_rpo_is_unknown() {
        let old = BackupPolicyStatus::default();
        let mut i = input(&old);
        i.rpo = None;
        assert_eq!(cond(&backup_status(&i), "WithinRPO").reason, "NoRPO");
    }

    #[test]
    fn transition_time_is_kept_unless_the_status_flips() {
        let old = BackupPolicyStatus::default();
        let first = backup_status(&input(&old));
        let mut i = input(&first);
        i.now = t(4, 30);
        let second = backup_status(&i);
        assert_eq!(
            cond(&second, "Ready").last_transition_time,
            Timestamp::new(t(4, 0))
        );
        let mut i = input(&second);
        i.now = t(4, 45);
        i.ready = Err(("InvalidSpec", "schedule: bad".into()));
        let third = backup_status(&i);
        assert_eq!(
            cond(&third, "Ready").last_transition_time,
            Timestamp::new(t(4, 45))
        );
    }

    #[test]
    fn unchanged_inputs_give_an_identical_status() {
        let old = BackupPolicyStatus::default();
        let mut i = input(&old);
        i.new_runs = vec![run("p-1", true, t(3, 15))];
        let first = backup_status(&i);
        let mut again = input(&first);
        again.now = t(4, 10);
        assert_eq!(backup_status(&again), first);
    }

    #[test]
    fn invalid_policy_has_no_next_time_and_says_why() {
        let old = BackupPolicyStatus::default();
        let mut i = input(&old);
        i.ready = Err((
            "InvalidSpec",
            "components[1].name: duplicate component name \"db\": names must be unique".into(),
        ));
        let s = backup_status(&i);
        assert_eq!(s.state.as_deref(), Some("Invalid"));
        assert_eq!(s.next_schedule_time, None);
        let c = cond(&s, "Ready");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(c.message.contains("duplicate component name"));
    }

    #[test]
    fn running_and_suspended_states() {
        let old = BackupPolicyStatus::default();
        let mut i = input(&old);
        i.suspended = true;
        assert_eq!(backup_status(&i).state.as_deref(), Some("Suspended"));
        i.active_job = Some("p-1".into());
        let s = backup_status(&i);
        assert_eq!(s.state.as_deref(), Some("Running"));
        assert_eq!(s.active_job.as_deref(), Some("p-1"));
    }

    #[test]
    fn history_is_bounded_newest_first_and_deduplicated() {
        let mut old = BackupPolicyStatus::default();
        for n in 0..10 {
            old.recent_runs
                .push(run(&format!("old-{n}"), true, t(1, 0)));
        }
        let mut i = input(&old);
        i.new_runs = vec![run("new-a", true, t(2, 0)), run("new-b", false, t(3, 0))];
        let s = backup_status(&i);
        assert_eq!(s.recent_runs.len(), 10);
        assert_eq!(s.recent_runs[0].job, "new-b");
        assert_eq!(s.recent_runs[1].job, "new-a");
        assert_eq!(s.recent_runs[2].job, "old-0");
        // Recording the same runs again changes nothing.
        let mut again = input(&s);
        again.new_runs = vec![run("new-a", true, t(2, 0)), run("new-b", false, t(3, 0))];
        assert_eq!(backup_status(&again).recent_runs, s.recent_runs);
    }

    #[test]
    fn rpo_deadline_for_requeueing() {
        let rpo = Some("26h".parse().unwrap());
        let at = rpo_deadline(rpo, Some(t(3, 0)), t(0, 0), t(4, 0)).unwrap();
        assert_eq!(at, t(3, 0) + TimeDelta::hours(26) + TimeDelta::seconds(1));
        assert_eq!(rpo_deadline(None, Some(t(3, 0)), t(0, 0), t(4, 0)), None);
        // Already breached: nothing to wait for.
        assert_eq!(
            rpo_deadline(rpo, Some(t(3, 0)), t(0, 0), t(3, 0) + TimeDelta::hours(30)),
            None
        );
    }

    #[test]
    fn transitions_only_on_flips() {
        let old = BackupPolicyStatus::default();
        let first = backup_status(&input(&old));
        // From nothing: only conditions that appear False count.
        assert!(transitions(&old.conditions, &first.conditions).is_empty());
        let mut i = input(&first);
        i.new_runs = vec![run("p-1", false, t(3, 15))];
        let second = backup_status(&i);
        let tr = transitions(&first.conditions, &second.conditions);
        assert_eq!(tr.len(), 1);
        assert_eq!(tr[0].type_, "BackupSucceeded");
        assert_eq!(tr[0].status, "False");
        // The same state again: no event.
        assert!(transitions(&second.conditions, &second.conditions).is_empty());
    }

    #[test]
    fn a_different_problem_is_a_transition() {
        let old = BackupPolicyStatus::default();
        let mut i = input(&old);
        i.ready = Err(("InvalidSpec", "a".into()));
        let first = backup_status(&i);
        let mut i = input(&first);
        i.ready = Err(("MissingReference", "b".into()));
        let second = backup_status(&i);
        let tr = transitions(&first.conditions, &second.conditions);
        assert_eq!(tr.len(), 1);
        assert_eq!(tr[0].reason, "MissingReference");
    }

    fn verification(job: &str, ok: bool, at: DateTime<Utc>) -> Verification {
        Verification {
            job: job.into(),
            time: Some(Timestamp::new(at)),
            snapshot: Some("20261123T020002Z".into()),
            deep: true,
            ok,
            message: Some(if ok { "verified" } else { "digest mismatch" }.into()),
            ..Default::default()
        }
    }

    #[test]
    fn verify_condition_only_with_spec_verify() {
        let old = BackupPolicyStatus::default();
        let s = backup_status(&input(&old));
        assert!(find(&s.conditions, "VerifySucceeded").is_none());
        let mut i = input(&old);
        i.verify = true;
        let s = backup_status(&i);
        let c = cond(&s, "VerifySucceeded");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", "NoRunYet")
        );
        assert!(s.last_verification.is_none());
    }

    #[test]
    fn verifications_set_the_condition_and_keep_the_last_success_time() {
        let old = BackupPolicyStatus::default();
        let mut i = input(&old);
        i.verify = true;
        i.new_verifications = vec![verification("p-verify-1", true, t(3, 30))];
        let first = backup_status(&i);
        let c = cond(&first, "VerifySucceeded");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "Succeeded")
        );
        assert_eq!(
            first.last_successful_verification_time,
            Some(Timestamp::new(t(3, 30)))
        );
        let mut i = input(&first);
        i.verify = true;
        i.new_verifications = vec![verification("p-verify-2", false, t(3, 50))];
        let second = backup_status(&i);
        let c = cond(&second, "VerifySucceeded");
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Failed"));
        assert!(
            c.message.contains("p-verify-2 failed: digest mismatch"),
            "{}",
            c.message
        );
        assert_eq!(
            second.last_verification.as_ref().map(|v| v.job.as_str()),
            Some("p-verify-2")
        );
        // The last success is kept through a failure.
        assert_eq!(
            second.last_successful_verification_time,
            Some(Timestamp::new(t(3, 30)))
        );
        // A verification failure is no backup failure.
        assert_eq!(second.state.as_deref(), Some("Pending"));
        assert_eq!(cond(&second, "Ready").status, "True");
        // A transition worth an Event.
        let tr = transitions(&first.conditions, &second.conditions);
        assert_eq!(tr.len(), 1);
        assert_eq!(tr[0].type_, "VerifySucceeded");
    }

    #[test]
    fn a_verify_problem_makes_ready_false_but_backups_keep_their_schedule() {
        let old = BackupPolicyStatus::default();
        let mut i = input(&old);
        i.verify = true;
        i.verify_problem = Some((
            "VerifyNeedsIdentity",
            "verify: add encryption.ageIdentitySecretRef".into(),
        ));
        let s = backup_status(&i);
        let c = cond(&s, "Ready");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "VerifyNeedsIdentity")
        );
        assert!(c.message.contains("backups still run"), "{}", c.message);
        assert_eq!(s.state.as_deref(), Some("Pending"));
        assert_eq!(s.next_schedule_time, Some(Timestamp::new(t(5, 0))));
    }
}
