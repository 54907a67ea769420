//! `lifeboat` command lines built once instead of spelled out in every test:
//! `backup(&db, k, &[&dest]).json().ok()`,
//! `restore(&[&dest], k).create(&target).json().ok()`.

use std::path::Path;
use std::process::{Command, Output};

/// A `lifeboat` command line; run it with `ok`, `fails`, `result` or `output`.
#[must_use]
pub struct Cli {
    args: Vec<String>,
}

/// `lifeboat backup -d DB --key-file KEY --to URL…`
pub fn backup(db: &str, key: &str, to: &[&str]) -> Cli {
    Cli::new("backup")
        .opt("-d", db)
        .opt("--key-file", key)
        .each("--to", to)
}

/// `lifeboat restore --from URL… --key-file KEY`
pub fn restore(from: &[&str], key: &str) -> Cli {
    Cli::new("restore")
        .each("--from", from)
        .opt("--key-file", key)
}

/// `lifeboat verify --from URL… --key-file KEY`
pub fn verify(from: &[&str], key: &str) -> Cli {
    Cli::new("verify")
        .each("--from", from)
        .opt("--key-file", key)
}

impl Cli {
    /// `lifeboat COMMAND`, flags to follow.
    pub fn new(command: &str) -> Cli {
        Cli {
            args: vec![command.to_string()],
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Cli {
        self.args.push(arg.into());
        self
    }

    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Cli {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `FLAG VALUE`.
    pub fn opt(self, flag: &str, value: &str) -> Cli {
        self.args([flag, value])
    }

    /// `FLAG VALUE` for each value (`--to`, `--from`).
    pub fn each(self, flag: &str, values: &[&str]) -> Cli {
        values.iter().fold(self, |c, v| c.opt(flag, v))
    }

    pub fn json(self) -> Cli {
        self.arg("--json")
    }

    /// `--backup ID`.
    pub fn id(self, backup_id: &str) -> Cli {
        self.opt("--backup", backup_id)
    }

    /// `--target-db DB`: an existing database.
    pub fn into_db(self, target: &str) -> Cli {
        self.opt("--target-db", target)
    }

    /// `--target-db DB --create`: a new database.
    pub fn create(self, target: &str) -> Cli {
        self.into_db(target).arg("--create")
    }

    /// `--data-dir DIR` (a physical restore), the server run as postgres on `port`.
    pub fn data_dir(self, dir: &Path, port: u16) -> Cli {
        self.opt("--data-dir", dir.to_str().unwrap())
            .opt("--run-as", "postgres")
            .opt("--user", "postgres")
            .opt("--server-port", &port.to_string())
    }

    pub fn cmd(&self) -> Command {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        super::lifeboat_cmd(&args)
    }

    pub fn output(&self) -> Output {
        self.cmd().output().expect("lifeboat runs")
    }

    /// Runs it, asserts success; its JSON report (Null when none).
    #[track_caller]
    pub fn ok(&self) -> serde_json::Value {
        super::ok(&self.output())
    }

    /// Runs it, asserts failure; its stderr.
    #[track_caller]
    pub fn fails(&self) -> String {
        super::fails(&self.output())
    }

    /// Ok(JSON report) or Err(stderr).
    pub fn result(&self) -> Result<serde_json::Value, String> {
        let o = self.output();
        if o.status.success() {
            Ok(serde_json::from_slice(&o.stdout).expect("json report"))
        } else {
            Err(super::stderr(&o))
        }
    }
}
