//! Idle keep-alive connections to parents and origins, shared by every client.
//!
//! NTLM authenticates a TCP connection, not a request (MS-NLMP §1.3), so one handshake can
//! serve many requests from many clients: that is the point of this pool. A connection is
//! checked in only after a response that ended cleanly on a keep-alive connection, and checked
//! alive (no EOF, no stray bytes) before it is handed out again.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::config::ParentProxy;

/// Where a pooled connection leads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PoolKey {
    /// A parent proxy, by identity (host, port): static and PAC-named parents alike.
    Parent(ParentProxy),
    /// An origin reached DIRECT, as `host:port` (lower-cased).
    Origin(String),
}

/// Whose credentials authenticated a connection when they are not the configured ones
/// (`NTLMToBasic`: each client's own): an opaque keyed digest of user and password, so a
/// connection authenticated for one user is never handed to another, nor to someone who
/// only claims that user's name. `None` on a connection means the configured identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity(pub [u8; 16]);

/// Where a connection stands with the parent's proxy authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthState {
    /// Nothing sent yet: a request on it must run the handshake first.
    Fresh,
    /// The NTLM handshake succeeded on it: requests need no header.
    Authenticated,
    /// The far side answered without asking for authentication (or is an origin).
    NotRequired,
}

/// A connection to a parent or origin and the bytes read from it but not consumed.
#[derive(Debug)]
pub struct UpstreamConn {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read past the last response (should stay empty between requests).
    pub buf: BytesMut,
    /// Where it leads.
    pub key: PoolKey,
    /// Its authentication state.
    pub auth: AuthState,
    /// Whether it came from the pool (an idle keep-alive race can have killed it).
    pub reused: bool,
    /// Whose credentials it carries (`None`: the configured ones); part of the pool key.
    pub identity: Option<Identity>,
}

impl UpstreamConn {
    /// Wraps a freshly connected socket.
    pub fn fresh(stream: TcpStream, key: PoolKey, auth: AuthState) -> Self {
        UpstreamConn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            key,
            auth,
            reused: false,
            identity: None,
        }
    }

    /// The same connection, to be authenticated as (and pooled for) `identity`.
    pub fn for_identity(mut self, identity: Option<Identity>) -> Self {
        self.identity = identity;
        self
    }
}

/// A pool slot: the destination and whose credentials authenticated the connection.
type IdleKey = (PoolKey, Option<Identity>);

struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

/// The shared pool: checkout/checkin by `PoolKey`.
pub struct UpstreamPool {
    /// Idle connections per destination and identity, most recently used last.
    idle: Mutex<HashMap<IdleKey, VecDeque<Idle>>>,
    /// How long an idle connection is kept.
    expiry: Duration,
    /// Most idle connections kept per destination.
    per_key: usize,
}

impl std::fmt::Debug for UpstreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool")
            .field("expiry", &self.expiry)
            .field("per_key", &self.per_key)
            .finish_non_exhaustive()
    }
}

/// Whether a parked connection is still usable: no EOF and no unsolicited bytes pending.
fn is_alive(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

impl UpstreamPool {
    /// An empty pool keeping up to `per_key` connections per destination for `expiry`.
    pub fn new(expiry: Duration, per_key: usize) -> Self {
        UpstreamPool {
            idle: Mutex::new(HashMap::new()),
            expiry,
            per_key,
        }
    }

    /// The most recently parked live connection to `key`, if any; dead and expired ones are
    /// dropped on the way.
    pub fn checkout(&self, key: &PoolKey) -> Option<UpstreamConn> {
        self.checkout_as(key, None)
    }

    /// Like `checkout`, among the connections authenticated as `identity` only.
    pub fn checkout_as(&self, key: &PoolKey, identity: Option<Identity>) -> Option<UpstreamConn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&(key.clone(), identity))?;
        while let Some(entry) = list.pop_back() {
            if entry.since.elapsed() < self.expiry
                && entry.conn.buf.is_empty()
                && is_alive(&entry.conn.stream)
            {
                let mut conn = entry.conn;
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Parks a connection whose last response ended cleanly.
    pub fn checkin(&self, conn: UpstreamConn) {
        if !conn.buf.is_empty() || conn.auth == AuthState::Fresh {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry((conn.key.clone(), conn.identity)).or_default();
        list.retain(|e| e.since.elapsed() < self.expiry);
        if list.len() >= self.per_key {
            list.pop_front();
        }
        list.push_back(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Drops every idle connection (on a network change: connections made on the old network
    /// may be black-holed now, and would look alive until a request timed out on them).
    pub fn clear(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.clear();
    }

    /// How many idle connections are parked for `key` (for tests and diagnostics).
    pub fn idle_count(&self, key: &PoolKey) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.get(&(key.clone(), None)).map_or(0, VecDeque::len)
    }
}
