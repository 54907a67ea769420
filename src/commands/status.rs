//! `lifeboat status`: reads the BackupPolicies through the current kube
//! context (KUBECONFIG, ~/.kube/config, or the pod's service account) for
//! [`crate::status`] to summarise.

use std::time::Duration;

use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::error_chain;
use crate::api::BackupPolicy;

/// Which policies to read.
#[derive(Clone, Debug, Default)]
pub struct StatusOptions {
    /// A namespace; `None` = the context's default namespace.
    pub namespace: Option<String>,
    pub all_namespaces: bool,
    /// A kubeconfig context; `None` = the current one.
    pub context: Option<String>,
}

/// Why the cluster could not be read. Each names the context and server.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no Kubernetes configuration found (set KUBECONFIG, or run inside a cluster): {0}")]
    NoConfig(String),
    #[error("kube context {context:?}: {message}")]
    BadContext { context: String, message: String },
    #[error("cannot reach the Kubernetes API at {server} (context {context}): {message}")]
    Unreachable {
        context: String,
        server: String,
        message: String,
    },
    #[error("the Kubernetes API at {server} (context {context}) does not serve backuppolicies.lifeboat.dev: install the CRDs (crds/lifeboat.dev.yaml)")]
    NoCrd { context: String, server: String },
    #[error("the Kubernetes API at {server} (context {context}) refused to list BackupPolicies: {message}")]
    Refused {
        context: String,
        server: String,
        message: String,
    },
}

/// The BackupPolicies the options select.
pub async fn load(opts: &StatusOptions) -> Result<Vec<BackupPolicy>, ClusterError> {
    crate::install_crypto_provider();
    let (mut config, context) = match &opts.context {
        Some(context) => {
            let options = KubeConfigOptions {
                context: Some(context.clone()),
                ..KubeConfigOptions::default()
            };
            let config =
                Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| ClusterError::BadContext {
                        context: context.clone(),
                        message: e.to_string(),
                    })?;
            (config, context.clone())
        }
        None => {
            let config = Config::infer()
                .await
                .map_err(|e| ClusterError::NoConfig(e.to_string()))?;
            let context = Kubeconfig::read()
                .ok()
                .and_then(|k| k.current_context)
                .unwrap_or_else(|| "in-cluster".into());
            (config, context)
        }
    };
    // A dead cluster should fail in seconds, not after the default timeouts.
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(30));
    let server = config.cluster_url.to_string();
    let namespace = opts
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| ClusterError::Unreachable {
        context: context.clone(),
        server: server.clone(),
        message: e.to_string(),
    })?;
    let api: Api<BackupPolicy> = if opts.all_namespaces {
        Api::all(client)
    } else {
        Api::namespaced(client, &namespace)
    };
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            Err(ClusterError::NoCrd { context, server })
        }
        Err(kube::Error::Api(status)) => Err(ClusterError::Refused {
            context,
            server,
            message: status.message.clone(),
        }),
        Err(e) => Err(ClusterError::Unreachable {
            context,
            server,
            message: error_chain(&e),
        }),
    }
}
