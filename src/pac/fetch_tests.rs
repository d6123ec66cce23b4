//! Fetch tests against an in-process HTTP server on 127.0.0.1 with an OS-assigned port.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// Raw responses by request path; the server answers 404 to anything else.
type Routes = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A tiny HTTP server that answers canned bytes per path and closes; aborted on drop.
struct TestServer {
    port: u16,
    routes: Routes,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    async fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let routes: Routes = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&routes);
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let routes = Arc::clone(&shared);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match sock.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let path = text.split(' ').nth(1).unwrap_or("").to_owned();
                    let answer = routes
                        .lock()
                        .expect("routes lock")
                        .iter()
                        .find(|(p, _)| *p == path)
                        .map(|(_, r)| r.clone());
                    match answer {
                        // An empty canned answer means "accept and never reply".
                        Some(bytes) if bytes.is_empty() => {
                            let mut sink = [0u8; 16];
                            let _ = sock.read(&mut sink).await;
                        }
                        Some(bytes) => {
                            let _ = sock.write_all(&bytes).await;
                        }
                        None => {
                            let _ = sock
                                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                                .await;
                        }
                    }
                });
            }
        });
        TestServer { port, routes, task }
    }

    fn set(&self, path: &str, response: Vec<u8>) {
        let mut routes = self.routes.lock().expect("routes lock");
        routes.retain(|(p, _)| p != path);
        routes.push((path.to_owned(), response));
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn ok_with_length(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-ns-proxy-autoconfig\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const PAC_A: &str = "function FindProxyForURL(url, host) { return \"PROXY a:1\"; }";
const PAC_B: &str = "function FindProxyForURL(url, host) { return \"PROXY b:2\"; }";

#[tokio::test]
async fn served_pac_is_fetched_and_refetched_after_it_changes() {
    let server = TestServer::start().await;
    server.set("/proxy.pac", ok_with_length(PAC_A));
    let source = PacSource::parse(&server.url("/proxy.pac")).expect("url");
    let mut loader = PacLoader::new(source);
    assert_eq!(
        loader.refresh().await.expect("first fetch"),
        Refresh::Changed
    );
    assert_eq!(loader.last_good().expect("loaded").script, PAC_A);
    assert_eq!(loader.refresh().await.expect("same"), Refresh::Unchanged);

    server.set("/proxy.pac", ok_with_length(PAC_B));
    assert_eq!(loader.refresh().await.expect("changed"), Refresh::Changed);
    let loaded = loader.last_good().expect("loaded");
    assert_eq!(loaded.script, PAC_B);
    assert_eq!(loaded.origin, server.url("/proxy.pac"));
}

#[tokio::test]
async fn a_failed_refetch_keeps_the_last_good_copy() {
    let server = TestServer::start().await;
    server.set("/proxy.pac", ok_with_length(PAC_A));
    let mut loader = PacLoader::new(PacSource::parse(&server.url("/proxy.pac")).expect("url"));
    loader.refresh().await.expect("first fetch");
    server.set(
        "/proxy.pac",
        b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec(),
    );
    let err = loader.refresh().await.expect_err("503");
    assert!(
        matches!(err, PacFetchError::Status { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(loader.last_good().expect("kept").script, PAC_A);
}

#[tokio::test]
async fn redirects_are_followed_to_the_script() {
    let server = TestServer::start().await;
    server.set(
        "/wpad.dat",
        b"HTTP/1.1 302 Found\r\nLocation: /real.pac\r\nContent-Length: 0\r\n\r\n".to_vec(),
    );
    let absolute = format!(
        "HTTP/1.1 301 Moved\r\nLocation: {}\r\nContent-Length: 0\r\n\r\n",
        server.url("/wpad.dat")
    );
    server.set("/old.pac", absolute.into_bytes());
    server.set("/real.pac", ok_with_length(PAC_A));
    let source = PacSource::parse(&server.url("/old.pac")).expect("url");
    let (script, origin) = load_pac(&source, FETCH_TIMEOUT).await.expect("fetched");
    assert_eq!(script, PAC_A);
    assert_eq!(origin, server.url("/real.pac"));
}

#[tokio::test]
async fn a_redirect_loop_is_an_error() {
    let server = TestServer::start().await;
    server.set(
        "/loop.pac",
        b"HTTP/1.1 302 Found\r\nLocation: /loop.pac\r\nContent-Length: 0\r\n\r\n".to_vec(),
    );
    let source = PacSource::parse(&server.url("/loop.pac")).expect("url");
    let err = load_pac(&source, FETCH_TIMEOUT).await.expect_err("loop");
    assert!(matches!(err, PacFetchError::Redirect { .. }), "{err:?}");
}

#[tokio::test]
async fn chunked_and_close_delimited_bodies() {
    let server = TestServer::start().await;
    server.set(
        "/chunked.pac",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nfunct\r\n3\r\nion\r\n0\r\nX-Trailer: 1\r\n\r\n"
            .to_vec(),
    );
    server.set("/close.pac", b"HTTP/1.0 200 OK\r\n\r\nfunction".to_vec());
    for path in ["/chunked.pac", "/close.pac"] {
        let source = PacSource::parse(&server.url(path)).expect("url");
        let (script, _) = load_pac(&source, FETCH_TIMEOUT).await.expect(path);
        assert_eq!(script, "function", "{path}");
    }
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let server = TestServer::start().await;
    server.set("/silent.pac", Vec::new());
    let source = PacSource::parse(&server.url("/silent.pac")).expect("url");
    let err = load_pac(&source, Duration::from_millis(200))
        .await
        .expect_err("timeout");
    assert!(matches!(err, PacFetchError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn a_truncated_body_is_malformed() {
    let server = TestServer::start().await;
    server.set(
        "/short.pac",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfunction".to_vec(),
    );
    let source = PacSource::parse(&server.url("/short.pac")).expect("url");
    let err = load_pac(&source, FETCH_TIMEOUT).await.expect_err("short");
    assert!(matches!(err, PacFetchError::Malformed { .. }), "{err:?}");
}

#[tokio::test]
async fn a_pac_file_is_read_from_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("corp.pac");
    std::fs::write(&path, PAC_A).expect("write");
    let mut loader = PacLoader::new(PacSource::parse(path.to_str().expect("utf-8")).expect("p"));
    assert_eq!(loader.refresh().await.expect("read"), Refresh::Changed);
    assert_eq!(loader.last_good().expect("loaded").script, PAC_A);
    let missing = PacSource::File(dir.path().join("missing.pac"));
    assert!(matches!(
        load_pac(&missing, FETCH_TIMEOUT).await,
        Err(PacFetchError::File { .. })
    ));
}

#[test]
fn sources_and_urls_parse() {
    assert_eq!(
        PacSource::parse("http://wpad.corp.example/wpad.dat").expect("http"),
        PacSource::Http(HttpUrl {
            host: "wpad.corp.example".into(),
            port: 80,
            path: "/wpad.dat".into()
        })
    );
    assert_eq!(
        HttpUrl::parse("HTTP://[::1]:8080?x=1#frag").expect("v6"),
        HttpUrl {
            host: "::1".into(),
            port: 8080,
            path: "/?x=1".into()
        }
    );
    assert_eq!(
        PacSource::parse("file:///etc/proxy.pac").expect("file"),
        PacSource::File("/etc/proxy.pac".into())
    );
    assert_eq!(
        PacSource::parse("C:\\cntlm\\proxy.pac").expect("windows path"),
        PacSource::File("C:\\cntlm\\proxy.pac".into())
    );
    assert!(matches!(
        PacSource::parse("https://wpad.corp.example/wpad.dat"),
        Err(PacFetchError::UnsupportedScheme { .. })
    ));
    for bad in [
        "http://",
        "http://user@host/",
        "http://host:/",
        "http://host:99999/",
        "http://ho st/",
    ] {
        assert!(
            matches!(HttpUrl::parse(bad), Err(PacFetchError::BadUrl { .. })),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn an_endless_pac_file_is_refused_not_read_whole() {
    let source = PacSource::File(PathBuf::from("/dev/zero"));
    let result = load_pac(&source, std::time::Duration::from_secs(5)).await;
    assert!(
        matches!(result, Err(PacFetchError::TooLarge { .. })),
        "{result:?}"
    );
}
