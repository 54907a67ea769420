//! Recovery planning, pure: which backup a restore uses and from which
//! destination. The IO around it (`lifeboat plan`, src/commands/plan.rs)
//! lists each destination's committed manifests, then asks [`next`] what to
//! do: verify one backup's copy in one destination, or take the plan. A copy
//! that fails verification is skipped for the next destination; a named
//! `from` is the only destination tried.

use crate::catalog::{select, CatalogError, Manifest, Point, SourceInfo};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What one destination offers, as far as it is known yet.
#[derive(Clone, Debug)]
pub struct Source {
    /// Destination name (or URL without query, for the CLI).
    pub name: String,
    /// Its committed manifests (MAC checked), or why they cannot be read.
    pub listing: Result<Vec<Manifest>, String>,
    /// Verification outcome per backup id, filled in as [`next`] asks.
    pub checked: BTreeMap<String, Result<(), String>>,
}

/// The newest backup the destinations show, when `known` (the newest one
/// the operator recorded) is in none of them and nothing newer is: the
/// bucket has lost its newest backups, deleted or rolled back by someone
/// with write access, and `latest` would quietly restore older data. None
/// when `known` or something newer is listed. Destinations that cannot be
/// read say nothing either way.
pub fn rolled_back<'s>(sources: &'s [Source], known: &str) -> Option<&'s str> {
    let listed = sources
        .iter()
        .filter_map(|s| s.listing.as_ref().ok())
        .flatten()
        .map(|m| m.backup_id.as_str());
    let newest = listed.max()?;
    (newest < known).then_some(newest)
}

impl Source {
    pub fn new(name: impl Into<String>, listing: Result<Vec<Manifest>, String>) -> Self {
        Self {
            name: name.into(),
            listing,
            checked: BTreeMap::new(),
        }
    }
}

pub use crate::wire::Skip;

/// The recovery point chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub backup_id: String,
    /// The destination whose copy verified.
    pub destination: String,
    pub completed_at: DateTime<Utc>,
    /// Stored bytes of the backup (one destination's copy); for a file or
    /// bucket backup, the bytes of its files or objects.
    pub bytes: u64,
    /// Bytes after decryption and decompression (what the restore loads).
    pub plain_bytes: u64,
    pub databases: Vec<String>,
    /// Destinations tried first and passed over.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skip>,
}

/// A file or bucket backup's data: what its restore writes. Its stored
/// objects are only the tree (the chunks are shared with other backups),
/// so their size says nothing of what a restore needs.
fn data_bytes(m: &Manifest) -> Option<u64> {
    match &m.source {
        SourceInfo::Files(f) => Some(f.stats.bytes_total),
        SourceInfo::Bucket(b) => Some(b.stats.bytes_total),
        SourceInfo::Postgres(_) | SourceInfo::Config(_) => None,
    }
}

/// What the IO should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Read back every object of `backup_id` in `sources[source]`, then record
    /// the outcome in its `checked` and ask again.
    Verify {
        source: usize,
        backup_id: String,
    },
    Chosen(Plan),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("spec.from: the policy has no destination {0:?}")]
    UnknownDestination(String),
    #[error("no destination to read from")]
    NoDestination,
    #[error("no usable recovery point: {}", join(.0))]
    Unavailable(Vec<Skip>),
}

fn join(skips: &[Skip]) -> String {
    skips
        .iter()
        .map(|s| format!("{}: {}", s.destination, s.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a destination holds no backup for `point`; before the first backup,
/// says when the first one completed.
fn missing(manifests: &[Manifest], point: &Point, e: CatalogError) -> String {
    match (point, manifests.iter().map(|m| m.completed_at).min()) {
        (Point::AtOrBefore(t), Some(first)) if *t < first => format!(
            "no backup at or before {}: the first backup completed at {}",
            t.to_rfc3339(),
            first.to_rfc3339()
        ),
        _ => e.to_string(),
    }
}

/// Decides the next step of planning. Pure.
pub fn next(sources: &[Source], point: &Point, from: Option<&str>) -> Result<Next, PlanError> {
    let order: Vec<usize> = match from {
        Some(name) => vec![sources
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| PlanError::UnknownDestination(name.to_string()))?],
        None => (0..sources.len()).collect(),
    };
    if order.is_empty() {
        return Err(PlanError::NoDestination);
    }
    // `latest` or a time is resolved across every destination that can be
    // read: one that lags (or lost its newest manifest) must not win over a
    // newer copy elsewhere just by coming first.
    let newest = order
        .iter()
        .filter_map(|&i| sources[i].listing.as_ref().ok())
        .filter_map(|l| select(l, point).ok())
        .max_by(|a, b| (a.completed_at, &a.backup_id).cmp(&(b.completed_at, &b.backup_id)));
    let resolved = match (point, newest) {
        (Point::Id(_), _) | (_, None) => point.clone(),
        (_, Some(m)) => Point::Id(m.backup_id.clone()),
    };
    let point = &resolved;
    let mut skipped = Vec::new();
    for i in order {
        let s = &sources[i];
        let skip = |reason: String| Skip {
            destination: s.name.clone(),
            reason,
        };
        let manifests = match &s.listing {
            Ok(m) => m,
            Err(e) => {
                skipped.push(skip(e.clone()));
                continue;
            }
        };
        let m = match select(manifests, point) {
            Ok(m) => m,
            Err(e) => {
                skipped.push(skip(missing(manifests, point, e)));
                continue;
            }
        };
        match s.checked.get(&m.backup_id) {
            None => {
                return Ok(Next::Verify {
                    source: i,
                    backup_id: m.backup_id.clone(),
                })
            }
            Some(Err(e)) => skipped.push(skip(format!(
                "backup {} failed verification: {e}",
                m.backup_id
            ))),
            Some(Ok(())) => {
                return Ok(Next::Chosen(Plan {
                    backup_id: m.backup_id.clone(),
                    destination: s.name.clone(),
                    completed_at: m.completed_at,
                    bytes: data_bytes(m).unwrap_or_else(|| m.stored_bytes()),
                    plain_bytes: data_bytes(m).unwrap_or_else(|| m.plain_bytes()),
                    databases: m
                        .objects
                        .iter()
                        .filter(|o| o.role == "database")
                        .filter_map(|o| o.database.clone())
                        .collect(),
                    skipped,
                }))
            }
        }
    }
    Err(PlanError::Unavailable(skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn manifest(id: &str, done: &str) -> Manifest {
        Manifest::sample(id, at(done), 100, 300)
    }

    const A: &str = "20261120T020000.000Z-aaaaaa";
    const B: &str = "20261121T020000.000Z-bbbbbb";
    const C: &str = "20261122T020000.000Z-cccccc";

    fn three() -> Vec<Manifest> {
        vec![
            manifest(A, "2026-11-20T02:05:00Z"),
            manifest(B, "2026-11-21T02:05:00Z"),
            manifest(C, "2026-11-22T02:05:00Z"),
        ]
    }

    fn sources() -> Vec<Source> {
        vec![
            Source::new("primary", Ok(three())),
            Source::new("dr-eu", Ok(three())),
        ]
    }

    /// Runs the loop with every verification succeeding except those in `bad`.
    fn plan(
        mut sources: Vec<Source>,
        point: &Point,
        from: Option<&str>,
        bad: &[(&str, &str)],
    ) -> Result<Plan, PlanError> {
        loop {
            match next(&sources, point, from)? {
                Next::Chosen(p) => return Ok(p),
                Next::Verify { source, backup_id } => {
                    let name = sources[source].name.clone();
                    let outcome = if bad.contains(&(name.as_str(), backup_id.as_str())) {
                        Err(format!("object backups/{backup_id}/db-0.lbk: tag mismatch"))
                    } else {
                        Ok(())
                    };
                    sources[source].checked.insert(backup_id, outcome);
                }
            }
        }
    }

    fn at_or_before(s: &str) -> Point {
        Point::AtOrBefore(at(s))
    }

    #[test]
    fn latest_is_the_newest_in_any_destination_not_in_the_first() {
        // The first destination lags (or someone deleted its newest manifest).
        let lagging: Vec<Manifest> = three().into_iter().filter(|m| m.backup_id != C).collect();
        let sources = vec![
            Source::new("primary", Ok(lagging)),
            Source::new("dr-eu", Ok(three())),
        ];
        let p = plan(sources.clone(), &Point::Latest, None, &[]).unwrap();
        assert_eq!((p.backup_id.as_str(), p.destination.as_str()), (C, "dr-eu"));
        assert_eq!(p.skipped.len(), 1, "{:?}", p.skipped);
        assert!(p.skipped[0].reason.contains(C), "{:?}", p.skipped);
        // A time after C, likewise.
        let p = plan(sources, &at_or_before("2026-11-23T00:00:00Z"), None, &[]).unwrap();
        assert_eq!(p.backup_id, C);
    }

    #[test]
    fn a_point_before_the_first_backup_is_a_clear_error() {
        let e = plan(sources(), &at_or_before("2026-11-19T00:00:00Z"), None, &[]).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("no backup at or before 2026-11-19T00:00:00+00:00")
                && text.contains("the first backup completed at 2026-11-20T02:05:00+00:00"),
            "{text}"
        );
        assert!(
            text.contains("primary: ") && text.contains("dr-eu: "),
            "{text}"
        );
    }

    #[test]
    fn a_point_between_backups_takes_the_newest_before_it() {
        let p = plan(sources(), &at_or_before("2026-11-21T12:00:00Z"), None, &[]).unwrap();
        assert_eq!(
            (p.backup_id.as_str(), p.destination.as_str()),
            (B, "primary")
        );
        assert_eq!((p.bytes, p.plain_bytes), (100, 300));
        assert_eq!(p.databases, ["orders"]);
        assert_eq!(p.completed_at, at("2026-11-21T02:05:00Z"));
    }

    #[test]
    fn a_point_exactly_on_a_completion_takes_that_backup() {
        let p = plan(sources(), &at_or_before("2026-11-21T02:05:00Z"), None, &[]).unwrap();
        assert_eq!(p.backup_id, B);
        let p = plan(sources(), &at_or_before("2026-11-21T02:04:59Z"), None, &[]).unwrap();
        assert_eq!(p.backup_id, A, "one second earlier is the backup before");
    }

    #[test]
    fn a_point_after_the_last_backup_takes_the_last() {
        let p = plan(sources(), &at_or_before("2027-01-01T00:00:00Z"), None, &[]).unwrap();
        assert_eq!(p.backup_id, C);
    }

    #[test]
    fn latest_and_a_named_id() {
        assert_eq!(
            plan(sources(), &Point::Latest, None, &[])
                .unwrap()
                .backup_id,
            C
        );
        let p = plan(sources(), &Point::Id(A.into()), None, &[]).unwrap();
        assert_eq!(p.backup_id, A);
        let e = plan(
            sources(),
            &Point::Id("20261123T020000.000Z-dddddd".into()),
            None,
            &[],
        )
        .unwrap_err();
        assert!(e
            .to_string()
            .contains("no backup with id 20261123T020000.000Z-dddddd"));
    }

    #[test]
    fn a_copy_that_fails_verification_is_skipped_for_the_next_destination() {
        let p = plan(sources(), &Point::Latest, None, &[("primary", C)]).unwrap();
        assert_eq!((p.backup_id.as_str(), p.destination.as_str()), (C, "dr-eu"));
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].destination, "primary");
        assert!(p.skipped[0].reason.contains("db-0.lbk"), "{:?}", p.skipped);
        // Both bad: the error names the object in each.
        let e = plan(
            sources(),
            &Point::Latest,
            None,
            &[("primary", C), ("dr-eu", C)],
        )
        .unwrap_err();
        let text = e.to_string();
        assert_eq!(
            text.matches(&format!("backups/{C}/db-0.lbk")).count(),
            2,
            "{text}"
        );
    }

    #[test]
    fn an_unreadable_destination_is_skipped() {
        let mut s = sources();
        s[0].listing = Err("connection refused".into());
        let p = plan(s, &Point::Latest, None, &[]).unwrap();
        assert_eq!(p.destination, "dr-eu");
        assert_eq!(p.skipped[0].reason, "connection refused");
    }

    #[test]
    fn a_named_from_is_the_only_destination_tried() {
        let p = plan(sources(), &Point::Latest, Some("dr-eu"), &[]).unwrap();
        assert_eq!(p.destination, "dr-eu");
        assert!(p.skipped.is_empty());
        let e = plan(sources(), &Point::Latest, Some("dr-eu"), &[("dr-eu", C)]).unwrap_err();
        assert!(!e.to_string().contains("primary"), "{e}");
        assert_eq!(
            plan(sources(), &Point::Latest, Some("nowhere"), &[]).unwrap_err(),
            PlanError::UnknownDestination("nowhere".into())
        );
        assert_eq!(
            next(&[], &Point::Latest, None).unwrap_err(),
            PlanError::NoDestination
        );
    }

    /// Someone deleted the newest manifests: `latest` is refused when the
    /// operator recorded a newer backup than any destination shows
    /// (issue 13, item 2).
    #[test]
    fn a_bucket_that_lost_its_newest_backups_is_noticed() {
        let two = || three().into_iter().take(2).collect::<Vec<_>>();
        let s = vec![
            Source::new("primary", Ok(two())),
            Source::new("dr-eu", Ok(two())),
        ];
        assert_eq!(rolled_back(&s, C), Some(B));
        // Listed somewhere, or something newer is: nothing was lost.
        let s = vec![
            Source::new("primary", Ok(two())),
            Source::new("dr-eu", Ok(three())),
        ];
        assert_eq!(rolled_back(&s, C), None);
        assert_eq!(rolled_back(&s, B), None);
        // A destination that cannot be read proves nothing.
        let s = vec![Source::new("primary", Err("unreachable".into()))];
        assert_eq!(rolled_back(&s, C), None);
    }
}
