//! The `-P` pid file: created exclusively, never through a symbolic link, replaced when the
//! process it names is gone, and removed again when the daemon exits cleanly.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::DaemonError;

/// How often creation is retried after removing a stale file, in case another starter
/// races us between the removal and our exclusive create.
const CREATE_ATTEMPTS: usize = 3;
/// A pid file longer than this is not one of ours.
const MAX_PIDFILE_LEN: u64 = 64;

/// A pid file this process wrote; dropping it removes the file if it still names us.
#[derive(Debug)]
pub struct PidFile {
    /// Where the file is.
    path: PathBuf,
    /// The pid written in it (this process's).
    pid: u32,
}

impl PidFile {
    /// Writes this process's pid (decimal, newline) to `path`.
    ///
    /// The file is created with `O_CREAT | O_EXCL | O_NOFOLLOW` and mode 0644. If it already
    /// exists: a symbolic link is refused, anything but a regular file is refused, a file
    /// naming a live process other than us is [`DaemonError::AlreadyRunning`], and a stale
    /// one (dead pid, our own pid from an earlier life, or unreadable content) is replaced.
    pub fn create(path: impl Into<PathBuf>) -> Result<PidFile, DaemonError> {
        let path = path.into();
        let pid = std::process::id();
        let io_error = |source| DaemonError::PidFileIo {
            path: path.clone(),
            source,
        };
        for _ in 0..CREATE_ATTEMPTS {
            // O_EXCL alone already fails on any existing path, a symlink included, so
            // O_NOFOLLOW is belt and braces for systems that differ.
            let created = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
                .open(&path);
            match created {
                Ok(mut file) => {
                    file.write_all(format!("{pid}\n").as_bytes())
                        .map_err(io_error)?;
                    return Ok(PidFile { path, pid });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    check_existing(&path, pid)?;
                    match std::fs::remove_file(&path) {
                        Ok(()) => {
                            tracing::info!(path = %path.display(), "replacing a stale pid file")
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_error(e)),
                    }
                }
                Err(e) => return Err(io_error(e)),
            }
        }
        Err(io_error(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "another process keeps creating it",
        )))
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Remove only our own file: if someone replaced it since, it is not ours to delete.
        if read_pid(&self.path).ok().flatten() == Some(self.pid as i32)
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the pid file");
        }
    }
}

/// Decides whether an existing pid file may be replaced; `Ok` means it is stale.
fn check_existing(path: &Path, own_pid: u32) -> Result<(), DaemonError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        // Gone since our create attempt: nothing to replace, just retry.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(DaemonError::PidFileIo {
                path: path.to_owned(),
                source,
            });
        }
    };
    if meta.file_type().is_symlink() {
        return Err(DaemonError::PidFileSymlink {
            path: path.to_owned(),
        });
    }
    if !meta.is_file() {
        return Err(DaemonError::PidFileNotRegular {
            path: path.to_owned(),
        });
    }
    let recorded = read_pid(path).map_err(|source| DaemonError::PidFileIo {
        path: path.to_owned(),
        source,
    })?;
    match recorded {
        // Our own pid is stale by definition: a container restarting us as pid 1, say.
        Some(pid) if pid != own_pid as i32 && is_alive(pid) => Err(DaemonError::AlreadyRunning {
            path: path.to_owned(),
            pid,
        }),
        _ => Ok(()),
    }
}

/// The pid in the file, `None` when the content is not a positive decimal number.
fn read_pid(path: &Path) -> io::Result<Option<i32>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(path)?;
    let mut text = String::new();
    if file
        .take(MAX_PIDFILE_LEN)
        .read_to_string(&mut text)
        .is_err()
    {
        return Ok(None);
    }
    Ok(text.trim().parse::<i32>().ok().filter(|pid| *pid > 0))
}

/// Whether a process with this pid exists (signal 0 probes without sending anything).
fn is_alive(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Ok(()) => true,
        // It exists but belongs to another user.
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_pid() -> i32 {
        // A child that has exited and been reaped: its pid names no process any more.
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id() as i32;
        child.wait().expect("reap true");
        pid
    }

    fn contents(path: &Path) -> String {
        std::fs::read_to_string(path).expect("pid file readable")
    }

    #[test]
    fn creates_the_file_with_our_pid_and_removes_it_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cntlm.pid");
        let pidfile = PidFile::create(&path).expect("created");
        assert_eq!(pidfile.path(), path);
        assert_eq!(contents(&path), format!("{}\n", std::process::id()));
        drop(pidfile);
        assert!(!path.exists(), "pid file left behind");
    }

    #[test]
    fn a_stale_file_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cntlm.pid");
        for stale in [
            format!("{}\n", dead_pid()),
            "garbage".to_owned(),
            String::new(),
        ] {
            std::fs::write(&path, &stale).expect("plant stale file");
            let pidfile = PidFile::create(&path).expect("stale file replaced");
            assert_eq!(
                contents(&path),
                format!("{}\n", std::process::id()),
                "{stale:?}"
            );
            drop(pidfile);
        }
    }

    #[test]
    fn a_live_process_keeps_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cntlm.pid");
        // pid 1 always exists (init, or the container's first process).
        std::fs::write(&path, "1\n").expect("plant live file");
        match PidFile::create(&path) {
            Err(DaemonError::AlreadyRunning { pid: 1, .. }) => {}
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        assert_eq!(
            contents(&path),
            "1\n",
            "a live instance's pid file was touched"
        );
    }

    #[test]
    fn a_symlink_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("precious");
        std::fs::write(&target, "do not overwrite").expect("target");
        let path = dir.path().join("cntlm.pid");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        let result = PidFile::create(&path);
        assert!(
            matches!(result, Err(DaemonError::PidFileSymlink { .. })),
            "{result:?}"
        );
        assert_eq!(contents(&target), "do not overwrite");

        // A dangling link must not be followed to create its target either.
        let dangling = dir.path().join("dangling.pid");
        let nowhere = dir.path().join("nowhere");
        std::os::unix::fs::symlink(&nowhere, &dangling).expect("symlink");
        let result = PidFile::create(&dangling);
        assert!(
            matches!(result, Err(DaemonError::PidFileSymlink { .. })),
            "{result:?}"
        );
        assert!(!nowhere.exists(), "a dangling symlink was followed");
    }

    #[test]
    fn a_directory_in_the_way_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let result = PidFile::create(dir.path());
        assert!(
            matches!(result, Err(DaemonError::PidFileNotRegular { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn drop_leaves_a_file_that_another_process_took_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cntlm.pid");
        let pidfile = PidFile::create(&path).expect("created");
        std::fs::write(&path, "1\n").expect("another instance took over");
        drop(pidfile);
        assert_eq!(contents(&path), "1\n");
    }
}
