//! Issue 7, the proof: cntlm authenticating to a real Squid with Kerberos (Negotiate, verified by
//! `negotiate_kerberos_auth` against a throwaway MIT realm on loopback), choosing among
//! Negotiate, NTLM and Basic under `Auth Auto`, with real curl as the client. curl never has
//! credentials of its own; cntlm runs with the realm's environment (`Kdc::client_env`) and
//! addresses the parent as `localhost`, so it asks for `HTTP/localhost`, the keytab's principal.
//! Every process is started on OS-assigned ports and killed by PID when its guard drops.

#[path = "support/kdc.rs"]
mod kdc;
#[path = "support/lab.rs"]
mod lab;
#[path = "support/lab_cntlm.rs"]
mod lab_cntlm;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lab::{ALICE, Origin, ParentAuth};
use lab_cntlm::{Cntlm, curl};

/// A Squid log line per request: method, URL, status and the `Proxy-Authorization` scheme
/// (the first word of the header, `-` when absent), to count tokens.
const AUTH_LOGFORMAT: &str = "logformat authscheme %rm %ru %>Hs %{Proxy-Authorization}>h";

/// The realm, a Negotiate-only Squid (with the token log), and the lab's origin.
struct Realm {
    kdc: kdc::Kdc,
    squid: kdc::Squid,
    origin: Origin,
    /// Holds the NTLM helper's files when the Squid offers NTLM too.
    _ntlm_dir: Option<tempfile::TempDir>,
    /// Holds the token log (writable by Squid's run-time user).
    logs: tempfile::TempDir,
    ntlm_log: Option<PathBuf>,
}

impl Realm {
    /// `None` (after `skip_or_fail`) when the Kerberos lab cannot run here.
    fn start(with_ntlm: bool) -> Option<Realm> {
        let kdc = kdc::Kdc::start()?;
        let (ntlm_dir, ntlm_lines, ntlm_log) = if with_ntlm {
            let (dir, lines, log) = ntlm_helper();
            (Some(dir), lines, Some(log))
        } else {
            (None, String::new(), None)
        };
        let logs = lab::world_writable_tempdir("cntlm-krb-logs");
        let extra = format!(
            "{ntlm_lines}{AUTH_LOGFORMAT}\naccess_log stdio:{}/auth.log authscheme\n",
            logs.path().display()
        );
        let squid = kdc::Squid::start_with(&kdc, &extra)?;
        Some(Realm {
            kdc,
            squid,
            origin: Origin::start(),
            _ntlm_dir: ntlm_dir,
            logs,
            ntlm_log,
        })
    }

    /// cntlm in front of the Squid (as `localhost`) with `config` lines, in the realm's
    /// environment with `ccache` as its ticket cache.
    fn cntlm(&self, config: &str, ccache: &Path) -> Cntlm {
        Cntlm::start_with_env(
            &format!("Proxy localhost:{}\n{config}", self.squid.port),
            &self.kdc.client_env(ccache),
        )
    }

    /// `(method, url, status, scheme)` of each request Squid logged.
    fn requests(&self) -> Vec<(String, String, String, String)> {
        std::fs::read_to_string(self.logs.path().join("auth.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let get = |i: usize| f.get(i).copied().unwrap_or("").to_string();
                // Squid logs the header URL-escaped: `Negotiate%20YII...`.
                let scheme = get(3).split(['%', ' ']).next().unwrap_or("").to_string();
                (get(0), get(1), get(2), scheme)
            })
            // `-`: the lab's readiness check, a connection without a request.
            .filter(|r| r.0 != "-")
            .collect()
    }

    /// Requests that carried a `Negotiate` token.
    fn negotiate_tokens(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.3.eq_ignore_ascii_case("Negotiate"))
            .count()
    }

    /// What the NTLM helper judged (`KK` lines), when there is one.
    fn ntlm_checks(&self) -> Vec<String> {
        self.ntlm_log
            .as_ref()
            .map(|p| lab::read_lossy(p))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("KK"))
            .map(str::to_string)
            .collect()
    }

    fn diagnostics(&self, cntlm: &Cntlm) -> String {
        format!(
            "--- requests ---\n{:#?}\n--- cntlm ---\n{}\n--- squid ---\n{}\n--- kdc ---\n{}",
            self.requests(),
            cntlm.log(),
            self.squid.log(),
            self.kdc.log()
        )
    }
}

/// The lab's NTLM helper (NTLMv2 only) in a directory Squid's user can read: its files, the
/// `auth_param ntlm` lines, and its decision log.
fn ntlm_helper() -> (tempfile::TempDir, String, PathBuf) {
    let dir = lab::world_writable_tempdir("cntlm-krb-ntlm");
    let d = dir.path();
    let script = d.join("ntlm_auth_helper.py");
    std::fs::copy(lab::lab_script("ntlm_auth_helper.py"), &script).expect("copy the helper");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let users = d.join("users");
    std::fs::write(
        &users,
        format!("{}:{}:{}\n", ALICE.domain, ALICE.user, ALICE.password),
    )
    .expect("write users");
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let log = d.join("helper.log");
    let lines = format!(
        "auth_param ntlm program {py} {script} --users {users} --log {log} --pylib {pylib} \
         --lm-compat 5 --challenge ad\nauth_param ntlm children 4 startup=1 idle=1\n",
        py = lab::SYSTEM_PYTHON,
        script = script.display(),
        users = users.display(),
        log = log.display(),
        pylib = lab::LAB_PYLIB,
    );
    (dir, lines, log)
}

/// A ticket cache filled by `kinit alice`.
fn ticket(realm: &Realm) -> PathBuf {
    let ccache = realm.kdc.dir().join("alice.ccache");
    realm.kdc.kinit(&ccache).expect("kinit alice");
    ccache
}

/// A ticket cache path with nothing in it.
fn no_ticket(realm: &Realm) -> PathBuf {
    realm.kdc.dir().join("empty.ccache")
}

#[test]
fn get_post_and_connect_with_a_ticket_from_kinit() {
    let Some(realm) = Realm::start(false) else {
        return;
    };
    let cntlm = realm.cntlm("Auth Negotiate\n", &ticket(&realm));
    let got = curl(Some(&cntlm.url()), &[&realm.origin.http_url("/echo?q=1")]);
    assert_eq!(
        got.status,
        200,
        "{}\n{}",
        got.stderr,
        realm.diagnostics(&cntlm)
    );
    assert_eq!(got.echo()["method"], "GET");

    let post = curl(
        Some(&cntlm.url()),
        &[
            "--data-binary",
            "hello kerberos",
            &realm.origin.http_url("/echo"),
        ],
    );
    assert_eq!(
        post.status,
        200,
        "{}\n{}",
        post.stderr,
        realm.diagnostics(&cntlm)
    );
    assert_eq!(post.echo()["method"], "POST");

    let cert = realm.origin.cert.to_string_lossy().into_owned();
    let tls = curl(
        Some(&cntlm.url()),
        &["--cacert", &cert, &realm.origin.https_url("/echo")],
    );
    assert_eq!(
        tls.status,
        200,
        "{}\n{}",
        tls.stderr,
        realm.diagnostics(&cntlm)
    );
    let requests = realm.requests();
    assert!(
        requests.iter().any(|r| r.0 == "CONNECT" && r.2 == "200"),
        "{requests:#?}"
    );
    assert!(
        requests.iter().any(|r| r.0 == "POST" && r.2 == "200"),
        "{requests:#?}"
    );
    assert!(
        realm.negotiate_tokens() >= 1,
        "{}",
        realm.diagnostics(&cntlm)
    );
    // No body-less copy of the POST reached the origin: the token rode on the POST itself.
    assert_eq!(
        requests.iter().filter(|r| r.0 == "POST").count(),
        1,
        "{requests:#?}"
    );
}

#[test]
fn a_keytab_needs_no_ticket_and_no_password() {
    let Some(realm) = Realm::start(false) else {
        return;
    };
    let config = format!(
        "Auth GSS\nKerberosKeytab {}\nKerberosPrincipal {}@{}\n",
        realm.kdc.client_keytab.display(),
        kdc::ROBOT,
        kdc::REALM
    );
    let cntlm = realm.cntlm(&config, &no_ticket(&realm));
    let got = curl(Some(&cntlm.url()), &[&realm.origin.http_url("/echo")]);
    assert_eq!(
        got.status,
        200,
        "{}\n{}",
        got.stderr,
        realm.diagnostics(&cntlm)
    );
    assert_eq!(realm.negotiate_tokens(), 1, "{}", realm.diagnostics(&cntlm));
}

#[test]
fn a_password_alone_obtains_tickets() {
    let Some(realm) = Realm::start(false) else {
        return;
    };
    let config = format!(
        "Auth Negotiate\nUsername {}\nPassword {}\n",
        kdc::USER,
        kdc::PASSWORD
    );
    let cntlm = realm.cntlm(&config, &no_ticket(&realm));
    let got = curl(Some(&cntlm.url()), &[&realm.origin.http_url("/echo")]);
    assert_eq!(
        got.status,
        200,
        "{}\n{}",
        got.stderr,
        realm.diagnostics(&cntlm)
    );
    assert!(!cntlm.log().contains(kdc::PASSWORD), "{}", cntlm.log());
}

#[test]
fn no_ticket_and_no_password_is_a_clear_407() {
    let Some(realm) = Realm::start(false) else {
        return;
    };
    let cntlm = realm.cntlm("Auth Negotiate\n", &no_ticket(&realm));
    let got = curl(Some(&cntlm.url()), &[&realm.origin.http_url("/echo")]);
    assert_eq!(
        got.status,
        407,
        "{}\n{}",
        got.stderr,
        realm.diagnostics(&cntlm)
    );
    let body = String::from_utf8_lossy(&got.body);
    assert!(
        body.contains("Negotiate") && body.contains("kinit"),
        "the client is told what is missing: {body}"
    );
    assert_eq!(realm.negotiate_tokens(), 0, "{:#?}", realm.requests());
}

#[test]
fn pooled_connections_are_reused_without_new_tokens() {
    let Some(realm) = Realm::start(false) else {
        return;
    };
    let cntlm = realm.cntlm("Auth Negotiate\n", &ticket(&realm));
    for i in 0..3 {
        let got = curl(
            Some(&cntlm.url()),
            &[&realm.origin.http_url(&format!("/echo?n={i}"))],
        );
        assert_eq!(
            got.status,
            200,
            "{}\n{}",
            got.stderr,
            realm.diagnostics(&cntlm)
        );
    }
    let requests = realm.requests();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    assert_eq!(
        realm.negotiate_tokens(),
        1,
        "one token authenticated the pooled connection: {requests:#?}"
    );
}

#[test]
fn auto_picks_negotiate_from_a_parent_offering_negotiate_and_ntlm() {
    let Some(realm) = Realm::start(true) else {
        return;
    };
    let config = format!(
        "Auth Auto\nUsername {}\nDomain {}\nPassword {}\n",
        ALICE.user, ALICE.domain, ALICE.password
    );
    let cntlm = realm.cntlm(&config, &ticket(&realm));
    for _ in 0..2 {
        let got = curl(Some(&cntlm.url()), &[&realm.origin.http_url("/echo")]);
        assert_eq!(
            got.status,
            200,
            "{}\n{}",
            got.stderr,
            realm.diagnostics(&cntlm)
        );
    }
    assert_eq!(realm.negotiate_tokens(), 1, "{}", realm.diagnostics(&cntlm));
    assert!(realm.ntlm_checks().is_empty(), "{:?}", realm.ntlm_checks());
}

#[test]
fn auto_falls_back_to_ntlm_when_kerberos_fails() {
    let Some(realm) = Realm::start(true) else {
        return;
    };
    // No ticket, and the NTLM lab password is not alice's Kerberos password: Kerberos fails
    // (the KDC refuses the login), NTLM works.
    let config = format!(
        "Auth Auto\nUsername {}\nDomain {}\nPassword {}\n",
        ALICE.user, ALICE.domain, ALICE.password
    );
    let cntlm = realm.cntlm(&config, &no_ticket(&realm));
    for _ in 0..2 {
        let got = curl(Some(&cntlm.url()), &[&realm.origin.http_url("/echo")]);
        assert_eq!(
            got.status,
            200,
            "{}\n{}",
            got.stderr,
            realm.diagnostics(&cntlm)
        );
    }
    let checks = realm.ntlm_checks();
    assert!(
        !checks.is_empty() && checks.iter().all(|l| l.contains("verdict=AF")),
        "{checks:?}\n{}",
        realm.diagnostics(&cntlm)
    );
    assert_eq!(realm.negotiate_tokens(), 0, "{:#?}", realm.requests());
}

#[test]
fn auto_uses_ntlm_with_the_ntlm_lab_parent_even_with_a_ticket() {
    let Some(realm) = Realm::start(false) else {
        return;
    };
    let squid = lab::Squid::start(ParentAuth::NtlmV2Only);
    let config = format!(
        "Proxy 127.0.0.1:{}\nAuth Auto\nUsername {}\nDomain {}\nPassword {}\n",
        squid.port, ALICE.user, ALICE.domain, ALICE.password
    );
    let cntlm = Cntlm::start_with_env(&config, &realm.kdc.client_env(&ticket(&realm)));
    let got = curl(Some(&cntlm.url()), &[&realm.origin.http_url("/echo")]);
    assert_eq!(got.status, 200, "{}\n{}", got.stderr, cntlm.log());
    assert!(!squid.accepted().is_empty(), "{}", squid.helper_log());
    assert!(squid.rejected().is_empty(), "{}", squid.helper_log());
}

#[test]
fn a_basic_only_parent_under_auto_gets_basic_after_its_challenge() {
    let origin = Origin::start();
    let squid = lab::Squid::start(ParentAuth::BasicOnly);
    let config = format!(
        "Proxy 127.0.0.1:{}\nAuth Auto\nUsername {}\nPassword {}\n",
        squid.port, ALICE.user, ALICE.password
    );
    let cntlm = Cntlm::start(&config);
    for _ in 0..2 {
        let got = curl(Some(&cntlm.url()), &[&origin.http_url("/echo")]);
        assert_eq!(got.status, 200, "{}\n{}", got.stderr, cntlm.log());
        assert!(
            !got.echo()["headers"].to_string().contains("Basic "),
            "the origin never sees the credentials"
        );
    }
    let checks = squid.helper_lines("BASIC");
    assert!(
        !checks.is_empty() && checks.iter().all(|l| l.contains("verdict=OK")),
        "{checks:?}"
    );
    // The first request learnt the offer without credentials: exactly one 407 in the log.
    let log = squid.access_log();
    assert_eq!(log.matches("/407 ").count(), 1, "{log}");
}

#[test]
fn the_magic_probe_reports_the_offer_and_our_token() {
    use cntlm::config::{AuthSettings, Limits, ParentProxy};
    let Some(realm) = Realm::start(true) else {
        return;
    };
    let parent = ParentProxy {
        host: "localhost".to_string(),
        port: realm.squid.port,
    };
    let url = realm.origin.http_url("/echo");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let report = runtime.block_on(cntlm::proxy::scheme::negotiate_probe(
        &parent,
        &url,
        &AuthSettings::default(),
        &Limits::default(),
    ));
    assert_eq!(report.first_status, Some(407), "{report}");
    assert!(report.offers_negotiate(), "{report}");
    assert_eq!(
        report.offers,
        [
            cntlm::proxy::scheme::AuthScheme::Negotiate,
            cntlm::proxy::scheme::AuthScheme::Ntlm
        ],
        "{report}"
    );
    assert_eq!(report.service_principal, "HTTP@localhost");
    // This test process has no realm environment (the library reads it from the process
    // environment), so the token attempt is made and reported, whatever its outcome.
    assert!(report.token.is_some(), "{report}");
    assert!(
        report.to_string().contains("offers Negotiate, NTLM"),
        "{report}"
    );
}

#[test]
fn a_wrong_kerberos_password_stops_after_three_refusals() {
    let Some(realm) = Realm::start(false) else {
        return;
    };
    let config = format!(
        "Auth Negotiate\nUsername {}\nPassword not-the-password\n",
        kdc::USER
    );
    let cntlm = realm.cntlm(&config, &no_ticket(&realm));
    let logins = || {
        realm
            .kdc
            .log()
            .lines()
            .filter(|l| l.contains("AS_REQ") && l.contains("alice@"))
            .count()
    };
    let mut bodies = Vec::new();
    let mut after_three = 0;
    for i in 0..5 {
        let got = curl(Some(&cntlm.url()), &[&realm.origin.http_url("/echo")]);
        assert_eq!(
            got.status,
            407,
            "{}\n{}",
            got.stderr,
            realm.diagnostics(&cntlm)
        );
        bodies.push(String::from_utf8_lossy(&got.body).into_owned());
        if i == 2 {
            after_three = logins();
        }
    }
    assert!(bodies[0].contains("login failed"), "{}", bodies[0]);
    assert!(bodies[4].contains("lockout"), "{}", bodies[4]);
    // Three refused logins, then the KDC is left alone: the account is protected.
    assert!(after_three > 0, "{}", realm.kdc.log());
    assert_eq!(logins(), after_three, "{}", realm.kdc.log());
    assert!(!cntlm.log().contains("not-the-password"));
}
