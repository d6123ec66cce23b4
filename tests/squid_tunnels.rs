//! Issue 4 §2, §3 and §7 against the real lab: `-L` tunnels and `curl --socks5-hostname`
//! through `-O` carrying TLS to the HTTPS origin through the NTLM Squid (whose helper verifies
//! every Type 3 with pyspnego), the same DIRECT for `NoProxy`, and SIGHUP changing the
//! password mid-run while a tunnel stays open. Every process is killed by PID at the end.
#![cfg(unix)]

#[path = "support/lab.rs"]
mod lab;
#[path = "support/lab_cntlm.rs"]
mod lab_cntlm;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use lab::{ALICE, Origin, ParentAuth, Squid, free_port};
use lab_cntlm::{Cntlm, curl, parent_config};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn sighup(cntlm: &Cntlm) {
    let pid = i32::try_from(cntlm.pid()).expect("pid fits");
    kill(Pid::from_raw(pid), Signal::SIGHUP).expect("SIGHUP sent");
}

fn ntlm_lab() -> (Origin, Squid) {
    (Origin::start(), Squid::start(ParentAuth::NtlmV2Only))
}

#[test]
fn l_tunnel_carries_tls_through_the_ntlm_squid() {
    let (origin, squid) = ntlm_lab();
    let tport = free_port();
    let conf = format!(
        "{}Tunnel 127.0.0.1:{tport}:127.0.0.1:{}\n",
        parent_config(&[squid.port], &ALICE, "NTLMv2"),
        origin.https_port
    );
    let cntlm = Cntlm::start(&conf);
    let cert = origin.cert.to_string_lossy().into_owned();
    // curl talks TLS to the tunnel's local port; the origin's certificate names 127.0.0.1.
    let url = format!("https://127.0.0.1:{tport}/echo");
    let got = curl(None, &["--cacert", &cert, &url]);
    assert_eq!(got.status, 200, "{}\n{}", got.stderr, cntlm.log());
    assert_eq!(got.echo()["method"], "GET");
    // Squid logs a CONNECT once the tunnel has closed, after curl is already done.
    let connect = format!("CONNECT 127.0.0.1:{}", origin.https_port);
    let log = squid.access_log_when(Duration::from_secs(10), |l| l.contains(&connect));
    assert!(log.contains(&connect), "{log}");
    let accepted = squid.accepted();
    assert!(
        !accepted.is_empty() && accepted.iter().all(|l| l.contains("user=alice")),
        "{}",
        squid.helper_log()
    );
    assert!(cntlm.log().contains("tunnel"), "{}", cntlm.log());
}

#[test]
fn l_tunnel_goes_direct_for_no_proxy() {
    let (origin, squid) = ntlm_lab();
    let tport = free_port();
    let conf = format!(
        "{}NoProxy 127.0.0.1\nTunnel 127.0.0.1:{tport}:127.0.0.1:{}\n",
        parent_config(&[squid.port], &ALICE, "NTLMv2"),
        origin.https_port
    );
    let cntlm = Cntlm::start(&conf);
    let cert = origin.cert.to_string_lossy().into_owned();
    let url = format!("https://127.0.0.1:{tport}/echo");
    let got = curl(None, &["--cacert", &cert, &url]);
    assert_eq!(got.status, 200, "{}\n{}", got.stderr, cntlm.log());
    assert!(
        cntlm.wait_for_log("via=DIRECT", 1),
        "the tunnel went DIRECT: {}",
        cntlm.log()
    );
    assert_eq!(squid.ntlm_handshakes(), 0, "{}", squid.helper_log());
}

#[test]
fn socks5_hostname_through_the_ntlm_squid_with_and_without_users() {
    let (origin, squid) = ntlm_lab();
    let cert = origin.cert.to_string_lossy().into_owned();
    let url = origin.https_url("/echo");
    let parent = parent_config(&[squid.port], &ALICE, "NTLMv2");

    // Without users (loopback only): anyone local may connect, and CNTLM's warning is logged.
    let sport = free_port();
    let open = Cntlm::start(&format!("{parent}SOCKS5Proxy 127.0.0.1:{sport}\n"));
    let proxy = format!("socks5h://127.0.0.1:{sport}");
    let got = curl(Some(&proxy), &["--cacert", &cert, &url]);
    assert_eq!(got.status, 200, "{}\n{}", got.stderr, open.log());
    assert_eq!(got.echo()["method"], "GET");
    assert!(
        open.log()
            .contains("SOCKS5 proxy will NOT require any authentication"),
        "{}",
        open.log()
    );
    // Squid logs a CONNECT once the tunnel has closed, after curl is already done.
    let connect = format!("CONNECT 127.0.0.1:{}", origin.https_port);
    let log = squid.access_log_when(Duration::from_secs(10), |l| l.contains(&connect));
    assert!(log.contains(&connect), "{log}");
    drop(open);

    // With users: the right password passes, a wrong one fails the RFC 1929 exchange.
    let sport = free_port();
    let guarded = Cntlm::start(&format!(
        "{parent}SOCKS5Proxy 127.0.0.1:{sport}\nSOCKS5Users carol:s0cks-pw\n"
    ));
    let good = format!("socks5h://carol:s0cks-pw@127.0.0.1:{sport}");
    let got = curl(Some(&good), &["--cacert", &cert, &url]);
    assert_eq!(got.status, 200, "{}\n{}", got.stderr, guarded.log());
    let bad = format!("socks5h://carol:wrong@127.0.0.1:{sport}");
    let got = curl(Some(&bad), &["--cacert", &cert, &url]);
    assert_eq!(got.status, 0, "{}", got.stderr);
    assert_ne!(got.exit_code, Some(0), "{}", got.stderr);
    assert!(
        !guarded.log().contains("NOT require any authentication"),
        "{}",
        guarded.log()
    );
}

/// A TCP target that echoes line by line on the connection it keeps open.
fn line_echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().expect("clone");
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if writeln!(writer, "{line}").is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn echo_line(reader: &mut BufReader<TcpStream>, line: &str) -> String {
    writeln!(reader.get_mut(), "{line}").expect("write through the tunnel");
    let mut back = String::new();
    reader
        .read_line(&mut back)
        .expect("read through the tunnel");
    back.trim_end().to_string()
}

/// Issue 4 §7: a wrong password gives 407; the right one written to the file and a SIGHUP
/// give 200, while a tunnel opened before the reload keeps working. An invalid file then is
/// rejected and the running configuration (with the right password) stays.
#[test]
fn sighup_changes_the_password_while_a_tunnel_stays_open() {
    let (origin, squid) = ntlm_lab();
    let echo = line_echo();
    let tport = free_port();
    let wrong = lab::LabUser {
        password: "not-the-password",
        ..ALICE
    };
    // The tunnel goes DIRECT (NoProxy localhost), so it opens whatever the password is.
    let rest = format!("NoProxy localhost\nTunnel 127.0.0.1:{tport}:localhost:{echo}\n");
    let cntlm = Cntlm::start(&format!(
        "{}{rest}",
        parent_config(&[squid.port], &wrong, "NTLMv2")
    ));
    let url = origin.http_url("/echo");

    let stream = TcpStream::connect(("127.0.0.1", tport)).expect("tunnel listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut tunnel = BufReader::new(stream);
    assert_eq!(echo_line(&mut tunnel, "before"), "before");

    let got = curl(Some(&cntlm.url()), &[&url]);
    assert_eq!(got.status, 407, "{}\n{}", got.stderr, cntlm.log());

    cntlm.rewrite_config(&format!(
        "{}{rest}",
        parent_config(&[squid.port], &ALICE, "NTLMv2")
    ));
    sighup(&cntlm);
    assert!(
        cntlm.wait_for_log("configuration reloaded", 1),
        "{}",
        cntlm.log()
    );
    let got = curl(Some(&cntlm.url()), &[&url]);
    assert_eq!(got.status, 200, "{}\n{}", got.stderr, cntlm.log());
    assert_eq!(
        echo_line(&mut tunnel, "after"),
        "after",
        "the tunnel survived the reload"
    );

    // An invalid configuration is rejected with its error and the running one kept (the
    // first Auth line wins, so the bad one goes first).
    cntlm.rewrite_config(&format!(
        "Auth NTLMv3\n{}{rest}",
        parent_config(&[squid.port], &ALICE, "NTLMv2")
    ));
    sighup(&cntlm);
    assert!(
        cntlm.wait_for_log("keeping the running configuration", 1),
        "{}",
        cntlm.log()
    );
    assert!(cntlm.log().contains("NTLMv3"), "{}", cntlm.log());
    let got = curl(Some(&cntlm.url()), &[&url]);
    assert_eq!(got.status, 200, "{}\n{}", got.stderr, cntlm.log());
    assert_eq!(cntlm.log().matches("configuration reloaded").count(), 1);
    assert_eq!(echo_line(&mut tunnel, "still"), "still");
    assert!(
        !squid.accepted().is_empty() && !squid.rejected().is_empty(),
        "first rejected, then accepted: {}",
        squid.helper_log()
    );
}
