//! S3 Object Lock on a destination: the retention every write carries, the
//! bucket's configuration checked before a backup writes, an object's lock
//! read back (verify, prune), and deletion in a locked — hence versioned —
//! bucket, where a plain DeleteObject only hides the object behind a delete
//! marker: every version goes, and a version still under retention stays.

use super::{op_err, S3Store};
use crate::location::{LockMode, ObjectLock};
use crate::store::{LockState, StoreError};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::DateTime as S3Time;
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockEnabled, ObjectLockMode};
use chrono::{DateTime, Utc};

/// The Object Lock parameters of a write made now: mode and retain-until.
#[derive(Clone, Debug)]
pub struct Retention {
    pub mode: ObjectLockMode,
    pub until: S3Time,
}

impl Retention {
    pub fn starting(lock: &ObjectLock, now: DateTime<Utc>) -> Retention {
        Retention {
            mode: match lock.mode {
                LockMode::Governance => ObjectLockMode::Governance,
                LockMode::Compliance => ObjectLockMode::Compliance,
            },
            until: S3Time::from_secs(lock.retain_until(now).timestamp()),
        }
    }
}

/// S3 wants a checksum header on every upload (PutObject, UploadPart) into
/// a retention period; custom endpoints otherwise get none (see `open`).
/// CRC32, which the SDK computes: the stream format authenticates the rest.
pub fn checksum(retention: Option<&Retention>) -> Option<ChecksumAlgorithm> {
    retention.map(|_| ChecksumAlgorithm::Crc32)
}

/// A lock as S3 reports it on an object, if it has one.
fn lock_state(mode: Option<&ObjectLockMode>, until: Option<&S3Time>) -> Option<LockState> {
    let until = until?;
    Some(LockState {
        mode: mode.map_or("unknown", |m| m.as_str()).to_ascii_lowercase(),
        retain_until: DateTime::from_timestamp(until.secs(), until.subsec_nanos())?,
    })
}

impl S3Store {
    /// The retention of an object written now; `None` without `object-lock`.
    pub(super) fn retention(&self) -> Option<Retention> {
        self.lock
            .as_ref()
            .map(|l| Retention::starting(l, Utc::now()))
    }

    /// With `object-lock`, the bucket must have Object Lock enabled: writes
    /// would fail one by one otherwise, and a lock that is not there must not
    /// look like one that is.
    pub async fn check_lock(&self) -> Result<(), StoreError> {
        if self.lock.is_none() {
            return Ok(());
        }
        let missing = || {
            StoreError::Setup {
            dest: self.label.clone(),
            problem: format!(
                "bucket {} has no Object Lock configuration; create the bucket with Object Lock enabled, or remove objectLock",
                self.bucket
            ),
        }
        };
        let out = match self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => {
                return Err(missing())
            }
            Err(e) => return Err(op_err(&self.label, "get object lock configuration", "", e)),
        };
        let enabled = out
            .object_lock_configuration()
            .and_then(|c| c.object_lock_enabled());
        if enabled != Some(&ObjectLockEnabled::Enabled) {
            return Err(missing());
        }
        Ok(())
    }

    /// The lock of the current version of `key`, or of one `version`.
    pub async fn lock_state(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<LockState>, StoreError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| {
                let missing = e.as_service_error().is_some_and(|s| s.is_not_found());
                self.missing_or(missing, "head", key, e)
            })?;
        Ok(lock_state(
            out.object_lock_mode(),
            out.object_lock_retain_until_date(),
        ))
    }

    /// Deletes every version and delete marker of `key`. A version S3 refuses
    /// to delete because its retention has not ended is kept and logged; any
    /// other refusal is an error.
    pub(super) async fn delete_versions(&self, key: &str) -> Result<(), StoreError> {
        let full = self.full(key);
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .map_err(|e| op_err(&self.label, "list versions", key, e))?;
            let versions = page
                .versions()
                .iter()
                .map(|v| (v.key(), v.version_id()))
                .chain(
                    page.delete_markers()
                        .iter()
                        .map(|m| (m.key(), m.version_id())),
                );
            for (k, version) in versions {
                if k == Some(full.as_str()) {
                    self.delete_version(key, version).await?;
                }
            }
            if !page.is_truncated().unwrap_or(false) {
                return Ok(());
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
    }

    async fn delete_version(&self, key: &str, version: Option<&str>) -> Result<(), StoreError> {
        let Err(e) = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .set_version_id(version.map(str::to_string))
            .send()
            .await
        else {
            return Ok(());
        };
        let err = op_err(&self.label, "delete", key, e);
        match self.lock_state(key, version).await {
            Ok(Some(lock)) if lock.holds_at(Utc::now()) => {
                tracing::warn!(dest = %self.label, key, version, mode = %lock.mode, until = %lock.retain_until, "a version still under Object Lock retention is kept");
                Ok(())
            }
            _ => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_retained_for_the_lock_days_from_now() {
        let now: DateTime<Utc> = "2026-05-01T00:00:00Z".parse().unwrap();
        let r = Retention::starting(
            &ObjectLock {
                mode: LockMode::Governance,
                days: 2,
            },
            now,
        );
        assert_eq!(r.mode, ObjectLockMode::Governance);
        assert_eq!(r.until.secs(), now.timestamp() + 2 * 86_400);
    }

    #[test]
    fn a_reported_lock_reads_into_mode_and_date() {
        let until = S3Time::from_secs(1_800_000_000);
        let s = lock_state(Some(&ObjectLockMode::Compliance), Some(&until)).unwrap();
        assert_eq!(s.mode, "compliance");
        assert_eq!(s.retain_until.timestamp(), 1_800_000_000);
        assert!(s.holds_at(DateTime::from_timestamp(1_799_999_999, 0).unwrap()));
        assert!(!s.holds_at(DateTime::from_timestamp(1_800_000_000, 0).unwrap()));
        assert_eq!(lock_state(Some(&ObjectLockMode::Governance), None), None);
    }
}
