//! A child process as a pipeline stage (pg_dump, pg_dumpall, pg_restore).
//! Its stderr is collected on a thread so that a failure reports the tool's
//! own words; a non-zero exit fails the stage even if its stdout looked fine.

use std::io::Read;
use std::process::{Child, Command};
use std::thread::JoinHandle;

/// stderr kept for messages: the tail is where tools say what went wrong.
const STDERR_KEEP: usize = 16 * 1024;

pub struct Stage {
    pub tool: &'static str,
    pub child: Child,
    killed: bool,
    stderr: Option<JoinHandle<String>>,
}

#[derive(Debug)]
pub struct Failure {
    pub tool: &'static str,
    /// We killed it (the stage was abandoned), so its exit says nothing.
    pub killed: bool,
    pub status: String,
    pub stderr: String,
}

impl Stage {
    pub fn spawn(tool: &'static str, mut cmd: Command) -> std::io::Result<Self> {
        let mut child = cmd.spawn()?;
        let stderr = child.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = e.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > 2 * STDERR_KEEP {
                        buf.drain(..buf.len() - STDERR_KEEP);
                    }
                }
                let text = withhold_row_values(String::from_utf8_lossy(&buf).trim());
                text.chars()
                    .rev()
                    .take(STDERR_KEEP)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect()
            })
        });
        Ok(Self {
            tool,
            child,
            killed: false,
            stderr,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the exit; Ok with its stderr (warnings) on success.
    pub fn wait(mut self) -> Result<String, Failure> {
        let status = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        match status {
            Ok(s) if s.success() => Ok(stderr),
            Ok(s) => Err(Failure {
                tool: self.tool,
                killed: self.killed,
                status: s.to_string(),
                stderr,
            }),
            Err(e) => Err(Failure {
                tool: self.tool,
                killed: self.killed,
                status: e.to_string(),
                stderr,
            }),
        }
    }

    /// Sends SIGKILL without reaping; `wait` reaps and reports `killed`.
    pub fn kill_now(&mut self) {
        self.killed = true;
        let _ = self.child.kill();
    }

    /// Stops the child now (the stage is abandoned) and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
    }
}

/// PostgreSQL's error details quote the rows involved (`DETAIL:  Key
/// (email)=(alice@example.com) already exists.`, `CONTEXT:  COPY users,
/// line 2: "…"`). A tool's words end up in run status, events and logs,
/// where table contents must not: those lines keep their label only.
pub fn withhold_row_values(text: &str) -> String {
    text.lines()
        .map(|line| {
            for label in ["DETAIL:", "CONTEXT:"] {
                if let Some(at) = line.find(label) {
                    return format!("{}{label} (withheld: it may quote table rows)", &line[..at]);
                }
            }
            line.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `Stage::wait` off the async runtime's threads (pg_restore can run for
/// minutes after its input ends, building indexes).
pub async fn wait(stage: Stage) -> Result<String, Failure> {
    let tool = stage.tool;
    tokio::task::spawn_blocking(move || stage.wait())
        .await
        .unwrap_or_else(|e| {
            Err(Failure {
                tool,
                killed: false,
                status: e.to_string(),
                stderr: String::new(),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_values_in_postgres_errors_are_withheld() {
        let stderr = "pg_restore: error: could not execute query: ERROR:  duplicate key value violates unique constraint \"users_email_key\"\n\
                      DETAIL:  Key (email)=(alice@example.com) already exists.\n\
                      CONTEXT:  COPY users, line 2: \"2\talice@example.com\"\n\
                      Command was: COPY public.users (id, email) FROM stdin;";
        let out = withhold_row_values(stderr);
        assert!(!out.contains("alice"), "{out}");
        assert!(
            out.contains("users_email_key") && out.contains("DETAIL: (withheld"),
            "{out}"
        );
        assert!(out.contains("Command was: COPY public.users"), "{out}");
    }
}
