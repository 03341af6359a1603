//! The catalog: which snapshots exist where. A snapshot exists at a destination exactly
//! when its `manifest.json` does; folders without one are leftovers of interrupted runs.

use std::collections::BTreeMap;

use arca_api::manifest::{Manifest, SnapshotReason, MANIFEST_NAME};
use arca_api::SnapshotId;
use futures::stream::{self, StreamExt};

use crate::config::DestinationPlan;
use crate::store::{Store, StoreError};

/// Manifests read concurrently when listing.
const LIST_CONCURRENCY: usize = 8;

/// Key of an object inside a snapshot.
pub fn object_key(policy: &str, snapshot: &str, object: &str) -> String {
    format!("{policy}/{snapshot}/{object}")
}

/// Snapshot folders (valid ids) at a store, with or without manifest.
pub async fn snapshot_folders(store: &Store, policy: &str) -> Result<Vec<SnapshotId>, StoreError> {
    let mut ids: Vec<SnapshotId> = store
        .list_dirs(&format!("{policy}/"))
        .await?
        .iter()
        .filter_map(|d| d.parse().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Complete snapshots at a store, oldest first.
pub async fn list(store: &Store, policy: &str) -> Result<Vec<Manifest>, StoreError> {
    let ids = snapshot_folders(store, policy).await?;
    let results: Vec<Result<Option<Manifest>, StoreError>> = stream::iter(ids)
        .map(|id| async move {
            let key = object_key(policy, &id.to_string(), MANIFEST_NAME);
            match store.get_bytes(&key).await? {
                Some(bytes) => Ok(serde_json::from_slice::<Manifest>(&bytes).ok()),
                None => Ok(None),
            }
        })
        .buffered(LIST_CONCURRENCY)
        .collect()
        .await;
    let mut out = Vec::new();
    for r in results {
        if let Some(m) = r? {
            out.push(m);
        }
    }
    Ok(out)
}

/// A snapshot and the destinations that hold it.
#[derive(Debug, Clone)]
pub struct Located {
    /// Its manifest (from the first destination listed).
    pub manifest: Manifest,
    /// Destination names, in policy order.
    pub destinations: Vec<String>,
}

/// Snapshots across destinations, oldest first, plus per-destination listing errors.
pub async fn list_all(
    destinations: &[DestinationPlan],
    policy: &str,
) -> (Vec<Located>, Vec<(String, StoreError)>) {
    let mut by_id: BTreeMap<SnapshotId, Located> = BTreeMap::new();
    let mut errors = Vec::new();
    for d in destinations {
        match list(&d.store, policy).await {
            Ok(ms) => {
                for m in ms {
                    let Ok(id) = m.snapshot.parse::<SnapshotId>() else {
                        continue;
                    };
                    by_id
                        .entry(id)
                        .and_modify(|l| l.destinations.push(d.name.clone()))
                        .or_insert_with(|| Located {
                            manifest: m,
                            destinations: vec![d.name.clone()],
                        });
                }
            }
            Err(e) => errors.push((d.name.clone(), e)),
        }
    }
    (by_id.into_values().collect(), errors)
}

/// The newest ordinary (not pre-restore) snapshot in `list` (oldest first).
pub fn latest(list: &[Located]) -> Option<&Located> {
    list.iter()
        .rev()
        .find(|l| l.manifest.reason == SnapshotReason::Backup)
}
