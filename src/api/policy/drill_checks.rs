//! What `spec.verification.restoreDrill` needs per kind of source: a
//! logical postgres policy's drill restores into the scratch server of
//! `targetSecretRef` and runs its SQL `checks`; a physical one's recovers
//! into a data directory in the restore Job's scratch space (server uid
//! 999, role postgres) and runs its checks there; a volume or bucket policy's
//! drill restores into the restore Job's scratch space, where every chunk
//! is read and authenticated, so it takes neither. A config policy's drill
//! is a server-side dry run as `serviceAccountName` (api::restore_config).

use super::{BackupPolicySpec, RestoreDrill, SourceKind};
use crate::api::{check_ref_name, FieldError};

const FIELD: &str = "spec.verification.restoreDrill";

pub(super) fn validate(
    spec: &BackupPolicySpec,
    drill: &RestoreDrill,
    errors: &mut Vec<FieldError>,
) {
    if spec.source.config.is_none() && drill.service_account_name.is_some() {
        errors.push(FieldError::new(
            format!("{FIELD}.serviceAccountName"),
            "for config policies only: this policy's drill talks to no API server",
        ));
    }
    match spec.source.kind() {
        Some(SourceKind::Postgres)
            if spec.source.is_physical() && drill.target_secret_ref.is_some() =>
        {
            errors.push(FieldError::new(
                format!("{FIELD}.targetSecretRef"),
                "a physical policy's drill recovers into a data directory in the restore Job's scratch space, not a database server: remove it",
            ));
        }
        Some(SourceKind::Postgres) if spec.source.is_physical() => {}
        Some(SourceKind::Postgres) => match &drill.target_secret_ref {
            Some(t) => check_ref_name(
                &format!("{FIELD}.targetSecretRef.name"),
                &t.name,
                errors,
            ),
            None => errors.push(FieldError::new(
                format!("{FIELD}.targetSecretRef"),
                "a postgres policy's drill restores into a scratch server: name its connection Secret",
            )),
        },
        Some(SourceKind::Volume | SourceKind::Bucket) => {
            if drill.target_secret_ref.is_some() {
                errors.push(FieldError::new(
                    format!("{FIELD}.targetSecretRef"),
                    "a volume or bucket policy's drill restores into the restore Job's scratch space, not a database: remove it",
                ));
            }
            if !drill.checks.is_empty() {
                errors.push(FieldError::new(
                    format!("{FIELD}.checks"),
                    "SQL checks are for postgres policies; a file drill authenticates every chunk it restores",
                ));
            }
        }
        Some(SourceKind::Config) => crate::api::restore_config::validate_drill(drill, errors),
        // Already refused as spec.source.
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::api::BackupPolicySpec;
    use serde_json::json;

    fn fields(source: serde_json::Value, drill: serde_json::Value) -> Vec<String> {
        let spec: BackupPolicySpec = serde_json::from_value(json!({
            "source": source,
            "schedule": {"daily": "0 2 * * *"},
            "destinations": [{"name": "primary", "s3": {"region": "us-east-1", "bucket": "bk"}}],
            "encryption": {"keySecretRef": {"name": "keys"}},
            "verification": {"restoreDrill": drill}
        }))
        .unwrap();
        crate::api::error_fields(spec.validate())
    }

    #[test]
    fn each_kind_gets_the_drill_it_can_run() {
        let pg = json!({"postgres": {"connectionSecretRef": {"name": "db"}, "databases": ["o"]}});
        let volume = json!({"volume": {"claimName": "uploads"}});
        let bucket = json!({"bucket": {"bucket": "assets", "region": "us-east-1"}});
        let config = json!({"config": {"resources": ["secrets"], "serviceAccountName": "sa"}});
        let bare = json!({"schedule": "0 6 * * 0"});
        let with_db = json!({"schedule": "0 6 * * 0", "targetSecretRef": {"name": "scratch"},
                             "checks": ["select true"]});
        assert!(fields(pg.clone(), with_db.clone()).is_empty());
        assert_eq!(
            fields(pg, bare.clone()),
            ["spec.verification.restoreDrill.targetSecretRef"]
        );
        assert!(fields(volume.clone(), bare.clone()).is_empty());
        assert!(fields(bucket.clone(), bare.clone()).is_empty());
        for source in [volume, bucket] {
            assert_eq!(
                fields(source, with_db.clone()),
                [
                    "spec.verification.restoreDrill.targetSecretRef",
                    "spec.verification.restoreDrill.checks"
                ]
            );
        }
        assert_eq!(
            fields(config, bare.clone()),
            ["spec.verification.restoreDrill.serviceAccountName"]
        );
        // A physical policy's drill takes checks, but no scratch server.
        let physical =
            json!({"postgres": {"connectionSecretRef": {"name": "db"}, "method": "physical"}});
        let checks = json!({"schedule": "0 6 * * 0", "checks": ["select true"]});
        assert!(fields(physical.clone(), checks).is_empty());
        assert!(fields(physical.clone(), bare).is_empty());
        assert_eq!(
            fields(physical, with_db),
            ["spec.verification.restoreDrill.targetSecretRef"]
        );
    }
}
