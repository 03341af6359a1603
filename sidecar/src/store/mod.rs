//! Stores: where snapshots live. A directory ([`path::PathStore`]) or an S3 bucket
//! ([`s3::S3Store`]); both pass the same conformance suite (`tests/store_conformance.rs`).
//!
//! Keys are relative to the destination root: `<policy>/<snapshot>/<object>`. Artifacts
//! arrive as a stream of [`Chunk`]s and become visible only on [`Chunk::Commit`]; a stream
//! that ends without it is aborted and leaves nothing behind (or, after a crash, only
//! garbage that has no manifest and is collected by prune).

pub mod path;
pub mod s3;

use bytes::Bytes;
use tokio::sync::mpsc;

/// One message of an artifact stream.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// More bytes.
    Data(Bytes),
    /// The stream is complete and correct: make it visible.
    Commit,
}

/// An object found by listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the destination root.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, if the store tells.
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// What went wrong at a store; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached at all.
    #[error("cannot reach {target}: {detail}; check the endpoint/path and the network")]
    Unreachable {
        /// Endpoint or path.
        target: String,
        /// Underlying error.
        detail: String,
    },
    /// Credentials were refused.
    #[error(
        "{target} refused the credentials ({detail}): check the access key id and secret files"
    )]
    Denied {
        /// Endpoint or path.
        target: String,
        /// Underlying error.
        detail: String,
    },
    /// The bucket or directory does not exist.
    #[error("{target} does not exist: create it or fix the destination")]
    Missing {
        /// Bucket or directory.
        target: String,
    },
    /// No room left.
    #[error("{target} is full: {detail}; free space, prune old snapshots or use a bigger disk")]
    Full {
        /// Directory.
        target: String,
        /// How much is free/needed.
        detail: String,
    },
    /// The artifact stream ended without a commit.
    #[error("upload of {key} was aborted because the capture failed")]
    Aborted {
        /// Key.
        key: String,
    },
    /// An object that should be there is not.
    #[error("{key} not found at {target}")]
    NotFound {
        /// Destination.
        target: String,
        /// Key.
        key: String,
    },
    /// Anything else.
    #[error("{op} {key} at {target} failed: {detail}")]
    Other {
        /// Operation.
        op: &'static str,
        /// Key.
        key: String,
        /// Destination.
        target: String,
        /// Underlying error.
        detail: String,
    },
}

/// A readable object stream.
pub type ObjectReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// A destination, by kind.
#[derive(Debug, Clone)]
pub enum Store {
    /// A directory.
    Path(path::PathStore),
    /// An S3 bucket.
    S3(s3::S3Store),
}

impl Store {
    /// Human description, e.g. `/backup` or `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        match self {
            Self::Path(s) => s.describe(),
            Self::S3(s) => s.describe(),
        }
    }

    /// Check that the store is reachable and writable before any capture starts.
    pub async fn probe(&self) -> Result<(), StoreError> {
        match self {
            Self::Path(s) => s.probe().await,
            Self::S3(s) => s.probe().await,
        }
    }

    /// Check there is room for about `needed` bytes, keeping the reserve.
    pub async fn check_space(&self, needed: u64) -> Result<(), StoreError> {
        match self {
            Self::Path(s) => s.check_space(needed).await,
            Self::S3(_) => Ok(()),
        }
    }

    /// Store a streamed artifact under `key`; visible only after [`Chunk::Commit`].
    /// `size_hint` (plain bytes, if known) sizes upload parts. Returns the bytes stored.
    pub async fn put_stream(
        &self,
        key: &str,
        rx: mpsc::Receiver<Chunk>,
        size_hint: Option<u64>,
    ) -> Result<u64, StoreError> {
        match self {
            Self::Path(s) => s.put_stream(key, rx).await,
            Self::S3(s) => s.put_stream(key, rx, size_hint).await,
        }
    }

    /// Store a small object atomically (manifests, verification records).
    pub async fn put_bytes(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        match self {
            Self::Path(s) => s.put_bytes(key, data).await,
            Self::S3(s) => s.put_bytes(key, data).await,
        }
    }

    /// Read a small object; `None` when it does not exist.
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self {
            Self::Path(s) => s.get_bytes(key).await,
            Self::S3(s) => s.get_bytes(key).await,
        }
    }

    /// Open an object for streaming reads.
    pub async fn get_stream(&self, key: &str) -> Result<(ObjectReader, u64), StoreError> {
        match self {
            Self::Path(s) => s.get_stream(key).await,
            Self::S3(s) => s.get_stream(key).await,
        }
    }

    /// Names of the immediate sub-folders of `prefix` (which ends with `/`).
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Path(s) => s.list_dirs(prefix).await,
            Self::S3(s) => s.list_dirs(prefix).await,
        }
    }

    /// Every object under `prefix`, recursively.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        match self {
            Self::Path(s) => s.list_objects(prefix).await,
            Self::S3(s) => s.list_objects(prefix).await,
        }
    }

    /// Abort incomplete uploads below `prefix` started before `cutoff` (S3 multipart
    /// uploads of killed runs; a directory has none: its temporary files are ordinary
    /// objects). Returns their keys.
    pub async fn abort_stale_uploads(
        &self,
        prefix: &str,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Path(_) => Ok(Vec::new()),
            Self::S3(s) => s.abort_stale_uploads(prefix, cutoff).await,
        }
    }

    /// Delete one object; deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Self::Path(s) => s.delete(key).await,
            Self::S3(s) => s.delete(key).await,
        }
    }
}
