//! `-L` tunnels, the `-O` SOCKS5 listener, listener changes on reload and `-s`, against the
//! in-process fake parents and origins (the lab proves the same against Squid in
//! `squid_tunnels.rs`).

#[path = "support/fake.rs"]
mod fake;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cntlm::config::{Config, TunnelSpec};
use cntlm::proxy::listener::Service;
use cntlm::proxy::{Proxy, RunError};
use fake::{ParentMode, TEST_TIMEOUT, TestClient, parent_config, start_echo, start_parent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

/// A port that was free a moment ago (for listeners a reload must bind by number).
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// The bound listeners, the reload sender, and the stop sender (dropping it stops).
type Running = (
    Vec<(cntlm::proxy::ListenKey, SocketAddr)>,
    tokio::sync::watch::Sender<Arc<Config>>,
    tokio::sync::oneshot::Sender<()>,
);

/// Starts `config` with reloads through the returned sender; the proxy stops when the
/// oneshot sender is dropped.
fn serve(config: Config) -> Running {
    let config = Arc::new(config);
    let proxy = Proxy::bind(config.clone()).expect("bind");
    let bound = proxy.bound();
    let (tx, rx) = tokio::sync::watch::channel(config);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(proxy.serve_reloadable(rx, async {
        let _ = stop_rx.await;
    }));
    (bound, tx, stop_tx)
}

fn addr_of(bound: &[(cntlm::proxy::ListenKey, SocketAddr)], service: &Service) -> SocketAddr {
    bound
        .iter()
        .find(|(k, _)| &k.service == service)
        .map(|(_, a)| *a)
        .expect("listener bound")
}

/// Sends `data`, half-closes, and reads everything back (the echo answers after our EOF, so
/// this proves half-close crosses the tunnel in both directions).
async fn echo_through(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(data).await.expect("write");
    s.shutdown().await.expect("half-close");
    let mut back = Vec::new();
    s.read_to_end(&mut back).await.expect("read");
    back
}

#[tokio::test]
async fn l_tunnel_through_an_ntlm_parent_with_half_close() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let echo = start_echo().await;
        let (parent, rec) = start_parent(ParentMode::Ntlm).await;
        let mut config = parent_config(&[parent], true);
        config.listen = vec![any_port()];
        config.tunnels = vec![TunnelSpec {
            listen: any_port(),
            host: echo.ip().to_string(),
            port: echo.port(),
        }];
        let (bound, _tx, _stop) = serve(config);
        let service = Service::Tunnel {
            host: echo.ip().to_string(),
            port: echo.port(),
        };
        let tunnel = addr_of(&bound, &service);
        let data = vec![7u8; 300_000];
        assert_eq!(echo_through(tunnel, &data).await, data);
        let seen = rec.requests();
        assert!(
            seen.iter()
                .any(|s| s.head.method == "CONNECT" && s.head.target == echo.to_string()),
            "{:?}",
            seen.iter().map(|s| &s.head.target).collect::<Vec<_>>()
        );
        assert_eq!(rec.type3.load(Ordering::SeqCst), 1, "authenticated");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn l_tunnel_goes_direct_for_no_proxy() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let echo = start_echo().await;
        let (parent, rec) = start_parent(ParentMode::Ntlm).await;
        let mut config = parent_config(&[parent], true);
        config.listen = vec![any_port()];
        config.no_proxy = vec!["127.0.0.*".to_string()];
        config.tunnels = vec![TunnelSpec {
            listen: any_port(),
            host: echo.ip().to_string(),
            port: echo.port(),
        }];
        let (bound, _tx, _stop) = serve(config);
        let tunnel = addr_of(
            &bound,
            &Service::Tunnel {
                host: echo.ip().to_string(),
                port: echo.port(),
            },
        );
        assert_eq!(echo_through(tunnel, b"direct").await, b"direct");
        assert!(rec.requests().is_empty(), "the parent was not used");
    })
    .await
    .expect("test timed out");
}

/// SOCKS5 greeting + RFC 1929 + CONNECT to `target` by domain name; returns the REP byte
/// (or the RFC 1929 status when that failed, as `0x100 | status`).
async fn socks5_connect(
    s: &mut TcpStream,
    user: Option<(&str, &str)>,
    host: &str,
    port: u16,
) -> u16 {
    let method = if user.is_some() { 2 } else { 0 };
    s.write_all(&[5, 1, method]).await.expect("greeting");
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await.expect("method");
    assert_eq!(choice, [5, method]);
    if let Some((u, p)) = user {
        let mut m = vec![1, u.len() as u8];
        m.extend_from_slice(u.as_bytes());
        m.push(p.len() as u8);
        m.extend_from_slice(p.as_bytes());
        s.write_all(&m).await.expect("auth");
        let mut status = [0u8; 2];
        s.read_exact(&mut status).await.expect("auth status");
        if status[1] != 0 {
            return 0x100 | u16::from(status[1]);
        }
    }
    let mut req = vec![5, 1, 0, 3, host.len() as u8];
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.expect("request");
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).await.expect("reply");
    u16::from(reply[1])
}

#[tokio::test]
async fn socks5_through_the_parent_with_and_without_users() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let echo = start_echo().await;
        let (parent, rec) = start_parent(ParentMode::Ntlm).await;
        let mut config = parent_config(&[parent], true);
        config.listen = vec![any_port()];
        config.socks5_listen = vec![any_port()];
        let (bound, _tx, _stop) = serve(config.clone());
        let socks = addr_of(&bound, &Service::Socks5);
        let mut s = TcpStream::connect(socks).await.expect("connect");
        assert_eq!(
            socks5_connect(&mut s, None, "127.0.0.1", echo.port()).await,
            0
        );
        s.write_all(b"via socks").await.expect("write");
        s.shutdown().await.expect("half-close");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"via socks");
        assert!(rec.requests().iter().any(|r| r.head.method == "CONNECT"));

        config.socks5_users = vec![("u".into(), cntlm::auth::Password::new("pw"))];
        let (bound, _tx2, _stop2) = serve(config);
        let socks = addr_of(&bound, &Service::Socks5);
        let mut s = TcpStream::connect(socks).await.expect("connect");
        assert_eq!(
            socks5_connect(&mut s, Some(("u", "wrong")), "127.0.0.1", echo.port()).await,
            0x101,
            "a wrong password fails RFC 1929"
        );
        let mut s = TcpStream::connect(socks).await.expect("connect");
        assert_eq!(
            socks5_connect(&mut s, Some(("u", "pw")), "127.0.0.1", echo.port()).await,
            0
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn socks5_reports_a_parent_refusal_as_not_allowed() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (parent, _rec) = start_parent(ParentMode::NtlmReject).await;
        let mut config = parent_config(&[parent], true);
        config.listen = vec![any_port()];
        config.socks5_listen = vec![any_port()];
        let (bound, _tx, _stop) = serve(config);
        let socks = addr_of(&bound, &Service::Socks5);
        let mut s = TcpStream::connect(socks).await.expect("connect");
        // RFC 1928 §6: 0x02 "connection not allowed by ruleset" for the parent's final 407.
        assert_eq!(socks5_connect(&mut s, None, "example.test", 443).await, 2);
    })
    .await
    .expect("test timed out");
}

#[test]
fn an_open_socks5_listener_off_loopback_refuses_to_start() {
    let config = Config {
        listen: vec![any_port()],
        socks5_listen: vec!["0.0.0.0:0".parse().expect("addr")],
        ..Config::default()
    };
    match Proxy::bind(Arc::new(config)) {
        Err(e @ RunError::OpenSocks5(_)) => assert!(e.to_string().contains("SOCKS5Users"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn reload_binds_new_listeners_and_closes_removed_ones_keeping_open_tunnels() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        // A target that keeps its connection open and echoes line by line.
        let target = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target_addr = target.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = target.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let first_port = free_port();
        let spec = |listen| TunnelSpec {
            listen,
            host: target_addr.ip().to_string(),
            port: target_addr.port(),
        };
        let mut config = Config {
            listen: vec![any_port()],
            tunnels: vec![spec(first_port)],
            ..Config::default()
        };
        let (_bound, tx, _stop) = serve(config.clone());
        let mut open = TcpStream::connect(first_port).await.expect("tunnel");
        let mut buf = [0u8; 5];
        open.write_all(b"one").await.expect("write");
        open.read_exact(&mut buf[..3]).await.expect("read");
        assert_eq!(&buf[..3], b"one");

        // Reload: the tunnel moves to another port.
        let second_port = free_port();
        config.tunnels = vec![spec(second_port)];
        tx.send(Arc::new(config)).expect("reload");
        // Until the reload applied, the new port refuses; retry without sleeping blindly.
        let mut moved = None;
        for _ in 0..200 {
            match TcpStream::connect(second_port).await {
                Ok(s) => {
                    moved = Some(s);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        let mut moved = moved.expect("the new tunnel listener is bound");
        moved.write_all(b"two").await.expect("write");
        moved.read_exact(&mut buf[..3]).await.expect("read");
        assert_eq!(&buf[..3], b"two");
        assert!(
            TcpStream::connect(first_port).await.is_err(),
            "the removed tunnel listener is closed"
        );
        // The tunnel opened before the reload still works.
        open.write_all(b"still").await.expect("write");
        open.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"still");
    })
    .await
    .expect("test timed out");
}

/// `-s`: plain requests pass one at a time. The origin counts how many it holds at once
/// (each answer is delayed a little to give overlaps a chance) while eight clients send at
/// the same time; every request is still answered.
#[tokio::test]
async fn serialize_passes_one_request_at_a_time() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let origin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let origin_addr = origin.local_addr().expect("addr");
        let busy = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (b, m) = (busy.clone(), most.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = origin.accept().await {
                let (b, m) = (b.clone(), m.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if s.read_exact(&mut byte).await.is_err() {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let now = b.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                    b.fetch_sub(1, Ordering::SeqCst);
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        let config = Config {
            serialize: true,
            ..Config::default()
        };
        let proxy = fake::start_proxy(config);
        let mut clients = Vec::new();
        for i in 0..8 {
            let addr = proxy.addr;
            clients.push(tokio::spawn(async move {
                let mut c = TestClient::connect(addr).await;
                let req = format!("GET http://{origin_addr}/{i} HTTP/1.1\r\nHost: x\r\n\r\n");
                c.request("GET", req.as_bytes()).await.head.status
            }));
        }
        for c in clients {
            assert_eq!(c.await.expect("client"), 200);
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "one request at a time");
    })
    .await
    .expect("test timed out");
}

/// Issue 4 §7: the lockout lasts until reload. Three rejections close the gate; after a
/// reload (the same configuration) a request authenticates again.
#[tokio::test]
async fn reload_resets_the_lockout() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (parent, rec) = start_parent(ParentMode::NtlmReject).await;
        let mut config = parent_config(&[parent], true);
        config.listen = vec![any_port()];
        let (bound, tx, _stop) = serve(config.clone());
        let proxy = addr_of(&bound, &Service::Http);
        let get = |i: usize| {
            format!("GET http://example.invalid/{i} HTTP/1.1\r\nHost: example.invalid\r\n\r\n")
        };
        for i in 0..4 {
            let mut c = TestClient::connect(proxy).await;
            assert_eq!(c.request("GET", get(i).as_bytes()).await.head.status, 407);
        }
        assert_eq!(
            rec.type3.load(Ordering::SeqCst),
            3,
            "locked out after three"
        );
        tx.send(Arc::new(config)).expect("reload");
        let mut retried = false;
        for i in 0..200 {
            let mut c = TestClient::connect(proxy).await;
            assert_eq!(c.request("GET", get(i).as_bytes()).await.head.status, 407);
            if rec.type3.load(Ordering::SeqCst) == 4 {
                retried = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(retried, "a Type 3 is sent again after the reload");
    })
    .await
    .expect("test timed out");
}

/// `-L` listeners obey `Allow`/`Deny` before reading a byte: a denied client is closed and
/// the target never sees a connection.
#[tokio::test]
async fn l_tunnel_obeys_the_acl() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let target = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target_addr = target.local_addr().expect("addr");
        let config = Config {
            listen: vec![any_port()],
            acl: vec![cntlm::config::AclRule {
                action: cntlm::config::AclAction::Deny,
                network: "127.0.0.0/8".parse().expect("net"),
            }],
            tunnels: vec![TunnelSpec {
                listen: any_port(),
                host: target_addr.ip().to_string(),
                port: target_addr.port(),
            }],
            ..Config::default()
        };
        let (bound, _tx, _stop) = serve(config);
        let tunnel = addr_of(
            &bound,
            &Service::Tunnel {
                host: target_addr.ip().to_string(),
                port: target_addr.port(),
            },
        );
        let mut s = TcpStream::connect(tunnel).await.expect("connect");
        let mut rest = Vec::new();
        // Closed by the proxy (EOF or reset), with nothing relayed.
        let _ = s.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(200), target.accept()).await;
        assert!(accepted.is_err(), "the target was never contacted");
    })
    .await
    .expect("test timed out");
}
