//! `arca-operator`: reconciles `BackupPolicy` and `RestoreRequest` resources by running the
//! `arca` binary in short-lived Jobs and writing the outcome back onto their status.
//!
//! Pure parts (tested without a cluster): [`render`] (cluster bindings → file bindings),
//! [`jobs`] (the Job builder), [`scheduling`], [`status`], [`outcome`], [`pinning`],
//! [`validation`]. I/O parts: [`controllers`], [`scaling`], [`leader`], [`http`],
//! [`manager`] (wiring).

pub mod config;
pub mod constants;
pub mod controllers;
pub mod crds;
pub mod error;
pub mod http;
pub mod jobs;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod outcome;
pub mod pinning;
pub mod render;
pub mod scaling;
pub mod scheduling;
pub mod status;
pub mod validation;

#[cfg(test)]
mod bench_tests;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod testdata;

pub use config::Config;
pub use error::{Error, Result};
