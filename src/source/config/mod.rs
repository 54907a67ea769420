//! Kubernetes objects as a source (issue 11): the API's resource types found
//! by discovery (so any CRD installed is covered), the chosen ones listed
//! as dynamic objects in pages of [`PAGE`], each object stripped of what
//! the server sets ([`select::strip`]) and written as one JSON line into
//! its type's part (`objects-<plural>[.<group>]`). Memory is one page and
//! the channel to the encoder, whatever the number of objects.
//!
//! A continue token that expires mid-list (410) restarts the list and skips
//! what was already stored: lists come in key order (namespace, name), so
//! the restart resumes after the last object written, as the API server's
//! own "inconsistent continue" does.

pub mod cloud;
pub mod select;

use std::sync::{Arc, Mutex};

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::discovery::{verbs, Discovery, Scope};
use serde_json::Value;

use super::stream::{Sink, Task};
use super::{Described, Part, Producer, SourceError};
use crate::catalog::{CloudCount, ConfigInfo, SourceInfo, TypeCount};

/// Objects per list request (kubectl's page size).
pub const PAGE: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot reach the Kubernetes API (kubeconfig or in-cluster account): {0}")]
    Client(String),
    #[error("discovery of the API's resource types failed: {0}")]
    Discovery(#[source] kube::Error),
    #[error("listing {what} failed: {source}")]
    List {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("no resource type the API serves matches {0} (--resource / resources)")]
    NoTypes(String),
}

/// A client of the kubeconfig (KUBECONFIG, ~/.kube/config) or, in a pod,
/// of its service account.
pub async fn client() -> Result<kube::Client, ConfigError> {
    crate::install_crypto_provider();
    kube::Client::try_default()
        .await
        .map_err(|e| ConfigError::Client(e.to_string()))
}

/// What to back up.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Empty: every namespace.
    pub namespaces: Vec<String>,
    pub types: select::Types,
    /// A label selector in the API's query syntax.
    pub label_selector: Option<String>,
    pub include_owned: bool,
    pub include_status: bool,
    /// Cloud secret stores read into the same backup.
    pub cloud: Vec<cloud::CloudSource>,
}

impl Selection {
    /// No resource type named: cloud secret stores only, no Kubernetes API.
    pub fn kubernetes(&self) -> bool {
        !self.types.include.is_empty()
    }
}

/// A config backup in progress.
pub struct Config {
    /// None when the backup reads cloud secret stores only.
    client: Option<kube::Client>,
    selection: Arc<Selection>,
    server_version: String,
    types: Arc<Mutex<Vec<TypeCount>>>,
    cloud: Arc<Mutex<Vec<CloudCount>>>,
}

impl Config {
    /// With the client of the kubeconfig or the pod's service account,
    /// when the selection names resource types.
    pub async fn connect(selection: Selection) -> Result<Self, SourceError> {
        let client = match selection.kubernetes() {
            true => Some(client().await?),
            false => None,
        };
        Ok(Self::new(client, selection))
    }

    pub fn new(client: Option<kube::Client>, selection: Selection) -> Self {
        Self {
            client,
            selection: Arc::new(selection),
            server_version: String::new(),
            types: Arc::default(),
            cloud: Arc::default(),
        }
    }

    /// One part per chosen resource type, each listing its objects when
    /// read, then one per cloud secret store.
    pub async fn parts(&mut self) -> Result<Vec<Part>, SourceError> {
        let mut parts = match self.client.clone() {
            Some(client) => self.object_parts(client).await?,
            None => Vec::new(),
        };
        parts.extend(cloud::parts(&self.selection.cloud, &self.cloud));
        Ok(parts)
    }

    async fn object_parts(&mut self, client: kube::Client) -> Result<Vec<Part>, SourceError> {
        self.server_version = client
            .apiserver_version()
            .await
            .map_err(|e| ConfigError::Client(e.to_string()))?
            .git_version;
        let discovery = Discovery::new(client.clone())
            .run()
            .await
            .map_err(ConfigError::Discovery)?;
        let mut chosen = Vec::new();
        for group in discovery.groups_alphabetical() {
            for (ar, caps) in group.recommended_resources() {
                if ar.plural.contains('/')
                    || !caps.supports_operation(verbs::LIST)
                    || !self.selection.types.chosen(&ar.group, &ar.plural)
                {
                    continue;
                }
                chosen.push((ar, caps.scope == Scope::Namespaced));
            }
        }
        if chosen.is_empty() {
            return Err(ConfigError::NoTypes(self.selection.types.include.join(", ")).into());
        }
        let mut types = self.types.lock().expect("not poisoned");
        let mut parts = Vec::new();
        for (i, (ar, namespaced)) in chosen.into_iter().enumerate() {
            let tc = TypeCount {
                group: ar.group.clone(),
                version: ar.version.clone(),
                kind: ar.kind.clone(),
                plural: ar.plural.clone(),
                namespaced,
                count: 0,
            };
            let lister = Lister {
                client: client.clone(),
                selection: self.selection.clone(),
                types: self.types.clone(),
                index: i,
                ar,
                namespaced,
            };
            parts.push(Part {
                name: tc.part(),
                role: "objects",
                database: None,
                producer: Producer::Task {
                    what: "kubernetes api",
                    task: Some(Task::new(move |sink| lister.run(sink))),
                },
                head: None,
            });
            types.push(tc);
        }
        Ok(parts)
    }

    pub async fn describe(self) -> Result<Described, SourceError> {
        let types = self.types.lock().expect("not poisoned").clone();
        Ok(Described {
            info: SourceInfo::Config(ConfigInfo {
                server_version: self.server_version,
                namespaces: self.selection.namespaces.clone(),
                types,
                cloud: self.cloud.lock().expect("not poisoned").clone(),
            }),
            physical: None,
        })
    }
}

/// Lists one resource type into its part.
struct Lister {
    client: kube::Client,
    selection: Arc<Selection>,
    types: Arc<Mutex<Vec<TypeCount>>>,
    index: usize,
    ar: ApiResource,
    namespaced: bool,
}

impl Lister {
    async fn run(self, mut sink: Sink) -> Result<(), SourceError> {
        let sel = &self.selection;
        let apis: Vec<Api<DynamicObject>> = if self.namespaced && !sel.namespaces.is_empty() {
            sel.namespaces
                .iter()
                .map(|ns| Api::namespaced_with(self.client.clone(), ns, &self.ar))
                .collect()
        } else {
            vec![Api::all_with(self.client.clone(), &self.ar)]
        };
        let what = select::type_name(&self.ar.group, &self.ar.plural);
        let (mut count, mut left_out) = (0u64, 0u64);
        for api in apis {
            let mut token: Option<String> = None;
            let mut last: Option<(String, String)> = None;
            loop {
                let mut lp = ListParams::default().limit(PAGE);
                if let Some(l) = &sel.label_selector {
                    lp = lp.labels(l);
                }
                if let Some(t) = &token {
                    lp = lp.continue_token(t);
                }
                let page = match api.list(&lp).await {
                    Ok(p) => p,
                    Err(kube::Error::Api(e)) if e.code == 410 && token.is_some() => {
                        tracing::info!(resource = %what, "the list's continue token expired; listing again after the last object stored");
                        token = None;
                        continue;
                    }
                    Err(source) => {
                        return Err(ConfigError::List {
                            what: what.clone(),
                            source,
                        }
                        .into())
                    }
                };
                for obj in page.items {
                    let key = (
                        obj.metadata.namespace.clone().unwrap_or_default(),
                        obj.metadata.name.clone().unwrap_or_default(),
                    );
                    if last.as_ref().is_some_and(|l| key <= *l) {
                        continue; // stored before the token expired
                    }
                    last = Some(key.clone());
                    let Some(line) = self.line(obj, &key.1) else {
                        left_out += 1;
                        continue;
                    };
                    sink.write(&line).await?;
                    count += 1;
                }
                token = page.metadata.continue_.filter(|c| !c.is_empty());
                if token.is_none() {
                    break;
                }
            }
        }
        sink.flush().await?;
        self.types.lock().expect("not poisoned")[self.index].count = count;
        tracing::info!(resource = %what, objects = count, left_out, "listed");
        Ok(())
    }

    /// The object's line in the part, or `None` when it is left out.
    fn line(&self, obj: DynamicObject, name: &str) -> Option<Vec<u8>> {
        let sel = &self.selection;
        if self.ar.plural == "namespaces"
            && self.ar.group.is_empty()
            && !sel.namespaces.is_empty()
            && !sel.namespaces.iter().any(|n| n == name)
        {
            return None;
        }
        let mut v = serde_json::to_value(obj).ok()?;
        // List items may come without their type; the line names it.
        v["apiVersion"] = Value::String(self.ar.api_version.clone());
        v["kind"] = Value::String(self.ar.kind.clone());
        if select::left_out(&v, sel.include_owned).is_some() {
            return None;
        }
        select::strip(&mut v, sel.include_status);
        let mut line = serde_json::to_vec(&v).ok()?;
        line.push(b'\n');
        Some(line)
    }
}
