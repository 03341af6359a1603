//! `arca prune`: applies each destination's retention (see `arca_api::retention`), and
//! collects leftovers of interrupted runs. A snapshot is deleted manifest first, then its
//! artifacts and verification records, so an interrupted prune leaves garbage, never a
//! broken snapshot. Snapshot folders without a manifest and temporary files are collected
//! once they are older than a day (a run may still be writing younger ones).

use arca_api::manifest::{SnapshotReason, MANIFEST_NAME};
use arca_api::retention::{plan, Candidate, Decision};
use chrono::{TimeDelta, Utc};
use tracing::{info, warn};

use crate::catalog;
use crate::config::{DestinationPlan, Policy};
use crate::store::path::TEMP_PREFIX;
use crate::verify::VERIFICATIONS_DIR;

/// Age after which leftovers are collected.
pub const LEFTOVER_AGE_HOURS: i64 = 24;

/// What prune decided and did at one destination.
#[derive(Debug, Clone)]
pub struct PruneReport {
    /// Destination.
    pub destination: String,
    /// Every snapshot, newest first, with its verdict.
    pub decisions: Vec<Decision>,
    /// Incomplete snapshot folders collected.
    pub leftovers: Vec<String>,
    /// Incomplete uploads (S3 multipart) of killed runs aborted, by key.
    pub stale_uploads: Vec<String>,
    /// Deletions that failed.
    pub errors: Vec<String>,
}

/// Apply retention at one destination (`dry_run`: decide, delete nothing).
pub async fn prune_destination(
    policy: &Policy,
    dest: &DestinationPlan,
    dry_run: bool,
) -> Result<PruneReport, String> {
    let tz = arca_api::schedule::parse_time_zone(policy.spec.time_zone.as_deref())
        .map_err(|e| e.to_string())?;
    let manifests = catalog::list(&dest.store, &policy.name)
        .await
        .map_err(|e| format!("cannot list destination {:?}: {e}", dest.name))?;
    let candidates: Vec<Candidate> = manifests
        .iter()
        .map(|m| Candidate {
            id: m.snapshot.clone(),
            time: m.started_at,
            pre_restore: m.reason == SnapshotReason::PreRestore,
        })
        .collect();
    let now = Utc::now();
    let decisions = plan(&candidates, &dest.retention, tz, now);
    let mut report = PruneReport {
        destination: dest.name.clone(),
        decisions: decisions.clone(),
        leftovers: vec![],
        stale_uploads: vec![],
        errors: vec![],
    };
    // Leftovers: snapshot folders without a manifest, older than a day.
    let complete: std::collections::HashSet<&str> =
        manifests.iter().map(|m| m.snapshot.as_str()).collect();
    let folders = catalog::snapshot_folders(&dest.store, &policy.name)
        .await
        .map_err(|e| format!("cannot list destination {:?}: {e}", dest.name))?;
    let cutoff = now - TimeDelta::hours(LEFTOVER_AGE_HOURS);
    for id in folders {
        let name = id.to_string();
        if !complete.contains(name.as_str()) && id.time < cutoff {
            report.leftovers.push(name);
        }
    }
    if dry_run {
        return Ok(report);
    }
    for d in decisions.iter().filter(|d| !d.keep) {
        info!(destination = %dest.name, snapshot = %d.id, reason = %d.reasons.join(", "), "deleting snapshot");
        if let Err(e) = delete_snapshot(dest, &policy.name, &d.id).await {
            warn!(destination = %dest.name, snapshot = %d.id, "{e}");
            report.errors.push(e);
        }
    }
    for id in &report.leftovers {
        info!(destination = %dest.name, folder = %id, "collecting an incomplete snapshot folder");
        if let Err(e) = delete_snapshot(dest, &policy.name, id).await {
            report.errors.push(e);
        }
    }
    // Stray temporary files (a crashed writer), older than a day.
    if let Ok(objects) = dest.store.list_objects(&format!("{}/", policy.name)).await {
        for o in objects {
            let base = o.key.rsplit('/').next().unwrap_or_default();
            let old = o.modified.is_some_and(|m| m < cutoff);
            if base.starts_with(TEMP_PREFIX) && old {
                let _ = dest.store.delete(&o.key).await;
            }
        }
    }
    // Multipart uploads of killed runs, older than a day: invisible in listings, but S3
    // keeps their parts (and bills them) until they are aborted.
    match dest
        .store
        .abort_stale_uploads(&format!("{}/", policy.name), cutoff)
        .await
    {
        Ok(keys) => {
            for k in &keys {
                info!(destination = %dest.name, key = %k, "aborted an incomplete upload");
            }
            report.stale_uploads = keys;
        }
        Err(e) => report.errors.push(e.to_string()),
    }
    Ok(report)
}

/// Delete a snapshot: manifest first, then artifacts, then its verification records.
pub async fn delete_snapshot(dest: &DestinationPlan, policy: &str, id: &str) -> Result<(), String> {
    let prefix = format!("{policy}/{id}/");
    dest.store
        .delete(&format!("{prefix}{MANIFEST_NAME}"))
        .await
        .map_err(|e| e.to_string())?;
    let objects = dest
        .store
        .list_objects(&prefix)
        .await
        .map_err(|e| e.to_string())?;
    for o in objects {
        dest.store.delete(&o.key).await.map_err(|e| e.to_string())?;
    }
    if let Ok(records) = dest
        .store
        .list_objects(&format!("{policy}/{VERIFICATIONS_DIR}/{id}/"))
        .await
    {
        for o in records {
            let _ = dest.store.delete(&o.key).await;
        }
    }
    Ok(())
}

/// Prune every destination (or those in `only`).
pub async fn run(
    policy: &Policy,
    only: Option<&[String]>,
    dry_run: bool,
) -> Vec<Result<PruneReport, String>> {
    let mut out = Vec::new();
    for d in &policy.destinations {
        if only.is_some_and(|o| !o.contains(&d.name)) {
            continue;
        }
        out.push(prune_destination(policy, d, dry_run).await);
    }
    out
}
