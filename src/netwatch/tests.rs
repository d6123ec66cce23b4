//! Unit tests: snapshot comparison, the `/proc` route parsers, and the debounce loop driven by
//! injected hints and scripted snapshots on tokio's paused clock. The real kernel path is
//! tested in `tests/netwatch.rs`, inside a network namespace.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::snapshot::{parse_ipv4_default_routes, parse_ipv6_default_routes};
use super::*;

fn addr(interface: &str, address: &str) -> InterfaceAddress {
    InterfaceAddress {
        interface: interface.to_owned(),
        address: address.parse().expect("test addresses are literals"),
    }
}

fn route(interface: &str, gateway: Option<&str>, metric: u32) -> DefaultRoute {
    DefaultRoute {
        interface: interface.to_owned(),
        gateway: gateway.map(|g| g.parse().expect("test addresses are literals")),
        metric,
    }
}

/// The office: wired, one address, one default route.
fn office() -> NetworkSnapshot {
    NetworkSnapshot {
        addresses: [addr("lo", "127.0.0.1"), addr("eth0", "10.0.0.5")].into(),
        links_up: ["lo".to_owned(), "eth0".to_owned()].into(),
        default_routes: [route("eth0", Some("10.0.0.1"), 100)].into(),
    }
}

/// Home: the cable is out, Wi-Fi is on.
fn home() -> NetworkSnapshot {
    NetworkSnapshot {
        addresses: [
            addr("lo", "127.0.0.1"),
            addr("eth0", "10.0.0.5"),
            addr("wlan0", "192.168.1.20"),
        ]
        .into(),
        links_up: ["lo".to_owned(), "wlan0".to_owned()].into(),
        default_routes: [route("wlan0", Some("192.168.1.1"), 600)].into(),
    }
}

#[test]
fn identical_snapshots_have_an_empty_diff() {
    let diff = office().diff(&office());
    assert!(diff.is_empty());
    assert_eq!(diff.to_string(), "no change");
}

#[test]
fn moving_from_office_to_home_lists_every_difference() {
    let diff = office().diff(&home());
    assert_eq!(diff.added_addresses, vec![addr("wlan0", "192.168.1.20")]);
    assert!(
        diff.removed_addresses.is_empty(),
        "eth0 keeps its stale address"
    );
    assert_eq!(diff.links_up, vec!["wlan0".to_owned()]);
    assert_eq!(diff.links_down, vec!["eth0".to_owned()]);
    assert_eq!(
        diff.added_routes,
        vec![route("wlan0", Some("192.168.1.1"), 600)]
    );
    assert_eq!(
        diff.removed_routes,
        vec![route("eth0", Some("10.0.0.1"), 100)]
    );
    assert_eq!(
        diff.to_string(),
        "added 192.168.1.20 on wlan0; wlan0 up; eth0 down; \
         default route via 192.168.1.1 on wlan0 metric 600 added; \
         default route via 10.0.0.1 on eth0 metric 100 removed"
    );
}

#[test]
fn the_same_address_moving_to_another_interface_is_a_change() {
    let before = NetworkSnapshot {
        addresses: [addr("eth0", "10.0.0.5")].into(),
        ..NetworkSnapshot::default()
    };
    let after = NetworkSnapshot {
        addresses: [addr("eth1", "10.0.0.5")].into(),
        ..NetworkSnapshot::default()
    };
    let diff = before.diff(&after);
    assert_eq!(
        diff.to_string(),
        "added 10.0.0.5 on eth1; removed 10.0.0.5 on eth0"
    );
}

#[test]
fn a_default_route_metric_change_is_a_change() {
    let mut before = NetworkSnapshot::default();
    before.default_routes.insert(route("tun0", None, 0));
    let mut after = NetworkSnapshot::default();
    after.default_routes.insert(route("tun0", None, 50));
    let diff = before.diff(&after);
    assert_eq!(
        diff.to_string(),
        "default route on tun0 metric 50 added; default route on tun0 removed"
    );
}

#[test]
fn has_address_matches_interface_and_address() {
    let snapshot = office();
    assert!(snapshot.has_address("eth0", "10.0.0.5".parse().expect("literal")));
    assert!(!snapshot.has_address("wlan0", "10.0.0.5".parse().expect("literal")));
}

/// `/proc/net/route` prints each address as the network-order `u32` read as a native integer.
fn proc_hex(ip: Ipv4Addr) -> String {
    format!("{:08X}", u32::from_ne_bytes(ip.octets()))
}

#[test]
fn ipv4_default_routes_come_from_proc_net_route() {
    let gw = proc_hex(Ipv4Addr::new(192, 0, 2, 254));
    let net = proc_hex(Ipv4Addr::new(192, 0, 2, 0));
    let mask = proc_hex(Ipv4Addr::new(255, 255, 255, 0));
    let text = format!(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
         nw0\t00000000\t{gw}\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
         nw0\t{net}\t00000000\t0001\t0\t0\t0\t{mask}\t0\t0\t0\n\
         tun0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n\
         nw1\t00000000\t00000000\t0201\t0\t0\t0\t00000000\t0\t0\t0\n\
         nw2\t00000000\t00000000\t0000\t0\t0\t0\t00000000\t0\t0\t0\n\
         garbage line\n\
         nw3\tZZZZZZZZ\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n"
    );
    assert_eq!(
        parse_ipv4_default_routes(&text),
        vec![
            route("nw0", Some("192.0.2.254"), 100),
            route("tun0", None, 0)
        ],
        "the subnet route, the reject route, the down route and junk are not defaults"
    );
}

#[test]
fn ipv6_default_routes_come_from_proc_net_ipv6_route() {
    // Real lines from a namespace with `default via 2001:db8::fe dev nw0`, plus the kernel's
    // permanent unreachable ::/0 on lo that must not count.
    let text = "\
20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001      nw0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 20010db80000000000000000000000fe 00000400 00000001 00000000 00000003      nw0
20010db8000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001      nw0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000001 00000000 00000001      wg0
short line
";
    let routes = parse_ipv6_default_routes(text);
    assert_eq!(
        routes,
        vec![
            DefaultRoute {
                interface: "nw0".to_owned(),
                gateway: Some(IpAddr::V6(Ipv6Addr::new(
                    0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe
                ))),
                metric: 1024,
            },
            route("wg0", None, 0),
        ]
    );
}

#[test]
fn empty_proc_files_mean_no_routes() {
    assert!(parse_ipv4_default_routes("").is_empty());
    assert!(parse_ipv6_default_routes("").is_empty());
}

/// A watcher on injected hints whose snapshots come, in order, from `script` (the first one
/// is the start snapshot); the last entry repeats once the script runs out. Each capture sends
/// its sequence number (1 for the start snapshot) on the returned receiver.
fn scripted_watcher(
    script: Vec<NetworkSnapshot>,
) -> (
    NetworkWatcher,
    mpsc::UnboundedSender<()>,
    mpsc::UnboundedReceiver<usize>,
) {
    let (hints, rx) = mpsc::unbounded_channel();
    let (captured, captures) = mpsc::unbounded_channel();
    let mut count = 0;
    let mut script: VecDeque<NetworkSnapshot> = script.into();
    let capture = move || {
        count += 1;
        // The receiver may be gone when a test no longer cares.
        let _ = captured.send(count);
        let next = if script.len() > 1 {
            script.pop_front()
        } else {
            script.front().cloned()
        };
        Ok(next.expect("the script has at least one snapshot"))
    };
    let watcher = NetworkWatcher::start(HintSource::Injected(rx), capture, WatchOptions::default())
        .expect("the scripted capture does not fail");
    (watcher, hints, captures)
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_hints_is_one_change() {
    let (watcher, hints, mut captures) = scripted_watcher(vec![office(), home()]);
    let mut rx = watcher.subscribe();
    assert_eq!(rx.borrow_and_update().get(), 0);
    for _ in 0..20 {
        hints.send(()).expect("the watcher task is running");
    }
    rx.changed().await.expect("the watcher is alive");
    assert_eq!(rx.borrow_and_update().get(), 1);
    assert_eq!(*watcher.snapshot(), home());
    let mut taken = Vec::new();
    while let Ok(n) = captures.try_recv() {
        taken.push(n);
    }
    assert_eq!(
        taken,
        vec![1, 2],
        "one snapshot at start, one for the whole burst"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hint_that_changes_nothing_keeps_the_generation() {
    // Start: office; first hint: office again (nothing changed); second hint: home.
    let (watcher, hints, mut captures) = scripted_watcher(vec![office(), office(), home()]);
    let mut rx = watcher.subscribe();
    rx.borrow_and_update();
    assert_eq!(captures.recv().await, Some(1));
    hints.send(()).expect("the watcher task is running");
    // The second capture happens once the debounce expires (the paused clock jumps ahead when
    // every task is idle); the generation must not move for it.
    assert_eq!(captures.recv().await, Some(2));
    assert!(!rx.has_changed().expect("the watcher is alive"));
    assert_eq!(watcher.generation().get(), 0);

    hints.send(()).expect("the watcher task is running");
    rx.changed().await.expect("the watcher is alive");
    assert_eq!(rx.borrow_and_update().get(), 1);
    assert_eq!(*watcher.snapshot(), home());
}

#[tokio::test(start_paused = true)]
async fn a_never_ending_stream_of_hints_is_still_noticed() {
    let (watcher, hints, _captures) = scripted_watcher(vec![office(), home()]);
    let mut rx = watcher.subscribe();
    rx.borrow_and_update();
    let flood = tokio::spawn(async move {
        // A hint every 100 ms, forever: shorter than the debounce, so only max_hold ends it.
        loop {
            if hints.send(()).is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    rx.changed().await.expect("the watcher is alive");
    assert_eq!(rx.borrow_and_update().get(), 1);
    flood.abort();
}

#[tokio::test(start_paused = true)]
async fn dropping_the_watcher_ends_subscriptions() {
    let (watcher, _hints, _captures) = scripted_watcher(vec![office()]);
    let mut rx = watcher.subscribe();
    drop(watcher);
    assert!(rx.changed().await.is_err());
}

#[tokio::test(start_paused = true)]
async fn polling_notices_a_change() {
    let script = Arc::new(Mutex::new(VecDeque::from([office(), office(), home()])));
    let source = HintSource::poll(Duration::from_secs(5));
    let capture = move || {
        let mut script = script.lock().expect("test mutex is not poisoned");
        let next = if script.len() > 1 {
            script.pop_front()
        } else {
            script.front().cloned()
        };
        Ok(next.expect("the script has at least one snapshot"))
    };
    let watcher = NetworkWatcher::start(source, capture, WatchOptions::default())
        .expect("the scripted capture does not fail");
    let mut rx = watcher.subscribe();
    rx.changed().await.expect("the watcher is alive");
    assert_eq!(watcher.generation().get(), 1);
    assert_eq!(*watcher.snapshot(), home());
    assert_eq!(watcher.mode(), WatchMode::Poll);
}
