//! The data-plane commands: what the operator's Jobs run and what a person
//! runs by hand when there is no cluster. Each returns a report that `main`
//! prints as text or JSON.

pub mod backup;
pub mod checks;
mod download;
mod error;
pub mod list;
mod manifests;
pub mod plan;
pub mod progress;
pub mod prune;
pub mod recover;
pub mod restore;
mod upload;
pub mod verify;
pub mod wal;

pub use error::Error;
