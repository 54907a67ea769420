//! `lifeboat list`: recovery points in each destination, read from manifests
//! alone. With a key file, each manifest's MAC is checked too.

use super::{manifests, Error};
use crate::catalog;
use crate::keys::Keyring;
use crate::location::NamedLocation;
use crate::store::Store;
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Entry {
    pub destination: String,
    pub backup_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    pub policy: String,
    pub tier: String,
    pub source: String,
    pub databases: Vec<String>,
    pub bytes: u64,
    pub plain_bytes: u64,
    /// `Some(true)` when the MAC was checked with the key file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub async fn list(from: &[NamedLocation], keys: Option<&Keyring>) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    for url in from {
        let store = Store::open(url).await?;
        for id in manifests::committed_ids(&store).await? {
            let parsed = match keys {
                Some(k) => manifests::open(&store, &id, k).await,
                None => match store
                    .get(&catalog::manifest_key(&id), catalog::MANIFEST_LIMIT)
                    .await
                {
                    Ok(b) => catalog::parse_manifest(&b, &id).map_err(Error::from),
                    Err(e) => Err(e.into()),
                },
            };
            out.push(match parsed {
                Ok(m) => Entry {
                    destination: url.name.clone(),
                    completed_at: Some(m.completed_at),
                    policy: m.policy.clone(),
                    tier: m.tier.clone(),
                    source: m.source.summary(),
                    databases: m.source.databases().to_vec(),
                    bytes: m.stored_bytes(),
                    plain_bytes: m.plain_bytes(),
                    verified: keys.map(|_| true),
                    error: None,
                    backup_id: id,
                },
                Err(e) => Entry {
                    destination: url.name.clone(),
                    backup_id: id,
                    completed_at: None,
                    policy: String::new(),
                    tier: String::new(),
                    source: String::new(),
                    databases: Vec::new(),
                    bytes: 0,
                    plain_bytes: 0,
                    verified: keys.map(|_| false),
                    error: Some(e.to_string()),
                },
            });
        }
    }
    Ok(out)
}
