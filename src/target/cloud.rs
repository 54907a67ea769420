//! Cloud secret stores as a restore target: the secrets and parameters of
//! a config backup created again in the same or another region, under the
//! backup's prefix (path) or another one. An existing secret or parameter
//! is skipped, given the backup's value (a new AWSCURRENT version, an
//! overwritten parameter) or stops the restore, as Kubernetes objects are.
//! These services have no server-side dry run: a dry run reads whether
//! each one exists and writes nothing.
//!
//! A failure names the secret and the service's code and message, never a
//! value.

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::primitives::Blob;
use serde::Serialize;

use super::cluster::{Applied, Existing};
use super::TargetError;
use crate::source::config::cloud::{
    op_err, rename, Account, Clients, Kind, ParameterLine, SecretLine,
};

/// One store to restore: which, into what account, under what scope.
#[derive(Clone, Debug)]
pub struct CloudTarget {
    pub kind: Kind,
    /// Its region defaults to the backup's.
    pub account: Account,
    /// None: the backup's own prefix or path.
    pub to: Option<String>,
}

/// A store's entries from a backup, decoded and authenticated.
#[derive(Debug)]
pub enum Entries {
    Secrets(Vec<SecretLine>),
    Parameters(Vec<ParameterLine>),
}

impl Entries {
    pub fn len(&self) -> usize {
        match self {
            Entries::Secrets(v) => v.len(),
            Entries::Parameters(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The outcome for one store.
#[derive(Debug, Serialize)]
pub struct CloudApplied {
    pub store: &'static str,
    pub region: String,
    /// The prefix or path restored under.
    pub scope: String,
    #[serde(flatten)]
    pub applied: Applied,
}

pub struct CloudRestore<'a> {
    pub target: &'a CloudTarget,
    /// The backup's region and prefix (path).
    pub from_region: &'a str,
    pub from_scope: &'a str,
    pub existing: Existing,
    pub dry_run: bool,
}

impl CloudRestore<'_> {
    pub async fn run(&self, entries: Entries) -> Result<CloudApplied, TargetError> {
        let store = self.target.kind.as_str();
        let mut account = self.target.account.clone();
        if account.region.is_none() && !self.from_region.is_empty() {
            account.region = Some(self.from_region.to_string());
        }
        let clients = account
            .clients(store)
            .await
            .map_err(|e| TargetError::Refused(e.to_string()))?;
        let mut out = Applied::default();
        match entries {
            Entries::Secrets(v) => {
                for s in v {
                    self.secret(&clients, s, &mut out).await?;
                }
            }
            Entries::Parameters(v) => {
                for p in v {
                    self.parameter(&clients, p, &mut out).await?;
                }
            }
        }
        tracing::info!(store, region = %clients.region, created = out.created, updated = out.updated,
            skipped = out.skipped, failed = out.failed.len(), dry_run = self.dry_run, "cloud secrets restored");
        Ok(CloudApplied {
            store,
            region: clients.region,
            scope: self
                .target
                .to
                .clone()
                .unwrap_or(self.from_scope.to_string()),
            applied: out,
        })
    }

    fn name(&self, name: &str) -> String {
        rename(name, self.from_scope, self.target.to.as_deref())
    }

    /// What to do with one that exists; Err stops the restore.
    fn exists(&self, what: &str, out: &mut Applied) -> Result<bool, TargetError> {
        match self.existing {
            Existing::Skip => {
                out.skipped += 1;
                Ok(false)
            }
            Existing::Fail => Err(TargetError::Refused(format!(
                "{what} already exists (--existing fail)"
            ))),
            Existing::Update => Ok(true),
        }
    }

    async fn secret(
        &self,
        c: &Clients,
        s: SecretLine,
        out: &mut Applied,
    ) -> Result<(), TargetError> {
        const STORE: &str = "secretsmanager";
        use base64::Engine;
        let name = self.name(&s.name);
        let what = format!("secret {name}");
        let binary = match s.binary.as_deref().map(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(Blob::new)
        }) {
            Some(Err(_)) => {
                out.failed
                    .push(format!("{what}: the stored binary value is not base64"));
                return Ok(());
            }
            Some(Ok(b)) => Some(b),
            None => None,
        };
        if self.dry_run {
            let found = c.secrets.describe_secret().secret_id(&name).send().await;
            match found {
                Ok(_) => {
                    if self.exists(&what, out)? {
                        out.updated += 1;
                    }
                }
                Err(e) if e.code() == Some("ResourceNotFoundException") => out.created += 1,
                Err(e) => out
                    .failed
                    .push(op_err(STORE, "DescribeSecret", &name, e).to_string()),
            }
            return Ok(());
        }
        let created = c
            .secrets
            .create_secret()
            .name(&name)
            .set_description(s.description.clone())
            .set_tags(Some(
                s.tags
                    .iter()
                    .map(|(k, v)| {
                        aws_sdk_secretsmanager::types::Tag::builder()
                            .key(k)
                            .value(v)
                            .build()
                    })
                    .collect(),
            ))
            .set_secret_string(s.string.clone())
            .set_secret_binary(binary.clone())
            .send()
            .await;
        match created {
            Ok(_) => out.created += 1,
            Err(e) if e.code() == Some("ResourceExistsException") => {
                if !self.exists(&what, out)? {
                    return Ok(());
                }
                let put = c
                    .secrets
                    .put_secret_value()
                    .secret_id(&name)
                    .set_secret_string(s.string)
                    .set_secret_binary(binary)
                    .send()
                    .await;
                match put {
                    Ok(_) => out.updated += 1,
                    Err(e) => out
                        .failed
                        .push(op_err(STORE, "PutSecretValue", &name, e).to_string()),
                }
            }
            Err(e) => out
                .failed
                .push(op_err(STORE, "CreateSecret", &name, e).to_string()),
        }
        Ok(())
    }

    async fn parameter(
        &self,
        c: &Clients,
        p: ParameterLine,
        out: &mut Applied,
    ) -> Result<(), TargetError> {
        const STORE: &str = "ssm";
        use aws_sdk_ssm::types::ParameterType;
        let name = self.name(&p.name);
        let what = format!("parameter {name}");
        if self.dry_run {
            match c.ssm.get_parameter().name(&name).send().await {
                Ok(_) => {
                    if self.exists(&what, out)? {
                        out.updated += 1;
                    }
                }
                Err(e) if e.code() == Some("ParameterNotFound") => out.created += 1,
                Err(e) => out
                    .failed
                    .push(op_err(STORE, "GetParameter", &name, e).to_string()),
            }
            return Ok(());
        }
        let put = |overwrite: bool| {
            c.ssm
                .put_parameter()
                .name(&name)
                .value(&p.value)
                .r#type(ParameterType::from(p.kind.as_str()))
                .overwrite(overwrite)
                .send()
        };
        match put(false).await {
            Ok(_) => out.created += 1,
            Err(e) if e.code() == Some("ParameterAlreadyExists") => {
                if !self.exists(&what, out)? {
                    return Ok(());
                }
                match put(true).await {
                    Ok(_) => out.updated += 1,
                    Err(e) => out
                        .failed
                        .push(op_err(STORE, "PutParameter", &name, e).to_string()),
                }
            }
            Err(e) => out
                .failed
                .push(op_err(STORE, "PutParameter", &name, e).to_string()),
        }
        Ok(())
    }
}
