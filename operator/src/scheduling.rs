//! When a policy's next backup is due: a pure function of the schedule, the last run and
//! the clock, in the spirit of the Kubernetes CronJob controller:
//!
//! - a scheduled time is due once it has passed and no run was started for it;
//! - after downtime only the most recent missed time runs (one catch-up), and only when it
//!   is younger than the starting deadline;
//! - `suspend` stops scheduled runs, never manual ones;
//! - a new value of `arca.dev/backup-now` is due at once;
//! - times before the policy existed never run.
//!
//! Whether a due run may start (no other Job of the policy active) is decided by the caller.

use arca_api::schedule::Schedule;
use chrono::{DateTime, TimeDelta, Utc};

/// Default starting deadline when the spec sets none.
pub const DEFAULT_STARTING_DEADLINE: TimeDelta = TimeDelta::hours(1);

/// Inputs of [`plan`].
#[derive(Debug, Clone)]
pub struct ScheduleInput<'a> {
    /// The current time.
    pub now: DateTime<Utc>,
    /// The parsed schedule, if the policy has one.
    pub schedule: Option<&'a Schedule>,
    /// `spec.suspend`.
    pub suspend: bool,
    /// `spec.startingDeadline` (default [`DEFAULT_STARTING_DEADLINE`]).
    pub starting_deadline: TimeDelta,
    /// The scheduled time of the last run started (status and Jobs combined).
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// When the policy was created.
    pub created: DateTime<Utc>,
    /// The current `arca.dev/backup-now` value.
    pub manual_value: Option<&'a str>,
    /// The last `arca.dev/backup-now` value that started a run (status and Jobs combined).
    pub manual_handled: Option<&'a str>,
}

/// A run that should start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The scheduled time it runs for, if the schedule asked for it.
    pub scheduled: Option<DateTime<Utc>>,
    /// The `arca.dev/backup-now` value it runs for, if a person asked for it.
    pub manual: Option<String>,
}

/// The outcome of [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulePlan {
    /// The run to start now, if any.
    pub due: Option<Due>,
    /// The next scheduled time after now (None: suspended or no schedule).
    pub next: Option<DateTime<Utc>>,
    /// A scheduled time that was missed by more than the starting deadline (skipped).
    pub skipped: Option<DateTime<Utc>>,
}

/// `t` without its fraction of a second.
fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// Decide what is due now and when to look again.
pub fn plan(input: &ScheduleInput<'_>) -> SchedulePlan {
    // NB: the cron library keeps the fraction of a second of the time it starts from
    // (01:59:58.5 → 02:00:00.5); plan on whole seconds so runs are due on the second.
    let input = &ScheduleInput {
        now: whole_seconds(input.now),
        last_schedule_time: input.last_schedule_time.map(whole_seconds),
        created: whole_seconds(input.created),
        ..input.clone()
    };
    let manual = match (input.manual_value, input.manual_handled) {
        (Some(v), handled) if !v.is_empty() && handled != Some(v) => Some(v.to_string()),
        _ => None,
    };

    let (scheduled, skipped, next) = match input.schedule {
        Some(schedule) if !input.suspend => {
            let earliest = input
                .last_schedule_time
                .map_or(input.created, |t| t.max(input.created));
            let since = input.now.signed_duration_since(earliest);
            let mut scheduled = None;
            let mut skipped = None;
            if since > TimeDelta::zero() {
                // The most recent scheduled time after `earliest`, looking back at most one
                // starting deadline: anything older is skipped, like a CronJob.
                let deadline = input.starting_deadline.max(TimeDelta::seconds(1));
                let horizon = since.min(deadline);
                scheduled = schedule.previous_at_or_before(input.now, horizon);
                if scheduled.is_none() && since > deadline {
                    skipped =
                        schedule.previous_at_or_before(input.now - deadline, since - deadline);
                }
            }
            (scheduled, skipped, schedule.next_after(input.now))
        }
        _ => (None, None, None),
    };

    let due = (scheduled.is_some() || manual.is_some()).then_some(Due { scheduled, manual });
    SchedulePlan { due, next, skipped }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, m, s)
            .single()
            .unwrap()
    }

    fn input<'a>(schedule: &'a Schedule, now: DateTime<Utc>) -> ScheduleInput<'a> {
        ScheduleInput {
            now,
            schedule: Some(schedule),
            suspend: false,
            starting_deadline: DEFAULT_STARTING_DEADLINE,
            last_schedule_time: None,
            created: t(0, 0, 0),
            manual_value: None,
            manual_handled: None,
        }
    }

    fn daily_0315() -> Schedule {
        Schedule::parse("15 3 * * *", None).unwrap()
    }

    #[test]
    fn nothing_due_before_the_time_and_next_is_the_time() {
        let s = daily_0315();
        let p = plan(&input(&s, t(3, 14, 59)));
        assert_eq!(p.due, None);
        assert_eq!(p.next, Some(t(3, 15, 0)));
    }

    #[test]
    fn due_exactly_at_the_scheduled_time() {
        let s = daily_0315();
        let p = plan(&input(&s, t(3, 15, 0)));
        assert_eq!(
            p.due,
            Some(Due {
                scheduled: Some(t(3, 15, 0)),
                manual: None
            })
        );
        assert_eq!(p.next, Some(t(3, 15, 0) + TimeDelta::days(1)));
    }

    #[test]
    fn not_due_again_once_started() {
        let s = daily_0315();
        let mut i = input(&s, t(3, 20, 0));
        i.last_schedule_time = Some(t(3, 15, 0));
        assert_eq!(plan(&i).due, None);
    }

    #[test]
    fn one_catch_up_within_the_deadline() {
        let s = Schedule::parse("*/10 * * * *", None).unwrap();
        let mut i = input(&s, t(3, 35, 0));
        // Down since 03:00: 03:10, 03:20, 03:30 were missed; only 03:30 runs.
        i.last_schedule_time = Some(t(3, 0, 0));
        let p = plan(&i);
        assert_eq!(p.due.unwrap().scheduled, Some(t(3, 30, 0)));
    }

    #[test]
    fn missed_beyond_the_deadline_is_skipped() {
        let s = daily_0315();
        let mut i = input(&s, t(5, 0, 0));
        i.last_schedule_time = Some(t(3, 15, 0) - TimeDelta::days(1));
        let p = plan(&i);
        assert_eq!(p.due, None);
        assert_eq!(p.skipped, Some(t(3, 15, 0)));
        assert_eq!(p.next, Some(t(3, 15, 0) + TimeDelta::days(1)));
    }

    #[test]
    fn a_longer_deadline_catches_up() {
        let s = daily_0315();
        let mut i = input(&s, t(5, 0, 0));
        i.starting_deadline = TimeDelta::hours(3);
        i.last_schedule_time = Some(t(3, 15, 0) - TimeDelta::days(1));
        assert_eq!(plan(&i).due.unwrap().scheduled, Some(t(3, 15, 0)));
    }

    #[test]
    fn never_runs_for_times_before_creation() {
        let s = daily_0315();
        let mut i = input(&s, t(3, 30, 0));
        i.created = t(3, 20, 0);
        assert_eq!(plan(&i).due, None);
    }

    #[test]
    fn suspended_runs_nothing_scheduled_and_has_no_next() {
        let s = daily_0315();
        let mut i = input(&s, t(3, 15, 0));
        i.suspend = true;
        let p = plan(&i);
        assert_eq!(p.due, None);
        assert_eq!(p.next, None);
    }

    #[test]
    fn manual_trigger_runs_once_per_value_even_when_suspended() {
        let s = daily_0315();
        let mut i = input(&s, t(10, 0, 0));
        i.suspend = true;
        i.manual_value = Some("1");
        assert_eq!(
            plan(&i).due,
            Some(Due {
                scheduled: None,
                manual: Some("1".into())
            })
        );
        i.manual_handled = Some("1");
        assert_eq!(plan(&i).due, None);
        i.manual_value = Some("2");
        assert_eq!(plan(&i).due.unwrap().manual.as_deref(), Some("2"));
        i.manual_value = Some("");
        assert_eq!(plan(&i).due, None);
    }

    #[test]
    fn manual_and_scheduled_at_once_share_one_run() {
        let s = daily_0315();
        let mut i = input(&s, t(3, 15, 1));
        i.manual_value = Some("now");
        let due = plan(&i).due.unwrap();
        assert_eq!(due.scheduled, Some(t(3, 15, 0)));
        assert_eq!(due.manual.as_deref(), Some("now"));
    }

    #[test]
    fn no_schedule_means_manual_only() {
        let i = ScheduleInput {
            now: t(3, 15, 0),
            schedule: None,
            suspend: false,
            starting_deadline: DEFAULT_STARTING_DEADLINE,
            last_schedule_time: None,
            created: t(0, 0, 0),
            manual_value: None,
            manual_handled: None,
        };
        let p = plan(&i);
        assert_eq!(p.due, None);
        assert_eq!(p.next, None);
    }

    #[test]
    fn times_are_whole_seconds() {
        let s = daily_0315();
        let now = t(3, 14, 58) + TimeDelta::milliseconds(500);
        assert_eq!(plan(&input(&s, now)).next, Some(t(3, 15, 0)));
        let now = t(3, 15, 0) + TimeDelta::milliseconds(300);
        assert_eq!(
            plan(&input(&s, now)).due.unwrap().scheduled,
            Some(t(3, 15, 0))
        );
    }

    #[test]
    fn time_zone_is_honoured() {
        let s = Schedule::parse("15 3 * * *", Some("Europe/Zurich")).unwrap();
        // 03:15 in Zurich (winter) is 02:15 UTC.
        let p = plan(&input(&s, t(2, 15, 0)));
        assert_eq!(p.due.unwrap().scheduled, Some(t(2, 15, 0)));
    }
}
