//! Arguments of config backups (Kubernetes objects): what `lifeboat backup
//! --config` lists, and what `lifeboat restore --config` and `lifeboat
//! export` take back from such a backup. The API is reached through the
//! kubeconfig (KUBECONFIG, ~/.kube/config) or the pod's service account.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::cloud::{CloudBackupArgs, CloudRestoreArgs};
use super::KeyArgs;
use crate::catalog::Point;
use crate::commands;
use crate::location::NamedLocation;
use crate::source::config::{select, Selection};
use crate::target::cluster::Existing;
use crate::target::objects::{Filter, Mapping};

#[derive(Args, Clone, Default)]
pub struct ConfigBackupArgs {
    /// Back up Kubernetes objects (listed through the API) instead of a database.
    #[arg(long)]
    pub config: bool,
    /// Namespace to back up (repeat for several).
    #[arg(long = "namespace", short = 'n', requires = "config")]
    pub namespaces: Vec<String>,
    /// Every namespace (and cluster-scoped objects of the chosen types).
    #[arg(long, requires = "config", conflicts_with = "namespaces")]
    pub all_namespaces: bool,
    /// Resource types: `secrets`, `deployments.apps`, `*.lifeboat.dev`, `*`
    /// (repeat). Events, pods, leases and endpoints are left out of
    /// wildcards unless named.
    #[arg(long = "resource", requires = "config")]
    pub resources: Vec<String>,
    /// Resource types to leave out, same forms (repeat).
    #[arg(long = "exclude-resource", requires = "config")]
    pub exclude_resources: Vec<String>,
    /// Only objects with these labels (`app=web,tier!=cache`).
    #[arg(long = "selector", short = 'l', requires = "config")]
    pub selector: Option<String>,
    /// Also objects a controller owns (ReplicaSets of Deployments, …).
    #[arg(long, requires = "config")]
    pub include_owned: bool,
    /// Keep each object's status.
    #[arg(long, requires = "config")]
    pub include_status: bool,
    #[command(flatten)]
    pub cloud: CloudBackupArgs,
}

impl ConfigBackupArgs {
    pub fn selection(&self) -> Result<Selection, commands::Error> {
        let usage = commands::Error::Usage;
        let cloud = self.cloud.sources()?;
        if self.resources.is_empty() && cloud.is_empty() {
            return Err(usage(
                "--config: name the resource types with --resource (e.g. secrets, configmaps, deployments.apps, or *), or a cloud store (--secrets-manager, --ssm-path)".into(),
            ));
        }
        if !self.resources.is_empty() && self.namespaces.is_empty() && !self.all_namespaces {
            return Err(usage(
                "--config: give --namespace (repeat for several) or --all-namespaces".into(),
            ));
        }
        select::Types::check(&self.resources).map_err(|e| usage(format!("--resource: {e}")))?;
        select::Types::check(&self.exclude_resources)
            .map_err(|e| usage(format!("--exclude-resource: {e}")))?;
        Ok(Selection {
            namespaces: self.namespaces.clone(),
            types: select::Types {
                include: self.resources.clone(),
                exclude: self.exclude_resources.clone(),
            },
            label_selector: self.selector.clone().filter(|s| !s.is_empty()),
            include_owned: self.include_owned,
            include_status: self.include_status,
            cloud,
        })
    }
}

/// What a restore does with an object that already exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ExistingArg {
    /// Leave it as it is (default).
    #[default]
    Skip,
    /// Replace it with the backup's version.
    Update,
    /// Stop the restore.
    Fail,
}

/// `lifeboat restore --config`: which objects of a config backup, where.
#[derive(Args, Clone, Default)]
pub struct ConfigRestoreArgs {
    /// Restore the Kubernetes objects of a config backup into the cluster
    /// (the kubeconfig's, or the pod's service account's).
    #[arg(long = "config")]
    pub config: bool,
    /// Only these resource types (repeat; same forms as the backup's --resource).
    #[arg(long = "resource", requires = "config")]
    pub resources: Vec<String>,
    /// Only objects of these namespaces of the backup (repeat).
    #[arg(long = "namespace", short = 'n', requires = "config")]
    pub namespaces: Vec<String>,
    /// Only these objects: NAME or NAMESPACE/NAME (repeat).
    #[arg(long = "name", requires = "config")]
    pub names: Vec<String>,
    /// Only objects with these labels (`app=web,tier!=cache`).
    #[arg(long = "selector", short = 'l', requires = "config")]
    pub selector: Option<String>,
    /// Restore a namespace of the backup under another name: FROM=TO (repeat).
    #[arg(long = "namespace-map", requires = "config")]
    pub namespace_map: Vec<String>,
    /// An object that already exists: skip it, update it, or fail the restore.
    #[arg(long, value_enum, default_value = "skip", requires = "config")]
    pub existing: ExistingArg,
    /// Send every object as a server-side dry run (nothing is stored);
    /// cloud secrets are only looked up.
    #[arg(long, requires = "config")]
    pub dry_run: bool,
    #[command(flatten)]
    pub cloud: CloudRestoreArgs,
}

impl ConfigRestoreArgs {
    /// Whether Kubernetes objects are restored: always without a cloud
    /// store flag; with one, only when objects are selected too.
    pub fn kubernetes(&self) -> bool {
        let selects_objects = !(self.resources.is_empty()
            && self.namespaces.is_empty()
            && self.names.is_empty()
            && self.selector.is_none()
            && self.namespace_map.is_empty());
        !self.cloud.any() || selects_objects
    }

    pub fn filter(&self) -> Result<Filter, commands::Error> {
        select::Types::check(&self.resources)
            .map_err(|e| commands::Error::Usage(format!("--resource: {e}")))?;
        Ok(Filter {
            types: self.resources.clone(),
            namespaces: self.namespaces.clone(),
            names: self.names.clone(),
            selector: self.selector.clone().filter(|s| !s.is_empty()),
        })
    }

    pub fn mapping(&self) -> Result<Mapping, commands::Error> {
        Mapping::parse(&self.namespace_map)
            .map_err(|e| commands::Error::Usage(format!("--namespace-map: {e}")))
    }

    pub fn existing(&self) -> Existing {
        match self.existing {
            ExistingArg::Skip => Existing::Skip,
            ExistingArg::Update => Existing::Update,
            ExistingArg::Fail => Existing::Fail,
        }
    }
}

/// `lifeboat export`: a config backup as YAML files for `kubectl apply`.
#[derive(Args)]
pub struct ExportArgs {
    /// Where the backup is, in order of preference (repeat for fallbacks).
    #[arg(long = "from", required = true)]
    pub from: Vec<NamedLocation>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// `latest`, a backup id, or an RFC 3339 time (newest backup completed by then).
    #[arg(long, default_value = "latest")]
    pub backup: Point,
    /// A new (or empty) directory for the files; they hold Secrets in the clear.
    #[arg(long)]
    pub out: PathBuf,
    /// Only these resource types (repeat).
    #[arg(long = "resource")]
    pub resources: Vec<String>,
    /// Only objects of these namespaces (repeat).
    #[arg(long = "namespace", short = 'n')]
    pub namespaces: Vec<String>,
    #[arg(long)]
    pub json: bool,
}
