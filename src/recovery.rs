//! Point-in-time recovery, the pure part: LSNs and WAL file names, which base
//! backup can reach a target, the recovery settings PostgreSQL reads, and what
//! pg_basebackup and the server's log say. No IO here.

use crate::catalog::{Manifest, PhysicalInfo};
use crate::location::NamedLocation;
use chrono::{DateTime, SecondsFormat, Utc};
use std::fmt;
use std::path::Path;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecoveryError {
    #[error("{0:?} is not an LSN (like 0/2000028)")]
    BadLsn(String),
    #[error("the destination holds no physical base backup (take one with `lifeboat backup --method physical`)")]
    NoBaseBackup,
    #[error("{flag} {target} is before the end of the first physical base backup ({first_id}, consistent at {first}): nothing can be restored to that point")]
    BeforeFirstBackup {
        flag: &'static str,
        target: String,
        first_id: String,
        first: String,
    },
    #[error("pg_basebackup's tar does not start with a readable {0}")]
    BaseBackupOutput(&'static str),
}

/// A WAL position: `hi/lo` in hex, as PostgreSQL prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl std::str::FromStr for Lsn {
    type Err = RecoveryError;
    fn from_str(s: &str) -> Result<Self, RecoveryError> {
        let bad = || RecoveryError::BadLsn(s.to_string());
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let part = |p: &str| {
            (!p.is_empty() && p.len() <= 8)
                .then(|| u32::from_str_radix(p, 16).ok())
                .flatten()
        };
        let (hi, lo) = (part(hi).ok_or_else(bad)?, part(lo).ok_or_else(bad)?);
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// The name of the WAL segment holding `lsn` on `timeline`
/// (PostgreSQL's XLogFileName).
pub fn segment_name(timeline: u32, lsn: Lsn, segment_size: u64) -> String {
    let seg = lsn.0 / segment_size;
    let per_id = 0x1_0000_0000 / segment_size;
    format!("{timeline:08X}{:08X}{:08X}", seg / per_id, seg % per_id)
}

/// Where a restore stops replaying WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// The end of the archived WAL.
    Latest,
    Time(DateTime<Utc>),
    Lsn(Lsn),
}

impl fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryTarget::Latest => f.write_str("latest"),
            RecoveryTarget::Time(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            RecoveryTarget::Lsn(l) => write!(f, "{l}"),
        }
    }
}

fn physical(m: &Manifest) -> Option<&PhysicalInfo> {
    m.physical.as_ref()
}

fn stop_lsn(p: &PhysicalInfo) -> Lsn {
    p.stop_lsn.parse().unwrap_or(Lsn(u64::MAX))
}

/// The newest physical base backup that can reach `target`: it must be
/// consistent (stopped) at or before the target. Logical backups are ignored.
pub fn choose_base<'m>(
    manifests: &'m [Manifest],
    target: &RecoveryTarget,
) -> Result<&'m Manifest, RecoveryError> {
    let bases: Vec<(&Manifest, &PhysicalInfo)> = manifests
        .iter()
        .filter_map(|m| physical(m).map(|p| (m, p)))
        .collect();
    let reaches = |p: &PhysicalInfo| match target {
        RecoveryTarget::Latest => true,
        RecoveryTarget::Time(t) => p.stopped_at <= *t,
        RecoveryTarget::Lsn(l) => stop_lsn(p) <= *l,
    };
    let key = |p: &PhysicalInfo| (p.stopped_at, stop_lsn(p));
    if let Some((m, _)) = bases
        .iter()
        .filter(|(_, p)| reaches(p))
        .max_by(|a, b| (key(a.1), &a.0.backup_id).cmp(&(key(b.1), &b.0.backup_id)))
    {
        return Ok(m);
    }
    let (first_m, first) = bases
        .iter()
        .min_by_key(|(m, p)| (key(p), &m.backup_id))
        .ok_or(RecoveryError::NoBaseBackup)?;
    let (flag, first_at) = match target {
        RecoveryTarget::Lsn(_) => ("--target-lsn", first.stop_lsn.clone()),
        _ => (
            "--target-time",
            first
                .stopped_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        ),
    };
    Err(RecoveryError::BeforeFirstBackup {
        flag,
        target: target.to_string(),
        first_id: first_m.backup_id.clone(),
        first: first_at,
    })
}

/// A word for a POSIX shell: single-quoted.
fn shell_word(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A string value in postgresql.conf: single-quoted, quotes doubled.
fn conf_value(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `restore_command`: this binary's `wal-fetch` for every source, with the
/// key file's path (never a secret). PostgreSQL substitutes `%f` and `%p` and
/// runs the result through the shell, so every other `%` is doubled.
pub fn restore_command(lifeboat: &Path, from: &[NamedLocation], key_file: &Path) -> String {
    let word = |s: &str| shell_word(&s.replace('%', "%%"));
    let mut cmd = vec![
        word(&lifeboat.to_string_lossy()),
        "wal-fetch".into(),
        "%f".into(),
        "%p".into(),
    ];
    for url in from {
        cmd.push("--from".into());
        cmd.push(word(&url.arg()));
    }
    cmd.push("--key-file".into());
    cmd.push(word(&key_file.to_string_lossy()));
    cmd.join(" ")
}

/// postgresql.auto.conf without recovery settings an earlier restore of the
/// backed-up server left there. They must go rather than be overridden: an
/// empty recovery target after a set one is "multiple recovery targets".
pub fn without_recovery_settings(auto_conf: &str) -> String {
    auto_conf
        .lines()
        .filter(|l| {
            let key = l
                .trim_start()
                .split(['=', ' ', '\t'])
                .next()
                .unwrap_or_default();
            !(key.starts_with("recovery_target")
                || key == "restore_command"
                || l.starts_with("# lifeboat restore"))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The recovery settings appended to postgresql.auto.conf: only the target
/// chosen (none for the latest point).
pub fn recovery_settings(
    restore_command: &str,
    target: &RecoveryTarget,
    backup_id: &str,
) -> String {
    let mut s = format!("# lifeboat restore of base backup {backup_id} to {target}\n");
    let mut set =
        |name: &str, value: &str| s.push_str(&format!("{name} = {}\n", conf_value(value)));
    set("restore_command", restore_command);
    match target {
        RecoveryTarget::Latest => {}
        // A numeric offset: PostgreSQL reads this setting before it loads
        // time zone abbreviations, so it rejects "Z".
        RecoveryTarget::Time(t) => set(
            "recovery_target_time",
            &t.format("%Y-%m-%d %H:%M:%S%.f+00").to_string(),
        ),
        RecoveryTarget::Lsn(l) => set("recovery_target_lsn", &l.to_string()),
    }
    set("recovery_target_inclusive", "on");
    set("recovery_target_timeline", "latest");
    set("recovery_target_action", "promote");
    s
}

/// How much of the start of pg_basebackup's tar holds `backup_label`: the
/// server sends it first (a 512-byte header, then well under 1 KiB).
pub const LABEL_HEAD: usize = 4096;

/// (timeline, start LSN, start segment) from `backup_label`, the first member
/// of the base backup's tar (`head` is the stream's first bytes).
pub fn parse_backup_label(head: &[u8]) -> Result<(u32, Lsn, String), RecoveryError> {
    let missing = RecoveryError::BaseBackupOutput("backup_label");
    if head.len() < 512 {
        return Err(missing);
    }
    let name_end = head[..100].iter().position(|&b| b == 0).unwrap_or(100);
    if &head[..name_end] != b"backup_label" {
        return Err(missing);
    }
    let size = std::str::from_utf8(&head[124..136])
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok())
        .ok_or(RecoveryError::BaseBackupOutput("backup_label size"))? as usize;
    let body = head
        .get(512..512 + size)
        .ok_or(RecoveryError::BaseBackupOutput("whole backup_label"))?;
    let text = String::from_utf8_lossy(body);
    let mut start = None;
    let mut timeline = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("START WAL LOCATION: ") {
            // "0/2000028 (file 000000010000000000000002)"
            let lsn = rest
                .split_whitespace()
                .next()
                .and_then(|l| l.parse::<Lsn>().ok());
            let file = rest
                .split("(file ")
                .nth(1)
                .and_then(|f| f.strip_suffix(')'))
                .map(str::to_string);
            start = lsn.zip(file);
        } else if let Some(rest) = line.strip_prefix("START TIMELINE: ") {
            timeline = rest.trim().parse::<u32>().ok();
        }
    }
    let (lsn, file) = start.ok_or(RecoveryError::BaseBackupOutput("START WAL LOCATION"))?;
    let timeline = timeline.ok_or(RecoveryError::BaseBackupOutput("START TIMELINE"))?;
    Ok((timeline, lsn, file))
}

/// True when the server's log says recovery reached the end of the WAL
/// before its target (PostgreSQL 13+ stops with a FATAL then).
pub fn ended_before_target(log: &str) -> bool {
    log.lines().any(|l| {
        l.contains("FATAL:")
            && l.contains("recovery ended before configured recovery target was reached")
    })
}

/// Why recovery stopped, from the server's log: the WAL file that could not
/// be restored (restore_command failed fatally), and the FATAL/PANIC lines.
pub fn recovery_failure(log: &str) -> (Option<String>, Vec<String>) {
    let mut segment = None;
    let mut fatal = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("could not restore file \"").nth(1) {
            if let Some((name, _)) = rest.split_once('"') {
                segment = Some(name.to_string());
            }
        }
        if line.contains("FATAL:") || line.contains("PANIC:") {
            fatal.push(line.trim().to_string());
        }
    }
    (segment, fatal)
}

/// uid and gid of `user` in an /etc/passwd text.
pub fn passwd_ids(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == user)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Manifest, PgMethod, SourceInfo};
    use crate::pipeline::header::Compression;
    use chrono::TimeZone;

    fn t(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 2, min, 0).unwrap()
    }

    fn base(id: &str, stopped: u32, stop_lsn: &str) -> Manifest {
        Manifest {
            format: 1,
            backup_id: id.into(),
            policy: "p".into(),
            namespace: None,
            tier: "manual".into(),
            source: SourceInfo::sample(PgMethod::Physical, &[]),
            started_at: t(stopped - 1),
            completed_at: t(stopped),
            compression: Compression::Zstd,
            key_id: String::new(),
            objects: vec![],
            mac_key: String::new(),
            physical: Some(PhysicalInfo {
                timeline: 1,
                start_lsn: "0/1000028".into(),
                stop_lsn: stop_lsn.into(),
                start_wal: "000000010000000000000001".into(),
                started_at: t(stopped - 1),
                stopped_at: t(stopped),
            }),
        }
    }

    #[test]
    fn lsns_parse_print_and_order() {
        let l: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(l.0, 0x16_B374_D848);
        assert_eq!(l.to_string(), "16/B374D848");
        assert!("0/2000028".parse::<Lsn>().unwrap() < "1/0".parse().unwrap());
        for bad in ["", "0", "/1", "0/", "x/1", "0/123456789", "1/2/3"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
    }

    #[test]
    fn segment_names_follow_postgres() {
        let seg = 16 << 20;
        assert_eq!(
            segment_name(1, "0/2000028".parse().unwrap(), seg),
            "000000010000000000000002"
        );
        assert_eq!(
            segment_name(2, "1/FF000000".parse().unwrap(), seg),
            "0000000200000001000000FF"
        );
        assert_eq!(
            segment_name(1, "0/4000000".parse().unwrap(), 64 << 20),
            "000000010000000000000001"
        );
    }

    #[test]
    fn the_newest_base_that_reaches_the_target_is_chosen() {
        let mut logical = base("20261126T020000.000Z-000000", 50, "0/9000000");
        logical.physical = None;
        let ms = vec![
            base("20261126T020900.000Z-aaaaaa", 10, "0/3000100"),
            base("20261126T021900.000Z-bbbbbb", 20, "0/6000100"),
            logical,
        ];
        let pick = |target| choose_base(&ms, &target).map(|m| m.backup_id.clone());
        assert_eq!(pick(RecoveryTarget::Latest).unwrap(), ms[1].backup_id);
        assert_eq!(pick(RecoveryTarget::Time(t(15))).unwrap(), ms[0].backup_id);
        assert_eq!(
            pick(RecoveryTarget::Time(t(20))).unwrap(),
            ms[1].backup_id,
            "stopped exactly at the target"
        );
        assert_eq!(
            pick(RecoveryTarget::Lsn("0/6000100".parse().unwrap())).unwrap(),
            ms[1].backup_id
        );
        assert_eq!(
            pick(RecoveryTarget::Lsn("0/60000FF".parse().unwrap())).unwrap(),
            ms[0].backup_id
        );
        let e = pick(RecoveryTarget::Time(t(9))).unwrap_err();
        assert!(
            e.to_string().contains("--target-time 2026-11-26T02:09:00Z")
                && e.to_string().contains(&ms[0].backup_id),
            "{e}"
        );
        let e = pick(RecoveryTarget::Lsn("0/3000000".parse().unwrap())).unwrap_err();
        assert!(e.to_string().contains("--target-lsn 0/3000000"), "{e}");
        assert_eq!(
            choose_base(&ms[2..], &RecoveryTarget::Latest).unwrap_err(),
            RecoveryError::NoBaseBackup
        );
    }

    #[test]
    fn restore_command_quotes_for_the_shell_and_the_conf_file() {
        let cmd = restore_command(
            Path::new("/usr/local/bin/lifeboat"),
            &[
                "s3://b/p?region=eu-west-1&endpoint=http://h:9000"
                    .parse()
                    .unwrap(),
                "file:///it's/100%".parse().unwrap(),
            ],
            Path::new("/keys/k"),
        );
        assert_eq!(
            cmd,
            "'/usr/local/bin/lifeboat' wal-fetch %f %p --from 's3://b/p?region=eu-west-1&endpoint=http://h:9000' \
             --from 'file:///it'\\''s/100%%' --key-file '/keys/k'"
        );
        let conf = recovery_settings(
            &cmd,
            &RecoveryTarget::Time(t(5)),
            "20261126T020000.000Z-abcdef",
        );
        assert!(
            conf.contains("recovery_target_time = '2026-11-26 02:05:00+00'\n"),
            "{conf}"
        );
        assert!(!conf.contains("recovery_target_lsn ="), "{conf}");
        assert!(conf.contains("'file:///it''\\''''s/100%%'"), "{conf}");
        assert!(conf.contains("recovery_target_action = 'promote'\n"));
        let conf = recovery_settings(&cmd, &RecoveryTarget::Lsn(Lsn(0x3000028)), "x");
        assert!(
            conf.contains("recovery_target_lsn = '0/3000028'\n"),
            "{conf}"
        );
        assert!(!conf.contains("recovery_target_time ="), "{conf}");
        let stale = format!("# Do not edit\nwork_mem = '8MB'\n{conf}");
        assert_eq!(
            without_recovery_settings(&stale),
            "# Do not edit\nwork_mem = '8MB'\n"
        );
    }

    #[test]
    fn backup_label_and_server_log_are_read() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000030000000000000002)\n\
                     CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
                     START TIME: 2026-11-26 02:00:00 UTC\nLABEL: lifeboat x\nSTART TIMELINE: 3\n";
        let mut tar = vec![0u8; 512];
        tar[..12].copy_from_slice(b"backup_label");
        tar[124..136].copy_from_slice(format!("{:011o}\0", label.len()).as_bytes());
        tar.extend_from_slice(label.as_bytes());
        tar.resize(4096, 0);
        assert_eq!(
            parse_backup_label(&tar).unwrap(),
            (3, Lsn(0x2000028), "000000030000000000000002".to_string())
        );
        let mut other = tar.clone();
        other[..12].copy_from_slice(b"global/pg_co");
        assert!(parse_backup_label(&other).is_err());
        assert!(parse_backup_label(&tar[..600]).is_err(), "cut short");
        let log = "LOG:  restored log file \"000000010000000000000003\" from archive\n\
                   error: object wal/00000001/000000010000000000000004.lbk: authentication failed\n\
                   2026-11-26 02:00:00 UTC [9] FATAL:  could not restore file \"000000010000000000000004\" from archive: child process exited with exit code 126\n\
                   LOG:  startup process (PID 9) exited with exit code 1\n";
        let (seg, fatal) = recovery_failure(log);
        assert_eq!(seg.as_deref(), Some("000000010000000000000004"));
        assert_eq!(fatal.len(), 1);
        assert_eq!(recovery_failure("LOG: fine").0, None);
    }

    #[test]
    fn users_are_found_in_passwd() {
        let p =
            "root:x:0:0:root:/root:/bin/bash\npostgres:x:105:110::/var/lib/postgresql:/bin/bash\n";
        assert_eq!(passwd_ids(p, "postgres"), Some((105, 110)));
        assert_eq!(passwd_ids(p, "post"), None);
    }
}
