//! What "the network" is, for deciding whether it changed: the addresses on each interface,
//! which interfaces have a carrier, and the default routes.
//!
//! The kernel sends many more events than there are changes that matter to a proxy (IPv6
//! router advertisements refresh address and route lifetimes every few minutes, for one), so
//! the watcher never trusts an event by itself: it takes a fresh [`NetworkSnapshot`] and
//! compares it with the last one. Only a real difference is a network change.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::IpAddr;

/// One address assigned to one interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InterfaceAddress {
    /// Interface name, as `ip link` shows it (`wlan0`, `eth0`, `tun0`).
    pub interface: String,
    /// The address itself (IPv6 link-local addresses carry no scope here).
    pub address: IpAddr,
}

/// A default route (destination `0.0.0.0/0` or `::/0`) in the kernel's main routing table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DefaultRoute {
    /// Interface the route leaves through.
    pub interface: String,
    /// Next hop, or `None` for a route straight onto the link (point-to-point VPNs do this).
    pub gateway: Option<IpAddr>,
    /// Route metric: of several default routes the kernel prefers the lowest, so a change here
    /// changes which network a connection leaves through.
    pub metric: u32,
}

/// The parts of the machine's network state that decide where a connection goes.
///
/// Taken with [`NetworkSnapshot::capture`]; two snapshots are compared with
/// [`NetworkSnapshot::diff`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSnapshot {
    /// Every IP address on every interface (including loopback, which never changes in
    /// practice and so never causes a change).
    pub addresses: BTreeSet<InterfaceAddress>,
    /// Interfaces that are administratively up and have a carrier (`IFF_UP` and
    /// `IFF_RUNNING`): unplugging a cable leaves its addresses in place but takes this away.
    pub links_up: BTreeSet<String>,
    /// Default routes, IPv4 and IPv6.
    pub default_routes: BTreeSet<DefaultRoute>,
}

/// What differs between two snapshots; `Display` is the one-line log text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotDiff {
    /// Addresses present now and not before.
    pub added_addresses: Vec<InterfaceAddress>,
    /// Addresses present before and gone now.
    pub removed_addresses: Vec<InterfaceAddress>,
    /// Interfaces that gained their carrier or were brought up.
    pub links_up: Vec<String>,
    /// Interfaces that lost their carrier, went down or disappeared.
    pub links_down: Vec<String>,
    /// Default routes present now and not before.
    pub added_routes: Vec<DefaultRoute>,
    /// Default routes present before and gone now.
    pub removed_routes: Vec<DefaultRoute>,
}

impl NetworkSnapshot {
    /// Reads the current state from the OS: addresses and link flags from `getifaddrs(3)`, and
    /// on Linux the default routes from `/proc/net/route` and `/proc/net/ipv6_route` (a file
    /// that is missing, as the IPv6 one is on a kernel without IPv6, counts as no routes).
    ///
    /// Elsewhere the default routes are left empty: address changes still show a move between
    /// networks, since a new network always brings a new address.
    pub fn capture() -> io::Result<NetworkSnapshot> {
        let mut snapshot = NetworkSnapshot::default();
        capture_interfaces(&mut snapshot)?;
        #[cfg(target_os = "linux")]
        {
            snapshot
                .default_routes
                .extend(parse_ipv4_default_routes(&read_optional(
                    "/proc/net/route",
                )?));
            snapshot
                .default_routes
                .extend(parse_ipv6_default_routes(&read_optional(
                    "/proc/net/ipv6_route",
                )?));
        }
        Ok(snapshot)
    }

    /// What changed going from `self` (older) to `newer`.
    pub fn diff(&self, newer: &NetworkSnapshot) -> SnapshotDiff {
        SnapshotDiff {
            added_addresses: newer
                .addresses
                .difference(&self.addresses)
                .cloned()
                .collect(),
            removed_addresses: self
                .addresses
                .difference(&newer.addresses)
                .cloned()
                .collect(),
            links_up: newer.links_up.difference(&self.links_up).cloned().collect(),
            links_down: self.links_up.difference(&newer.links_up).cloned().collect(),
            added_routes: newer
                .default_routes
                .difference(&self.default_routes)
                .cloned()
                .collect(),
            removed_routes: self
                .default_routes
                .difference(&newer.default_routes)
                .cloned()
                .collect(),
        }
    }

    /// Whether `address` is on `interface`.
    pub fn has_address(&self, interface: &str, address: IpAddr) -> bool {
        self.addresses.contains(&InterfaceAddress {
            interface: interface.to_owned(),
            address,
        })
    }
}

impl SnapshotDiff {
    /// True when the two snapshots were the same.
    pub fn is_empty(&self) -> bool {
        self.added_addresses.is_empty()
            && self.removed_addresses.is_empty()
            && self.links_up.is_empty()
            && self.links_down.is_empty()
            && self.added_routes.is_empty()
            && self.removed_routes.is_empty()
    }
}

impl fmt::Display for SnapshotDiff {
    /// `added 10.1.2.3 on wlan0; wlan0 up; default route via 10.1.2.1 on wlan0 added`, or
    /// `no change`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        for a in &self.added_addresses {
            parts.push(format!("added {} on {}", a.address, a.interface));
        }
        for a in &self.removed_addresses {
            parts.push(format!("removed {} on {}", a.address, a.interface));
        }
        for link in &self.links_up {
            parts.push(format!("{link} up"));
        }
        for link in &self.links_down {
            parts.push(format!("{link} down"));
        }
        for r in &self.added_routes {
            parts.push(format!("{r} added"));
        }
        for r in &self.removed_routes {
            parts.push(format!("{r} removed"));
        }
        if parts.is_empty() {
            f.write_str("no change")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

impl fmt::Display for DefaultRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.gateway {
            Some(gateway) => write!(f, "default route via {gateway} on {}", self.interface)?,
            None => write!(f, "default route on {}", self.interface)?,
        }
        if self.metric != 0 {
            write!(f, " metric {}", self.metric)?;
        }
        Ok(())
    }
}

/// Addresses and carrier state from `getifaddrs(3)`, which lists one entry per address plus
/// (on Linux, `AF_PACKET`) one per link, each with the interface's flags.
#[cfg(unix)]
fn capture_interfaces(snapshot: &mut NetworkSnapshot) -> io::Result<()> {
    use nix::net::if_::InterfaceFlags;

    for entry in nix::ifaddrs::getifaddrs().map_err(io::Error::from)? {
        let running = InterfaceFlags::IFF_UP | InterfaceFlags::IFF_RUNNING;
        if entry.flags.contains(running) {
            snapshot.links_up.insert(entry.interface_name.clone());
        }
        let address = entry.address.as_ref().and_then(|storage| {
            if let Some(v4) = storage.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                storage.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        });
        if let Some(address) = address {
            snapshot.addresses.insert(InterfaceAddress {
                interface: entry.interface_name,
                address,
            });
        }
    }
    Ok(())
}

/// Without `getifaddrs` there is nothing cheap to look at: the snapshot stays empty and the
/// watcher never reports a change.
#[cfg(not(unix))]
fn capture_interfaces(_snapshot: &mut NetworkSnapshot) -> io::Result<()> {
    Ok(())
}

/// The file's text, or empty when it does not exist.
#[cfg(target_os = "linux")]
fn read_optional(path: &str) -> io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// `RTF_UP` from `<linux/route.h>`: the route is usable.
#[cfg(any(target_os = "linux", test))]
const RTF_UP: u32 = 0x0001;
/// `RTF_GATEWAY`: the route has a next hop.
#[cfg(any(target_os = "linux", test))]
const RTF_GATEWAY: u32 = 0x0002;
/// `RTF_REJECT`: an unreachable/prohibit route. The IPv6 table always holds a rejecting
/// `::/0` on `lo` as its fallback; it is not a way out.
#[cfg(any(target_os = "linux", test))]
const RTF_REJECT: u32 = 0x0200;

/// Default routes from `/proc/net/route`: a header line, then `Iface Destination Gateway Flags
/// RefCnt Use Metric Mask ...`, addresses as 8 hex digits of the network-order `u32` printed
/// as a native integer (so `192.0.2.254` reads `FE0200C0` on a little-endian machine).
/// Malformed lines are skipped: the file is the kernel's, but a parser of it does not panic.
#[cfg(any(target_os = "linux", test))]
pub(crate) fn parse_ipv4_default_routes(text: &str) -> Vec<DefaultRoute> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [
                iface,
                destination,
                gateway,
                flags,
                _refcnt,
                _use,
                metric,
                mask,
                ..,
            ] = fields.as_slice()
            else {
                return None;
            };
            let destination = u32::from_str_radix(destination, 16).ok()?;
            let mask = u32::from_str_radix(mask, 16).ok()?;
            let flags = u32::from_str_radix(flags, 16).ok()?;
            if destination != 0 || mask != 0 || flags & RTF_UP == 0 || flags & RTF_REJECT != 0 {
                return None;
            }
            let gateway = if flags & RTF_GATEWAY != 0 {
                let raw = u32::from_str_radix(gateway, 16).ok()?;
                Some(IpAddr::V4(std::net::Ipv4Addr::from(raw.to_ne_bytes())))
            } else {
                None
            };
            Some(DefaultRoute {
                interface: (*iface).to_owned(),
                gateway,
                metric: metric.parse().ok()?,
            })
        })
        .collect()
}

/// Default routes from `/proc/net/ipv6_route`: no header; `dest dest_len src src_len next_hop
/// metric refcnt use flags iface`, addresses as 32 hex digits in network order, lengths,
/// metric and flags in hex.
#[cfg(any(target_os = "linux", test))]
pub(crate) fn parse_ipv6_default_routes(text: &str) -> Vec<DefaultRoute> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [
                destination,
                prefix_len,
                _src,
                _src_len,
                next_hop,
                metric,
                _ref,
                _use,
                flags,
                iface,
            ] = fields.as_slice()
            else {
                return None;
            };
            let destination = u128::from_str_radix(destination, 16).ok()?;
            let prefix_len = u8::from_str_radix(prefix_len, 16).ok()?;
            let flags = u32::from_str_radix(flags, 16).ok()?;
            if destination != 0 || prefix_len != 0 || flags & RTF_UP == 0 || flags & RTF_REJECT != 0
            {
                return None;
            }
            let next_hop = u128::from_str_radix(next_hop, 16).ok()?;
            Some(DefaultRoute {
                interface: (*iface).to_owned(),
                gateway: (next_hop != 0).then(|| IpAddr::V6(std::net::Ipv6Addr::from(next_hop))),
                metric: u32::from_str_radix(metric, 16).ok()?,
            })
        })
        .collect()
}
