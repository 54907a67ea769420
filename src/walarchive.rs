//! The WAL archive's rules, kept apart from IO: what a WAL object key names,
//! which WAL retention may delete, and the recovery window.
//!
//! Objects live at `wal/<timeline>/<file>.lbk` (see `commands::wal`).

use chrono::{DateTime, Utc};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalKind {
    Segment,
    /// A segment still being written (streamed); replaced until complete.
    Partial,
    /// A base backup's label (`<segment>.<offset>.backup`).
    BackupLabel,
    History,
}

/// What one WAL object holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalFile {
    pub timeline: u32,
    pub kind: WalKind,
    /// (log, seg) of the segment the file belongs to; None for history files.
    /// Comparing these pairs orders segments for any segment size.
    pub position: Option<(u32, u32)>,
}

fn hex32(s: &str) -> Option<u32> {
    // from_str_radix alone would take a leading '+'.
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

/// Timeline and (log, seg) of a 24-character segment file name.
pub fn segment_position(name: &str) -> Option<(u32, (u32, u32))> {
    if name.len() != 24 {
        return None;
    }
    Some((
        hex32(&name[..8])?,
        (hex32(&name[8..16])?, hex32(&name[16..24])?),
    ))
}

/// Parses a WAL file name (not its object key).
pub fn parse_wal_name(name: &str) -> Option<WalFile> {
    if let Some(tli) = name.strip_suffix(".history") {
        return Some(WalFile {
            timeline: hex32(tli)?,
            kind: WalKind::History,
            position: None,
        });
    }
    let (segment, kind) = match name.get(24..) {
        Some("") => (name, WalKind::Segment),
        Some(".partial") => (&name[..24], WalKind::Partial),
        Some(rest) if rest.starts_with('.') && rest.ends_with(".backup") => {
            (&name[..24], WalKind::BackupLabel)
        }
        _ => return None,
    };
    let (timeline, position) = segment_position(segment)?;
    Some(WalFile {
        timeline,
        kind,
        position: Some(position),
    })
}

/// Parses an object key `wal/<timeline>/<file>.lbk`.
pub fn parse_wal_key(key: &str) -> Option<WalFile> {
    let rest = key.strip_prefix("wal/")?;
    let (dir, file) = rest.split_once('/')?;
    let file = parse_wal_name(file.strip_suffix(".lbk")?)?;
    (hex32(dir)? == file.timeline).then_some(file)
}

/// The WAL object keys retention deletes: segments, partial segments and
/// backup labels before the oldest kept base backup's first segment
/// (`oldest_start_wal`), on every timeline. Everything from that segment on
/// is kept on every timeline, because a restore from that base backup may
/// follow any later timeline. History files are always kept: they are tiny
/// and recovery needs them to follow timelines. With no kept base backup
/// nothing is deleted — an empty catalog is a reason to keep, not to guess.
pub fn expired_wal<'a>(
    keys: impl IntoIterator<Item = &'a str>,
    oldest_start_wal: Option<&str>,
) -> Vec<&'a str> {
    let Some((_, cutoff)) = oldest_start_wal.and_then(segment_position) else {
        return Vec::new();
    };
    keys.into_iter()
        .filter(|key| {
            parse_wal_key(key).is_some_and(|f| {
                f.kind != WalKind::History && f.position.is_some_and(|p| p < cutoff)
            })
        })
        .collect()
}

/// The span of time a point-in-time restore can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// From the end of the oldest base backup (the first consistent instant) to
/// the newest archived WAL (`wal_until`: when the newest WAL was captured).
/// None without a base backup; without archived WAL the window is the base
/// backups alone (oldest to newest end).
pub fn recovery_window(
    base_backup_ends: &[DateTime<Utc>],
    wal_until: Option<DateTime<Utc>>,
) -> Option<Window> {
    let from = *base_backup_ends.iter().min()?;
    let newest_base = *base_backup_ends.iter().max()?;
    let to = wal_until.map_or(newest_base, |w| w.max(newest_base));
    Some(Window { from, to })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_of_wal_key() {
        let seg = parse_wal_key("wal/00000001/000000010000000A000000FF.lbk").unwrap();
        assert_eq!(seg.timeline, 1);
        assert_eq!(seg.kind, WalKind::Segment);
        assert_eq!(seg.position, Some((0xA, 0xFF)));
        let partial = parse_wal_key("wal/00000002/000000020000000000000003.partial.lbk").unwrap();
        assert_eq!((partial.timeline, partial.kind), (2, WalKind::Partial));
        let label =
            parse_wal_key("wal/00000001/000000010000000000000002.00000028.backup.lbk").unwrap();
        assert_eq!(label.kind, WalKind::BackupLabel);
        assert_eq!(label.position, Some((0, 2)));
        let history = parse_wal_key("wal/00000003/00000003.history.lbk").unwrap();
        assert_eq!((history.timeline, history.kind), (3, WalKind::History));
        assert_eq!(history.position, None);
    }

    #[test]
    fn rejects_what_is_not_a_wal_key() {
        for key in [
            "backups/x/manifest.json",
            "wal/00000001/000000010000000000000003",
            "wal/00000002/000000010000000000000003.lbk", // timeline dir disagrees
            "wal/00000001/00000001000000000000003.lbk",  // 23 characters
            "wal/00000001/0000000100000000000000GG.lbk",
            "wal/00000001/000000010000000000000003.tmp.lbk",
        ] {
            assert_eq!(parse_wal_key(key), None, "{key}");
        }
    }

    const KEYS: [&str; 8] = [
        "wal/00000001/000000010000000000000001.lbk",
        "wal/00000001/000000010000000000000002.lbk",
        "wal/00000001/000000010000000000000002.00000028.backup.lbk",
        "wal/00000001/000000010000000000000003.lbk",
        "wal/00000002/00000002.history.lbk",
        "wal/00000002/000000020000000000000003.lbk",
        "wal/00000002/000000020000000000000004.partial.lbk",
        "wal/00000001/000000010000000100000000.lbk",
    ];

    #[test]
    fn retention_deletes_only_what_precedes_the_oldest_base_backup() {
        let gone = expired_wal(KEYS, Some("000000010000000000000003"));
        assert_eq!(
            gone,
            [
                "wal/00000001/000000010000000000000001.lbk",
                "wal/00000001/000000010000000000000002.lbk",
                "wal/00000001/000000010000000000000002.00000028.backup.lbk",
            ]
        );
    }

    #[test]
    fn retention_keeps_later_timelines_and_history_and_high_logs() {
        // The oldest base backup is on timeline 2: timeline 1's segment 3 is
        // not older than it, and log 1 sorts after log 0 whatever the seg.
        let gone = expired_wal(KEYS, Some("000000020000000000000004"));
        assert!(gone.contains(&"wal/00000001/000000010000000000000003.lbk"));
        assert!(gone.contains(&"wal/00000002/000000020000000000000003.lbk"));
        assert!(!gone.iter().any(|k| k.contains("history")));
        assert!(!gone.iter().any(|k| k.contains("0000000100000000.lbk")));
        assert!(!gone.iter().any(|k| k.contains("0004.partial")));
    }

    #[test]
    fn without_a_base_backup_nothing_is_deleted() {
        assert!(expired_wal(KEYS, None).is_empty());
        assert!(expired_wal(KEYS, Some("not a segment")).is_empty());
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn window_runs_from_the_oldest_base_backup_to_the_newest_wal() {
        let ends = [t("2026-11-25T02:00:00Z"), t("2026-11-24T02:00:00Z")];
        let w = recovery_window(&ends, Some(t("2026-11-25T09:30:05Z"))).unwrap();
        assert_eq!(w.from, t("2026-11-24T02:00:00Z"));
        assert_eq!(w.to, t("2026-11-25T09:30:05Z"));
    }

    #[test]
    fn window_without_wal_or_without_base_backups() {
        let ends = [t("2026-11-24T02:00:00Z"), t("2026-11-25T02:00:00Z")];
        let w = recovery_window(&ends, None).unwrap();
        assert_eq!((w.from, w.to), (ends[0], ends[1]));
        // WAL older than the newest base backup does not shrink the window.
        let w = recovery_window(&ends, Some(t("2026-11-24T12:00:00Z"))).unwrap();
        assert_eq!(w.to, ends[1]);
        assert_eq!(recovery_window(&[], Some(ends[0])), None);
    }
}
