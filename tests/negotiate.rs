//! Negotiate (Kerberos/SPNEGO) tokens from `cntlm::auth::negotiate`, proven against a real MIT
//! KDC and Squid's `negotiate_kerberos_auth` on loopback (DESIGN.md §3, issue 7).
//!
//! The Kerberos library reads its configuration (`KRB5_CONFIG`, `KRB5CCNAME`) from the process
//! environment, which a multi-threaded test binary must not change. So each test starts its
//! own realm, then re-runs this test binary as a child with the realm's environment, selecting
//! the ignored test `in_realm` and naming the case to run in `CNTLM_NEGOTIATE_CASE`.

#[path = "support/kdc.rs"]
mod kdc;

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use cntlm::auth::Password;
use cntlm::auth::negotiate::{self, KerberosCredentials, NegotiateContext, NegotiateError};

/// The service every case authenticates to (Squid's keytab holds `HTTP/localhost`).
const SERVICE: &str = "HTTP@localhost";

/// Runs `case` in a child test process with the realm's environment; returns its output and
/// fails the test when the case failed.
fn run_case(
    kdc: &kdc::Kdc,
    case: &str,
    ccache: &std::path::Path,
    extra: &[(&str, String)],
) -> String {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let output = Command::new(exe)
        .args([
            "in_realm",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(kdc.client_env(ccache))
        .env("CNTLM_NEGOTIATE_CASE", case)
        .env("CNTLM_TEST_REALM", kdc::REALM)
        .env("CNTLM_TEST_CLIENT_KEYTAB", &kdc.client_keytab)
        .envs(extra.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("re-running the test binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && text.contains("1 passed"),
        "case {case} failed:\n{text}\n--- kdc.log ---\n{}",
        kdc.log()
    );
    // Shown with --nocapture: the child's own diagnostics.
    eprintln!("{text}");
    text
}

#[test]
fn the_binary_does_not_link_the_kerberos_library() {
    // The GSSAPI library is opened at run time, so cntlm starts where it is not installed.
    let Some(ldd) = kdc::find_program("ldd") else {
        eprintln!("ldd not found; skipping the link check");
        return;
    };
    let out = Command::new(ldd)
        .arg(env!("CARGO_BIN_EXE_cntlm"))
        .output()
        .expect("running ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ldd failed: {text}");
    assert!(!text.contains("gssapi") && !text.contains("krb5"), "{text}");
}

#[test]
fn ticket_from_kinit_gives_a_token_squid_accepts() {
    let Some(kdc) = kdc::Kdc::start() else { return };
    let Some(squid) = kdc::Squid::start(&kdc) else {
        return;
    };
    let origin = kdc::Origin::start();
    let ccache = kdc.dir().join("alice.ccache");
    kdc.kinit(&ccache).expect("kinit alice");

    // Lab self-check: the lab accepts a real client's Negotiate and refuses none at all.
    assert_eq!(
        kdc::proxy_get_status(squid.port, origin.port, None),
        Ok(407)
    );
    let garbage = kdc::proxy_get_status(squid.port, origin.port, Some("Negotiate YWJjZA=="));
    assert_eq!(
        garbage,
        Ok(407),
        "the lab Squid must refuse a token that is not Kerberos"
    );
    let curl = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "30",
        ])
        .args(["--proxy", &format!("http://localhost:{}", squid.port)])
        .args(["--proxy-negotiate", "-U", ":"])
        .arg(format!("http://127.0.0.1:{}/", origin.port))
        .envs(kdc.client_env(&ccache))
        .output()
        .expect("running curl");
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "200",
        "curl --proxy-negotiate through the lab Squid: {}\n{}",
        String::from_utf8_lossy(&curl.stderr),
        squid.log()
    );

    let squid_port = ("CNTLM_TEST_SQUID_PORT", squid.port.to_string());
    let origin_port = ("CNTLM_TEST_ORIGIN_PORT", origin.port.to_string());
    run_case(
        &kdc,
        "default_cache",
        &ccache,
        &[squid_port.clone(), origin_port.clone()],
    );
    // The same ticket named explicitly, with KRB5CCNAME pointing at an empty cache.
    let named = ("CNTLM_TEST_CCACHE", format!("FILE:{}", ccache.display()));
    run_case(
        &kdc,
        "named_cache",
        &kdc.dir().join("empty.ccache"),
        &[named, squid_port, origin_port],
    );
}

#[test]
fn keytab_credentials_give_a_token_squid_accepts() {
    let Some(kdc) = kdc::Kdc::start() else { return };
    let Some(squid) = kdc::Squid::start(&kdc) else {
        return;
    };
    let origin = kdc::Origin::start();
    run_case(
        &kdc,
        "keytab",
        &kdc.dir().join("empty.ccache"),
        &[
            ("CNTLM_TEST_SQUID_PORT", squid.port.to_string()),
            ("CNTLM_TEST_ORIGIN_PORT", origin.port.to_string()),
        ],
    );
}

#[test]
fn password_credentials_give_a_token_squid_accepts() {
    let Some(kdc) = kdc::Kdc::start() else { return };
    let Some(squid) = kdc::Squid::start(&kdc) else {
        return;
    };
    let origin = kdc::Origin::start();
    run_case(
        &kdc,
        "password",
        &kdc.dir().join("empty.ccache"),
        &[
            ("CNTLM_TEST_SQUID_PORT", squid.port.to_string()),
            ("CNTLM_TEST_ORIGIN_PORT", origin.port.to_string()),
        ],
    );
}

#[test]
fn no_ticket_and_no_password_is_a_clear_error() {
    let Some(kdc) = kdc::Kdc::start() else { return };
    run_case(&kdc, "no_credentials", &kdc.dir().join("empty.ccache"), &[]);
}

#[test]
fn a_whole_exchange_completes_with_the_acceptors_last_token() {
    let Some(kdc) = kdc::Kdc::start() else { return };
    if let Err(why) = kdc::ensure_acceptor() {
        kdc::skip_or_fail(&why);
        return;
    }
    let ccache = kdc.dir().join("alice.ccache");
    kdc.kinit(&ccache).expect("kinit alice");
    run_case(&kdc, "two_legs", &ccache, &[]);
}

#[test]
fn protocol_misuse_is_refused_without_a_token() {
    let Some(kdc) = kdc::Kdc::start() else { return };
    let ccache = kdc.dir().join("alice.ccache");
    kdc.kinit(&ccache).expect("kinit alice");
    run_case(&kdc, "misuse", &ccache, &[]);
}

// ----- the cases, run inside the child process -----

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent test"))
}

/// Sends `token` to the lab Squid as `Proxy-Authorization: Negotiate <base64>`.
fn squid_status(token: &[u8]) -> Result<u16, String> {
    let value = format!(
        "Negotiate {}",
        base64::engine::general_purpose::STANDARD.encode(token)
    );
    kdc::proxy_get_status(
        env("CNTLM_TEST_SQUID_PORT").parse().expect("a port"),
        env("CNTLM_TEST_ORIGIN_PORT").parse().expect("a port"),
        Some(&value),
    )
}

/// Asserts the lab Squid lets a request with `token` through to the origin.
fn assert_squid_accepts(token: &[u8]) {
    assert_eq!(squid_status(token), Ok(200), "Squid's verdict on our token");
}

/// The first token of a fresh context: an RFC 2743 §3.1 initial context token (tag 0x60)
/// carrying SPNEGO's NegTokenInit, not yet complete (SPNEGO waits for the acceptor's answer).
fn first_token(creds: KerberosCredentials) -> Vec<u8> {
    let mut ctx = NegotiateContext::new(SERVICE, creds).expect("a context");
    let step = ctx.step(None).expect("a first token");
    let token = step.token.expect("the first leg always has a token");
    assert_eq!(token[0], 0x60, "GSS-API initial context token framing");
    // The SPNEGO OID 1.3.6.1.5.5.2 follows the framing.
    assert!(
        token
            .windows(8)
            .any(|w| w == b"\x06\x06\x2b\x06\x01\x05\x05\x02")
    );
    assert!(!step.complete);
    assert!(!ctx.is_complete());
    token
}

/// Hands `token` to MIT's acceptor (`tests/support/spnego_accept.py`) and returns its answer.
fn acceptor_answer(token: &[u8]) -> String {
    use std::io::{BufRead, Write};
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/spnego_accept.py"
    );
    let mut child = Command::new(kdc::SYSTEM_PYTHON)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("starting the acceptor");
    let mut stdin = child.stdin.take().expect("piped stdin");
    writeln!(
        stdin,
        "{}",
        base64::engine::general_purpose::STANDARD.encode(token)
    )
    .expect("writing to the acceptor");
    drop(stdin);
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("reading the acceptor");
    let _ = child.wait();
    line.trim().to_owned()
}

#[test]
#[ignore = "run by the other tests in a child process with a test realm's environment"]
fn in_realm() {
    assert!(
        negotiate::is_available(),
        "{:?}",
        negotiate::unavailable_reason()
    );
    match env("CNTLM_NEGOTIATE_CASE").as_str() {
        "default_cache" => {
            let token = first_token(KerberosCredentials::DefaultCache);
            assert_squid_accepts(&token);
            // The lab refuses a replayed token (as real acceptors do), so cntlm must never
            // resend one: the proof that each connection gets a fresh context.
            assert_eq!(
                squid_status(&token),
                Ok(407),
                "a replayed token must be refused"
            );
            // A second context makes a fresh authenticator; Squid refuses replays, so each
            // connection needs its own.
            let again = first_token(KerberosCredentials::DefaultCache);
            assert_ne!(token, again);
            assert_squid_accepts(&again);
        }
        "named_cache" => {
            assert!(matches!(
                NegotiateContext::new(SERVICE, KerberosCredentials::DefaultCache),
                Err(NegotiateError::NoCredentials { .. })
            ));
            let token = first_token(KerberosCredentials::Cache(env("CNTLM_TEST_CCACHE")));
            assert_squid_accepts(&token);
        }
        "keytab" => {
            let path = PathBuf::from(env("CNTLM_TEST_CLIENT_KEYTAB"));
            let principal = format!("{}@{}", kdc::ROBOT, env("CNTLM_TEST_REALM"));
            let named = KerberosCredentials::Keytab {
                path: path.clone(),
                principal: Some(principal),
            };
            assert_squid_accepts(&first_token(named.clone()));
            // Contexts from the same keytab share their tickets; each token is still new.
            assert_squid_accepts(&first_token(named));
            let first_entry = KerberosCredentials::Keytab {
                path,
                principal: None,
            };
            assert_squid_accepts(&first_token(first_entry));
        }
        "password" => {
            let creds = KerberosCredentials::Password {
                user: kdc::USER.into(),
                password: Password::new(kdc::PASSWORD),
            };
            assert_squid_accepts(&first_token(creds));
            let wrong = KerberosCredentials::Password {
                user: kdc::USER.into(),
                password: Password::new("not-the-password"),
            };
            let err = NegotiateContext::new(SERVICE, wrong)
                .and_then(|mut ctx| ctx.step(None))
                .expect_err("a wrong password gets no token");
            assert!(
                matches!(
                    err,
                    NegotiateError::LoginFailed { .. } | NegotiateError::NoCredentials { .. }
                ),
                "{err:?}"
            );
            assert!(!err.to_string().contains("not-the-password"));
            eprintln!("wrong password: {err}");
        }
        "two_legs" => {
            let mut ctx = NegotiateContext::new(SERVICE, KerberosCredentials::DefaultCache)
                .expect("a context");
            let first = ctx.step(None).expect("a first token");
            let answer = acceptor_answer(first.token.as_deref().expect("a first token"));
            let (verdict, token, initiator) = match answer.split(' ').collect::<Vec<_>>()[..] {
                [verdict, token, initiator] => (verdict, token, initiator),
                _ => panic!("acceptor said {answer:?}"),
            };
            assert_eq!(verdict, "COMPLETE", "{answer}");
            assert_eq!(
                initiator,
                format!("{}@{}", kdc::USER, env("CNTLM_TEST_REALM"))
            );
            // SPNEGO's last leg: the acceptor's NegTokenResp (accept-completed) completes our
            // side without another token from us (RFC 4178 §4.2.2).
            assert_ne!(token, "-", "the acceptor sends its NegTokenResp");
            let last = base64::engine::general_purpose::STANDARD
                .decode(token)
                .expect("base64 from the acceptor");
            let step = ctx.step(Some(&last)).expect("the last leg");
            assert!(step.complete && ctx.is_complete(), "{step:?}");
            assert_eq!(step.token, None);
            assert!(matches!(
                ctx.step(Some(&last)),
                Err(NegotiateError::AlreadyComplete)
            ));
        }
        "no_credentials" => {
            let err = NegotiateContext::new(SERVICE, KerberosCredentials::DefaultCache)
                .expect_err("no ticket, no keytab, no password");
            assert!(
                matches!(err, NegotiateError::NoCredentials { .. }),
                "{err:?}"
            );
            let text = err.to_string();
            eprintln!("no credentials: {text}");
            assert!(
                text.contains("no kerberos credentials") && text.contains("kinit"),
                "{text}"
            );
            // The Kerberos mechanism's own reason names the cache it looked in.
            assert!(text.contains("empty.ccache"), "{text}");
            assert!(
                !text.contains('\0'),
                "C string terminators leaked: {text:?}"
            );
        }
        "misuse" => {
            let mut ctx = NegotiateContext::new(SERVICE, KerberosCredentials::DefaultCache)
                .expect("a context");
            ctx.step(None).expect("a first token");
            // The exchange is waiting for the acceptor: continuing without its token is refused.
            assert!(matches!(
                ctx.step(None),
                Err(NegotiateError::MissingServerToken)
            ));
            // A token that is not SPNEGO fails the context, which then stays failed.
            assert!(ctx.step(Some(b"not a negotiate token")).is_err());
            assert!(matches!(
                ctx.step(Some(b"x")),
                Err(NegotiateError::AlreadyFailed)
            ));
            // An unknown service has no ticket to be had: a clear error, no token.
            let mut unknown = NegotiateContext::new(
                "HTTP@no-such-host.invalid",
                KerberosCredentials::DefaultCache,
            )
            .expect("credentials are there; the service is looked up on the first step");
            assert!(unknown.step(None).is_err());
        }
        other => panic!("unknown case {other}"),
    }
}
