//! Issue 6: PAC routing in the real proxy, against the lab's Squid parents.
//!
//! Routing cases use Squid without authentication (the parents only have to forward), the
//! credential allow-list uses the NTLM Squid. Origins are tiny in-test HTTP servers on
//! 127.0.0.1 that answer with their name and whether a proxy (`Via`) forwarded the request;
//! PAC branches pick them by port (`shExpMatch(url, ...)`, `isInNet`), so no test depends on
//! DNS: names such as `app.intranet.example` are only ever pattern-matched by `--route`.
//!
//! The network change is an injected event (`Proxy::with_network_events`): the real netlink
//! source is proven in its own namespace tests (tests/netwatch.rs); here we prove the wiring.
#![cfg(feature = "pac")]

#[path = "support/lab.rs"]
mod lab;
#[path = "support/lab_cntlm.rs"]
mod lab_cntlm;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cntlm::config::Config;
use cntlm::netwatch::NetworkGeneration;
use lab::{ALICE, Origin, ParentAuth, Squid, free_port, run_with_timeout};
use lab_cntlm::{Cntlm, curl};

/// How long a polled condition may take before the test fails.
const POLL_DEADLINE: Duration = Duration::from_secs(60);

/// A tiny HTTP/1.1 server on 127.0.0.1: answers every request with `respond(head)` and closes.
struct TinyServer {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl TinyServer {
    fn start(respond: impl Fn(&str) -> (String, String) + Send + Sync + 'static) -> TinyServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        let respond = Arc::new(respond);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let respond = Arc::clone(&respond);
                let counted = Arc::clone(&counted);
                thread::spawn(move || serve_one(stream, &*respond, &counted));
            }
        });
        TinyServer { port, hits }
    }

    /// An origin answering `<name> via=<proxy|none>`.
    fn origin(name: &'static str) -> TinyServer {
        TinyServer::start(move |head| {
            let via = if head.to_ascii_lowercase().contains("\r\nvia:") {
                "proxy"
            } else {
                "none"
            };
            ("text/plain".into(), format!("{name} via={via}"))
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/page", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn serve_one(
    mut stream: TcpStream,
    respond: &(dyn Fn(&str) -> (String, String) + Send + Sync),
    hits: &AtomicUsize,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let (content_type, body) = respond(&String::from_utf8_lossy(&head));
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes());
}

/// A PAC served over HTTP whose text the test can change.
struct PacServer {
    server: TinyServer,
    text: Arc<Mutex<String>>,
}

impl PacServer {
    fn start(initial: &str) -> PacServer {
        let text = Arc::new(Mutex::new(initial.to_string()));
        let served = Arc::clone(&text);
        let server = TinyServer::start(move |_| {
            let pac = served.lock().expect("pac text").clone();
            ("application/x-ns-proxy-autoconfig".into(), pac)
        });
        PacServer { server, text }
    }

    fn set(&self, pac: &str) {
        *self.text.lock().expect("pac text") = pac.to_string();
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/wpad.dat", self.server.port)
    }
}

/// `cntlm -c <conf> --route <url>`: (exit code, stdout).
fn route(conf: &Path, url: &str) -> (i32, String) {
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_cntlm"))
            .arg("-c")
            .arg(conf)
            .args(["--route", url]),
        Duration::from_secs(60),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn body(got: &lab_cntlm::CurlResult) -> String {
    String::from_utf8_lossy(&got.body).into_owned()
}

/// Polls `attempt` until it returns true or [`POLL_DEADLINE`] passes (no timing asserted).
fn eventually(what: &str, mut attempt: impl FnMut() -> bool) {
    let deadline = Instant::now() + POLL_DEADLINE;
    while !attempt() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn pac_branches_pick_parents_failover_and_direct() {
    let a = Squid::start(ParentAuth::None);
    let b = Squid::start(ParentAuth::None);
    let (o1, o2, o3, o4) = (
        TinyServer::origin("o1"),
        TinyServer::origin("o2"),
        TinyServer::origin("o3"),
        TinyServer::origin("o4"),
    );
    let tls = Origin::start();
    let dead = free_port();
    let static_dead = free_port();
    let pac = format!(
        r#"function FindProxyForURL(url, host) {{
  if (dnsDomainIs(host, ".intranet.example")) return "DIRECT";
  if (shExpMatch(host, "*.corp.example")) return "PROXY 127.0.0.1:{a}";
  if (shExpMatch(url, "http://127.0.0.1:{o1}/*")) return "PROXY 127.0.0.1:{a}";
  if (shExpMatch(url, "http://127.0.0.1:{o2}/*")) return "PROXY 127.0.0.1:{dead}; PROXY 127.0.0.1:{b}";
  if (shExpMatch(url, "http://127.0.0.1:{o3}/*")) return "DIRECT";
  if (url == "https://127.0.0.1:{tls}/") return "PROXY 127.0.0.1:{b}";
  if (isInNet(host, "127.0.0.0", "255.0.0.0")) return "PROXY 127.0.0.1:{b}";
  return "PROXY 127.0.0.1:{dead}";
}}
"#,
        a = a.port,
        b = b.port,
        o1 = o1.port,
        o2 = o2.port,
        o3 = o3.port,
        tls = tls.https_port,
    );
    let scratch = tempfile::tempdir().expect("temp dir");
    let pac_path = scratch.path().join("corp.pac");
    std::fs::write(&pac_path, pac).expect("write pac");
    // The static parent is dead: a request reaching it would fail, so a 200 proves the PAC.
    let cntlm = Cntlm::start(&format!(
        "Proxy 127.0.0.1:{static_dead}\nPac {}\n",
        pac_path.display()
    ));
    let proxy = cntlm.url();

    let got = curl(Some(&proxy), &[&o1.url()]);
    assert_eq!(
        (got.status, body(&got)),
        (200, "o1 via=proxy".into()),
        "{}",
        cntlm.log()
    );
    assert_eq!((a.forwarded_requests(), b.forwarded_requests()), (1, 0));

    // Two parents, the first down: the second serves.
    let got = curl(Some(&proxy), &[&o2.url()]);
    assert_eq!(
        (got.status, body(&got)),
        (200, "o2 via=proxy".into()),
        "{}",
        cntlm.log()
    );
    assert_eq!((a.forwarded_requests(), b.forwarded_requests()), (1, 1));

    // DIRECT: neither parent sees it.
    let got = curl(Some(&proxy), &[&o3.url()]);
    assert_eq!(
        (got.status, body(&got)),
        (200, "o3 via=none".into()),
        "{}",
        cntlm.log()
    );
    assert_eq!((a.forwarded_requests(), b.forwarded_requests()), (1, 1));

    // isInNet on the address literal.
    let got = curl(Some(&proxy), &[&o4.url()]);
    assert_eq!(
        (got.status, body(&got)),
        (200, "o4 via=proxy".into()),
        "{}",
        cntlm.log()
    );
    assert_eq!((a.forwarded_requests(), b.forwarded_requests()), (1, 2));

    // CONNECT: the PAC sees https://host:port/.
    let cert = tls.cert.display().to_string();
    let got = curl(Some(&proxy), &["--cacert", &cert, &tls.https_url("/echo")]);
    assert_eq!(got.status, 200, "{}\n{}", got.stderr, cntlm.log());
    assert_eq!(b.forwarded_requests(), 3, "{}", b.access_log());
    assert_eq!((o1.hits(), o2.hits(), o3.hits(), o4.hits()), (1, 1, 1, 1));

    // --route explains every branch, with the PAC's source and answer.
    let conf = cntlm.scratch().join("cntlm.conf");
    let (code, text) = route(&conf, &o1.url());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("= \"PROXY 127.0.0.1:{}\"", a.port)),
        "{text}"
    );
    assert!(
        text.contains(&pac_path.display().to_string()) && text.contains("ago"),
        "{text}"
    );
    assert!(
        text.contains(&format!("1. 127.0.0.1:{}  alive", a.port)),
        "{text}"
    );
    let (code, text) = route(&conf, &o2.url());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("1. 127.0.0.1:{dead}  down")),
        "{text}"
    );
    assert!(
        text.contains(&format!("2. 127.0.0.1:{}  alive", b.port)),
        "{text}"
    );
    assert!(
        text.contains(&format!("to parent 127.0.0.1:{}", b.port)),
        "{text}"
    );
    let (code, text) = route(&conf, &o3.url());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("= \"DIRECT\"") && text.contains("DIRECT (Host:"),
        "{text}"
    );
    let (code, text) = route(&conf, "http://app.intranet.example/");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("= \"DIRECT\""), "{text}");
    let (code, text) = route(&conf, "https://build.corp.example/");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("CONNECT build.corp.example:443"), "{text}");
    assert!(
        text.contains("\"https://build.corp.example:443/\""),
        "{text}"
    );
    assert!(
        text.contains(&format!("= \"PROXY 127.0.0.1:{}\"", a.port)),
        "{text}"
    );
    // Only a dead parent and no DIRECT: no usable route.
    let (code, text) = route(&conf, "http://www.example.com/");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("NOT usable"), "{text}");
}

#[test]
fn no_proxy_wins_over_the_pac() {
    let a = Squid::start(ParentAuth::None);
    let origin = TinyServer::origin("np");
    let scratch = tempfile::tempdir().expect("temp dir");
    let pac_path = scratch.path().join("all.pac");
    std::fs::write(
        &pac_path,
        format!(
            "function FindProxyForURL(u, h) {{ return \"PROXY 127.0.0.1:{}\"; }}",
            a.port
        ),
    )
    .expect("write pac");
    let cntlm = Cntlm::start(&format!(
        "NoProxy 127.0.0.1\nPac {}\nProxy 127.0.0.1:{}\n",
        pac_path.display(),
        a.port
    ));
    let got = curl(Some(&cntlm.url()), &[&origin.url()]);
    assert_eq!(
        (got.status, body(&got)),
        (200, "np via=none".into()),
        "{}",
        cntlm.log()
    );
    assert_eq!(a.forwarded_requests(), 0);
    let (code, text) = route(&cntlm.scratch().join("cntlm.conf"), &origin.url());
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("rule \"127.0.0.1\" matches"), "{text}");
}

/// A PAC that cannot be used (looping, or not even compiling): the static Proxy list serves,
/// and the log says so once.
fn falls_back_to_static(pac: &str, log_says: &str, route_says: &str) {
    let a = Squid::start(ParentAuth::None);
    let origin = TinyServer::origin("fb");
    let scratch = tempfile::tempdir().expect("temp dir");
    let pac_path = scratch.path().join("broken.pac");
    std::fs::write(&pac_path, pac).expect("write pac");
    let cntlm = Cntlm::start(&format!(
        "Pac {}\nProxy 127.0.0.1:{}\n",
        pac_path.display(),
        a.port
    ));
    for _ in 0..2 {
        let got = curl(Some(&cntlm.url()), &[&origin.url()]);
        assert_eq!(
            (got.status, body(&got)),
            (200, "fb via=proxy".into()),
            "{}",
            cntlm.log()
        );
    }
    assert_eq!(a.forwarded_requests(), 2);
    let log = cntlm.log();
    assert_eq!(log.matches(log_says).count(), 1, "{log}");
    let (code, text) = route(&cntlm.scratch().join("cntlm.conf"), &origin.url());
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(route_says), "{text}");
    assert!(
        text.contains("falling back to the static Proxy list"),
        "{text}"
    );
    assert!(
        text.contains(&format!("1. 127.0.0.1:{}  alive", a.port)),
        "{text}"
    );
}

#[test]
fn a_looping_pac_falls_back_to_the_static_parents() {
    falls_back_to_static(
        "function FindProxyForURL(u, h) { for (;;) {} }",
        "PAC gives no answer",
        "ran longer than",
    );
}

#[test]
fn a_pac_with_a_syntax_error_falls_back_with_a_warning() {
    let pac = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pac/syntax-error.pac"),
    )
    .expect("read syntax-error.pac");
    falls_back_to_static(&pac, "the PAC does not load", "no usable PAC loaded");
}

#[test]
fn credentials_go_to_pac_parents_only_when_allowed() {
    let ntlm = Squid::start(ParentAuth::NtlmV2Only);
    let origin = TinyServer::origin("auth");
    let pac = PacServer::start(&format!(
        "function FindProxyForURL(u, h) {{ return \"PROXY 127.0.0.1:{}\"; }}",
        ntlm.port
    ));
    let creds = format!(
        "Username {}\nDomain {}\nPassword {}\n",
        ALICE.user, ALICE.domain, ALICE.password
    );
    // A PAC fetched over HTTP names a parent we were not told about: no credentials for it.
    let wary = Cntlm::start(&format!("Pac {}\n{creds}", pac.url()));
    let got = curl(Some(&wary.url()), &[&origin.url()]);
    assert_eq!(got.status, 407, "{}", wary.log());
    assert_eq!(ntlm.type3_count(), 0, "{}", ntlm.helper_log());
    assert!(
        wary.log().contains("no credentials for PAC-named parent"),
        "{}",
        wary.log()
    );
    let (_, text) = route(&wary.scratch().join("cntlm.conf"), &origin.url());
    assert!(text.contains("credentials: NO"), "{text}");

    // Listed in PacAuthDomains: it authenticates.
    let trusting = Cntlm::start(&format!(
        "Pac {}\nPacAuthDomains 127.0.0.0/8\n{creds}",
        pac.url()
    ));
    let got = curl(Some(&trusting.url()), &[&origin.url()]);
    assert_eq!(
        (got.status, body(&got)),
        (200, "auth via=proxy".into()),
        "{}",
        trusting.log()
    );
    assert_eq!(ntlm.accepted().len(), 1, "{}", ntlm.helper_log());
    let (code, text) = route(&trusting.scratch().join("cntlm.conf"), &origin.url());
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("matches PacAuthDomains"), "{text}");
    assert!(
        text.contains("NTLMv2 authentication as LAB\\alice"),
        "{text}"
    );
}

/// The proxy in this process (for knobs a config file does not have, and injected events).
struct InProcess {
    /// Runs the proxy; dropped (and the proxy with it) after the stop signal.
    _runtime: tokio::runtime::Runtime,
    port: u16,
    network: Option<tokio::sync::watch::Sender<NetworkGeneration>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl InProcess {
    fn start(mut config: Config) -> InProcess {
        config.listen = vec!["127.0.0.1:0".parse().expect("addr")];
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let (net_tx, net_rx) = tokio::sync::watch::channel(NetworkGeneration::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let proxy = {
            let _enter = runtime.enter();
            cntlm::proxy::Proxy::bind(Arc::new(config))
                .expect("bind")
                .with_network_events(net_rx)
        };
        let port = proxy.local_addrs()[0].port();
        runtime.spawn(proxy.serve(async {
            let _ = stop_rx.await;
        }));
        InProcess {
            _runtime: runtime,
            port,
            network: Some(net_tx),
            stop: Some(stop_tx),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Simulates a network change (what `NetworkWatcher` publishes).
    fn network_changed(&self) {
        if let Some(tx) = &self.network {
            tx.send(NetworkGeneration::default())
                .expect("proxy listens for changes");
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn pac_to(port: u16) -> String {
    format!("function FindProxyForURL(u, h) {{ return \"PROXY 127.0.0.1:{port}\"; }}")
}

#[test]
fn a_pac_served_over_http_is_refetched_after_it_changes() {
    let a = Squid::start(ParentAuth::None);
    let b = Squid::start(ParentAuth::None);
    let origin = TinyServer::origin("re");
    let pac = PacServer::start(&pac_to(a.port));
    let mut config = Config {
        pac: Some(pac.url()),
        ..Config::default()
    };
    config.limits.pac_refetch = Duration::from_millis(300);
    let cntlm = InProcess::start(config);
    let got = curl(Some(&cntlm.url()), &[&origin.url()]);
    assert_eq!(got.status, 200, "{}", got.stderr);
    assert_eq!((a.forwarded_requests(), b.forwarded_requests()), (1, 0));
    pac.set(&pac_to(b.port));
    eventually(
        "the changed PAC sends requests to the second parent",
        || {
            let got = curl(Some(&cntlm.url()), &[&origin.url()]);
            assert_eq!(got.status, 200, "{}", got.stderr);
            b.forwarded_requests() > 0
        },
    );
    assert!(
        pac.server.hits() >= 2,
        "fetched {} times",
        pac.server.hits()
    );
}

#[test]
fn a_network_change_refetches_the_pac_and_forgets_dead_parents() {
    let b = Squid::start(ParentAuth::None);
    let x_port = free_port(); // refusing until Squid starts there
    let origin = TinyServer::origin("net");
    let pac = PacServer::start(&format!(
        "function FindProxyForURL(u, h) {{ return \"PROXY 127.0.0.1:{x_port}; PROXY 127.0.0.1:{}\"; }}",
        b.port
    ));
    let mut config = Config {
        pac: Some(pac.url()),
        ..Config::default()
    };
    // Long enough that only the network change can explain a re-fetch or a return to X.
    config.limits.pac_refetch = Duration::from_secs(3600);
    config.limits.parent_backoff = Duration::from_secs(3600);
    let cntlm = InProcess::start(config);
    let got = curl(Some(&cntlm.url()), &[&origin.url()]);
    assert_eq!(got.status, 200, "{}", got.stderr);
    assert_eq!(b.forwarded_requests(), 1);
    let fetches = pac.server.hits();

    // X comes up, but it is backed off for an hour: B keeps serving.
    let x = Squid::start_on(ParentAuth::None, x_port);
    let got = curl(Some(&cntlm.url()), &[&origin.url()]);
    assert_eq!(got.status, 200, "{}", got.stderr);
    assert_eq!((x.forwarded_requests(), b.forwarded_requests()), (0, 2));

    cntlm.network_changed();
    eventually("after the network change the PAC is fetched again", || {
        pac.server.hits() > fetches
    });
    let got = curl(Some(&cntlm.url()), &[&origin.url()]);
    assert_eq!(got.status, 200, "{}", got.stderr);
    assert_eq!((x.forwarded_requests(), b.forwarded_requests()), (1, 2));
}

#[test]
fn every_parent_down_goes_direct_and_back_when_one_answers() {
    let port = free_port();
    let origin = TinyServer::origin("fbk");
    let cntlm = Cntlm::start(&format!("Proxy 127.0.0.1:{port}\nProxyFallback direct\n"));
    for _ in 0..2 {
        let got = curl(Some(&cntlm.url()), &[&origin.url()]);
        assert_eq!(
            (got.status, body(&got)),
            (200, "fbk via=none".into()),
            "{}",
            cntlm.log()
        );
    }
    let parent = Squid::start_on(ParentAuth::None, port);
    for _ in 0..2 {
        let got = curl(Some(&cntlm.url()), &[&origin.url()]);
        assert_eq!(
            (got.status, body(&got)),
            (200, "fbk via=proxy".into()),
            "{}",
            cntlm.log()
        );
    }
    assert_eq!(parent.forwarded_requests(), 2);
    let log = cntlm.log();
    assert_eq!(
        log.matches("going DIRECT until one answers").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("leaving DIRECT").count(), 1, "{log}");
}

#[test]
fn the_served_proxy_pac_points_at_us_and_evaluates() {
    let cntlm = Cntlm::start("");
    let url = format!("{}/proxy.pac", cntlm.url());
    // As a web server (origin form) and as a proxy request naming us (absolute form).
    let plain = curl(None, &["-D", "-", &url]);
    let proxied = curl(Some(&cntlm.url()), &[&url]);
    assert_eq!(
        (plain.status, proxied.status),
        (200, 200),
        "{}",
        cntlm.log()
    );
    let text = body(&plain);
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: application/x-ns-proxy-autoconfig"),
        "{text}"
    );
    let script = body(&proxied);
    assert!(text.ends_with(&script), "{text}\n---\n{script}");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let engine = cntlm::pac::PacEngine::new(script, cntlm::pac::PacOptions::system(None))
        .expect("served PAC loads");
    let answer = runtime
        .block_on(engine.find_proxy("http://example.com/", "example.com"))
        .expect("served PAC answers");
    assert_eq!(
        answer,
        vec![
            cntlm::pac::PacProxy::Proxy {
                kind: cntlm::pac::PacProxyKind::Http,
                host: "127.0.0.1".into(),
                port: cntlm.port,
            },
            cntlm::pac::PacProxy::Direct,
        ]
    );
}

/// A SOCKS5 parent (our own server side, `cntlm::socks5`) in this process, counting CONNECTs.
struct SocksParent {
    port: u16,
    connects: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl SocksParent {
    fn start() -> SocksParent {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .expect("bind socks parent");
        let port = listener.local_addr().expect("local addr").port();
        let connects = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connects);
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let connect = |target: cntlm::socks5::Socks5Target| async move {
                        counted.fetch_add(1, Ordering::SeqCst);
                        tokio::net::TcpStream::connect((target.host.as_str(), target.port)).await
                    };
                    let _ = cntlm::socks5::serve_connection(
                        stream,
                        &[],
                        Duration::from_secs(10),
                        connect,
                    )
                    .await;
                });
            }
        });
        SocksParent {
            port,
            connects,
            _runtime: runtime,
        }
    }

    fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }
}

#[test]
fn socks5_entries_reach_the_origin_through_a_socks_parent() {
    let socks = SocksParent::start();
    let a = Squid::start(ParentAuth::None);
    let (o1, o2) = (TinyServer::origin("s1"), TinyServer::origin("s2"));
    let tls = Origin::start();
    let dead = free_port();
    let pac = format!(
        r#"function FindProxyForURL(url, host) {{
  if (shExpMatch(url, "http://127.0.0.1:{o1}/*")) return "SOCKS5 127.0.0.1:{s}; PROXY 127.0.0.1:{a}";
  if (shExpMatch(url, "http://127.0.0.1:{o2}/*")) return "SOCKS5 127.0.0.1:{dead}; PROXY 127.0.0.1:{a}";
  return "SOCKS5 127.0.0.1:{s}";
}}
"#,
        s = socks.port,
        a = a.port,
        o1 = o1.port,
        o2 = o2.port,
    );
    let scratch = tempfile::tempdir().expect("temp dir");
    let pac_path = scratch.path().join("socks.pac");
    std::fs::write(&pac_path, pac).expect("write pac");
    let cntlm = Cntlm::start(&format!("Pac {}\n", pac_path.display()));
    let got = curl(Some(&cntlm.url()), &[&o1.url()]);
    assert_eq!(
        (got.status, body(&got)),
        (200, "s1 via=none".into()),
        "{}",
        cntlm.log()
    );
    assert_eq!((socks.connects(), a.forwarded_requests()), (1, 0));
    // The SOCKS5 parent is down: the HTTP parent after it serves.
    let got = curl(Some(&cntlm.url()), &[&o2.url()]);
    assert_eq!(
        (got.status, body(&got)),
        (200, "s2 via=proxy".into()),
        "{}",
        cntlm.log()
    );
    assert_eq!((socks.connects(), a.forwarded_requests()), (1, 1));
    // CONNECT through the SOCKS5 parent.
    let cert = tls.cert.display().to_string();
    let got = curl(
        Some(&cntlm.url()),
        &["--cacert", &cert, &tls.https_url("/echo")],
    );
    assert_eq!(got.status, 200, "{}\n{}", got.stderr, cntlm.log());
    assert_eq!(socks.connects(), 2);
    let (code, text) = route(&cntlm.scratch().join("cntlm.conf"), &o1.url());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("1. SOCKS5 127.0.0.1:{}  alive", socks.port)),
        "{text}"
    );
    assert!(text.contains("a SOCKS5 CONNECT to 127.0.0.1:"), "{text}");
}

#[test]
fn the_pac_never_sees_user_info_from_the_url() {
    let origin = TinyServer::origin("ui");
    let dead = free_port();
    let scratch = tempfile::tempdir().expect("temp dir");
    let pac_path = scratch.path().join("nosy.pac");
    // Sends the request to a dead parent if it can see the password.
    std::fs::write(
        &pac_path,
        format!(
            "function FindProxyForURL(u, h) {{ return u.indexOf(\"s3cret\") >= 0 ? \"PROXY 127.0.0.1:{dead}\" : \"DIRECT\"; }}"
        ),
    )
    .expect("write pac");
    let cntlm = Cntlm::start(&format!("Pac {}\n", pac_path.display()));
    // Raw bytes: curl would move the user info into a header before we see it.
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, cntlm.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let request = format!(
        "GET http://user:s3cret@127.0.0.1:{port}/page HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n",
        port = origin.port
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\n{}",
        cntlm.log()
    );
    assert!(answer.ends_with("ui via=none"), "{answer}");
}
