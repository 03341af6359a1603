//! `arca verify`: proves snapshots are restorable. Every artifact is re-read from each
//! destination, decrypted, decompressed, and both digests compared with the manifest.
//! `--deep` also restores into a scratch database on the same server (dropped afterwards)
//! or a scratch directory, and compares tables and rows, files and bytes with the
//! manifest. Results are recorded beside the snapshots, never inside them:
//! `<policy>/verifications/<snapshot>/<time>.json`.

use arca_api::manifest::{ComponentRecord, Items, Manifest, TableCount};
use arca_api::ComponentKind;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::catalog::{self, object_key};
use crate::config::{DestinationPlan, Policy};
use crate::source::Source;
use crate::store::Store;
use crate::unseal;

/// Format tag of verification records.
pub const VERIFICATION_FORMAT: &str = "arca-verification/1";
/// Folder of verification records under a policy.
pub const VERIFICATIONS_DIR: &str = "verifications";

/// Which snapshots to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// The newest ordinary snapshot.
    Latest,
    /// One id.
    Id(String),
    /// Every snapshot.
    All,
}

/// One verification, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationRecord {
    /// Always [`VERIFICATION_FORMAT`].
    pub format: String,
    /// Policy.
    pub policy: String,
    /// Snapshot.
    pub snapshot: String,
    /// Destination read.
    pub destination: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Restored and counted.
    pub deep: bool,
    /// All components passed.
    pub ok: bool,
    /// Per component.
    pub components: Vec<ComponentCheck>,
}

/// One component's check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentCheck {
    /// Component.
    pub name: String,
    /// Passed.
    pub ok: bool,
    /// What failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Compare counts found after a deep restore with the manifest's; None when equal.
pub fn compare_items(expected: &Items, found: &Items) -> Option<String> {
    let mut problems = Vec::new();
    let fields = [
        ("files", expected.files, found.files),
        ("directories", expected.directories, found.directories),
        ("symlinks", expected.symlinks, found.symlinks),
        ("bytes", expected.bytes, found.bytes),
        ("roles", expected.roles, found.roles),
        ("large objects", expected.large_objects, found.large_objects),
    ];
    for (name, e, f) in fields {
        if let (Some(e), Some(f)) = (e, f) {
            if e != f {
                problems.push(format!("{name}: manifest {e}, restored {f}"));
            }
        }
    }
    for t in &expected.tables {
        match found.tables.iter().find(|x| x.name == t.name) {
            None => problems.push(format!("table {} missing", t.name)),
            Some(x) if x.rows != t.rows => problems.push(format!(
                "table {}: manifest {} rows, restored {}",
                t.name, t.rows, x.rows
            )),
            _ => {}
        }
    }
    if problems.is_empty() {
        None
    } else {
        Some(problems.into_iter().take(5).collect::<Vec<_>>().join("; "))
    }
}

/// Outcome of `arca verify`.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Every record made.
    pub records: Vec<VerificationRecord>,
    /// Destinations that could not be listed.
    pub unreachable: Vec<String>,
}

impl VerifyReport {
    /// Everything passed.
    pub fn ok(&self) -> bool {
        self.unreachable.is_empty() && !self.records.is_empty() && self.records.iter().all(|r| r.ok)
    }

    /// The first failure as one line.
    pub fn first_failure(&self) -> Option<String> {
        if let Some(u) = self.unreachable.first() {
            return Some(u.clone());
        }
        for r in &self.records {
            for c in &r.components {
                if let Some(e) = &c.error {
                    return Some(format!(
                        "snapshot {} at {}: component {:?}: {e}",
                        r.snapshot, r.destination, c.name
                    ));
                }
            }
        }
        None
    }
}

/// Verify `which` snapshots at `from` (default: every destination).
pub async fn run(
    policy: &Policy,
    which: &Which,
    from: Option<&str>,
    deep: bool,
) -> Result<VerifyReport, String> {
    let identities = unseal::identities_for(policy.identity_file.as_deref())?;
    let dests: Vec<&DestinationPlan> = policy
        .destinations
        .iter()
        .filter(|d| from.is_none_or(|f| f == d.name))
        .collect();
    if dests.is_empty() {
        return Err(format!(
            "policy {:?} has no destination {:?}",
            policy.name,
            from.unwrap_or_default()
        ));
    }
    let mut report = VerifyReport::default();
    for d in dests {
        let manifests = match catalog::list(&d.store, &policy.name).await {
            Ok(m) => m,
            Err(e) => {
                report
                    .unreachable
                    .push(format!("cannot list destination {:?}: {e}", d.name));
                continue;
            }
        };
        let chosen: Vec<&Manifest> = match which {
            Which::All => manifests.iter().collect(),
            Which::Latest => manifests
                .iter()
                .rev()
                .find(|m| m.reason == arca_api::manifest::SnapshotReason::Backup)
                .into_iter()
                .collect(),
            Which::Id(id) => manifests.iter().filter(|m| &m.snapshot == id).collect(),
        };
        if chosen.is_empty() {
            report.unreachable.push(match which {
                Which::Id(id) => format!(
                    "snapshot {id} does not exist at {:?}: run `arca snapshots`",
                    d.name
                ),
                _ => format!(
                    "destination {:?} holds no snapshot of {} to verify",
                    d.name, policy.name
                ),
            });
            continue;
        }
        for m in chosen {
            let rec = verify_snapshot(policy, d, m, &identities, deep).await;
            let key = format!(
                "{}/{VERIFICATIONS_DIR}/{}/{}.json",
                policy.name,
                m.snapshot,
                rec.at.format("%Y%m%dT%H%M%SZ")
            );
            if let Err(e) = d
                .store
                .put_bytes(
                    &key,
                    Bytes::from(serde_json::to_vec_pretty(&rec).unwrap_or_default()),
                )
                .await
            {
                warn!(destination = %d.name, "cannot record the verification: {e}");
            }
            if rec.ok {
                info!(snapshot = %m.snapshot, destination = %d.name, deep, "verified");
            } else {
                warn!(snapshot = %m.snapshot, destination = %d.name, "verification FAILED");
            }
            report.records.push(rec);
        }
    }
    Ok(report)
}

async fn verify_snapshot(
    policy: &Policy,
    dest: &DestinationPlan,
    m: &Manifest,
    identities: &[age::x25519::Identity],
    deep: bool,
) -> VerificationRecord {
    let mut checks = Vec::new();
    for c in &m.components {
        let key = object_key(&policy.name, &m.snapshot, &c.object);
        let r = verify_component(
            policy,
            &dest.store,
            &key,
            c,
            identities,
            &m.encryption_recipients,
            deep,
        )
        .await;
        if let Err(e) = &r {
            warn!(component = %c.name, "{e}");
        }
        checks.push(ComponentCheck {
            name: c.name.clone(),
            ok: r.is_ok(),
            error: r.err(),
        });
    }
    VerificationRecord {
        format: VERIFICATION_FORMAT.into(),
        policy: policy.name.clone(),
        snapshot: m.snapshot.clone(),
        destination: dest.name.clone(),
        at: Utc::now(),
        deep,
        ok: checks.iter().all(|c| c.ok),
        components: checks,
    }
}

async fn verify_component(
    policy: &Policy,
    store: &Store,
    key: &str,
    rec: &ComponentRecord,
    identities: &[age::x25519::Identity],
    recipients: &[String],
    deep: bool,
) -> Result<(), String> {
    let artifact = unseal::open(store, key, rec, identities, recipients)
        .await
        .map_err(|e| e.to_string())?;
    if !deep {
        return tokio::task::spawn_blocking(move || artifact.finish())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string());
    }
    let source = policy
        .components
        .iter()
        .find(|p| p.name == rec.name)
        .map(|p| p.source.clone());
    let found = match (rec.kind, source) {
        (Some(ComponentKind::Files), _) => deep_files(artifact).await?,
        (Some(ComponentKind::Sqlite), _) => deep_sqlite(artifact).await?,
        (Some(ComponentKind::PostgresGlobals), _) => deep_globals(artifact).await?,
        (Some(ComponentKind::Postgres), Some(Source::Postgres(p))) => {
            crate::deep::postgres(artifact, rec, &p.conn).await?
        }
        (Some(ComponentKind::Mysql), Some(Source::Mysql(m))) => crate::deep::mysql(artifact, &m).await?,
        _ => {
            return Err(format!(
                "cannot verify {:?} deeply: the policy no longer has a database component with that name",
                rec.name
            ))
        }
    };
    match compare_items(&rec.items, &found) {
        None => Ok(()),
        Some(p) => Err(format!("restored content differs from the manifest: {p}")),
    }
}

async fn deep_files(artifact: unseal::Artifact) -> Result<Items, String> {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::Builder::new()
            .prefix("arca-verify-")
            .tempdir()
            .map_err(|e| format!("creating a scratch directory: {e}"))?;
        let mut a = artifact;
        let got = crate::extract::extract(&mut a, dir.path()).map_err(|e| e.to_string())?;
        a.finish().map_err(|e| e.to_string())?;
        Ok(Items {
            files: Some(got.files),
            directories: Some(got.directories),
            symlinks: Some(got.symlinks),
            bytes: Some(got.bytes),
            ..Default::default()
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn deep_sqlite(artifact: unseal::Artifact) -> Result<Items, String> {
    tokio::task::spawn_blocking(move || {
        let mut tmp = tempfile::Builder::new()
            .prefix("arca-verify-")
            .tempfile()
            .map_err(|e| e.to_string())?;
        let mut a = artifact;
        std::io::copy(&mut a, tmp.as_file_mut()).map_err(|e| e.to_string())?;
        a.finish().map_err(|e| e.to_string())?;
        let conn = rusqlite::Connection::open(tmp.path()).map_err(|e| e.to_string())?;
        crate::source::sqlite::integrity_check(&conn)
            .map_err(|e| format!("integrity_check: {e}"))?;
        let tables: Vec<TableCount> =
            crate::source::sqlite::count_tables(&conn).map_err(|e| e.to_string())?;
        Ok(Items {
            tables,
            ..Default::default()
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn deep_globals(artifact: unseal::Artifact) -> Result<Items, String> {
    tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut a = artifact;
        let mut roles = 0u64;
        for line in std::io::BufReader::new(&mut a).lines() {
            let line = line.map_err(|e| e.to_string())?;
            if line.starts_with("CREATE ROLE ") {
                roles += 1;
            }
        }
        a.finish().map_err(|e| e.to_string())?;
        Ok(Items {
            roles: Some(roles),
            ..Default::default()
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The newest verification of each snapshot at a store.
pub async fn latest_records(store: &Store, policy: &str) -> Vec<VerificationRecord> {
    let Ok(objects) = store
        .list_objects(&format!("{policy}/{VERIFICATIONS_DIR}/"))
        .await
    else {
        return vec![];
    };
    let mut newest: std::collections::BTreeMap<String, String> = Default::default();
    for o in objects {
        let parts: Vec<&str> = o.key.rsplitn(3, '/').collect();
        if parts.len() == 3 {
            let (file, snap) = (parts[0].to_string(), parts[1].to_string());
            let e = newest.entry(snap).or_default();
            if file > *e {
                *e = file;
            }
        }
    }
    let mut out = Vec::new();
    for (snap, file) in newest {
        if let Ok(Some(b)) = store
            .get_bytes(&format!("{policy}/{VERIFICATIONS_DIR}/{snap}/{file}"))
            .await
        {
            if let Ok(r) = serde_json::from_slice::<VerificationRecord>(&b) {
                out.push(r);
            }
        }
    }
    out
}
