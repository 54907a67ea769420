//! Cloud secret stores in a config backup (issue 11): the AWS Secrets
//! Manager secrets whose names start with a prefix (each one's current
//! value, AWSCURRENT, text or binary) and the SSM Parameter Store
//! parameters under a path (recursive, SecureStrings decrypted). Each
//! store is one part of JSON lines in the same encrypted stream as the
//! Kubernetes objects; the manifest carries the region, the prefix or path
//! and a count, never a name or a value.
//!
//! Errors a person reads carry the service's code and message only: never
//! the SDK's debug form of a request or response (a value could be in it).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};

use super::super::stream::{Sink, Task};
use super::super::{Part, Producer, SourceError};
use crate::catalog::CloudCount;

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("{store}: {problem}")]
    Setup {
        store: &'static str,
        problem: String,
    },
    #[error("{store} {op} {name}: {message}")]
    Op {
        store: &'static str,
        op: &'static str,
        name: String,
        message: String,
    },
}

/// Which store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    SecretsManager,
    Ssm,
}

impl Kind {
    /// As the manifest and the part name say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SecretsManager => "secretsmanager",
            Kind::Ssm => "ssm",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::SecretsManager, Kind::Ssm]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    /// Checks a prefix (Secrets Manager) or path (SSM).
    pub fn check_scope(self, scope: &str) -> Result<(), String> {
        match self {
            Kind::SecretsManager if scope.is_empty() => {
                Err("empty; name the prefix of the secrets (e.g. prod/shop/)".into())
            }
            Kind::Ssm if !scope.starts_with('/') => {
                Err(format!("{scope:?} does not start with / (e.g. /prod/shop)"))
            }
            _ if scope.chars().any(char::is_control) => Err("has a control character".into()),
            _ => Ok(()),
        }
    }
}

/// The AWS account a store is reached with.
#[derive(Clone, Debug, Default)]
pub struct Account {
    /// Default: AWS_REGION.
    pub region: Option<String>,
    /// Another endpoint (moto, a VPC endpoint); plain HTTP only on loopback.
    pub endpoint: Option<url::Url>,
    /// A directory with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY files,
    /// as the S3 destinations take them; default: the standard chain.
    pub credentials: Option<PathBuf>,
}

/// A store and what to read of it.
#[derive(Clone, Debug)]
pub struct CloudSource {
    pub kind: Kind,
    /// Name prefix (Secrets Manager) or path (SSM).
    pub scope: String,
    pub account: Account,
}

/// Ready clients of an account, and the region they use.
pub struct Clients {
    pub region: String,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub ssm: aws_sdk_ssm::Client,
}

impl Account {
    pub fn check_endpoint(&self) -> Result<(), String> {
        let Some(e) = &self.endpoint else {
            return Ok(());
        };
        match e.scheme() {
            "https" => Ok(()),
            "http" if crate::location::is_loopback(e) => Ok(()),
            _ => Err(format!(
                "{} is not https (plain HTTP only to loopback)",
                e.as_str().trim_end_matches('/')
            )),
        }
    }

    pub async fn clients(&self, store: &'static str) -> Result<Clients, CloudError> {
        let bad = |problem: String| CloudError::Setup { store, problem };
        self.check_endpoint()
            .map_err(|p| bad(format!("endpoint {p}")))?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &self.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(dir) = &self.credentials {
            loader =
                loader.credentials_provider(crate::store::s3::read_credentials(dir).map_err(bad)?);
        }
        let shared = loader.load().await;
        let Some(region) = shared.region().map(|r| r.to_string()) else {
            return Err(bad(
                "no region: give --cloud-region (region) or set AWS_REGION".into(),
            ));
        };
        let endpoint = self
            .endpoint
            .as_ref()
            .map(|e| e.as_str().trim_end_matches('/').to_string());
        let mut sm = aws_sdk_secretsmanager::config::Builder::from(&shared);
        let mut ssm = aws_sdk_ssm::config::Builder::from(&shared);
        if let Some(e) = &endpoint {
            sm = sm.endpoint_url(e);
            ssm = ssm.endpoint_url(e);
        }
        Ok(Clients {
            region,
            secrets: aws_sdk_secretsmanager::Client::from_conf(sm.build()),
            ssm: aws_sdk_ssm::Client::from_conf(ssm.build()),
        })
    }
}

/// A failed request in one line: the service's code and message, else the
/// causes (a connection refused); never the response's debug form.
pub fn op_err<E>(store: &'static str, op: &'static str, name: &str, e: E) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error,
{
    let message = match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        (None, _) => crate::error_line::error_chain(&e),
    };
    CloudError::Op {
        store,
        op,
        name: name.to_string(),
        message,
    }
}

/// A secret as stored: its name, description, tags and current value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretLine {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// SecretString.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string: Option<String>,
    /// SecretBinary, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
}

/// A parameter as stored: name, type (`String`, `StringList`,
/// `SecureString`) and value (decrypted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterLine {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// One part per store, each reading it when the part is read.
pub fn parts(sources: &[CloudSource], counts: &Arc<Mutex<Vec<CloudCount>>>) -> Vec<Part> {
    let mut parts = Vec::new();
    for src in sources {
        let index = {
            let mut c = counts.lock().expect("not poisoned");
            c.push(CloudCount {
                store: src.kind.as_str().into(),
                region: src.account.region.clone().unwrap_or_default(),
                scope: src.scope.clone(),
                count: 0,
            });
            c.len() - 1
        };
        let (src, counts) = (src.clone(), counts.clone());
        parts.push(Part {
            name: format!("cloud-{}", src.kind.as_str()),
            role: "cloud",
            database: None,
            producer: Producer::Task {
                what: src.kind.as_str(),
                task: Some(Task::new(move |sink| async move {
                    let (count, region) = read(&src, sink).await?;
                    let mut c = counts.lock().expect("not poisoned");
                    c[index].count = count;
                    c[index].region = region;
                    Ok(())
                })),
            },
            head: None,
        });
    }
    parts
}

async fn line<T: Serialize>(sink: &mut Sink, v: &T) -> Result<(), SourceError> {
    let mut bytes = serde_json::to_vec(v).expect("serializable");
    bytes.push(b'\n');
    sink.write(&bytes).await
}

/// Reads a store into the sink: the entries written and the region.
async fn read(src: &CloudSource, mut sink: Sink) -> Result<(u64, String), SourceError> {
    let store = src.kind.as_str();
    let clients = src.account.clients(store).await.map_err(refused)?;
    let count = match src.kind {
        Kind::SecretsManager => secrets(&clients.secrets, &src.scope, &mut sink).await?,
        Kind::Ssm => parameters(&clients.ssm, &src.scope, &mut sink).await?,
    };
    sink.flush().await?;
    tracing::info!(store, region = %clients.region, scope = %src.scope, entries = count, "read");
    Ok((count, clients.region))
}

fn refused(e: CloudError) -> SourceError {
    SourceError::Refused(e.to_string())
}

async fn secrets(
    client: &aws_sdk_secretsmanager::Client,
    prefix: &str,
    sink: &mut Sink,
) -> Result<u64, SourceError> {
    use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
    use base64::Engine;
    const STORE: &str = "secretsmanager";
    let mut token: Option<String> = None;
    let mut count = 0;
    loop {
        let page = client
            .list_secrets()
            .filters(
                Filter::builder()
                    .key(FilterNameStringType::Name)
                    .values(prefix)
                    .build(),
            )
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| refused(op_err(STORE, "ListSecrets", prefix, e)))?;
        for entry in page.secret_list() {
            // The filter matches words anywhere in the name; keep the prefix's.
            let Some(name) = entry.name().filter(|n| n.starts_with(prefix)) else {
                continue;
            };
            let value = match client.get_secret_value().secret_id(name).send().await {
                Ok(v) => v,
                // A secret created without a value has no AWSCURRENT.
                Err(e) if e.code() == Some("ResourceNotFoundException") => {
                    tracing::info!(secret = %name, "no current value; left out");
                    continue;
                }
                Err(e) => return Err(refused(op_err(STORE, "GetSecretValue", name, e))),
            };
            let stored = SecretLine {
                name: name.to_string(),
                description: entry.description().map(str::to_string),
                tags: entry
                    .tags()
                    .iter()
                    .map(|t| {
                        let s = |v: Option<&str>| v.unwrap_or_default().to_string();
                        (s(t.key()), s(t.value()))
                    })
                    .collect(),
                string: value.secret_string().map(str::to_string),
                binary: value
                    .secret_binary()
                    .map(|b| base64::engine::general_purpose::STANDARD.encode(b.as_ref())),
            };
            line(sink, &stored).await?;
            count += 1;
        }
        token = page
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            return Ok(count);
        }
    }
}

async fn parameters(
    client: &aws_sdk_ssm::Client,
    path: &str,
    sink: &mut Sink,
) -> Result<u64, SourceError> {
    const STORE: &str = "ssm";
    let mut token: Option<String> = None;
    let mut count = 0;
    loop {
        let page = client
            .get_parameters_by_path()
            .path(path)
            .recursive(true)
            .with_decryption(true)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| refused(op_err(STORE, "GetParametersByPath", path, e)))?;
        for p in page.parameters() {
            let (Some(name), Some(kind), Some(value)) = (p.name(), p.r#type(), p.value()) else {
                continue;
            };
            let stored = ParameterLine {
                name: name.to_string(),
                kind: kind.as_str().to_string(),
                value: value.to_string(),
            };
            line(sink, &stored).await?;
            count += 1;
        }
        token = page
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            return Ok(count);
        }
    }
}

/// A name of the backup under another prefix or path: `from` replaced by
/// `to` at its start (names outside `from` stay as they are).
pub fn rename(name: &str, from: &str, to: Option<&str>) -> String {
    match (to, name.strip_prefix(from)) {
        (Some(to), Some(rest)) => format!("{to}{rest}"),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_checked_and_names_move_to_another_prefix() {
        assert!(Kind::SecretsManager.check_scope("").is_err());
        assert!(Kind::SecretsManager.check_scope("prod/").is_ok());
        assert!(Kind::Ssm.check_scope("prod").is_err());
        assert!(Kind::Ssm.check_scope("/prod").is_ok());
        assert_eq!(rename("prod/db", "prod/", Some("dr/")), "dr/db");
        assert_eq!(rename("/app/x/y", "/app", Some("/copy")), "/copy/x/y");
        assert_eq!(rename("prod/db", "prod/", None), "prod/db");
        assert_eq!(Kind::parse("ssm"), Some(Kind::Ssm));
        assert_eq!(Kind::parse("vault"), None);
    }

    #[test]
    fn a_plain_http_endpoint_is_refused_unless_loopback() {
        let a = |e: &str| Account {
            endpoint: Some(e.parse().unwrap()),
            ..Default::default()
        };
        assert!(a("http://127.0.0.1:5000").check_endpoint().is_ok());
        assert!(a("https://secretsmanager.example").check_endpoint().is_ok());
        assert!(a("http://secretsmanager.example")
            .check_endpoint()
            .unwrap_err()
            .contains("not https"));
    }
}
