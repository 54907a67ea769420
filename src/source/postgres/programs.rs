//! Where PostgreSQL's programs are, and picking the directory of the right
//! major for a server (the rules are pure, in `majors.rs`).
//!
//! By default one directory per major under a root, Debian's layout
//! (`/usr/lib/postgresql/<major>/bin`; `--pg-root` / `LIFEBOAT_PG_ROOT`
//! elsewhere). `--pg-bin` / `LIFEBOAT_PG_BIN` names one directory used
//! whatever the server's major (no selection: its programs' own version
//! checks apply). Without either and without the default root, the programs
//! on PATH are used.

use super::majors::{self, Rule};
use super::{PgConn, PgError};
use std::path::{Path, PathBuf};

/// Debian's (and the PGDG repository's) layout, also the image's.
pub const DEFAULT_ROOT: &str = "/usr/lib/postgresql";

#[derive(Debug, Clone, Default)]
pub enum Programs {
    /// `<root>/<major>/bin`, chosen per server.
    PerMajor(PathBuf),
    /// One directory for every major (`--pg-bin`).
    Fixed(PathBuf),
    /// On PATH.
    #[default]
    Path,
}

impl Programs {
    /// From `--pg-bin` and `--pg-root`: an explicit directory wins, then an
    /// explicit root, then the default root when this machine has it.
    pub fn from_args(bin: Option<PathBuf>, root: Option<PathBuf>) -> Self {
        match (bin, root) {
            (Some(b), _) => Programs::Fixed(b),
            (None, Some(r)) => Programs::PerMajor(r),
            (None, None) if Path::new(DEFAULT_ROOT).is_dir() => {
                Programs::PerMajor(DEFAULT_ROOT.into())
            }
            (None, None) => Programs::Path,
        }
    }

    /// Whether the server's major decides which programs run.
    pub fn selects(&self) -> bool {
        matches!(self, Programs::PerMajor(_))
    }
}

/// What a command needs: a program, the rule its major follows, and why
/// (for the message when none is installed).
pub struct Need<'a> {
    pub tool: &'a str,
    pub rule: Rule,
    /// "for the PostgreSQL 17 server at db:5432", "to read a dump by pg_dump 17.2".
    pub why: String,
}

/// The majors under `root` that have `tool` in their `bin`.
pub fn installed(root: &Path, tool: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut majors: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|m: &u32| root.join(m.to_string()).join("bin").join(tool).is_file())
        .collect();
    majors.sort_unstable();
    majors
}

impl PgConn {
    /// This connection running the programs `need` asks for: under a
    /// per-major root, the directory of the chosen major (or a one-line
    /// error naming the major and the package to install); otherwise
    /// unchanged.
    pub fn with_programs(&self, need: &Need) -> Result<PgConn, PgError> {
        let Programs::PerMajor(root) = &self.programs else {
            return Ok(self.clone());
        };
        let found = installed(root, need.tool);
        let Some(major) = majors::choose(need.rule, &found) else {
            let has = if found.is_empty() {
                "none".to_string()
            } else {
                found
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let want = need.rule.major();
            return Err(PgError::NoPrograms(format!(
                "no {} {} {}: {} has majors {has}; install {} ({}/{want}/bin) or set --pg-root",
                need.tool,
                need.rule,
                need.why,
                root.display(),
                majors::package(need.tool, want),
                root.display(),
            )));
        };
        tracing::debug!(tool = need.tool, major, why = %need.why, "PostgreSQL programs chosen");
        Ok(PgConn {
            bin_dir: Some(root.join(major.to_string()).join("bin")),
            ..self.clone()
        })
    }

    /// Under a per-major root, asks the server on `db` its major and returns
    /// this connection with the programs `tool` needs for it (`rule` of the
    /// major); otherwise unchanged, without connecting.
    pub async fn for_server(
        &self,
        db: &str,
        tool: &str,
        rule: fn(u32) -> Rule,
    ) -> Result<PgConn, PgError> {
        if !self.programs.selects() {
            return Ok(self.clone());
        }
        let mut c = self.connect(db).await?;
        let major = server_major(&mut c, db).await;
        super::close(c).await;
        let major = major?;
        self.with_programs(&Need {
            tool,
            rule: rule(major),
            why: format!("for the PostgreSQL {major} server at {}", self.host_label()),
        })
    }

    /// `tool --version`'s version ("17.2 (Debian 17.2-1)"), for the
    /// manifest; None when it cannot be read (it is a record, not a check).
    pub fn client_version(&self, tool: &str) -> Option<String> {
        let out = std::process::Command::new(self.tool(tool))
            .arg("--version")
            .env_clear()
            .envs(super::child_env())
            .output()
            .ok()?;
        majors::client_version(&String::from_utf8_lossy(&out.stdout))
    }
}

/// The server's major, from `server_version_num` (170002 → 17).
pub async fn server_major(conn: &mut sqlx::PgConnection, db: &str) -> Result<u32, PgError> {
    let num: String = super::setting(conn, db, "server_version_num").await?;
    num.trim()
        .parse::<u32>()
        .map(|n| n / 10000)
        .ok()
        .filter(|m| *m >= 10)
        .ok_or_else(|| PgError::Query {
            db: db.to_string(),
            message: format!(
                "server_version_num {num:?}: PostgreSQL 10 or newer is needed (13 to 17 are supported)"
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(majors: &[(&str, &[&str])]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (major, tools) in majors {
            let bin = root.path().join(major).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for t in *tools {
                std::fs::write(bin.join(t), "").unwrap();
            }
        }
        root
    }

    #[test]
    fn installed_majors_are_those_with_the_program() {
        let root = root_with(&[
            ("13", &["pg_dump"]),
            ("17", &["pg_dump", "postgres"]),
            ("15", &["postgres"]),
            ("notes", &["pg_dump"]),
        ]);
        assert_eq!(installed(root.path(), "pg_dump"), vec![13, 17]);
        assert_eq!(installed(root.path(), "postgres"), vec![15, 17]);
        assert!(installed(&root.path().join("absent"), "pg_dump").is_empty());
    }

    #[test]
    fn the_chosen_majors_directory_runs_and_a_missing_one_is_named() {
        let root = root_with(&[("13", &["pg_dump"]), ("15", &["pg_dump"])]);
        let conn = PgConn {
            programs: Programs::PerMajor(root.path().into()),
            ..Default::default()
        };
        let need = |rule| Need {
            tool: "pg_dump",
            rule,
            why: "for the PostgreSQL 13 server at db:5432".into(),
        };
        let chosen = conn.with_programs(&need(Rule::own_or_newer(14))).unwrap();
        assert_eq!(chosen.tool("pg_dump"), root.path().join("15/bin/pg_dump"));
        let e = conn
            .with_programs(&need(Rule::Exactly(17)))
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(
            e.starts_with("no pg_dump of major 17 for the PostgreSQL 13 server at db:5432: "),
            "{e}"
        );
        assert!(
            e.contains("has majors 13, 15; install postgresql-client-17"),
            "{e}"
        );
    }

    #[test]
    fn a_fixed_directory_is_used_whatever_the_major() {
        let conn = PgConn {
            programs: Programs::Fixed("/opt/pg/bin".into()),
            ..Default::default()
        };
        let need = Need {
            tool: "pg_basebackup",
            rule: Rule::Exactly(17),
            why: String::new(),
        };
        let c = conn.with_programs(&need).unwrap();
        assert_eq!(
            c.tool("pg_basebackup"),
            PathBuf::from("/opt/pg/bin/pg_basebackup")
        );
        assert!(!c.programs.selects());
        assert!(matches!(
            Programs::from_args(None, Some("/x".into())),
            Programs::PerMajor(_)
        ));
        assert!(matches!(
            Programs::from_args(Some("/b".into()), Some("/x".into())),
            Programs::Fixed(_)
        ));
    }
}
