//! Issue 3 §6, real clients through cntlm and an NTLMv2-verifying Squid: curl (GET, POST,
//! CONNECT), `git clone` over smart HTTP, and `pip download` from a local package index.

#[path = "support/lab.rs"]
mod lab;
#[path = "support/lab_cntlm.rs"]
mod lab_cntlm;

use lab::{ALICE, Origin, ParentAuth, Squid};
use lab_cntlm::{Cntlm, curl, git_clone, git_head, parent_config, pip_download};
use std::time::Duration;

fn lab() -> (Origin, Squid, Cntlm) {
    let origin = Origin::start();
    let squid = Squid::start(ParentAuth::NtlmV2Only);
    let cntlm = Cntlm::start(&parent_config(&[squid.port], &ALICE, "NTLMv2"));
    (origin, squid, cntlm)
}

#[test]
fn curl_get_post_and_connect_through_cntlm() {
    let (origin, squid, cntlm) = lab();
    let get = curl(Some(&cntlm.url()), &[&origin.http_url("/echo")]);
    assert_eq!(get.status, 200, "{}\n{}", get.stderr, cntlm.log());
    assert_eq!(get.echo()["method"], "GET");

    let post = curl(
        Some(&cntlm.url()),
        &[
            "--data-binary",
            "hello through cntlm",
            &origin.http_url("/echo"),
        ],
    );
    assert_eq!(post.status, 200, "{}", post.stderr);
    assert_eq!(
        post.echo()["body_sha256"],
        lab::sha256_hex(b"hello through cntlm")
    );

    let cert = origin.cert.to_string_lossy().into_owned();
    let tls = curl(
        Some(&cntlm.url()),
        &[
            "--cacert",
            &cert,
            "--data-binary",
            "tls",
            &origin.https_url("/echo"),
        ],
    );
    assert_eq!(tls.status, 200, "{}", tls.stderr);
    assert_eq!(tls.echo()["method"], "POST");
    // Squid logs a transaction (a CONNECT: once the tunnel closes) after the client is done.
    let log = squid.access_log_when(Duration::from_secs(10), |l| l.contains("CONNECT"));
    assert!(log.contains("CONNECT"), "{log}");
    assert!(squid.rejected().is_empty(), "{}", squid.helper_log());
}

#[test]
fn git_clone_over_smart_http_through_cntlm() {
    let (origin, squid, cntlm) = lab();
    let dest = cntlm.scratch().join("clone");
    let out = git_clone(&cntlm.url(), &origin.git_url(), &dest);
    assert!(
        out.status.success(),
        "git clone: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cntlm.log()
    );
    assert_eq!(git_head(&dest), origin.git_head);
    // Squid logs a transaction (a CONNECT: once the tunnel closes) after the client is done.
    let log = squid.access_log_when(Duration::from_secs(10), |l| l.contains("/git/lab.git/"));
    assert!(log.contains("/git/lab.git/"), "{log}");
    assert!(!squid.accepted().is_empty(), "{}", squid.helper_log());
}

#[test]
fn pip_download_from_a_local_index_through_cntlm() {
    let (origin, squid, cntlm) = lab();
    let dest = cntlm.scratch().join("pip");
    let out = pip_download(&cntlm.url(), &origin.pip_index_url(), "labpkg", &dest);
    assert!(
        out.status.success(),
        "pip download: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cntlm.log()
    );
    assert_eq!(
        lab::sha256_file(&dest.join(&origin.wheel)),
        origin.wheel_sha256
    );
    // Squid logs a transaction (a CONNECT: once the tunnel closes) after the client is done.
    let log = squid.access_log_when(Duration::from_secs(10), |l| l.contains("/simple/labpkg/"));
    assert!(log.contains("/simple/labpkg/"), "{log}");
}
