//! wal-push with `--max-block`: one unreachable destination may hold up
//! PostgreSQL's archiver (and so the primary's disk) for at most that long.
//! Past it, wal-push archives to the destinations that answer and records
//! what it owes the others in a small state file; every later wal-push first
//! pays those debts by copying the objects, as stored, from a destination
//! that has them. Until then the owed destination lags, and wal-push says so
//! at error level on every call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Error;
use crate::store::{Store, StoreError};

/// The bound and where its state lives.
pub struct Bound {
    pub max_block: Duration,
    pub state_dir: PathBuf,
}

/// What one destination is owed.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Debt {
    /// When archiving to it first failed, in the run of failures now going on.
    pub failing_since: Option<DateTime<Utc>>,
    /// Objects archived elsewhere while it was down, oldest first.
    pub owed: Vec<String>,
}

/// The state file: destination name → its debt. Destinations in good
/// standing are absent.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub destinations: BTreeMap<String, Debt>,
}

const STATE_FILE: &str = "wal-push-state.json";

impl Ledger {
    pub fn load(dir: &Path) -> Result<Ledger, Error> {
        match std::fs::read(dir.join(STATE_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Usage(format!(
                    "--state-dir {}: {STATE_FILE} is not readable: {e}",
                    dir.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ledger::default()),
            Err(e) => Err(Error::Usage(format!("--state-dir {}: {e}", dir.display()))),
        }
    }

    /// Written whole to a temporary file, then renamed over the old one.
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        std::fs::create_dir_all(dir).map_err(Error::Pipeline)?;
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).expect("the ledger serialises");
        std::fs::write(&tmp, text).map_err(Error::Pipeline)?;
        std::fs::rename(&tmp, dir.join(STATE_FILE)).map_err(Error::Pipeline)
    }

    /// A failure of `dest` at `now`: whether it has now been failing longer
    /// than `max_block` (so archiving goes on without it).
    pub fn failed(&mut self, dest: &str, now: DateTime<Utc>, max_block: Duration) -> bool {
        let debt = self.destinations.entry(dest.to_string()).or_default();
        let since = *debt.failing_since.get_or_insert(now);
        (now - since).to_std().unwrap_or_default() >= max_block
    }

    /// `dest` took a file: its run of failures is over (what it is owed stays owed).
    pub fn succeeded(&mut self, dest: &str) {
        if let Some(debt) = self.destinations.get_mut(dest) {
            debt.failing_since = None;
        }
        self.forget_settled();
    }

    pub fn owe(&mut self, dest: &str, key: &str) {
        let debt = self.destinations.entry(dest.to_string()).or_default();
        if !debt.owed.iter().any(|k| k == key) {
            debt.owed.push(key.to_string());
        }
    }

    fn forget_settled(&mut self) {
        self.destinations
            .retain(|_, d| d.failing_since.is_some() || !d.owed.is_empty());
    }
}

/// Copies what each destination is owed from one that has it, oldest
/// first, stopping at a destination's first failure (it is still down).
pub async fn pay_debts(ledger: &mut Ledger, stores: &[Store]) {
    for dest in stores {
        let Some(debt) = ledger.destinations.get_mut(dest.name()) else {
            continue;
        };
        while let Some(key) = debt.owed.first().cloned() {
            match copy_from_any(dest, stores, &key).await {
                Ok(()) => {
                    debt.owed.remove(0);
                    tracing::info!(dest = %dest.label(), key = %key, "caught up on a WAL file archived while it was down");
                }
                Err(e) => {
                    tracing::warn!(dest = %dest.label(), key = %key, error = %e, "still cannot catch up");
                    break;
                }
            }
        }
    }
    ledger.forget_settled();
}

async fn copy_from_any(dest: &Store, stores: &[Store], key: &str) -> Result<(), StoreError> {
    let mut last = None;
    for source in stores.iter().filter(|s| s.name() != dest.name()) {
        match dest.copy_from(source, key, key).await {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| StoreError::NotFound {
        dest: dest.label().to_string(),
        key: key.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_destination_blocks_only_until_the_bound_from_its_first_failure() {
        let mut l = Ledger::default();
        let bound = Duration::from_secs(600);
        assert!(!l.failed("dr", at(0), bound));
        assert!(!l.failed("dr", at(599), bound));
        assert!(l.failed("dr", at(600), bound));
        l.owe("dr", "wal/00000001/A.lbk");
        l.owe("dr", "wal/00000001/A.lbk");
        assert_eq!(l.destinations["dr"].owed.len(), 1);
        // Back: the run of failures ends, the debt stays until paid.
        l.succeeded("dr");
        assert_eq!(l.destinations["dr"].failing_since, None);
        assert!(
            !l.failed("dr", at(1000), bound),
            "a new run starts the clock again"
        );
        l.destinations.get_mut("dr").unwrap().owed.clear();
        l.succeeded("dr");
        assert!(l.destinations.is_empty(), "{l:?}");
    }

    #[test]
    fn the_ledger_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Ledger::load(dir.path()).unwrap(), Ledger::default());
        let mut l = Ledger::default();
        l.failed("dr", at(0), Duration::ZERO);
        l.owe("dr", "wal/00000001/B.lbk");
        l.save(dir.path()).unwrap();
        assert_eq!(Ledger::load(dir.path()).unwrap(), l);
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let e = Ledger::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("--state-dir") && e.contains(STATE_FILE), "{e}");
    }
}
