//! Running as a Unix service: detaching from the terminal, the `-P` pid file, `-U` privilege
//! dropping and logging to syslog. Unix only; nothing outside this module calls these APIs
//! directly, so the Windows build simply has no daemon mode (DESIGN.md §1).
//!
//! Order of operations in `main` (the contract, CNTLM's order with its bugs fixed):
//! 1. resolve the config and bind every listener with `std::net` (so "cannot bind" reaches the
//!    terminal and the exit status, and ports below 1024 can be bound as root);
//! 2. unless `-f`/`-v`: [`daemonize`] — while the process still has one thread, before the
//!    tokio runtime exists — and log through [`Syslog`];
//! 3. `-U`: [`drop_privileges`];
//! 4. `-P`: [`PidFile::create`] (after the fork, so it holds the daemon's pid; after dropping
//!    privileges, so the unprivileged process can remove it again on exit);
//! 5. build the runtime, run, and drop the `PidFile` on the way out.

use std::path::PathBuf;

mod pidfile;
mod privileges;
mod syslog;

pub use pidfile::PidFile;
pub use privileges::{Identity, PrivilegeDrop, UserSpec, drop_privileges};
pub use syslog::{Syslog, SyslogLine};

/// What went wrong while becoming a service.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// `daemonize` was called after threads were started; forking would lose them.
    #[error("cannot daemonize: {0} threads are already running (daemonize before the runtime)")]
    ThreadsRunning(usize),
    /// fork/setsid/dup2 failed.
    #[error("cannot detach from the terminal")]
    Detach(#[source] nix::Error),
    /// The platform's libc has no daemon(3) (macOS); run with `-f` under launchd instead.
    #[error("daemon mode is not supported on this platform; run with -f")]
    Unsupported,
    /// The pid file could not be created, read, written or replaced.
    #[error("pid file {path}")]
    PidFileIo {
        /// The pid file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Another instance is running and owns the pid file.
    #[error("pid file {path} belongs to running process {pid}")]
    AlreadyRunning {
        /// The pid file.
        path: PathBuf,
        /// The live process named in it.
        pid: i32,
    },
    /// The pid file path is a symbolic link; following it would let whoever planted it make
    /// us (possibly root) overwrite any file.
    #[error("pid file {path} is a symbolic link; refusing to use it")]
    PidFileSymlink {
        /// The pid file.
        path: PathBuf,
    },
    /// The pid file path exists and is not a regular file.
    #[error("pid file {path} exists and is not a regular file")]
    PidFileNotRegular {
        /// The pid file.
        path: PathBuf,
    },
    /// `-U` was given an empty value.
    #[error("-U needs a user name or a numeric uid")]
    EmptyUser,
    /// `-U` named a user the system does not know.
    #[error("unknown user {0:?} for -U")]
    UnknownUser(String),
    /// The user database could not be read.
    #[error("cannot look up user {user:?}")]
    UserLookup {
        /// The name looked up.
        user: String,
        /// What the system said.
        #[source]
        source: nix::Error,
    },
    /// `-U` resolved to uid 0, which would drop nothing.
    #[error("-U must name an unprivileged user, not uid 0")]
    RootRefused,
    /// setgroups/setgid/setuid failed; the process must not go on half-privileged.
    #[error("cannot drop privileges: {step} failed")]
    SetIds {
        /// Which call failed.
        step: &'static str,
        /// What the system said.
        #[source]
        source: nix::Error,
    },
    /// After setuid, setuid(0) still worked: the drop did not stick.
    #[error("cannot drop privileges: root could be regained after setuid")]
    RegainedRoot,
}

/// Detaches from the terminal: fork (the parent exits 0 at once), setsid, chdir `/`, and
/// stdin/stdout/stderr on `/dev/null`, via daemon(3).
///
/// Must be called while the process has a single thread: before the tokio runtime is built
/// and before anything else spawns threads. On Linux this is checked (`/proc/self/status`)
/// and refused with [`DaemonError::ThreadsRunning`], because only the calling thread
/// survives a fork.
///
/// One fork, not two: the second fork only guards a session leader against acquiring a
/// controlling terminal by opening one, and cntlm opens no terminals after this point.
pub fn daemonize() -> Result<(), DaemonError> {
    if let Some(threads) = thread_count()
        && threads > 1
    {
        return Err(DaemonError::ThreadsRunning(threads));
    }
    detach()
}

#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    target_os = "illumos",
    target_os = "solaris"
))]
fn detach() -> Result<(), DaemonError> {
    // nochdir = false: chdir("/") so the daemon does not pin a mounted file system.
    // noclose = false: stdio goes to /dev/null; logs go to syslog from here on.
    nix::unistd::daemon(false, false).map_err(DaemonError::Detach)
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    target_os = "illumos",
    target_os = "solaris"
)))]
fn detach() -> Result<(), DaemonError> {
    Err(DaemonError::Unsupported)
}

/// The number of threads of this process, where the system tells us.
fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn daemonize_refuses_to_fork_a_multithreaded_process() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        // A helper thread that stays alive until told, so at least two threads exist.
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let helper = std::thread::spawn(move || {
            while !flag.load(Ordering::Acquire) {
                std::thread::park();
            }
        });
        // Guard against really daemonizing the test process if the count were unreadable.
        let threads = thread_count().expect("/proc/self/status is readable on Linux");
        assert!(threads >= 2, "only {threads} thread(s) seen");
        let result = daemonize();
        done.store(true, Ordering::Release);
        helper.thread().unpark();
        helper.join().expect("helper thread");
        assert!(
            matches!(result, Err(DaemonError::ThreadsRunning(n)) if n >= 2),
            "{result:?}"
        );
    }
}
