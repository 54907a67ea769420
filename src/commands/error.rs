//! Errors of the data-plane commands. Messages name the destination, object,
//! database or flag at fault and never carry key material or passwords.

use crate::catalog::CatalogError;
use crate::keys::KeyError;
use crate::pipeline::codec::DecodeError;
use crate::source::postgres::PgError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error(transparent)]
    Source(crate::source::SourceError),
    #[error("{tool} for {what} failed ({status}): {stderr}")]
    Tool {
        tool: &'static str,
        what: String,
        status: String,
        stderr: String,
    },
    #[error("{dest}: object {key}: {source}")]
    Object {
        dest: String,
        key: String,
        #[source]
        source: DecodeError,
    },
    #[error("{dest}: object {key}: stored {found} but the manifest says {expected}")]
    Mismatch {
        dest: String,
        key: String,
        expected: String,
        found: String,
    },
    #[error("backup failed: {failed} (nothing was committed anywhere)")]
    Destinations { failed: String },
    #[error("{0}")]
    Usage(String),
    #[error("the encoder failed: {0}")]
    Pipeline(std::io::Error),
    #[error("every source failed: {0}")]
    AllSourcesFailed(String),
    #[error("{0} problem(s) found; see above")]
    VerifyFailed(usize),
    #[error(transparent)]
    Target(#[from] crate::target::TargetError),
    #[error(transparent)]
    Chunk(#[from] crate::chunks::ChunkError),
    #[error(transparent)]
    Files(#[from] crate::source::files::FilesError),
    #[error(transparent)]
    Cluster(#[from] super::status::ClusterError),
    #[error(transparent)]
    Recovery(#[from] crate::recovery::RecoveryError),
    #[error("{0}")]
    RecoveryFailed(String),
    /// A check after a restore failed or returned false.
    #[error("{0}")]
    Check(String),
}

pub use crate::error_line::error_chain;

/// Whether trying the next destination could help.
impl Error {
    pub fn is_source_fault(&self) -> bool {
        matches!(
            self,
            Error::Store(_)
                | Error::Catalog(_)
                | Error::Object { .. }
                | Error::Mismatch { .. }
                | Error::Key(_)
                | Error::Chunk(_)
        )
    }
}
