//! One plain (non-CONNECT) request: checked, rewritten only where a proxy must, sent DIRECT or
//! through a parent (with the NTLM handshake on fresh connections, DESIGN.md §2 step 5), and
//! its response relayed back by its framing.
//!
//! The request body is streamed exactly once, concurrently with reading the response, so an
//! interim `100 Continue` reaches the client while it waits to send its body (CNTLM relays the
//! 100 as the final answer and breaks every curl upload over 1 MiB).

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::http::Version;
use crate::http::body::{BodyError, BodyKind, copy_body, request_body, response_body};
use crate::http::head::{HeadLimits, RequestHead, ResponseHead, read_response};
use crate::http::headers::UpgradePolicy;
use crate::proxy::handshake::{self, ProbeOutcome, has_secret, head_error, response_keeps_alive};
use crate::proxy::session::{Client, Next, RequestLog, client_keeps_alive};
use crate::proxy::target::{Target, names_us};
use crate::proxy::{Shared, connect, respond};
use crate::route::Route;
use crate::upstream::{AuthState, PoolKey, Retry, UpstreamConn, UpstreamError};

/// What the session knows about the request being forwarded.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Method, for response framing (HEAD) and retry safety.
    pub method: String,
    /// The client's version, for its keep-alive answer.
    pub client_version: Version,
    /// The request body's framing.
    pub body: BodyKind,
    /// Whether the client wants to keep its connection.
    pub client_keep: bool,
    /// Whether the request asks for a protocol upgrade (its 101 makes a tunnel).
    pub upgrade: bool,
}

impl Ctx {
    /// RFC 9110 §9.2.2: only these may be sent again after the parent might have seen them.
    fn idempotent(&self) -> bool {
        ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]
            .iter()
            .any(|m| self.method.eq_ignore_ascii_case(m))
    }
}

/// Where a response came from, for rewriting a parent's final 407.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An origin reached DIRECT.
    Direct,
    /// A parent proxy.
    Parent,
}

/// Whether the upstream connection may go back to the pool after this response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// If both sides keep it alive and the body ended cleanly.
    IfClean,
    /// Never (a rejected Type 3, a probe answer we could not use).
    Never,
}

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
        return fail(
            client,
            log,
            508,
            "the request names this proxy itself; refusing to loop",
        )
        .await;
    }
    let upgrade = req.headers.contains("upgrade") && req.headers.has_token("connection", "upgrade");
    let ctx = Ctx {
        method: req.method.clone(),
        client_version: req.version,
        body,
        client_keep: client_keeps_alive(req.version, &req.headers),
        upgrade,
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
    match shared.router.route(&target.host) {
        Route::Direct => direct(shared, &ctx, client, out, &target, log).await,
        Route::Parent => via_parents(shared, &ctx, client, out, &target, log).await,
    }
}

/// Connects to an origin DIRECT within the parent connect timeout.
pub async fn connect_origin(
    shared: &Shared,
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
            None => match connect_origin(shared, &target.host, target.port).await {
                Ok(s) => UpstreamConn::fresh(s, key.clone(), AuthState::NotRequired),
                Err(e) => return fail(client, log, e.status(), &e.to_string()).await,
            },
        };
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

async fn via_parents(
    shared: &Shared,
    ctx: &Ctx,
    client: &mut Client,
    mut out: RequestHead,
    target: &Target,
    log: &mut RequestLog,
) -> Next {
    // The parent connection stays keep-alive whatever the client said: the handshake needs
    // it and the pool wants it (CNTLM 0.92.3 forwards the client's `Connection: close`).
    out.headers.push("Proxy-Connection", "keep-alive");
    let config = &shared.config;
    let needs_auth = has_secret(&config.auth.credentials);
    let is_head = ctx.method.eq_ignore_ascii_case("HEAD");
    let mut type3_sent = false;
    let mut skip_auth = false;
    for _ in 0..4 {
        // Only the preferred parent's pool: pooled connections to a fallback parent must
        // not keep traffic away from the first parent once its back-off has passed.
        let pooled = shared
            .parents
            .candidates()
            .first()
            .and_then(|&i| shared.pool.checkout(&PoolKey::Parent(i)));
        let mut up = match pooled {
            Some(c) => c,
            None => match shared.parents.connect(&[]).await {
                Ok((i, s)) => {
                    let state = if needs_auth && !skip_auth {
                        AuthState::Fresh
                    } else {
                        AuthState::NotRequired
                    };
                    UpstreamConn::fresh(s, PoolKey::Parent(i), state)
                }
                Err(e) => {
                    if config.direct_fallback {
                        tracing::warn!(error = %e, "every parent is down: going DIRECT (direct fallback)");
                        let mut out = out;
                        out.headers.remove("proxy-connection");
                        return direct(shared, ctx, client, out, target, log).await;
                    }
                    return fail(client, log, 502, &e.to_string()).await;
                }
            },
        };
        let index = match up.key {
            PoolKey::Parent(i) => i,
            PoolKey::Origin(_) => 0,
        };
        let parent = shared
            .parents
            .get(index)
            .map(ToString::to_string)
            .unwrap_or_default();
        let who = format!("parent {parent}");
        log.via = parent;
        let mut authorization = None;
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
            if !shared.gate.is_open() {
                return fail(client, log, 407, handshake::LOCKED_OUT).await;
            }
            let probe = handshake::probe_head(&out);
            match handshake::probe(&mut up, &probe, &config.auth, &config.limits, &who).await {
                Ok(ProbeOutcome::Challenge { authorization: a }) => authorization = Some(a),
                Ok(ProbeOutcome::ParentClosed) => continue,
                Ok(ProbeOutcome::NoNtlm(resp)) => {
                    let r = Received {
                        head: resp,
                        upload_complete: ctx.body == BodyKind::None,
                    };
                    return relay(shared, ctx, client, up, r, Via::Parent, Reuse::Never, log).await;
                }
                Ok(ProbeOutcome::Answer(resp)) => {
                    up.auth = AuthState::NotRequired;
                    if ctx.body == BodyKind::None && !is_head {
                        // A body-less request's probe is the request itself: this is the answer.
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
                        shared.parents.mark_down(index);
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
                if authorization.is_some() {
                    if r.head.status == 407 {
                        shared.gate.rejected(&who);
                        reuse = Reuse::Never;
                    } else {
                        shared.gate.accepted();
                        up.auth = AuthState::Authenticated;
                    }
                } else if r.head.status == 407
                    && up.reused
                    && needs_auth
                    && ctx.body == BodyKind::None
                {
                    // The parent forgot a pooled connection's authentication: start over.
                    continue;
                }
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
                    shared.parents.mark_down(index);
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
    if kind == BodyKind::UntilClose || !response_keeps_alive(resp) {
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

/// A final response head, and whether the request body was fully sent.
#[derive(Debug)]
pub struct Received {
    /// The final (or 101) response head.
    pub head: ResponseHead,
    /// Whether the whole request body went upstream (else neither side can be reused).
    pub upload_complete: bool,
}

/// Why sending a request failed.
#[derive(Debug)]
pub enum SendError {
    /// A reused connection was dead and nothing that matters was lost: try a fresh one.
    Retryable,
    /// The far side failed; answer the client.
    Upstream(UpstreamError),
    /// The client's body failed (malformed, stalled, gone).
    Client(BodyError),
}

/// Sends `head` and streams the body while reading the response; interim responses (1xx but
/// 101) are relayed to the client as they come.
pub async fn send(
    shared: &Shared,
    ctx: &Ctx,
    client: &mut Client,
    up: &mut UpstreamConn,
    head: &[u8],
    who: &str,
) -> Result<Received, SendError> {
    let limits = &shared.config.limits;
    if let Err(source) = up.stream.write_all(head).await {
        // The parent cannot have acted on a request it did not receive whole.
        return Err(if up.reused {
            SendError::Retryable
        } else {
            SendError::Upstream(UpstreamError::Io {
                who: who.to_string(),
                source,
            })
        });
    }
    let reused = up.reused;
    let retryable = |e: UpstreamError| {
        if e.retry() == Retry::FreshConnection && ctx.body == BodyKind::None && ctx.idempotent() {
            SendError::Retryable
        } else {
            SendError::Upstream(e)
        }
    };
    let head_limits = HeadLimits::response(limits);
    let (mut client_rd, mut client_wr) = client.stream.split();
    let (mut up_rd, mut up_wr) = up.stream.split();
    let download = async {
        for _ in 0..=10 {
            let resp = read_response(&mut up_rd, &mut up.buf, &head_limits, None)
                .await
                .map_err(|e| head_error(e, who, reused))?;
            if !resp.is_interim() || resp.status == 101 {
                return Ok(resp);
            }
            // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
            if ctx.client_version == Version::Http10 {
                continue;
            }
            client_wr
                .write_all(&resp.to_bytes())
                .await
                .map_err(|source| UpstreamError::Io {
                    who: "client".to_string(),
                    source,
                })?;
        }
        Err(UpstreamError::BadResponse {
            who: who.to_string(),
            reason: "more than 10 interim responses".to_string(),
        })
    };
    tokio::pin!(download);
    let first_byte = limits.parent_first_byte;
    if ctx.body == BodyKind::None {
        return match tokio::time::timeout(first_byte, &mut download).await {
            Ok(Ok(head)) => Ok(Received {
                head,
                upload_complete: true,
            }),
            Ok(Err(e)) => Err(retryable(e)),
            Err(_) => Err(SendError::Upstream(UpstreamError::Timeout {
                who: who.to_string(),
            })),
        };
    }
    let upload = copy_body(
        &mut client_rd,
        &mut client.buf,
        &mut up_wr,
        ctx.body,
        limits.parent_first_byte,
    );
    tokio::pin!(upload);
    let upload_complete = tokio::select! {
        r = &mut upload => match r {
            Ok(_) => true,
            // The parent stopped reading (it may have answered early, e.g. 413).
            Err(e) if e.is_write() => false,
            Err(e) => return Err(SendError::Client(e)),
        },
        r = &mut download => {
            return match r {
                Ok(head) => Ok(Received { head, upload_complete: false }),
                Err(e) => Err(SendError::Upstream(e)),
            };
        }
    };
    match tokio::time::timeout(first_byte, &mut download).await {
        Ok(Ok(head)) => Ok(Received {
            head,
            upload_complete,
        }),
        Ok(Err(e)) => Err(SendError::Upstream(e)),
        Err(_) => Err(SendError::Upstream(UpstreamError::Timeout {
            who: who.to_string(),
        })),
    }
}

/// Relays a response to the client: checks its framing before a byte is sent, removes
/// hop-by-hop fields, rewrites a parent's final 407 for clients that prompt, streams the body
/// and parks the upstream connection if it can be reused.
#[allow(clippy::too_many_arguments)]
pub async fn relay(
    shared: &Shared,
    ctx: &Ctx,
    client: &mut Client,
    mut up: UpstreamConn,
    received: Received,
    via: Via,
    reuse: Reuse,
    log: &mut RequestLog,
) -> Next {
    let Received {
        head: resp,
        upload_complete,
    } = received;
    if resp.status == 101 {
        if !ctx.upgrade {
            return fail(
                client,
                log,
                502,
                "upstream switched protocols without being asked",
            )
            .await;
        }
        log.status = 101;
        if client.stream.write_all(&resp.to_bytes()).await.is_err() {
            return Next::Close;
        }
        let idle = shared.config.limits.tunnel_idle;
        log.bytes = connect::tunnel(client, &mut up.stream, &mut up.buf, idle).await;
        return Next::Close;
    }
    let kind = match response_body(&ctx.method, &resp) {
        Ok(k) => k,
        Err(e) => {
            return fail(
                client,
                log,
                502,
                &format!("upstream sent an invalid response: {e}"),
            )
            .await;
        }
    };
    log.status = resp.status;
    let upstream_keep = response_keeps_alive(&resp) && kind != BodyKind::UntilClose;
    let keep = ctx.client_keep && upload_complete && kind != BodyKind::UntilClose;
    let mut head = resp;
    head.headers.strip_hop_by_hop(UpgradePolicy::Strip);
    if head.status == 407 && via == Via::Parent {
        head.headers.remove("proxy-authenticate");
        head.headers
            .push("Proxy-Authenticate", "Basic realm=\"Cntlm for parent\"");
    }
    if !keep {
        head.headers.push("Connection", "close");
    } else if ctx.client_version == Version::Http10 {
        head.headers.push("Connection", "keep-alive");
    }
    if client.stream.write_all(&head.to_bytes()).await.is_err() {
        return Next::Close;
    }
    let idle = shared.config.limits.parent_first_byte;
    match copy_body(&mut up.stream, &mut up.buf, &mut client.stream, kind, idle).await {
        Ok(n) => log.bytes = n,
        Err(e) => {
            // Mid-body: the status is gone already; abort both sides, never pool.
            tracing::info!(error = %e, "response body relay aborted");
            return Next::Close;
        }
    }
    if reuse == Reuse::IfClean && upstream_keep && upload_complete {
        if up.auth == AuthState::Fresh {
            up.auth = AuthState::NotRequired;
        }
        shared.pool.checkin(up);
    }
    if keep { Next::KeepAlive } else { Next::Close }
}
