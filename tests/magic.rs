//! Issue 4 §1: `cntlm -M <url>` against the real lab (Squid whose helper verifies every Type 3
//! with pyspnego), output compared line by line with CNTLM 0.92.3's, plus the fixed bug (a
//! parent closing after its 407 gets a new handshake) against an in-process fake parent.

#[path = "support/fake.rs"]
mod fake;
#[path = "support/kdc.rs"]
mod kdc;
#[path = "support/lab.rs"]
mod lab;

use std::fs;
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Duration;

use lab::{ALICE, Origin, ParentAuth, Squid, free_port, run_with_timeout};

const MAGIC_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `cntlm -c <conf> -M <url>` with stdin at EOF (so the prompt keeps the config's
/// password, as CNTLM does).
fn magic(config: &str, url: &str) -> Output {
    magic_with_env(config, url, &[])
}

fn magic_with_env(config: &str, url: &str, env: &[(String, String)]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("cntlm.conf");
    fs::write(&conf, config).expect("write cntlm.conf");
    run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_cntlm"))
            .arg("-c")
            .arg(&conf)
            .arg("-M")
            .arg(url)
            .envs(env.iter().map(|(k, v)| (k, v))),
        MAGIC_TIMEOUT,
    )
}

/// The `Pass*` value `cntlm -H` prints for alice (an independent path to the same hash).
fn h_value(name: &str) -> String {
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_cntlm")).args([
            "-c",
            "/dev/null",
            "-H",
            "-u",
            ALICE.user,
            "-d",
            ALICE.domain,
            "-p",
            ALICE.password,
        ]),
        MAGIC_TIMEOUT,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {name} in -H output: {text}"))
        .to_string()
}

fn alice_config(port: u16) -> String {
    format!(
        "Proxy 127.0.0.1:{port}\nUsername {}\nDomain {}\nPassword {}\n",
        ALICE.user, ALICE.domain, ALICE.password
    )
}

fn assert_lines(out: &Output, want: &[String], squid: Option<&Squid>) {
    let got = String::from_utf8_lossy(&out.stdout).into_owned();
    let got: Vec<&str> = got.lines().collect();
    let diag = || {
        format!(
            "stdout:\n{}\nstderr:\n{}\nhelper log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            squid.map(Squid::helper_log).unwrap_or_default()
        )
    };
    for (i, line) in want.iter().enumerate() {
        assert_eq!(
            got.get(i).copied(),
            Some(line.as_str()),
            "line {i}\n{}",
            diag()
        );
    }
    assert_eq!(got.len(), want.len(), "extra lines\n{}", diag());
}

fn lines(text: &[&str]) -> Vec<String> {
    text.iter().map(ToString::to_string).collect()
}

#[test]
fn strict_ntlmv2_parent_gives_profile_0_ntlmv2() {
    let origin = Origin::start();
    let squid = Squid::start(ParentAuth::NtlmV2Only);
    let out = magic(&alice_config(squid.port), &origin.http_url("/echo"));
    let want = lines(&[
        "Password: ",
        "Config profile  1/4... OK (HTTP code: 200)",
        "----------------------------[ Profile  0 ]------",
        "Auth            NTLMv2",
        &format!("PassNTLMv2      {}", h_value("PassNTLMv2")),
        "------------------------------------------------",
    ]);
    assert_lines(&out, &want, Some(&squid));
    assert!(out.status.success(), "{:?}", out.status);
    let accepted = squid.accepted();
    assert_eq!(accepted.len(), 1, "{}", squid.helper_log());
    assert!(accepted[0].contains("dialect=NTLMv2") && accepted[0].contains("alice"));
}

#[test]
fn legacy_parent_with_only_passlm_finds_the_lm_profile() {
    let origin = Origin::start();
    let squid = Squid::start(ParentAuth::NtlmLegacy);
    let pass_lm = h_value("PassLM");
    let config = format!(
        "Proxy 127.0.0.1:{}\nUsername {}\nDomain {}\nPassLM {pass_lm}\n",
        squid.port, ALICE.user, ALICE.domain
    );
    let out = magic(&config, &origin.http_url("/echo"));
    let want = lines(&[
        "Password: ",
        "Config profile  1/4... Skipped (needs PassNTLMv2 or PassNT)",
        "Config profile  2/4... Skipped (needs PassLM and PassNT)",
        "Config profile  3/4... OK (HTTP code: 200)",
        "----------------------------[ Profile  2 ]------",
        "Auth            LM",
        &format!("PassLM          {pass_lm}"),
        "------------------------------------------------",
    ]);
    assert_lines(&out, &want, Some(&squid));
    assert!(out.status.success());
    let accepted = squid.accepted();
    assert_eq!(accepted.len(), 1, "{}", squid.helper_log());
    assert!(accepted[0].contains("dialect=LM"), "{accepted:?}");
}

#[test]
fn legacy_parent_with_a_password_takes_the_first_profile() {
    let origin = Origin::start();
    let squid = Squid::start(ParentAuth::NtlmLegacy);
    let out = magic(&alice_config(squid.port), &origin.http_url("/echo"));
    assert_lines(
        &out,
        &lines(&[
            "Password: ",
            "Config profile  1/4... OK (HTTP code: 200)",
            "----------------------------[ Profile  0 ]------",
            "Auth            NTLMv2",
            &format!("PassNTLMv2      {}", h_value("PassNTLMv2")),
            "------------------------------------------------",
        ]),
        Some(&squid),
    );
}

#[test]
fn wrong_password_rejects_every_profile_and_exits_non_zero() {
    let origin = Origin::start();
    let squid = Squid::start(ParentAuth::NtlmLegacy);
    let config = format!(
        "Proxy 127.0.0.1:{}\nUsername {}\nDomain {}\nPassword wrong-one\n",
        squid.port, ALICE.user, ALICE.domain
    );
    let out = magic(&config, &origin.http_url("/echo"));
    let want = lines(&[
        "Password: ",
        "Config profile  1/4... Credentials rejected",
        "Config profile  2/4... Credentials rejected",
        "Config profile  3/4... Credentials rejected",
        "Config profile  4/4... Credentials rejected",
        "",
        "Wrong credentials, invalid URL or proxy doesn't support NTLM nor BASIC.",
    ]);
    assert_lines(&out, &want, Some(&squid));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(squid.rejected().len(), 4, "{}", squid.helper_log());
}

#[test]
fn open_parent_needs_no_proxy() {
    let origin = Origin::start();
    let squid = Squid::start(ParentAuth::None);
    let out = magic(&alice_config(squid.port), &origin.http_url("/echo"));
    let mut want = lines(&["Password: "]);
    for i in 1..=4 {
        want.push(format!(
            "Config profile  {i}/4... Auth not required (HTTP code: 200)"
        ));
    }
    want.extend(lines(&[
        "",
        "Your proxy is open, you don't need another proxy.",
    ]));
    assert_lines(&out, &want, Some(&squid));
    assert!(out.status.success());
}

#[test]
fn unreachable_parent_bails_out() {
    let out = magic(&alice_config(free_port()), "http://127.0.0.1:9/");
    let want = lines(&[
        "Password: ",
        "Config profile  1/4... ",
        "Connection to proxy failed, bailing out",
    ]);
    assert_lines(&out, &want, None);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn url_without_scheme_is_invalid() {
    let out = magic(&alice_config(free_port()), "www.example.com");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "Invalid URL (www.example.com)"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Password: \n");
    assert_eq!(out.status.code(), Some(1));
}

/// CNTLM 0.92.3 sends the Type 3 on a new connection when the parent closes after its 407
/// and reports "Credentials rejected"; we start the handshake over.
#[tokio::test]
async fn parent_closing_after_its_407_gets_a_new_handshake() {
    let (addr, record) = fake::start_parent(fake::ParentMode::NtlmCloseAfterChallenge(1)).await;
    let config = fake::parent_config(&[addr], true);
    let mut out = Vec::new();
    let outcome = tokio::time::timeout(
        fake::TEST_TIMEOUT,
        cntlm::magic::detect(&config, "http://origin.test/", &mut out),
    )
    .await
    .expect("in time")
    .expect("detection runs");
    let text = String::from_utf8_lossy(&out);
    assert_eq!(
        outcome,
        cntlm::magic::MagicOutcome::Found { index: 0 },
        "{text}"
    );
    assert!(
        text.starts_with("Config profile  1/4... OK (HTTP code: 200)\n"),
        "{text}"
    );
    assert_eq!(record.type1.load(Ordering::SeqCst), 2, "a second handshake");
    assert_eq!(
        record.type3.load(Ordering::SeqCst),
        1,
        "one Type 3, on the new connection"
    );
}

/// `Auth Negotiate` (not in CNTLM): no NTLM profiles without an NTLM secret, a Kerberos report
/// instead, against a Squid verifying tickets with `negotiate_kerberos_auth`.
#[test]
fn negotiate_parent_reports_the_accepted_ticket() {
    let Some(kdc) = kdc::Kdc::start() else {
        return;
    };
    let Some(squid) = kdc::Squid::start(&kdc) else {
        return;
    };
    let origin = Origin::start();
    let ccache = kdc.dir().join("alice.ccache");
    kdc.kinit(&ccache).expect("kinit alice");
    let config = format!("Proxy localhost:{}\nAuth Negotiate\n", squid.port);
    let out = magic_with_env(&config, &origin.http_url("/echo"), &kdc.client_env(&ccache));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"Password: "), "{stdout}");
    assert_eq!(
        lines.get(1),
        Some(&"Kerberos (Auth Negotiate):"),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "Parent localhost:{}: offers Negotiate",
            squid.port
        ))),
        "{stdout}"
    );
    assert!(stdout.contains("ACCEPTED"), "{stdout}\n{}", squid.log());
    assert!(!stdout.contains("Config profile"), "{stdout}");
    assert!(out.status.success(), "{stdout}");
}
