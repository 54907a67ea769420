//! The data-plane commands: what the operator's Jobs run and what a person
//! runs by hand when there is no cluster. Each returns a report that `main`
//! prints as text or JSON.

pub mod archiver_http;
pub mod backup;
pub mod bucket;
pub mod checks;
pub mod chunked;
mod download;
mod error;
pub mod files;
mod files_by_pack;
mod files_check;
mod files_prune;
pub mod list;
mod manifests;
pub mod objects;
pub mod pitr;
pub mod plan;
pub mod progress;
pub mod prune;
pub mod recover;
pub mod restore;
mod restore_parallel;
pub mod restore_server;
pub mod status;
mod upload;
pub mod verify;
pub mod wal;
pub mod wal_owed;
pub mod wal_spool;
pub mod wal_stream;

pub use error::{error_chain, Error};
