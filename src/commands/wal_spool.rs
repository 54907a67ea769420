//! The pure decisions of `lifeboat wal-stream`: which spool files to ship
//! now, what may be deleted after, when the partial segment is due, and the
//! status an operator reads. The IO around them lives in wal_stream.rs.
//!
//! pg_receivewal writes the segment it is receiving as `<segment>.partial`
//! (preallocated to the full segment size, so its length says nothing) and
//! renames it to `<segment>` once complete and fsynced. A completed file is
//! final: it is shipped, then deleted from the spool once every destination
//! has it, so whatever the spool holds on start is exactly what is left to
//! ship.

use chrono::{DateTime, Utc};
use std::time::SystemTime;

/// What a spool file is to wal-stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpoolKind {
    /// A completed segment or a timeline history file: archive once.
    Complete,
    /// The segment being received (`<segment>.partial`).
    Partial { segment: String },
    /// Anything else (pg_receivewal's temporary files): left alone.
    Other,
}

fn is_segment(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn classify(name: &str) -> SpoolKind {
    let history = name.len() == 16
        && name.ends_with(".history")
        && name[..8].bytes().all(|b| b.is_ascii_hexdigit());
    if is_segment(name) || history {
        return SpoolKind::Complete;
    }
    match name.strip_suffix(".partial") {
        Some(seg) if is_segment(seg) => SpoolKind::Partial {
            segment: seg.to_string(),
        },
        _ => SpoolKind::Other,
    }
}

/// One file as the spool listing saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolFile {
    pub name: String,
    pub modified: SystemTime,
    /// For a partial segment: bytes written so far (to the WAL page).
    pub written: u64,
}

/// The partial segment as it was when last shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialShipped {
    pub name: String,
    pub modified: SystemTime,
    pub written: u64,
    pub at: DateTime<Utc>,
}

/// What to do on one pass over the spool.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Completed files to archive, in order: history files before the
    /// segments of their timeline, segments oldest first.
    pub complete: Vec<String>,
    /// The partial segment to ship now, if it is due.
    pub partial: Option<String>,
}

/// How often a changed partial is shipped: three quarters of the allowed
/// delay, leaving the rest for the upload and the polling tick, so data is
/// in every destination within `max_delay` of reaching the spool.
pub fn partial_period(max_delay: chrono::Duration) -> chrono::Duration {
    max_delay * 3 / 4
}

/// How often the spool is looked at.
pub fn tick(max_delay: chrono::Duration) -> std::time::Duration {
    let ms = (max_delay.num_milliseconds() / 10).clamp(100, 1000);
    std::time::Duration::from_millis(ms as u64)
}

pub fn plan(
    files: &[SpoolFile],
    last: Option<&PartialShipped>,
    now: DateTime<Utc>,
    max_delay: chrono::Duration,
) -> Plan {
    let mut complete: Vec<String> = files
        .iter()
        .filter(|f| classify(&f.name) == SpoolKind::Complete)
        .map(|f| f.name.clone())
        .collect();
    // Names start with the timeline, and "00000002.history" sorts before
    // "000000020000…": history files come before their timeline's segments.
    complete.sort();
    // The newest partial: pg_receivewal keeps one, but after a crash an older
    // one may linger until it is rewritten.
    let partial = files
        .iter()
        .filter(|f| matches!(classify(&f.name), SpoolKind::Partial { .. }))
        .max_by(|a, b| a.name.cmp(&b.name))
        .filter(|p| partial_due(p, last, now, max_delay))
        .map(|p| p.name.clone());
    Plan { complete, partial }
}

/// A partial is due when it holds data, changed since it was last shipped,
/// and the last ship is a period ago (or never happened in this process).
pub fn partial_due(
    p: &SpoolFile,
    last: Option<&PartialShipped>,
    now: DateTime<Utc>,
    max_delay: chrono::Duration,
) -> bool {
    match last {
        _ if !partial_changed(p, last) => false,
        None => true,
        Some(l) => now - l.at >= partial_period(max_delay),
    }
}

/// Whether a partial holds data not shipped in its current state.
pub fn partial_changed(p: &SpoolFile, last: Option<&PartialShipped>) -> bool {
    p.written > 0
        && !last
            .is_some_and(|l| l.name == p.name && l.written == p.written && l.modified == p.modified)
}

/// Objects made redundant once `name` is archived whole: its partial copy.
pub fn superseded_partial(name: &str) -> Option<String> {
    is_segment(name).then(|| format!("{name}.partial"))
}

/// What `--status-file` holds and `--http-addr` serves at `/status`: the
/// type the controller reads.
pub use crate::wire::ArchiverStatus as Status;

/// Since when WAL has been waiting, after a pass that started at `now`:
/// cleared or restarted at `now` when the pass shipped everything it saw
/// (`covered`) — whatever is pending then arrived during the pass — and
/// unchanged otherwise.
pub fn next_pending_since(
    prev: Option<DateTime<Utc>>,
    covered: bool,
    pending_after: bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if covered {
        pending_after.then_some(now)
    } else {
        prev
    }
}

/// Seconds since `pending_since`, the moment unshipped WAL was first seen.
pub fn lag_seconds(pending_since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> f64 {
    pending_since
        .map(|t| ((now - t).num_milliseconds().max(0) as f64) / 1000.0)
        .unwrap_or(0.0)
}

/// Whether anything in the spool is not yet shipped in its current state.
pub fn has_pending(files: &[SpoolFile], last: Option<&PartialShipped>) -> bool {
    files.iter().any(|f| match classify(&f.name) {
        SpoolKind::Complete => true,
        SpoolKind::Partial { .. } => partial_changed(f, last),
        SpoolKind::Other => false,
    })
}

/// Restart delay of pg_receivewal after `failures` quick failures in a row:
/// 1 s doubling to 30 s.
pub fn backoff(failures: u32) -> std::time::Duration {
    std::time::Duration::from_secs((1u64 << failures.min(5)).min(30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    const SEG1: &str = "000000010000000000000001";
    const SEG2: &str = "000000010000000000000002";

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }
    fn file(name: &str, written: u64, mtime: u64) -> SpoolFile {
        SpoolFile {
            name: name.into(),
            modified: SystemTime::UNIX_EPOCH + Duration::from_secs(mtime),
            written,
        }
    }
    fn shipped(f: &SpoolFile, at: DateTime<Utc>) -> PartialShipped {
        PartialShipped {
            name: f.name.clone(),
            modified: f.modified,
            written: f.written,
            at,
        }
    }

    #[test]
    fn spool_names_are_classified() {
        assert_eq!(classify(SEG1), SpoolKind::Complete);
        assert_eq!(classify("00000002.history"), SpoolKind::Complete);
        assert_eq!(
            classify(&format!("{SEG2}.partial")),
            SpoolKind::Partial {
                segment: SEG2.into()
            }
        );
        for other in [
            "",
            "x.partial",
            "00000001000000000000000.partial",
            "000000010000000000000001.partial.tmp",
            "archive_status",
            "0000000z.history",
        ] {
            assert_eq!(classify(other), SpoolKind::Other, "{other}");
        }
    }

    #[test]
    fn completed_files_ship_in_timeline_order_and_others_are_left() {
        let files = [
            file("000000020000000000000005", 0, 1),
            file("00000002.history", 0, 1),
            file("000000010000000000000004", 0, 1),
            file("junk.tmp", 0, 1),
        ];
        let p = plan(&files, None, t(0), chrono::Duration::seconds(60));
        assert_eq!(
            p.complete,
            [
                "000000010000000000000004",
                "00000002.history",
                "000000020000000000000005"
            ]
        );
        assert_eq!(p.partial, None);
    }

    #[test]
    fn partial_is_shipped_when_changed_and_a_period_has_passed() {
        let delay = chrono::Duration::seconds(60);
        let name = format!("{SEG2}.partial");
        let f = file(&name, 8192, 10);
        // First sight in this process (a restart): ship at once.
        assert_eq!(
            plan(std::slice::from_ref(&f), None, t(0), delay).partial,
            Some(name.clone())
        );
        let last = shipped(&f, t(0));
        // Unchanged: never again, however long.
        assert!(!partial_due(&f, Some(&last), t(3600), delay));
        // Changed: only once 45 s (3/4 of the delay) have passed.
        let grown = file(&name, 16384, 11);
        assert!(!partial_due(&grown, Some(&last), t(44), delay));
        assert!(partial_due(&grown, Some(&last), t(45), delay));
        // An empty partial (just created) is never shipped.
        assert!(!partial_due(&file(&name, 0, 12), None, t(0), delay));
        // A new segment's partial follows the same period.
        let next = file("000000010000000000000003.partial", 8192, 12);
        assert!(!partial_due(&next, Some(&last), t(10), delay));
        assert!(partial_due(&next, Some(&last), t(50), delay));
    }

    #[test]
    fn newest_partial_wins_over_a_leftover() {
        let files = [
            file(&format!("{SEG1}.partial"), 8192, 1),
            file(&format!("{SEG2}.partial"), 8192, 2),
        ];
        let p = plan(&files, None, t(0), chrono::Duration::seconds(5));
        assert_eq!(p.partial, Some(format!("{SEG2}.partial")));
    }

    #[test]
    fn archiving_a_segment_supersedes_its_partial_only() {
        assert_eq!(superseded_partial(SEG1), Some(format!("{SEG1}.partial")));
        assert_eq!(superseded_partial("00000002.history"), None);
    }

    #[test]
    fn pending_and_lag() {
        let name = format!("{SEG2}.partial");
        let f = file(&name, 8192, 10);
        assert!(has_pending(std::slice::from_ref(&f), None));
        let last = shipped(&f, t(0));
        assert!(!has_pending(std::slice::from_ref(&f), Some(&last)));
        assert!(has_pending(&[file(SEG1, 0, 1), f], Some(&last)));
        // Under a steady load the partial is always changing: the lag
        // restarts at each pass that shipped everything it saw.
        assert_eq!(next_pending_since(Some(t(0)), true, true, t(4)), Some(t(4)));
        assert_eq!(next_pending_since(Some(t(0)), true, false, t(4)), None);
        assert_eq!(
            next_pending_since(Some(t(0)), false, true, t(4)),
            Some(t(0))
        );
        assert_eq!(lag_seconds(None, t(5)), 0.0);
        assert_eq!(lag_seconds(Some(t(2)), t(5)), 3.0);
        assert_eq!(lag_seconds(Some(t(9)), t(5)), 0.0);
    }

    #[test]
    fn tick_and_backoff_are_bounded() {
        assert_eq!(tick(chrono::Duration::seconds(60)), Duration::from_secs(1));
        assert_eq!(
            tick(chrono::Duration::seconds(2)),
            Duration::from_millis(200)
        );
        assert_eq!(
            tick(chrono::Duration::milliseconds(10)),
            Duration::from_millis(100)
        );
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), Duration::from_secs(30));
    }

    #[test]
    fn status_is_camel_case_json() {
        let s = Status {
            last_segment: Some(SEG1.into()),
            last_shipped_at: Some(t(0)),
            lag_seconds: 1.5,
            partial_bytes: 8192,
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["lastSegment"], SEG1);
        assert_eq!(v["lagSeconds"], 1.5);
        assert_eq!(v["partialBytes"], 8192);
        assert!(v["lastShippedAt"].is_string());
    }
}
