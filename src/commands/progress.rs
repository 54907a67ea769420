//! Progress for long work: a live line on a terminal, a log line every 15 s
//! otherwise (Job logs), and the process's peak memory for reports.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Progress {
    bytes: Arc<AtomicU64>,
    bar: Option<ProgressBar>,
    stop: Arc<tokio::sync::Notify>,
}

impl Progress {
    pub fn start(label: String) -> Self {
        let bytes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(tokio::sync::Notify::new());
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} {bytes} read ({bytes_per_sec}) {elapsed}",
                )
                .expect("template"),
            );
            b.set_message(label.clone());
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        if bar.is_none() {
            let (bytes, stop) = (bytes.clone(), stop.clone());
            let started = Instant::now();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.notified() => break,
                        _ = tokio::time::sleep(Duration::from_secs(15)) => {
                            let n = bytes.load(Ordering::Relaxed);
                            let secs = started.elapsed().as_secs_f64();
                            tracing::info!(what = %label, mib = n >> 20, mib_per_s = format!("{:.1}", n as f64 / 1048576.0 / secs), "in progress");
                        }
                    }
                }
            });
        }
        Self { bytes, bar, stop }
    }

    pub fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub fn done(&self) {
        self.stop.notify_waiters();
        self.stop.notify_one();
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Peak resident memory of this process (VmHWM), in bytes.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

pub fn mib_per_s(bytes: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    (bytes as f64 / 1048576.0 / secs * 10.0).round() / 10.0
}
