//! `lifeboat notify`: reads the notification and its targets, sends to
//! every target, reports per target, and exits 1 when a target was not
//! reached (after trying them all). In a notify Job that makes the Job
//! Failed, visible to `kubectl get jobs` and to alerts on failed Jobs; the
//! Job never starts a second pod, so nothing is sent twice.

use std::process::ExitCode;
use std::time::Duration;

use super::args::NotifyArgs;
use super::print::{print_json, write_report};
use crate::commands;
use crate::notify::{retry::RetryPolicy, send_all, SendOptions};
use crate::wire::{Notification, NotifyTarget};

pub async fn notify(a: NotifyArgs) -> Result<ExitCode, commands::Error> {
    let text = match (&a.event, &a.event_file) {
        (Some(t), _) => t.clone(),
        (None, Some(p)) => std::fs::read_to_string(p)
            .map_err(|e| commands::Error::Usage(format!("--event-file {}: {e}", p.display())))?,
        (None, None) => return Err(commands::Error::Usage("--event is required".into())),
    };
    let n: Notification =
        serde_json::from_str(&text).map_err(|e| commands::Error::Usage(format!("--event: {e}")))?;
    let targets = a
        .targets
        .iter()
        .map(|t| serde_json::from_str::<NotifyTarget>(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| commands::Error::Usage(format!("--target: {e}")))?;
    let opts = SendOptions {
        timeout: Duration::from_secs(a.timeout.max(1)),
        retry: RetryPolicy {
            attempts: a.attempts.max(1),
            base: Duration::from_millis(a.backoff_ms),
            ..RetryPolicy::default()
        },
    };
    let report = send_all(&n, &targets, opts).await;
    write_report(a.report_file.as_deref(), &report)?;
    print_json(&report);
    Ok(if !report.failed.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
