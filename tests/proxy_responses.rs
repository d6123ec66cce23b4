//! reliability-bar.md §B 8: invalid responses from a parent are never relayed. A scripted
//! parent answers each request with one canned response; the client gets a 502 when nothing
//! was sent to it yet (or an aborted connection mid-body), that parent connection is never
//! reused, and the proxy keeps serving.

#[path = "support/fake.rs"]
mod fake;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fake::{ParentMode, TEST_TIMEOUT, TestClient, parent_config, start_parent, start_proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A parent that answers every request with `answer` and then closes; counts connections.
async fn scripted_parent(answer: Vec<u8>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = bytes::BytesMut::new();
                let limits = cntlm::http::HeadLimits::from(&cntlm::config::Limits::default());
                while cntlm::http::head::read_request(&mut s, &mut buf, &limits)
                    .await
                    .is_ok()
                {
                    if s.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, conns)
}

#[tokio::test]
async fn invalid_parent_responses_become_502_and_are_never_relayed() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let big_field = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n", "a".repeat(70 * 1024));
        let many_interim = format!("{}HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 102 Processing\r\n\r\n".repeat(11));
        let rows: Vec<(&str, Vec<u8>)> = vec![
            ("CL+TE", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec()),
            ("duplicate CL", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello".to_vec()),
            ("NUL in a field", b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n".to_vec()),
            ("obs-fold", b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n".to_vec()),
            ("head over 64 KiB", big_field.into_bytes()),
            ("101 not asked for", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n".to_vec()),
            ("more than 10 interim", many_interim.into_bytes()),
            ("garbage", b"NOT HTTP AT ALL\r\n\r\n".to_vec()),
        ];
        for (name, answer) in rows {
            let (parent, conns) = scripted_parent(answer).await;
            let proxy = start_proxy(parent_config(&[parent], false));
            for round in 0..2 {
                let mut c = TestClient::connect(proxy.addr).await;
                let mut a = c.request("GET", b"GET http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n").await;
                while a.head.status < 200 {
                    a = c.answer("GET").await; // interim answers are relayed as they come
                }
                assert_eq!(a.head.status, 502, "{name}, round {round}");
                assert!(!a.head.headers.contains("x"), "{name}: nothing of it relayed");
            }
            assert_eq!(conns.load(Ordering::SeqCst), 2, "{name}: the parent connection was not reused");
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn bad_chunk_mid_body_aborts_the_client_and_drops_the_parent_connection() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let answer =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n".to_vec();
        let (parent, conns) = scripted_parent(answer).await;
        let proxy = start_proxy(parent_config(&[parent], false));
        for _ in 0..2 {
            let mut c = TestClient::connect(proxy.addr).await;
            c.send(b"GET http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n")
                .await;
            let mut got = Vec::new();
            let _ = c.stream.read_to_end(&mut got).await;
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.starts_with("HTTP/1.1 200"),
                "the head went out before the bad chunk"
            );
            assert!(!text.contains("zz"), "the bad chunk line is never relayed");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn probe_is_body_less_and_head_is_probed_as_get() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (parent, rec) = start_parent(ParentMode::Ntlm).await;
        let proxy = start_proxy(parent_config(&[parent], true));
        let mut c = TestClient::connect(proxy.addr).await;
        let _ = c.request("HEAD", b"HEAD http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n").await;
        // A second proxy, so the POST cannot ride the connection the HEAD authenticated
        // (the pool is shared by all clients) and must be probed itself.
        let second = start_proxy(parent_config(&[parent], true));
        let mut c = TestClient::connect(second.addr).await;
        let _ = c
            .request(
                "POST",
                b"POST http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            )
            .await;
        let requests = rec.requests();
        let probes: Vec<_> = requests
            .iter()
            .filter(|r| {
                r.head
                    .headers
                    .get("proxy-authorization")
                    .is_some_and(|v| v.starts_with(b"NTLM") && r.body.is_empty())
            })
            .collect();
        assert!(probes.len() >= 2);
        assert_eq!(probes[0].head.method, "GET", "HEAD is probed as GET");
        let post_probe = probes.iter().find(|r| r.conn != probes[0].conn).expect("the POST's probe");
        assert_eq!(post_probe.head.method, "POST");
        assert_eq!(post_probe.head.headers.get("content-length"), Some(&b"0"[..]));
        assert!(!post_probe.head.headers.contains("transfer-encoding"));
        assert!(!post_probe.head.headers.contains("expect"));
    })
    .await
    .expect("test timed out");
}
