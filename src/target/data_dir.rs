//! A PostgreSQL data directory as a restore target: an empty or absent
//! directory (0700), filled by tar from the base backup, given to the
//! server's user, and removed again if the restore fails: a half-restored
//! cluster is not a restore.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Loader, TargetError};
use crate::recovery;

pub struct DataDir {
    pub path: PathBuf,
    /// uid and gid of the server's user (`--run-as`), who gets the tree.
    pub owner: Option<(u32, u32)>,
    /// This restore created the directory (so a failure removes it).
    created: bool,
}

impl DataDir {
    /// Creates the directory (0700) or checks that it is empty; resolves
    /// the user the server will run as.
    pub fn prepare(path: &Path, run_as: Option<&str>) -> Result<Self, TargetError> {
        let owner = run_as.map(lookup_user).transpose()?;
        let refused =
            |what: String| TargetError::Refused(format!("--data-dir {}: {what}", path.display()));
        let private = || {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| refused(e.to_string()))
        };
        let created = match std::fs::read_dir(path) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(refused(
                        "is not empty; a restore unpacks only into an empty or absent directory"
                            .into(),
                    ));
                }
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(path).map_err(|e| refused(e.to_string()))?;
                true
            }
            Err(e) => return Err(refused(e.to_string())),
        };
        private()?;
        Ok(Self {
            path: path.to_path_buf(),
            owner,
            created,
        })
    }

    /// Starts tar unpacking into the directory; the caller feeds it the
    /// decoded base backup.
    pub fn loader(&self, backup_id: &str) -> Result<Loader, TargetError> {
        let mut cmd = Command::new("tar");
        cmd.env_clear()
            .envs(crate::source::postgres::child_env())
            .args(["--extract", "--file=-", "--no-same-owner", "--directory"])
            .arg(&self.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Loader::spawn("tar", cmd, format!("base backup {backup_id}"))
    }

    /// Removes what a failed attempt unpacked, before the next destination.
    pub fn empty(&self) -> Result<(), TargetError> {
        empty_dir(&self.path).map_err(TargetError::io(self.path.display().to_string()))
    }

    /// Removes what the restore unpacked, and the directory if it made it.
    pub fn discard(&self) {
        let r = if self.created {
            std::fs::remove_dir_all(&self.path)
        } else {
            empty_dir(&self.path)
        };
        if let Err(e) = r {
            tracing::warn!(dir = %self.path.display(), error = %e, "could not remove the unpacked files");
        }
    }

    /// Gives the unpacked tree to the server's user.
    pub fn give_to_owner(&self) -> Result<(), TargetError> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        fn walk(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
            std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
            if p.is_dir() && !p.is_symlink() {
                for e in std::fs::read_dir(p)? {
                    walk(&e?.path(), uid, gid)?;
                }
            }
            Ok(())
        }
        walk(&self.path, uid, gid).map_err(|e| {
            TargetError::Refused(format!(
                "--run-as: cannot give {} to uid {uid}: {e}",
                self.path.display()
            ))
        })
    }

    /// Writes a file inside the directory, owned by the server's user.
    pub fn write_owned(&self, name: &str, contents: &[u8]) -> Result<PathBuf, TargetError> {
        let path = self.path.join(name);
        std::fs::write(&path, contents).map_err(TargetError::io(name))?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(TargetError::io(name))?;
        }
        Ok(path)
    }
}

fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() && !p.is_symlink() {
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

fn lookup_user(user: &str) -> Result<(u32, u32), TargetError> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    recovery::passwd_ids(&passwd, user).ok_or_else(|| {
        TargetError::Refused(format!("--run-as {user:?}: no such user in /etc/passwd"))
    })
}

/// PostgreSQL refuses to run as root.
pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
