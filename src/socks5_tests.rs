//! Tests of the SOCKS5 server side: scripted IO for every protocol path (messages split across
//! reads on purpose), a property test that arbitrary input never panics, and a real `curl
//! --socks5-hostname` run through [`serve_connection`] on loopback.

use super::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_test::io::Builder;

fn users() -> Vec<(String, Password)> {
    vec![
        ("alice".to_owned(), Password::new("wonderland")),
        ("bob".to_owned(), Password::new("builder")),
    ]
}

/// An RFC 1929 request: VER ULEN UNAME PLEN PASSWD.
fn auth_request(user: &str, pass: &str) -> Vec<u8> {
    let mut m = vec![0x01, user.len() as u8];
    m.extend_from_slice(user.as_bytes());
    m.push(pass.len() as u8);
    m.extend_from_slice(pass.as_bytes());
    m
}

const SUCCESS_UNSPECIFIED: [u8; 10] = [5, 0, 0, 1, 0, 0, 0, 0, 0, 0];

fn failure(code: u8) -> [u8; 10] {
    [5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

#[tokio::test]
async fn rfc1928_3_no_users_selects_no_auth_with_greeting_split_across_reads() {
    let mut io = Builder::new()
        .read(&[5])
        .read(&[2, 2])
        .read(&[0])
        .write(&[5, 0])
        .build();
    let auth = authenticate(&mut io, &[]).await.expect("no-auth accepted");
    assert_eq!(auth, Socks5Auth::Anonymous);
}

#[tokio::test]
async fn rfc1928_3_no_users_and_only_user_pass_offered_gets_ff() {
    let mut io = Builder::new().read(&[5, 1, 2]).write(&[5, 0xFF]).build();
    let err = authenticate(&mut io, &[]).await.expect_err("must fail");
    assert!(matches!(err, Socks5Error::NoAcceptableMethod), "{err:?}");
}

#[tokio::test]
async fn rfc1928_3_users_configured_and_only_no_auth_offered_gets_ff() {
    let mut io = Builder::new().read(&[5, 1, 0]).write(&[5, 0xFF]).build();
    let err = authenticate(&mut io, &users())
        .await
        .expect_err("must fail");
    assert!(matches!(err, Socks5Error::NoAcceptableMethod), "{err:?}");
}

#[tokio::test]
async fn rfc1928_3_zero_methods_gets_ff() {
    let mut io = Builder::new().read(&[5, 0]).write(&[5, 0xFF]).build();
    assert!(matches!(
        authenticate(&mut io, &[]).await,
        Err(Socks5Error::NoAcceptableMethod)
    ));
}

#[tokio::test]
async fn rfc1929_2_right_credentials_split_across_reads_succeed() {
    let req = auth_request("bob", "builder");
    let mut io = Builder::new()
        .read(&[5, 2, 0, 2])
        .write(&[5, 2])
        .read(&req[..3])
        .read(&req[3..6])
        .read(&req[6..])
        .write(&[1, 0])
        .build();
    let auth = authenticate(&mut io, &users()).await.expect("bob accepted");
    assert_eq!(auth, Socks5Auth::User("bob".to_owned()));
}

#[tokio::test]
async fn rfc1929_2_wrong_password_fails_with_status_1() {
    let mut io = Builder::new()
        .read(&[5, 1, 2])
        .write(&[5, 2])
        .read(&auth_request("alice", "builder"))
        .write(&[1, 1])
        .build();
    let err = authenticate(&mut io, &users())
        .await
        .expect_err("must fail");
    assert!(matches!(err, Socks5Error::AuthFailed), "{err:?}");
}

#[tokio::test]
async fn rfc1929_2_unknown_user_and_prefix_password_fail() {
    for (user, pass) in [
        ("carol", "wonderland"),
        ("alice", "wonder"),
        ("alic", "wonderland"),
    ] {
        let mut io = Builder::new()
            .read(&[5, 1, 2])
            .write(&[5, 2])
            .read(&auth_request(user, pass))
            .write(&[1, 1])
            .build();
        let result = authenticate(&mut io, &users()).await;
        assert!(
            matches!(result, Err(Socks5Error::AuthFailed)),
            "{user}: {result:?}"
        );
    }
}

#[tokio::test]
async fn rfc1929_2_bad_sub_negotiation_version_is_refused() {
    let mut io = Builder::new()
        .read(&[5, 1, 2])
        .write(&[5, 2])
        .read(&[5])
        .build();
    let err = authenticate(&mut io, &users())
        .await
        .expect_err("must fail");
    assert!(matches!(err, Socks5Error::BadAuthVersion(5)), "{err:?}");
}

#[tokio::test]
async fn socks4_greeting_is_refused_without_a_reply() {
    let mut io = Builder::new().read(&[4]).build();
    let err = authenticate(&mut io, &[]).await.expect_err("must fail");
    assert!(matches!(err, Socks5Error::BadVersion(4)), "{err:?}");
}

#[tokio::test]
async fn eof_in_the_middle_of_the_greeting_is_an_io_error() {
    let mut io = Builder::new().read(&[5, 3, 0]).build();
    match authenticate(&mut io, &[]).await {
        Err(Socks5Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
        other => panic!("expected EOF, got {other:?}"),
    }
}

#[tokio::test]
async fn rfc1928_5_ipv4_connect_split_across_reads() {
    let mut io = Builder::new()
        .read(&[5, 1])
        .read(&[0, 1, 10, 0])
        .read(&[2, 2, 0x01])
        .read(&[0xBB])
        .build();
    let target = read_request(&mut io).await.expect("valid request");
    assert_eq!(
        target,
        Socks5Target {
            host: "10.0.2.2".into(),
            port: 443
        }
    );
}

#[tokio::test]
async fn rfc1928_5_ipv6_connect_is_accepted_and_displayed_with_brackets() {
    let mut msg = vec![5, 1, 0, 4];
    msg.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    msg.extend_from_slice(&8080u16.to_be_bytes());
    let mut io = Builder::new().read(&msg[..9]).read(&msg[9..]).build();
    let target = read_request(&mut io).await.expect("valid request");
    assert_eq!(target.host, "::1");
    assert_eq!(target.to_string(), "[::1]:8080");
}

#[tokio::test]
async fn rfc1928_5_domain_connect_split_inside_the_name() {
    let mut io = Builder::new()
        .read(&[5, 1, 0, 3, 11])
        .read(b"example")
        .read(b".com")
        .read(&[0, 80])
        .build();
    let target = read_request(&mut io).await.expect("valid request");
    assert_eq!(target.to_string(), "example.com:80");
}

#[tokio::test]
async fn rfc1928_4_bind_reads_the_whole_request_then_replies_07() {
    let mut io = Builder::new()
        .read(&[5, 2, 0, 3, 4])
        .read(b"host")
        .read(&[0, 21])
        .write(&failure(0x07))
        .build();
    let err = read_request(&mut io).await.expect_err("must fail");
    assert!(matches!(err, Socks5Error::UnsupportedCommand(2)), "{err:?}");
}

#[tokio::test]
async fn rfc1928_4_udp_associate_replies_07() {
    let mut io = Builder::new()
        .read(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
        .write(&failure(0x07))
        .build();
    let err = read_request(&mut io).await.expect_err("must fail");
    assert!(matches!(err, Socks5Error::UnsupportedCommand(3)), "{err:?}");
}

#[tokio::test]
async fn rfc1928_5_unknown_address_type_replies_08() {
    let mut io = Builder::new()
        .read(&[5, 1, 0, 9])
        .write(&failure(0x08))
        .build();
    let err = read_request(&mut io).await.expect_err("must fail");
    assert!(
        matches!(err, Socks5Error::UnsupportedAddressType(9)),
        "{err:?}"
    );
}

#[tokio::test]
async fn empty_or_unprintable_domain_names_reply_01() {
    for name in [&b""[..], b"a b", b"evil\r\nHost", b"\xff\xfe"] {
        let mut msg = vec![5, 1, 0, 3, name.len() as u8];
        msg.extend_from_slice(name);
        msg.extend_from_slice(&[0, 80]);
        let mut io = Builder::new().read(&msg).write(&failure(0x01)).build();
        let err = read_request(&mut io).await.expect_err("must fail");
        assert!(
            matches!(err, Socks5Error::BadDomainName),
            "{name:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn rfc1928_6_success_reply_encodes_v4_and_v6_bound_addresses() {
    let v4: SocketAddr = "192.0.2.7:1080".parse().expect("literal");
    let mut io = Builder::new()
        .write(&[5, 0, 0, 1, 192, 0, 2, 7, 0x04, 0x38])
        .build();
    reply(&mut io, Socks5Reply::Succeeded(v4))
        .await
        .expect("written");

    let v6: SocketAddr = "[::1]:2".parse().expect("literal");
    let mut expected = vec![5, 0, 0, 4];
    expected.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    expected.extend_from_slice(&[0, 2]);
    let mut io = Builder::new().write(&expected).build();
    reply(&mut io, Socks5Reply::Succeeded(v6))
        .await
        .expect("written");
}

#[test]
fn rfc1928_6_connect_errors_map_to_reply_codes() {
    let code = |kind: io::ErrorKind| Socks5Reply::from_connect_error(&kind.into()).code();
    assert_eq!(code(io::ErrorKind::ConnectionRefused), 0x05);
    assert_eq!(code(io::ErrorKind::HostUnreachable), 0x04);
    assert_eq!(code(io::ErrorKind::TimedOut), 0x04);
    assert_eq!(code(io::ErrorKind::NetworkUnreachable), 0x03);
    assert_eq!(code(io::ErrorKind::PermissionDenied), 0x02);
    assert_eq!(code(io::ErrorKind::Other), 0x01);
}

#[test]
fn unauthenticated_listeners_only_on_loopback() {
    let lan: SocketAddr = "0.0.0.0:1080".parse().expect("literal");
    let local: SocketAddr = "127.0.0.1:1080".parse().expect("literal");
    let local6: SocketAddr = "[::1]:1080".parse().expect("literal");
    assert!(matches!(
        check_listen_address(lan, &[]),
        Err(Socks5Error::OpenToTheNetwork { addr }) if addr == lan
    ));
    assert!(check_listen_address(local, &[]).is_ok());
    assert!(check_listen_address(local6, &[]).is_ok());
    assert!(check_listen_address(lan, &users()).is_ok());
}

#[test]
fn constant_time_eq_compares_whole_strings() {
    assert!(constant_time_eq(b"secret", b"secret"));
    assert!(!constant_time_eq(b"secret", b"secre"));
    assert!(!constant_time_eq(b"secret", b"secrets"));
    assert!(!constant_time_eq(b"secret", b"Secret"));
    assert!(constant_time_eq(b"", b""));
    assert!(!constant_time_eq(b"", b"\xff"));
}

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn serve_connection_reports_a_refused_target_with_05() {
    let io = Builder::new()
        .read(&[5, 1, 0])
        .write(&[5, 0])
        .read(&[5, 1, 0, 1, 127, 0, 0, 1, 0, 9])
        .write(&failure(0x05))
        .build();
    let result = serve_connection(io, &[], DEADLINE, |target| async move {
        assert_eq!(target.to_string(), "127.0.0.1:9");
        Err::<tokio::io::DuplexStream, _>(io::Error::from(io::ErrorKind::ConnectionRefused))
    })
    .await;
    match result {
        Err(Socks5Error::Connect { target, source }) => {
            assert_eq!(target.port, 9);
            assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn serve_connection_does_not_call_the_connector_after_failed_auth() {
    let io = Builder::new()
        .read(&[5, 1, 2])
        .write(&[5, 2])
        .read(&auth_request("alice", "nope"))
        .write(&[1, 1])
        .build();
    let mut called = false;
    let result = serve_connection(io, &users(), DEADLINE, |_| {
        called = true;
        async { Ok::<tokio::io::DuplexStream, io::Error>(tokio::io::duplex(1).0) }
    })
    .await;
    assert!(matches!(result, Err(Socks5Error::AuthFailed)), "{result:?}");
    assert!(!called, "connector called without authentication");
}

#[tokio::test(start_paused = true)]
async fn serve_connection_gives_up_on_a_silent_client() {
    let (client, _peer) = tokio::io::duplex(64);
    let result = serve_connection(client, &[], DEADLINE, |_| async {
        Ok::<tokio::io::DuplexStream, io::Error>(tokio::io::duplex(1).0)
    })
    .await;
    assert!(
        matches!(result, Err(Socks5Error::HandshakeTimeout)),
        "{result:?}"
    );
}

#[tokio::test]
async fn serve_connection_splices_both_ways_with_half_close() {
    let (client, mut client_peer) = tokio::io::duplex(1024);
    let (upstream, mut origin) = tokio::io::duplex(1024);
    let users = users();
    let server = tokio::spawn(async move {
        serve_connection(client, &users, DEADLINE, move |target| async move {
            assert_eq!(target.to_string(), "intranet.example:8443");
            Ok(upstream)
        })
        .await
    });

    client_peer.write_all(&[5, 1, 2]).await.expect("write");
    let mut buf = [0u8; 2];
    client_peer.read_exact(&mut buf).await.expect("method");
    assert_eq!(buf, [5, 2]);
    client_peer
        .write_all(&auth_request("alice", "wonderland"))
        .await
        .expect("write");
    client_peer.read_exact(&mut buf).await.expect("auth status");
    assert_eq!(buf, [1, 0]);
    let mut req = vec![5, 1, 0, 3, 16];
    req.extend_from_slice(b"intranet.example");
    req.extend_from_slice(&8443u16.to_be_bytes());
    client_peer.write_all(&req).await.expect("write");
    let mut rep = [0u8; 10];
    client_peer.read_exact(&mut rep).await.expect("reply");
    assert_eq!(rep, SUCCESS_UNSPECIFIED);

    // Client -> origin, then the client half-closes: the origin sees EOF but can still answer.
    client_peer.write_all(b"ping").await.expect("write");
    client_peer.shutdown().await.expect("half-close");
    let mut got = Vec::new();
    origin
        .read_to_end(&mut got)
        .await
        .expect("origin reads to EOF");
    assert_eq!(got, b"ping");
    origin
        .write_all(b"pong!")
        .await
        .expect("origin answers after EOF");
    drop(origin);
    let mut answer = Vec::new();
    client_peer
        .read_to_end(&mut answer)
        .await
        .expect("client reads");
    assert_eq!(answer, b"pong!");

    let session = server.await.expect("no panic").expect("session ok");
    assert_eq!(session.auth, Socks5Auth::User("alice".into()));
    assert_eq!((session.client_to_target, session.target_to_client), (4, 5));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
    #[test]
    fn arbitrary_client_bytes_never_panic(
        input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        with_users in proptest::prelude::any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let users = if with_users { users() } else { Vec::new() };
        runtime.block_on(async {
            let client = tokio::io::join(&input[..], tokio::io::sink());
            let _ = serve_connection(client, &users, DEADLINE, |_| async {
                // The far end is gone at once: the splice must end, not hang.
                Ok::<_, io::Error>(tokio::io::duplex(16).0)
            })
            .await;
        });
    }
}

/// Kills curl if a test fails while it runs.
struct KillOnDrop(tokio::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// A one-response HTTP origin on 127.0.0.1 that answers every connection with `body`.
async fn spawn_origin(body: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind origin");
    let addr = listener.local_addr().expect("origin addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

/// Runs a SOCKS5 listener serving with `users`; the connector dials only loopback.
async fn spawn_socks5(users: Vec<(String, Password)>, origin: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind socks");
    let addr = listener.local_addr().expect("socks addr");
    let users = std::sync::Arc::new(users);
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let users = users.clone();
            tokio::spawn(async move {
                let _ = serve_connection(conn, &users, DEADLINE, |target| async move {
                    // curl sends the host name as given; anything else is a test failure.
                    if target.host != "localhost" || target.port != origin.port() {
                        return Err(io::Error::from(io::ErrorKind::PermissionDenied));
                    }
                    tokio::net::TcpStream::connect(origin).await
                })
                .await;
            });
        }
    });
    addr
}

async fn curl_through(socks: SocketAddr, origin: SocketAddr, user: Option<&str>) -> (bool, String) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-s", "--max-time", "20", "--noproxy", ""])
        .arg("--socks5-hostname")
        .arg(socks.to_string())
        .arg(format!("http://localhost:{}/", origin.port()))
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("http_proxy")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped());
    if let Some(user) = user {
        cmd.arg("--proxy-user").arg(user);
    }
    let mut child = KillOnDrop(cmd.spawn().expect("curl is installed"));
    let mut out = String::new();
    let mut stdout = child.0.stdout.take().expect("piped");
    let run = async {
        stdout.read_to_string(&mut out).await.expect("curl output");
        child.0.wait().await.expect("curl exit")
    };
    let status = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("curl finished in time");
    (status.success(), out)
}

#[tokio::test]
async fn curl_socks5_hostname_without_users() {
    let origin = spawn_origin("hello through socks").await;
    let socks = spawn_socks5(Vec::new(), origin).await;
    let (ok, body) = curl_through(socks, origin, None).await;
    assert!(ok, "curl failed");
    assert_eq!(body, "hello through socks");
}

#[tokio::test]
async fn curl_socks5_hostname_with_rfc1929_users() {
    let origin = spawn_origin("authenticated").await;
    let socks = spawn_socks5(users(), origin).await;
    let (ok, body) = curl_through(socks, origin, Some("bob:builder")).await;
    assert!(ok, "curl with the right password failed");
    assert_eq!(body, "authenticated");

    let (ok, body) = curl_through(socks, origin, Some("bob:wrong")).await;
    assert!(!ok, "curl with a wrong password succeeded: {body}");
    let (ok, _) = curl_through(socks, origin, None).await;
    assert!(!ok, "curl without credentials succeeded");
}
