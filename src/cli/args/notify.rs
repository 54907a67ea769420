//! Arguments of `lifeboat notify`.

use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct NotifyArgs {
    /// The notification, as JSON (`wire::Notification`): event, namespace,
    /// policy, subject, summary, dedupKey, at. Nothing in it is secret.
    #[arg(
        long,
        required_unless_present = "event_file",
        conflicts_with = "event_file"
    )]
    pub event: Option<String>,
    /// The notification in a file instead.
    #[arg(long)]
    pub event_file: Option<PathBuf>,
    /// A target, as JSON: `{"name": …, "kind": {"type": "slack", "dir": …}}`;
    /// its secrets are files in `dir` (a mounted Secret). Repeatable.
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,
    /// Seconds one attempt may take.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Attempts per target (429, 5xx, timeouts and refused connections are retried).
    #[arg(long, default_value_t = 5)]
    pub attempts: u32,
    /// Milliseconds before the first retry, doubled after each (a longer Retry-After wins).
    #[arg(long, default_value_t = 1000)]
    pub backoff_ms: u64,
    /// Where to leave the JSON report (the Job's termination message).
    #[arg(long)]
    pub report_file: Option<PathBuf>,
}
