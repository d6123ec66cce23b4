//! One client connection: read a request head under the limits and the header deadline,
//! hand it to `forward` or `connect`, and go on while both sides keep the connection alive
//! (RFC 9112 §9.3). Pipelined requests stay in the read buffer and are answered in order.
//! Bad input gets a status and a one-line body, then a graceful close; never a bare reset.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::head::{HeadError, HeadLimits, RequestHead, read_request};
use crate::http::{Headers, Version};
use crate::proxy::{Shared, connect, forward, respond};

/// First read buffer of a client connection: most request heads fit (a longer one grows it);
/// each idle keep-alive connection or tunnel holds this much at most.
const CLIENT_BUF: usize = 4 * 1024;

/// A client connection and the bytes read from it but not yet consumed.
#[derive(Debug)]
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read ahead: the rest of a body, pipelined requests, early tunnel bytes.
    pub buf: BytesMut,
    /// The client's address, for logs.
    pub peer: SocketAddr,
}

/// Whether the client connection goes on after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close the connection.
    Close,
}

/// Whether the client asked to keep the connection (RFC 9112 §9.3, plus the `Proxy-Connection`
/// alias that browsers and curl send to proxies).
pub fn client_keeps_alive(version: Version, headers: &Headers) -> bool {
    if headers.has_token("connection", "close") || headers.has_token("proxy-connection", "close") {
        return false;
    }
    match version {
        Version::Http11 => true,
        Version::Http10 => {
            headers.has_token("connection", "keep-alive")
                || headers.has_token("proxy-connection", "keep-alive")
        }
    }
}

/// The per-request log record (one info line per request; never credentials).
#[derive(Debug)]
pub struct RequestLog {
    /// Client address.
    pub client: SocketAddr,
    /// Method.
    pub method: String,
    /// Request target.
    pub target: String,
    /// Final status sent (0 if none).
    pub status: u16,
    /// `DIRECT` or the parent used.
    pub via: String,
    /// Response body bytes relayed (or tunnel bytes).
    pub bytes: u64,
    /// When the request head was complete.
    pub started: Instant,
}

impl RequestLog {
    /// A record for `head` from `client`.
    pub fn new(client: SocketAddr, head: &RequestHead) -> Self {
        RequestLog {
            client,
            method: head.method.clone(),
            target: crate::proxy::target::without_userinfo(&head.target).into_owned(),
            status: 0,
            via: "-".to_string(),
            bytes: 0,
            started: Instant::now(),
        }
    }

    /// Writes the log line.
    pub fn finish(&self) {
        tracing::info!(
            client = %self.client,
            method = %self.method,
            target = %self.target,
            status = self.status,
            via = %self.via,
            bytes = self.bytes,
            ms = self.started.elapsed().as_millis() as u64,
            "request"
        );
    }
}

/// Serves one client connection to the end.
pub async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let mut client = Client {
        stream,
        buf: BytesMut::with_capacity(CLIENT_BUF),
        peer,
    };
    let limits = HeadLimits::from(&shared.config.limits);
    let mut first = true;
    // Whether the client may still be sending when we close (after an answer that ends the
    // connection early): then linger, so its unread bytes do not turn our answer into a RST.
    let mut linger = false;
    loop {
        let head = match next_head(&shared, &mut client, &limits, first).await {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(e) => {
                tracing::info!(client = %peer, status = e.status(), error = %e, "bad request");
                let _ = respond::send_error(&mut client.stream, e.status(), &e.to_string()).await;
                linger = true;
                break;
            }
        };
        first = false;
        // Boxed: the request's state (a few KiB, most of it the NTLM handshake's) lives on
        // the heap only while the request runs, so an idle keep-alive connection's task
        // stays small; the session future itself would otherwise be 8.8 KiB for its life.
        let next = if head.method.eq_ignore_ascii_case("CONNECT") {
            Box::pin(connect::serve(&shared, &mut client, head)).await
        } else {
            // -s: the permit is held for the whole exchange, response body included. The
            // semaphore is never closed, so acquiring cannot fail.
            let _serial = match &shared.serial {
                Some(serial) => serial.acquire().await.ok(),
                None => None,
            };
            Box::pin(forward::serve(&shared, &mut client, head)).await
        };
        if next == Next::Close {
            linger = true;
            break;
        }
    }
    if linger {
        close_gracefully(client.stream).await;
    }
}

/// Waits for the next request head: up to the header deadline for the first request and the
/// keep-alive idle time for the first byte of later ones. `Ok(None)`: the client left.
async fn next_head(
    shared: &Shared,
    client: &mut Client,
    limits: &HeadLimits,
    first: bool,
) -> Result<Option<RequestHead>, HeadError> {
    let cfg = &shared.config.limits;
    // The header deadline runs from the first byte of a request (from the accept for the
    // first one); between requests the keep-alive idle time applies.
    let started = tokio::time::Instant::now();
    if client.buf.is_empty() {
        let idle = if first {
            cfg.header_deadline
        } else {
            cfg.client_idle
        };
        let mut stopping = shared.stopping.clone();
        if *stopping.borrow() && !first {
            return Ok(None);
        }
        let wait = tokio::time::timeout(idle, client.stream.read_buf(&mut client.buf));
        tokio::select! {
            r = wait => match r {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Ok(None),
                Err(_) if first => return Err(HeadError::Timeout),
                Err(_) => return Ok(None),
            },
            // Shutdown: an idle keep-alive connection has nothing in flight; close it.
            _ = stopping.wait_for(|s| *s) => return Ok(None),
        }
    }
    let deadline = if first {
        started + cfg.header_deadline
    } else {
        tokio::time::Instant::now() + cfg.header_deadline
    };
    match tokio::time::timeout_at(
        deadline,
        read_request(&mut client.stream, &mut client.buf, limits),
    )
    .await
    {
        Ok(Ok(head)) => Ok(Some(head)),
        Ok(Err(HeadError::Closed)) | Ok(Err(HeadError::Io(_))) => Ok(None),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(HeadError::Timeout),
    }
}

/// Closes after our last answer without resetting it away: shut the write side, then read
/// and discard what the client still sends (up to a bound), so the kernel does not answer
/// unread bytes with a RST that could destroy our response in flight.
async fn close_gracefully(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    // On the heap, and only now: an array here would be part of every session's future
    // (8 KiB per connection, idle or not, for its whole life).
    let mut sink = vec![0u8; 8 * 1024];
    let mut drained = 0usize;
    let linger = async {
        while drained < 1024 * 1024 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), linger).await;
}
