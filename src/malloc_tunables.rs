//! glibc's malloc keeps freed large buffers (S3 part buffers of 5 MiB, the
//! chunker's 8 MiB, pack batches) resident: its mmap threshold starts at
//! 128 KiB but rises to the size of each mmapped block freed, after which
//! such buffers come from the heap and their pages stay with the process.
//! Measured on a first backup of 100,000 files to S3 (debug build): 84 MiB
//! peak RSS as it is, 70 MiB with the threshold fixed at 1 MiB, same time.
//! The threshold can be fixed only before the first allocation — through
//! `GLIBC_TUNABLES` at exec (mallopt would need unsafe code, which this
//! crate forbids) — so the binary re-executes itself once with it set.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

const VAR: &str = "GLIBC_TUNABLES";
const TUNABLE: &str = "glibc.malloc.mmap_threshold";
/// Blocks this large or larger are mmapped, and unmapped when freed.
pub const MMAP_THRESHOLD: usize = 1 << 20;

/// The `GLIBC_TUNABLES` to run with, given the current one; `None` when it
/// already sets the threshold (the user's choice, or after the re-exec).
pub fn tunables(current: Option<&str>) -> Option<String> {
    let ours = format!("{TUNABLE}={MMAP_THRESHOLD}");
    match current {
        Some(c) if c.split(':').any(|t| t.starts_with(&format!("{TUNABLE}="))) => None,
        Some(c) if !c.is_empty() => Some(format!("{c}:{ours}")),
        _ => Some(ours),
    }
}

/// Re-executes this program (same pid, arguments and environment) with the
/// threshold fixed, on glibc; returns when that is not needed or not
/// possible, and the program then runs as it is, only using more memory.
pub fn fix_mmap_threshold() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let current = match std::env::var(VAR) {
        Ok(c) => Some(c),
        Err(std::env::VarError::NotPresent) => None,
        // Not text: not ours to rewrite.
        Err(std::env::VarError::NotUnicode(_)) => return,
    };
    let Some(value) = tunables(current.as_deref()) else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("lifeboat"));
    // exec only returns on failure (a binary replaced during an upgrade).
    let _ = std::process::Command::new(exe)
        .arg0(arg0)
        .args(args)
        .env(VAR, value)
        .exec();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_added_once_and_a_users_choice_is_kept() {
        assert_eq!(
            tunables(None).as_deref(),
            Some("glibc.malloc.mmap_threshold=1048576")
        );
        assert_eq!(
            tunables(Some("glibc.malloc.arena_max=2")).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=1048576")
        );
        assert_eq!(tunables(Some("glibc.malloc.mmap_threshold=65536")), None);
        assert_eq!(
            tunables(Some("x=1:glibc.malloc.mmap_threshold=1048576")),
            None
        );
    }
}
