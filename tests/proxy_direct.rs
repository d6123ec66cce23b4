//! Fast in-process tests of the proxy working DIRECT (no parent): forwarding, framing,
//! keep-alive, 100-continue, CONNECT with half-close, and the malformed-input table
//! (reliability-bar.md §B) with the proxy still serving afterwards.

#[path = "support/fake.rs"]
mod fake;

use std::time::Duration;

use cntlm::config::{AclAction, AclRule, Config};
use fake::{TEST_TIMEOUT, TestClient, start_echo, start_origin, start_proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out");
}

#[tokio::test]
async fn get_head_post_chunked_on_one_keep_alive_connection() {
    bounded(async {
        let (origin, seen) = start_origin().await;
        let proxy = start_proxy(Config::default());
        let mut c = TestClient::connect(proxy.addr).await;

        let a = c.request("GET", format!("GET http://{origin}/a?q={{x}}`\"y\" HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes()).await;
        assert_eq!(a.head.status, 200);
        assert_eq!(a.header("x-target").as_deref(), Some("/a?q={x}`\"y\""));

        let a = c.request("HEAD", format!("HEAD http://{origin}/h HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes()).await;
        assert_eq!(a.head.status, 200);
        assert!(a.body.is_empty());

        let a = c
            .request("POST", format!("POST http://{origin}/p HTTP/1.1\r\nHost: {origin}\r\nContent-Length: 5\r\n\r\nhello").as_bytes())
            .await;
        assert_eq!(a.body, b"hello");

        let chunked = b"3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let mut raw = format!("PUT http://{origin}/c HTTP/1.1\r\nHost: {origin}\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
        raw.extend_from_slice(chunked);
        let a = c.request("PUT", &raw).await;
        assert_eq!(a.body, b"abcdefg");

        let a = c.request("GET", format!("GET http://{origin}/chunked HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes()).await;
        assert_eq!(a.body, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");

        let requests = seen.requests();
        assert_eq!(requests.len(), 5);
        assert_eq!(requests[3].raw_body, chunked.to_vec(), "chunks copied through unchanged");
        assert_eq!(seen.connections.load(std::sync::atomic::Ordering::SeqCst), 1, "one pooled origin connection");
    })
    .await;
}

#[tokio::test]
async fn hop_by_hop_fields_are_removed_and_the_rest_kept_in_order() {
    bounded(async {
        let (origin, seen) = start_origin().await;
        let proxy = start_proxy(Config::default());
        let mut c = TestClient::connect(proxy.addr).await;
        let raw = format!(
            "GET http://{origin}/x HTTP/1.1\r\nHost: wrong.example\r\nx-Lower: 1\r\nConnection: X-Private\r\nX-Private: secret\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic dTpw\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Dup: a\r\nX-Dup: b\r\n\r\n"
        );
        let a = c.request("GET", raw.as_bytes()).await;
        assert_eq!(a.head.status, 200);
        let head = &seen.requests()[0].head;
        let names: Vec<&str> = head.headers.0.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["Host", "x-Lower", "X-Dup", "X-Dup"]);
        assert_eq!(head.headers.get("host"), Some(origin.to_string().as_bytes()));
        assert_eq!(head.target, "/x");
    })
    .await;
}

#[tokio::test]
async fn expect_100_continue_gets_the_interim_then_the_final_answer() {
    bounded(async {
        let (origin, _) = start_origin().await;
        let proxy = start_proxy(Config::default());
        let mut c = TestClient::connect(proxy.addr).await;
        c.send(format!("POST http://{origin}/up HTTP/1.1\r\nHost: {origin}\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n").as_bytes())
            .await;
        let interim = c.answer("POST").await;
        assert_eq!(interim.head.status, 100);
        c.send(b"data").await;
        let last = c.answer("POST").await;
        assert_eq!(last.head.status, 200);
        assert_eq!(last.body, b"data");
    })
    .await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    bounded(async {
        let (origin, _) = start_origin().await;
        let proxy = start_proxy(Config::default());
        let mut c = TestClient::connect(proxy.addr).await;
        let raw = format!(
            "GET http://{origin}/1 HTTP/1.1\r\nHost: h\r\n\r\nPOST http://{origin}/2 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhiGET http://{origin}/3 HTTP/1.1\r\nHost: h\r\n\r\n"
        );
        c.send(raw.as_bytes()).await;
        for path in ["/1", "/2", "/3"] {
            let a = c.answer("GET").await;
            assert_eq!(a.header("x-target").as_deref(), Some(path));
        }
    })
    .await;
}

#[tokio::test]
async fn http10_client_without_keep_alive_is_closed_after_its_answer() {
    bounded(async {
        let (origin, _) = start_origin().await;
        let proxy = start_proxy(Config::default());
        let mut c = TestClient::connect(proxy.addr).await;
        let a = c
            .request(
                "GET",
                format!("GET http://{origin}/old HTTP/1.0\r\n\r\n").as_bytes(),
            )
            .await;
        assert_eq!(a.head.status, 200);
        assert_eq!(a.header("connection").as_deref(), Some("close"));
        assert!(c.is_closed().await);
    })
    .await;
}

#[tokio::test]
async fn connect_tunnel_relays_with_half_close() {
    bounded(async {
        let echo = start_echo().await;
        let proxy = start_proxy(Config::default());
        let mut c = TestClient::connect(proxy.addr).await;
        c.send(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").as_bytes())
            .await;
        let a = c.answer("CONNECT").await;
        assert_eq!(a.head.status, 200);
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        c.stream
            .write_all(&payload)
            .await
            .expect("send through tunnel");
        c.stream.shutdown().await.expect("half-close");
        let mut back = c.buf.to_vec();
        c.stream.read_to_end(&mut back).await.expect("read back");
        assert_eq!(back.len(), payload.len());
        assert!(back == payload, "tunnel bytes differ");
    })
    .await;
}

/// reliability-bar.md §B 7: each row gets its status, the connection is closed, and the
/// proxy keeps serving.
#[tokio::test]
async fn malformed_requests_get_a_status_and_the_proxy_keeps_serving() {
    bounded(async {
        let (origin, seen) = start_origin().await;
        let proxy = start_proxy(Config::default());
        let o = origin;
        let rows: Vec<(String, u16)> = vec![
            (format!("POST http://{o}/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), 400),
            (format!("POST http://{o}/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"), 400),
            (format!("POST http://{o}/ HTTP/1.1\r\nContent-Length: +3\r\n\r\n"), 400),
            (format!("POST http://{o}/ HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n"), 400),
            (format!("POST http://{o}/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400),
            (format!("POST http://{o}/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n"), 400),
            (format!("GET http://{o}/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n"), 400),
            (format!("GET http://{o}/ HTTP/1.1\r\nX : a\r\n\r\n"), 400),
            (format!("GET http://{o}/ HTTP/1.1\r\nX: a\x00b\r\n\r\n"), 400),
            ("GARBAGE\r\n\r\n".to_string(), 400),
            (format!("GET http://{o}/ HTTP/9.1\r\n\r\n"), 400),
            ("GET /origin-form HTTP/1.1\r\nHost: x\r\n\r\n".to_string(), 400),
            (format!("GET http://{o}/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400),
            (format!("GET http://{o}/{} HTTP/1.1\r\n\r\n", "a".repeat(9000)), 414),
            (format!("GET http://{o}/ HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000)), 431),
            (format!("GET http://{o}/ HTTP/1.1\r\n{}\r\n", "X: 1\r\n".repeat(101)), 431),
            (format!("GET http://127.0.0.1:{}/ HTTP/1.1\r\n\r\n", proxy.addr.port()), 508),
        ];
        for (raw, status) in rows {
            let mut c = TestClient::connect(proxy.addr).await;
            let a = c.request("GET", raw.as_bytes()).await;
            assert_eq!(a.head.status, status, "row {:?}", &raw[..raw.len().min(60)]);
            assert!(!a.body.is_empty(), "a one-line text body");
            assert!(c.is_closed().await, "closed after the error");
        }
        assert!(seen.requests().is_empty(), "nothing forwarded");
        let mut c = TestClient::connect(proxy.addr).await;
        let a = c.request("GET", format!("GET http://{o}/still HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes()).await;
        assert_eq!(a.head.status, 200);
    })
    .await;
}

#[tokio::test]
async fn invalid_framing_from_the_origin_is_never_relayed() {
    bounded(async {
        let (origin, _) = start_origin().await;
        let proxy = start_proxy(Config::default());
        let mut c = TestClient::connect(proxy.addr).await;
        let a = c
            .request(
                "GET",
                format!("GET http://{origin}/badframing HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
            )
            .await;
        assert_eq!(a.head.status, 502);
    })
    .await;
}

#[tokio::test]
async fn head_deadline_gives_408() {
    bounded(async {
        let mut config = Config::default();
        config.limits.header_deadline = Duration::from_millis(300);
        let proxy = start_proxy(config);
        let mut c = TestClient::connect(proxy.addr).await;
        c.send(b"GET http://127.0.0.1:9/ HTTP/1.1\r\nHost:").await;
        let a = c.answer("GET").await;
        assert_eq!(a.head.status, 408);
    })
    .await;
}

#[tokio::test]
async fn denied_client_is_closed_before_a_byte_is_read() {
    bounded(async {
        let config = Config {
            acl: vec![AclRule {
                action: AclAction::Deny,
                network: "127.0.0.0/8".parse().expect("net"),
            }],
            ..Config::default()
        };
        let proxy = start_proxy(config);
        let mut c = TestClient::connect(proxy.addr).await;
        let _ = c
            .stream
            .write_all(b"GET http://127.0.0.1:9/ HTTP/1.1\r\n\r\n")
            .await;
        let mut rest = Vec::new();
        let r = c.stream.read_to_end(&mut rest).await;
        assert!(
            r.is_err() || rest.is_empty(),
            "no answer to a denied client"
        );
    })
    .await;
}

#[tokio::test]
async fn gateway_without_allow_refuses_to_start() {
    let config = Config {
        gateway: true,
        listen: vec!["127.0.0.1:0".parse().expect("addr")],
        ..Config::default()
    };
    let err = cntlm::proxy::Proxy::bind(std::sync::Arc::new(config)).expect_err("must refuse");
    assert!(err.to_string().contains("Allow"));
}

#[tokio::test]
async fn unreachable_origin_is_502() {
    bounded(async {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let proxy = start_proxy(Config::default());
        let mut c = TestClient::connect(proxy.addr).await;
        let a = c
            .request(
                "GET",
                format!("GET http://{closed}/ HTTP/1.1\r\n\r\n").as_bytes(),
            )
            .await;
        assert_eq!(a.head.status, 502);
    })
    .await;
}

#[tokio::test]
async fn plain_http_upgrade_becomes_a_tunnel_after_101() {
    bounded(async {
        let origin = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = origin.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = origin.accept().await.expect("accept");
            let mut buf = bytes::BytesMut::new();
            let limits = cntlm::http::HeadLimits::from(&cntlm::config::Limits::default());
            let head = cntlm::http::head::read_request(&mut s, &mut buf, &limits).await.expect("head");
            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                .await
                .expect("101");
            let mut all = buf.to_vec();
            s.read_to_end(&mut all).await.expect("read");
            s.write_all(&all).await.expect("echo");
            head
        });
        let proxy = start_proxy(Config::default());
        let mut c = TestClient::connect(proxy.addr).await;
        c.send(format!("GET http://{addr}/ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").as_bytes())
            .await;
        let a = c.answer("GET").await;
        assert_eq!(a.head.status, 101);
        c.stream.write_all(b"frame").await.expect("send");
        c.stream.shutdown().await.expect("half-close");
        let mut back = c.buf.to_vec();
        c.stream.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"frame");
        let head = server.await.expect("server");
        assert_eq!(head.headers.get("upgrade"), Some(&b"websocket"[..]));
        assert!(head.headers.has_token("connection", "upgrade"));
    })
    .await;
}

#[tokio::test]
async fn over_the_connection_cap_gets_a_fast_503() {
    bounded(async {
        let mut config = Config::default();
        config.limits.max_connections = 1;
        let proxy = start_proxy(config);
        let (origin, _) = start_origin().await;
        let mut first = TestClient::connect(proxy.addr).await;
        // Make sure the first connection holds its slot (it has been served once).
        let a = first
            .request(
                "GET",
                format!("GET http://{origin}/ HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
            )
            .await;
        assert_eq!(a.head.status, 200);
        let mut second = TestClient::connect(proxy.addr).await;
        let a = second.answer("GET").await;
        assert_eq!(a.head.status, 503);
    })
    .await;
}

#[tokio::test]
async fn origin_closing_a_kept_alive_connection_is_replaced_silently() {
    bounded(async {
        // An origin that claims keep-alive and then closes after each answer.
        let origin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = origin.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = origin.accept().await {
                tokio::spawn(async move {
                    let mut buf = bytes::BytesMut::new();
                    let limits = cntlm::http::HeadLimits::from(&cntlm::config::Limits::default());
                    if cntlm::http::head::read_request(&mut s, &mut buf, &limits)
                        .await
                        .is_ok()
                    {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                    }
                });
            }
        });
        let proxy = start_proxy(Config::default());
        let mut c = TestClient::connect(proxy.addr).await;
        for _ in 0..5 {
            let a = c
                .request(
                    "GET",
                    format!("GET http://{addr}/ HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
                )
                .await;
            assert_eq!(a.head.status, 200);
            assert_eq!(a.body, b"ok");
        }
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_clients_and_refuses_new_ones() {
    bounded(async {
        let (origin, _) = start_origin().await;
        let mut config = Config::default();
        config.limits.shutdown_drain = Duration::from_secs(3600); // a hang would time the test out
        let proxy = start_proxy(config);
        let addr = proxy.addr;
        let mut idle = TestClient::connect(addr).await;
        let a = idle
            .request(
                "GET",
                format!("GET http://{origin}/ HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
            )
            .await;
        assert_eq!(a.head.status, 200);
        proxy.shutdown().await;
        assert!(
            idle.is_closed().await,
            "the idle keep-alive client was closed"
        );
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "no longer accepting"
        );
    })
    .await;
}
