//! What the controller reports in a BackupPolicy's status.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::Tier;
use crate::schedule::Slots;

#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicyStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// [`SourceSpec::summary`], for the `Source` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_kind: Option<String>,
    // Boxed, as the other optional parts: the controller caches every
    // policy, most without them (8 bytes instead of ~150 each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<Box<LastBackup>>,
    /// When the newest successful backup of each scheduled tier completed.
    /// Kept here so that a restarted controller exports every tier's last
    /// success, even once the runs that made them are deleted.
    #[serde(default, skip_serializing_if = "TierTimes::is_empty")]
    pub last_backups: TierTimes,
    /// The earliest of `nextBackups`, for the `Next` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_backup: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "TierTimes::is_empty")]
    pub next_backups: TierTimes,
    /// The schedule slot of the newest run made per tier. Kept here so that
    /// deleting runs (retention) never makes a slot look missed again.
    #[serde(default, skip_serializing_if = "TierTimes::is_empty")]
    pub last_scheduled: TierTimes,
    /// Restorable range, point-in-time recovery included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_window: Option<RecoveryWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<Box<LastDrill>>,
    /// Continuous WAL archiving (point-in-time recovery), as its archiver reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_archive: Option<Box<WalArchive>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The newest instant a restore can reach, and what reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryPoint {
    pub at: DateTime<Utc>,
    /// True when archived WAL, not the newest backup itself, reaches it.
    pub by_wal: bool,
}

impl BackupPolicyStatus {
    /// What the RPO is measured from: the newest successful backup, or, with
    /// WAL archiving, the last WAL archived after it (a base backup and its
    /// WAL restore to any instant up to there).
    pub fn recovery_point(&self) -> Option<RecoveryPoint> {
        let backup = self.last_backup.as_ref()?.completed_at;
        let wal = self.wal_archive.as_ref().and_then(|w| w.last_archived_at);
        Some(match wal {
            Some(at) if at > backup => RecoveryPoint { at, by_wal: true },
            _ => RecoveryPoint {
                at: backup,
                by_wal: false,
            },
        })
    }
}

/// The WAL archiver's state, read from its `/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalArchive {
    /// True while the archiver answers and ships within maxWalDelay.
    pub healthy: bool,
    /// The newest segment every destination holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_segment: Option<String>,
    /// When WAL last reached every destination: the newest restorable instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_archived_at: Option<DateTime<Utc>>,
    /// Age of the oldest WAL received but not yet in every destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The newest successful backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastBackup {
    /// Name of its BackupRun.
    pub run: String,
    pub tier: Tier,
    pub completed_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// A file backup's figures (volume policies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<crate::api::run::FileCounts>,
}

/// An instant per scheduled tier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TierTimes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<DateTime<Utc>>,
}

impl TierTimes {
    pub fn get(&self, tier: Tier) -> Option<DateTime<Utc>> {
        match tier {
            Tier::Daily => self.daily,
            Tier::Weekly => self.weekly,
            Tier::Monthly => self.monthly,
            Tier::Manual => None,
        }
    }

    /// Sets a tier's instant; manual has none, so setting it does nothing.
    pub fn set(&mut self, tier: Tier, at: Option<DateTime<Utc>>) {
        match tier {
            Tier::Daily => self.daily = at,
            Tier::Weekly => self.weekly = at,
            Tier::Monthly => self.monthly = at,
            Tier::Manual => {}
        }
    }

    pub fn earliest(&self) -> Option<DateTime<Utc>> {
        [self.daily, self.weekly, self.monthly]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn is_empty(&self) -> bool {
        self.daily.is_none() && self.weekly.is_none() && self.monthly.is_none()
    }

    /// The instants that are set, for [`crate::schedule`].
    pub fn slots(&self) -> Slots {
        Tier::SCHEDULED
            .into_iter()
            .filter_map(|tier| Some((tier, self.get(tier)?)))
            .collect()
    }
}

impl From<Slots> for TierTimes {
    fn from(slots: Slots) -> Self {
        let mut times = Self::default();
        for (tier, at) in slots {
            times.set(tier, Some(at));
        }
        times
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The newest restore drill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastDrill {
    pub run: String,
    pub completed_at: DateTime<Utc>,
    pub succeeded: bool,
    /// Measured RTO of the drill: request to verified database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_time_seconds: Option<i64>,
    /// The drill's RestoreRequest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
