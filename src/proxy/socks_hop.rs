//! Requests through a SOCKS5 parent named by a PAC (`SOCKS5 host:port`): the parent opens a
//! TCP connection to the origin for us (RFC 1928 CONNECT), and from there the request goes as
//! it would DIRECT: origin-form for plain HTTP, a tunnel for CONNECT. These connections are
//! not pooled (the pool's origin keys mean DIRECT), and no credentials are ever offered.

use tokio::net::TcpStream;

use crate::config::ParentProxy;
use crate::http::Version;
use crate::http::head::RequestHead;
use crate::proxy::Shared;
use crate::proxy::forward::fail;
use crate::proxy::relay::{Ctx, Reuse, SendError, Via, relay, send};
use crate::proxy::session::{Client, Next, RequestLog};
use crate::proxy::target::Target;
use crate::upstream::socks5_client::{Socks5ClientError, connect_through};
use crate::upstream::{AuthState, PoolKey, UpstreamConn, UpstreamError};

/// Reaches `host:port` through the first SOCKS5 parent of `list` that does it, with the same
/// back-off as HTTP parents.
pub async fn connect(
    shared: &Shared,
    list: &[ParentProxy],
    host: &str,
    port: u16,
) -> Result<(ParentProxy, TcpStream), UpstreamError> {
    let timeout = shared.config.limits.parent_connect;
    let mut tried = Vec::new();
    for parent in shared.parents.candidates_among(list) {
        let mut stream = match shared.parents.try_connect(&parent).await {
            Ok(stream) => stream,
            Err(why) => {
                shared.parents.mark_down(&parent);
                tried.push(format!("SOCKS5 {parent}: {why}"));
                continue;
            }
        };
        match connect_through(&mut stream, host, port, timeout).await {
            Ok(()) => {
                let _ = stream.set_nodelay(true);
                shared.parents.mark_up(&parent);
                return Ok((parent, stream));
            }
            // The parent works; it could not reach this one target (RFC 1928 §6 reply).
            Err(why @ Socks5ClientError::Refused(_)) => {
                tried.push(format!("SOCKS5 {parent}: {why}"));
            }
            Err(why) => {
                shared.parents.mark_down(&parent);
                tried.push(format!("SOCKS5 {parent}: {why}"));
            }
        }
    }
    Err(UpstreamError::AllParentsDown {
        tried: tried.join("; "),
    })
}

/// Sends a plain request over a connection a SOCKS5 parent opened to the origin.
pub async fn forward(
    shared: &Shared,
    ctx: &Ctx,
    client: &mut Client,
    mut out: RequestHead,
    target: &Target,
    (parent, stream): (ParentProxy, TcpStream),
    log: &mut RequestLog,
) -> Next {
    log.via = format!("SOCKS5 {parent}");
    if target.scheme != "http" {
        return fail(
            client,
            log,
            400,
            "only http:// URLs can be fetched through SOCKS5; use CONNECT for https",
        )
        .await;
    }
    out.target = target.path.clone();
    out.headers.remove("proxy-connection");
    if out.version == Version::Http10 && !ctx.upgrade {
        out.headers.push("Connection", "keep-alive");
    }
    let key = PoolKey::Origin(format!("{}:{}", target.host, target.port));
    let mut up = UpstreamConn::fresh(stream, key, AuthState::NotRequired);
    let who = format!("origin {} via SOCKS5 {parent}", target.authority);
    match send(shared, ctx, client, &mut up, &out.to_bytes(), &who).await {
        Ok(r) => relay(shared, ctx, client, up, r, Via::Direct, Reuse::Never, log).await,
        Err(SendError::Upstream(e)) => fail(client, log, e.status(), &e.to_string()).await,
        Err(SendError::Retryable) => {
            fail(client, log, 502, &format!("{who} closed the connection")).await
        }
        Err(SendError::Client(_)) => Next::Close,
    }
}
