//! Issue 4 §5: the ISA scanner plugin (`-S` / `-G`) against a fake scanner origin written from
//! the CNTLM man page's description: the first request for a file gets an HTML page that
//! reports progress while it "scans" and ends with the link to the scanned copy; the link
//! serves the file. Everything is in-process on 127.0.0.1:0.

#[path = "support/fake.rs"]
mod fake;
#[path = "support/lab.rs"]
#[allow(unused_imports)] // the lab's origin is not needed here: the scanner is in-process
mod lab;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use cntlm::config::Config;
use cntlm::http::head::{HeadLimits, read_request};
use fake::{TEST_TIMEOUT, TestClient, start_proxy};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// The scanned file the link serves (varied bytes, so truncation shows).
fn file_bytes() -> Vec<u8> {
    (0..5000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// How the fake scanner's interim page ends.
#[derive(Clone, Copy)]
enum PageEnd {
    /// With `DownloadFinished("<link>")`.
    Link,
    /// Without a link (an unparseable page).
    NoLink,
    /// A plain HTML page, no progress at all (not a scanner page).
    Plain,
}

/// The chunks of the interim page; progress steps are separate chunks, as a scanner that
/// streams its countdown sends them.
fn page_chunks(end: PageEnd) -> Vec<String> {
    if let PageEnd::Plain = end {
        return vec!["<html><body><h1>Just a page</h1></body></html>".to_string()];
    }
    let mut chunks = vec![
        "<html><head><title>Download status</title></head><body>\n\
         <p>Please wait while the file you requested is downloaded and scanned.</p>\n"
            .to_string(),
    ];
    for done in [0, 2500, 5000] {
        chunks.push(format!("<script>UpdateProgress({done}, 5000);</script>\n"));
    }
    if let PageEnd::Link = end {
        chunks.push(
            "<script>DownloadFinished(\"/isa-cache/7f3a/file.bin\");</script>\n\
             <a href=\"/isa-cache/7f3a/file.bin\">Download</a>\n"
                .to_string(),
        );
    }
    chunks.push("</body></html>\n".to_string());
    chunks
}

/// A fake scanner origin: `/download/file.bin` gets the interim page (chunked), the link gets
/// the file, on the same keep-alive connection. Records each request target.
async fn start_scanner(end: PageEnd) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind scanner");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                let limits = HeadLimits::from(&cntlm::config::Limits::default());
                while let Ok(req) = read_request(&mut stream, &mut buf, &limits).await {
                    log.lock().expect("lock").push(req.target.clone());
                    let ok = if req.target.starts_with("/isa-cache/") {
                        let body = file_bytes();
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                             Content-Length: {}\r\n\r\n",
                            body.len()
                        );
                        stream.write_all(head.as_bytes()).await.is_ok()
                            && stream.write_all(&body).await.is_ok()
                    } else {
                        let mut ok = stream
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                                  Transfer-Encoding: chunked\r\n\r\n",
                            )
                            .await
                            .is_ok();
                        for chunk in page_chunks(end) {
                            let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                            ok &= stream.write_all(framed.as_bytes()).await.is_ok();
                            ok &= stream.flush().await.is_ok();
                        }
                        ok && stream.write_all(b"0\r\n\r\n").await.is_ok()
                    };
                    if !ok {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn isa_config(size: Option<u64>, agents: &[&str]) -> Config {
    Config {
        isa_scanner_size: size,
        isa_scanner_agents: agents.iter().map(ToString::to_string).collect(),
        ..Config::default()
    }
}

/// GET the download through the proxy with `agent`; the answer with its body de-chunked.
async fn download(proxy: SocketAddr, scanner: SocketAddr, agent: &str) -> fake::Answer {
    let mut client = TestClient::connect(proxy).await;
    let request = format!(
        "GET http://{scanner}/download/file.bin HTTP/1.1\r\nHost: {scanner}\r\n\
         User-Agent: {agent}\r\n\r\n"
    );
    let mut answer = tokio::time::timeout(TEST_TIMEOUT, client.request("GET", request.as_bytes()))
        .await
        .expect("answered in time");
    if answer
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        answer.body = fake::dechunk(&answer.body);
    }
    answer
}

fn isa_lines(answer: &fake::Answer) -> Vec<String> {
    answer
        .head
        .headers
        .get_all("isa-scanner")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[tokio::test]
async fn a_matching_agent_gets_the_scanned_file_with_progress_headers() {
    let (scanner, seen) = start_scanner(PageEnd::Link).await;
    let proxy = start_proxy(isa_config(None, &["wget"]));
    let answer = download(proxy.addr, scanner, "Wget/1.21.3").await;
    assert_eq!(answer.head.status, 200);
    assert_eq!(
        isa_lines(&answer),
        vec!["0 of 5000", "2500 of 5000", "5000 of 5000"]
    );
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(answer.body, file_bytes(), "the scanned file, whole");
    assert_eq!(
        *seen.lock().expect("lock"),
        vec!["/download/file.bin", "/isa-cache/7f3a/file.bin"]
    );
}

#[tokio::test]
async fn another_agent_gets_the_page_unchanged_when_only_agents_are_set() {
    let (scanner, _) = start_scanner(PageEnd::Link).await;
    let proxy = start_proxy(isa_config(None, &["wget"]));
    let answer = download(proxy.addr, scanner, "curl/8.5").await;
    assert_eq!(answer.head.status, 200);
    assert!(isa_lines(&answer).is_empty());
    assert_eq!(
        String::from_utf8_lossy(&answer.body),
        page_chunks(PageEnd::Link).concat()
    );
}

#[tokio::test]
async fn the_size_limit_decides_for_other_agents() {
    let (scanner, _) = start_scanner(PageEnd::Link).await;
    // 4 KiB < 5000 bytes: the page is forwarded.
    let small = start_proxy(isa_config(Some(4), &[]));
    let answer = download(small.addr, scanner, "curl/8.5").await;
    assert!(String::from_utf8_lossy(&answer.body).contains("UpdateProgress"));
    // 5 KiB >= 5000 bytes: the file.
    let large = start_proxy(isa_config(Some(5), &[]));
    let answer = download(large.addr, scanner, "curl/8.5").await;
    assert_eq!(answer.body, file_bytes());
}

#[tokio::test]
async fn a_page_without_a_link_is_forwarded_unchanged() {
    let (scanner, seen) = start_scanner(PageEnd::NoLink).await;
    let proxy = start_proxy(isa_config(Some(0), &[]));
    let answer = download(proxy.addr, scanner, "Wget/1.21.3").await;
    assert_eq!(answer.head.status, 200);
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        String::from_utf8_lossy(&answer.body),
        page_chunks(PageEnd::NoLink).concat(),
        "never lost"
    );
    assert_eq!(seen.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn ordinary_html_is_untouched() {
    let (scanner, _) = start_scanner(PageEnd::Plain).await;
    let proxy = start_proxy(isa_config(Some(0), &["wget"]));
    let answer = download(proxy.addr, scanner, "Wget/1.21.3").await;
    assert!(isa_lines(&answer).is_empty());
    assert_eq!(
        answer.header("transfer-encoding").as_deref(),
        Some("chunked"),
        "relayed with its own framing"
    );
    assert_eq!(
        String::from_utf8_lossy(&answer.body),
        page_chunks(PageEnd::Plain).concat()
    );
}

/// The same through the lab's NTLM Squid: the file is fetched on the authenticated parent
/// connection (absolute URL, no second handshake needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_an_ntlm_parent_the_file_comes_on_the_authenticated_connection() {
    let (scanner, seen) = start_scanner(PageEnd::Link).await;
    let squid = tokio::task::spawn_blocking(|| lab::Squid::start(lab::ParentAuth::NtlmV2Only))
        .await
        .expect("squid starts");
    let mut config = isa_config(None, &["wget"]);
    config.parents = vec![cntlm::config::ParentProxy {
        host: "127.0.0.1".into(),
        port: squid.port,
    }];
    config.auth.credentials = cntlm::auth::Credentials {
        user: lab::ALICE.user.into(),
        domain: lab::ALICE.domain.into(),
        password: Some(cntlm::auth::Password::new(lab::ALICE.password)),
        ..Default::default()
    };
    let proxy = start_proxy(config);
    let answer = download(proxy.addr, scanner, "Wget/1.21.3").await;
    assert_eq!(answer.head.status, 200, "{}", squid.helper_log());
    assert_eq!(isa_lines(&answer).len(), 3);
    assert_eq!(answer.body, file_bytes());
    assert_eq!(
        *seen.lock().expect("lock"),
        vec!["/download/file.bin", "/isa-cache/7f3a/file.bin"]
    );
    assert_eq!(squid.accepted().len(), 1, "{}", squid.helper_log());
}
