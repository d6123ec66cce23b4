//! Getting a parent connection for one request: the preferred parent's pooled connection
//! when there is one, else a fresh connection to the first parent that answers, with the
//! bound on handshakes in flight. Plain requests (`forward`) and tunnels (`connect`) share it.

use tokio::sync::SemaphorePermit;

use crate::config::ParentProxy;
use crate::proxy::Shared;
use crate::upstream::{AuthState, Identity, PoolKey, UpstreamConn, UpstreamError};

/// Whether a fresh connection for this request will have to authenticate first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Credentials apply: a fresh connection starts `AuthState::Fresh` (where the parent may
    /// receive them) and waits for a handshake slot.
    Wanted,
    /// No credentials for this request: connections start `AuthState::NotRequired`.
    NotWanted,
}

/// A parent connection, and the handshake slot it holds while it authenticates.
pub struct Checkout<'a> {
    /// The connection, pooled or fresh.
    pub conn: UpstreamConn,
    /// Held until the expensive part of its handshake is over; `None` when no handshake runs.
    pub slot: Option<SemaphorePermit<'a>>,
}

impl Shared {
    /// A connection to one of `parents` for `identity` (`-B` accounts; `None` for the
    /// configured credentials).
    ///
    /// Only the preferred parent's pool is searched: pooled connections to a fallback parent
    /// must not keep traffic away from the first parent once its back-off has passed. A fresh
    /// connection that will need a handshake waits for a slot (`HANDSHAKES_IN_FLIGHT`), and
    /// takes a connection checked into the pool meanwhile instead.
    pub async fn parent_connection(
        &self,
        parents: &[ParentProxy],
        identity: Option<Identity>,
        handshake: Handshake,
    ) -> Result<Checkout<'_>, UpstreamError> {
        let checkout = || {
            self.parents
                .candidates_among(parents)
                .first()
                .and_then(|p| self.pool.checkout_as(&PoolKey::Parent(p.clone()), identity))
        };
        let mut slot = None;
        let pooled = match checkout() {
            Some(c) => Some(c),
            None if handshake == Handshake::Wanted => {
                slot = self.handshakes.acquire().await.ok();
                checkout()
            }
            None => None,
        };
        let conn = match pooled {
            Some(c) => c,
            None => {
                let (parent, stream) = self.parents.connect_among(parents).await?;
                let state = if handshake == Handshake::Wanted && self.may_authenticate(&parent) {
                    AuthState::Fresh
                } else {
                    AuthState::NotRequired
                };
                UpstreamConn::fresh(stream, PoolKey::Parent(parent), state).for_identity(identity)
            }
        };
        if conn.auth != AuthState::Fresh {
            slot = None; // no handshake on this one: nothing to bound
        }
        Ok(Checkout { conn, slot })
    }
}
