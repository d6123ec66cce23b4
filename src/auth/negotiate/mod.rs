//! Kerberos to the parent proxy: HTTP `Negotiate` (RFC 4559) carrying SPNEGO (RFC 4178) tokens.
//!
//! The tokens come from the platform's security library, never from our own Kerberos code: on
//! Unix the system GSSAPI (MIT krb5 or Heimdal), opened at run time by [`gssapi`] so that a
//! plain `cargo build` needs no Kerberos headers and the binary starts on machines without
//! Kerberos (then [`is_available`] is false and [`unavailable_reason`] says why). On Windows
//! the engine would be SSPI; it is a stub until it can be built and tested (see `sspi.rs`).
//!
//! A [`NegotiateContext`] is one exchange with one parent connection. Negotiate authenticates
//! the connection, like NTLM: the first token goes on the probe request, a `407` carrying a
//! `Negotiate <token>` is answered with [`NegotiateContext::step`] on the same connection, and a
//! success without a final token is a success (Squid and most proxies send none). A context is
//! never reused for a second connection: Kerberos authenticators are single-use and acceptors
//! refuse replays.
//!
//! [`NegotiateContext::new`] and [`NegotiateContext::step`] may talk to the KDC (a TGT for
//! password and keytab credentials, the service ticket on the first step) and so may block for
//! up to the library's KDC timeout: async callers run them under `tokio::task::spawn_blocking`.
//! Contexts are `Send` for that reason. Tokens are secrets of the connection: nothing here logs
//! them, and their `Debug` output shows lengths only.

use std::fmt;
use std::path::PathBuf;

use super::Password;

#[cfg(unix)]
mod gssapi;
#[cfg(unix)]
mod kinit;
#[cfg(unix)]
use gssapi as backend;

#[cfg(not(unix))]
mod sspi;
#[cfg(not(unix))]
use sspi as backend;

/// Where the Kerberos identity for the parent comes from.
#[derive(Debug, Clone)]
pub enum KerberosCredentials {
    /// The user's default ticket cache, as `kinit` fills it (`KRB5CCNAME`, else the library's
    /// default such as `FILE:/tmp/krb5cc_<uid>`). Nothing secret is configured in cntlm.
    DefaultCache,
    /// A named ticket cache (`FILE:/path`, `KEYRING:persistent:1000`, `DIR:...`), for a
    /// cache other than the process default.
    Cache(String),
    /// A client keytab: tickets are obtained from its keys, and renewed from them when they
    /// expire, in a cache private to this process.
    Keytab {
        /// Path of the keytab file.
        path: PathBuf,
        /// The client principal to use (`user@REALM`); `None` takes the keytab's first entry.
        principal: Option<String>,
    },
    /// A user name and password: cntlm obtains its own tickets (a fresh TGT per context, so
    /// expiry never bites).
    Password {
        /// `user` or `user@REALM` (without a realm the configured default realm applies).
        user: String,
        /// The clear-text password.
        password: Password,
    },
}

/// What one call of [`NegotiateContext::step`] produced.
#[derive(Clone, PartialEq, Eq)]
pub struct NegotiateStep {
    /// The token to send as `Proxy-Authorization: Negotiate <base64>`, when there is one.
    pub token: Option<Vec<u8>>,
    /// Whether the security library considers the exchange finished. A parent's success
    /// without a final token ends the exchange even when this is `false`.
    pub complete: bool,
}

impl fmt::Debug for NegotiateStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens carry a Kerberos authenticator: show their size, never their bytes.
        f.debug_struct("NegotiateStep")
            .field("token_len", &self.token.as_ref().map(Vec::len))
            .field("complete", &self.complete)
            .finish()
    }
}

/// Why Negotiate could not produce a token.
#[derive(Debug, thiserror::Error)]
pub enum NegotiateError {
    /// No usable security library on this machine (or this platform is not supported yet).
    #[error("negotiate (kerberos) is unavailable: {reason}")]
    Unavailable {
        /// What is missing, e.g. the library that could not be opened.
        reason: String,
    },
    /// No ticket, keytab or password gave us a Kerberos identity.
    #[error("no kerberos credentials: {detail} (run kinit, or configure a keytab or a password)")]
    NoCredentials {
        /// The security library's explanation.
        detail: String,
    },
    /// A principal or service name could not be used (empty, contains NUL, rejected).
    #[error("invalid kerberos name {name:?}: {detail}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        detail: String,
    },
    /// Password credentials cannot be used with this library and no fallback worked.
    #[error("kerberos password credentials are unsupported here: {detail}")]
    PasswordUnsupported {
        /// What is missing.
        detail: String,
    },
    /// The KDC refused the password or the keytab's keys, or could not be reached.
    #[error("kerberos login failed: {detail}")]
    LoginFailed {
        /// The security library's (or `kinit`'s) explanation.
        detail: String,
    },
    /// Any other failure reported by the security library.
    #[error("{operation} failed: {detail}")]
    Library {
        /// The library call that failed, e.g. `gss_init_sec_context`.
        operation: &'static str,
        /// The library's explanation (major and minor status texts).
        detail: String,
    },
    /// `step` was called again after the exchange completed.
    #[error("the negotiate exchange is already complete")]
    AlreadyComplete,
    /// `step` was called again after a failure; a failed context cannot continue.
    #[error("the negotiate exchange already failed")]
    AlreadyFailed,
    /// The parent answered a continuing exchange without a token to continue it with.
    #[error("the parent sent no negotiate token but the exchange is not complete")]
    MissingServerToken,
}

/// Whether a security library for Negotiate could be loaded on this machine.
pub fn is_available() -> bool {
    backend::availability().is_ok()
}

/// Why Negotiate is unavailable, or `None` when it is available (for logs and `-M`).
pub fn unavailable_reason() -> Option<String> {
    backend::availability().err()
}

/// The conventional service principal of an HTTP proxy: `HTTP@<host>` (host-based form).
pub fn service_principal_for_host(host: &str) -> String {
    format!("HTTP@{host}")
}

/// One Negotiate exchange with one parent connection.
pub struct NegotiateContext {
    /// The service we authenticate to, as given to `new` (for logs and errors).
    service_principal: String,
    /// The platform engine's state: credentials, target name and security context.
    inner: backend::Context,
}

impl NegotiateContext {
    /// Prepares an exchange with `service_principal` using `creds`.
    ///
    /// `service_principal` is host-based (`HTTP@proxy.example.com`, see
    /// [`service_principal_for_host`]) or, when it contains a `/`, a full Kerberos principal
    /// (`HTTP/proxy.example.com@EXAMPLE.COM`) for parents whose SPN differs from their name.
    /// Credentials are acquired here, so a missing ticket or a wrong password is reported now
    /// (as [`NegotiateError::NoCredentials`] or [`NegotiateError::LoginFailed`]).
    pub fn new(
        service_principal: &str,
        creds: KerberosCredentials,
    ) -> Result<Self, NegotiateError> {
        let inner = backend::Context::new(service_principal, &creds)?;
        Ok(NegotiateContext {
            service_principal: service_principal.to_owned(),
            inner,
        })
    }

    /// Runs one leg: `None` for the first token, then the parent's token from its
    /// `Proxy-Authenticate: Negotiate <token>` for each further leg.
    pub fn step(&mut self, input_token: Option<&[u8]>) -> Result<NegotiateStep, NegotiateError> {
        self.inner.step(input_token)
    }

    /// Whether the security library considers the exchange finished.
    pub fn is_complete(&self) -> bool {
        self.inner.is_complete()
    }

    /// The service principal this context authenticates to.
    pub fn service_principal(&self) -> &str {
        &self.service_principal
    }

    /// Same as the module's [`is_available`].
    pub fn is_available() -> bool {
        is_available()
    }
}

impl fmt::Debug for NegotiateContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NegotiateContext")
            .field("service_principal", &self.service_principal)
            .field("complete", &self.inner.is_complete())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn contexts_can_move_into_a_blocking_task() {
        assert_send::<NegotiateContext>();
    }

    #[test]
    fn host_based_service_name() {
        assert_eq!(service_principal_for_host("proxy.corp"), "HTTP@proxy.corp");
    }

    #[test]
    fn step_debug_shows_no_token_bytes() {
        let step = NegotiateStep {
            token: Some(vec![0x60, 0x82, 0xAB, 0xCD]),
            complete: false,
        };
        let text = format!("{step:?}");
        assert!(text.contains("token_len: Some(4)"), "{text}");
        assert!(!text.to_lowercase().contains("ab"), "{text}");
    }

    #[test]
    fn password_credentials_debug_is_redacted() {
        let creds = KerberosCredentials::Password {
            user: "alice".into(),
            password: Password::new("s3cret-pw"),
        };
        assert!(!format!("{creds:?}").contains("s3cret-pw"));
    }

    #[test]
    fn availability_is_consistent_with_its_reason() {
        assert_eq!(is_available(), unavailable_reason().is_none());
    }
}
