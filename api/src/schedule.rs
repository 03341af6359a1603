//! Cron schedules (5 fields) read in an IANA time zone.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// A parsed schedule: a 5-field cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

/// A schedule that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression is malformed.
    #[error("invalid cron expression {expr:?} ({reason}): use 5 fields, minute hour day-of-month month day-of-week, e.g. \"15 3 * * 1-5\"")]
    Cron {
        /// The expression.
        expr: String,
        /// What the parser said.
        reason: String,
    },
    /// The time zone is not an IANA name.
    #[error("unknown time zone {0:?}: use an IANA name such as Europe/Zurich or UTC")]
    TimeZone(String),
}

/// Parse an IANA time zone name (default UTC).
pub fn parse_time_zone(name: Option<&str>) -> Result<Tz, ScheduleError> {
    match name {
        None => Ok(Tz::UTC),
        Some(n) => Tz::from_str(n).map_err(|_| ScheduleError::TimeZone(n.to_string())),
    }
}

impl Schedule {
    /// Parse `expr` (exactly 5 fields) in time zone `tz` (IANA, default UTC).
    pub fn parse(expr: &str, tz: Option<&str>) -> Result<Self, ScheduleError> {
        let fields = expr.split_whitespace().count();
        if fields != 5 {
            return Err(ScheduleError::Cron {
                expr: expr.to_string(),
                reason: format!("{fields} fields"),
            });
        }
        let cron = Cron::from_str(expr).map_err(|e| ScheduleError::Cron {
            expr: expr.to_string(),
            reason: e.to_string(),
        })?;
        let tz = parse_time_zone(tz)?;
        Ok(Self { cron, tz })
    }

    /// The time zone.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The first scheduled time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Whole seconds: croner keeps the fraction, which would fire up to a second late.
        let after = chrono::DateTime::<Utc>::from_timestamp(after.timestamp(), 0).unwrap_or(after);
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The last scheduled time at or before `at`, looking back at most `horizon`.
    pub fn previous_at_or_before(
        &self,
        at: DateTime<Utc>,
        horizon: chrono::TimeDelta,
    ) -> Option<DateTime<Utc>> {
        let mut cursor = at - horizon;
        let mut last = None;
        while let Some(next) = self.next_after(cursor) {
            if next > at {
                break;
            }
            last = Some(next);
            cursor = next;
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn next_run_respects_time_zone() {
        let s = Schedule::parse("15 3 * * 1-5", Some("Europe/Zurich")).expect("parses");
        // Monday 2026-11-23 00:00 UTC = 01:00 Zurich; next run is 03:15 Zurich = 02:15 UTC.
        let now = Utc
            .with_ymd_and_hms(2026, 11, 23, 0, 0, 0)
            .single()
            .expect("time");
        let next = s.next_after(now).expect("next");
        assert_eq!(
            next,
            Utc.with_ymd_and_hms(2026, 11, 23, 2, 15, 0)
                .single()
                .expect("t")
        );
        // From Friday after the run, the next one is Monday.
        let fri = Utc
            .with_ymd_and_hms(2026, 11, 27, 3, 0, 0)
            .single()
            .expect("time");
        let next = s.next_after(fri).expect("next");
        assert_eq!(
            next,
            Utc.with_ymd_and_hms(2026, 11, 30, 2, 15, 0)
                .single()
                .expect("t")
        );
    }

    #[test]
    fn previous_run_within_horizon() {
        let s = Schedule::parse("0 * * * *", None).expect("parses");
        let at = Utc
            .with_ymd_and_hms(2026, 1, 1, 5, 30, 0)
            .single()
            .expect("time");
        let prev = s.previous_at_or_before(at, chrono::TimeDelta::hours(2));
        assert_eq!(prev, Utc.with_ymd_and_hms(2026, 1, 1, 5, 0, 0).single());
    }

    #[test]
    fn rejects_bad_expressions_and_zones() {
        assert!(Schedule::parse("* * * *", None).is_err());
        assert!(Schedule::parse("0 0 * * * *", None).is_err());
        assert!(Schedule::parse("61 * * * *", None).is_err());
        assert!(Schedule::parse("every day", None).is_err());
        assert!(matches!(
            Schedule::parse("0 3 * * *", Some("Mars/Olympus")),
            Err(ScheduleError::TimeZone(_))
        ));
    }
}
