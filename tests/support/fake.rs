//! In-process fakes for the fast proxy tests: an HTTP origin with an echo endpoint, a raw
//! TCP echo server, a parent proxy that speaks the NTLM connection handshake, and the proxy
//! itself on an OS-assigned port. Everything listens on 127.0.0.1:0 and lives in the test's
//! runtime, so it ends with the test.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::BytesMut;
use cntlm::config::Config;
use cntlm::http::body::{copy_body, request_body, response_body};
use cntlm::http::head::{HeadLimits, RequestHead, ResponseHead, read_request, read_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Every test is bounded by this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

fn limits() -> HeadLimits {
    HeadLimits::from(&cntlm::config::Limits::default())
}

/// The proxy under test, stopped when dropped.
pub struct ProxyHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), cntlm::proxy::RunError>>>,
}

impl ProxyHandle {
    /// Asks the proxy to shut down and waits until `serve` returns.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("proxy task").expect("proxy result");
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts the proxy on 127.0.0.1:0 with `config`.
pub fn start_proxy(mut config: Config) -> ProxyHandle {
    config.listen = vec!["127.0.0.1:0".parse().expect("addr")];
    let proxy = cntlm::proxy::Proxy::bind(Arc::new(config)).expect("bind proxy");
    let addr = proxy.local_addrs()[0];
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(proxy.serve(async {
        let _ = rx.await;
    }));
    ProxyHandle {
        addr,
        stop: Some(tx),
        task: Some(task),
    }
}

/// What a fake server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The head as received.
    pub head: RequestHead,
    /// The body, de-chunked when chunked.
    pub body: Vec<u8>,
    /// The raw body bytes as received (chunk framing included).
    pub raw_body: Vec<u8>,
    /// Which accepted connection it came on (0-based).
    pub conn: usize,
}

/// Shared record of a fake server.
#[derive(Debug, Default)]
pub struct Record {
    /// Requests, in arrival order.
    pub requests: Mutex<Vec<Seen>>,
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// NTLM Type 1 probes seen.
    pub type1: AtomicUsize,
    /// NTLM Type 3 messages seen.
    pub type3: AtomicUsize,
}

impl Record {
    /// A copy of the requests seen.
    pub fn requests(&self) -> Vec<Seen> {
        self.requests.lock().expect("lock").clone()
    }
}

/// Decodes a chunked body (test helper; the proxy copies chunks through unchanged).
pub fn dechunk(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let line = std::str::from_utf8(&rest[..eol]).expect("utf8");
        let size =
            usize::from_str_radix(line.split(';').next().expect("size").trim(), 16).expect("hex");
        rest = &rest[eol + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    out
}

/// Reads one request (head and body) from a server-side connection; `None` at EOF.
async fn read_one(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    conn: usize,
    send_continue: bool,
) -> Option<Seen> {
    let head = read_request(stream, buf, &limits()).await.ok()?;
    let kind = request_body(&head).ok()?;
    if send_continue
        && head.headers.has_token("expect", "100-continue")
        && stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return None;
    }
    let mut raw = Vec::new();
    copy_body(stream, buf, &mut raw, kind, Duration::from_secs(10))
        .await
        .ok()?;
    let body = if kind == cntlm::http::BodyKind::Chunked {
        dechunk(&raw)
    } else {
        raw.clone()
    };
    Some(Seen {
        head,
        body,
        raw_body: raw,
        conn,
    })
}

/// The echo answer: the body back, with what was seen in headers.
fn echo_response(seen: &Seen) -> Vec<u8> {
    let path = seen.head.target.clone();
    if path.ends_with("/chunked") {
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec();
    }
    if path.ends_with("/close") {
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close".to_vec();
    }
    if path.ends_with("/badframing") {
        return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec();
    }
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nX-Method: {}\r\nX-Target: {}\r\nX-Body-Len: {}\r\nContent-Length: {}\r\n\r\n",
        seen.head.method,
        seen.head.target,
        seen.body.len(),
        seen.body.len()
    )
    .into_bytes();
    if !seen.head.method.eq_ignore_ascii_case("HEAD") {
        out.extend_from_slice(&seen.body);
    }
    out
}

/// An HTTP origin: answers every request with `echo_response`, keeps connections alive,
/// answers `Expect: 100-continue` with a 100 first.
pub async fn start_origin() -> (SocketAddr, Arc<Record>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let addr = listener.local_addr().expect("addr");
    let record = Arc::new(Record::default());
    let rec = record.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let rec = rec.clone();
            let conn = rec.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = BytesMut::new();
                while let Some(seen) = read_one(&mut stream, &mut buf, conn, true).await {
                    let answer = echo_response(&seen);
                    let close = seen.head.target.ends_with("/close");
                    rec.requests.lock().expect("lock").push(seen);
                    if stream.write_all(&answer).await.is_err() || close {
                        break;
                    }
                }
            });
        }
    });
    (addr, record)
}

/// A raw TCP echo server: reads until EOF, then sends everything back and closes
/// (exercises half-close through a tunnel).
pub async fn start_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                if stream.read_to_end(&mut all).await.is_ok() {
                    let _ = stream.write_all(&all).await;
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    addr
}

/// How a fake parent behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentMode {
    /// No authentication: answers every request.
    Open,
    /// Connection-bound NTLM: Type 1 -> 407 + Type 2, Type 3 -> authenticated.
    Ntlm,
    /// Like `Ntlm`, but closes after the first `n` challenges (then behaves).
    NtlmCloseAfterChallenge(usize),
    /// Like `Ntlm`, but every Type 3 is rejected with a 407.
    NtlmReject,
    /// Answers every request with a 407 offering Basic only.
    BasicOnly,
}

/// A CHALLENGE_MESSAGE (MS-NLMP §2.2.1.2) like an AD member proxy sends: Unicode, NTLM,
/// extended session security, target info with domain and computer names and a timestamp.
pub fn fake_type2() -> Vec<u8> {
    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }
    let target_name = utf16("CORP");
    let mut info = Vec::new();
    for (id, value) in [
        (2u16, utf16("CORP")),
        (1, utf16("PROXY1")),
        (4, utf16("corp.example")),
        (3, utf16("proxy1.corp.example")),
    ] {
        info.extend_from_slice(&id.to_le_bytes());
        info.extend_from_slice(&(value.len() as u16).to_le_bytes());
        info.extend_from_slice(&value);
    }
    info.extend_from_slice(&7u16.to_le_bytes());
    info.extend_from_slice(&8u16.to_le_bytes());
    info.extend_from_slice(&0x01d9_0000_0000_0000u64.to_le_bytes());
    info.extend_from_slice(&[0, 0, 0, 0]);
    let mut m = Vec::new();
    m.extend_from_slice(b"NTLMSSP\0");
    m.extend_from_slice(&2u32.to_le_bytes());
    let name_off = 56u32;
    m.extend_from_slice(&(target_name.len() as u16).to_le_bytes());
    m.extend_from_slice(&(target_name.len() as u16).to_le_bytes());
    m.extend_from_slice(&name_off.to_le_bytes());
    m.extend_from_slice(&0x0289_8205u32.to_le_bytes());
    m.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    m.extend_from_slice(&[0; 8]);
    let info_off = name_off + target_name.len() as u32;
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&info_off.to_le_bytes());
    m.extend_from_slice(&[6, 1, 0x80, 0x25, 0, 0, 0, 15]);
    m.extend_from_slice(&target_name);
    m.extend_from_slice(&info);
    m
}

/// Whether the NTLM message layer is merged (the stubs return empty/err before that).
pub fn ntlm_engine_ready(creds: &cntlm::auth::Credentials) -> bool {
    cntlm::auth::ntlm::authenticate(
        cntlm::auth::NtlmDialect::NtlmV2,
        creds,
        &fake_type2(),
        16 * 1024,
    )
    .is_ok()
}

fn ntlm_token(head: &RequestHead) -> Option<Vec<u8>> {
    let value = head.headers.get("proxy-authorization")?;
    let text = std::str::from_utf8(value).ok()?;
    let token = text.strip_prefix("NTLM")?.trim();
    BASE64.decode(token).ok()
}

fn is_type3(token: &[u8]) -> bool {
    // A Type 3 when the engine is real; the stub can never produce one, so any non-empty
    // token that is not a Type 1 counts too.
    token.len() >= 12 && &token[..8] == b"NTLMSSP\0" && token[8] == 3
}

fn is_type1(token: &[u8]) -> bool {
    token.is_empty() || (token.len() >= 12 && &token[..8] == b"NTLMSSP\0" && token[8] == 1)
}

/// A parent proxy for the fast tests: answers requests itself (echo, X-Target = the
/// absolute target it got) and CONNECTs by becoming a raw echo (read to EOF, send back).
pub async fn start_parent(mode: ParentMode) -> (SocketAddr, Arc<Record>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind parent");
    let addr = listener.local_addr().expect("addr");
    let record = Arc::new(Record::default());
    let rec = record.clone();
    let challenges = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let conn = rec.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(parent_conn(
                stream,
                conn,
                mode,
                rec.clone(),
                challenges.clone(),
            ));
        }
    });
    (addr, record)
}

async fn parent_conn(
    mut stream: TcpStream,
    conn: usize,
    mode: ParentMode,
    rec: Arc<Record>,
    challenges: Arc<AtomicUsize>,
) {
    let mut buf = BytesMut::new();
    let mut authenticated = mode == ParentMode::Open;
    let mut challenged = false;
    while let Some(seen) = read_one(&mut stream, &mut buf, conn, authenticated).await {
        let token = ntlm_token(&seen.head);
        rec.requests.lock().expect("lock").push(seen.clone());
        let ntlm_mode = matches!(
            mode,
            ParentMode::Ntlm | ParentMode::NtlmCloseAfterChallenge(_) | ParentMode::NtlmReject
        );
        if mode == ParentMode::BasicOnly {
            let answer = b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 6\r\n\r\ndenied";
            if stream.write_all(answer).await.is_err() {
                return;
            }
            continue;
        }
        if ntlm_mode && !authenticated {
            match token {
                Some(t) if !challenged && is_type1(&t) => {
                    rec.type1.fetch_add(1, Ordering::SeqCst);
                    challenged = true;
                    let n = challenges.fetch_add(1, Ordering::SeqCst);
                    let close = matches!(mode, ParentMode::NtlmCloseAfterChallenge(k) if n < k);
                    let answer = format!(
                        "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM {}\r\nContent-Length: 6\r\n{}\r\ndenied",
                        BASE64.encode(fake_type2()),
                        if close { "Connection: close\r\n" } else { "" }
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() || close {
                        return;
                    }
                    continue;
                }
                Some(t) if challenged && is_type3(&t) => {
                    rec.type3.fetch_add(1, Ordering::SeqCst);
                    if mode == ParentMode::NtlmReject {
                        let answer = b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 6\r\n\r\ndenied";
                        let _ = stream.write_all(answer).await;
                        return;
                    }
                    authenticated = true;
                }
                _ => {
                    let answer = b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\nContent-Length: 6\r\n\r\ndenied";
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        }
        let last = rec
            .requests
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("just pushed");
        if last.head.method.eq_ignore_ascii_case("CONNECT") {
            if stream
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            let mut all = buf.to_vec();
            if stream.read_to_end(&mut all).await.is_ok() {
                let _ = stream.write_all(&all).await;
                let _ = stream.shutdown().await;
            }
            return;
        }
        if stream.write_all(&echo_response(&last)).await.is_err() {
            return;
        }
    }
}

/// A parsed response as a client sees it.
#[derive(Debug)]
pub struct Answer {
    /// The head.
    pub head: ResponseHead,
    /// The body (chunk framing kept).
    pub body: Vec<u8>,
}

impl Answer {
    /// A header value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// A test client connection to the proxy.
pub struct TestClient {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read ahead.
    pub buf: BytesMut,
}

impl TestClient {
    /// Connects to the proxy.
    pub async fn connect(addr: SocketAddr) -> Self {
        TestClient {
            stream: TcpStream::connect(addr).await.expect("connect to proxy"),
            buf: BytesMut::new(),
        }
    }

    /// Sends raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Reads one response (interim ones included) to a `method` request.
    pub async fn answer(&mut self, method: &str) -> Answer {
        let head = read_response(
            &mut self.stream,
            &mut self.buf,
            &HeadLimits::response(&Default::default()),
            Some(Duration::from_secs(20)),
        )
        .await
        .expect("a response head");
        let tunnel = method.eq_ignore_ascii_case("CONNECT") && (200..300).contains(&head.status);
        let kind = if tunnel {
            cntlm::http::BodyKind::None
        } else {
            response_body(method, &head).expect("valid framing")
        };
        let mut body = Vec::new();
        copy_body(
            &mut self.stream,
            &mut self.buf,
            &mut body,
            kind,
            Duration::from_secs(20),
        )
        .await
        .expect("a complete body");
        Answer { head, body }
    }

    /// Sends a request and reads its response.
    pub async fn request(&mut self, method: &str, raw: &[u8]) -> Answer {
        self.send(raw).await;
        self.answer(method).await
    }

    /// Whether the proxy closed the connection (EOF after any buffered bytes).
    pub async fn is_closed(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.stream.read_to_end(&mut rest)).await,
            Ok(Ok(_))
        )
    }
}

/// A config whose parents are `parents`, with test credentials.
pub fn parent_config(parents: &[SocketAddr], credentials: bool) -> Config {
    let mut config = Config::default();
    config.parents = parents
        .iter()
        .map(|a| cntlm::config::ParentProxy {
            host: a.ip().to_string(),
            port: a.port(),
        })
        .collect();
    if credentials {
        config.auth.credentials = test_credentials();
    }
    config
}

/// User `alice`, domain `CORP`, a clear-text password.
pub fn test_credentials() -> cntlm::auth::Credentials {
    cntlm::auth::Credentials {
        user: "alice".into(),
        domain: "CORP".into(),
        workstation: "LAPTOP".into(),
        password: Some(cntlm::auth::Password::new("Secret-1")),
        ..Default::default()
    }
}
