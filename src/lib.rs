//! lifeboat: backup and disaster recovery for Kubernetes.
//!
//! One binary, three roles: the operator (`controller`), the data-plane
//! commands its Jobs run (`backup`, `restore`, `verify`, `list`, `prune`, …),
//! and the CRD printer. This library holds everything (the command line in
//! `cli`); `main.rs` parses, sets up logs and calls `cli::run`. docs/DESIGN.md
//! has the module map.

pub mod api;
pub mod catalog;
pub mod chunks;
pub mod cli;
pub mod commands;
pub mod controller;
pub mod error_line;
#[cfg(test)]
mod hostile;
pub mod keys;
pub mod location;
pub mod malloc_tunables;
pub mod notify;
pub mod owner;
pub mod pipeline;
pub mod plan;
pub mod recovery;
pub mod schedule;
pub mod source;
pub mod status;
pub mod store;
pub mod target;
pub mod walarchive;
pub mod wire;

/// Picks rustls's crypto provider for the Kubernetes client. Both ring (kube)
/// and aws-lc-rs (the AWS SDK) are compiled in, so rustls cannot choose by
/// itself and would panic on the first connection. Idempotent.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
