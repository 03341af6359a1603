//! `manifest.json`: written last into every snapshot folder; a snapshot without it does
//! not exist. It holds no patient data and no secrets.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::policy::ComponentKind;

/// The manifest format this version writes.
pub const MANIFEST_FORMAT: &str = "arca/1";
/// File name of the manifest inside a snapshot folder.
pub const MANIFEST_NAME: &str = "manifest.json";

/// Why a snapshot was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SnapshotReason {
    /// A scheduled or manual backup.
    #[default]
    Backup,
    /// The state before a restore overwrote it; `latest` never resolves to one.
    PreRestore,
}

/// A snapshot's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Policy name.
    pub policy: String,
    /// Snapshot id (folder name).
    pub snapshot: String,
    /// Why it was taken.
    #[serde(default)]
    pub reason: SnapshotReason,
    /// When capture started.
    pub started_at: DateTime<Utc>,
    /// When the last artifact was stored.
    pub completed_at: DateTime<Utc>,
    /// `arca <version>`.
    pub tool_version: String,
    /// Host that ran the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Compression of every artifact (`zstd`).
    pub compression: String,
    /// age recipients (public keys) the artifacts are encrypted to; empty: not encrypted.
    #[serde(default)]
    pub encryption_recipients: Vec<String>,
    /// The application was stopped during capture.
    #[serde(default)]
    pub quiesced: bool,
    /// One record per component, in capture order.
    pub components: Vec<ComponentRecord>,
}

/// One stored artifact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentRecord {
    /// Component name.
    pub name: String,
    /// Component kind.
    pub kind: Option<ComponentKind>,
    /// Source description without secrets, e.g. `postgres://postgres@db:5432/orthanc`.
    pub source: String,
    /// File name inside the snapshot folder.
    pub object: String,
    /// Stored (compressed, encrypted) size in bytes.
    pub size: u64,
    /// sha256 of the stored bytes (hex).
    pub sha256: String,
    /// Size of the native format before compression.
    pub plain_size: u64,
    /// sha256 of the native format (hex).
    pub plain_sha256: String,
    /// Server version (databases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The tool that produced the native format, with its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Database name (databases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Database owner (PostgreSQL), used to recreate it on restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Database encoding (PostgreSQL), used to recreate it on restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Original path of a files or sqlite component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What was captured, for verification.
    #[serde(default)]
    pub items: Items,
    /// Capture time in seconds.
    pub duration_seconds: f64,
    /// Things a person should look at; never patient data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Item counts recorded at capture and compared by `verify --deep`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Items {
    /// Tables with their row counts (databases), sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableCount>,
    /// Regular files (files component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// Directories (files component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directories: Option<u64>,
    /// Symbolic links (files component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlinks: Option<u64>,
    /// Bytes of file content (files component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Roles (globals component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<u64>,
    /// Large objects (PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_objects: Option<u64>,
}

/// A table's row count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    /// Qualified name (`schema.table` for PostgreSQL).
    pub name: String,
    /// Rows.
    pub rows: u64,
}

impl Manifest {
    /// Total stored bytes.
    pub fn stored_size(&self) -> u64 {
        self.components.iter().map(|c| c.size).sum()
    }

    /// Total plain bytes.
    pub fn plain_size(&self) -> u64 {
        self.components.iter().map(|c| c.plain_size).sum()
    }
}

/// A snapshot id: the UTC start time `YYYYMMDDTHHMMSSZ`, with `-N` on collision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId {
    /// Start time (whole seconds).
    pub time: DateTime<Utc>,
    /// Collision suffix (0 = none).
    pub seq: u32,
}

/// A string that is not a snapshot id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a snapshot id: ids look like 20261123T031500Z (run `arca snapshots` to list them)")]
pub struct SnapshotIdError(pub String);

impl SnapshotId {
    /// The id for a run starting at `time`.
    pub fn at(time: DateTime<Utc>) -> Self {
        let secs = time.timestamp();
        Self {
            time: Utc.timestamp_opt(secs, 0).single().unwrap_or(time),
            seq: 0,
        }
    }

    /// The same time with the next collision suffix.
    pub fn next_seq(self) -> Self {
        Self {
            time: self.time,
            seq: self.seq + 1,
        }
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.time.format("%Y%m%dT%H%M%SZ"))?;
        if self.seq > 0 {
            write!(f, "-{}", self.seq)?;
        }
        Ok(())
    }
}

impl FromStr for SnapshotId {
    type Err = SnapshotIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || SnapshotIdError(s.to_string());
        let (base, seq) = match s.split_once('-') {
            Some((b, n)) => (b, n.parse::<u32>().map_err(|_| err())?),
            None => (s, 0),
        };
        if base.len() != 16 || !base.ends_with('Z') {
            return Err(err());
        }
        let naive =
            NaiveDateTime::parse_from_str(&base[..15], "%Y%m%dT%H%M%S").map_err(|_| err())?;
        Ok(Self {
            time: Utc.from_utc_datetime(&naive),
            seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_ids_round_trip_and_sort() {
        let a: SnapshotId = "20261123T031500Z".parse().expect("id");
        let b: SnapshotId = "20261123T031500Z-1".parse().expect("id");
        let c: SnapshotId = "20261123T031501Z".parse().expect("id");
        assert_eq!(a.to_string(), "20261123T031500Z");
        assert_eq!(b.to_string(), "20261123T031500Z-1");
        assert!(a < b && b < c);
        assert_eq!(a.next_seq(), b);
        for bad in [
            "latest",
            "20261323T031500Z",
            "20261123T031500",
            "20261123T031500Z-x",
            "",
        ] {
            assert!(bad.parse::<SnapshotId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn manifest_uses_the_contract_field_names() {
        let m = Manifest {
            format: MANIFEST_FORMAT.into(),
            policy: "p".into(),
            snapshot: "20261123T031500Z".into(),
            reason: SnapshotReason::Backup,
            started_at: Utc::now(),
            completed_at: Utc::now(),
            tool_version: "arca 0.1.0".into(),
            host: None,
            compression: "zstd".into(),
            encryption_recipients: vec![],
            quiesced: false,
            components: vec![ComponentRecord {
                name: "db".into(),
                kind: Some(ComponentKind::Postgres),
                object: "db.pgdump.zst.age".into(),
                ..Default::default()
            }],
        };
        let v = serde_json::to_value(&m).expect("json");
        for key in [
            "format",
            "policy",
            "snapshot",
            "startedAt",
            "completedAt",
            "components",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        let c = &v["components"][0];
        for key in [
            "name",
            "kind",
            "object",
            "size",
            "sha256",
            "plainSize",
            "plainSha256",
        ] {
            assert!(c.get(key).is_some(), "{key}");
        }
        assert_eq!(c["kind"], "postgres");
        let back: Manifest = serde_json::from_value(v).expect("parses back");
        assert_eq!(back, m);
    }
}
