//! Which scheme answers a parent's `407`, and the handshakes other than NTLM's probe:
//! Negotiate (Kerberos through SPNEGO, RFC 4559) and Basic (RFC 7617).
//!
//! A parent's `Proxy-Authenticate` offer is parsed once into an [`Offer`] (no string compares
//! elsewhere) and cached per parent. `Auth Auto` learns the offer with one probe without
//! credentials, then prefers Negotiate when a ticket, keytab or password gives a token, else the
//! NTLM dialect when NTLM credentials exist, else Basic. A Kerberos failure (no ticket, a login
//! the KDC refuses, a token the parent rejects) falls back to NTLM on a fresh connection.
//!
//! Negotiate authenticates the connection like NTLM: the token rides on the probe (which for a
//! body-less request is the request itself), further legs are answered on the same connection,
//! and a success without a final token is a success. Every connection gets a fresh context:
//! Kerberos authenticators are single-use and Squid refuses replays. Basic is sent only to a
//! parent that challenged with it, and on every request (it does not authenticate connections).
//! Each scheme has its own lockout gate, so a wrong password for one cannot hide behind another.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::AsyncWriteExt;

use crate::auth::negotiate::{self, KerberosCredentials, NegotiateContext, NegotiateError};
use crate::config::{AuthChoice, AuthSettings, Limits, ParentProxy};
use crate::http::BodyKind;
use crate::http::body::{copy_body, response_body};
use crate::http::head::{RequestHead, ResponseHead};
use crate::proxy::Shared;
use crate::proxy::handshake::{self, AuthGate, ProbeOutcome, has_secret, response_keeps_alive};
use crate::upstream::{AuthState, UpstreamConn, UpstreamError};

/// An authentication scheme a parent can offer and we can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthScheme {
    /// `Negotiate` (RFC 4559): SPNEGO carrying Kerberos.
    Negotiate,
    /// `NTLM` (MS-NLMP), with the configured dialect.
    Ntlm,
    /// `Basic` (RFC 7617).
    Basic,
}

impl AuthScheme {
    /// The scheme's name as written in headers.
    pub fn name(self) -> &'static str {
        match self {
            AuthScheme::Negotiate => "Negotiate",
            AuthScheme::Ntlm => "NTLM",
            AuthScheme::Basic => "Basic",
        }
    }

    fn parse(word: &[u8]) -> Option<Self> {
        [AuthScheme::Negotiate, AuthScheme::Ntlm, AuthScheme::Basic]
            .into_iter()
            .find(|s| word.eq_ignore_ascii_case(s.name().as_bytes()))
    }

    /// Whether the scheme authenticates the TCP connection (else every request carries it).
    pub fn is_connection_bound(self) -> bool {
        self != AuthScheme::Basic
    }
}

/// The schemes of a `407`'s `Proxy-Authenticate` fields, in the parent's order, with the
/// token each one carries (`Negotiate <token>`, `NTLM <token>`), if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    /// `(scheme, token)` in order; unknown schemes are left out.
    pub schemes: Vec<(AuthScheme, Option<Vec<u8>>)>,
}

impl Offer {
    /// Parses every `Proxy-Authenticate` field of `head`. A field may list several challenges
    /// separated by commas (RFC 9110 §11.6.1); an item whose first word holds a `=` is an
    /// auth-param of the previous challenge and names no scheme.
    pub fn parse(head: &ResponseHead) -> Offer {
        let mut schemes = Vec::new();
        let items = head
            .headers
            .get_all("proxy-authenticate")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii);
        for item in items {
            let mut parts = item.splitn(2, |&b| b == b' ');
            let word = parts.next().unwrap_or_default();
            if word.contains(&b'=') {
                continue;
            }
            let Some(scheme) = AuthScheme::parse(word) else {
                continue;
            };
            let rest = parts.next().map(<[u8]>::trim_ascii).unwrap_or_default();
            let token = (scheme != AuthScheme::Basic && !rest.is_empty())
                .then(|| BASE64.decode(rest).ok())
                .flatten();
            schemes.push((scheme, token));
        }
        Offer { schemes }
    }

    /// Whether `scheme` is offered.
    pub fn has(&self, scheme: AuthScheme) -> bool {
        self.schemes.iter().any(|(s, _)| *s == scheme)
    }

    /// The token carried by the `scheme` challenge, if any.
    pub fn token(&self, scheme: AuthScheme) -> Option<&[u8]> {
        self.schemes
            .iter()
            .find(|(s, _)| *s == scheme)
            .and_then(|(_, t)| t.as_deref())
    }
}

/// Per-parent knowledge and per-scheme lockout gates, shared by every session of one
/// configuration (reset on reload with the rest of `Shared`).
#[derive(Debug)]
pub struct SchemeState {
    /// What each parent (by identity) offered in its last unauthenticated `407`.
    offers: Mutex<HashMap<ParentProxy, Offer>>,
    /// Until when Negotiate is skipped for a parent under `Auto` after it failed there.
    kerberos_failed: Mutex<HashMap<ParentProxy, Instant>>,
    /// How long such a failure makes `Auto` prefer the other schemes.
    retry_after: Duration,
    /// Lockout gate for Negotiate (a refused password or keytab, a rejected token).
    negotiate: AuthGate,
    /// Lockout gate for Basic.
    basic: AuthGate,
}

impl SchemeState {
    /// Fresh state; `limits` gives the lockout threshold and the back-off.
    pub fn new(limits: &Limits) -> Self {
        SchemeState {
            offers: Mutex::new(HashMap::new()),
            kerberos_failed: Mutex::new(HashMap::new()),
            retry_after: limits.parent_backoff,
            negotiate: AuthGate::new(limits.auth_failures),
            basic: AuthGate::new(limits.auth_failures),
        }
    }

    /// The lockout gate of `scheme` (NTLM's is `Shared::gate`, as before this module).
    pub fn gate<'a>(&'a self, shared: &'a Shared, scheme: AuthScheme) -> &'a AuthGate {
        match scheme {
            AuthScheme::Ntlm => &shared.gate,
            AuthScheme::Negotiate => &self.negotiate,
            AuthScheme::Basic => &self.basic,
        }
    }

    fn offer(&self, parent: &ParentProxy) -> Option<Offer> {
        let offers = self.offers.lock().unwrap_or_else(|p| p.into_inner());
        offers.get(parent).cloned()
    }

    fn remember(&self, parent: &ParentProxy, offer: &Offer) {
        if offer.schemes.is_empty() {
            return;
        }
        let mut offers = self.offers.lock().unwrap_or_else(|p| p.into_inner());
        offers.insert(parent.clone(), offer.clone());
    }

    fn kerberos_failed_at(&self, parent: &ParentProxy) {
        let mut failed = self
            .kerberos_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        failed.insert(parent.clone(), Instant::now() + self.retry_after);
    }

    fn kerberos_backed_off(&self, parent: &ParentProxy) -> bool {
        let failed = self
            .kerberos_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        failed
            .get(parent)
            .is_some_and(|until| Instant::now() < *until)
    }

    /// The scheme a fresh connection to `parent` will try first, when known before probing
    /// (for the lockout check); `None` when the offer must be learnt first.
    pub fn expected(&self, shared: &Shared, parent: &ParentProxy) -> Option<AuthScheme> {
        match shared.config.auth.scheme {
            AuthChoice::Ntlm => Some(AuthScheme::Ntlm),
            AuthChoice::Negotiate => Some(AuthScheme::Negotiate),
            AuthChoice::Basic => self
                .offer(parent)
                .filter(|o| o.has(AuthScheme::Basic))
                .map(|_| AuthScheme::Basic),
            AuthChoice::Auto => self
                .offer(parent)
                .and_then(|o| self.pick(shared, parent, &o, &[])),
        }
    }

    /// `Auto`'s preference among what `offer` holds, skipping `tried` schemes and closed
    /// gates: Negotiate, then NTLM (with NTLM credentials), then Basic (with a password).
    fn pick(
        &self,
        shared: &Shared,
        parent: &ParentProxy,
        offer: &Offer,
        tried: &[AuthScheme],
    ) -> Option<AuthScheme> {
        let auth = &shared.config.auth;
        let usable =
            |s: AuthScheme| offer.has(s) && !tried.contains(&s) && self.gate(shared, s).is_open();
        if usable(AuthScheme::Negotiate)
            && negotiate::is_available()
            && !self.kerberos_backed_off(parent)
        {
            return Some(AuthScheme::Negotiate);
        }
        if usable(AuthScheme::Ntlm) && has_secret(&auth.credentials) {
            return Some(AuthScheme::Ntlm);
        }
        if usable(AuthScheme::Basic) && auth.credentials.password.is_some() {
            return Some(AuthScheme::Basic);
        }
        None
    }

    /// Records the answer to a request that carried `scheme`'s credentials: a `407` counts
    /// against that scheme's gate, anything else proves it (and a connection-bound scheme
    /// leaves `up` authenticated, ready for the pool).
    pub fn answered(
        &self,
        shared: &Shared,
        scheme: AuthScheme,
        status: u16,
        up: &mut UpstreamConn,
        who: &str,
    ) {
        let gate = self.gate(shared, scheme);
        if status == 407 {
            gate.rejected(who);
            if scheme == AuthScheme::Negotiate
                && let crate::upstream::PoolKey::Parent(p) = &up.key
            {
                self.kerberos_failed_at(p);
            }
        } else {
            gate.accepted();
            // Basic connections stay `Fresh`, so the pool never hands them out without a
            // header; each Basic request carries its credentials on a connection of its own.
            if scheme.is_connection_bound() {
                up.auth = AuthState::Authenticated;
            }
        }
    }
}

/// Whether requests to parents may need authentication at all (else they go out plainly).
pub fn may_authenticate(auth: &AuthSettings) -> bool {
    match auth.scheme {
        AuthChoice::Ntlm => has_secret(&auth.credentials),
        AuthChoice::Basic => auth.credentials.password.is_some(),
        // A ticket cache needs nothing configured.
        AuthChoice::Negotiate | AuthChoice::Auto => true,
    }
}

/// Whether the probe is the request itself (a body-less, non-`HEAD` request or a `CONNECT`:
/// the parent's answer to it is the answer), or only a body-less copy sent ahead of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeMode {
    /// The probe is the request: an answer to it goes to the client.
    IsRequest,
    /// The request (with a body, or a `HEAD`) follows the probe.
    Ahead,
}

/// The service principal for `parent`: `KerberosSPN`, else `HTTP@<host as configured>`.
pub fn service_principal(auth: &AuthSettings, parent: &ParentProxy) -> String {
    auth.kerberos
        .spn
        .clone()
        .unwrap_or_else(|| negotiate::service_principal_for_host(&parent.host))
}

/// The Kerberos identities to try, in order: the configured keytab alone, else the ticket
/// cache, then the configured password (`Username`, with `Domain` as the realm when it looks
/// like one, i.e. has a dot; else the library's default realm).
pub fn kerberos_sources(auth: &AuthSettings) -> Vec<KerberosCredentials> {
    if let Some(path) = &auth.kerberos.keytab {
        return vec![KerberosCredentials::Keytab {
            path: path.clone(),
            principal: auth.kerberos.principal.clone(),
        }];
    }
    let mut sources = vec![KerberosCredentials::DefaultCache];
    let creds = &auth.credentials;
    if let Some(password) = &creds.password
        && !creds.user.is_empty()
    {
        let user = if creds.user.contains('@') || !creds.domain.contains('.') {
            creds.user.clone()
        } else {
            format!("{}@{}", creds.user, creds.domain.to_ascii_uppercase())
        };
        sources.push(KerberosCredentials::Password {
            user,
            password: password.clone(),
        });
    }
    sources
}

/// Creates a context for `spn` from the first identity that works and takes its first token,
/// off the async threads (the library may talk to the KDC).
pub async fn first_token(
    spn: String,
    sources: Vec<KerberosCredentials>,
) -> Result<(NegotiateContext, Vec<u8>), NegotiateError> {
    let joined = tokio::task::spawn_blocking(move || {
        let mut last = NegotiateError::NoCredentials {
            detail: "no ticket cache, keytab or password configured".to_string(),
        };
        for creds in sources {
            let mut ctx = match NegotiateContext::new(&spn, creds) {
                Ok(ctx) => ctx,
                Err(e @ NegotiateError::NoCredentials { .. }) => {
                    last = e;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let step = ctx.step(None)?;
            return match step.token {
                Some(token) => Ok((ctx, token)),
                None => Err(NegotiateError::Library {
                    operation: "gss_init_sec_context",
                    detail: "no initial token".to_string(),
                }),
            };
        }
        Err(last)
    })
    .await;
    joined.unwrap_or_else(|e| {
        Err(NegotiateError::Library {
            operation: "negotiate task",
            detail: e.to_string(),
        })
    })
}

/// Runs one further leg with the parent's token, off the async threads; `None` if the
/// blocking task died (the context is then gone).
async fn next_token(
    mut ctx: NegotiateContext,
    input: Vec<u8>,
) -> Option<(NegotiateContext, Result<Option<Vec<u8>>, NegotiateError>)> {
    tokio::task::spawn_blocking(move || {
        let step = ctx.step(Some(&input)).map(|s| s.token);
        (ctx, step)
    })
    .await
    .ok()
}

/// The `Proxy-Authorization` value for Basic: `user:password`, base64 (RFC 7617 §2; UTF-8).
fn basic_authorization(auth: &AuthSettings) -> Option<String> {
    let password = auth.credentials.password.as_ref()?;
    let pair = format!("{}:{}", auth.credentials.user, password.expose());
    Some(format!("Basic {}", BASE64.encode(pair)))
}

fn io_error(who: &str) -> impl FnOnce(std::io::Error) -> UpstreamError + '_ {
    move |source| UpstreamError::Io {
        who: who.to_string(),
        source,
    }
}

/// Sends `probe` with an optional `Proxy-Authorization` and reads the final answer.
async fn send_probe(
    up: &mut UpstreamConn,
    probe: &RequestHead,
    authorization: Option<&str>,
    limits: &Limits,
    who: &str,
) -> Result<ResponseHead, UpstreamError> {
    let mut head = probe.clone();
    if let Some(value) = authorization {
        head.headers.push("Proxy-Authorization", value.as_bytes());
    }
    up.stream
        .write_all(&head.to_bytes())
        .await
        .map_err(io_error(who))?;
    handshake::read_final(up, limits, who).await
}

/// Reads and discards a `407`'s body; whether the connection can carry the next leg.
async fn drain_407(
    up: &mut UpstreamConn,
    method: &str,
    resp: &ResponseHead,
    limits: &Limits,
) -> bool {
    let Ok(kind) = response_body(method, resp) else {
        return false;
    };
    if kind == BodyKind::UntilClose || !response_keeps_alive(resp) {
        return false;
    }
    let idle = limits.parent_first_byte.min(Duration::from_secs(60));
    copy_body(
        &mut up.stream,
        &mut up.buf,
        &mut tokio::io::sink(),
        kind,
        idle,
    )
    .await
    .is_ok()
        && up.buf.is_empty()
}

/// The handshake on a fresh connection to `parent`, for any configured scheme.
///
/// With `Auth NTLM*` this is exactly [`handshake::probe`]. Otherwise the offer is learnt (or
/// taken from the cache) and the scheme chosen from it; see the module documentation.
pub async fn probe(
    up: &mut UpstreamConn,
    probe: &RequestHead,
    shared: &Shared,
    parent: &ParentProxy,
    mode: ProbeMode,
    who: &str,
) -> Result<ProbeOutcome, UpstreamError> {
    let config = &shared.config;
    let state = &shared.schemes;
    let choice = config.auth.scheme;
    if choice == AuthChoice::Ntlm {
        return handshake::probe(up, probe, &config.auth, &config.limits, who).await;
    }
    let mut tried: Vec<AuthScheme> = Vec::new();
    // Whether this connection already carried a request (the offer probe): then a scheme
    // that must probe again does so on it, and one whose token rides on the request is fine.
    let mut scheme = match state.expected(shared, parent) {
        Some(s) => s,
        None => {
            let resp = send_probe(up, probe, None, &config.limits, who).await?;
            if resp.status != 407 {
                return Ok(ProbeOutcome::Answer(resp));
            }
            let offer = Offer::parse(&resp);
            state.remember(parent, &offer);
            let chosen = match choice {
                AuthChoice::Basic => offer.has(AuthScheme::Basic).then_some(AuthScheme::Basic),
                _ => state.pick(shared, parent, &offer, &tried),
            };
            let Some(chosen) = chosen else {
                return Ok(ProbeOutcome::NoNtlm(resp));
            };
            if !drain_407(up, &probe.method, &resp, &config.limits).await {
                // The offer is cached now: the next connection goes straight to the scheme.
                return Ok(ProbeOutcome::ParentClosed);
            }
            chosen
        }
    };
    loop {
        match scheme {
            AuthScheme::Ntlm => {
                return handshake::probe(up, probe, &config.auth, &config.limits, who).await;
            }
            AuthScheme::Basic => {
                return Ok(match basic_authorization(&config.auth) {
                    Some(authorization) => ProbeOutcome::Challenge {
                        authorization,
                        scheme: AuthScheme::Basic,
                    },
                    None => ProbeOutcome::Refused(format!(
                        "{who} asks for Basic authentication but no Password is configured"
                    )),
                });
            }
            AuthScheme::Negotiate => {}
        }
        tried.push(AuthScheme::Negotiate);
        let spn = service_principal(&config.auth, parent);
        let failure = match first_token(spn, kerberos_sources(&config.auth)).await {
            Ok((ctx, token)) => {
                return negotiate_legs(up, probe, shared, parent, mode, ctx, token, who).await;
            }
            Err(e) => e,
        };
        if matches!(failure, NegotiateError::LoginFailed { .. }) {
            // A refused password or keytab costs the account like a rejected token.
            state.negotiate.rejected(who);
        }
        // Whatever failed, `Auto` leaves the KDC alone for this parent for a while.
        state.kerberos_failed_at(parent);
        tracing::warn!(parent = who, error = %failure, "Negotiate (Kerberos) is not usable");
        let fallback = match (choice, state.offer(parent)) {
            (AuthChoice::Auto, Some(offer)) => state.pick(shared, parent, &offer, &tried),
            _ => None,
        };
        match fallback {
            Some(next) => scheme = next,
            None => {
                return Ok(ProbeOutcome::Refused(format!(
                    "cntlm cannot authenticate to {who} with Negotiate: {failure}"
                )));
            }
        }
    }
}

/// Sends the Negotiate token(s) on the probe (or hands the first to the caller when the
/// request itself must carry it) and follows the exchange to its end.
#[allow(clippy::too_many_arguments)]
async fn negotiate_legs(
    up: &mut UpstreamConn,
    probe: &RequestHead,
    shared: &Shared,
    parent: &ParentProxy,
    mode: ProbeMode,
    mut ctx: NegotiateContext,
    mut token: Vec<u8>,
    who: &str,
) -> Result<ProbeOutcome, UpstreamError> {
    let state = &shared.schemes;
    let limits = &shared.config.limits;
    if mode == ProbeMode::Ahead {
        // A body-less probe would reach the origin once authenticated: the token goes on the
        // request itself. Kerberos completes in this one leg (RFC 4559 §4.2).
        return Ok(ProbeOutcome::Challenge {
            authorization: format!("Negotiate {}", BASE64.encode(&token)),
            scheme: AuthScheme::Negotiate,
        });
    }
    for _ in 0..5 {
        let authorization = format!("Negotiate {}", BASE64.encode(&token));
        let resp = send_probe(up, probe, Some(&authorization), limits, who).await?;
        let offer = Offer::parse(&resp);
        if resp.status != 407 {
            // A final token (mutual authentication) is checked when present; a success
            // without one is a success.
            if let Some(last) = offer.token(AuthScheme::Negotiate)
                && !ctx.is_complete()
                && let Some((_, Err(e))) = next_token(ctx, last.to_vec()).await
            {
                tracing::warn!(parent = who, error = %e, "the parent's final Negotiate token did not verify");
            }
            state.negotiate.accepted();
            up.auth = AuthState::Authenticated;
            return Ok(ProbeOutcome::Authenticated(resp));
        }
        let continuation = offer.token(AuthScheme::Negotiate).map(<[u8]>::to_vec);
        let Some(input) = continuation.filter(|_| !ctx.is_complete()) else {
            state.remember(parent, &offer);
            state.answered(shared, AuthScheme::Negotiate, 407, up, who);
            if shared.config.auth.scheme == AuthChoice::Auto {
                // Fall back (to NTLM, say) on a fresh connection: this one spoke Kerberos.
                return Ok(ProbeOutcome::ParentClosed);
            }
            return Ok(ProbeOutcome::Refused(format!(
                "{who} rejected cntlm's Kerberos ticket for {}: check the service principal \
                 (KerberosSPN) and the ticket (klist)",
                ctx.service_principal()
            )));
        };
        if !drain_407(up, &probe.method, &resp, limits).await {
            return Ok(ProbeOutcome::ParentClosed);
        }
        match next_token(ctx, input).await {
            Some((back, Ok(Some(next)))) => {
                ctx = back;
                token = next;
            }
            _ => {
                return Err(UpstreamError::Auth {
                    who: who.to_string(),
                    reason: "the Negotiate exchange could not continue".to_string(),
                });
            }
        }
    }
    Err(UpstreamError::Auth {
        who: who.to_string(),
        reason: "the Negotiate exchange did not finish in 5 legs".to_string(),
    })
}

#[path = "scheme_report.rs"]
mod report;
pub use report::{NegotiateReport, negotiate_probe};

#[cfg(test)]
#[path = "scheme_tests.rs"]
mod tests;
