//! [`BackupPolicySpec::validate`]: what the schema cannot check, each problem
//! naming its field. A field this version does not act on yet (sources
//! other than PostgreSQL, notification events not sent yet) is refused here rather
//! than accepted and ignored, so the policy's Ready condition says so.

use std::collections::HashSet;

use super::{BackupPolicySpec, Destination, JobTemplate, RESERVED_ENV};
use crate::api::{check_ref_name, into_result, parse_duration, FieldError, Tier};
use crate::schedule;

impl BackupPolicySpec {
    /// Checks what the schema cannot: cron strings, the time zone, durations,
    /// names, and fields not supported yet. Every problem names its field.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        self.source.validate(&mut errors);

        if let Err(e) = self.schedule.parse() {
            errors.extend(e);
        }

        for (tier, n) in [
            (Tier::Daily, self.retention.daily),
            (Tier::Weekly, self.retention.weekly),
            (Tier::Monthly, self.retention.monthly),
            (Tier::Manual, self.retention.manual.unwrap_or(0)),
        ] {
            if n < 0 {
                errors.push(FieldError::new(
                    format!("spec.retention.{tier}"),
                    format!("must be 0 or more, not {n}"),
                ));
            }
        }

        if let Some(pitr) = &self.point_in_time_recovery {
            if pitr.enabled && !self.source.is_physical() {
                errors.push(FieldError::new(
                    "spec.pointInTimeRecovery.enabled",
                    "point-in-time recovery needs source.postgres.method: physical",
                ));
            }
            check_duration(
                "spec.pointInTimeRecovery.maxWalDelay",
                &pitr.max_wal_delay,
                &mut errors,
            );
        }

        if self.destinations.is_empty() {
            errors.push(FieldError::new(
                "spec.destinations",
                "at least one destination is required",
            ));
        }
        let mut seen = HashSet::new();
        for (i, dest) in self.destinations.iter().enumerate() {
            let field = format!("spec.destinations[{i}]");
            dest.validate(&field, &mut errors);
            self.check_lock_days(&field, dest, &mut errors);
            if !seen.insert(dest.name.as_str()) {
                errors.push(FieldError::new(
                    format!("{field}.name"),
                    format!("duplicate destination name {:?}", dest.name),
                ));
            }
        }

        check_ref_name(
            "spec.encryption.keySecretRef.name",
            &self.encryption.key_secret_ref.name,
            &mut errors,
        );

        if let Some(drill) = self
            .verification
            .as_ref()
            .and_then(|v| v.restore_drill.as_ref())
        {
            if let Err(e) =
                schedule::parse_cron("spec.verification.restoreDrill.schedule", &drill.schedule)
            {
                errors.push(e.into());
            }
            super::drill_checks::validate(self, drill, &mut errors);
        }

        if let Some(objectives) = &self.objectives {
            if let Some(rpo) = &objectives.rpo {
                check_duration("spec.objectives.rpo", rpo, &mut errors);
            }
            if let Some(rto) = &objectives.rto {
                check_duration("spec.objectives.rto", rto, &mut errors);
            }
        }

        if let Some(notifications) = &self.notifications {
            notifications.validate(&mut errors);
        }

        if let Some(template) = &self.job_template {
            check_job_template(template, &mut errors);
            let theirs = template.service_account_name.as_deref();
            if let (Some(config), Some(sa)) = (&self.source.config, theirs) {
                if sa != config.service_account_name {
                    errors.push(FieldError::new(
                        "spec.jobTemplate.serviceAccountName",
                        "a config backup runs as spec.source.config.serviceAccountName; remove this or make it the same",
                    ));
                }
            }
        }

        into_result(errors)
    }

    /// An Object Lock shorter than the longest retention would lock backups
    /// for less time than they are kept (immutability that ends early).
    fn check_lock_days(&self, field: &str, dest: &Destination, errors: &mut Vec<FieldError>) {
        let Some(lock) = &dest.s3.object_lock else {
            return;
        };
        let scheduled = Tier::SCHEDULED
            .into_iter()
            .filter(|t| self.schedule.cron(*t).is_some());
        let Some((tier, needed)) = self.retention.counts().longest_days(scheduled) else {
            return;
        };
        if i64::from(lock.days) < needed as i64 {
            errors.push(FieldError::new(
                format!("{field}.s3.objectLock.days"),
                format!(
                    "{} days is shorter than the {tier} tier's retention ({} kept, {needed} days): set at least {needed}",
                    lock.days,
                    self.retention.counts().keep(tier).unwrap_or(0),
                ),
            ));
        }
    }
}

fn check_job_template(t: &JobTemplate, errors: &mut Vec<FieldError>) {
    if let Some(s) = t.active_deadline_seconds.filter(|s| *s < 60) {
        errors.push(FieldError::new(
            "spec.jobTemplate.activeDeadlineSeconds",
            format!("{s} seconds is too short for any backup: use 60 or more"),
        ));
    }
    for (i, var) in t.env.iter().flatten().enumerate() {
        if RESERVED_ENV.contains(&var.name.as_str()) || var.name.starts_with("LIFEBOAT_") {
            errors.push(FieldError::new(
                format!("spec.jobTemplate.env[{i}].name"),
                format!("{} is set by lifeboat itself", var.name),
            ));
        }
    }
    for (i, s) in t.image_pull_secrets.iter().flatten().enumerate() {
        check_ref_name(
            &format!("spec.jobTemplate.imagePullSecrets[{i}].name"),
            &s.name,
            errors,
        );
    }
}

fn check_duration(field: &str, text: &str, errors: &mut Vec<FieldError>) {
    if parse_duration(text).is_none() {
        errors.push(FieldError::new(
            field,
            format!("{text:?} is not a duration like 60s, 15m, 1h30m or 7d"),
        ));
    }
}
