//! Issue 3 §4 and §6: parents tried in order (first refusing, first black-holed), traffic
//! returning to the first parent when it is back, and NoProxy going DIRECT, against real Squids.
//!
//! The black-holed parent is a listener whose accept queue is full (see `BlackHole`): the
//! kernel drops further SYNs, so cntlm's connect times out as behind a dropping firewall.

#[path = "support/lab.rs"]
mod lab;
#[path = "support/lab_cntlm.rs"]
mod lab_cntlm;

use std::time::{Duration, Instant};

use lab::{ALICE, Origin, ParentAuth, Squid, free_port};
use lab_cntlm::{BlackHole, Cntlm, curl, parent_config};

#[test]
fn the_second_parent_serves_when_the_first_refuses() {
    let origin = Origin::start();
    let refusing = free_port(); // nothing listens there
    let second = Squid::start(ParentAuth::NtlmV2Only);
    let cntlm = Cntlm::start(&parent_config(&[refusing, second.port], &ALICE, "NTLMv2"));
    for _ in 0..2 {
        let got = curl(Some(&cntlm.url()), &[&origin.http_url("/echo")]);
        assert_eq!(got.status, 200, "{}\n{}", got.stderr, cntlm.log());
    }
    assert_eq!(second.forwarded_requests(), 2, "{}", second.access_log());
    assert!(!second.accepted().is_empty(), "{}", second.helper_log());
}

#[test]
fn the_second_parent_serves_when_the_first_is_black_holed() {
    let origin = Origin::start();
    let hole = BlackHole::new();
    let second = Squid::start(ParentAuth::None);
    let cntlm = Cntlm::start(&parent_config(&[hole.port, second.port], &ALICE, "NTLMv2"));
    let got = curl(Some(&cntlm.url()), &[&origin.http_url("/echo")]);
    assert_eq!(got.status, 200, "{}\n{}", got.stderr, cntlm.log());
    assert_eq!(second.forwarded_requests(), 1, "{}", second.access_log());
    // Back-off: the next request does not wait for the black hole again; it must still work.
    let again = curl(Some(&cntlm.url()), &[&origin.http_url("/echo")]);
    assert_eq!(again.status, 200, "{}", again.stderr);
}

#[test]
fn traffic_returns_to_the_first_parent_when_it_is_back() {
    let origin = Origin::start();
    let first_port = free_port(); // refusing until we start Squid on it
    let second = Squid::start(ParentAuth::None);
    let cntlm = Cntlm::start(&parent_config(&[first_port, second.port], &ALICE, "NTLMv2"));
    let got = curl(Some(&cntlm.url()), &[&origin.http_url("/echo")]);
    assert_eq!(got.status, 200, "{}\n{}", got.stderr, cntlm.log());
    assert_eq!(second.forwarded_requests(), 1);

    let first = Squid::start_on(ParentAuth::None, first_port);
    // The dead parent is re-probed after its back-off (DESIGN.md: 60 s). There is no event to
    // wait on, so poll with a deadline well past the back-off; no timing is asserted.
    let deadline = Instant::now() + Duration::from_secs(150);
    while first.forwarded_requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "traffic never returned to the first parent:\n{}",
            cntlm.log()
        );
        let got = curl(Some(&cntlm.url()), &[&origin.http_url("/echo")]);
        assert_eq!(got.status, 200, "{}", got.stderr);
        std::thread::sleep(Duration::from_secs(1));
    }
    let served_by_second = second.forwarded_requests();
    let got = curl(Some(&cntlm.url()), &[&origin.http_url("/echo")]);
    assert_eq!(got.status, 200);
    assert_eq!(
        second.forwarded_requests(),
        served_by_second,
        "the first parent is preferred again"
    );
}

#[test]
fn no_proxy_goes_direct_for_plain_requests_and_connect() {
    let origin = Origin::start();
    let parent = Squid::start(ParentAuth::None);
    let cert = origin.cert.to_string_lossy().into_owned();

    // Control: a NoProxy that does not match sends the request through the parent.
    let via_parent = Cntlm::start(
        &(parent_config(&[parent.port], &ALICE, "NTLMv2") + "NoProxy *.lab.invalid\n"),
    );
    let got = curl(Some(&via_parent.url()), &[&origin.http_url("/echo")]);
    assert_eq!(got.status, 200, "{}", via_parent.log());
    assert_eq!(parent.forwarded_requests(), 1, "{}", parent.access_log());

    let direct = Cntlm::start(
        &(parent_config(&[parent.port], &ALICE, "NTLMv2") + "NoProxy localhost, 127.0.0.*\n"),
    );
    let got = curl(Some(&direct.url()), &[&origin.http_url("/echo")]);
    assert_eq!(got.status, 200, "{}", direct.log());
    let tls = curl(
        Some(&direct.url()),
        &["--cacert", &cert, &origin.https_url("/echo")],
    );
    assert_eq!(tls.status, 200, "{}\n{}", tls.stderr, direct.log());
    assert_eq!(
        parent.forwarded_requests(),
        1,
        "NoProxy matches must not reach the parent:\n{}",
        parent.access_log()
    );
}
