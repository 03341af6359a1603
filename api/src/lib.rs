//! Arca's one schema, shared by the `arca` binary and `arca-operator`.
//!
//! The same types serialize as a `BackupPolicy` spec (Kubernetes) and as a policy entry
//! in a compose `arca.yaml`. Nothing here performs I/O: parsing, validation, and the
//! manifest / result formats only.

pub mod config;
#[cfg(feature = "crd")]
pub mod crd;
pub mod duration;
pub mod manifest;
pub mod policy;
pub mod result;
pub mod retention;
pub mod schedule;
pub mod validate;

pub use config::{ConfigFile, NamedPolicy};
pub use duration::HumanDuration;
pub use manifest::{ComponentRecord, Manifest, SnapshotId};
pub use policy::*;
pub use validate::{ValidationError, Validator};
