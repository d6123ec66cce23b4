//! The far side of a request: parent proxies (order, health, back-off) and the pool of
//! connections to them (and to origins reached DIRECT), authenticated ones included.
//!
//! - `parents`: `ParentSet`, which parent to connect to and which are backed off.
//! - `pool`: `UpstreamPool`, idle keep-alive connections shared by every client.
//! - `socks5_client`: CONNECT through a SOCKS5 parent a PAC names.

pub mod parents;
pub mod pool;
pub mod socks5_client;

pub use parents::ParentSet;
pub use pool::{AuthState, Identity, PoolKey, UpstreamConn, UpstreamPool};

use std::io;

/// Whether trying again can help after an upstream failure (pingora's distinction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Nothing may be retried (the request may have been processed).
    Never,
    /// A fresh connection to the same place may succeed (a stale pooled connection).
    FreshConnection,
}

/// Why the far side failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Every configured parent refused or timed out.
    #[error("no parent proxy reachable (tried {tried})")]
    AllParentsDown {
        /// The parents tried, with what went wrong, for the client's 502 text.
        tried: String,
    },
    /// The origin could not be reached DIRECT.
    #[error("cannot reach {target}: {reason}")]
    OriginUnreachable {
        /// `host:port`.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// The connection broke before a response head arrived.
    #[error("{who} closed the connection before answering")]
    Closed {
        /// The parent or origin, for messages.
        who: String,
        /// Whether a retry on a fresh connection is safe.
        retry: Retry,
    },
    /// No response head within the first-byte timeout.
    #[error("{who} did not answer in time")]
    Timeout {
        /// The parent or origin.
        who: String,
    },
    /// The response head or framing was invalid; nothing of it is relayed.
    #[error("{who} sent an invalid response: {reason}")]
    BadResponse {
        /// The parent or origin.
        who: String,
        /// What was wrong.
        reason: String,
    },
    /// The NTLM exchange with the parent failed.
    #[error("authentication with parent {who} failed: {reason}")]
    Auth {
        /// The parent.
        who: String,
        /// What went wrong (never the message bytes).
        reason: String,
    },
    /// A policy forbids this destination for this client.
    #[error("refused to connect to {target}: {rule}")]
    Forbidden {
        /// `host:port`.
        target: String,
        /// The rule that refused it, for the client's 403 text.
        rule: &'static str,
    },
    /// Any other I/O failure on the upstream connection.
    #[error("{who}: connection failed")]
    Io {
        /// The parent or origin.
        who: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl UpstreamError {
    /// Whether a retry can help.
    pub fn retry(&self) -> Retry {
        match self {
            UpstreamError::Closed { retry, .. } => *retry,
            _ => Retry::Never,
        }
    }

    /// The status the client gets when nothing was sent to it yet.
    pub fn status(&self) -> u16 {
        match self {
            UpstreamError::Timeout { .. } => 504,
            UpstreamError::Forbidden { .. } => 403,
            _ => 502,
        }
    }
}
