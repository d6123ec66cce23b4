//! The PAC engine on real PAC files (tests/data/pac), with scripted DNS, local addresses and
//! clock, so nothing depends on this machine's network or the time of day.
#![cfg(feature = "pac")]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cntlm::pac::{
    CivilTime, PacClock, PacEngine, PacError, PacNetwork, PacOptions, PacProxy, PacProxyKind,
    TimeZoneChoice, served_pac,
};

/// DNS from a table, local addresses from a list, and a record of every lookup.
#[derive(Default)]
struct FakeNetwork {
    hosts: HashMap<String, Vec<IpAddr>>,
    mine: Vec<IpAddr>,
    lookups: Mutex<Vec<String>>,
}

impl FakeNetwork {
    fn corporate() -> FakeNetwork {
        let mut hosts = HashMap::new();
        let ip = |s: &str| s.parse::<IpAddr>().expect("literal");
        hosts.insert("app.corp.example".into(), vec![ip("10.1.2.3")]);
        hosts.insert("www.public.example".into(), vec![ip("192.0.2.80")]);
        hosts.insert("v6only.example".into(), vec![ip("fd00:1::5")]);
        hosts.insert(
            "dual.example".into(),
            vec![ip("fd00:1::6"), ip("192.0.2.7")],
        );
        FakeNetwork {
            hosts,
            ..FakeNetwork::default()
        }
    }

    fn with_my_ips(mut self, ips: &[&str]) -> FakeNetwork {
        self.mine = ips.iter().map(|s| s.parse().expect("literal")).collect();
        self
    }

    fn lookups_of(&self, host: &str) -> usize {
        let lookups = self.lookups.lock().expect("lock");
        lookups.iter().filter(|h| *h == host).count()
    }
}

impl PacNetwork for FakeNetwork {
    fn resolve(&self, host: &str) -> Vec<IpAddr> {
        // Stands for a buggy injected resolver.
        assert_ne!(host, "panic.example", "the fake resolver panics on request");
        self.lookups.lock().expect("lock").push(host.to_owned());
        self.hosts.get(host).cloned().unwrap_or_default()
    }

    fn my_ip_addresses(&self) -> Vec<IpAddr> {
        self.mine.clone()
    }
}

/// A clock stopped at one local and one GMT time.
struct FixedClock {
    local: CivilTime,
    gmt: CivilTime,
}

impl PacClock for FixedClock {
    fn now(&self, zone: TimeZoneChoice) -> CivilTime {
        match zone {
            TimeZoneChoice::Local => self.local,
            TimeZoneChoice::Gmt => self.gmt,
        }
    }
}

fn civil(year: i32, month: u8, day: u8, weekday: u8, hour: u8, minute: u8) -> CivilTime {
    CivilTime {
        year,
        month,
        day,
        weekday,
        hour,
        minute,
        second: 0,
    }
}

/// Thursday 2026-07-09 01:30 local, still Wednesday 23:30 in GMT.
fn thursday_night() -> FixedClock {
    FixedClock {
        local: civil(2026, 7, 9, 4, 1, 30),
        gmt: civil(2026, 7, 8, 3, 23, 30),
    }
}

/// Sunday 2026-12-20 10:15 local, 12:15 GMT.
fn sunday_morning() -> FixedClock {
    FixedClock {
        local: civil(2026, 12, 20, 0, 10, 15),
        gmt: civil(2026, 12, 20, 0, 12, 15),
    }
}

fn options(network: Arc<FakeNetwork>, clock: FixedClock) -> PacOptions {
    PacOptions {
        time_limit: Duration::from_secs(10),
        memory_limit: 32 * 1024 * 1024,
        cache_ttl: Duration::ZERO,
        network,
        clock: Arc::new(clock),
    }
}

fn pac_file(name: &str) -> String {
    let path = format!("{}/tests/data/pac/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn engine(name: &str, options: PacOptions) -> PacEngine {
    PacEngine::new(pac_file(name), options).unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

fn proxy(kind: PacProxyKind, host: &str, port: u16) -> PacProxy {
    PacProxy::Proxy {
        kind,
        host: host.to_owned(),
        port,
    }
}

fn http(host: &str, port: u16) -> PacProxy {
    proxy(PacProxyKind::Http, host, port)
}

#[tokio::test]
async fn corporate_pac_branches_by_host() {
    let pac = engine(
        "corp.pac",
        options(Arc::new(FakeNetwork::corporate()), thursday_night()),
    );
    let two_parents = vec![http("parent1.example", 3128), http("parent2.example", 3128)];
    let mut two_then_direct = two_parents.clone();
    two_then_direct.push(PacProxy::Direct);
    let cases = [
        ("http://wiki/start", "wiki", vec![PacProxy::Direct]),
        (
            "http://portal.intranet.example/x",
            "portal.intranet.example",
            vec![PacProxy::Direct],
        ),
        (
            "http://mirror.downloads.example/f.iso",
            "mirror.downloads.example",
            vec![http("dl-proxy.example", 8081)],
        ),
        (
            "http://app.corp.example/",
            "app.corp.example",
            vec![PacProxy::Direct],
        ),
        ("http://10.9.8.7/", "10.9.8.7", vec![PacProxy::Direct]),
        (
            "http://www.partner.example/",
            "www.partner.example",
            vec![proxy(PacProxyKind::Socks5, "socks.example", 1080)],
        ),
        (
            "https://www.public.example/",
            "www.public.example",
            two_parents,
        ),
        (
            "http://www.public.example/",
            "www.public.example",
            two_then_direct.clone(),
        ),
        (
            "http://nowhere.example/",
            "nowhere.example",
            two_then_direct,
        ),
    ];
    for (url, host, want) in cases {
        let got = pac.find_proxy(url, host).await;
        assert_eq!(got, Ok(want), "{url}");
    }
}

#[tokio::test]
async fn direct_pac_returns_direct() {
    let pac = engine(
        "direct.pac",
        options(Arc::new(FakeNetwork::default()), thursday_night()),
    );
    let got = pac.find_proxy("https://example.com/", "example.com").await;
    assert_eq!(got, Ok(vec![PacProxy::Direct]));
}

#[tokio::test]
async fn looping_pac_times_out_and_the_next_call_works() {
    let mut opts = options(Arc::new(FakeNetwork::default()), thursday_night());
    opts.time_limit = Duration::from_millis(300);
    let pac = engine("loop.pac", opts);
    let got = pac.find_proxy("http://loop.example/", "loop.example").await;
    assert_eq!(
        got,
        Err(PacError::Timeout {
            limit: Duration::from_millis(300)
        })
    );
    // The script was reloaded after the timeout: its call counter starts again at 1.
    let got = pac.find_proxy("http://ok.example/", "ok.example").await;
    assert_eq!(got, Ok(vec![http("after-loop.example", 3001)]));
    let got = pac.find_proxy("http://ok2.example/", "ok2.example").await;
    assert_eq!(got, Ok(vec![http("after-loop.example", 3002)]));
}

#[test]
fn a_pac_looping_at_load_time_is_a_timeout() {
    let mut opts = options(Arc::new(FakeNetwork::default()), thursday_night());
    opts.time_limit = Duration::from_millis(200);
    let got = PacEngine::new("for (;;) {}".into(), opts);
    assert!(matches!(got, Err(PacError::Timeout { .. })), "{got:?}");
}

#[test]
fn a_syntax_error_is_a_load_error() {
    let got = PacEngine::new(
        pac_file("syntax-error.pac"),
        options(Arc::new(FakeNetwork::default()), thursday_night()),
    );
    match got {
        Err(PacError::Load { message }) => assert!(message.contains("SyntaxError"), "{message}"),
        other => panic!("expected a load error, got {other:?}"),
    }
}

#[test]
fn a_script_without_find_proxy_for_url_is_refused() {
    let got = PacEngine::new(
        "function findProxy(u, h) { return 'DIRECT'; }".into(),
        options(Arc::new(FakeNetwork::default()), thursday_night()),
    );
    assert!(matches!(got, Err(PacError::NoEntryPoint)), "{got:?}");
}

#[tokio::test]
async fn memory_hog_hits_the_limit_and_the_engine_recovers() {
    let mut opts = options(Arc::new(FakeNetwork::default()), thursday_night());
    opts.memory_limit = 16 * 1024 * 1024;
    // A generous time limit, so only the memory cap can stop the hog.
    opts.time_limit = Duration::from_secs(60);
    let pac = engine("memory-hog.pac", opts);
    let got = pac.find_proxy("http://hog.example/", "hog.example").await;
    assert_eq!(
        got,
        Err(PacError::MemoryLimit {
            limit: 16 * 1024 * 1024
        })
    );
    let got = pac.find_proxy("http://fine.example/", "fine.example").await;
    assert_eq!(got, Ok(vec![PacProxy::Direct]));
}

#[tokio::test]
async fn weekday_date_and_time_ranges_follow_the_clock() {
    let thursday = engine(
        "schedule.pac",
        options(Arc::new(FakeNetwork::default()), thursday_night()),
    );
    let sunday = engine(
        "schedule.pac",
        options(Arc::new(FakeNetwork::default()), sunday_morning()),
    );
    // (host, answer on Thursday night, answer on Sunday morning); None = DIRECT.
    let cases = [
        ("weekday", Some("office"), None),
        ("weekend", None, Some("weekend")),
        ("wrap", None, Some("wrap")),
        ("gmt-day", Some("gmt"), None),
        ("hours", None, Some("hours")),
        ("night", Some("night"), None),
        ("minutes", None, Some("minutes")),
        ("gmt-hour", None, Some("gmt")),
        ("month", Some("summer"), None),
        ("winter", None, Some("winter")),
        ("day", Some("first-half"), None),
        ("year", Some("y2026"), Some("y2026")),
        ("span", Some("span"), None),
        ("month-year", Some("my"), Some("my")),
    ];
    let expect = |want: Option<&str>| match want {
        Some(h) => vec![http(h, 1)],
        None => vec![PacProxy::Direct],
    };
    for (host, on_thursday, on_sunday) in cases {
        let url = format!("http://{host}/");
        assert_eq!(
            thursday.find_proxy(&url, host).await,
            Ok(expect(on_thursday)),
            "{host} on Thursday night"
        );
        assert_eq!(
            sunday.find_proxy(&url, host).await,
            Ok(expect(on_sunday)),
            "{host} on Sunday morning"
        );
    }
}

#[tokio::test]
async fn my_ip_address_decides_office_vpn_or_home() {
    let cases: [(&[&str], PacProxy); 3] = [
        (&["10.20.3.4"], http("office-proxy.example", 8080)),
        (
            &["192.168.1.5", "fd00:20::9"],
            http("vpn-proxy.example", 8080),
        ),
        (&[], PacProxy::Direct),
    ];
    for (mine, want) in cases {
        let network = Arc::new(FakeNetwork::default().with_my_ips(mine));
        let pac = engine("roaming.pac", options(network, thursday_night()));
        let got = pac.find_proxy("http://example.com/", "example.com").await;
        assert_eq!(got, Ok(vec![want]), "my addresses {mine:?}");
    }
}

#[tokio::test]
async fn find_proxy_for_url_ex_is_preferred_and_ipv6_aware() {
    let pac = engine(
        "microsoft-ex.pac",
        options(Arc::new(FakeNetwork::corporate()), thursday_night()),
    );
    let got = pac
        .find_proxy("http://v6only.example/", "v6only.example")
        .await;
    assert_eq!(got, Ok(vec![http("v6-proxy.example", 3128)]));
    let got = pac
        .find_proxy("http://www.public.example/", "www.public.example")
        .await;
    assert_eq!(got, Ok(vec![http("fd00:2::1", 3128), PacProxy::Direct]));
}

#[tokio::test]
async fn every_helper_function_answers_as_specified() {
    // The probe PAC evaluates the URL as an expression: DIRECT means it was exactly `true`.
    let probe = "function FindProxyForURL(url, host) { \
                 return eval(url) === true ? 'DIRECT' : 'PROXY failed:1'; }";
    let pac = PacEngine::new(
        probe.into(),
        options(Arc::new(FakeNetwork::corporate()), thursday_night()),
    )
    .expect("probe loads");
    let truths = [
        r#"isPlainHostName("wiki") && !isPlainHostName("a.b") && !isPlainHostName("::1")"#,
        r#"dnsDomainIs("www.netscape.com", ".netscape.com") && !dnsDomainIs("www", ".netscape.com")"#,
        r#"dnsDomainIs("WWW.Netscape.COM", ".netscape.com")"#,
        r#"localHostOrDomainIs("www.partner.example", "www.partner.example")"#,
        r#"localHostOrDomainIs("www", "www.partner.example")"#,
        r#"!localHostOrDomainIs("www.other.example", "www.partner.example")"#,
        r#"!localHostOrDomainIs("home", "www.partner.example")"#,
        r#"isResolvable("app.corp.example") && !isResolvable("nowhere.example")"#,
        r#"!isResolvable("v6only.example") && isResolvableEx("v6only.example")"#,
        r#"!isResolvableEx("nowhere.example")"#,
        r#"isInNet("app.corp.example", "10.0.0.0", "255.0.0.0")"#,
        r#"!isInNet("app.corp.example", "10.2.0.0", "255.255.0.0")"#,
        r#"isInNet("192.0.2.7", "192.0.2.0", "255.255.255.0")"#,
        r#"!isInNet("nowhere.example", "0.0.0.0", "0.0.0.0")"#,
        r#"isInNetEx("dual.example", "fd00:1::/32") && isInNetEx("dual.example", "192.0.2.0/24")"#,
        r#"!isInNetEx("dual.example", "10.0.0.0/8")"#,
        r#"dnsResolve("dual.example") === "192.0.2.7""#,
        r#"dnsResolve("v6only.example") === null && dnsResolve("nowhere.example") === null"#,
        r#"dnsResolve("10.1.1.1") === "10.1.1.1""#,
        r#"dnsResolveEx("dual.example") === "fd00:1::6;192.0.2.7""#,
        r#"dnsResolveEx("nowhere.example") === """#,
        r#"myIpAddress() === "127.0.0.1" && myIpAddressEx() === "127.0.0.1""#,
        r#"dnsDomainLevels("www") === 0 && dnsDomainLevels("a.b.c") === 2"#,
        r#"shExpMatch("http://home.netscape.com/people/ari/index.html", "*/ari/*")"#,
        r#"!shExpMatch("http://home.netscape.com/people/montulli/index.html", "*/ari/*")"#,
        r#"shExpMatch("a.b", "?.?") && !shExpMatch("a.b", "a") && !shExpMatch("axb", "a.b")"#,
        r#"sortIpAddressList("10.0.0.2;fd00::1;10.0.0.1") === "fd00::1;10.0.0.1;10.0.0.2""#,
        r#"sortIpAddressList("10.0.0.1;not-an-ip") === false"#,
        r#"getClientVersion() === "1.0""#,
        r#"convert_addr("10.0.0.1") === 167772161"#,
        r#"alert("hello from the PAC") === undefined"#,
        r#"!weekdayRange("XYZ") && !dateRange() && !timeRange() && !dateRange(1, 2, 3)"#,
    ];
    for expression in truths {
        let got = pac.find_proxy(expression, "probe").await;
        assert_eq!(got, Ok(vec![PacProxy::Direct]), "{expression}");
    }
}

#[tokio::test]
async fn dns_is_asked_once_per_call_and_never_for_literals() {
    let network = Arc::new(FakeNetwork::corporate());
    let script = "function FindProxyForURL(url, host) { \
                  if (isInNet(host, '10.0.0.0', '255.0.0.0')) return 'DIRECT'; \
                  if (isInNet(host, '172.16.0.0', '255.240.0.0')) return 'DIRECT'; \
                  if (dnsResolve(host) === null) return 'DIRECT'; \
                  return isResolvable(host) ? 'PROXY p:1' : 'DIRECT'; }";
    let pac = PacEngine::new(
        script.into(),
        options(Arc::clone(&network), thursday_night()),
    )
    .expect("loads");
    let got = pac
        .find_proxy("http://www.public.example/", "www.public.example")
        .await;
    assert_eq!(got, Ok(vec![http("p", 1)]));
    assert_eq!(network.lookups_of("www.public.example"), 1);
    pac.find_proxy("http://192.0.2.1/", "192.0.2.1")
        .await
        .expect("literal");
    assert_eq!(network.lookups_of("192.0.2.1"), 0);
}

#[tokio::test]
async fn results_are_cached_per_origin_until_cleared() {
    let script = "var n = 0; function FindProxyForURL(url, host) { n++; return 'PROXY p:' + n; }";
    let mut opts = options(Arc::new(FakeNetwork::default()), thursday_night());
    opts.cache_ttl = Duration::from_secs(3600);
    let pac = PacEngine::new(script.into(), opts).expect("loads");
    let first = pac.find_proxy("http://a.example/one", "a.example").await;
    assert_eq!(first, Ok(vec![http("p", 1)]));
    let same_origin = pac.find_proxy("http://a.example/two?x", "a.example").await;
    assert_eq!(same_origin, Ok(vec![http("p", 1)]));
    let other_scheme = pac.find_proxy("https://a.example/", "a.example").await;
    assert_eq!(other_scheme, Ok(vec![http("p", 2)]));
    pac.clear_cache();
    let after_clear = pac.find_proxy("http://a.example/one", "a.example").await;
    assert_eq!(after_clear, Ok(vec![http("p", 3)]));

    let mut opts = options(Arc::new(FakeNetwork::default()), thursday_night());
    opts.cache_ttl = Duration::ZERO;
    let uncached = PacEngine::new(script.into(), opts).expect("loads");
    uncached
        .find_proxy("http://a.example/", "a.example")
        .await
        .expect("1");
    let again = uncached.find_proxy("http://a.example/", "a.example").await;
    assert_eq!(again, Ok(vec![http("p", 2)]));
}

#[tokio::test]
async fn script_failures_are_typed() {
    let cases = [
        ("throw new Error('boom')", "Script"),
        ("return 42", "NotAString"),
        ("return undefined", "NotAString"),
        ("return 'PROXY a:1; BOGUS b'", "BadResult"),
    ];
    for (body, want) in cases {
        let script = format!("function FindProxyForURL(url, host) {{ {body}; }}");
        let pac = PacEngine::new(
            script,
            options(Arc::new(FakeNetwork::default()), thursday_night()),
        )
        .expect("loads");
        let got = pac.find_proxy("http://x.example/", "x.example").await;
        let kind = match &got {
            Err(PacError::Script { message }) => {
                assert!(message.contains("boom"), "{message}");
                "Script"
            }
            Err(PacError::NotAString { .. }) => "NotAString",
            Err(PacError::BadResult(_)) => "BadResult",
            other => panic!("{body}: unexpected {other:?}"),
        };
        assert_eq!(kind, want, "{body}");
    }
}

#[tokio::test]
async fn many_concurrent_callers_are_all_answered() {
    let pac = Arc::new(engine(
        "corp.pac",
        options(Arc::new(FakeNetwork::corporate()), thursday_night()),
    ));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let pac = Arc::clone(&pac);
        tasks.push(tokio::spawn(async move {
            let host = format!("h{i}.intranet.example");
            pac.find_proxy(&format!("http://{host}/"), &host).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), Ok(vec![PacProxy::Direct]));
    }
}

#[tokio::test]
async fn the_served_pac_points_at_cntlm_then_direct() {
    let script = served_pac("127.0.0.1:3128");
    let pac = PacEngine::new(
        script,
        options(Arc::new(FakeNetwork::default()), thursday_night()),
    )
    .expect("served PAC loads");
    let got = pac
        .find_proxy("https://www.example.com/", "www.example.com")
        .await;
    assert_eq!(got, Ok(vec![http("127.0.0.1", 3128), PacProxy::Direct]));
    let v6 = PacEngine::new(
        served_pac("[::1]:3128"),
        options(Arc::new(FakeNetwork::default()), thursday_night()),
    )
    .expect("loads");
    let got = v6.find_proxy("http://a/", "a").await;
    assert_eq!(got, Ok(vec![http("::1", 3128), PacProxy::Direct]));
}

#[tokio::test]
async fn deep_recursion_is_a_script_error_not_a_crash() {
    let script = "function down(n) { return down(n + 1) + 1; } \
                  function FindProxyForURL(url, host) { \
                  if (host == 'deep') return down(0); return 'DIRECT'; }";
    let pac = PacEngine::new(
        script.into(),
        options(Arc::new(FakeNetwork::default()), thursday_night()),
    )
    .expect("loads");
    let got = pac.find_proxy("http://deep/", "deep").await;
    match got {
        Err(PacError::Script { message }) => assert!(message.contains("stack"), "{message}"),
        other => panic!("expected a stack overflow error, got {other:?}"),
    }
    assert_eq!(
        pac.find_proxy("http://x/", "x").await,
        Ok(vec![PacProxy::Direct])
    );
}

#[tokio::test]
async fn a_panicking_resolver_fails_one_call_and_the_engine_survives() {
    let script = "function FindProxyForURL(url, host) { \
                  return isResolvable(host) ? 'PROXY p:1' : 'DIRECT'; }";
    let pac = PacEngine::new(
        script.into(),
        options(Arc::new(FakeNetwork::corporate()), thursday_night()),
    )
    .expect("loads");
    let got = pac
        .find_proxy("http://panic.example/", "panic.example")
        .await;
    assert!(matches!(got, Err(PacError::Script { .. })), "{got:?}");
    let got = pac
        .find_proxy("http://app.corp.example/", "app.corp.example")
        .await;
    assert_eq!(got, Ok(vec![http("p", 1)]));
}

/// Log lines written by any thread of this test binary (the engine logs from its own thread).
static CAPTURED_LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct CaptureWriter;

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED_LOG
            .lock()
            .expect("log lock")
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn alert_goes_to_the_log() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| CaptureWriter)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
    });
    let script =
        "function FindProxyForURL(url, host) { alert('checking ' + host); return 'DIRECT'; }";
    let pac = PacEngine::new(
        script.into(),
        options(Arc::new(FakeNetwork::default()), thursday_night()),
    )
    .expect("loads");
    pac.find_proxy("http://alerted.example/", "alerted.example")
        .await
        .expect("direct");
    let log = String::from_utf8_lossy(&CAPTURED_LOG.lock().expect("log lock")).into_owned();
    assert!(
        log.contains("PAC alert: checking alerted.example"),
        "log was: {log}"
    );
}

#[tokio::test]
async fn queued_calls_for_a_looping_origin_cost_one_time_limit() {
    let network = Arc::new(FakeNetwork::corporate());
    let script = "function FindProxyForURL(url, host) { \
                  dnsResolve('count.example'); \
                  if (host == 'loop.example') for (;;) {} \
                  return 'DIRECT'; }";
    let mut opts = options(Arc::clone(&network), thursday_night());
    opts.time_limit = Duration::from_millis(300);
    opts.cache_ttl = Duration::from_secs(3600);
    let pac = Arc::new(PacEngine::new(script.into(), opts).expect("loads"));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let pac = Arc::clone(&pac);
        tasks.push(tokio::spawn(async move {
            pac.find_proxy("http://loop.example/", "loop.example").await
        }));
    }
    for task in tasks {
        let got = task.await.expect("task");
        assert!(matches!(got, Err(PacError::Timeout { .. })), "{got:?}");
    }
    assert_eq!(network.lookups_of("count.example"), 1);
}

#[tokio::test]
async fn a_pac_with_a_byte_order_mark_and_crlf_loads() {
    let script = "\u{feff}function FindProxyForURL(url, host) {\r\n  return \"DIRECT\";\r\n}\r\n";
    let pac = PacEngine::new(
        script.into(),
        options(Arc::new(FakeNetwork::default()), thursday_night()),
    )
    .expect("BOM and CRLF are fine");
    assert_eq!(
        pac.find_proxy("http://a/", "a").await,
        Ok(vec![PacProxy::Direct])
    );
}
