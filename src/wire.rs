//! Everything that crosses the Job boundary, in one place: the summaries a
//! data-plane command leaves in its Job's termination message, the step
//! names a restore reports, the WAL archiver's `/status`, and the news a
//! notify Job sends.
//!
//! Both sides use these types — `commands` writes them, `controller` reads
//! them — so neither imports the other. Destinations are named as the
//! controller named them on the command line (`--to primary=s3://…`), never by
//! URL. The termination message holds [`MESSAGE_LIMIT`] bytes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where the container leaves its summary for the controller.
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// What Kubernetes keeps of a termination message.
pub const MESSAGE_LIMIT: usize = 4096;
/// How much of it an error may take, leaving room for the rest of a summary.
const ERROR_ROOM: usize = 3000;

/// The steps of a RestoreRequest, as its status and the Jobs' summaries name them.
pub mod step {
    pub const PLAN: &str = "plan";
    pub const RESTORE: &str = "restore";
    pub const VERIFY: &str = "verify";
}

/// Cuts `text` to at most `max` bytes (on a character boundary), marking the cut.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Reads a termination message as JSON of type `T`; `None` when it is not
/// one (a crash left the tail of the log instead).
pub fn parse<T: for<'de> Deserialize<'de>>(message: &str) -> Option<T> {
    serde_json::from_str(message.trim()).ok()
}

/// What `lifeboat backup --report-file` leaves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupSummary {
    pub backup_id: String,
    #[serde(default)]
    pub server_version: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub seconds: f64,
    /// Names of the destinations that hold the backup.
    pub committed: Vec<String>,
    #[serde(default)]
    pub failed: Vec<String>,
    /// Destinations read back and every byte checked (`--verify`); `None`
    /// when the Job did not verify. A committed destination missing here
    /// failed verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Vec<String>>,
    pub objects: Vec<ObjectSummary>,
    /// A file backup's figures (files and bytes new, changed, unchanged,
    /// deduplicated); absent for other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<crate::catalog::FileStats>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSummary {
    /// Key relative to the destination's root (`backups/<id>/<part>.lbk`).
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("the Job left no termination message")]
    Empty,
    /// Not a summary: the container failed before writing one and the
    /// message is the tail of its log (FallbackToLogsOnError).
    #[error("the termination message is not a backup summary: {0}")]
    NotASummary(String),
    #[error("the summary names backup id {0:?}, which is not a backup id")]
    BadBackupId(String),
}

impl BackupSummary {
    /// Parses a backup Job's termination message.
    pub fn parse(message: &str) -> Result<Self, SummaryError> {
        let text = message.trim();
        if text.is_empty() {
            return Err(SummaryError::Empty);
        }
        let s: Self =
            serde_json::from_str(text).map_err(|e| SummaryError::NotASummary(e.to_string()))?;
        if !crate::catalog::valid_backup_id(&s.backup_id) {
            return Err(SummaryError::BadBackupId(s.backup_id));
        }
        Ok(s)
    }

    /// True when every committed destination was read back and passed.
    pub fn fully_verified(&self) -> bool {
        self.verified
            .as_ref()
            .is_some_and(|v| self.committed.iter().all(|c| v.contains(c)))
    }

    pub fn is_verified(&self, destination: &str) -> bool {
        self.verified
            .as_ref()
            .is_some_and(|v| v.iter().any(|d| d == destination))
    }
}

/// What `lifeboat prune --report-file` leaves: what went, and until when
/// S3 Object Lock keeps the rest. The run controller holds a run whose
/// backup was kept and prunes again after `locked_until`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneSummary {
    /// Backups deleted from every destination.
    pub deleted: Vec<String>,
    /// The latest retain-until of the backups' objects Object Lock kept;
    /// absent when nothing was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<DateTime<Utc>>,
}

/// A destination passed over while planning, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skip {
    pub destination: String,
    pub reason: String,
}

/// What `lifeboat plan --report-file` leaves: the chosen point, or why none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// Name of the destination the restore should read first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_database: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skip>,
}

impl PlanSummary {
    pub fn failed(error: impl std::fmt::Display) -> Self {
        PlanSummary {
            ok: Some(false),
            error: Some(truncate(error.to_string(), ERROR_ROOM)),
            ..Default::default()
        }
    }
}

/// What `lifeboat restore --report-file` leaves, for a logical restore with
/// checks and a point-in-time restore alike.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RestoreSummary {
    pub ok: bool,
    /// On failure: the step that failed ([`step::RESTORE`] or [`step::VERIFY`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_completed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_database: Option<String>,
    #[serde(default)]
    pub restore_seconds: f64,
    #[serde(default)]
    pub check_seconds: f64,
    #[serde(default)]
    pub checks: usize,
    #[serde(default)]
    pub bytes: u64,
    /// A config restore's outcome in one line (objects created, updated,
    /// skipped; cloud secrets), for the request's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<String>,
    /// Files (or objects) a file or bucket restore wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
}

impl RestoreSummary {
    /// A failed step; the error is cut to leave room in the message for the rest.
    pub fn failed(step: &str, error: impl std::fmt::Display) -> Self {
        RestoreSummary {
            ok: false,
            failed_step: Some(step.to_string()),
            error: Some(truncate(error.to_string(), ERROR_ROOM)),
            ..Default::default()
        }
    }
}

/// What `lifeboat wal-stream` serves at `/status` (and writes to `--status-file`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiverStatus {
    /// The newest segment every destination holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_segment: Option<String>,
    /// When WAL (a segment or the partial one) last reached every destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_shipped_at: Option<DateTime<Utc>>,
    /// Age of the oldest WAL received but not yet in every destination.
    #[serde(default)]
    pub lag_seconds: f64,
    #[serde(default)]
    pub partial_bytes: u64,
}

/// What `lifeboat notify` sends: one piece of news about a policy. Nothing
/// in it is secret; it travels as an argument of the notify Job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub event: NotifyEvent,
    pub namespace: String,
    pub policy: String,
    /// The run (or drill) it is about, when one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// One line for people.
    pub summary: String,
    /// Groups a problem's trigger and its resolve (PagerDuty's dedup key).
    pub dedup_key: String,
    pub at: DateTime<Utc>,
}

/// The events a notification is about (the API's `events` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NotifyEvent {
    RunFailed,
    ObjectiveBreached,
    DrillFailed,
    Recovered,
    Succeeded,
    RestoreFinished,
}

impl NotifyEvent {
    /// The API's name of the event.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::RunFailed => "runFailed",
            NotifyEvent::ObjectiveBreached => "objectiveBreached",
            NotifyEvent::DrillFailed => "drillFailed",
            NotifyEvent::Recovered => "recovered",
            NotifyEvent::Succeeded => "succeeded",
            NotifyEvent::RestoreFinished => "restoreFinished",
        }
    }

    /// True for news of a problem; false for good news.
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            NotifyEvent::RunFailed | NotifyEvent::ObjectiveBreached | NotifyEvent::DrillFailed
        )
    }
}

/// One target as the notify Job is told it: its name, its kind, and the
/// directory where its Secret is mounted (the secrets themselves are files
/// there, never arguments).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyTarget {
    pub name: String,
    pub kind: NotifyKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum NotifyKind {
    /// `<dir>/url`.
    Slack { dir: String },
    /// `<dir>/url`, `<dir>/signingKey`.
    Webhook { dir: String },
    /// `<dir>/routingKey`; `events_url` absent = PagerDuty's own.
    #[serde(rename_all = "camelCase")]
    PagerDuty {
        dir: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        events_url: Option<String>,
    },
    /// `<dir>/username`, `<dir>/password` and `<dir>/ca.pem` when present.
    Email {
        host: String,
        port: u16,
        from: String,
        to: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dir: Option<String>,
    },
    /// `<dir>/url`.
    Heartbeat { dir: String },
}

/// What `lifeboat notify --report-file` leaves: per target, sent or why not.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NotifyReport {
    pub sent: Vec<String>,
    /// Target name → error (which names the target, never its URL).
    #[serde(default)]
    pub failed: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_fits_the_termination_message() {
        let long = "é".repeat(4000);
        let s = serde_json::to_string(&RestoreSummary::failed(step::VERIFY, &long)).unwrap();
        assert!(s.len() < MESSAGE_LIMIT, "{}", s.len());
        let back: RestoreSummary = parse(&s).unwrap();
        assert_eq!(back.failed_step.as_deref(), Some("verify"));
        assert!(back.error.unwrap().ends_with('…'));
        let p = serde_json::to_string(&PlanSummary::failed(&long)).unwrap();
        assert!(p.len() < MESSAGE_LIMIT, "{}", p.len());
    }

    #[test]
    fn a_log_tail_is_not_a_summary() {
        assert!(matches!(
            BackupSummary::parse(" \n"),
            Err(SummaryError::Empty)
        ));
        assert!(matches!(
            BackupSummary::parse("error: pg_dump failed"),
            Err(SummaryError::NotASummary(_))
        ));
        assert!(parse::<PlanSummary>("Error: boom").is_none());
    }
}
