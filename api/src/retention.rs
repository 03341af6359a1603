//! The retention planner: which snapshots a destination keeps and which it deletes.
//!
//! A pure function of the snapshot list, the destination's [`Retention`] rules, the
//! policy's time zone and the current time; it performs no I/O. The rules follow restic's
//! `forget` semantics:
//!
//! - Rules combine: a snapshot kept by any rule stays, and its decision lists every rule
//!   that kept it.
//! - With no rule set, every ordinary snapshot is kept.
//! - The newest ordinary snapshot is always kept, whatever the rules say.
//! - Safety backups taken before a restore ("pre-restore" snapshots) never count toward a
//!   rule; each is kept for [`PRE_RESTORE_KEEP_DAYS`] days and then deleted.

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::policy::Retention;

/// How many days a pre-restore safety snapshot is kept (30), whatever the retention rules.
///
/// A pre-restore snapshot is kept while it is younger than this and deleted once it is
/// 30 days old or older.
pub const PRE_RESTORE_KEEP_DAYS: i64 = 30;

/// A snapshot stored at a destination, as seen by the planner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The snapshot id.
    pub id: String,
    /// When the snapshot was taken; retention buckets are read in the policy's time zone.
    pub time: DateTime<Utc>,
    /// A safety backup taken before a restore: it does not count toward any rule and is
    /// kept for [`PRE_RESTORE_KEEP_DAYS`] days.
    pub pre_restore: bool,
}

/// What happens to one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The snapshot id.
    pub id: String,
    /// True to keep the snapshot, false to delete it.
    pub keep: bool,
    /// Why, for people reading a dry run.
    ///
    /// A kept ordinary snapshot lists every rule that keeps it, in this order: `last N`,
    /// `hourly 2026-11-23 03h`, `daily 2026-11-23`, `weekly 2026-W48`, `monthly 2026-11`,
    /// `yearly 2026`, `within 14d`; or `no retention rule: keep all` when no rule is set.
    /// The newest ordinary snapshot gets `newest` only when no rule keeps it. A deleted
    /// ordinary snapshot has `no rule keeps it`. A pre-restore snapshot has
    /// `pre-restore, kept 30 days` while kept and `pre-restore older than 30 days` once
    /// deleted.
    pub reasons: Vec<String>,
}

/// Reason of every ordinary snapshot when no retention rule is set.
const KEEP_ALL: &str = "no retention rule: keep all";
/// Reason added to the newest ordinary snapshot when no rule keeps it.
const NEWEST: &str = "newest";
/// Reason of a deleted ordinary snapshot.
const NO_RULE: &str = "no rule keeps it";

/// A time-bucket rule: its count, reason prefix, and bucket key in the local time zone.
type BucketRule = (Option<u32>, &'static str, fn(&DateTime<Tz>) -> String);

fn hour_key(t: &DateTime<Tz>) -> String {
    t.format("%Y-%m-%d %Hh").to_string()
}

fn day_key(t: &DateTime<Tz>) -> String {
    t.format("%Y-%m-%d").to_string()
}

fn week_key(t: &DateTime<Tz>) -> String {
    let week = t.iso_week();
    format!("{}-W{:02}", week.year(), week.week())
}

fn month_key(t: &DateTime<Tz>) -> String {
    t.format("%Y-%m").to_string()
}

fn year_key(t: &DateTime<Tz>) -> String {
    t.format("%Y").to_string()
}

/// Decide, for every snapshot of one destination, whether to keep or delete it.
///
/// Returns one [`Decision`] per candidate, newest first (by time, then by id, both
/// descending), whatever the input order. Rules apply to ordinary snapshots only
/// (`pre_restore == false`):
///
/// - No rule set ([`Retention::is_unbounded`]): every snapshot is kept.
/// - `keepLast: N` keeps the N newest snapshots.
/// - `keepHourly`, `keepDaily`, `keepWeekly`, `keepMonthly`, `keepYearly: N` keep the
///   newest snapshot of each of the N newest hours, days, ISO weeks, months or years
///   *that have a snapshot* (periods without a snapshot do not count), read in `tz`. ISO
///   weeks belong to their ISO year: Monday 2024-12-30 is in week 2025-W01.
/// - `keepWithin: D` keeps every snapshot taken after `now - D` (unlike restic, which
///   measures from the newest snapshot). Snapshots in the future count as within.
/// - `N = 0` sets a rule that keeps nothing by itself.
/// - The newest ordinary snapshot is always kept, even when every rule would drop it.
///
/// Pre-restore snapshots are kept while younger than [`PRE_RESTORE_KEEP_DAYS`] days
/// (measured from `now`) and deleted afterwards, with or without rules; they are never
/// the "newest" snapshot.
pub fn plan(
    candidates: &[Candidate],
    retention: &Retention,
    tz: Tz,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let mut order: Vec<&Candidate> = candidates.iter().collect();
    order.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));

    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); order.len()];
    let ordinary: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.pre_restore)
        .map(|(i, _)| i)
        .collect();

    if retention.is_unbounded() {
        for &i in &ordinary {
            reasons[i].push(KEEP_ALL.to_string());
        }
    } else {
        if let Some(n) = retention.keep_last {
            for &i in ordinary
                .iter()
                .take(usize::try_from(n).unwrap_or(usize::MAX))
            {
                reasons[i].push(format!("last {n}"));
            }
        }

        let bucket_rules: [BucketRule; 5] = [
            (retention.keep_hourly, "hourly", hour_key),
            (retention.keep_daily, "daily", day_key),
            (retention.keep_weekly, "weekly", week_key),
            (retention.keep_monthly, "monthly", month_key),
            (retention.keep_yearly, "yearly", year_key),
        ];
        for (count, label, key_of) in bucket_rules {
            let Some(n) = count else { continue };
            let limit = usize::try_from(n).unwrap_or(usize::MAX);
            let mut seen: Vec<String> = Vec::new();
            for &i in &ordinary {
                if seen.len() >= limit {
                    break;
                }
                let key = key_of(&order[i].time.with_timezone(&tz));
                if seen.contains(&key) {
                    continue;
                }
                reasons[i].push(format!("{label} {key}"));
                seen.push(key);
            }
        }

        if let Some(within) = retention.keep_within {
            // A window reaching before the earliest representable time keeps everything.
            let cutoff = now.checked_sub_signed(within.to_chrono());
            for &i in &ordinary {
                if cutoff.is_none_or(|c| order[i].time > c) {
                    reasons[i].push(format!("within {within}"));
                }
            }
        }
    }

    if let Some(&newest) = ordinary.first() {
        if reasons[newest].is_empty() {
            reasons[newest].push(NEWEST.to_string());
        }
    }

    let pre_restore_max_age = TimeDelta::days(PRE_RESTORE_KEEP_DAYS);
    order
        .iter()
        .zip(reasons)
        .map(|(c, reasons)| {
            if c.pre_restore {
                let keep = now.signed_duration_since(c.time) < pre_restore_max_age;
                let reason = if keep {
                    format!("pre-restore, kept {PRE_RESTORE_KEEP_DAYS} days")
                } else {
                    format!("pre-restore older than {PRE_RESTORE_KEEP_DAYS} days")
                };
                Decision {
                    id: c.id.clone(),
                    keep,
                    reasons: vec![reason],
                }
            } else if reasons.is_empty() {
                Decision {
                    id: c.id.clone(),
                    keep: false,
                    reasons: vec![NO_RULE.to_string()],
                }
            } else {
                Decision {
                    id: c.id.clone(),
                    keep: true,
                    reasons,
                }
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::duration::HumanDuration;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn snap(id: &str, time: &str) -> Candidate {
        Candidate {
            id: id.to_string(),
            time: t(time),
            pre_restore: false,
        }
    }

    fn pre(id: &str, time: &str) -> Candidate {
        Candidate {
            id: id.to_string(),
            time: t(time),
            pre_restore: true,
        }
    }

    fn dur(s: &str) -> HumanDuration {
        s.parse().unwrap()
    }

    fn ids(decisions: &[Decision]) -> Vec<&str> {
        decisions.iter().map(|d| d.id.as_str()).collect()
    }

    fn kept(decisions: &[Decision]) -> Vec<&str> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.id.as_str())
            .collect()
    }

    fn deleted(decisions: &[Decision]) -> Vec<&str> {
        decisions
            .iter()
            .filter(|d| !d.keep)
            .map(|d| d.id.as_str())
            .collect()
    }

    fn reasons<'a>(decisions: &'a [Decision], id: &str) -> Vec<&'a str> {
        decisions
            .iter()
            .find(|d| d.id == id)
            .unwrap()
            .reasons
            .iter()
            .map(String::as_str)
            .collect()
    }

    const NOW: &str = "2026-11-23T12:00:00Z";

    fn utc_plan(candidates: &[Candidate], retention: &Retention) -> Vec<Decision> {
        plan(candidates, retention, Tz::UTC, t(NOW))
    }

    #[test]
    fn empty_input_gives_empty_plan() {
        let retention = Retention {
            keep_last: Some(3),
            ..Retention::default()
        };
        assert!(utc_plan(&[], &retention).is_empty());
    }

    #[test]
    fn no_rules_keep_every_ordinary_snapshot() {
        let input = [
            snap("a", "2020-01-01T00:00:00Z"),
            snap("b", "2026-11-22T00:00:00Z"),
            snap("c", "2026-11-23T00:00:00Z"),
        ];
        let d = utc_plan(&input, &Retention::default());
        assert_eq!(ids(&d), ["c", "b", "a"]);
        assert_eq!(kept(&d), ["c", "b", "a"]);
        for id in ["a", "b", "c"] {
            assert_eq!(reasons(&d, id), ["no retention rule: keep all"]);
        }
    }

    #[test]
    fn keep_last_keeps_the_n_newest() {
        let input = [
            snap("s1", "2026-11-19T03:00:00Z"),
            snap("s2", "2026-11-20T03:00:00Z"),
            snap("s3", "2026-11-21T03:00:00Z"),
            snap("s4", "2026-11-22T03:00:00Z"),
            snap("s5", "2026-11-23T03:00:00Z"),
        ];
        let retention = Retention {
            keep_last: Some(3),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(ids(&d), ["s5", "s4", "s3", "s2", "s1"]);
        assert_eq!(kept(&d), ["s5", "s4", "s3"]);
        assert_eq!(deleted(&d), ["s2", "s1"]);
        for id in ["s5", "s4", "s3"] {
            assert_eq!(reasons(&d, id), ["last 3"]);
        }
        for id in ["s2", "s1"] {
            assert_eq!(reasons(&d, id), ["no rule keeps it"]);
        }
    }

    #[test]
    fn keep_last_larger_than_the_list_keeps_all() {
        let input = [
            snap("a", "2026-11-22T03:00:00Z"),
            snap("b", "2026-11-23T03:00:00Z"),
        ];
        let retention = Retention {
            keep_last: Some(10),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(kept(&d), ["b", "a"]);
        assert_eq!(reasons(&d, "a"), ["last 10"]);
    }

    #[test]
    fn keep_hourly_keeps_newest_of_each_hour() {
        let input = [
            snap("h3b", "2026-11-23T03:45:00Z"),
            snap("h3a", "2026-11-23T03:05:00Z"),
            snap("h2", "2026-11-23T02:30:00Z"),
            snap("h0b", "2026-11-23T00:59:59Z"),
            snap("h0a", "2026-11-23T00:00:00Z"),
            snap("old", "2026-11-22T23:59:00Z"),
        ];
        let retention = Retention {
            keep_hourly: Some(3),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(kept(&d), ["h3b", "h2", "h0b"]);
        assert_eq!(deleted(&d), ["h3a", "h0a", "old"]);
        assert_eq!(reasons(&d, "h3b"), ["hourly 2026-11-23 03h"]);
        assert_eq!(reasons(&d, "h2"), ["hourly 2026-11-23 02h"]);
        assert_eq!(reasons(&d, "h0b"), ["hourly 2026-11-23 00h"]);
    }

    #[test]
    fn keep_daily_counts_days_that_have_snapshots() {
        // A gap (22nd, 19th) does not use up a day: the 3 newest days with snapshots count.
        let input = [
            snap("d23b", "2026-11-23T09:00:00Z"),
            snap("d23a", "2026-11-23T03:00:00Z"),
            snap("d21", "2026-11-21T03:00:00Z"),
            snap("d20b", "2026-11-20T22:00:00Z"),
            snap("d20a", "2026-11-20T03:00:00Z"),
            snap("d18", "2026-11-18T03:00:00Z"),
        ];
        let retention = Retention {
            keep_daily: Some(3),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(kept(&d), ["d23b", "d21", "d20b"]);
        assert_eq!(deleted(&d), ["d23a", "d20a", "d18"]);
        assert_eq!(reasons(&d, "d23b"), ["daily 2026-11-23"]);
        assert_eq!(reasons(&d, "d21"), ["daily 2026-11-21"]);
        assert_eq!(reasons(&d, "d20b"), ["daily 2026-11-20"]);
        assert_eq!(reasons(&d, "d18"), ["no rule keeps it"]);
    }

    #[test]
    fn keep_weekly_uses_iso_weeks() {
        // 2026-11-23 is a Monday (W48); 2026-11-22 is the Sunday of W47.
        let input = [
            snap("w48", "2026-11-23T03:00:00Z"),
            snap("w47b", "2026-11-22T03:00:00Z"),
            snap("w47a", "2026-11-16T03:00:00Z"),
            snap("w46", "2026-11-15T03:00:00Z"),
        ];
        let retention = Retention {
            keep_weekly: Some(2),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(kept(&d), ["w48", "w47b"]);
        assert_eq!(deleted(&d), ["w47a", "w46"]);
        assert_eq!(reasons(&d, "w48"), ["weekly 2026-W48"]);
        assert_eq!(reasons(&d, "w47b"), ["weekly 2026-W47"]);
    }

    #[test]
    fn iso_weeks_across_the_year_boundary_53_weeks() {
        // 2026 has 53 ISO weeks: Mon 2026-12-28 .. Sun 2027-01-03 is 2026-W53.
        let input = [
            snap("mon-w01", "2027-01-04T03:00:00Z"),
            snap("sat-w53", "2027-01-02T03:00:00Z"),
            snap("mon-w53", "2026-12-28T03:00:00Z"),
            snap("sun-w52", "2026-12-27T03:00:00Z"),
        ];
        let retention = Retention {
            keep_weekly: Some(3),
            ..Retention::default()
        };
        let d = plan(&input, &retention, Tz::UTC, t("2027-01-05T00:00:00Z"));
        assert_eq!(kept(&d), ["mon-w01", "sat-w53", "sun-w52"]);
        assert_eq!(deleted(&d), ["mon-w53"]);
        assert_eq!(reasons(&d, "mon-w01"), ["weekly 2027-W01"]);
        assert_eq!(reasons(&d, "sat-w53"), ["weekly 2026-W53"]);
        assert_eq!(reasons(&d, "sun-w52"), ["weekly 2026-W52"]);
    }

    #[test]
    fn iso_week_belongs_to_the_next_year() {
        // Mon 2024-12-30 .. Sun 2025-01-05 is 2025-W01; Sun 2024-12-29 is 2024-W52.
        let input = [
            snap("sun-2025w01", "2025-01-05T03:00:00Z"),
            snap("mon-2025w01", "2024-12-30T03:00:00Z"),
            snap("sun-2024w52", "2024-12-29T03:00:00Z"),
        ];
        let weekly = Retention {
            keep_weekly: Some(2),
            ..Retention::default()
        };
        let d = plan(&input, &weekly, Tz::UTC, t("2025-01-06T00:00:00Z"));
        assert_eq!(kept(&d), ["sun-2025w01", "sun-2024w52"]);
        assert_eq!(deleted(&d), ["mon-2025w01"]);
        assert_eq!(reasons(&d, "sun-2025w01"), ["weekly 2025-W01"]);
        assert_eq!(reasons(&d, "sun-2024w52"), ["weekly 2024-W52"]);

        // The calendar year, by contrast, splits that same ISO week.
        let yearly = Retention {
            keep_yearly: Some(2),
            ..Retention::default()
        };
        let d = plan(&input, &yearly, Tz::UTC, t("2025-01-06T00:00:00Z"));
        assert_eq!(kept(&d), ["sun-2025w01", "mon-2025w01"]);
        assert_eq!(deleted(&d), ["sun-2024w52"]);
        assert_eq!(reasons(&d, "sun-2025w01"), ["yearly 2025"]);
        assert_eq!(reasons(&d, "mon-2025w01"), ["yearly 2024"]);
    }

    #[test]
    fn keep_monthly_keeps_newest_of_each_month() {
        let input = [
            snap("nov-b", "2026-11-23T03:00:00Z"),
            snap("nov-a", "2026-11-01T03:00:00Z"),
            snap("oct", "2026-10-31T03:00:00Z"),
            snap("aug", "2026-08-15T03:00:00Z"),
            snap("jul", "2026-07-15T03:00:00Z"),
        ];
        let retention = Retention {
            keep_monthly: Some(3),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(kept(&d), ["nov-b", "oct", "aug"]);
        assert_eq!(deleted(&d), ["nov-a", "jul"]);
        assert_eq!(reasons(&d, "nov-b"), ["monthly 2026-11"]);
        assert_eq!(reasons(&d, "oct"), ["monthly 2026-10"]);
        assert_eq!(reasons(&d, "aug"), ["monthly 2026-08"]);
    }

    #[test]
    fn keep_yearly_keeps_newest_of_each_year() {
        let input = [
            snap("y26", "2026-11-23T03:00:00Z"),
            snap("y25b", "2025-12-31T23:00:00Z"),
            snap("y25a", "2025-01-01T00:00:00Z"),
            snap("y24", "2024-06-01T03:00:00Z"),
        ];
        let retention = Retention {
            keep_yearly: Some(2),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(kept(&d), ["y26", "y25b"]);
        assert_eq!(deleted(&d), ["y25a", "y24"]);
        assert_eq!(reasons(&d, "y26"), ["yearly 2026"]);
        assert_eq!(reasons(&d, "y25b"), ["yearly 2025"]);
    }

    #[test]
    fn keep_within_keeps_snapshots_younger_than_the_window() {
        // now = 2026-11-23T12:00Z; the window is 14d, so the cutoff is 2026-11-09T12:00Z.
        let input = [
            snap("1d", "2026-11-22T12:00:00Z"),
            snap("13d", "2026-11-10T12:00:00Z"),
            snap("14d-1s", "2026-11-09T12:00:01Z"),
            snap("14d", "2026-11-09T12:00:00Z"),
            snap("20d", "2026-11-03T12:00:00Z"),
        ];
        let retention = Retention {
            keep_within: Some(dur("14d")),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(kept(&d), ["1d", "13d", "14d-1s"]);
        assert_eq!(deleted(&d), ["14d", "20d"]);
        assert_eq!(reasons(&d, "1d"), ["within 14d"]);
        assert_eq!(reasons(&d, "14d-1s"), ["within 14d"]);
        assert_eq!(reasons(&d, "14d"), ["no rule keeps it"]);
    }

    #[test]
    fn keep_within_reason_uses_the_duration_display() {
        let input = [
            snap("new", "2026-11-23T00:00:00Z"),
            snap("old", "2026-11-22T00:00:00Z"),
        ];
        let retention = Retention {
            keep_within: Some(dur("1h30m")),
            keep_last: Some(1),
            ..Retention::default()
        };
        let d = plan(&input, &retention, Tz::UTC, t("2026-11-23T01:00:00Z"));
        assert_eq!(kept(&d), ["new"]);
        assert_eq!(reasons(&d, "new"), ["last 1", "within 1h30m"]);
        assert_eq!(deleted(&d), ["old"]);
    }

    #[test]
    fn huge_keep_within_keeps_everything_without_panicking() {
        let input = [
            snap("new", "2026-11-23T00:00:00Z"),
            snap("ancient", "1970-01-01T00:00:00Z"),
        ];
        let retention = Retention {
            keep_within: Some(HumanDuration::from_secs(u64::MAX)),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(kept(&d), ["new", "ancient"]);
        assert!(deleted(&d).is_empty());
    }

    #[test]
    fn newest_is_kept_even_when_keep_within_excludes_everything() {
        let input = [
            snap("a", "2026-10-01T03:00:00Z"),
            snap("b", "2026-10-02T03:00:00Z"),
            snap("c", "2026-10-03T03:00:00Z"),
        ];
        let retention = Retention {
            keep_within: Some(dur("7d")),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(kept(&d), ["c"]);
        assert_eq!(deleted(&d), ["b", "a"]);
        assert_eq!(reasons(&d, "c"), ["newest"]);
        assert_eq!(reasons(&d, "b"), ["no rule keeps it"]);
    }

    #[test]
    fn newest_is_kept_with_zero_counts() {
        let input = [
            snap("a", "2026-11-22T03:00:00Z"),
            snap("b", "2026-11-23T03:00:00Z"),
        ];
        let retention = Retention {
            keep_last: Some(0),
            keep_daily: Some(0),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(kept(&d), ["b"]);
        assert_eq!(reasons(&d, "b"), ["newest"]);
        assert_eq!(deleted(&d), ["a"]);
    }

    #[test]
    fn newest_gets_no_extra_reason_when_a_rule_keeps_it() {
        let input = [
            snap("a", "2026-11-22T03:00:00Z"),
            snap("b", "2026-11-23T03:00:00Z"),
        ];
        let retention = Retention {
            keep_daily: Some(1),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(kept(&d), ["b"]);
        assert_eq!(reasons(&d, "b"), ["daily 2026-11-23"]);
    }

    #[test]
    fn rules_combine_and_list_every_reason() {
        let input = [
            snap("mon23b", "2026-11-23T09:00:00Z"), // Mon, W48
            snap("mon23a", "2026-11-23T03:00:00Z"), // Mon, W48
            snap("sun22", "2026-11-22T03:00:00Z"),  // Sun, W47
            snap("sat21", "2026-11-21T03:00:00Z"),  // Sat, W47
            snap("sun15", "2026-11-15T03:00:00Z"),  // Sun, W46
            snap("oct31", "2026-10-31T03:00:00Z"),  // Sat, W44
            snap("sep30", "2026-09-30T03:00:00Z"),  // Wed, W40
        ];
        let retention = Retention {
            keep_last: Some(2),
            keep_daily: Some(3),
            keep_weekly: Some(3),
            keep_monthly: Some(2),
            keep_within: Some(dur("30h")),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(
            kept(&d),
            ["mon23b", "mon23a", "sun22", "sat21", "sun15", "oct31"]
        );
        assert_eq!(deleted(&d), ["sep30"]);
        assert_eq!(
            reasons(&d, "mon23b"),
            [
                "last 2",
                "daily 2026-11-23",
                "weekly 2026-W48",
                "monthly 2026-11",
                "within 30h"
            ]
        );
        assert_eq!(reasons(&d, "mon23a"), ["last 2", "within 30h"]);
        assert_eq!(
            reasons(&d, "sun22"),
            ["daily 2026-11-22", "weekly 2026-W47"]
        );
        assert_eq!(reasons(&d, "sat21"), ["daily 2026-11-21"]);
        assert_eq!(reasons(&d, "sun15"), ["weekly 2026-W46"]);
        assert_eq!(reasons(&d, "oct31"), ["monthly 2026-10"]);
        assert_eq!(reasons(&d, "sep30"), ["no rule keeps it"]);
    }

    #[test]
    fn design_example_offsite_retention() {
        // keepDaily 7, keepWeekly 4, keepMonthly 12, keepYearly 10 over 60 nightly backups.
        let start = t("2026-09-25T02:15:00Z");
        let input: Vec<Candidate> = (0..60)
            .map(|i| Candidate {
                id: format!("n{i:02}"),
                time: start + TimeDelta::days(i),
                pre_restore: false,
            })
            .collect();
        let retention = Retention {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(12),
            keep_yearly: Some(10),
            ..Retention::default()
        };
        let zurich: Tz = "Europe/Zurich".parse().unwrap();
        let d = plan(&input, &retention, zurich, t("2026-11-24T12:00:00Z"));
        // Daily: n59 = Mon 2026-11-23 down to n53 = Tue 2026-11-17. Weekly: W48 (n59),
        // W47 (n58 = Sun 11-22), W46 (n51 = Sun 11-15), W45 (n44 = Sun 11-08).
        // Months: 2026-11 (n59), 2026-10 (n36 = Sat 10-31), 2026-09 (n05 = Wed 09-30).
        // Years: 2026 (n59).
        assert_eq!(
            kept(&d),
            ["n59", "n58", "n57", "n56", "n55", "n54", "n53", "n51", "n44", "n36", "n05"]
        );
        assert_eq!(deleted(&d).len(), 49);
        assert_eq!(
            reasons(&d, "n59"),
            [
                "daily 2026-11-23",
                "weekly 2026-W48",
                "monthly 2026-11",
                "yearly 2026"
            ]
        );
        assert_eq!(reasons(&d, "n51"), ["weekly 2026-W46"]);
        assert_eq!(reasons(&d, "n36"), ["monthly 2026-10"]);
        assert_eq!(reasons(&d, "n05"), ["monthly 2026-09"]);
    }

    #[test]
    fn daily_buckets_follow_the_policy_time_zone() {
        // 23:30 UTC on the 23rd is 00:30 on the 24th in Zurich (CET, UTC+1).
        let input = [
            snap("late", "2026-11-23T23:30:00Z"),
            snap("noon", "2026-11-23T12:00:00Z"),
            snap("prev", "2026-11-22T12:00:00Z"),
        ];
        let retention = Retention {
            keep_daily: Some(2),
            ..Retention::default()
        };
        let now = t("2026-11-24T06:00:00Z");

        let d = plan(&input, &retention, Tz::UTC, now);
        assert_eq!(kept(&d), ["late", "prev"]);
        assert_eq!(deleted(&d), ["noon"]);
        assert_eq!(reasons(&d, "late"), ["daily 2026-11-23"]);
        assert_eq!(reasons(&d, "prev"), ["daily 2026-11-22"]);

        let zurich: Tz = "Europe/Zurich".parse().unwrap();
        let d = plan(&input, &retention, zurich, now);
        assert_eq!(kept(&d), ["late", "noon"]);
        assert_eq!(deleted(&d), ["prev"]);
        assert_eq!(reasons(&d, "late"), ["daily 2026-11-24"]);
        assert_eq!(reasons(&d, "noon"), ["daily 2026-11-23"]);
    }

    #[test]
    fn hourly_buckets_merge_the_repeated_hour_when_dst_ends() {
        // Zurich leaves summer time on 2026-10-25 at 01:00 UTC: 00:30 UTC is 02:30 CEST
        // and 01:30 UTC is 02:30 CET, the same local hour.
        let input = [
            snap("cet", "2026-10-25T01:30:00Z"),
            snap("cest", "2026-10-25T00:30:00Z"),
            snap("one", "2026-10-24T23:30:00Z"),
        ];
        let retention = Retention {
            keep_hourly: Some(2),
            ..Retention::default()
        };
        let zurich: Tz = "Europe/Zurich".parse().unwrap();
        let d = plan(&input, &retention, zurich, t("2026-10-25T03:00:00Z"));
        assert_eq!(kept(&d), ["cet", "one"]);
        assert_eq!(deleted(&d), ["cest"]);
        assert_eq!(reasons(&d, "cet"), ["hourly 2026-10-25 02h"]);
        assert_eq!(reasons(&d, "one"), ["hourly 2026-10-25 01h"]);

        let d = plan(&input, &retention, Tz::UTC, t("2026-10-25T03:00:00Z"));
        assert_eq!(kept(&d), ["cet", "cest"]);
        assert_eq!(deleted(&d), ["one"]);
    }

    #[test]
    fn pre_restore_snapshots_do_not_count_and_expire_after_30_days() {
        let input = [
            pre("pre-new", "2026-11-23T11:00:00Z"),
            snap("s3", "2026-11-23T03:00:00Z"),
            snap("s2", "2026-11-22T03:00:00Z"),
            pre("pre-29d", "2026-10-25T12:00:00Z"),
            pre("pre-30d", "2026-10-24T12:00:00Z"),
            snap("s1", "2026-10-20T03:00:00Z"),
            pre("pre-31d", "2026-10-23T12:00:00Z"),
        ];
        let retention = Retention {
            keep_last: Some(2),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(
            ids(&d),
            ["pre-new", "s3", "s2", "pre-29d", "pre-30d", "pre-31d", "s1"]
        );
        assert_eq!(kept(&d), ["pre-new", "s3", "s2", "pre-29d"]);
        assert_eq!(deleted(&d), ["pre-30d", "pre-31d", "s1"]);
        assert_eq!(reasons(&d, "pre-new"), ["pre-restore, kept 30 days"]);
        assert_eq!(reasons(&d, "pre-29d"), ["pre-restore, kept 30 days"]);
        assert_eq!(reasons(&d, "pre-30d"), ["pre-restore older than 30 days"]);
        assert_eq!(reasons(&d, "pre-31d"), ["pre-restore older than 30 days"]);
        assert_eq!(reasons(&d, "s3"), ["last 2"]);
        assert_eq!(reasons(&d, "s2"), ["last 2"]);
        assert_eq!(reasons(&d, "s1"), ["no rule keeps it"]);
    }

    #[test]
    fn pre_restore_is_never_the_newest_and_not_in_buckets() {
        // The pre-restore snapshot is the newest of the day but must not take the bucket.
        let input = [
            pre("pre", "2026-11-23T10:00:00Z"),
            snap("day", "2026-11-23T03:00:00Z"),
            snap("old", "2026-11-01T03:00:00Z"),
        ];
        let retention = Retention {
            keep_daily: Some(1),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(kept(&d), ["pre", "day"]);
        assert_eq!(deleted(&d), ["old"]);
        assert_eq!(reasons(&d, "day"), ["daily 2026-11-23"]);

        // With a rule that keeps nothing, "newest" still goes to the ordinary snapshot.
        let within = Retention {
            keep_within: Some(dur("1h")),
            ..Retention::default()
        };
        let d = utc_plan(&input, &within);
        assert_eq!(kept(&d), ["pre", "day"]);
        assert_eq!(reasons(&d, "day"), ["newest"]);
    }

    #[test]
    fn pre_restore_expires_even_without_rules() {
        let input = [
            snap("s", "2026-01-01T00:00:00Z"),
            pre("pre-old", "2026-01-02T00:00:00Z"),
            pre("pre-young", "2026-11-20T00:00:00Z"),
        ];
        let d = utc_plan(&input, &Retention::default());
        assert_eq!(kept(&d), ["pre-young", "s"]);
        assert_eq!(deleted(&d), ["pre-old"]);
        assert_eq!(reasons(&d, "s"), ["no retention rule: keep all"]);
    }

    #[test]
    fn only_pre_restore_snapshots() {
        let input = [
            pre("young", "2026-11-20T00:00:00Z"),
            pre("old", "2026-09-20T00:00:00Z"),
        ];
        let retention = Retention {
            keep_last: Some(5),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(kept(&d), ["young"]);
        assert_eq!(deleted(&d), ["old"]);
        assert_eq!(reasons(&d, "young"), ["pre-restore, kept 30 days"]);
    }

    #[test]
    fn unordered_input_gives_newest_first_with_id_tie_break() {
        let input = [
            snap("b", "2026-11-21T03:00:00Z"),
            snap("e", "2026-11-23T03:00:00Z"),
            snap("a", "2026-11-20T03:00:00Z"),
            snap("c", "2026-11-23T03:00:00Z"),
            snap("d", "2026-11-22T03:00:00Z"),
        ];
        let retention = Retention {
            keep_last: Some(2),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        // "e" and "c" share a time; the larger id comes first.
        assert_eq!(ids(&d), ["e", "c", "d", "b", "a"]);
        assert_eq!(kept(&d), ["e", "c"]);
        assert_eq!(deleted(&d), ["d", "b", "a"]);

        let mut reversed = input.to_vec();
        reversed.reverse();
        assert_eq!(utc_plan(&reversed, &retention), d);
    }

    #[test]
    fn unordered_input_buckets_take_the_newest_in_each_period() {
        let input = [
            snap("early", "2026-11-23T01:00:00Z"),
            snap("older-day", "2026-11-22T01:00:00Z"),
            snap("late", "2026-11-23T20:00:00Z"),
            snap("mid", "2026-11-23T10:00:00Z"),
        ];
        let retention = Retention {
            keep_daily: Some(2),
            ..Retention::default()
        };
        let d = plan(&input, &retention, Tz::UTC, t("2026-11-24T00:00:00Z"));
        assert_eq!(ids(&d), ["late", "mid", "early", "older-day"]);
        assert_eq!(kept(&d), ["late", "older-day"]);
        assert_eq!(deleted(&d), ["mid", "early"]);
    }

    #[test]
    fn future_snapshots_are_treated_normally() {
        // A clock-skewed snapshot after `now` is the newest and lies within the window.
        let input = [
            snap("future", "2026-11-25T00:00:00Z"),
            snap("today", "2026-11-23T03:00:00Z"),
            snap("old", "2026-11-01T03:00:00Z"),
            pre("pre-future", "2026-12-30T00:00:00Z"),
        ];
        let retention = Retention {
            keep_last: Some(1),
            keep_within: Some(dur("1d")),
            ..Retention::default()
        };
        let d = utc_plan(&input, &retention);
        assert_eq!(ids(&d), ["pre-future", "future", "today", "old"]);
        assert_eq!(kept(&d), ["pre-future", "future", "today"]);
        assert_eq!(deleted(&d), ["old"]);
        assert_eq!(reasons(&d, "future"), ["last 1", "within 1d"]);
        assert_eq!(reasons(&d, "today"), ["within 1d"]);
        assert_eq!(reasons(&d, "pre-future"), ["pre-restore, kept 30 days"]);
    }
}
