//! Issue 4 §4: `NTLMToBasic yes` (`-B`) against the real lab. Clients bring their own account
//! in a Basic header; cntlm authenticates to the NTLM Squid as that user. The proof that
//! authenticated parent connections never cross users: Squid's access log names the user it
//! authenticated for every request it forwarded (the native log format's user field), and
//! each request carries its sender in its URL path (Squid strips queries from its log), so
//! every line can be checked.

#[path = "support/lab.rs"]
mod lab;
#[path = "support/lab_cntlm.rs"]
mod lab_cntlm;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use lab::{ALICE, BOB_NON_ASCII, LabUser, Origin, ParentAuth, Squid};
use lab_cntlm::Cntlm;

const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// One keep-alive client connection to cntlm.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(cntlm: &Cntlm) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", cntlm.port)).expect("connect to cntlm");
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// `GET url` with `Proxy-Authorization: Basic <login>` when given; (status, headers, body).
    fn get(&mut self, url: &str, login: Option<&str>) -> (u16, String, Vec<u8>) {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .expect("url has a host");
        let mut req = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n");
        if let Some(login) = login {
            req.push_str(&format!(
                "Proxy-Authorization: Basic {}\r\n",
                BASE64.encode(login)
            ));
        }
        req.push_str("\r\n");
        self.reader
            .get_mut()
            .write_all(req.as_bytes())
            .expect("send request");
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read head");
            assert!(n > 0, "cntlm closed before answering; head so far: {head}");
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("the answers here have a Content-Length");
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("read body");
        (status, head, body)
    }
}

fn login(user: &LabUser) -> String {
    format!("{}\\{}:{}", user.domain, user.user, user.password)
}

fn start() -> (Origin, Squid, Cntlm) {
    let origin = Origin::start();
    let squid = Squid::start(ParentAuth::NtlmV2Only);
    let cntlm = Cntlm::start(&format!(
        "Proxy 127.0.0.1:{}\nNTLMToBasic yes\nDomain {}\n",
        squid.port, ALICE.domain
    ));
    (origin, squid, cntlm)
}

#[test]
fn two_users_interleaved_never_share_a_parent_connection() {
    let (origin, squid, cntlm) = start();
    let users = [ALICE, BOB_NON_ASCII];
    let mut clients = [Client::connect(&cntlm), Client::connect(&cntlm)];
    for n in 0..100 {
        let who = n % 2;
        if n % 10 == who {
            // Now and then a new client connection, so the parent pool is consulted afresh.
            clients[who] = Client::connect(&cntlm);
        }
        let user = &users[who];
        let url = origin.http_url(&format!("/echo/{n}/sender-{}", user.user));
        let (status, head, body) = clients[who].get(&url, Some(&login(user)));
        assert_eq!(
            status,
            200,
            "request {n} as {}: {head}{}\n{}\n{}",
            user.user,
            String::from_utf8_lossy(&body),
            squid.helper_log(),
            cntlm.log()
        );
    }
    // Every forwarded request was authenticated as the user who sent it.
    let forwarded = |log: &str| {
        log.lines()
            .filter(|l| l.contains("/sender-") && !l.contains("/407 "))
            .count()
    };
    let log = squid.access_log_when(Duration::from_secs(10), |l| forwarded(l) >= 100);
    let mut checked = 0;
    for line in log.lines().filter(|l| l.contains("/sender-")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (url, squid_user) = (fields[6], fields[7]);
        if fields[3].ends_with("/407") {
            continue; // a handshake's challenge, not a forwarded request
        }
        let sender = url
            .split("sender-")
            .nth(1)
            .expect("every test URL names its sender");
        assert!(
            squid_user.to_ascii_lowercase().ends_with(sender),
            "{url} was sent by {sender} but Squid authenticated it as {squid_user}\n{log}"
        );
        checked += 1;
    }
    assert_eq!(checked, 100, "every request is in the access log\n{log}");
    // Each user authenticated with its own Type 3s, none refused.
    let accepted = squid.accepted();
    for user in ["alice", "bob"] {
        assert!(
            accepted
                .iter()
                .any(|l| l.contains(&format!("user={}", user))
                    || l.to_ascii_lowercase().contains(user)),
            "no Type 3 for {user}: {}",
            squid.helper_log()
        );
    }
    assert!(squid.rejected().is_empty(), "{}", squid.helper_log());
    assert!(
        !cntlm.log().contains(ALICE.password),
        "a password reached the log"
    );
}

#[test]
fn no_basic_header_gets_cntlms_407() {
    let (origin, _squid, cntlm) = start();
    let mut client = Client::connect(&cntlm);
    let (status, head, _) = client.get(&origin.http_url("/echo"), None);
    assert_eq!(status, 407, "{head}");
    assert!(
        head.contains("Proxy-Authenticate: Basic realm=\"Cntlm Proxy\"\r\n"),
        "{head}"
    );
}

#[test]
fn a_wrong_password_is_refused_without_affecting_the_other_user() {
    let (origin, squid, cntlm) = start();
    let url = origin.http_url("/echo");
    let wrong = format!("{}\\{}:not-the-password", ALICE.domain, ALICE.user);
    for _ in 0..5 {
        let (status, head, _) = Client::connect(&cntlm).get(&url, Some(&wrong));
        assert_eq!(status, 407, "{head}");
    }
    // Lockout protection per account: three Type 3s reached the parent, not five.
    assert_eq!(squid.rejected().len(), 3, "{}", squid.helper_log());
    let (status, head, _) = Client::connect(&cntlm).get(&url, Some(&login(&BOB_NON_ASCII)));
    assert_eq!(status, 200, "{head}\n{}", squid.helper_log());
    let (status, head, _) = Client::connect(&cntlm).get(&url, Some(&login(&ALICE)));
    assert_eq!(status, 200, "the right password is a new attempt: {head}");
}

#[test]
fn connect_tunnels_authenticate_as_the_client_too() {
    let (origin, squid, cntlm) = start();
    let cert = origin.cert.display().to_string();
    let got = lab_cntlm::curl(
        Some(&cntlm.url()),
        &[
            "--proxy-basic",
            "--proxy-user",
            &login(&BOB_NON_ASCII),
            "--cacert",
            &cert,
            &origin.https_url("/echo"),
        ],
    );
    assert_eq!(got.status, 200, "{}\n{}", got.stderr, squid.helper_log());
    // Squid logs a CONNECT once the tunnel has closed, after curl is already done.
    let forwarded = |l: &str| l.contains(" CONNECT ") && !l.contains("/407 ");
    let log = squid.access_log_when(Duration::from_secs(10), |log| log.lines().any(forwarded));
    let connect = log
        .lines()
        .find(|l| forwarded(l))
        .unwrap_or_else(|| panic!("no CONNECT forwarded:\n{log}"));
    assert_eq!(connect.split_whitespace().nth(7), Some("bob"), "{connect}");
}
