//! The Kubernetes API as a restore target: objects created one by one as
//! dynamic objects (the type from the backup's manifest, so no discovery is
//! needed and a type the server no longer serves is reported), an existing
//! object skipped, replaced or the restore stopped, and dry runs sent as
//! the API server's own server-side dry run (`dryRun=All`: admission and
//! validation run, nothing is stored).

use std::collections::BTreeSet;

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde::Serialize;
use serde_json::Value;

use super::TargetError;
use crate::catalog::TypeCount;

/// What a restore does with an object that already exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Existing {
    #[default]
    Skip,
    Update,
    Fail,
}

/// The outcome, counted; `failed` names each object that was not restored.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Applied {
    pub created: u64,
    pub updated: u64,
    /// Existing objects left as they were.
    pub skipped: u64,
    /// Dry run only: objects in a namespace the restore would create, which
    /// the server cannot check before it exists.
    pub unchecked: u64,
    pub failed: Vec<String>,
}

pub struct Cluster {
    pub client: kube::Client,
    pub dry_run: bool,
    pub existing: Existing,
    /// Namespaces the restore would create (dry run).
    pending: BTreeSet<String>,
}

fn resource(t: &TypeCount) -> ApiResource {
    ApiResource {
        group: t.group.clone(),
        version: t.version.clone(),
        api_version: t.api_version(),
        kind: t.kind.clone(),
        plural: t.plural.clone(),
    }
}

fn refused(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

impl Cluster {
    pub fn new(client: kube::Client, dry_run: bool, existing: Existing) -> Self {
        Self {
            client,
            dry_run,
            existing,
            pending: BTreeSet::new(),
        }
    }

    fn params(&self) -> PostParams {
        PostParams {
            dry_run: self.dry_run,
            field_manager: Some("lifeboat".into()),
        }
    }

    /// Creates each namespace of `wanted` that does not exist and is not
    /// among the objects restored (`restored`), bare; in a dry run, records
    /// every missing one as pending instead.
    pub async fn namespaces(
        &mut self,
        wanted: &BTreeSet<String>,
        restored: &BTreeSet<String>,
    ) -> Result<(), TargetError> {
        let api: Api<DynamicObject> = Api::all_with(
            self.client.clone(),
            &ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()),
        );
        for ns in wanted {
            let exists = api
                .get_opt(ns)
                .await
                .map_err(|e| TargetError::Refused(refused(&format!("namespace {ns}"), e)))?
                .is_some();
            if exists {
                continue;
            }
            if self.dry_run {
                self.pending.insert(ns.clone());
            } else if !restored.contains(ns) {
                let bare: DynamicObject = serde_json::from_value(serde_json::json!({
                    "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}
                }))
                .expect("a namespace");
                api.create(&self.params(), &bare).await.map_err(|e| {
                    TargetError::Refused(refused(&format!("creating namespace {ns}"), e))
                })?;
                tracing::info!(namespace = %ns, "created the namespace");
            }
        }
        Ok(())
    }

    /// Creates one object (prepared for restore) or handles it existing.
    /// Err only when an existing object stops the restore (`Existing::Fail`).
    pub async fn apply(
        &self,
        t: &TypeCount,
        obj: Value,
        out: &mut Applied,
    ) -> Result<(), TargetError> {
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let what = match &ns {
            Some(ns) => format!("{} {ns}/{name}", t.kind),
            None => format!("{} {name}", t.kind),
        };
        if self.dry_run && ns.as_ref().is_some_and(|n| self.pending.contains(n)) {
            out.unchecked += 1;
            return Ok(());
        }
        let ar = resource(t);
        let api: Api<DynamicObject> = match (&ns, t.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &ar),
            _ => Api::all_with(self.client.clone(), &ar),
        };
        let dyn_obj: DynamicObject = match serde_json::from_value(obj) {
            Ok(o) => o,
            Err(e) => {
                out.failed.push(refused(&what, e));
                return Ok(());
            }
        };
        match api.create(&self.params(), &dyn_obj).await {
            Ok(_) => out.created += 1,
            Err(kube::Error::Api(e)) if e.code == 409 => match self.existing {
                Existing::Skip => out.skipped += 1,
                Existing::Fail => {
                    return Err(TargetError::Refused(format!(
                        "{what} already exists (--existing fail)"
                    )))
                }
                Existing::Update => match self.replace(&api, &name, dyn_obj).await {
                    Ok(()) => out.updated += 1,
                    Err(e) => out.failed.push(refused(&what, e)),
                },
            },
            Err(e) => out.failed.push(refused(&what, e)),
        }
        Ok(())
    }

    /// Replaces the live object with the backup's, keeping what the
    /// server assigned to it (resourceVersion, a Service's cluster IPs).
    async fn replace(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        mut obj: DynamicObject,
    ) -> Result<(), kube::Error> {
        let live = api.get(name).await?;
        obj.metadata.resource_version = live.metadata.resource_version.clone();
        for ip in ["clusterIP", "clusterIPs"] {
            if let Some(v) = live.data.pointer(&format!("/spec/{ip}")) {
                if obj.data["spec"].is_object() {
                    obj.data["spec"][ip] = v.clone();
                }
            }
        }
        api.replace(name, &self.params(), &obj).await.map(|_| ())
    }
}
