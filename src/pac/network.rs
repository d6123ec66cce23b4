//! The PAC engine's view of the machine: DNS, "my" address, and the local date and time.
//!
//! Both are traits so tests can script them; the system implementations use the OS resolver
//! (`getaddrinfo` through `ToSocketAddrs`, so `/etc/hosts`, nsswitch and VPN split DNS apply,
//! as crates.md §4 recommends) and a UDP `connect()` to learn the local address: connecting a
//! UDP socket only asks the kernel for a route and sends no packet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::config::ParentProxy;

/// DNS and local addresses as the PAC helper functions see them.
///
/// Methods are called on the engine thread and block it, so they must bound their own time.
pub trait PacNetwork: Send + Sync + 'static {
    /// Addresses of `host` (never an address literal: the engine answers those itself); empty
    /// when the name does not resolve in time.
    fn resolve(&self, host: &str) -> Vec<IpAddr>;

    /// This machine's addresses as seen from the network the parent lives in, best first;
    /// empty when unknown (the helpers then answer 127.0.0.1).
    fn my_ip_addresses(&self) -> Vec<IpAddr>;
}

/// Lookups allowed to hang at once before further ones fail fast; a wedged resolver must not
/// pile up threads.
const MAX_LOOKUPS_IN_FLIGHT: usize = 4;

/// The OS resolver and routing table.
#[derive(Debug, Clone)]
pub struct SystemNetwork {
    /// Where `myIpAddress` looks from: usually the first parent proxy.
    my_ip_target: Option<ParentProxy>,
    /// Longest one lookup may take.
    dns_timeout: Duration,
    /// Lookups currently running on their helper threads (including abandoned ones).
    in_flight: Arc<AtomicUsize>,
}

impl SystemNetwork {
    /// A resolver with `dns_timeout` per lookup; `myIpAddress` looks toward `my_ip_target`.
    pub fn new(my_ip_target: Option<ParentProxy>, dns_timeout: Duration) -> SystemNetwork {
        SystemNetwork {
            my_ip_target,
            dns_timeout,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl PacNetwork for SystemNetwork {
    fn resolve(&self, host: &str) -> Vec<IpAddr> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return vec![ip];
        }
        // getaddrinfo has no timeout, so it runs on its own thread and we stop waiting after
        // dns_timeout; the thread finishes on its own and its answer is dropped.
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_LOOKUPS_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(
                host,
                "PAC DNS lookup refused: too many lookups still hanging"
            );
            return Vec::new();
        }
        let (tx, rx) = mpsc::channel();
        let name = host.to_owned();
        let in_flight = Arc::clone(&self.in_flight);
        let spawned = std::thread::Builder::new()
            .name("cntlm-pac-dns".into())
            .spawn(move || {
                let addrs: Vec<IpAddr> = (name.as_str(), 0)
                    .to_socket_addrs()
                    .map(|it| it.map(|sa| sa.ip()).collect())
                    .unwrap_or_default();
                in_flight.fetch_sub(1, Ordering::SeqCst);
                // The receiver may have given up; nothing to do then.
                let _ = tx.send(addrs);
            });
        if spawned.is_err() {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Vec::new();
        }
        match rx.recv_timeout(self.dns_timeout) {
            Ok(mut addrs) => {
                addrs.dedup();
                addrs
            }
            Err(_) => {
                tracing::debug!(host, timeout = ?self.dns_timeout, "PAC DNS lookup timed out");
                Vec::new()
            }
        }
    }

    fn my_ip_addresses(&self) -> Vec<IpAddr> {
        let Some(target) = &self.my_ip_target else {
            return Vec::new();
        };
        let targets = self.resolve(&target.host);
        let mut mine = Vec::new();
        for family_v4 in [true, false] {
            let Some(ip) = targets.iter().find(|ip| ip.is_ipv4() == family_v4) else {
                continue;
            };
            if let Some(local) = local_address_toward(SocketAddr::new(*ip, target.port)) {
                mine.push(local);
            }
        }
        mine
    }
}

/// The source address the OS would pick to reach `target`. `connect()` on a UDP socket only
/// consults the routing table: no packet leaves the machine.
pub fn local_address_toward(target: SocketAddr) -> Option<IpAddr> {
    let unspecified: IpAddr = match target {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(unspecified, 0)).ok()?;
    socket.connect(target).ok()?;
    let local = socket.local_addr().ok()?.ip();
    (!local.is_unspecified()).then_some(local)
}

/// Which clock the `*Range` functions read: local time, or UTC when the PAC passes `"GMT"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeZoneChoice {
    /// The machine's local time zone.
    Local,
    /// UTC (`"GMT"` in PAC).
    Gmt,
}

/// A calendar date and wall-clock time, as the `*Range` PAC functions compare them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    /// Full year, e.g. 2026.
    pub year: i32,
    /// 1 (January) to 12.
    pub month: u8,
    /// Day of the month, 1 to 31.
    pub day: u8,
    /// 0 (Sunday) to 6 (Saturday), like JavaScript's `getDay()`.
    pub weekday: u8,
    /// 0 to 23.
    pub hour: u8,
    /// 0 to 59.
    pub minute: u8,
    /// 0 to 59.
    pub second: u8,
}

/// The current date and time for the PAC helpers.
pub trait PacClock: Send + Sync + 'static {
    /// Now, in local time or UTC.
    fn now(&self, zone: TimeZoneChoice) -> CivilTime;
}

/// The system clock; local time comes from the system time zone (jiff reads `TZ` and
/// `/etc/localtime`, or the Windows registry).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl PacClock for SystemClock {
    #[cfg(feature = "pac")]
    fn now(&self, zone: TimeZoneChoice) -> CivilTime {
        let tz = match zone {
            TimeZoneChoice::Local => jiff::tz::TimeZone::system(),
            TimeZoneChoice::Gmt => jiff::tz::TimeZone::UTC,
        };
        let now = jiff::Timestamp::now().to_zoned_datetime(tz);
        CivilTime {
            year: i32::from(now.year()),
            month: u8::try_from(now.month()).unwrap_or(1),
            day: u8::try_from(now.day()).unwrap_or(1),
            weekday: u8::try_from(now.weekday().to_sunday_zero_offset()).unwrap_or(0),
            hour: u8::try_from(now.hour()).unwrap_or(0),
            minute: u8::try_from(now.minute()).unwrap_or(0),
            second: u8::try_from(now.second()).unwrap_or(0),
        }
    }

    /// Without the `pac` feature nothing reads the clock; UTC stands in for local time.
    #[cfg(not(feature = "pac"))]
    fn now(&self, _zone: TimeZoneChoice) -> CivilTime {
        CivilTime {
            year: 1970,
            month: 1,
            day: 1,
            weekday: 4,
            hour: 0,
            minute: 0,
            second: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_address_toward_loopback_is_loopback() {
        let got = local_address_toward("127.0.0.1:9".parse().expect("literal"));
        assert_eq!(got, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn system_network_answers_literals_without_dns() {
        let net = SystemNetwork::new(None, Duration::from_secs(1));
        assert_eq!(net.resolve("10.1.2.3"), vec![IpAddr::from([10, 1, 2, 3])]);
        assert!(net.my_ip_addresses().is_empty());
    }

    #[test]
    fn system_network_my_ip_toward_a_loopback_parent() {
        let parent = ParentProxy {
            host: "127.0.0.1".into(),
            port: 3128,
        };
        let net = SystemNetwork::new(Some(parent), Duration::from_secs(1));
        assert_eq!(net.my_ip_addresses(), vec![IpAddr::from([127, 0, 0, 1])]);
    }

    #[test]
    fn system_network_resolves_localhost_through_the_os() {
        // /etc/hosts (or its platform equivalent) names localhost; a loopback answer proves the
        // system resolver was used and nothing left the machine.
        let net = SystemNetwork::new(None, Duration::from_secs(5));
        let got = net.resolve("localhost");
        assert!(!got.is_empty(), "localhost should resolve");
        assert!(got.iter().all(IpAddr::is_loopback), "{got:?}");
    }
}
