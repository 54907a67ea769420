//! Which major of PostgreSQL's programs serves which server (pure).
//!
//! pg_dump reads servers of its own major and older ones; pg_restore reads
//! archives of its own major and older ones, but a newer pg_restore does not
//! reliably load into an older server (pg_restore 17 sends
//! `SET transaction_timeout`, which 16 and older refuse). So a logical backup
//! runs the server's own pg_dump when it is installed, else the newest one
//! above it, and a restore runs the target server's own pg_restore when it
//! can read the dump, else the newest that can. Physical backups, WAL
//! streaming and the server a physical restore runs must be of the
//! backed-up server's own major: the data directory's format is the
//! major's. `programs.rs` does the IO (what is installed, `--version`).

use std::fmt;

/// What a program must be to serve a server or read an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `major` when installed and at least `at_least`; else the newest
    /// installed at or above `at_least`.
    Prefer { major: u32, at_least: u32 },
    /// Exactly this major.
    Exactly(u32),
}

impl Rule {
    /// The server's own major, or the newest above it (pg_dump).
    pub fn own_or_newer(major: u32) -> Rule {
        Rule::Prefer {
            major,
            at_least: major,
        }
    }

    /// The lowest major that fits: what to install when none does.
    pub fn major(self) -> u32 {
        match self {
            Rule::Prefer { major, at_least } => major.max(at_least),
            Rule::Exactly(m) => m,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Prefer { at_least, .. } => write!(f, "of major {at_least} or newer"),
            Rule::Exactly(m) => write!(f, "of major {m}"),
        }
    }
}

/// The major to run among those installed, or None when none fits.
pub fn choose(rule: Rule, installed: &[u32]) -> Option<u32> {
    match rule {
        Rule::Exactly(n) => installed.iter().find(|m| **m == n).copied(),
        Rule::Prefer { major, at_least } => {
            if major >= at_least && installed.contains(&major) {
                return Some(major);
            }
            installed.iter().filter(|m| **m >= at_least).max().copied()
        }
    }
}

/// The major of a version as PostgreSQL prints it (`server_version`,
/// `--version`): "17.2 (Debian 17.2-1)" → 17, "18beta1" → 18. None for
/// versions before 10 (two-part majors such as 9.6, which lifeboat does not
/// support) and for anything that is not a version.
pub fn major_of(version: &str) -> Option<u32> {
    let digits: String = version
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|m| *m >= 10)
}

/// The version in a program's `--version` line:
/// "pg_dump (PostgreSQL) 17.2 (Debian 17.2-1.pgdg120+1)" → "17.2 (Debian 17.2-1.pgdg120+1)".
pub fn client_version(line: &str) -> Option<String> {
    let (_, v) = line.trim().split_once("(PostgreSQL) ")?;
    major_of(v).map(|_| v.trim().to_string())
}

/// Whether a dump of a `backup` major server can be restored into a
/// `target` major server: into the same or a newer major (pg_restore's
/// supported direction); into an older one, refused with the reason.
pub fn restore_direction(backup: u32, target: u32) -> Result<(), String> {
    if target >= backup {
        return Ok(());
    }
    Err(format!(
        "the backup is of a PostgreSQL {backup} server and the target runs {target}: pg_restore \
         does not support restoring into an older major (the dump may use {backup}'s syntax and \
         catalogs); restore into PostgreSQL {backup} or newer"
    ))
}

/// The Debian/PGDG package that carries a program of `major`.
pub fn package(tool: &str, major: u32) -> String {
    match tool {
        "postgres" | "initdb" | "pg_ctl" => format!("postgresql-{major}"),
        _ => format!("postgresql-client-{major}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_takes_the_servers_own_major_else_the_newest_above_it() {
        let installed = [13, 17, 15];
        assert_eq!(choose(Rule::own_or_newer(13), &installed), Some(13));
        assert_eq!(choose(Rule::own_or_newer(14), &installed), Some(17));
        assert_eq!(choose(Rule::own_or_newer(16), &installed), Some(17));
        assert_eq!(choose(Rule::own_or_newer(17), &installed), Some(17));
        assert_eq!(choose(Rule::own_or_newer(18), &installed), None);
        assert_eq!(choose(Rule::own_or_newer(13), &[]), None);
    }

    #[test]
    fn a_restore_takes_the_targets_major_when_it_reads_the_dump() {
        let installed = [13, 15, 17];
        let restore = |target, dump| {
            choose(
                Rule::Prefer {
                    major: target,
                    at_least: dump,
                },
                &installed,
            )
        };
        // A dump of 13 into 13, 15 or 17: the target's own pg_restore.
        assert_eq!(restore(13, 13), Some(13));
        assert_eq!(restore(15, 13), Some(15));
        assert_eq!(restore(17, 13), Some(17));
        // Into 16 (not installed): the newest that reads it.
        assert_eq!(restore(16, 13), Some(17));
        // A dump by pg_dump 17 can only be read by pg_restore 17 or newer.
        assert_eq!(restore(15, 17), Some(17));
        assert_eq!(restore(15, 18), None);
        assert_eq!(
            Rule::Prefer {
                major: 15,
                at_least: 17
            }
            .major(),
            17
        );
    }

    #[test]
    fn physical_work_takes_the_servers_own_major_only() {
        assert_eq!(choose(Rule::Exactly(15), &[13, 15, 17]), Some(15));
        assert_eq!(choose(Rule::Exactly(16), &[13, 15, 17]), None);
    }

    #[test]
    fn majors_are_read_from_every_way_postgresql_prints_a_version() {
        assert_eq!(major_of("17.2 (Debian 17.2-1.pgdg120+1)"), Some(17));
        assert_eq!(major_of("15.18"), Some(15));
        assert_eq!(major_of("13.16"), Some(13));
        assert_eq!(major_of("18beta1"), Some(18));
        assert_eq!(major_of("9.6.24"), None);
        assert_eq!(major_of("devel"), None);
        assert_eq!(major_of(""), None);
    }

    #[test]
    fn a_programs_version_line_gives_its_version() {
        assert_eq!(
            client_version("pg_dump (PostgreSQL) 17.12 (Debian 17.12-0+deb13u1)\n").as_deref(),
            Some("17.12 (Debian 17.12-0+deb13u1)")
        );
        assert_eq!(
            client_version("pg_basebackup (PostgreSQL) 13.16").as_deref(),
            Some("13.16")
        );
        assert_eq!(client_version("sh: pg_dump: not found"), None);
    }

    #[test]
    fn a_restore_goes_into_the_same_or_a_newer_major_only() {
        assert!(restore_direction(13, 13).is_ok());
        assert!(restore_direction(13, 17).is_ok());
        let e = restore_direction(17, 15).unwrap_err();
        assert!(
            e.contains("PostgreSQL 17 server") && e.contains("runs 15"),
            "{e}"
        );
        assert!(e.contains("restore into PostgreSQL 17 or newer"), "{e}");
    }

    #[test]
    fn the_package_to_install_is_named_for_the_program() {
        assert_eq!(package("postgres", 17), "postgresql-17");
        assert_eq!(package("pg_basebackup", 13), "postgresql-client-13");
    }

    #[test]
    fn rules_read_in_messages() {
        assert_eq!(Rule::own_or_newer(17).to_string(), "of major 17 or newer");
        assert_eq!(Rule::Exactly(13).to_string(), "of major 13");
    }
}
