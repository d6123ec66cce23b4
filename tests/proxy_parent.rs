//! Fast in-process tests of the proxy through fake parents: the NTLM connection handshake
//! (one Type 1 probe and one Type 3 per fresh connection), the shared pool, lockout safety,
//! a parent closing after its 407, failover and NoProxy.
//!
//! Tests marked "needs the NTLM engine" check `ntlm_engine_ready` and return early while the
//! message layer is still a stub; the lead runs them after the merge.

#[path = "support/fake.rs"]
mod fake;

use std::sync::atomic::Ordering;

use fake::{
    ParentMode, TEST_TIMEOUT, TestClient, ntlm_engine_ready, parent_config, start_origin,
    start_parent, start_proxy, test_credentials,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out");
}

fn engine_ready() -> bool {
    let ready = ntlm_engine_ready(&test_credentials());
    if !ready {
        eprintln!("skipping: the NTLM message layer is not merged yet (stubs)");
    }
    ready
}

#[tokio::test]
async fn open_parent_gets_absolute_target_keep_alive_and_no_client_credentials() {
    bounded(async {
        let (parent, rec) = start_parent(ParentMode::Open).await;
        let proxy = start_proxy(parent_config(&[parent], false));
        let mut c = TestClient::connect(proxy.addr).await;
        let a = c
            .request(
                "GET",
                b"GET http://example.invalid/x?y HTTP/1.1\r\nHost: example.invalid\r\nProxy-Authorization: Basic dTpw\r\nConnection: close\r\n\r\n",
            )
            .await;
        assert_eq!(a.head.status, 200);
        assert_eq!(a.header("x-target").as_deref(), Some("http://example.invalid/x?y"));
        let seen = &rec.requests()[0].head;
        assert_eq!(seen.headers.get("proxy-connection"), Some(&b"keep-alive"[..]));
        assert!(!seen.headers.contains("proxy-authorization"));
        assert!(!seen.headers.contains("connection"));
    })
    .await;
}

/// reliability-bar.md §B 10: the auth probe is not a duplicate request.
#[tokio::test]
async fn parent_without_auth_gets_a_post_body_exactly_once() {
    bounded(async {
        let (parent, rec) = start_parent(ParentMode::Open).await;
        let proxy = start_proxy(parent_config(&[parent], true));
        let mut c = TestClient::connect(proxy.addr).await;
        let body = vec![b'z'; 1024 * 1024];
        let mut raw = format!("POST http://example.invalid/up HTTP/1.1\r\nHost: example.invalid\r\nContent-Length: {}\r\n\r\n", body.len())
            .into_bytes();
        raw.extend_from_slice(&body);
        let a = c.request("POST", &raw).await;
        assert_eq!(a.head.status, 200);
        assert_eq!(a.body.len(), body.len());
        let with_body: Vec<_> = rec.requests().into_iter().filter(|r| !r.body.is_empty()).collect();
        assert_eq!(with_body.len(), 1, "the body went up exactly once");
        assert_eq!(with_body[0].body, body);
        // A body-less request: the probe IS the request, the parent sees it once.
        let before = rec.requests().len();
        let a = c.request("GET", b"GET http://example.invalid/g HTTP/1.1\r\nHost: example.invalid\r\n\r\n").await;
        assert_eq!(a.head.status, 200);
        assert!(rec.requests().len() - before <= 1);
    })
    .await;
}

/// Needs the NTLM engine.
#[tokio::test]
async fn ntlm_handshake_once_per_connection_and_pool_shared_by_clients() {
    if !engine_ready() {
        return;
    }
    bounded(async {
        let (parent, rec) = start_parent(ParentMode::Ntlm).await;
        let proxy = start_proxy(parent_config(&[parent], true));
        for i in 0..5 {
            // A new client each time, saying Connection: close: the parent connection is
            // still kept alive and reused (CNTLM fails these).
            let mut c = TestClient::connect(proxy.addr).await;
            let raw = format!("POST http://example.invalid/{i} HTTP/1.1\r\nHost: example.invalid\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc");
            let a = c.request("POST", raw.as_bytes()).await;
            assert_eq!(a.head.status, 200, "request {i}");
            assert_eq!(a.body, b"abc");
        }
        assert_eq!(rec.connections.load(Ordering::SeqCst), 1, "one parent connection");
        assert_eq!(rec.type1.load(Ordering::SeqCst), 1, "one Type 1 probe");
        assert_eq!(rec.type3.load(Ordering::SeqCst), 1, "one Type 3");
        let requests = rec.requests();
        assert_eq!(requests[0].head.headers.get("content-length"), Some(&b"0"[..]), "probe is body-less");
        assert!(requests[0].body.is_empty());
        assert_eq!(requests[1].body, b"abc", "the real request carries the body once");
        for r in &requests[2..] {
            assert!(!r.head.headers.contains("proxy-authorization"), "pooled reuse sends no auth");
        }
        assert_eq!(requests.len(), 6);
    })
    .await;
}

#[tokio::test]
async fn parent_closing_after_407_gets_a_fresh_type1_on_a_new_connection() {
    bounded(async {
        let (parent, rec) = start_parent(ParentMode::NtlmCloseAfterChallenge(1)).await;
        let proxy = start_proxy(parent_config(&[parent], true));
        let mut c = TestClient::connect(proxy.addr).await;
        let a = c
            .request(
                "GET",
                b"GET http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n",
            )
            .await;
        assert_eq!(rec.connections.load(Ordering::SeqCst), 2);
        assert_eq!(
            rec.type1.load(Ordering::SeqCst),
            2,
            "a new Type 1 on the new connection"
        );
        assert!(rec.type3.load(Ordering::SeqCst) <= 1);
        let first_conn_requests = rec.requests().iter().filter(|r| r.conn == 0).count();
        assert_eq!(
            first_conn_requests, 1,
            "no Type 3 on the closed connection's successor without a Type 1"
        );
        if ntlm_engine_ready(&test_credentials()) {
            assert_eq!(a.head.status, 200);
            assert_eq!(rec.type3.load(Ordering::SeqCst), 1);
        } else {
            assert_eq!(
                a.head.status, 502,
                "stub engine: the challenge cannot be answered"
            );
        }
    })
    .await;
}

/// Needs the NTLM engine (without it no Type 3 is ever sent).
#[tokio::test]
async fn three_rejections_stop_authentication() {
    if !engine_ready() {
        return;
    }
    bounded(async {
        let (parent, rec) = start_parent(ParentMode::NtlmReject).await;
        let proxy = start_proxy(parent_config(&[parent], true));
        for i in 0..6 {
            let mut c = TestClient::connect(proxy.addr).await;
            let a = c
                .request(
                    "GET",
                    format!(
                        "GET http://example.invalid/{i} HTTP/1.1\r\nHost: example.invalid\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await;
            assert_eq!(a.head.status, 407);
            assert_eq!(
                a.header("proxy-authenticate").as_deref(),
                Some("Basic realm=\"Cntlm for parent\"")
            );
            assert!(
                rec.type3.load(Ordering::SeqCst) <= i + 1,
                "at most one Type 3 per request"
            );
            if i >= 3 {
                assert!(String::from_utf8_lossy(&a.body).contains("rejected"));
            }
        }
        assert_eq!(rec.type3.load(Ordering::SeqCst), 3);
    })
    .await;
}

#[tokio::test]
async fn final_407_reaches_the_client_with_cntlm_basic_realm() {
    bounded(async {
        let (parent, _) = start_parent(ParentMode::BasicOnly).await;
        let proxy = start_proxy(parent_config(&[parent], true));
        let mut c = TestClient::connect(proxy.addr).await;
        let a = c
            .request(
                "GET",
                b"GET http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n",
            )
            .await;
        assert_eq!(a.head.status, 407);
        let offers: Vec<_> = a.head.headers.get_all("proxy-authenticate").collect();
        assert_eq!(offers, vec![&b"Basic realm=\"Cntlm for parent\""[..]]);
        assert_eq!(a.body, b"denied");
    })
    .await;
}

#[tokio::test]
async fn refused_first_parent_fails_over_to_the_second() {
    bounded(async {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let (parent, rec) = start_parent(ParentMode::Open).await;
        let proxy = start_proxy(parent_config(&[dead, parent], false));
        for _ in 0..2 {
            let mut c = TestClient::connect(proxy.addr).await;
            let a = c
                .request(
                    "GET",
                    b"GET http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n",
                )
                .await;
            assert_eq!(a.head.status, 200);
        }
        assert_eq!(rec.requests().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn all_parents_down_is_502_naming_them() {
    bounded(async {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let proxy = start_proxy(parent_config(&[dead], false));
        let mut c = TestClient::connect(proxy.addr).await;
        let a = c
            .request(
                "GET",
                b"GET http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n",
            )
            .await;
        assert_eq!(a.head.status, 502);
        assert!(String::from_utf8_lossy(&a.body).contains(&dead.to_string()));
    })
    .await;
}

#[tokio::test]
async fn direct_fallback_when_every_parent_is_down() {
    bounded(async {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let (origin, seen) = start_origin().await;
        let mut config = parent_config(&[dead], false);
        config.direct_fallback = true;
        let proxy = start_proxy(config);
        let mut c = TestClient::connect(proxy.addr).await;
        let a = c
            .request(
                "GET",
                format!("GET http://{origin}/fb HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
            )
            .await;
        assert_eq!(a.head.status, 200);
        assert_eq!(seen.requests().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn no_proxy_match_goes_direct_for_requests_and_connect() {
    bounded(async {
        let (parent, rec) = start_parent(ParentMode::Open).await;
        let (origin, seen) = start_origin().await;
        let echo = fake::start_echo().await;
        let mut config = parent_config(&[parent], true);
        config.no_proxy = vec!["localhost, 127.0.0.*".to_string()];
        let proxy = start_proxy(config);
        let mut c = TestClient::connect(proxy.addr).await;
        let a = c
            .request(
                "GET",
                format!("GET http://{origin}/np HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
            )
            .await;
        assert_eq!(a.head.status, 200);
        assert_eq!(seen.requests().len(), 1);
        let mut c = TestClient::connect(proxy.addr).await;
        c.send(format!("CONNECT {echo} HTTP/1.1\r\n\r\n").as_bytes())
            .await;
        assert_eq!(c.answer("CONNECT").await.head.status, 200);
        c.stream.write_all(b"ping").await.expect("send");
        c.stream.shutdown().await.expect("half-close");
        let mut back = Vec::new();
        c.stream.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"ping");
        assert_eq!(
            rec.connections.load(Ordering::SeqCst),
            0,
            "the parent was never used"
        );
    })
    .await;
}

#[tokio::test]
async fn connect_through_an_open_parent() {
    bounded(async {
        let (parent, rec) = start_parent(ParentMode::Open).await;
        let proxy = start_proxy(parent_config(&[parent], false));
        let mut c = TestClient::connect(proxy.addr).await;
        c.send(b"CONNECT example.invalid:443 HTTP/1.1\r\nHost: example.invalid:443\r\nProxy-Authorization: Basic dTpw\r\n\r\n").await;
        assert_eq!(c.answer("CONNECT").await.head.status, 200);
        c.stream.write_all(b"tls bytes").await.expect("send");
        c.stream.shutdown().await.expect("half-close");
        let mut back = Vec::new();
        c.stream.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"tls bytes");
        let seen = &rec.requests()[0].head;
        assert_eq!(seen.target, "example.invalid:443");
        assert!(!seen.headers.contains("proxy-authorization"));
    })
    .await;
}

/// Needs the NTLM engine.
#[tokio::test]
async fn authenticated_connect_probes_with_the_connect_itself() {
    if !engine_ready() {
        return;
    }
    bounded(async {
        let (parent, rec) = start_parent(ParentMode::Ntlm).await;
        let proxy = start_proxy(parent_config(&[parent], true));
        let mut c = TestClient::connect(proxy.addr).await;
        c.send(b"CONNECT example.invalid:443 HTTP/1.1\r\nHost: example.invalid:443\r\n\r\n")
            .await;
        assert_eq!(c.answer("CONNECT").await.head.status, 200);
        c.stream.write_all(b"x").await.expect("send");
        c.stream.shutdown().await.expect("half-close");
        let mut back = Vec::new();
        c.stream.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"x");
        assert_eq!(rec.type1.load(Ordering::SeqCst), 1);
        assert_eq!(rec.type3.load(Ordering::SeqCst), 1);
        assert!(rec.requests().iter().all(|r| r.head.method == "CONNECT"));
    })
    .await;
}

#[tokio::test]
async fn traffic_returns_to_the_first_parent_when_it_is_back() {
    bounded(async {
        let first = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let first_addr = first.local_addr().expect("addr");
        drop(first); // refused for now
        let (second, second_rec) = start_parent(ParentMode::Open).await;
        let mut config = parent_config(&[first_addr, second], false);
        config.limits.parent_backoff = std::time::Duration::ZERO; // re-probe at once
        let proxy = start_proxy(config);
        let mut c = TestClient::connect(proxy.addr).await;
        let get = b"GET http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n";
        assert_eq!(c.request("GET", get).await.head.status, 200);
        assert_eq!(second_rec.requests().len(), 1);
        // The first parent comes back on its old port.
        let back = tokio::net::TcpListener::bind(first_addr)
            .await
            .expect("rebind the first parent");
        let served = tokio::spawn(async move {
            let (mut s, _) = back.accept().await.expect("accept");
            let mut buf = bytes::BytesMut::new();
            let limits = cntlm::http::HeadLimits::from(&cntlm::config::Limits::default());
            let head = cntlm::http::head::read_request(&mut s, &mut buf, &limits)
                .await
                .expect("head");
            s.write_all(b"HTTP/1.1 200 OK\r\nX-From: first\r\nContent-Length: 0\r\n\r\n")
                .await
                .expect("answer");
            head.target
        });
        let a = c.request("GET", get).await;
        assert_eq!(a.header("x-from").as_deref(), Some("first"));
        assert_eq!(
            served.await.expect("first parent task"),
            "http://example.invalid/"
        );
    })
    .await;
}

#[tokio::test]
async fn silent_parent_gives_504_after_the_first_byte_timeout() {
    bounded(async {
        let hole = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = hole.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let mut conns = Vec::new();
            while let Ok((s, _)) = hole.accept().await {
                conns.push(s); // accept, never answer
            }
        });
        let mut config = parent_config(&[addr], false);
        config.limits.parent_first_byte = std::time::Duration::from_millis(200);
        let proxy = start_proxy(config);
        let mut c = TestClient::connect(proxy.addr).await;
        let a = c
            .request(
                "GET",
                b"GET http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n",
            )
            .await;
        assert_eq!(a.head.status, 504);
        held.abort();
    })
    .await;
}

/// Needs the NTLM engine. npm opens many sockets at once: with a wrong password that must
/// cost at most the lockout threshold in Type 3s, not one per socket.
#[tokio::test]
async fn concurrent_clients_with_bad_credentials_send_at_most_three_type3() {
    if !engine_ready() {
        return;
    }
    bounded(async {
        let (parent, rec) = start_parent(ParentMode::NtlmReject).await;
        let proxy = start_proxy(parent_config(&[parent], true));
        let mut clients = Vec::new();
        for i in 0..20 {
            let addr = proxy.addr;
            clients.push(tokio::spawn(async move {
                let mut c = TestClient::connect(addr).await;
                let raw = format!(
                    "GET http://example.invalid/{i} HTTP/1.1\r\nHost: example.invalid\r\n\r\n"
                );
                c.request("GET", raw.as_bytes()).await.head.status
            }));
        }
        for c in clients {
            assert_eq!(c.await.expect("client task"), 407);
        }
        assert!(
            rec.type3.load(Ordering::SeqCst) <= 3,
            "type3 = {}",
            rec.type3.load(Ordering::SeqCst)
        );
    })
    .await;
}

/// Needs the NTLM engine. Many concurrent clients, good credentials: all served.
#[tokio::test]
async fn concurrent_clients_with_good_credentials_are_all_served() {
    if !engine_ready() {
        return;
    }
    bounded(async {
        let (parent, rec) = start_parent(ParentMode::Ntlm).await;
        let proxy = start_proxy(parent_config(&[parent], true));
        let mut clients = Vec::new();
        for i in 0..20 {
            let addr = proxy.addr;
            clients.push(tokio::spawn(async move {
                let mut c = TestClient::connect(addr).await;
                let raw = format!("POST http://example.invalid/{i} HTTP/1.1\r\nHost: example.invalid\r\nContent-Length: 2\r\n\r\nhi");
                c.request("POST", raw.as_bytes()).await
            }));
        }
        for c in clients {
            let a = c.await.expect("client task");
            assert_eq!(a.head.status, 200);
            assert_eq!(a.body, b"hi");
        }
        let type3 = rec.type3.load(Ordering::SeqCst);
        assert_eq!(type3, rec.connections.load(Ordering::SeqCst), "one Type 3 per parent connection");
    })
    .await;
}
