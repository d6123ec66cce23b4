//! Password credentials without `gss_acquire_cred_with_password`: `kinit` into a private cache.
//!
//! MIT krb5 has had `gss_acquire_cred_with_password` since 1.9 and that is what normally runs;
//! this is the fallback for GSSAPI libraries without it. The password goes to `kinit` on its
//! standard input (never on the command line, where `ps` would show it), the tickets land in a
//! `FILE:` cache that only we can read, and the file is removed when the context is dropped.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
#[cfg(test)]
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use super::NegotiateError;
use crate::auth::Password;

/// A ticket cache file created for one context.
pub(super) struct PrivateCache {
    /// Path of the cache file.
    path: PathBuf,
    /// `FILE:<path>`, the name the Kerberos library understands.
    name: String,
}

impl PrivateCache {
    /// Runs `kinit -c FILE:<private file> <user>` with the password on standard input.
    pub(super) fn obtain(user: &str, password: &Password) -> Result<Self, NegotiateError> {
        Self::obtain_with(Command::new("kinit"), user, password)
    }

    /// `obtain` with a prepared `kinit` command (tests give it their realm's environment).
    fn obtain_with(
        mut kinit: Command,
        user: &str,
        password: &Password,
    ) -> Result<Self, NegotiateError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("cntlm-krb5cc-{}-{unique}", std::process::id()));
        let failed = |detail: String| NegotiateError::LoginFailed { detail };
        // Create the file ourselves, owner-only, so the tickets are never readable by others
        // (kinit keeps the mode of an existing cache file).
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| failed(format!("cannot create {}: {e}", path.display())))?;
        let cache = PrivateCache {
            name: format!("FILE:{}", path.display()),
            path,
        };
        let mut child = kinit
            .arg("-c")
            .arg(&cache.name)
            .arg(user)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| NegotiateError::PasswordUnsupported {
                detail: format!(
                    "the GSSAPI library lacks gss_acquire_cred_with_password and kinit could \
                     not be run: {e}"
                ),
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error means kinit exited early; its status and stderr say why.
            let _ = writeln!(stdin, "{}", password.expose());
        }
        let output = child
            .wait_with_output()
            .map_err(|e| failed(format!("waiting for kinit: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(failed(format!(
                "kinit {}: {}",
                output.status,
                stderr.trim()
            )));
        }
        Ok(cache)
    }

    /// The cache's name for the Kerberos library (`FILE:/tmp/cntlm-krb5cc-...`).
    pub(super) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PrivateCache {
    fn drop(&mut self) {
        // Best effort: a cache left behind only holds tickets that expire on their own.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The Kerberos lab of the integration tests, to run the real `kinit` against a real KDC.
#[cfg(test)]
#[path = "../../../tests/support/kdc.rs"]
mod kdc;

#[cfg(test)]
mod tests {
    use super::*;

    use super::kdc;

    fn kinit_in(realm: &kdc::Kdc) -> Command {
        let mut command = Command::new(kdc::find_program("kinit").expect("the lab installs kinit"));
        command.envs(realm.client_env(&realm.dir().join("unused.ccache")));
        command
    }

    #[test]
    fn kinit_fallback_fills_a_private_cache_and_removes_it() {
        let Some(realm) = kdc::Kdc::start() else {
            return;
        };
        let cache =
            PrivateCache::obtain_with(kinit_in(&realm), kdc::USER, &Password::new(kdc::PASSWORD))
                .expect("kinit with the right password");
        let path = cache.path.clone();
        let meta = std::fs::metadata(&path).expect("the cache file exists");
        assert!(meta.len() > 0, "kinit wrote tickets");
        assert_eq!(meta.permissions().mode() & 0o077, 0, "only we can read it");
        assert_eq!(cache.name(), format!("FILE:{}", path.display()));
        drop(cache);
        assert!(!path.exists(), "dropping the context removes the tickets");
    }

    #[test]
    fn kinit_fallback_reports_a_wrong_password() {
        let Some(realm) = kdc::Kdc::start() else {
            return;
        };
        let err = PrivateCache::obtain_with(
            kinit_in(&realm),
            kdc::USER,
            &Password::new("wrong-password"),
        )
        .err()
        .expect("a wrong password is refused");
        assert!(matches!(err, NegotiateError::LoginFailed { .. }), "{err:?}");
        assert!(!err.to_string().contains("wrong-password"));
    }
}
