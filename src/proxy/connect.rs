//! CONNECT tunnels (RFC 9110 §9.3.6), DIRECT or through a parent with the same NTLM handshake
//! as plain requests (the probe is the CONNECT itself carrying the Type 1), and the splice
//! both CONNECT and plain-HTTP `Upgrade` use once the connection becomes a tunnel.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::http::body::BodyKind;
use crate::http::head::RequestHead;
use crate::http::headers::UpgradePolicy;
use crate::proxy::checkout::{Checkout, Handshake};
use crate::proxy::forward::{self, fail};
use crate::proxy::handshake::{self, ProbeOutcome};
use crate::proxy::ntlm_to_basic::{self, ClientAccount};
use crate::proxy::plan::{self, Plan};
use crate::proxy::relay::{self, Ctx, Received, Reuse, Via};
use crate::proxy::scheme::{self, ProbeMode};
use crate::proxy::session::{Client, Next, RequestLog, client_keeps_alive};
use crate::proxy::target::{LOOP_REFUSED, names_us, split_host_port};
use crate::proxy::{Shared, socks_hop};
use crate::upstream::{AuthState, PoolKey, Retry, UpstreamConn, UpstreamError};

const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// Serves one CONNECT request and logs it.
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
    let Some((host, port)) = split_host_port(&req.target, None) else {
        return fail(client, log, 400, "CONNECT needs host:port").await;
    };
    if names_us(&host, port, &shared.listening) {
        return fail(client, log, 508, LOOP_REFUSED).await;
    }
    let account = match ntlm_to_basic::account_for(shared, &req.headers, client, log).await {
        Ok(account) => account,
        Err(next) => return next,
    };
    let ctx = Ctx {
        method: req.method.clone(),
        client_version: req.version,
        body: BodyKind::None,
        client_keep: client_keeps_alive(req.version, &req.headers),
        upgrade: false,
        isa: None,
    };
    // Boxed, like the SOCKS5 hop below: their states would otherwise size this future,
    // which lives as long as the tunnel.
    let plan = Box::pin(plan::decide(shared, &plan::connect_url(&host, port), &host)).await;
    if !plan.socks.is_empty() {
        match Box::pin(socks_hop::connect(shared, &plan.socks, &host, port)).await {
            Ok((parent, mut up)) => {
                log.via = format!("SOCKS5 {parent}");
                return established(shared, client, &mut up, log).await;
            }
            Err(e) if plan.parents.is_empty() && !plan.direct_after => {
                return fail(client, log, 502, &e.to_string()).await;
            }
            Err(e) => tracing::debug!(error = %e, "no SOCKS5 parent: trying the next entries"),
        }
    }
    if plan.parents.is_empty() {
        direct(shared, client, &host, port, log).await
    } else {
        via_parents(shared, &ctx, client, req, &plan, account.as_ref(), log).await
    }
}

async fn direct(
    shared: &Shared,
    client: &mut Client,
    host: &str,
    port: u16,
    log: &mut RequestLog,
) -> Next {
    log.via = "DIRECT".to_string();
    let mut up = match forward::connect_origin(shared, client.peer.ip(), host, port).await {
        Ok(s) => s,
        Err(e) => return fail(client, log, e.status(), &e.to_string()).await,
    };
    established(shared, client, &mut up, log).await
}

/// Answers 200 and splices the client with `up`, a connection to the target itself.
async fn established(
    shared: &Shared,
    client: &mut Client,
    up: &mut TcpStream,
    log: &mut RequestLog,
) -> Next {
    log.status = 200;
    if client.stream.write_all(ESTABLISHED).await.is_err() {
        return Next::Close;
    }
    let mut none = BytesMut::new();
    log.bytes = tunnel(client, up, &mut none, shared.config.limits.tunnel_idle).await;
    Next::Close
}

async fn via_parents(
    shared: &Shared,
    ctx: &Ctx,
    client: &mut Client,
    req: RequestHead,
    plan: &Plan,
    account: Option<&ClientAccount>,
    log: &mut RequestLog,
) -> Next {
    let mut out = req;
    out.headers.strip_hop_by_hop(UpgradePolicy::Strip);
    if !out.headers.contains("host") {
        let target = out.target.clone();
        out.headers.push("Host", target);
    }
    out.headers.substitute(&shared.config.headers);
    // Boxed: the handshake's state is freed before the tunnel starts instead of sizing this
    // future, which lives as long as the tunnel, by it.
    let opened = Box::pin(open_via_parents(shared, &out, plan, account)).await;
    log.via = opened.via;
    match opened.outcome {
        ParentOutcome::Open(up) => established_parent(shared, client, up, log).await,
        ParentOutcome::Answer { up, head, reuse } => {
            let r = Received {
                head,
                upload_complete: true,
            };
            Box::pin(relay::relay(
                shared,
                ctx,
                client,
                up,
                r,
                Via::Parent,
                reuse,
                log,
            ))
            .await
        }
        ParentOutcome::Failed { status, message } => fail(client, log, status, &message).await,
        ParentOutcome::AllDown(e) => {
            if plan.direct_after
                && let Some((host, port)) = split_host_port(&out.target, None)
            {
                shared.parents.enter_direct_fallback(&e);
                return direct(shared, client, &host, port, log).await;
            }
            fail(client, log, 502, &e.to_string()).await
        }
    }
}

/// How a CONNECT through the parents ended.
#[derive(Debug)]
pub enum ParentOutcome {
    /// The parent answered 2xx: the connection is a tunnel now (bytes it already sent after
    /// its head are in the connection's buffer).
    Open(UpstreamConn),
    /// The parent answered something else (a 403, a final 407, ...): its head, the body
    /// unread on the connection, and whether the connection may be pooled after it.
    Answer {
        /// The parent's response head.
        head: crate::http::ResponseHead,
        /// The connection, positioned at the response body.
        up: UpstreamConn,
        /// Whether it may go back to the pool once the body is relayed.
        reuse: Reuse,
    },
    /// We failed (or refuse) ourselves: the status and text to answer with.
    Failed {
        /// The HTTP status.
        status: u16,
        /// Why, for the client.
        message: String,
    },
    /// None of the plan's parents could be reached (the plan may allow DIRECT after them).
    AllDown(UpstreamError),
}

/// A [`ParentOutcome`] and the parent it came from (`-` when none was reached).
#[derive(Debug)]
pub struct ParentConnect {
    /// `host:port` of the parent used, for logs.
    pub via: String,
    /// What happened.
    pub outcome: ParentOutcome,
}

/// Sends the CONNECT request `out` (hop-by-hop fields already stripped, `Host` and header
/// substitutions applied) through the plan's parents, authenticating on a fresh connection
/// with the same probe as plain requests (the CONNECT itself carries the Type 1) and the
/// lockout gate; `account` is the client's own (`-B`), else the configured credentials
/// apply. The CONNECT handler, `-L` tunnels and the SOCKS5 listener all open their tunnels
/// here.
pub async fn open_via_parents(
    shared: &Shared,
    out: &RequestHead,
    plan: &Plan,
    account: Option<&ClientAccount>,
) -> ParentConnect {
    let mut via = "-".to_string();
    let outcome = parent_attempts(shared, out, plan, account, &mut via).await;
    ParentConnect { via, outcome }
}

async fn parent_attempts(
    shared: &Shared,
    out: &RequestHead,
    plan: &Plan,
    account: Option<&ClientAccount>,
    via: &mut String,
) -> ParentOutcome {
    let config = &shared.config;
    let mut out = out.clone();
    out.headers.set("Proxy-Connection", "keep-alive");
    let failed = |status: u16, message: String| ParentOutcome::Failed { status, message };
    // -B: the client's account, with its own pool identity and lockout count.
    let identity = account.map(ClientAccount::identity);
    let account_gate = account.map(|a| shared.accounts.gate(a));
    let needs_auth = account.is_some() || scheme::may_authenticate(&config.auth);
    let mut type3_sent = false;
    for _ in 0..4 {
        let handshake = if needs_auth {
            Handshake::Wanted
        } else {
            Handshake::NotWanted
        };
        let (mut up, slot) = match shared
            .parent_connection(&plan.parents, identity, handshake)
            .await
        {
            Ok(Checkout { conn, slot }) => (conn, slot),
            Err(e) => return ParentOutcome::AllDown(e),
        };
        let PoolKey::Parent(parent) = up.key.clone() else {
            return failed(
                502,
                "internal error: an origin connection as parent".to_string(),
            );
        };
        let who = format!("parent {parent}");
        *via = parent.to_string();
        let mut head = out.clone();
        let mut probation = None;
        let mut used = None;
        if up.auth == AuthState::Fresh {
            if type3_sent {
                return failed(
                    502,
                    format!("{who} dropped the connection we authenticated"),
                );
            }
            let gate = match &account_gate {
                Some(g) => g.as_ref(),
                None => (shared.schemes.expected(shared, &parent))
                    .map_or(&shared.gate, |s| shared.schemes.gate(shared, s)),
            };
            probation = gate.admit().await;
            if !gate.is_open() {
                return failed(407, handshake::LOCKED_OUT.to_string());
            }
            // Boxed: the handshake's state is freed before the tunnel starts instead of
            // sizing this future (held for the tunnel's life) by it.
            let outcome = match account {
                Some(a) => Box::pin(ntlm_to_basic::probe(&mut up, &out, a, shared, &who)).await,
                None => {
                    Box::pin(scheme::probe(
                        &mut up,
                        &out,
                        shared,
                        &parent,
                        ProbeMode::IsRequest,
                        &who,
                    ))
                    .await
                }
            };
            drop(slot); // the expensive part (connect, Type 1, Type 2) is over
            match outcome {
                Ok(ProbeOutcome::Challenge {
                    authorization,
                    scheme: s,
                }) => {
                    head.headers
                        .push("Proxy-Authorization", authorization.as_bytes());
                    type3_sent = true;
                    used = Some(s);
                }
                Ok(ProbeOutcome::Authenticated(resp)) => {
                    drop(probation);
                    return open_or_answer(up, resp);
                }
                Ok(ProbeOutcome::Refused(message)) => {
                    drop(probation);
                    return failed(407, message);
                }
                Ok(ProbeOutcome::ParentClosed) => continue,
                Ok(ProbeOutcome::NoNtlm(resp)) => {
                    drop(probation);
                    return ParentOutcome::Answer {
                        head: resp,
                        up,
                        reuse: Reuse::Never,
                    };
                }
                Ok(ProbeOutcome::Answer(resp)) => {
                    gate.not_needed();
                    drop(probation);
                    up.auth = AuthState::NotRequired;
                    return open_or_answer(up, resp);
                }
                Err(e) => {
                    if matches!(e, UpstreamError::Timeout { .. }) {
                        shared.parents.mark_down(&parent);
                    }
                    if e.retry() == Retry::FreshConnection {
                        continue;
                    }
                    return failed(e.status(), e.to_string());
                }
            }
        }
        if let Err(source) = up.stream.write_all(&head.to_bytes()).await {
            if up.reused && !type3_sent {
                continue;
            }
            let e = UpstreamError::Io { who, source };
            return failed(502, e.to_string());
        }
        let resp = match handshake::read_final(&mut up, &config.limits, &who).await {
            Ok(r) => r,
            Err(e) => {
                if e.retry() == Retry::FreshConnection && !type3_sent {
                    continue;
                }
                if matches!(e, UpstreamError::Timeout { .. }) {
                    shared.parents.mark_down(&parent);
                }
                return failed(e.status(), e.to_string());
            }
        };
        if let Some(s) = used {
            match &account_gate {
                Some(g) => ntlm_to_basic::answered(g, resp.status, &mut up, &who),
                None => shared
                    .schemes
                    .answered(shared, s, resp.status, &mut up, &who),
            }
            if resp.status == 407 {
                drop(probation);
                return ParentOutcome::Answer {
                    head: resp,
                    up,
                    reuse: Reuse::Never,
                };
            }
        } else if resp.status == 407 && up.reused && needs_auth && shared.may_authenticate(&parent)
        {
            continue; // the pooled connection lost its authentication: handshake afresh
        }
        drop(probation);
        return open_or_answer(up, resp);
    }
    failed(
        502,
        "the parent proxy kept closing the connection during authentication".to_string(),
    )
}

/// A 2xx from the parent opens the tunnel; anything else is an answer to relay.
fn open_or_answer(up: UpstreamConn, resp: crate::http::ResponseHead) -> ParentOutcome {
    if (200..300).contains(&resp.status) {
        // A 2xx to CONNECT has no body, whatever its headers claim (RFC 9110 §9.3.6).
        ParentOutcome::Open(up)
    } else {
        ParentOutcome::Answer {
            head: resp,
            up,
            reuse: Reuse::IfClean,
        }
    }
}

/// Answers the client with our own clean 200 (rather than relay framing fields of the
/// parent's it must ignore) and splices with the parent's tunnel.
async fn established_parent(
    shared: &Shared,
    client: &mut Client,
    mut up: UpstreamConn,
    log: &mut RequestLog,
) -> Next {
    log.status = 200;
    if client.stream.write_all(ESTABLISHED).await.is_err() {
        return Next::Close;
    }
    log.bytes = tunnel(
        client,
        &mut up.stream,
        &mut up.buf,
        shared.config.limits.tunnel_idle,
    )
    .await;
    Next::Close
}

/// Turns the client connection into a tunnel to `up`: bytes already read on either side go
/// first, then both directions are copied until both ended or nothing moved for `idle`.
/// Returns the bytes relayed in both directions.
pub async fn tunnel(
    client: &mut Client,
    up: &mut TcpStream,
    up_buf: &mut BytesMut,
    idle: Duration,
) -> u64 {
    let mut total = 0u64;
    if !client.buf.is_empty() {
        if up.write_all(&client.buf).await.is_err() {
            return total;
        }
        total += client.buf.len() as u64;
    }
    if !up_buf.is_empty() {
        if client.stream.write_all(up_buf).await.is_err() {
            return total;
        }
        total += up_buf.len() as u64;
    }
    // The head buffers are done with: give their memory back rather than hold it for the
    // tunnel's life (thousands of idle tunnels would keep 24 KiB each for nothing).
    client.buf = BytesMut::new();
    *up_buf = BytesMut::new();
    total + splice(&mut client.stream, up, idle).await
}

/// Bytes moved per read while a tunnel carries data. The buffer exists only while its
/// direction has data waiting (see `splice`), so its size costs nothing per idle tunnel.
const TUNNEL_CHUNK: usize = 64 * 1024;

/// Copies both directions between `a` and `b` with half-close: when one side ends its
/// sending, the other side's write half is shut down and the other direction goes on.
/// Ends when both directions ended, on any error, or after `idle` without traffic.
///
/// Each direction waits for readiness without a buffer, takes one when data is there and
/// drops it again as soon as the socket is drained: an idle tunnel holds no copy buffer, a
/// busy one a single `TUNNEL_CHUNK` per direction. Two descriptors per tunnel, no pipes
/// (`splice(2)` would need a pipe pair per direction: three times the descriptors).
pub async fn splice(a: &mut TcpStream, b: &mut TcpStream, idle: Duration) -> u64 {
    let (a_rd, mut a_wr) = a.split();
    let (b_rd, mut b_wr) = b.split();
    let mut a_buf: Option<Vec<u8>> = None;
    let mut b_buf: Option<Vec<u8>> = None;
    let (mut a_done, mut b_done) = (false, false);
    let mut total = 0u64;
    // One idle timer for the tunnel's life, pushed back after every event (cheaper than a
    // new timer per chunk on a bulk transfer).
    let quiet = tokio::time::sleep(idle);
    tokio::pin!(quiet);
    while !(a_done && b_done) {
        quiet.as_mut().reset(tokio::time::Instant::now() + idle);
        tokio::select! {
            r = a_rd.readable(), if !a_done => {
                if r.is_err() {
                    break;
                }
                let buf = a_buf.get_or_insert_with(|| vec![0u8; TUNNEL_CHUNK]);
                match a_rd.try_read(buf) {
                    Ok(0) => {
                        a_done = true;
                        a_buf = None;
                        let _ = b_wr.shutdown().await;
                    }
                    Ok(n) => {
                        if !matches!(tokio::time::timeout(idle, b_wr.write_all(&buf[..n])).await, Ok(Ok(()))) {
                            break;
                        }
                        total += n as u64;
                    }
                    // Drained (or a spurious wake-up): idle again, so no buffer.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => a_buf = None,
                    Err(_) => break,
                }
            },
            r = b_rd.readable(), if !b_done => {
                if r.is_err() {
                    break;
                }
                let buf = b_buf.get_or_insert_with(|| vec![0u8; TUNNEL_CHUNK]);
                match b_rd.try_read(buf) {
                    Ok(0) => {
                        b_done = true;
                        b_buf = None;
                        let _ = a_wr.shutdown().await;
                    }
                    Ok(n) => {
                        if !matches!(tokio::time::timeout(idle, a_wr.write_all(&buf[..n])).await, Ok(Ok(()))) {
                            break;
                        }
                        total += n as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => b_buf = None,
                    Err(_) => break,
                }
            },
            _ = &mut quiet => break,
        }
    }
    total
}
