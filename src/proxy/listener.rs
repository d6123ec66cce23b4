//! Accepting clients: bind with a deep backlog, check the ACL before reading a byte, cap the
//! number of connections with a fast 503, and stop accepting when shutdown is asked.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

use crate::config::{AclAction, AclRule};
use crate::proxy::{Shared, respond, session};

/// Binds `addr` with `SO_REUSEADDR`, IPv6-only for IPv6 addresses (so `[::]` and `0.0.0.0`
/// can both be listed) and a backlog of `backlog`.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog.max(1024)).unwrap_or(i32::MAX))?;
    TcpListener::from_std(socket.into())
}

/// Raises the soft open-file limit to the hard limit: every client costs one or two
/// descriptors, and the default soft limit (1024) caps us far below the connection cap.
pub fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
            && soft < hard
            && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
        {
            tracing::debug!(error = %e, "could not raise the open-file limit");
        }
    }
}

/// Whether `client` may connect: the first matching rule decides; no match allows
/// (CNTLM's semantics; gateway mode without an Allow rule is refused at startup).
pub fn acl_allows(acl: &[AclRule], client: IpAddr) -> bool {
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    acl.iter()
        .find(|rule| rule.network.contains(&client))
        .is_none_or(|rule| rule.action == AclAction::Allow)
}

/// Accepts on every listener until `shutdown`, then waits for sessions to finish for at most
/// the shutdown drain time.
pub async fn serve(
    shared: watch::Receiver<Arc<Shared>>,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
    stop_tx: watch::Sender<bool>,
) {
    // The cap and the drain time are those of the configuration we started with.
    let (cap, drain) = {
        let first = shared.borrow();
        (
            first.config.limits.max_connections.max(1),
            first.config.limits.shutdown_drain,
        )
    };
    let slots = Arc::new(Semaphore::new(cap));
    let stop_rx = stop_tx.subscribe();
    let ids = Arc::new(AtomicU64::new(1));
    let mut loops = Vec::new();
    for listener in listeners {
        loops.push(tokio::spawn(accept_loop(
            shared.clone(),
            listener,
            slots.clone(),
            stop_rx.clone(),
            ids.clone(),
        )));
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    tracing::info!("stopped accepting; waiting for sessions to finish");
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(drain, slots.acquire_many(all)).await;
}

async fn accept_loop(
    configs: watch::Receiver<Arc<Shared>>,
    listener: TcpListener,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    ids: Arc<AtomicU64>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, keep serving others.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The configuration current at accept time serves this connection to its end.
        let shared = configs.borrow().clone();
        if !acl_allows(&shared.config.acl, peer.ip()) {
            tracing::info!(client = %peer, "connection refused by ACL");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let span = tracing::info_span!("conn", id, client = %peer);
                let shared = shared.clone();
                tokio::spawn(
                    async move {
                        session::serve(shared, stream, peer).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Err(_) => {
                tokio::spawn(refuse_busy(stream));
            }
        }
    }
}

/// Answers a client over the connection cap with a fast 503 and closes.
async fn refuse_busy(mut stream: TcpStream) {
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        respond::send_error(&mut stream, 503, "too many connections, try again later"),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: AclAction, net: &str) -> AclRule {
        AclRule {
            action,
            network: net.parse().expect("test network"),
        }
    }

    #[test]
    fn acl_first_match_wins_and_no_match_allows() {
        let acl = vec![
            rule(AclAction::Allow, "127.0.0.1/32"),
            rule(AclAction::Deny, "127.0.0.0/8"),
            rule(AclAction::Deny, "::1/128"),
        ];
        assert!(acl_allows(&acl, "127.0.0.1".parse().expect("ip")));
        assert!(!acl_allows(&acl, "127.0.0.2".parse().expect("ip")));
        assert!(!acl_allows(&acl, "::1".parse().expect("ip")));
        assert!(acl_allows(&acl, "10.0.0.1".parse().expect("ip")));
        assert!(!acl_allows(&acl, "::ffff:127.0.0.2".parse().expect("ip")));
    }
}
