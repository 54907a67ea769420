//! Arguments of the cloud secret stores in config backups and restores:
//! the account (`--cloud-region`, `--cloud-endpoint`, `--cloud-credentials
//! DIR`, a directory of key files as the S3 destinations take them, so no
//! key is in argv), and what to read or where to restore it.

use std::path::PathBuf;

use clap::Args;

use crate::commands;
use crate::source::config::cloud::{Account, CloudSource, Kind};
use crate::target::cloud::CloudTarget;

/// The AWS account of the cloud secret stores.
#[derive(Args, Clone, Default)]
pub struct CloudAccountArgs {
    /// Region of Secrets Manager and SSM (default: AWS_REGION; on restore,
    /// the backup's).
    #[arg(long = "cloud-region", requires = "config")]
    pub region: Option<String>,
    /// Another endpoint for them (a VPC endpoint, a test server).
    #[arg(long = "cloud-endpoint", requires = "config")]
    pub endpoint: Option<url::Url>,
    /// Directory with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY files
    /// (default: the standard AWS chain).
    #[arg(long = "cloud-credentials", requires = "config")]
    pub credentials: Option<PathBuf>,
}

impl CloudAccountArgs {
    pub fn account(&self) -> Result<Account, commands::Error> {
        let a = Account {
            region: self.region.clone().filter(|r| !r.is_empty()),
            endpoint: self.endpoint.clone(),
            credentials: self.credentials.clone(),
        };
        a.check_endpoint()
            .map_err(|e| commands::Error::Usage(format!("--cloud-endpoint: {e}")))?;
        Ok(a)
    }
}

/// What a config backup reads of the cloud secret stores.
#[derive(Args, Clone, Default)]
pub struct CloudBackupArgs {
    /// Back up the AWS Secrets Manager secrets whose names start with PREFIX
    /// (current values, text or binary).
    #[arg(long = "secrets-manager", value_name = "PREFIX", requires = "config")]
    pub secrets_manager: Option<String>,
    /// Back up the SSM parameters under PATH, recursively (SecureStrings
    /// decrypted; stored encrypted like everything else).
    #[arg(long = "ssm-path", value_name = "PATH", requires = "config")]
    pub ssm_path: Option<String>,
    #[command(flatten)]
    pub account: CloudAccountArgs,
}

impl CloudBackupArgs {
    pub fn sources(&self) -> Result<Vec<CloudSource>, commands::Error> {
        let account = self.account.account()?;
        let mut out = Vec::new();
        for (flag, kind, scope) in [
            (
                "--secrets-manager",
                Kind::SecretsManager,
                &self.secrets_manager,
            ),
            ("--ssm-path", Kind::Ssm, &self.ssm_path),
        ] {
            let Some(scope) = scope else { continue };
            kind.check_scope(scope)
                .map_err(|e| commands::Error::Usage(format!("{flag}: {e}")))?;
            out.push(CloudSource {
                kind,
                scope: scope.clone(),
                account: account.clone(),
            });
        }
        Ok(out)
    }
}

/// What a config restore takes of the cloud secret stores, and where.
#[derive(Args, Clone, Default)]
pub struct CloudRestoreArgs {
    /// Restore the backup's Secrets Manager secrets.
    #[arg(long = "secrets-manager", requires = "config")]
    pub secrets_manager: bool,
    /// Under this prefix instead of the backup's (the backup's prefix is
    /// replaced at the start of each name).
    #[arg(long = "to-prefix", requires = "secrets_manager")]
    pub to_prefix: Option<String>,
    /// Restore the backup's SSM parameters.
    #[arg(long = "ssm", requires = "config")]
    pub ssm: bool,
    /// Under this path instead of the backup's.
    #[arg(long = "to-path", requires = "ssm")]
    pub to_path: Option<String>,
    #[command(flatten)]
    pub account: CloudAccountArgs,
}

impl CloudRestoreArgs {
    pub fn any(&self) -> bool {
        self.secrets_manager || self.ssm
    }

    pub fn targets(&self) -> Result<Vec<CloudTarget>, commands::Error> {
        let account = self.account.account()?;
        let mut out = Vec::new();
        for (on, flag, kind, to) in [
            (
                self.secrets_manager,
                "--to-prefix",
                Kind::SecretsManager,
                &self.to_prefix,
            ),
            (self.ssm, "--to-path", Kind::Ssm, &self.to_path),
        ] {
            if !on {
                continue;
            }
            if let Some(to) = to {
                kind.check_scope(to)
                    .map_err(|e| commands::Error::Usage(format!("{flag}: {e}")))?;
            }
            out.push(CloudTarget {
                kind,
                account: account.clone(),
                to: to.clone(),
            });
        }
        Ok(out)
    }
}
