//! Proxy authentication to a parent (ntlm-protocol-notes.md §3): the NTLM probe on a fresh
//! connection and the lockout gate.
//!
//! The probe is a body-less copy of the request carrying the Type 1 (`Content-Length: 0`,
//! `Transfer-Encoding` removed, `HEAD` sent as `GET` for old ISA servers). Its 407 carries the
//! Type 2; the caller then sends the real request, body streamed once, with the Type 3. NTLM
//! authenticates the TCP connection (MS-NLMP §3.1.5), so all of this stays on one connection.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::AsyncWriteExt;

use crate::auth::{Credentials, ntlm};
use crate::config::{AuthSettings, Limits};
use crate::http::body::{copy_body, response_body};
use crate::http::head::{HeadLimits, RequestHead, ResponseHead, read_response};
use crate::upstream::{UpstreamConn, UpstreamError};

/// Stops authenticating after `limit` consecutive credential rejections (Active Directory
/// locks accounts after a handful of bad attempts; px#234), until the config is reloaded.
#[derive(Debug)]
pub struct AuthGate {
    /// Consecutive final 407s after a Type 3.
    failures: AtomicU32,
    /// How many close the gate.
    limit: u32,
    /// Whether the closing was logged (once, not per request).
    announced: AtomicBool,
    /// Whether the last Type 3 was accepted: until then handshakes run one at a time, so a
    /// wrong password costs one rejection, not one per concurrent client socket.
    proven: AtomicBool,
    /// The one handshake allowed while not proven.
    probation: tokio::sync::Semaphore,
}

impl AuthGate {
    /// A gate that closes after `limit` consecutive rejections.
    pub fn new(limit: u32) -> Self {
        AuthGate {
            failures: AtomicU32::new(0),
            limit: limit.max(1),
            announced: AtomicBool::new(false),
            proven: AtomicBool::new(false),
            probation: tokio::sync::Semaphore::new(1),
        }
    }

    /// Waits for the right to run a handshake: free once credentials were accepted, one at a
    /// time before (npm opens 200 sockets at once; with a wrong password that must cost one
    /// rejection, not 200, or Active Directory locks the account). Hold the permit until the
    /// Type 3's answer is known, then drop it.
    pub async fn admit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        if self.proven.load(Ordering::Relaxed) {
            return None;
        }
        // The semaphore is never closed, so acquiring only fails if it were.
        self.probation.acquire().await.ok()
    }

    /// Whether we may still send a Type 3.
    pub fn is_open(&self) -> bool {
        self.failures.load(Ordering::Relaxed) < self.limit
    }

    /// The parent rejected our Type 3.
    pub fn rejected(&self, parent: &str) {
        self.proven.store(false, Ordering::Relaxed);
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.limit && !self.announced.swap(true, Ordering::Relaxed) {
            tracing::error!(
                parent,
                rejections = n,
                "the parent proxy rejected our credentials {n} times in a row; no more authentication attempts until the configuration is reloaded (protecting the account from lockout)"
            );
        } else if n < self.limit {
            tracing::warn!(
                parent,
                rejections = n,
                "the parent proxy rejected our credentials"
            );
        }
    }

    /// The parent accepted a Type 3.
    pub fn accepted(&self) {
        self.proven.store(true, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
    }

    /// The parent answered without asking for credentials: nothing can be locked out by
    /// letting handshakes run side by side, so later ones stop queueing behind each other.
    /// The count of rejections stays (it is only reset by an accepted Type 3), and the next
    /// rejection puts the gate back on probation.
    pub fn not_needed(&self) {
        self.proven.store(true, Ordering::Relaxed);
    }
}

/// What the client is told while the gate is closed.
pub const LOCKED_OUT: &str = "the parent proxy rejected the configured credentials several times in a row; to protect the account from lockout cntlm stopped authenticating. Fix Username/Domain/Password (or the Pass* hashes, see cntlm -H and -M) and reload or restart cntlm";

/// Whether `credentials` can answer a challenge at all (else requests go without auth).
pub fn has_secret(credentials: &Credentials) -> bool {
    credentials.password.is_some()
        || credentials.lm_hash.is_some()
        || credentials.nt_hash.is_some()
        || credentials.ntlmv2_hash.is_some()
}

/// How the parent answered the probe.
#[derive(Debug)]
pub enum ProbeOutcome {
    /// A 407 with an NTLM challenge on a connection that stays open: send this Type 3.
    Challenge {
        /// The `Proxy-Authorization` value carrying the Type 3 (or the scheme's credentials).
        authorization: String,
        /// The scheme it answers (whose lockout gate counts the parent's answer).
        scheme: crate::proxy::scheme::AuthScheme,
    },
    /// The probe itself carried credentials the parent accepted (Negotiate): the connection
    /// is authenticated and this is the answer to the probe, body unread.
    Authenticated(ResponseHead),
    /// We cannot authenticate to this parent (say no Kerberos ticket and no password): the
    /// client gets a 407 with this explanation.
    Refused(String),
    /// A 407 with a challenge, but the parent closes the connection: start over elsewhere.
    ParentClosed,
    /// A 407 offering no NTLM: the head, body unread on the connection.
    NoNtlm(ResponseHead),
    /// Not a 407: the parent needs no authentication; head, body unread.
    Answer(ResponseHead),
}

/// Whether a response lets the connection stay open (RFC 9112 §9.3, plus `Proxy-Connection`,
/// which CNTLM and old parents use).
pub fn response_keeps_alive(head: &ResponseHead) -> bool {
    let h = &head.headers;
    if h.has_token("connection", "close") || h.has_token("proxy-connection", "close") {
        return false;
    }
    match head.version {
        crate::http::Version::Http11 => true,
        crate::http::Version::Http10 => {
            h.has_token("connection", "keep-alive") || h.has_token("proxy-connection", "keep-alive")
        }
    }
}

/// The NTLM token of the first `Proxy-Authenticate: NTLM <base64>` challenge, decoded. Each
/// field may list several challenges separated by commas (RFC 9110 §11.6.1); base64 has no
/// commas, so splitting on them is safe for the NTLM item. The scheme is checked, unlike
/// CNTLM 0.92.3, which skips five characters of whatever comes first (notes §7 item 6).
fn ntlm_challenge(head: &ResponseHead, max: usize) -> Result<Option<Vec<u8>>, String> {
    let items = head
        .headers
        .get_all("proxy-authenticate")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii);
    for item in items {
        let Some(scheme) = item.get(..4) else {
            continue;
        };
        if !scheme.eq_ignore_ascii_case(b"NTLM") || item.len() < 6 || item[4] != b' ' {
            continue;
        }
        let token = item[5..].trim_ascii();
        if token.len() > max.div_ceil(3) * 4 + 4 {
            return Err(format!("NTLM challenge longer than {max} bytes"));
        }
        return BASE64
            .decode(token)
            .map(Some)
            .map_err(|_| "NTLM challenge is not valid base64".to_string());
    }
    Ok(None)
}

/// Reads a final response head, skipping up to ten interim (1xx) responses.
pub async fn read_final(
    up: &mut UpstreamConn,
    limits: &Limits,
    who: &str,
) -> Result<ResponseHead, UpstreamError> {
    let head_limits = HeadLimits::response(limits);
    for _ in 0..=10 {
        let head = read_response(
            &mut up.stream,
            &mut up.buf,
            &head_limits,
            Some(limits.parent_first_byte),
        )
        .await
        .map_err(|e| head_error(e, who, up.reused))?;
        if !head.is_interim() {
            return Ok(head);
        }
    }
    Err(UpstreamError::BadResponse {
        who: who.to_string(),
        reason: "more than 10 interim responses".to_string(),
    })
}

/// Maps a response-head failure to who failed and whether a retry may help.
pub fn head_error(e: crate::http::HeadError, who: &str, reused: bool) -> UpstreamError {
    use crate::http::HeadError as H;
    use crate::upstream::Retry;
    match e {
        H::Closed => UpstreamError::Closed {
            who: who.to_string(),
            retry: if reused {
                Retry::FreshConnection
            } else {
                Retry::Never
            },
        },
        H::Timeout => UpstreamError::Timeout {
            who: who.to_string(),
        },
        H::Io(source) => {
            if reused {
                UpstreamError::Closed {
                    who: who.to_string(),
                    retry: Retry::FreshConnection,
                }
            } else {
                UpstreamError::Io {
                    who: who.to_string(),
                    source,
                }
            }
        }
        other => UpstreamError::BadResponse {
            who: who.to_string(),
            reason: other.to_string(),
        },
    }
}

/// Sends the probe (`probe` already has its body-less framing) with a Type 1 and reads the
/// parent's answer; on a 407 with a challenge, drains its body and computes the Type 3.
pub async fn probe(
    up: &mut UpstreamConn,
    probe: &RequestHead,
    auth: &AuthSettings,
    limits: &Limits,
    who: &str,
) -> Result<ProbeOutcome, UpstreamError> {
    let type1 = ntlm::negotiate(auth.dialect, auth.flags, &auth.credentials);
    let mut head = probe.clone();
    head.headers.push(
        "Proxy-Authorization",
        format!("NTLM {}", BASE64.encode(type1)),
    );
    up.stream
        .write_all(&head.to_bytes())
        .await
        .map_err(|source| UpstreamError::Io {
            who: who.to_string(),
            source,
        })?;
    let resp = read_final(up, limits, who).await?;
    if resp.status != 407 {
        return Ok(ProbeOutcome::Answer(resp));
    }
    let challenge = match ntlm_challenge(&resp, limits.ntlm_challenge) {
        Ok(Some(c)) => c,
        Ok(None) => return Ok(ProbeOutcome::NoNtlm(resp)),
        Err(reason) => {
            return Err(UpstreamError::Auth {
                who: who.to_string(),
                reason,
            });
        }
    };
    // Drain the 407's body so the connection is ready for the Type 3 (notes §3.1 step 2).
    let kind = response_body(&probe.method, &resp).map_err(|e| UpstreamError::BadResponse {
        who: who.to_string(),
        reason: e.to_string(),
    })?;
    if kind == crate::http::BodyKind::UntilClose {
        return Ok(ProbeOutcome::ParentClosed);
    }
    let idle = limits.parent_first_byte.min(Duration::from_secs(60));
    if copy_body(
        &mut up.stream,
        &mut up.buf,
        &mut tokio::io::sink(),
        kind,
        idle,
    )
    .await
    .is_err()
    {
        return Ok(ProbeOutcome::ParentClosed);
    }
    if !response_keeps_alive(&resp) || !up.buf.is_empty() || !still_open(&up.stream) {
        // CNTLM sends the Type 3 on a new connection here, which a real server rejects;
        // the handshake has to start over (notes §3.2, §7 item 7).
        return Ok(ProbeOutcome::ParentClosed);
    }
    let type3 = ntlm::authenticate(
        auth.dialect,
        &auth.credentials,
        &challenge,
        limits.ntlm_challenge,
    )
    .map_err(|e| UpstreamError::Auth {
        who: who.to_string(),
        reason: e.to_string(),
    })?;
    Ok(ProbeOutcome::Challenge {
        authorization: format!("NTLM {}", BASE64.encode(type3)),
        scheme: crate::proxy::scheme::AuthScheme::Ntlm,
    })
}

/// Whether the peer has not closed (no FIN pending): a cheap check before sending a Type 3.
fn still_open(stream: &tokio::net::TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// The body-less probe for `request`: `Content-Length: 0`, no `Transfer-Encoding` or
/// `Expect`, and `HEAD` sent as `GET` (ntlm-protocol-notes.md §3.2).
pub fn probe_head(request: &RequestHead) -> RequestHead {
    let mut head = request.clone();
    if head.method.eq_ignore_ascii_case("HEAD") {
        head.method = "GET".to_string();
    }
    head.headers.remove("transfer-encoding");
    head.headers.remove("expect");
    if !head.method.eq_ignore_ascii_case("CONNECT") {
        head.headers.set("Content-Length", "0");
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Headers, Version};

    fn resp(fields: &[&str]) -> ResponseHead {
        let mut headers = Headers::default();
        for f in fields {
            headers.push("Proxy-Authenticate", f.as_bytes());
        }
        ResponseHead {
            version: Version::Http11,
            status: 407,
            reason: String::new(),
            headers,
        }
    }

    #[test]
    fn ntlm_token_is_found_by_scheme_in_any_field_or_list() {
        let r = resp(&["Negotiate", "Basic realm=\"a, b\"", "NTLM TlRMTVNTUAACAAAA"]);
        assert_eq!(
            ntlm_challenge(&r, 16384).expect("valid").expect("present")[..8],
            b"NTLMSSP\0"[..]
        );
        let r = resp(&["Negotiate, ntlm TlRMTVNTUAACAAAA"]);
        assert!(ntlm_challenge(&r, 16384).expect("valid").is_some());
        let r = resp(&["NTLM", "Basic realm=\"x\""]);
        assert!(ntlm_challenge(&r, 16384).expect("valid").is_none());
        let r = resp(&["NTLM !!!"]);
        assert!(ntlm_challenge(&r, 16384).is_err());
        let r = resp(&[&format!("NTLM {}", "A".repeat(100))]);
        assert!(ntlm_challenge(&r, 16).is_err(), "over the Type 2 limit");
    }

    #[test]
    fn gate_closes_after_the_limit_and_reopens_only_on_success() {
        let gate = AuthGate::new(3);
        for _ in 0..2 {
            gate.rejected("p");
        }
        assert!(gate.is_open());
        gate.accepted();
        for _ in 0..2 {
            gate.rejected("p");
        }
        assert!(gate.is_open(), "the count is of consecutive rejections");
        gate.rejected("p");
        assert!(!gate.is_open());
    }

    #[tokio::test]
    async fn a_parent_that_needs_no_credentials_ends_the_probation_queue_but_not_the_count() {
        let gate = AuthGate::new(3);
        let first = gate.admit().await;
        assert!(first.is_some(), "on probation: handshakes one at a time");
        gate.not_needed();
        drop(first);
        assert!(
            gate.admit().await.is_none(),
            "no queue once no auth is needed"
        );
        gate.rejected("p");
        gate.rejected("p");
        gate.not_needed();
        gate.rejected("p");
        assert!(!gate.is_open(), "not_needed does not forgive rejections");
        assert!(
            gate.admit().await.is_some(),
            "a rejection puts the gate on probation"
        );
    }
}
