//! lifeboat: backup and disaster recovery for Kubernetes.
//!
//! One binary, three roles: the operator (`controller`), the data-plane
//! commands its Jobs run (`backup`, `restore`, `verify`, `list`, `prune`, …),
//! and the CRD printer. This library holds everything; `main.rs` dispatches.

pub mod api;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod controller;
pub mod keys;
pub mod pipeline;
pub mod plan;
pub mod recovery;
pub mod schedule;
pub mod source;
pub mod status;
pub mod store;
pub mod walarchive;
