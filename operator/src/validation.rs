//! Validation the controller always does (the CRD schema catches some of it earlier, but a
//! cluster may run an older CRD): the shared [`Validator`] for Kubernetes bindings plus the
//! checks only a cluster needs (object names, sub-paths, restore requests against their
//! policy). Every problem is reported at once, with its field path and what to do.

use std::collections::HashSet;

use arca_api::crd::RestoreRequestSpec;
use arca_api::manifest::SnapshotId;
use arca_api::schedule::Schedule;
use arca_api::validate::Platform;
use arca_api::{ComponentKind, PolicySpec, SecretKeyRef, Validator};
use chrono::DateTime;

/// A policy that passed validation, with what validation parsed.
#[derive(Debug, Clone)]
pub struct ValidPolicy {
    /// The schedule in its time zone (None: manual runs only).
    pub schedule: Option<Schedule>,
    /// The `verify.schedule` in the policy's time zone (None: no scheduled verification).
    pub verify_schedule: Option<Schedule>,
}

/// Join problems into one status message.
pub fn join(problems: &[String]) -> String {
    problems.join("; ")
}

/// Validate a BackupPolicy named `name`.
pub fn validate_policy(name: &str, spec: &PolicySpec) -> Result<ValidPolicy, Vec<String>> {
    let mut problems: Vec<String> = match Validator::validate(name, spec, Platform::Kubernetes) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    };
    let mut schedule = None;
    if let Some(expr) = &spec.schedule {
        // The shared validator checks cron and zone separately; parse them together.
        match Schedule::parse(expr, spec.time_zone.as_deref()) {
            Ok(s) => schedule = Some(s),
            Err(e) => {
                let msg = format!("schedule: {e}");
                let tz = format!("timeZone: {e}");
                if !problems.contains(&msg) && !problems.contains(&tz) {
                    problems.push(msg);
                }
            }
        }
    }
    let mut verify_schedule = None;
    if let Some(v) = &spec.verify {
        // Same time zone as the backups.
        match Schedule::parse(&v.schedule, spec.time_zone.as_deref()) {
            Ok(s) => verify_schedule = Some(s),
            Err(e) => {
                let msg = format!("verify.schedule: {e}");
                let tz = format!("timeZone: {e}");
                if !problems.contains(&msg) && !problems.contains(&tz) {
                    problems.push(msg);
                }
            }
        }
    }
    if spec.starting_deadline.is_some_and(|d| d.as_secs() == 0) {
        problems.push("startingDeadline: must be longer than zero, e.g. 1h".into());
    }
    if let Some(q) = &spec.quiesce {
        if q.timeout.is_some_and(|d| d.as_secs() == 0) {
            problems.push("quiesce.timeout: must be longer than zero, e.g. 5m".into());
        }
        let mut seen = HashSet::new();
        for (i, w) in q.scale_down.iter().enumerate() {
            if !w.name.is_empty() && !is_dns_subdomain(&w.name) {
                problems.push(format!(
                    "quiesce.scaleDown[{i}].name: {:?} is not a Kubernetes object name",
                    w.name
                ));
            }
            if !seen.insert((w.kind.as_str(), w.name.as_str())) {
                problems.push(format!(
                    "quiesce.scaleDown[{i}]: {}/{} is listed twice",
                    w.kind, w.name
                ));
            }
        }
    }
    for (i, c) in spec.components.iter().enumerate() {
        let (claim, sub, kind) = if let Some(f) = &c.files {
            (f.claim_name.as_deref(), f.sub_path.as_deref(), "files")
        } else if let Some(s) = &c.sqlite {
            (s.claim_name.as_deref(), s.sub_path.as_deref(), "sqlite")
        } else {
            (None, None, "")
        };
        if let Some(claim) = claim.filter(|c| !c.is_empty()) {
            if !is_dns_subdomain(claim) {
                problems.push(format!(
                    "components[{i}].{kind}.claimName: {claim:?} is not a PersistentVolumeClaim name"
                ));
            }
        }
        if let Some(sub) = sub {
            if let Err(e) = check_sub_path(sub) {
                problems.push(format!("components[{i}].{kind}.subPath: {e}"));
            }
        }
    }
    for (i, d) in spec.destinations.iter().enumerate() {
        if let Some(claim) = d.claim_name.as_deref().filter(|c| !c.is_empty()) {
            if !is_dns_subdomain(claim) {
                problems.push(format!(
                    "destinations[{i}].claimName: {claim:?} is not a PersistentVolumeClaim name"
                ));
            }
        }
    }
    for (field, r) in secret_refs(spec) {
        if !is_dns_subdomain(&r.name) {
            problems.push(format!("{field}.name: {:?} is not a Secret name", r.name));
        }
        if !is_secret_key(&r.key) {
            problems.push(format!(
                "{field}.key: {:?} is not a Secret key (letters, digits, '-', '_', '.')",
                r.key
            ));
        }
    }
    if problems.is_empty() {
        Ok(ValidPolicy {
            schedule,
            verify_schedule,
        })
    } else {
        Err(problems)
    }
}

/// Why `spec.verify` cannot run in a cluster, or None. Backups do not need it (they hold
/// public keys only), so this never stops them; the verify Job does: it must decrypt.
pub fn verify_problem(spec: &PolicySpec) -> Option<String> {
    spec.verify.as_ref()?;
    let enc = spec.encryption.as_ref()?;
    if enc.age_recipients.is_empty() || enc.age_identity_secret_ref.is_some() {
        return None;
    }
    Some(
        "verify: snapshots are encrypted but encryption.ageIdentitySecretRef is not set, so verify Jobs cannot decrypt them: add encryption.ageIdentitySecretRef {name, key} naming the Secret key that holds the age identity (`arca keygen` prints one), or remove verify"
            .into(),
    )
}

/// Every `*SecretRef` of `spec` with its field path.
pub fn secret_refs(spec: &PolicySpec) -> Vec<(String, &SecretKeyRef)> {
    let mut out = Vec::new();
    if let Some(r) = spec
        .encryption
        .as_ref()
        .and_then(|e| e.age_identity_secret_ref.as_ref())
    {
        out.push(("encryption.ageIdentitySecretRef".to_string(), r));
    }
    for (i, c) in spec.components.iter().enumerate() {
        let refs = [
            c.postgres_globals
                .as_ref()
                .and_then(|s| s.password_secret_ref.as_ref())
                .map(|r| ("postgresGlobals", r)),
            c.postgres
                .as_ref()
                .and_then(|s| s.password_secret_ref.as_ref())
                .map(|r| ("postgres", r)),
            c.mysql
                .as_ref()
                .and_then(|s| s.password_secret_ref.as_ref())
                .map(|r| ("mysql", r)),
        ];
        for (kind, r) in refs.into_iter().flatten() {
            out.push((format!("components[{i}].{kind}.passwordSecretRef"), r));
        }
    }
    for (i, d) in spec.destinations.iter().enumerate() {
        if let Some(s3) = &d.s3 {
            if let Some(r) = &s3.access_key_id_secret_ref {
                out.push((format!("destinations[{i}].s3.accessKeyIdSecretRef"), r));
            }
            if let Some(r) = &s3.secret_access_key_secret_ref {
                out.push((format!("destinations[{i}].s3.secretAccessKeySecretRef"), r));
            }
        }
    }
    out
}

/// Validate a RestoreRequest against the policy it names.
pub fn validate_restore(spec: &RestoreRequestSpec, policy: &PolicySpec) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if let Some(s) = spec.snapshot.as_deref().filter(|s| *s != "latest") {
        if s.parse::<SnapshotId>().is_err() {
            problems.push(format!(
                "snapshot: {s:?} is not a snapshot id: use latest or an id such as 20261123T031500Z (see `arca snapshots`)"
            ));
        }
    }
    if let Some(b) = &spec.before {
        if DateTime::parse_from_rfc3339(b).is_err() {
            problems.push(format!(
                "before: {b:?} is not an RFC 3339 time such as 2026-11-20T00:00:00+01:00"
            ));
        }
        if spec.snapshot.as_deref().is_some_and(|s| s != "latest") {
            problems.push("before: set either snapshot or before, not both".into());
        }
    }
    let mut seen = HashSet::new();
    for (i, name) in spec.components.iter().enumerate() {
        if !policy.components.iter().any(|c| &c.name == name) {
            let known: Vec<&str> = policy.components.iter().map(|c| c.name.as_str()).collect();
            problems.push(format!(
                "components[{i}]: the policy has no component {name:?} (it has {})",
                known.join(", ")
            ));
        }
        if !seen.insert(name) {
            problems.push(format!("components[{i}]: {name:?} is listed twice"));
        }
    }
    if let Some(from) = &spec.from {
        if !policy.destinations.iter().any(|d| &d.name == from) {
            problems.push(format!("from: the policy has no destination {from:?}"));
        }
    }
    let single_kind = || -> Option<ComponentKind> {
        match spec.components.as_slice() {
            [one] => policy
                .components
                .iter()
                .find(|c| &c.name == one)
                .and_then(|c| c.kind()),
            _ => None,
        }
    };
    if let Some(db) = &spec.to_database {
        match single_kind() {
            Some(ComponentKind::Postgres | ComponentKind::Mysql) => {}
            Some(k) => problems.push(format!(
                "toDatabase: component {:?} is a {k} component: toDatabase works for postgres and mysql",
                spec.components[0]
            )),
            None if spec.components.len() != 1 => problems
                .push("toDatabase: list exactly one database component in components".into()),
            None => {}
        }
        if db.is_empty()
            || db.len() > 63
            || !db
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            problems.push(format!(
                "toDatabase: {db:?} is not a database name: use letters, digits, '_' and '-'"
            ));
        }
    }
    if let Some(target) = &spec.to_claim {
        if spec.to_database.is_some() {
            problems.push("toClaim: set either toDatabase or toClaim, not both".into());
        }
        match single_kind() {
            Some(ComponentKind::Sqlite)
                if target
                    .sub_path
                    .as_deref()
                    .is_none_or(|s| s.trim_matches('/').is_empty()) =>
            {
                problems
                    .push("toClaim.subPath: give the database file's path inside the claim".into());
            }
            Some(ComponentKind::Files | ComponentKind::Sqlite) => {}
            Some(k) => problems.push(format!(
                "toClaim: component {:?} is a {k} component: toClaim works for files and sqlite",
                spec.components[0]
            )),
            None if spec.components.len() != 1 => problems
                .push("toClaim: list exactly one files or sqlite component in components".into()),
            None => {}
        }
        if !is_dns_subdomain(&target.claim_name) {
            problems.push(format!(
                "toClaim.claimName: {:?} is not a PersistentVolumeClaim name",
                target.claim_name
            ));
        }
        if let Some(sub) = &target.sub_path {
            if let Err(e) = check_sub_path(sub) {
                problems.push(format!("toClaim.subPath: {e}"));
            }
        }
    }
    for (i, w) in spec.scale_down.iter().flatten().enumerate() {
        if w.kind != "Deployment" && w.kind != "StatefulSet" {
            problems.push(format!(
                "scaleDown[{i}].kind: {:?} cannot be scaled down: use Deployment or StatefulSet",
                w.kind
            ));
        }
        if !is_dns_subdomain(&w.name) {
            problems.push(format!(
                "scaleDown[{i}].name: {:?} is not a Kubernetes object name",
                w.name
            ));
        }
    }
    if let Some(enc) = &policy.encryption {
        if enc.age_identity_secret_ref.is_none() {
            problems.push(format!(
                "policyRef: policy {:?} is encrypted but sets no encryption.ageIdentitySecretRef: add the Secret holding the age identity to the policy so the restore can decrypt",
                spec.policy_ref.name
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A relative path without `..` components.
pub fn check_sub_path(sub: &str) -> Result<(), String> {
    if sub.starts_with('/') {
        return Err(format!("{sub:?} must be relative to the claim's root"));
    }
    if sub.split('/').any(|part| part == "..") {
        return Err(format!("{sub:?} must not contain '..'"));
    }
    Ok(())
}

/// A Kubernetes object name (DNS-1123 subdomain).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A Secret data key.
pub fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::testdata;
    use arca_api::crd::{ClaimTarget, PolicyRef};

    fn problems(spec: &PolicySpec) -> Vec<String> {
        validate_policy("orthanc", spec).err().unwrap_or_default()
    }

    #[test]
    fn the_full_example_is_valid_and_parses_its_schedule() {
        let v = validate_policy("orthanc", &testdata::full_spec()).unwrap();
        assert!(v.schedule.is_some());
    }

    #[test]
    fn bad_cron_is_reported_with_the_fix() {
        let mut spec = testdata::full_spec();
        spec.schedule = Some("every night".into());
        let p = problems(&spec);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("schedule: invalid cron expression"),
            "{p:?}"
        );
        assert!(p[0].contains("use 5 fields"), "{p:?}");
    }

    #[test]
    fn bad_time_zone_is_reported_once() {
        let mut spec = testdata::full_spec();
        spec.time_zone = Some("Mars/Olympus".into());
        let p = problems(&spec);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("unknown time zone"), "{p:?}");
    }

    #[test]
    fn duplicate_component_names() {
        let mut spec = testdata::full_spec();
        spec.components[1].name = "globals".into();
        let p = problems(&spec);
        assert!(
            p.iter()
                .any(|m| m.contains("duplicate component name \"globals\"")),
            "{p:?}"
        );
    }

    #[test]
    fn compose_bindings_are_refused_in_a_cluster() {
        let mut spec = testdata::full_spec();
        spec.destinations[0].claim_name = None;
        spec.destinations[0].path = Some("/backup".into());
        let p = problems(&spec);
        assert!(p.iter().any(|m| m.contains("use claimName")), "{p:?}");
    }

    #[test]
    fn sub_paths_stay_inside_the_claim() {
        let mut spec = testdata::full_spec();
        spec.components[2].sqlite.as_mut().unwrap().sub_path = Some("../etc/shadow".into());
        let p = problems(&spec);
        assert!(
            p.iter().any(|m| m.contains("must not contain '..'")),
            "{p:?}"
        );
        assert!(check_sub_path("/abs").is_err());
        assert!(check_sub_path("db/index").is_ok());
    }

    #[test]
    fn secret_names_and_keys() {
        let mut spec = testdata::full_spec();
        spec.components[1]
            .postgres
            .as_mut()
            .unwrap()
            .password_secret_ref = Some(SecretKeyRef {
            name: "PG".into(),
            key: "pass word".into(),
        });
        let p = problems(&spec);
        assert!(
            p.iter().any(|m| m.contains("is not a Secret name")),
            "{p:?}"
        );
        assert!(p.iter().any(|m| m.contains("is not a Secret key")), "{p:?}");
    }

    #[test]
    fn zero_durations() {
        let mut spec = testdata::full_spec();
        spec.starting_deadline = Some("0s".parse().unwrap());
        assert!(problems(&spec)
            .iter()
            .any(|m| m.starts_with("startingDeadline")));
    }

    #[test]
    fn all_secret_refs_are_found() {
        let spec = testdata::full_spec();
        let refs = secret_refs(&spec);
        let fields: Vec<&str> = refs.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "encryption.ageIdentitySecretRef",
                "components[0].postgresGlobals.passwordSecretRef",
                "components[1].postgres.passwordSecretRef",
                "destinations[1].s3.accessKeyIdSecretRef",
                "destinations[1].s3.secretAccessKeySecretRef",
            ]
        );
    }

    fn restore(f: impl FnOnce(&mut RestoreRequestSpec)) -> Vec<String> {
        let mut spec = RestoreRequestSpec {
            policy_ref: PolicyRef {
                name: "orthanc".into(),
            },
            safety_backup: true,
            ..Default::default()
        };
        f(&mut spec);
        validate_restore(&spec, &testdata::full_spec())
            .err()
            .unwrap_or_default()
    }

    #[test]
    fn a_plain_restore_is_valid() {
        assert!(restore(|_| {}).is_empty());
        assert!(restore(|s| s.snapshot = Some("20261123T031500Z".into())).is_empty());
        assert!(restore(|s| s.before = Some("2026-11-20T00:00:00+01:00".into())).is_empty());
    }

    #[test]
    fn restore_problems_name_the_field() {
        let p = restore(|s| {
            s.snapshot = Some("yesterday".into());
            s.components = vec!["nope".into()];
            s.from = Some("attic".into());
        });
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("snapshot:"));
        assert!(p[1].contains("no component \"nope\""));
        assert!(p[2].contains("no destination \"attic\""));
    }

    #[test]
    fn snapshot_and_before_exclude_each_other() {
        let p = restore(|s| {
            s.snapshot = Some("20261123T031500Z".into());
            s.before = Some("2026-11-20T00:00:00Z".into());
        });
        assert!(p.iter().any(|m| m.contains("not both")), "{p:?}");
        let p = restore(|s| s.before = Some("last tuesday".into()));
        assert!(p.iter().any(|m| m.contains("RFC 3339")), "{p:?}");
    }

    #[test]
    fn to_database_needs_one_database_component() {
        assert!(restore(|s| {
            s.components = vec!["index".into()];
            s.to_database = Some("orthanc_copy".into());
        })
        .is_empty());
        let p = restore(|s| {
            s.components = vec!["storage".into()];
            s.to_database = Some("copy".into());
        });
        assert!(
            p.iter().any(|m| m.contains("is a files component")),
            "{p:?}"
        );
        let p = restore(|s| s.to_database = Some("copy".into()));
        assert!(p.iter().any(|m| m.contains("exactly one")), "{p:?}");
    }

    #[test]
    fn to_claim_needs_one_files_or_sqlite_component() {
        assert!(restore(|s| {
            s.components = vec!["storage".into()];
            s.to_claim = Some(ClaimTarget {
                claim_name: "scratch".into(),
                sub_path: None,
            });
        })
        .is_empty());
        let p = restore(|s| {
            s.components = vec!["catalog".into()];
            s.to_claim = Some(ClaimTarget {
                claim_name: "scratch".into(),
                sub_path: None,
            });
        });
        assert!(
            p.iter().any(|m| m.contains("database file's path")),
            "{p:?}"
        );
    }

    #[test]
    fn verify_schedule_is_read_in_the_policy_time_zone() {
        let mut spec = testdata::full_spec();
        spec.verify = Some(arca_api::VerifySchedule {
            schedule: "0 6 * * 0".into(),
            deep: None,
        });
        let v = validate_policy("orthanc", &spec).unwrap();
        let next = v
            .verify_schedule
            .unwrap()
            .next_after("2026-11-23T00:00:00Z".parse().unwrap())
            .unwrap();
        // Sunday 06:00 in Zurich (UTC+1 in November).
        assert_eq!(next.to_rfc3339(), "2026-11-29T05:00:00+00:00");
        spec.verify = Some(arca_api::VerifySchedule {
            schedule: "weekly".into(),
            deep: None,
        });
        let problems = validate_policy("orthanc", &spec).unwrap_err();
        assert_eq!(
            problems
                .iter()
                .filter(|p| p.starts_with("verify.schedule"))
                .count(),
            1,
            "{problems:?}"
        );
    }

    #[test]
    fn verify_of_encrypted_snapshots_needs_the_identity() {
        let mut spec = testdata::full_spec();
        assert_eq!(verify_problem(&spec), None, "no verify, no problem");
        spec.verify = Some(arca_api::VerifySchedule {
            schedule: "0 6 * * 0".into(),
            deep: Some(true),
        });
        assert_eq!(verify_problem(&spec), None, "the fixture has an identity");
        spec.encryption.as_mut().unwrap().age_identity_secret_ref = None;
        let p = verify_problem(&spec).unwrap();
        assert!(p.contains("encryption.ageIdentitySecretRef"), "{p}");
        // Still a valid policy: backups do not need the identity.
        assert!(validate_policy("orthanc", &spec).is_ok());
        spec.encryption = None;
        assert_eq!(verify_problem(&spec), None, "plain snapshots need no key");
    }

    #[test]
    fn encrypted_policy_needs_an_identity_to_restore() {
        let mut policy = testdata::full_spec();
        policy.encryption.as_mut().unwrap().age_identity_secret_ref = None;
        let spec = RestoreRequestSpec {
            policy_ref: PolicyRef {
                name: "orthanc".into(),
            },
            ..Default::default()
        };
        let p = validate_restore(&spec, &policy).unwrap_err();
        assert!(p[0].contains("ageIdentitySecretRef"), "{p:?}");
    }

    #[test]
    fn names() {
        assert!(is_dns_subdomain("orthanc-data"));
        assert!(is_dns_subdomain("a.b-c"));
        assert!(!is_dns_subdomain("Orthanc"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain(""));
        assert!(is_secret_key("key.txt"));
        assert!(!is_secret_key(".."));
        assert!(!is_secret_key("a/b"));
    }
}
