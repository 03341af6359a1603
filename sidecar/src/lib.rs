//! Arca's data mover: sources, the streaming pipeline, stores, the catalog and the
//! commands built on them. `main.rs` only parses arguments and calls [`cli::run`].

pub mod backup;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod deep;
pub mod demo;
pub mod extract;
pub mod keys;
pub mod pgarchive;
pub mod pipeline;
pub mod prune;
pub mod quiesce;
pub mod restore;
pub mod runner;
pub mod secret;
pub mod source;
pub mod store;
pub mod unseal;
pub mod verify;
