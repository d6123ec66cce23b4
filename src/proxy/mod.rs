//! The proxy service: listeners, client sessions, forwarding and CONNECT.
//!
//! - `listener`: bind, ACL, connection cap, accept loop, shutdown.
//! - `session`: one client connection, request after request.
//! - `forward`: one plain request, DIRECT or through a parent (with the NTLM handshake).
//! - `relay`: one exchange upstream: body streaming, 1xx, relaying the answer, pooling.
//! - `connect`: CONNECT tunnels, `open_via_parents` (which `-L` and SOCKS5 reuse), the splice.
//! - `handshake`: the NTLM probe and the lockout gate.
//! - `isa`: the ISA scanner plugin (`-S` / `-G`).
//! - `ntlm_to_basic`: `-B`, each client's own account from its Basic header.
//! - `checkout`: a parent connection for one request (pooled, or fresh with a handshake slot).
//! - `scheme`: choosing the scheme from the parent's offer; Negotiate and Basic.
//! - `respond`: the short text answers we make ourselves (errors, 407 lockout).
//! - `target`: request-target parsing and the loop guard.
//! - `plan`: the way out per request (NoProxy, PAC answer, static parents, credentials).
//! - `livepac`: the PAC in force (loaded, re-fetched, last good copy) and roaming.
//! - `pacserve`: `GET /proxy.pac` on our own address.
//! - `explain`: `cntlm --route URL`.

pub mod checkout;
pub mod connect;
pub mod explain;
pub mod forward;
pub mod handshake;
pub mod isa;
pub mod listener;
pub mod livepac;
pub mod ntlm_to_basic;
pub mod pacserve;
pub mod plan;
pub mod relay;
pub mod respond;
pub mod scheme;
pub mod session;
pub mod socks_hop;
pub mod target;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{self, AclAction, Config};
use crate::netwatch::{NetworkGeneration, NetworkWatcher};
use crate::pac::fetch::PacSource;
use crate::proxy::livepac::LivePac;
use crate::proxy::plan::CredentialPolicy;
use crate::route::Router;
use crate::upstream::{ParentSet, UpstreamPool};
pub use listener::ListenKey;

/// How long an idle upstream connection stays in the pool (below common parent keep-alive
/// timeouts, e.g. Squid's `pconn_timeout` of 1 minute, to avoid the idle-close race).
const POOL_IDLE: Duration = Duration::from_secs(50);
/// Most idle connections kept per parent or origin. Each NTLM-authenticated one saves a
/// handshake, so the pool must hold as many as clients use at once: with 64, a burst of 100
/// keep-alive clients threw away 36 connections per round and re-authenticated them (687
/// handshakes per 14,000 requests in scripts/bench). Idle ones still expire after
/// `POOL_IDLE`, so the bound only matters for descriptors after a burst.
const POOL_PER_KEY: usize = 1024;

/// Most parent connections opened and probed (connect, Type 1, Type 2) at the same time. A
/// burst of 1,000 new clients otherwise opens 1,000 parent connections and runs 1,000
/// handshakes at once: the queue behind them set the p99 (1.3 s in scripts/bench), and their
/// transient buffers, all live at once, left ~9 KiB of resident holes per tunnel. A request
/// waiting here takes a pooled connection instead if one comes back meanwhile.
const HANDSHAKES_IN_FLIGHT: usize = 64;

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An unauthenticated SOCKS5 listener off loopback.
    #[error(transparent)]
    OpenSocks5(#[from] crate::socks5::Socks5Error),
    /// Gateway mode without any `Allow` rule would open the user's identity to the LAN.
    #[error(
        "gateway mode (Gateway yes / -g) needs at least one Allow rule, e.g. `Allow 192.168.0.0/16` or `-A 10.0.2.0/24`; refusing to lend your credentials to the whole network"
    )]
    OpenGateway,
}

/// State shared by every session of one running configuration.
#[derive(Debug)]
pub struct Shared {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// Idle upstream connections.
    pub pool: UpstreamPool,
    /// Parent proxies and their health.
    pub parents: ParentSet,
    /// NoProxy decisions.
    pub router: Router,
    /// The PAC (`Pac` / `-x`), when one is configured and its source understood.
    pub pac: Option<Arc<LivePac>>,
    /// Which parents may receive credentials.
    pub credentials: CredentialPolicy,
    /// Stops authenticating after repeated credential rejections.
    pub gate: handshake::AuthGate,
    /// `-B`: the clients' own accounts (pool identities, per-account lockout).
    pub accounts: ntlm_to_basic::ClientAccounts,
    /// Parents' offers and the Negotiate/Basic lockout gates (`scheme`).
    pub schemes: scheme::SchemeState,
    /// The addresses we actually listen on (ports resolved), for the loop guard.
    pub listening: Vec<SocketAddr>,
    /// Becomes `true` at shutdown: idle keep-alive sessions then close instead of waiting.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// `-s`: one plain request at a time through the proxy (CONNECT, `-L` and SOCKS5
    /// tunnels stay concurrent); `None` without `-s`.
    pub serial: Option<tokio::sync::Semaphore>,
    /// Bounds the fresh parent connections being opened and probed at once (see
    /// `HANDSHAKES_IN_FLIGHT`).
    pub handshakes: tokio::sync::Semaphore,
}

impl Shared {
    /// Builds the shared state for `config`, listening on `listening`; `stopping` turns
    /// `true` at shutdown.
    pub fn new(
        config: Arc<Config>,
        listening: Vec<SocketAddr>,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let limits = &config.limits;
        let pac_source = config
            .pac
            .as_deref()
            .and_then(|text| match PacSource::parse(text) {
                Ok(source) => Some(source),
                Err(e) => {
                    tracing::warn!(error = %e, "Pac ignored: using the static Proxy list");
                    None
                }
            });
        let pac_is_local = matches!(pac_source, Some(PacSource::File(_)));
        // `myIpAddress()` is the address the OS would use toward the corporate network: the
        // first static parent, else the PAC server itself.
        let my_ip_target = config
            .parents
            .first()
            .cloned()
            .or_else(|| match &pac_source {
                Some(PacSource::Http(url)) => Some(config::ParentProxy {
                    host: url.host.clone(),
                    port: url.port,
                }),
                _ => None,
            });
        let pac = pac_source.map(|source| Arc::new(LivePac::new(source, my_ip_target)));
        Shared {
            pac,
            credentials: CredentialPolicy::new(&config.pac_auth_domains, pac_is_local),
            pool: UpstreamPool::new(POOL_IDLE, POOL_PER_KEY),
            parents: ParentSet::new(
                config.parents.clone(),
                limits.parent_connect,
                limits.parent_backoff,
            ),
            router: Router::new(
                &config.no_proxy,
                !config.parents.is_empty() || config.pac.is_some(),
            ),
            gate: handshake::AuthGate::new(limits.auth_failures),
            accounts: ntlm_to_basic::ClientAccounts::new(
                &config.auth.credentials.domain,
                limits.auth_failures,
            ),
            schemes: scheme::SchemeState::new(limits),
            listening,
            stopping,
            serial: config.serialize.then(|| tokio::sync::Semaphore::new(1)),
            handshakes: tokio::sync::Semaphore::new(HANDSHAKES_IN_FLIGHT),
            config,
        }
    }
}

/// Refuses configurations that would lend the user's identity to the network: gateway mode
/// without an Allow rule, an unauthenticated SOCKS5 listener off loopback.
pub fn check_exposure(config: &Config) -> Result<(), RunError> {
    if config.gateway && !config.acl.iter().any(|r| r.action == AclAction::Allow) {
        return Err(RunError::OpenGateway);
    }
    for &addr in &config.socks5_listen {
        crate::socks5::check_listen_address(addr, &config.socks5_users)?;
    }
    Ok(())
}

/// Every listener of a configuration, bound (and listening) but not yet served: what the
/// service binds before `-U` drops root, and before the async runtime exists.
#[derive(Debug)]
pub struct PreBound {
    listeners: Vec<(ListenKey, std::net::TcpListener)>,
}

impl PreBound {
    /// Checks `config` ([`check_exposure`]) and binds the proxy, tunnel and SOCKS5
    /// listeners it names; the first failure is returned with its address.
    pub fn bind(config: &Config) -> Result<Self, RunError> {
        check_exposure(config)?;
        let listeners = listener::wanted(config)
            .into_iter()
            .map(|key| {
                listener::bind_std(key.addr, config.limits.backlog)
                    .map(|l| (key.clone(), l))
                    .map_err(|source| RunError::Bind {
                        addr: key.addr,
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PreBound { listeners })
    }
}

impl Shared {
    /// Loads the PAC (if any) before the first request is served, then starts the task
    /// that re-fetches it every `Limits::pac_refetch` and handles each network change seen
    /// on `network`. The task ends once this `Shared` is gone (after a reload, when its
    /// last session ended).
    pub async fn start(self: &Arc<Self>, network: Option<watch::Receiver<NetworkGeneration>>) {
        if let Some(pac) = &self.pac {
            pac.refresh().await;
        }
        let interval = self.config.limits.pac_refetch;
        tokio::spawn(upkeep(Arc::downgrade(self), interval, network));
    }

    /// Roaming (issue 6 §2): what was learnt on the old network is thrown away: the PAC is
    /// fetched again and its answers forgotten, and every parent is presumed alive again.
    pub async fn network_changed(&self) {
        tracing::info!(
            "network changed: re-fetching the PAC, forgetting its answers, the dead-parent marks and idle connections"
        );
        self.parents.clear_marks();
        self.pool.clear();
        if let Some(pac) = &self.pac {
            pac.clear_cache();
            pac.refresh().await;
            pac.clear_cache();
        }
    }
}

impl Shared {
    /// Whether credentials may be sent to `parent` (see `plan::CredentialPolicy`); a refusal
    /// is logged once per parent.
    pub fn may_authenticate(&self, parent: &config::ParentProxy) -> bool {
        let verdict = self
            .credentials
            .verdict(parent, self.parents.is_configured(parent));
        if !verdict.allows()
            && let Some(pac) = &self.pac
        {
            pac.warn_once(format!(
                "no credentials for PAC-named parent {parent}: it is not a Proxy line and not in PacAuthDomains"
            ));
        }
        verdict.allows()
    }
}

/// What woke the upkeep task.
enum Wake {
    /// The re-fetch interval passed.
    Refetch,
    /// The network changed.
    NetworkChanged,
    /// The network source is gone (no more changes will come).
    NetworkGone,
}

/// Re-fetches the PAC on its interval and handles network changes while `shared` lives.
async fn upkeep(
    shared: Weak<Shared>,
    interval: Duration,
    mut network: Option<watch::Receiver<NetworkGeneration>>,
) {
    let start = tokio::time::Instant::now() + interval;
    let mut refetch = tokio::time::interval_at(start, interval);
    refetch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let changes = async {
            match network.as_mut() {
                Some(rx) => rx.changed().await,
                None => std::future::pending().await,
            }
        };
        let wake = tokio::select! {
            _ = refetch.tick() => Wake::Refetch,
            r = changes => if r.is_ok() { Wake::NetworkChanged } else { Wake::NetworkGone },
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match wake {
            Wake::Refetch => {
                if let Some(pac) = &shared.pac {
                    pac.refresh().await;
                }
            }
            Wake::NetworkChanged => shared.network_changed().await,
            Wake::NetworkGone => network = None,
        }
    }
}

/// A proxy whose listeners are bound but not yet accepting.
#[derive(Debug)]
pub struct Proxy {
    config: Arc<Config>,
    listeners: Vec<(ListenKey, TcpListener)>,
    /// Network-change events to react to; `None`: start a `NetworkWatcher` when serving.
    network: Option<watch::Receiver<NetworkGeneration>>,
}

impl Proxy {
    /// Checks the configuration and binds every listen address (a failure is a startup error).
    pub fn bind(config: Arc<Config>) -> Result<Self, RunError> {
        let bound = PreBound::bind(&config)?;
        Self::from_prebound(config, bound)
    }

    /// Serves listeners bound by [`PreBound::bind`]. Call inside the tokio runtime.
    pub fn from_prebound(config: Arc<Config>, bound: PreBound) -> Result<Self, RunError> {
        check_exposure(&config)?;
        listener::raise_open_file_limit();
        let listeners = bound
            .listeners
            .into_iter()
            .map(|(key, l)| {
                TcpListener::from_std(l)
                    .map(|l| (key.clone(), l))
                    .map_err(|source| RunError::Bind {
                        addr: key.addr,
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Proxy {
            config,
            listeners,
            network: None,
        })
    }

    /// Uses `events` as the source of network changes instead of a `NetworkWatcher` (for
    /// embedding, and for tests that simulate a network change).
    pub fn with_network_events(mut self, events: watch::Receiver<NetworkGeneration>) -> Self {
        self.network = Some(events);
        self
    }

    /// The bound addresses of the HTTP proxy (with OS-assigned ports resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|(key, _)| key.service == listener::Service::Http)
            .filter_map(|(_, l)| l.local_addr().ok())
            .collect()
    }

    /// Every bound address with what it serves (tunnels and SOCKS5 included).
    pub fn bound(&self) -> Vec<(ListenKey, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(key, l)| l.local_addr().ok().map(|a| (key.clone(), a)))
            .collect()
    }

    /// Wraps HTTP proxy listeners bound elsewhere (e.g. before `-U` drops the privileges a
    /// low port needs); they are made non-blocking here, and known by their bound address
    /// (a reload keeps them only if its `Listen` names that address). Call inside the tokio
    /// runtime.
    pub fn with_listeners(
        config: Arc<Config>,
        listeners: Vec<std::net::TcpListener>,
    ) -> Result<Self, RunError> {
        check_exposure(&config)?;
        listener::raise_open_file_limit();
        let listeners = listeners
            .into_iter()
            .map(|l| {
                let addr = l
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                let key = ListenKey {
                    addr,
                    service: listener::Service::Http,
                };
                l.set_nonblocking(true)
                    .and_then(|()| TcpListener::from_std(l))
                    .map(|l| (key, l))
                    .map_err(|source| RunError::Bind { addr, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Proxy {
            config,
            listeners,
            network: None,
        })
    }

    /// Serves until `shutdown` completes, then lets in-flight sessions finish for up to
    /// `Limits::shutdown_drain`.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        let (_keep, configs) = tokio::sync::watch::channel(self.config.clone());
        self.serve_reloadable(configs, shutdown).await
    }

    /// Like `serve`, and each configuration sent on `configs` applies to connections accepted
    /// from then on (sessions and tunnels in progress finish on the one they started with,
    /// so a reload drops nothing). A reload starts a fresh pool, parent health and lockout
    /// count (the lockout lasts "until reload"); listeners it no longer names are closed and
    /// new ones bound (one that cannot be bound is logged, the rest applies). A reloaded
    /// configuration that [`check_exposure`] refuses is not applied: the running one stays.
    pub async fn serve_reloadable(
        self,
        mut configs: tokio::sync::watch::Receiver<Arc<Config>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RunError> {
        let listening = self.local_addrs();
        // The watcher lives as long as we serve; each configuration's upkeep task subscribes.
        let mut _watcher = None;
        let network = match self.network {
            Some(events) => Some(events),
            None => match NetworkWatcher::spawn() {
                Ok(watcher) => {
                    let events = watcher.subscribe();
                    _watcher = Some(watcher);
                    Some(events)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no network-change detection: roaming is not followed");
                    None
                }
            },
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let first = Arc::new(Shared::new(self.config, listening.clone(), stop_rx.clone()));
        let limits = first.config.limits.clone();
        first.start(network.clone()).await;
        announce(&first, &self.listeners);
        let (shared_tx, shared_rx) = tokio::sync::watch::channel(first);
        configs.mark_unchanged();
        let mut acceptors =
            listener::Acceptors::new(shared_rx, limits.max_connections, stop_rx.clone());
        for (key, l) in self.listeners {
            acceptors.spawn(key, l);
        }
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                changed = configs.changed() => {
                    if changed.is_err() {
                        // Nobody can send a reload any more: serve until shutdown.
                        shutdown.as_mut().await;
                        break;
                    }
                    let config = configs.borrow_and_update().clone();
                    let events = network.clone();
                    apply_reload(config, &mut acceptors, &shared_tx, &stop_rx, events).await;
                }
            }
        }
        let _ = stop_tx.send(true);
        acceptors.drain(limits.shutdown_drain).await;
        Ok(())
    }
}

/// Applies a reloaded configuration: closes the listeners it drops, binds the ones it adds,
/// then serves new connections with it.
async fn apply_reload(
    config: Arc<Config>,
    acceptors: &mut listener::Acceptors,
    shared_tx: &tokio::sync::watch::Sender<Arc<Shared>>,
    stop_rx: &tokio::sync::watch::Receiver<bool>,
    mut network: Option<watch::Receiver<NetworkGeneration>>,
) {
    if let Err(e) = check_exposure(&config) {
        tracing::error!("reloaded configuration refused, keeping the running one: {e}");
        return;
    }
    let wanted = listener::wanted(&config);
    // Closed first, so an address that moves from one service to another can be bound.
    acceptors.retain(&wanted).await;
    let mut added = Vec::new();
    for key in wanted.into_iter().filter(|k| !acceptors.contains(k)) {
        match listener::bind(key.addr, config.limits.backlog) {
            Ok(l) => added.push((key, l)),
            // With -U, a port below 1024 cannot be bound any more: say so, serve the rest.
            Err(e) => {
                tracing::error!(listen = %key.addr, service = ?key.service, error = %e, "reload: cannot listen")
            }
        }
    }
    let mut listening = acceptors.http_addrs();
    listening.extend(
        added
            .iter()
            .filter(|(k, _)| k.service == listener::Service::Http)
            .filter_map(|(_, l)| l.local_addr().ok()),
    );
    let next = Arc::new(Shared::new(config, listening, stop_rx.clone()));
    if let Some(events) = network.as_mut() {
        events.mark_unchanged();
    }
    next.start(network).await;
    announce(&next, &added);
    let _ = shared_tx.send(next);
    for (key, l) in added {
        acceptors.spawn(key, l);
    }
    tracing::info!("configuration reloaded: new connections use it");
}

/// Logs what is being served: the parents (or DIRECT), each listener, and CNTLM's warning
/// for a SOCKS5 listener without users.
fn announce(shared: &Shared, listeners: &[(ListenKey, TcpListener)]) {
    let addr = |l: &TcpListener, key: &ListenKey| l.local_addr().unwrap_or(key.addr);
    let http: Vec<SocketAddr> = listeners
        .iter()
        .filter(|(k, _)| k.service == listener::Service::Http)
        .map(|(k, l)| addr(l, k))
        .collect();
    if !http.is_empty() {
        if shared.parents.is_empty() && shared.pac.is_none() {
            tracing::info!(listen = ?http, "no parent proxy configured: working DIRECT");
        } else {
            tracing::info!(listen = ?http, parents = ?shared.config.parents.iter().map(ToString::to_string).collect::<Vec<_>>(), "proxy listening");
        }
    }
    for (key, l) in listeners {
        match &key.service {
            listener::Service::Http => {}
            listener::Service::Tunnel { host, port } => {
                tracing::info!(listen = %addr(l, key), target = %format!("{host}:{port}"), "tunnel listening");
            }
            listener::Service::Socks5 => {
                tracing::info!(listen = %addr(l, key), "SOCKS5 proxy listening");
                if shared.config.socks5_users.is_empty() {
                    // CNTLM's own words, which users grep for.
                    tracing::warn!("SOCKS5 proxy will NOT require any authentication");
                }
            }
        }
    }
}

/// Runs the proxy on `config` until `shutdown` completes.
pub async fn run(config: Arc<Config>, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    Proxy::bind(config)?.serve(shutdown).await
}
