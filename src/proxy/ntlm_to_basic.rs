//! `NTLMToBasic yes` / `-B`: each client brings its own account in a Basic
//! `Proxy-Authorization` (RFC 7617), and cntlm authenticates to the parent with NTLM as that
//! user.
//!
//! - The credentials are `domain\user:password`, or `user:password` with the configured
//!   `Domain` (also `user@domain:password`, as `-u` accepts it).
//! - Without them the client gets a 407 with `Basic realm="Cntlm Proxy"` (CNTLM's words), so a
//!   browser asks its user.
//! - Authenticated parent connections are pooled under an [`Identity`], a keyed digest of user
//!   and password: never handed to another user, nor to a client that only knows the name.
//!   (CNTLM turns connection caching off in this mode; we keep it, per identity.)
//! - The lockout protection counts per identity, so one client repeating a wrong password
//!   stops being forwarded after `Limits::auth_failures` rejections, without affecting other
//!   users. A newly typed password is a new identity and gets its own attempts.
//!
//! Passwords are never logged: only the user and domain are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::AsyncWriteExt;

use crate::auth::ntlm::crypto;
use crate::auth::{Credentials, Password};
use crate::config::{AuthChoice, AuthSettings};
use crate::http::Headers;
use crate::http::head::RequestHead;
use crate::proxy::Shared;
use crate::proxy::handshake::{self, AuthGate, ProbeOutcome};
use crate::proxy::session::{Client, Next, RequestLog};
use crate::upstream::{AuthState, Identity, UpstreamConn, UpstreamError};

/// The 407 that asks a client for its account (CNTLM 0.92.3's realm); the connection closes.
pub fn ask_for_credentials() -> Vec<u8> {
    let body = "cntlm: this proxy needs your account (domain\\user and password, Basic)\n";
    format!(
        "HTTP/1.1 407 Proxy Authentication Required\r\n\
         Proxy-Authenticate: Basic realm=\"Cntlm Proxy\"\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n\
         Proxy-Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The NTLM handshake as `account` on a fresh connection (whatever `Auth` scheme the
/// configuration chose: `-B` is NTLM with the configured dialect, as in CNTLM).
pub async fn probe(
    up: &mut UpstreamConn,
    probe: &RequestHead,
    account: &ClientAccount,
    shared: &Shared,
    who: &str,
) -> Result<ProbeOutcome, UpstreamError> {
    let config = &shared.config;
    handshake::probe(up, probe, &account.auth(&config.auth), &config.limits, who).await
}

/// Records the answer to a request that carried `account`'s Type 3 on `gate` (its own), and
/// marks the connection authenticated when it was accepted.
pub fn answered(gate: &AuthGate, status: u16, up: &mut UpstreamConn, who: &str) {
    if status == 407 {
        gate.rejected(who);
    } else {
        gate.accepted();
        up.auth = AuthState::Authenticated;
    }
}

/// Answers a request without a usable Basic account with the 407 that asks for one.
pub async fn ask(client: &mut Client, log: &mut RequestLog) -> Next {
    log.status = 407;
    let _ = client.stream.write_all(&ask_for_credentials()).await;
    let _ = client.stream.shutdown().await;
    Next::Close
}

/// `-B`: the client's own account from its Basic header, read before the hop-by-hop headers
/// go. `Ok(None)` when NTLMToBasic is off; `Err` carries the session's next step when the
/// client had no usable account and was already answered with the 407 that asks for one.
pub async fn account_for(
    shared: &Shared,
    headers: &Headers,
    client: &mut Client,
    log: &mut RequestLog,
) -> Result<Option<ClientAccount>, Next> {
    if !shared.config.ntlm_to_basic {
        return Ok(None);
    }
    match shared.accounts.from_headers(headers) {
        Some(account) => Ok(Some(account)),
        None => Err(ask(client, log).await),
    }
}

/// Most identities whose lockout state is remembered (beyond it, the oldest state is reset).
const MAX_GATES: usize = 4096;

/// One client's account, from its Basic header.
#[derive(Clone)]
pub struct ClientAccount {
    /// User name as sent.
    pub user: String,
    /// Domain as sent, or the configured one.
    pub domain: String,
    /// The password (redacted in `Debug`).
    password: Password,
    /// The pool and lockout key.
    identity: Identity,
}

impl std::fmt::Debug for ClientAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAccount")
            .field("user", &self.user)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl ClientAccount {
    /// The key its connections and lockout count are kept under.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// `base` (dialect, flags, workstation) with this account's user, domain and password
    /// in place of the configured credentials (no configured hash can belong to it).
    pub fn auth(&self, base: &AuthSettings) -> AuthSettings {
        AuthSettings {
            scheme: AuthChoice::Ntlm,
            credentials: Credentials {
                user: self.user.clone(),
                domain: self.domain.clone(),
                workstation: base.credentials.workstation.clone(),
                password: Some(self.password.clone()),
                lm_hash: None,
                nt_hash: None,
                ntlmv2_hash: None,
            },
            ..base.clone()
        }
    }
}

/// Per-identity state: the digest key and each identity's lockout gate.
#[derive(Debug)]
pub struct ClientAccounts {
    /// Random per run, so the digests mean nothing outside this process.
    key: [u8; 16],
    /// The domain used when the client names none (`Domain` / `-d`).
    default_domain: String,
    /// Lockout gates per identity.
    gates: Mutex<HashMap<Identity, Arc<AuthGate>>>,
    /// Rejections that close a gate.
    limit: u32,
}

impl ClientAccounts {
    /// State for a run with `default_domain`, closing an identity's gate after `limit`
    /// consecutive rejections.
    pub fn new(default_domain: &str, limit: u32) -> Self {
        let mut key = [0u8; 16];
        // Without the OS generator the digest is still a digest, only not secret-keyed.
        let _ = getrandom::fill(&mut key);
        ClientAccounts {
            key,
            default_domain: default_domain.to_string(),
            gates: Mutex::new(HashMap::new()),
            limit,
        }
    }

    /// The account in the request's `Proxy-Authorization: Basic ...`, if it has a usable one.
    pub fn from_headers(&self, headers: &Headers) -> Option<ClientAccount> {
        let value = headers.get("proxy-authorization")?;
        let text = std::str::from_utf8(value).ok()?.trim();
        let (scheme, token) = text.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("Basic") {
            return None;
        }
        let decoded = zeroize::Zeroizing::new(BASE64.decode(token.trim()).ok()?);
        let decoded = std::str::from_utf8(&decoded).ok()?;
        let (login, password) = decoded.split_once(':')?;
        let (domain, user) = match login.split_once('\\') {
            Some((domain, user)) => (domain, user),
            None => match login.split_once('@') {
                Some((user, domain)) => (domain, user),
                None => (self.default_domain.as_str(), login),
            },
        };
        if user.is_empty() || password.is_empty() {
            return None;
        }
        let digest = crypto::hmac_md5(
            &self.key,
            &[
                domain.to_uppercase().as_bytes(),
                b"\\",
                user.to_uppercase().as_bytes(),
                b"\0",
                password.as_bytes(),
            ],
        );
        Some(ClientAccount {
            user: user.to_string(),
            domain: domain.to_string(),
            password: Password::new(password),
            identity: Identity(digest),
        })
    }

    /// The lockout gate of `account`'s identity.
    pub fn gate(&self, account: &ClientAccount) -> Arc<AuthGate> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        if gates.len() >= MAX_GATES && !gates.contains_key(&account.identity) {
            gates.clear();
        }
        gates
            .entry(account.identity)
            .or_insert_with(|| Arc::new(AuthGate::new(self.limit)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> Headers {
        let mut h = Headers::default();
        h.push("Proxy-Authorization", value);
        h
    }

    fn basic(login: &str) -> Headers {
        headers(&format!("Basic {}", BASE64.encode(login)))
    }

    #[test]
    fn domain_user_and_the_configured_domain() {
        let accounts = ClientAccounts::new("CORP", 3);
        let a = accounts
            .from_headers(&basic("LAB\\alice:pa:ss"))
            .expect("valid");
        assert_eq!((a.user.as_str(), a.domain.as_str()), ("alice", "LAB"));
        assert_eq!(a.password.expose(), "pa:ss", "only the first colon splits");
        let b = accounts.from_headers(&basic("bob:x")).expect("valid");
        assert_eq!((b.user.as_str(), b.domain.as_str()), ("bob", "CORP"));
        let c = accounts.from_headers(&basic("carol@LAB:x")).expect("valid");
        assert_eq!((c.user.as_str(), c.domain.as_str()), ("carol", "LAB"));
        for bad in ["NTLM TlRMTVNTUAAB", "Basic !!!", "Basic"] {
            assert!(accounts.from_headers(&headers(bad)).is_none(), "{bad}");
        }
        assert!(accounts.from_headers(&basic("nopassword")).is_none());
        assert!(accounts.from_headers(&basic(":x")).is_none());
        assert!(accounts.from_headers(&Headers::default()).is_none());
    }

    #[test]
    fn identity_depends_on_user_and_password_and_debug_hides_the_password() {
        let accounts = ClientAccounts::new("CORP", 3);
        let id = |login: &str| {
            accounts
                .from_headers(&basic(login))
                .expect("valid")
                .identity()
        };
        assert_eq!(id("LAB\\alice:one"), id("lab\\ALICE:one"));
        assert_ne!(id("LAB\\alice:one"), id("LAB\\alice:two"));
        assert_ne!(id("LAB\\alice:one"), id("LAB\\bob:one"));
        let a = accounts
            .from_headers(&basic("LAB\\alice:Secret-1"))
            .expect("valid");
        assert!(!format!("{a:?}").contains("Secret-1"));
    }

    #[test]
    fn each_identity_has_its_own_lockout_count() {
        let accounts = ClientAccounts::new("CORP", 2);
        let alice = accounts.from_headers(&basic("alice:bad")).expect("valid");
        let bob = accounts.from_headers(&basic("bob:good")).expect("valid");
        accounts.gate(&alice).rejected("p");
        accounts.gate(&alice).rejected("p");
        assert!(!accounts.gate(&alice).is_open());
        assert!(accounts.gate(&bob).is_open());
        let alice_fixed = accounts.from_headers(&basic("alice:good")).expect("valid");
        assert!(accounts.gate(&alice_fixed).is_open());
    }
}
