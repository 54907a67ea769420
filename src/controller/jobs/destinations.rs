//! A policy's destinations as a pod sees them: each a [`NamedLocation`]
//! under `<prefix>/<namespace>/<policy>` in its bucket, named as in the
//! policy, with its own credentials mounted. The Job reports destinations by
//! these names, so nothing maps URLs back to destinations.

use crate::api::BackupPolicy;
use crate::location::{Location, NamedLocation};

use super::pod::{mount, s3_credentials, secret_volume, PodNeeds};
use super::{JobConfig, CA_FILE};
use crate::api::policy::ValidPolicy;

/// Every destination of `policy` as the pod's `--to`/`--from` names it.
pub fn for_pod(policy: &ValidPolicy<'_>, cfg: &JobConfig) -> Vec<NamedLocation> {
    policy
        .destinations
        .iter()
        .map(|d| {
            let mut loc = d.location.clone();
            if d.spec.s3.credentials_secret_ref.is_some() {
                loc.credentials = Some(cfg.credentials_dir(&d.spec.name).into());
            }
            if d.spec.s3.ca_secret_ref.is_some() {
                loc.ca_file = Some(format!("{}/{CA_FILE}", cfg.ca_dir(&d.spec.name)).into());
            }
            NamedLocation::new(&d.spec.name, Location::S3(loc))
        })
        .collect()
}

/// `--to`/`--from` for each of `dests`.
pub fn args(flag: &str, dests: &[NamedLocation]) -> Vec<String> {
    dests
        .iter()
        .flat_map(|d| [flag.to_string(), d.arg()])
        .collect()
}

/// Each destination's S3 credentials Secret and CA certificates, mounted
/// where its location says.
pub fn credentials(policy: &BackupPolicy, cfg: &JobConfig) -> PodNeeds {
    let mut needs = PodNeeds::default();
    for (i, dest) in policy.spec.destinations.iter().enumerate() {
        if let Some(ca) = &dest.s3.ca_secret_ref {
            let volume = format!("s3ca-{i}");
            needs
                .volumes
                .push(secret_volume(&volume, &ca.name, vec![(ca.key(), CA_FILE)]));
            needs.mounts.push(mount(&volume, &cfg.ca_dir(&dest.name)));
        }
        let Some(creds) = &dest.s3.credentials_secret_ref else {
            continue;
        };
        // Volume names are DNS labels; destination names may be 63 long already.
        needs.add(s3_credentials(
            &format!("s3-{i}"),
            creds,
            &cfg.credentials_dir(&dest.name),
        ));
    }
    needs
}
