//! Tunnels opened on a client's behalf without an HTTP request from it: `-L` / `Tunnel`
//! port forwards and the `-O` / `SOCKS5Proxy` listener.
//!
//! Both reach their target the way a CONNECT request does ([`open_tunnel`]): the same plan
//! (NoProxy, PAC, the parent list), DIRECT when it says so, else a CONNECT through the parents with the
//! same authentication, lockout gate and failover as the proxy's own CONNECT handler
//! (`proxy::connect::open_via_parents`), so there is one implementation of "CONNECT through
//! the parent" for the three of them. The bytes then flow through the shared splice
//! (`proxy::connect::splice`, half-close aware) or, for SOCKS5, through
//! `socks5::serve_connection` with an idle limit on the upstream side ([`TunnelStream`]).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::config::TunnelSpec;
use crate::http::head::RequestHead;
use crate::http::{Headers, Version};
use crate::proxy::connect::{self, ParentOutcome};
use crate::proxy::target::names_us;
use crate::proxy::{Shared, forward, plan, socks_hop};
use crate::socks5;
use crate::upstream::UpstreamError;

/// How long a SOCKS5 client has for its greeting and request (RFC 1928 §3-4), like the
/// header deadline of an HTTP client.
const SOCKS5_HANDSHAKE: Duration = Duration::from_secs(30);

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The target is one of our own listeners.
    #[error("{target} is this proxy itself; refusing to loop")]
    Loop {
        /// `host:port`.
        target: String,
    },
    /// The parent or the origin could not be reached, or a rule refused the target.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The parent answered the CONNECT with something other than 2xx.
    #[error("parent {via} answered the CONNECT to {target} with {status} {reason}")]
    Refused {
        /// The parent.
        via: String,
        /// `host:port`.
        target: String,
        /// Its status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// We gave up ourselves (lockout, a parent that keeps closing, ...).
    #[error("CONNECT to {target} via {via} failed: {message}")]
    Failed {
        /// The parent, or `-`.
        via: String,
        /// `host:port`.
        target: String,
        /// What the CONNECT handler would have answered with.
        message: String,
        /// Its status.
        status: u16,
    },
}

impl TunnelError {
    /// The I/O error kind that tells a SOCKS5 client the matching RFC 1928 §6 reply
    /// (`Socks5Reply::from_connect_error`).
    fn io_kind(&self) -> io::ErrorKind {
        let status = match self {
            TunnelError::Loop { .. } => return io::ErrorKind::PermissionDenied,
            TunnelError::Upstream(UpstreamError::OriginUnreachable { reason, .. }) => {
                return if reason.contains("refused") {
                    io::ErrorKind::ConnectionRefused
                } else {
                    io::ErrorKind::HostUnreachable
                };
            }
            TunnelError::Upstream(e) => e.status(),
            TunnelError::Refused { status, .. } | TunnelError::Failed { status, .. } => *status,
        };
        match status {
            403 | 407 => io::ErrorKind::PermissionDenied,
            502..=504 => io::ErrorKind::HostUnreachable,
            _ => io::ErrorKind::Other,
        }
    }
}

/// An open tunnel to the target: the upstream socket, the bytes the parent already sent
/// after its 2xx head (a server that speaks first), and an idle limit for the SOCKS5 path.
#[derive(Debug)]
pub struct TunnelStream {
    /// The connection to the parent (tunnel established) or to the origin (DIRECT).
    pub stream: TcpStream,
    /// Bytes read past the parent's CONNECT answer, to deliver before anything else.
    pub early: BytesMut,
    /// `DIRECT` or the parent used, for logs.
    pub via: String,
    /// The idle limit the `AsyncRead`/`AsyncWrite` view enforces.
    idle: Duration,
    /// When the idle limit is reached unless bytes move before.
    idle_deadline: Pin<Box<tokio::time::Sleep>>,
}

impl TunnelStream {
    fn new(stream: TcpStream, early: BytesMut, via: String, idle: Duration) -> Self {
        TunnelStream {
            stream,
            early,
            via,
            idle,
            idle_deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn touch(&mut self) {
        let next = tokio::time::Instant::now() + self.idle;
        self.idle_deadline.as_mut().reset(next);
    }

    /// A pending operation fails with `TimedOut` once nothing moved for the idle limit.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.idle_deadline.as_mut().poll(cx).is_ready()
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.early.is_empty() {
            let n = this.early.len().min(buf.remaining());
            buf.put_slice(&this.early[..n]);
            this.early.advance(n);
            this.touch();
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending if this.idle_expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_write(cx, data) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending if this.idle_expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

fn idle_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "tunnel idle for too long")
}

/// `host:port`, IPv6 literals in brackets (RFC 9110 §9.3.6 authority form).
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Opens a tunnel to `host:port` for a client at `client`, as the proxy's CONNECT handler
/// would: the route plan (NoProxy, PAC, parents) decides between DIRECT (with the gateway
/// guard against LAN clients reaching this host's private services), a SOCKS5 parent, and
/// a CONNECT through the HTTP parents with authentication.
pub async fn open_tunnel(
    shared: &Shared,
    client: IpAddr,
    host: &str,
    port: u16,
) -> Result<TunnelStream, TunnelError> {
    // IPv6 literals without brackets from here on (the plan and the resolver want them so).
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let target = authority(host, port);
    if names_us(host, port, &shared.listening) {
        return Err(TunnelError::Loop { target });
    }
    let idle = shared.config.limits.tunnel_idle;
    // The same decision as for a CONNECT request: NoProxy, PAC, the parent list.
    let plan = plan::decide(shared, &plan::connect_url(host, port), host).await;
    if !plan.socks.is_empty() {
        match socks_hop::connect(shared, &plan.socks, host, port).await {
            Ok((parent, up)) => {
                let via = format!("SOCKS5 {parent}");
                return Ok(TunnelStream::new(up, BytesMut::new(), via, idle));
            }
            Err(e) if plan.parents.is_empty() && !plan.direct_after => return Err(e.into()),
            Err(e) => tracing::debug!(error = %e, "no SOCKS5 parent: trying the next entries"),
        }
    }
    if plan.parents.is_empty() {
        return open_direct(shared, client, host, port).await;
    }
    let mut headers = Headers::default();
    headers.push("Host", target.as_bytes());
    headers.substitute(&shared.config.headers);
    let head = RequestHead {
        method: "CONNECT".to_string(),
        target: target.clone(),
        version: Version::Http11,
        headers,
    };
    // -B has no client account here (no HTTP header to carry it): the configured
    // credentials, if any, authenticate tunnels.
    let opened = connect::open_via_parents(shared, &head, &plan, None).await;
    let via = opened.via;
    match opened.outcome {
        ParentOutcome::Open(mut up) => {
            let early = std::mem::take(&mut up.buf);
            Ok(TunnelStream::new(up.stream, early, via, idle))
        }
        ParentOutcome::Answer { head, .. } => Err(TunnelError::Refused {
            via,
            target,
            status: head.status,
            reason: head.reason,
        }),
        ParentOutcome::Failed { status, message } => Err(TunnelError::Failed {
            via,
            target,
            message,
            status,
        }),
        ParentOutcome::AllDown(e) if plan.direct_after => {
            shared.parents.enter_direct_fallback(&e);
            open_direct(shared, client, host, port).await
        }
        ParentOutcome::AllDown(e) => Err(e.into()),
    }
}

/// Connects to `host:port` DIRECT (`NoProxy`, no parent, or `DirectFallback`).
async fn open_direct(
    shared: &Shared,
    client: IpAddr,
    host: &str,
    port: u16,
) -> Result<TunnelStream, TunnelError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let stream = forward::connect_origin(shared, client, bare, port).await?;
    Ok(TunnelStream::new(
        stream,
        BytesMut::new(),
        "DIRECT".to_string(),
        shared.config.limits.tunnel_idle,
    ))
}

/// Serves one connection accepted on a `-L` listener: opens the tunnel to the spec's target
/// and splices until both sides are done (half-close passed on) or the tunnel idles out.
/// On failure the client connection is just closed: a raw TCP forward has no way to say why,
/// so the log does.
pub async fn serve_forward(
    shared: Arc<Shared>,
    mut client: TcpStream,
    peer: SocketAddr,
    spec: TunnelSpec,
) {
    let started = Instant::now();
    let target = authority(&spec.host, spec.port);
    let mut up = match open_tunnel(&shared, peer.ip(), &spec.host, spec.port).await {
        Ok(up) => up,
        Err(e) => {
            tracing::warn!(client = %peer, tunnel = %spec.listen, target = %target, error = %e, "tunnel not opened");
            return;
        }
    };
    let mut bytes = up.early.len() as u64;
    if !up.early.is_empty() && client.write_all(&up.early).await.is_err() {
        return;
    }
    up.early.clear();
    bytes += connect::splice(
        &mut client,
        &mut up.stream,
        shared.config.limits.tunnel_idle,
    )
    .await;
    tracing::info!(
        client = %peer,
        tunnel = %spec.listen,
        target = %target,
        via = %up.via,
        bytes,
        ms = started.elapsed().as_millis() as u64,
        "tunnel"
    );
}

/// Serves one connection accepted on a SOCKS5 listener with `socks5::serve_connection`,
/// whose connector is [`open_tunnel`].
pub async fn serve_socks5(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr) {
    let started = Instant::now();
    let ip = peer.ip();
    let connector_shared = shared.clone();
    let connector = move |target: socks5::Socks5Target| async move {
        match open_tunnel(&connector_shared, ip, &target.host, target.port).await {
            Ok(up) => {
                tracing::debug!(client = %peer, target = %target, via = %up.via, "SOCKS5 tunnel open");
                Ok(up)
            }
            Err(e) => {
                tracing::warn!(client = %peer, target = %target, error = %e, "SOCKS5 tunnel not opened");
                Err(io::Error::new(e.io_kind(), e.to_string()))
            }
        }
    };
    let users = &shared.config.socks5_users;
    // The client side gets the idle limit too: a client that stops reading leaves the splice
    // waiting on a write to it, where the upstream side's limit is never polled.
    let idle = shared.config.limits.tunnel_idle;
    let client = TunnelStream::new(client, BytesMut::new(), String::new(), idle);
    match socks5::serve_connection(client, users, SOCKS5_HANDSHAKE, connector).await {
        Ok(session) => tracing::info!(
            client = %peer,
            target = %session.target,
            user = ?session.auth,
            bytes = session.client_to_target + session.target_to_client,
            ms = started.elapsed().as_millis() as u64,
            "SOCKS5"
        ),
        Err(e) => tracing::info!(client = %peer, error = %e, "SOCKS5 connection ended"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.expect("connect"), b.expect("accept").0)
    }

    #[tokio::test]
    async fn early_bytes_come_before_the_socket_and_writes_pass_through() {
        let (ours, mut theirs) = pair().await;
        let early = BytesMut::from(&b"early "[..]);
        let mut t = TunnelStream::new(ours, early, "p".into(), Duration::from_secs(60));
        theirs.write_all(b"late").await.expect("write");
        theirs.shutdown().await.expect("shutdown");
        let mut all = Vec::new();
        t.read_to_end(&mut all).await.expect("read");
        assert_eq!(all, b"early late");
        t.write_all(b"up").await.expect("write");
        t.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"up");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_tunnel_times_out_after_the_idle_limit() {
        let (ours, _theirs) = pair().await;
        let mut t = TunnelStream::new(ours, BytesMut::new(), "p".into(), Duration::from_secs(300));
        let mut buf = [0u8; 8];
        let err = t.read(&mut buf).await.expect_err("idle");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_times_out_the_write_after_the_idle_limit() {
        use tokio::io::AsyncWriteExt;
        let (ours, _theirs) = pair().await; // `_theirs` never reads
        let mut t = TunnelStream::new(ours, BytesMut::new(), "p".into(), Duration::from_secs(300));
        let chunk = vec![0u8; 64 * 1024];
        let err = loop {
            if let Err(e) = t.write_all(&chunk).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn ipv6_targets_get_brackets_in_the_connect_line() {
        assert_eq!(authority("fd00::5", 22), "[fd00::5]:22");
        assert_eq!(authority("[fd00::5]", 22), "[fd00::5]:22");
        assert_eq!(authority("host", 443), "host:443");
    }
}
