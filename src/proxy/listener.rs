//! Accepting clients: bind with a deep backlog, check the ACL before reading a byte, cap the
//! number of connections with a fast 503, and stop accepting when shutdown is asked.
//!
//! The same accept loop serves the HTTP proxy, `-L` tunnels and SOCKS5 listeners ([`Service`]),
//! so all three get the ACL, the cap and the shutdown drain alike; [`Acceptors`] adds and
//! closes listeners on reload.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::{AclAction, AclRule, Config, TunnelSpec};
use crate::proxy::{Shared, respond, session};
use crate::tunnel;

/// Binds `addr` with `SO_REUSEADDR`, IPv6-only for IPv6 addresses (so `[::]` and `0.0.0.0`
/// can both be listed) and a backlog of `backlog`.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr, backlog)?)
}

/// [`bind`] without a runtime: a non-blocking std listener, for binding before `-U` drops
/// the privileges a port below 1024 needs (and before the runtime exists).
pub fn bind_std(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog.max(1024)).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// What a listener serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Service {
    /// The HTTP proxy (`Listen` / `-l`).
    Http,
    /// A `Tunnel` / `-L` port forward to `host:port`.
    Tunnel {
        /// Remote host.
        host: String,
        /// Remote port.
        port: u16,
    },
    /// The SOCKS5 proxy (`SOCKS5Proxy` / `-O`).
    Socks5,
}

/// One listener as the configuration names it: the address as configured (port 0 stays 0,
/// so a reload of the same configuration recognises it) and what it serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenKey {
    /// The configured address.
    pub addr: SocketAddr,
    /// What is served there.
    pub service: Service,
}

/// Every listener `config` asks for: the proxy's (127.0.0.1:3128 when none is given, as
/// CNTLM's customary port), the tunnels', the SOCKS5 ones.
pub fn wanted(config: &Config) -> Vec<ListenKey> {
    let mut keys: Vec<ListenKey> = if config.listen.is_empty() {
        vec![SocketAddr::from(([127, 0, 0, 1], 3128))]
    } else {
        config.listen.clone()
    }
    .into_iter()
    .map(|addr| ListenKey {
        addr,
        service: Service::Http,
    })
    .collect();
    keys.extend(config.tunnels.iter().map(|t| ListenKey {
        addr: t.listen,
        service: Service::Tunnel {
            host: t.host.clone(),
            port: t.port,
        },
    }));
    keys.extend(config.socks5_listen.iter().map(|&addr| ListenKey {
        addr,
        service: Service::Socks5,
    }));
    keys
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

/// The running accept loops, one per listener, sharing the connection cap; listeners can
/// be added and closed while the others keep serving (a reload).
pub struct Acceptors {
    /// The state new connections are served with.
    shared: watch::Receiver<Arc<Shared>>,
    /// The connection cap (sessions, tunnels and SOCKS5 clients alike).
    slots: Arc<Semaphore>,
    /// Its size, to wait for every slot at the end of the drain.
    cap: usize,
    /// Turns `true` at shutdown: every accept loop stops.
    stop: watch::Receiver<bool>,
    /// Connection ids for the log.
    ids: Arc<AtomicU64>,
    /// The loops, by listener; each owns its listener, so ending a loop closes it.
    loops: HashMap<ListenKey, (SocketAddr, JoinHandle<()>)>,
}

impl Acceptors {
    /// No loop yet; `cap` connections at most, all loops end when `stop` turns `true`.
    pub fn new(
        shared: watch::Receiver<Arc<Shared>>,
        cap: usize,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let cap = cap.max(1);
        Acceptors {
            shared,
            slots: Arc::new(Semaphore::new(cap)),
            cap,
            stop,
            ids: Arc::new(AtomicU64::new(1)),
            loops: HashMap::new(),
        }
    }

    /// Starts accepting on `listener` for `key`.
    pub fn spawn(&mut self, key: ListenKey, listener: TcpListener) {
        let local = listener.local_addr().unwrap_or(key.addr);
        let task = tokio::spawn(accept_loop(
            self.shared.clone(),
            listener,
            key.service.clone(),
            self.slots.clone(),
            self.stop.clone(),
            self.ids.clone(),
        ));
        self.loops.insert(key, (local, task));
    }

    /// Whether a listener for `key` is running.
    pub fn contains(&self, key: &ListenKey) -> bool {
        self.loops.contains_key(key)
    }

    /// Stops accepting on every listener not in `keep` and closes it (connections already
    /// accepted go on).
    pub async fn retain(&mut self, keep: &[ListenKey]) {
        let gone: Vec<ListenKey> = self
            .loops
            .keys()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for key in gone {
            if let Some((local, task)) = self.loops.remove(&key) {
                task.abort();
                // Awaited so the listener is closed before a new one may bind its address.
                let _ = task.await;
                tracing::info!(listen = %local, service = ?key.service, "listener closed");
            }
        }
    }

    /// The addresses the HTTP proxy listens on (ports resolved), for the loop guard.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.loops
            .iter()
            .filter(|(k, _)| k.service == Service::Http)
            .map(|(_, (local, _))| *local)
            .collect()
    }

    /// Waits for the loops (after `stop` turned `true`), then for sessions to finish for at
    /// most `drain`.
    pub async fn drain(self, drain: Duration) {
        for (_, (_, task)) in self.loops {
            let _ = task.await;
        }
        tracing::info!("stopped accepting; waiting for sessions to finish");
        let all = u32::try_from(self.cap).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(drain, self.slots.acquire_many(all)).await;
    }
}

async fn accept_loop(
    configs: watch::Receiver<Arc<Shared>>,
    listener: TcpListener,
    service: Service,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    ids: Arc<AtomicU64>,
) {
    let local = listener.local_addr().ok();
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
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if service == Service::Http {
                tokio::spawn(refuse_busy(stream));
            }
            continue;
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("conn", id, client = %peer);
        let service = service.clone();
        tokio::spawn(
            async move {
                match service {
                    Service::Http => session::serve(shared, stream, peer).await,
                    Service::Tunnel { host, port } => {
                        let listen = local.unwrap_or(peer);
                        let spec = TunnelSpec { listen, host, port };
                        tunnel::serve_forward(shared, stream, peer, spec).await;
                    }
                    Service::Socks5 => tunnel::serve_socks5(shared, stream, peer).await,
                }
                // Held until the connection ends, so the cap and the shutdown drain count it.
                drop(permit);
            }
            .instrument(span),
        );
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
