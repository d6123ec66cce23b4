//! One plain (non-CONNECT) request: checked, rewritten only where a proxy must, sent DIRECT or
//! through a parent (with the NTLM handshake on fresh connections, DESIGN.md §2 step 5), and
//! its response relayed back by its framing.
//!
//! The exchange itself (body streaming, 1xx, relaying the answer) is in `relay`.

use std::net::IpAddr;

use tokio::net::TcpStream;

use crate::http::Version;
use crate::http::body::{BodyError, BodyKind, copy_body, request_body, response_body};
use crate::http::head::{RequestHead, ResponseHead};
use crate::http::headers::UpgradePolicy;
use crate::proxy::checkout::{Checkout, Handshake};
use crate::proxy::handshake::{self, ProbeOutcome, response_keeps_alive};
use crate::proxy::isa;
use crate::proxy::ntlm_to_basic::{self, ClientAccount};
use crate::proxy::plan::{self, Plan};
use crate::proxy::relay::{Ctx, Received, Reuse, SendError, Via, relay, send};
use crate::proxy::scheme::{self, ProbeMode};
use crate::proxy::session::{Client, Next, RequestLog, client_keeps_alive};
use crate::proxy::target::{LOOP_REFUSED, Target, names_us};
use crate::proxy::{Shared, pacserve, respond, socks_hop};
use crate::upstream::{AuthState, PoolKey, Retry, UpstreamConn, UpstreamError};

/// Answers the client with an error we generate, and closes.
pub async fn fail(client: &mut Client, log: &mut RequestLog, status: u16, message: &str) -> Next {
    log.status = status;
    tracing::debug!(status, message, "answering with an error");
    let _ = respond::send_error(&mut client.stream, status, message).await;
    Next::Close
}

/// Forwards one request and logs it.
pub async fn serve(shared: &Shared, client: &mut Client, req: RequestHead) -> Next {
    let mut log = RequestLog::new(client.peer, &req);
    let next = handle(shared, client, req, &mut log).await;
    log.finish();
    next
}

async fn handle(
    shared: &Shared,
    client: &mut Client,
    req: RequestHead,
    log: &mut RequestLog,
) -> Next {
    if pacserve::is_pac_request(&req, &shared.listening) {
        return pacserve::serve(shared, client, &req, log).await;
    }
    let Some(target) = Target::parse_absolute(&req.target) else {
        return fail(
            client,
            log,
            400,
            "request target must be an absolute URL (http://host/path): this is a proxy",
        )
        .await;
    };
    if req.headers.count("host") > 1 {
        return fail(client, log, 400, "more than one Host header").await;
    }
    let body = match request_body(&req) {
        Ok(b) => b,
        Err(e) => return fail(client, log, 400, &e.to_string()).await,
    };
    if names_us(&target.host, target.port, &shared.listening) {
        return fail(client, log, 508, LOOP_REFUSED).await;
    }
    let account = match ntlm_to_basic::account_for(shared, &req.headers, client, log).await {
        Ok(account) => account,
        Err(next) => return next,
    };
    let upgrade = req.headers.contains("upgrade") && req.headers.has_token("connection", "upgrade");
    let mut ctx = Ctx {
        method: req.method.clone(),
        client_version: req.version,
        body,
        client_keep: client_keeps_alive(req.version, &req.headers),
        upgrade,
        isa: None,
    };
    let mut out = req;
    out.headers.strip_hop_by_hop(if upgrade {
        UpgradePolicy::Keep
    } else {
        UpgradePolicy::Strip
    });
    // RFC 9112 §3.2.2: a proxy replaces Host with the target's authority.
    out.headers.set("Host", target.authority.as_bytes());
    out.headers.substitute(&shared.config.headers);
    if let BodyKind::Length(n) = body {
        out.headers.set("Content-Length", n.to_string()); // merges identical duplicates
    }
    ctx.isa = isa::candidate(&shared.config, &out, &target);
    // What the PAC sees: the URL without user info, so a script fetched from the network
    // never learns credentials a client put in a URL (it could leak them through DNS).
    let url = format!("{}://{}{}", target.scheme, target.authority, target.path);
    let plan = plan::decide(shared, &url, &target.host).await;
    if !plan.socks.is_empty() {
        match socks_hop::connect(shared, &plan.socks, &target.host, target.port).await {
            Ok(hop) => {
                return socks_hop::forward(shared, &ctx, client, out, &target, hop, log).await;
            }
            Err(e) if plan.parents.is_empty() && !plan.direct_after => {
                return fail(client, log, 502, &e.to_string()).await;
            }
            Err(e) => tracing::debug!(error = %e, "no SOCKS5 parent: trying the next entries"),
        }
    }
    if plan.parents.is_empty() {
        direct(shared, &ctx, client, out, &target, log).await
    } else {
        let way = Way {
            plan: &plan,
            account: account.as_ref(),
        };
        via_parents(shared, &ctx, client, out, &target, way, log).await
    }
}

/// Whether `ip` is one of this host's private services: loopback, unspecified or link-local
/// (169.254.0.0/16 includes cloud metadata services; fe80::/10).
fn host_local(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// DESIGN.md "Who may reach what": in gateway mode a LAN client must not use DIRECT to reach
/// the host's loopback or link-local services. Checked on the connected peer address, so a
/// name that resolves to 127.0.0.1 is caught too.
pub fn check_direct_peer(
    shared: &Shared,
    client: IpAddr,
    stream: &TcpStream,
    target: &str,
) -> Result<(), UpstreamError> {
    let client_local = host_local(client);
    match stream.peer_addr() {
        Ok(peer) if shared.config.gateway && !client_local && host_local(peer.ip()) => {
            Err(UpstreamError::Forbidden {
                target: target.to_string(),
                rule: "in gateway mode, LAN clients may not reach this host's loopback or link-local services DIRECT",
            })
        }
        _ => Ok(()),
    }
}

/// Connects to an origin DIRECT within the parent connect timeout, for `client`.
pub async fn connect_origin(
    shared: &Shared,
    client: IpAddr,
    host: &str,
    port: u16,
) -> Result<TcpStream, UpstreamError> {
    let target = format!("{host}:{port}");
    match tokio::time::timeout(
        shared.config.limits.parent_connect,
        TcpStream::connect((host, port)),
    )
    .await
    {
        Ok(Ok(s)) => {
            check_direct_peer(shared, client, &s, &target)?;
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(UpstreamError::OriginUnreachable {
            target,
            reason: e.to_string(),
        }),
        Err(_) => Err(UpstreamError::Timeout { who: target }),
    }
}

async fn direct(
    shared: &Shared,
    ctx: &Ctx,
    client: &mut Client,
    mut out: RequestHead,
    target: &Target,
    log: &mut RequestLog,
) -> Next {
    log.via = "DIRECT".to_string();
    if target.scheme != "http" {
        return fail(
            client,
            log,
            400,
            "only http:// URLs can be fetched directly; use CONNECT for https",
        )
        .await;
    }
    out.target = target.path.clone();
    if out.version == Version::Http10 && !ctx.upgrade {
        out.headers.push("Connection", "keep-alive");
    }
    let bytes = out.to_bytes();
    let key = PoolKey::Origin(format!(
        "{}:{}",
        target.host.to_ascii_lowercase(),
        target.port
    ));
    let who = format!("origin {}:{}", target.host, target.port);
    for _ in 0..3 {
        let mut up = match shared.pool.checkout(&key) {
            Some(c) => c,
            None => match connect_origin(shared, client.peer.ip(), &target.host, target.port).await
            {
                Ok(s) => UpstreamConn::fresh(s, key.clone(), AuthState::NotRequired),
                Err(e) => return fail(client, log, e.status(), &e.to_string()).await,
            },
        };
        // The pool is shared: a connection a local client opened is not for a LAN client.
        if let Err(e) = check_direct_peer(shared, client.peer.ip(), &up.stream, &who) {
            return fail(client, log, e.status(), &e.to_string()).await;
        }
        match send(shared, ctx, client, &mut up, &bytes, &who).await {
            Ok(r) => {
                return relay(shared, ctx, client, up, r, Via::Direct, Reuse::IfClean, log).await;
            }
            Err(SendError::Retryable) => continue,
            Err(SendError::Upstream(e)) => {
                return fail(client, log, e.status(), &e.to_string()).await;
            }
            Err(SendError::Client(e)) => return client_body_failed(client, log, e).await,
        }
    }
    fail(
        client,
        log,
        502,
        &format!("{who} keeps closing the connection"),
    )
    .await
}

async fn client_body_failed(client: &mut Client, log: &mut RequestLog, e: BodyError) -> Next {
    match e {
        BodyError::Malformed(_) => fail(client, log, 400, &e.to_string()).await,
        BodyError::Timeout => fail(client, log, 408, "request body stalled").await,
        _ => Next::Close,
    }
}

/// How a parent-bound request leaves: along which parents, and as whom.
#[derive(Clone, Copy)]
struct Way<'a> {
    /// The parents to try, in order, and whether DIRECT may follow them.
    plan: &'a Plan,
    /// `-B`: the client's own account; `None` means the configured credentials.
    account: Option<&'a ClientAccount>,
}

async fn via_parents(
    shared: &Shared,
    ctx: &Ctx,
    client: &mut Client,
    mut out: RequestHead,
    target: &Target,
    way: Way<'_>,
    log: &mut RequestLog,
) -> Next {
    let Way { plan, account } = way;
    // The parent connection stays keep-alive whatever the client said: the handshake needs
    // it and the pool wants it (CNTLM 0.92.3 forwards the client's `Connection: close`).
    out.headers.push("Proxy-Connection", "keep-alive");
    let config = &shared.config;
    // -B: the client's account, with its own pool identity and lockout count.
    let identity = account.map(ClientAccount::identity);
    let account_gate = account.map(|a| shared.accounts.gate(a));
    let needs_auth = account.is_some() || scheme::may_authenticate(&config.auth);
    let is_head = ctx.method.eq_ignore_ascii_case("HEAD");
    let mut type3_sent = false;
    let mut skip_auth = false;
    for _ in 0..4 {
        let handshake = if needs_auth && !skip_auth {
            Handshake::Wanted
        } else {
            Handshake::NotWanted
        };
        let (mut up, slot) = match shared
            .parent_connection(&plan.parents, identity, handshake)
            .await
        {
            Ok(Checkout { conn, slot }) => (conn, slot),
            Err(e) => {
                if plan.direct_after {
                    shared.parents.enter_direct_fallback(&e);
                    let mut out = out;
                    out.headers.remove("proxy-connection");
                    return direct(shared, ctx, client, out, target, log).await;
                }
                return fail(client, log, 502, &e.to_string()).await;
            }
        };
        let PoolKey::Parent(parent) = up.key.clone() else {
            return fail(
                client,
                log,
                502,
                "internal error: an origin connection as parent",
            )
            .await;
        };
        let who = format!("parent {parent}");
        log.via = parent.to_string();
        let mut authorization = None;
        let mut used = None;
        let mut probation = None;
        if up.auth == AuthState::Fresh {
            if type3_sent {
                return fail(
                    client,
                    log,
                    502,
                    &format!("{who} dropped the connection we authenticated"),
                )
                .await;
            }
            let gate = match &account_gate {
                Some(g) => g.as_ref(),
                None => (shared.schemes.expected(shared, &parent))
                    .map_or(&shared.gate, |s| shared.schemes.gate(shared, s)),
            };
            probation = gate.admit().await;
            if !gate.is_open() {
                return fail(client, log, 407, handshake::LOCKED_OUT).await;
            }
            let probe = handshake::probe_head(&out);
            let mode = if ctx.body == BodyKind::None && !is_head {
                ProbeMode::IsRequest
            } else {
                ProbeMode::Ahead
            };
            let outcome = match account {
                Some(a) => ntlm_to_basic::probe(&mut up, &probe, a, shared, &who).await,
                None => scheme::probe(&mut up, &probe, shared, &parent, mode, &who).await,
            };
            drop(slot); // the expensive part (connect, Type 1, Type 2) is over
            match outcome {
                Ok(ProbeOutcome::Challenge {
                    authorization: a,
                    scheme: s,
                }) => {
                    authorization = Some(a);
                    used = Some(s);
                }
                Ok(ProbeOutcome::Authenticated(resp)) => {
                    drop(probation);
                    let r = Received {
                        head: resp,
                        upload_complete: true,
                    };
                    return relay(shared, ctx, client, up, r, Via::Parent, Reuse::IfClean, log)
                        .await;
                }
                Ok(ProbeOutcome::Refused(message)) => {
                    drop(probation);
                    return fail(client, log, 407, &message).await;
                }
                Ok(ProbeOutcome::ParentClosed) => continue,
                Ok(ProbeOutcome::NoNtlm(resp)) => {
                    drop(probation);
                    let r = Received {
                        head: resp,
                        upload_complete: ctx.body == BodyKind::None,
                    };
                    return relay(shared, ctx, client, up, r, Via::Parent, Reuse::Never, log).await;
                }
                Ok(ProbeOutcome::Answer(resp)) => {
                    gate.not_needed();
                    up.auth = AuthState::NotRequired;
                    if ctx.body == BodyKind::None && !is_head {
                        // A body-less request's probe is the request itself: this is the answer.
                        drop(probation);
                        let r = Received {
                            head: resp,
                            upload_complete: true,
                        };
                        return relay(shared, ctx, client, up, r, Via::Parent, Reuse::IfClean, log)
                            .await;
                    }
                    // The parent wants no auth: drop the probe's answer and send the real
                    // request plainly, on this connection if it stays open.
                    if !drain_answer(shared, &mut up, &probe.method, &resp).await {
                        skip_auth = true;
                        continue;
                    }
                }
                Err(e) => {
                    if matches!(e, UpstreamError::Timeout { .. }) {
                        shared.parents.mark_down(&parent);
                    }
                    if e.retry() == Retry::FreshConnection {
                        continue;
                    }
                    return fail(client, log, e.status(), &e.to_string()).await;
                }
            }
        }
        let mut head = out.clone();
        if let Some(a) = &authorization {
            head.headers.push("Proxy-Authorization", a.as_bytes());
            type3_sent = true;
        }
        match send(shared, ctx, client, &mut up, &head.to_bytes(), &who).await {
            Ok(r) => {
                let mut reuse = Reuse::IfClean;
                if let Some(s) = used {
                    match &account_gate {
                        Some(g) => ntlm_to_basic::answered(g, r.head.status, &mut up, &who),
                        None => shared
                            .schemes
                            .answered(shared, s, r.head.status, &mut up, &who),
                    }
                    // Basic does not authenticate the connection: never pool it as if it did.
                    if r.head.status == 407 || !s.is_connection_bound() {
                        reuse = Reuse::Never;
                    }
                } else if r.head.status == 407
                    && up.reused
                    && needs_auth
                    && shared.may_authenticate(&parent)
                    && ctx.body == BodyKind::None
                {
                    // The parent forgot a pooled connection's authentication: start over.
                    continue;
                }
                drop(probation);
                return relay(shared, ctx, client, up, r, Via::Parent, reuse, log).await;
            }
            Err(SendError::Retryable) if authorization.is_none() => continue,
            Err(SendError::Retryable) => {
                return fail(
                    client,
                    log,
                    502,
                    &format!("{who} closed the connection after authentication"),
                )
                .await;
            }
            Err(SendError::Upstream(e)) => {
                if matches!(e, UpstreamError::Timeout { .. }) {
                    shared.parents.mark_down(&parent);
                }
                return fail(client, log, e.status(), &e.to_string()).await;
            }
            Err(SendError::Client(e)) => return client_body_failed(client, log, e).await,
        }
    }
    fail(
        client,
        log,
        502,
        "the parent proxy kept closing the connection during authentication",
    )
    .await
}

/// Largest unusable probe answer we read and discard rather than open a new connection.
const DRAIN_LIMIT: u64 = 64 * 1024;

/// Drains a probe's unusable answer; whether the connection can carry the real request.
async fn drain_answer(
    shared: &Shared,
    up: &mut UpstreamConn,
    method: &str,
    resp: &ResponseHead,
) -> bool {
    let Ok(kind) = response_body(method, resp) else {
        return false;
    };
    // A large answer (a HEAD probed as GET on a big file) costs less as a new connection
    // than as a download thrown away.
    let small = match kind {
        BodyKind::None => true,
        BodyKind::Length(n) => n <= DRAIN_LIMIT,
        BodyKind::Chunked | BodyKind::UntilClose => false,
    };
    if !small || !response_keeps_alive(resp) {
        return false;
    }
    let idle = shared.config.limits.parent_first_byte;
    copy_body(
        &mut up.stream,
        &mut up.buf,
        &mut tokio::io::sink(),
        kind,
        idle,
    )
    .await
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_local_covers_loopback_link_local_and_mapped() {
        for local in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(host_local(local.parse().expect("ip")), "{local}");
        }
        for remote in [
            "10.0.0.1",
            "192.168.1.1",
            "8.8.8.8",
            "fd00::1",
            "2001:db8::1",
        ] {
            assert!(!host_local(remote.parse().expect("ip")), "{remote}");
        }
    }
}
