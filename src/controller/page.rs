//! The status page's reads (`--status-page`): the BackupPolicies and
//! BackupRuns the controller watches (its namespace, or all), listed fresh
//! on each request and rendered by [`crate::status::page`]. It reads no
//! Secret, so none can show.

use kube::api::ListParams;
use kube::{Api, Client};

use super::Clock;
use crate::api::{BackupPolicy, BackupRun};

/// What the page needs to read the cluster.
#[derive(Clone)]
pub struct StatusPage {
    pub client: Client,
    /// The controller's namespace; `None` = all.
    pub namespace: Option<String>,
    pub clock: Clock,
}

/// Reading the cluster for the page failed.
#[derive(Debug, thiserror::Error)]
#[error("listing {what}")]
pub struct PageError {
    what: &'static str,
    #[source]
    source: kube::Error,
}

impl StatusPage {
    /// The page as of now.
    pub async fn render(&self) -> Result<String, PageError> {
        let policies: Api<BackupPolicy> = super::api_for(&self.client, self.namespace.as_deref());
        let runs: Api<BackupRun> = super::api_for(&self.client, self.namespace.as_deref());
        let policies = policies
            .list(&ListParams::default())
            .await
            .map_err(|source| PageError {
                what: "BackupPolicies",
                source,
            })?;
        let runs = runs
            .list(&ListParams::default())
            .await
            .map_err(|source| PageError {
                what: "BackupRuns",
                source,
            })?;
        Ok(crate::status::page(
            &policies.items,
            &runs.items,
            self.clock.now(),
        ))
    }
}
