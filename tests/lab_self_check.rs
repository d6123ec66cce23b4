//! The lab proves itself before it proves cntlm (DESIGN.md §3): real curl through each Squid
//! variant, without cntlm. Right credentials pass and wrong ones get 407, so the helper really
//! verifies; the origins serve what the cntlm tests rely on; the black hole really drops SYNs.

#[path = "support/lab.rs"]
mod lab;
#[path = "support/lab_cntlm.rs"]
mod lab_cntlm;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use lab::{ALICE, BOB_NON_ASCII, LabUser, Origin, ParentAuth, Squid};
use lab_cntlm::{BlackHole, curl};

fn ntlm_user(u: &LabUser, password: &str) -> String {
    format!("{}\\{}:{password}", u.domain, u.user)
}

#[test]
fn origin_serves_echo_patterns_tls_git_and_pip_directly() {
    let origin = Origin::start();
    let echo = curl(None, &["--data-binary", "hello", &origin.http_url("/echo")]);
    assert_eq!(echo.status, 200, "{}", echo.stderr);
    let json = echo.echo();
    assert_eq!(json["method"], "POST");
    assert_eq!(json["body_sha256"], lab::sha256_hex(b"hello"));

    let bytes = curl(None, &[&origin.http_url("/bytes/3000000")]);
    let chunked = curl(None, &[&origin.http_url("/chunked/3000000")]);
    let close = curl(None, &[&origin.http_url("/close/3000000")]);
    assert_eq!(bytes.body.len(), 3_000_000);
    assert_eq!(bytes.body, chunked.body);
    assert_eq!(bytes.body, close.body);

    let cert = origin.cert.to_string_lossy().into_owned();
    let tls = curl(None, &["--cacert", &cert, &origin.https_url("/echo")]);
    assert_eq!(tls.status, 200, "{}", tls.stderr);
    assert_eq!(tls.echo()["method"], "GET");

    let tmp = tempfile::tempdir().expect("temp dir");
    let index = curl(None, &[&origin.http_url("/simple/labpkg/")]);
    assert!(String::from_utf8_lossy(&index.body).contains(&origin.wheel_sha256));
    let clone = tmp.path().join("clone");
    let mut cmd = std::process::Command::new("git");
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", tmp.path())
        .args(["clone", "-q", &origin.git_url()])
        .arg(&clone);
    let out = lab::run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "git clone: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lab_cntlm::git_head(&clone), origin.git_head);
}

#[test]
fn origin_100_mib_has_the_known_sha256() {
    let origin = Origin::start();
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = tmp.path().join("big");
    let file_arg = file.to_string_lossy().into_owned();
    let url = origin.http_url(&format!("/bytes/{}", lab::SIZE_100_MIB));
    let got = curl(None, &["-o", &file_arg, &url]);
    assert_eq!(got.status, 200, "{}", got.stderr);
    assert_eq!(lab::sha256_file(&file), lab::SHA256_100_MIB);
}

#[test]
fn squid_ntlmv2_only_accepts_right_password_and_refuses_wrong_one() {
    let origin = Origin::start();
    let squid = Squid::start(ParentAuth::NtlmV2Only);
    let proxy = squid.url();
    let url = origin.http_url("/echo");

    let without = curl(Some(&proxy), &[&url]);
    assert_eq!(without.status, 407, "no credentials must be refused");

    let good = curl(
        Some(&proxy),
        &[
            "--proxy-ntlm",
            "-U",
            &ntlm_user(&ALICE, ALICE.password),
            &url,
        ],
    );
    assert_eq!(good.status, 200, "{}\n{}", good.stderr, squid.helper_log());
    assert_eq!(good.echo()["method"], "GET");
    let accepted = squid.accepted();
    assert_eq!(accepted.len(), 1, "{}", squid.helper_log());
    assert!(
        accepted[0].contains("user=alice") && accepted[0].contains("dialect=NTLMv2"),
        "{accepted:?}"
    );

    let bad = curl(
        Some(&proxy),
        &[
            "--proxy-ntlm",
            "-U",
            &ntlm_user(&ALICE, "wrong-password"),
            &url,
        ],
    );
    assert_eq!(bad.status, 407, "a wrong password must be refused");
    assert_eq!(squid.rejected().len(), 1, "{}", squid.helper_log());

    // curl widens each UTF-8 byte of a non-ASCII password instead of encoding UTF-16LE, so the
    // non-ASCII account is proven with pyspnego's initiator instead.
    assert_eq!(
        ntlm_probe(&squid, &url, &BOB_NON_ASCII, BOB_NON_ASCII.password),
        "200",
        "{}",
        squid.helper_log()
    );
    assert_eq!(
        ntlm_probe(&squid, &url, &BOB_NON_ASCII, "Passwoerd-1"),
        "407",
        "{}",
        squid.helper_log()
    );
}

/// The status pyspnego's NTLM client gets through `squid` for `url` (see tests/lab/ntlm_probe.py).
fn ntlm_probe(squid: &Squid, url: &str, u: &LabUser, password: &str) -> String {
    let mut cmd = std::process::Command::new(lab::SYSTEM_PYTHON);
    cmd.arg(lab::lab_script("ntlm_probe.py"))
        .args(["--proxy-port", &squid.port.to_string(), "--url", url])
        .args([
            "--user",
            &format!("{}\\{}", u.domain, u.user),
            "--password-env",
            "LAB_PROBE_PASSWORD",
        ])
        .env("LAB_PROBE_PASSWORD", password);
    let out = lab::run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "ntlm_probe.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn squid_keeps_an_authenticated_connection_for_keep_alive_requests() {
    // The control for the cntlm keep-alive test: one client connection, one handshake.
    let origin = Origin::start();
    let squid = Squid::start(ParentAuth::NtlmV2Only);
    let url = origin.http_url("/echo");
    let user = ntlm_user(&ALICE, ALICE.password);
    let mut args = vec!["--proxy-ntlm", "-U", user.as_str()];
    args.extend(std::iter::repeat_n(url.as_str(), 5));
    let got = curl(Some(&squid.url()), &args);
    assert_eq!(got.status, 200, "{}", got.stderr);
    assert_eq!(squid.forwarded_requests(), 5, "{}", squid.access_log());
    assert_eq!(squid.ntlm_handshakes(), 1, "{}", squid.helper_log());
}

#[test]
fn squid_passes_5_mb_uploads_with_and_without_expect_and_chunked() {
    // The control for cntlm's upload test: the lab itself carries these bodies intact.
    let origin = Origin::start();
    let squid = Squid::start(ParentAuth::NtlmV2Only);
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = tmp.path().join("upload.bin");
    lab_cntlm::write_upload_file(&file, 5_000_000);
    let want = lab::sha256_file(&file);
    let data = format!("@{}", file.display());
    let path = file.to_string_lossy().into_owned();
    let user = ntlm_user(&ALICE, ALICE.password);
    let url = origin.http_url("/echo");
    let cases: [(&str, Vec<&str>); 3] = [
        (
            "expect",
            vec!["--data-binary", &data, "-H", "Expect: 100-continue", &url],
        ),
        (
            "no expect",
            vec!["--data-binary", &data, "-H", "Expect:", &url],
        ),
        (
            "chunked put",
            vec!["-T", &path, "-H", "Transfer-Encoding: chunked", &url],
        ),
    ];
    // curl cannot replay a chunked body for its own NTLM handshake (it resets), so the chunked
    // case goes through an auth-less Squid; cntlm's handshake runs on a body-less probe instead.
    let open_squid = Squid::start(ParentAuth::None);
    for (what, mut args) in cases {
        let proxy = if what == "chunked put" {
            open_squid.url()
        } else {
            args.splice(0..0, ["--proxy-ntlm", "-U", user.as_str()]);
            squid.url()
        };
        let got = curl(Some(&proxy), &args);
        assert_eq!(got.status, 200, "{what}: {}", got.stderr);
        assert_eq!(got.echo()["body_sha256"], want.as_str(), "{what}");
        assert_eq!(got.echo()["body_len"], 5_000_000, "{what}");
    }
}

#[test]
fn squid_without_target_info_accepts_ntlmv2_through_the_raw_blob_check() {
    let origin = Origin::start();
    let squid = Squid::start(ParentAuth::NtlmNoTargetInfo);
    let url = origin.http_url("/echo");
    let good = curl(
        Some(&squid.url()),
        &[
            "--proxy-ntlm",
            "-U",
            &ntlm_user(&ALICE, ALICE.password),
            &url,
        ],
    );
    assert_eq!(good.status, 200, "{}\n{}", good.stderr, squid.helper_log());
    assert!(squid.helper_log().contains("challenge=no-target-info"));
    let bad = curl(
        Some(&squid.url()),
        &["--proxy-ntlm", "-U", &ntlm_user(&ALICE, "nope"), &url],
    );
    assert_eq!(bad.status, 407);
    assert_eq!(
        (squid.accepted().len(), squid.rejected().len()),
        (1, 1),
        "{}",
        squid.helper_log()
    );
}

#[test]
fn squid_legacy_accepts_curl_ntlm_and_refuses_a_wrong_password() {
    let origin = Origin::start();
    let squid = Squid::start(ParentAuth::NtlmLegacy);
    let url = origin.http_url("/echo");
    let good = curl(
        Some(&squid.url()),
        &[
            "--proxy-ntlm",
            "-U",
            &ntlm_user(&ALICE, ALICE.password),
            &url,
        ],
    );
    assert_eq!(good.status, 200, "{}\n{}", good.stderr, squid.helper_log());
    let bad = curl(
        Some(&squid.url()),
        &["--proxy-ntlm", "-U", &ntlm_user(&ALICE, "nope"), &url],
    );
    assert_eq!(bad.status, 407);
}

#[test]
fn squid_basic_only_and_ntlm_plus_basic_verify_basic_credentials() {
    let origin = Origin::start();
    let url = origin.http_url("/echo");
    let basic = Squid::start(ParentAuth::BasicOnly);
    let good = curl(
        Some(&basic.url()),
        &["--proxy-basic", "-U", "alice:Secret-1", &url],
    );
    assert_eq!(good.status, 200, "{}\n{}", good.stderr, basic.helper_log());
    let bad = curl(
        Some(&basic.url()),
        &["--proxy-basic", "-U", "alice:wrong", &url],
    );
    assert_eq!(bad.status, 407);

    let both = Squid::start(ParentAuth::NtlmAndBasic);
    let offer = curl(Some(&both.url()), &["-D", "-", "-o", "/dev/null", &url]);
    let head = String::from_utf8_lossy(&offer.body).to_ascii_lowercase();
    assert!(
        head.contains("proxy-authenticate: ntlm") && head.contains("proxy-authenticate: basic"),
        "{head}"
    );
    let ntlm = curl(
        Some(&both.url()),
        &[
            "--proxy-ntlm",
            "-U",
            &ntlm_user(&ALICE, ALICE.password),
            &url,
        ],
    );
    assert_eq!(ntlm.status, 200, "{}", both.helper_log());
    let basic_on_both = curl(
        Some(&both.url()),
        &["--proxy-basic", "-U", "alice:Secret-1", &url],
    );
    assert_eq!(basic_on_both.status, 200, "{}", both.helper_log());
}

#[test]
fn two_squids_without_auth_run_at_once_and_tunnel_tls() {
    let origin = Origin::start();
    let first = Squid::start(ParentAuth::None);
    let second = Squid::start(ParentAuth::None);
    assert_ne!(first.port, second.port);
    let cert = origin.cert.to_string_lossy().into_owned();
    for squid in [&first, &second] {
        let got = curl(
            Some(&squid.url()),
            &["--cacert", &cert, &origin.https_url("/echo")],
        );
        assert_eq!(got.status, 200, "{}\n{}", got.stderr, squid.cache_log());
        // Squid logs a CONNECT once the tunnel has closed, after curl is already done.
        let connects = |log: &str| log.lines().filter(|l| l.contains("CONNECT")).count();
        let log = squid.access_log_when(Duration::from_secs(10), |l| connects(l) >= 1);
        assert_eq!(connects(&log), 1, "{log}");
    }
}

#[test]
fn black_hole_times_out_connects() {
    let hole = BlackHole::new();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, hole.port));
    let err = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .expect_err("must not connect");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
}

#[test]
fn helper_md4_and_ntowfv2_match_their_known_answers() {
    // The raw-blob re-check rests on the helper's own MD4 (RFC 1320 A.5) and NTOWFv2
    // (MS-NLMP §4.2.4.1.1); its --self-test asserts both.
    let mut cmd = std::process::Command::new(lab::SYSTEM_PYTHON);
    cmd.arg(lab::lab_script("ntlm_auth_helper.py"))
        .arg("--self-test");
    let out = lab::run_with_timeout(&mut cmd, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
