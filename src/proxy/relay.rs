//! One exchange on an upstream connection: send a request head, stream its body while
//! reading the response (relaying interim 1xx answers as they come), then relay the final
//! response by its framing and park the connection if both sides allow it.
//!
//! The request body is streamed exactly once, concurrently with reading the response, so an
//! interim `100 Continue` reaches the client while it waits to send its body (CNTLM relays the
//! 100 as the final answer and breaks every curl upload over 1 MiB).

use tokio::io::AsyncWriteExt;

use crate::http::Version;
use crate::http::body::{BodyError, BodyKind, copy_body, response_body};
use crate::http::head::{HeadLimits, ResponseHead, read_response};
use crate::http::headers::UpgradePolicy;
use crate::proxy::forward::fail;
use crate::proxy::handshake::{head_error, response_keeps_alive};
use crate::proxy::isa::{self, Intercept};
use crate::proxy::session::{Client, Next, RequestLog};
use crate::proxy::{Shared, connect};
use crate::upstream::{AuthState, Retry, UpstreamConn, UpstreamError};

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
    /// A GET the ISA scanner plugin may intercept (`-S` / `-G`).
    pub isa: Option<isa::Candidate>,
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
            let mut resp = read_response(&mut up_rd, &mut up.buf, &head_limits, None)
                .await
                .map_err(|e| head_error(e, who, reused))?;
            if !resp.is_interim() || resp.status == 101 {
                return Ok(resp);
            }
            // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
            if ctx.client_version == Version::Http10 {
                continue;
            }
            resp.headers.strip_hop_by_hop(UpgradePolicy::Strip);
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
    if let Some(candidate) = &ctx.isa
        && let Intercept::Done(next) = isa::intercept(
            candidate,
            ctx,
            client,
            &mut up,
            &resp,
            via,
            &shared.config,
            log,
        )
        .await
    {
        return next;
    }
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
