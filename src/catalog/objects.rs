//! What a manifest records of a config backup (Kubernetes objects): the
//! API server's version, the namespaces asked for, and per resource type
//! how to address it again and how many objects its part holds. Counts
//! only: no object's name and nothing derived from a value is in plaintext.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigInfo {
    /// The API server's `gitVersion`.
    pub server_version: String,
    /// The namespaces asked for; empty = every namespace.
    pub namespaces: Vec<String>,
    /// One entry per part, in backup order.
    pub types: Vec<TypeCount>,
    /// Cloud secret stores, one part each (absent before they existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cloud: Vec<CloudCount>,
}

/// A cloud secret store of a config backup and its part: where it was
/// read and how many entries the part holds (no name, no value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudCount {
    /// `secretsmanager` or `ssm`.
    pub store: String,
    pub region: String,
    /// The name prefix (Secrets Manager) or path (SSM) that was read.
    pub scope: String,
    pub count: u64,
}

impl CloudCount {
    /// The part holding its entries: `cloud-secretsmanager`, `cloud-ssm`.
    pub fn part(&self) -> String {
        format!("cloud-{}", self.store)
    }
}

/// A resource type of a config backup and its part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeCount {
    /// API group; empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    /// Objects stored in the part.
    pub count: u64,
}

impl TypeCount {
    /// `plural` (core group) or `plural.group`.
    pub fn name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The part holding its objects: `objects-secrets`, `objects-deployments.apps`.
    pub fn part(&self) -> String {
        format!("objects-{}", self.name())
    }

    /// `v1`, `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl ConfigInfo {
    pub fn objects(&self) -> u64 {
        self.types.iter().map(|t| t.count).sum()
    }

    /// Secrets and parameters of cloud secret stores.
    pub fn cloud_entries(&self) -> u64 {
        self.cloud.iter().map(|c| c.count).sum()
    }
}
