//! The SOCKS5 server side (`-O` / `SOCKS5Proxy`, `-R` / `SOCKS5Users`): RFC 1928 method
//! negotiation and CONNECT requests, RFC 1929 username/password authentication.
//!
//! Everything here is a protocol function over any `AsyncRead + AsyncWrite + Unpin` stream, so
//! the listener (owned by the proxy) decides where connections come from and
//! [`serve_connection`] takes the way to reach a target as a closure: the proxy plugs in its
//! CONNECT-through-the-parent (or DIRECT for `NoProxy`) there.
//!
//! Differences from CNTLM 0.92.3, on purpose: IPv6 targets (ATYP 4) are accepted, BIND and
//! UDP ASSOCIATE get the proper "command not supported" reply instead of a dropped connection,
//! and connection failures are reported with the matching RFC 1928 §6 code.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::auth::Password;

/// RFC 1928 §3: the protocol version byte of every SOCKS5 message.
const VERSION: u8 = 0x05;
/// RFC 1929 §2: the version byte of the username/password sub-negotiation.
const AUTH_VERSION: u8 = 0x01;

/// RFC 1928 §3 method: no authentication required.
const METHOD_NO_AUTH: u8 = 0x00;
/// RFC 1928 §3 method: username/password (RFC 1929).
const METHOD_USER_PASS: u8 = 0x02;
/// RFC 1928 §3: "no acceptable methods".
const METHOD_NONE_ACCEPTABLE: u8 = 0xFF;

/// RFC 1928 §4 commands.
const CMD_CONNECT: u8 = 0x01;

/// RFC 1928 §4/§5 address types.
const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;

/// How long a failed connection keeps reading what the client still sends, so that closing
/// with unread bytes does not turn into a TCP reset that destroys our error reply in flight.
const LINGER: Duration = Duration::from_secs(2);
/// How many bytes that lingering read discards at most.
const LINGER_BYTES: u64 = 64 * 1024;

/// Where a client asked to be connected (RFC 1928 §4 DST.ADDR / DST.PORT).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Socks5Target {
    /// A domain name as sent (ATYP 3), or an address literal (IPv6 without brackets).
    pub host: String,
    /// The destination port.
    pub port: u16,
}

impl fmt::Display for Socks5Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Who the client authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Socks5Auth {
    /// No users are configured: method 0x00 was selected.
    Anonymous,
    /// RFC 1929 succeeded for this configured user name.
    User(String),
}

/// A reply to a request (RFC 1928 §6, field REP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socks5Reply {
    /// 0x00, with the server-bound address (BND.ADDR / BND.PORT).
    Succeeded(SocketAddr),
    /// 0x01 general SOCKS server failure.
    GeneralFailure,
    /// 0x02 connection not allowed by ruleset.
    NotAllowed,
    /// 0x03 network unreachable.
    NetworkUnreachable,
    /// 0x04 host unreachable.
    HostUnreachable,
    /// 0x05 connection refused.
    ConnectionRefused,
    /// 0x07 command not supported.
    CommandNotSupported,
    /// 0x08 address type not supported.
    AddressTypeNotSupported,
}

impl Socks5Reply {
    /// The REP byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            Socks5Reply::Succeeded(_) => 0x00,
            Socks5Reply::GeneralFailure => 0x01,
            Socks5Reply::NotAllowed => 0x02,
            Socks5Reply::NetworkUnreachable => 0x03,
            Socks5Reply::HostUnreachable => 0x04,
            Socks5Reply::ConnectionRefused => 0x05,
            Socks5Reply::CommandNotSupported => 0x07,
            Socks5Reply::AddressTypeNotSupported => 0x08,
        }
    }

    /// The failure reply that tells the client why a connection attempt failed.
    ///
    /// A timeout is reported as "host unreachable", as other SOCKS servers do: RFC 1928 has
    /// no code for it and "TTL expired" (0x06) means something else.
    pub fn from_connect_error(error: &io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::ConnectionRefused => Socks5Reply::ConnectionRefused,
            io::ErrorKind::HostUnreachable | io::ErrorKind::TimedOut => {
                Socks5Reply::HostUnreachable
            }
            io::ErrorKind::NetworkUnreachable => Socks5Reply::NetworkUnreachable,
            io::ErrorKind::PermissionDenied => Socks5Reply::NotAllowed,
            _ => Socks5Reply::GeneralFailure,
        }
    }
}

/// Why a SOCKS5 connection ended without a tunnel.
#[derive(Debug, thiserror::Error)]
pub enum Socks5Error {
    /// Reading from or writing to the client during the handshake failed (an early EOF
    /// included).
    #[error("SOCKS5 client connection failed")]
    Io(#[from] io::Error),
    /// An unauthenticated SOCKS5 listener on a non-loopback address: anyone who can reach
    /// it could use the parent proxy with our credentials.
    #[error(
        "SOCKS5 listener {addr} would be open to anyone: configure SOCKS5Users (-R) or bind it to a loopback address"
    )]
    OpenToTheNetwork {
        /// The listen address refused.
        addr: SocketAddr,
    },
    /// The first byte was not 5 (perhaps a SOCKS4 client or an HTTP request).
    #[error("not a SOCKS5 client (version byte {0:#04x})")]
    BadVersion(u8),
    /// The client offered no method we accept (no-auth without users, user/pass with users).
    #[error("the client offered no acceptable authentication method")]
    NoAcceptableMethod,
    /// The RFC 1929 sub-negotiation did not start with version 1.
    #[error("bad username/password sub-negotiation version {0:#04x}")]
    BadAuthVersion(u8),
    /// RFC 1929 credentials matched no configured user.
    #[error("SOCKS5 authentication failed")]
    AuthFailed,
    /// BIND, UDP ASSOCIATE or an unknown command; the client got reply 0x07.
    #[error("unsupported SOCKS5 command {0:#04x}")]
    UnsupportedCommand(u8),
    /// An unknown address type; the client got reply 0x08.
    #[error("unsupported SOCKS5 address type {0:#04x}")]
    UnsupportedAddressType(u8),
    /// The domain name was empty or not printable ASCII; the client got reply 0x01.
    #[error("invalid domain name in SOCKS5 request")]
    BadDomainName,
    /// The handshake did not finish within the deadline.
    #[error("SOCKS5 handshake timed out")]
    HandshakeTimeout,
    /// The connector could not reach the target; the client got the matching reply.
    #[error("cannot connect to {target}")]
    Connect {
        /// Where the client wanted to go.
        target: Socks5Target,
        /// Why the connector failed.
        #[source]
        source: io::Error,
    },
    /// The tunnel failed after the success reply (either side reset, say).
    #[error("tunnel to {target} failed")]
    Tunnel {
        /// Where the client was connected.
        target: Socks5Target,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

/// Refuses to start an unauthenticated SOCKS5 listener anywhere but on loopback.
///
/// CNTLM 0.92.3 only logs "SOCKS5 proxy will NOT require any authentication", even on
/// 0.0.0.0, and with its misspelled `SOCKS5User` keyword a user may believe the port is
/// protected when it is not (cntlm-compat.md §2.4).
pub fn check_listen_address(
    addr: SocketAddr,
    users: &[(String, Password)],
) -> Result<(), Socks5Error> {
    if users.is_empty() && !addr.ip().is_loopback() {
        return Err(Socks5Error::OpenToTheNetwork { addr });
    }
    Ok(())
}

/// RFC 1928 §3 method selection, then RFC 1929 §2 when users are configured.
///
/// With no users, only "no authentication" (0x00) is acceptable; with users, only
/// username/password (0x02), as CNTLM does. Otherwise the client gets 0xFF and an error.
/// User names and passwords are compared with every configured account without stopping
/// at the first difference, so response time does not tell how much of a guess was right.
pub async fn authenticate<S>(
    stream: &mut S,
    users: &[(String, Password)],
) -> Result<Socks5Auth, Socks5Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let version = stream.read_u8().await?;
    if version != VERSION {
        return Err(Socks5Error::BadVersion(version));
    }
    let count = usize::from(stream.read_u8().await?);
    let mut methods = [0u8; 255];
    let methods = &mut methods[..count];
    stream.read_exact(methods).await?;

    let wanted = if users.is_empty() {
        METHOD_NO_AUTH
    } else {
        METHOD_USER_PASS
    };
    if !methods.contains(&wanted) {
        stream.write_all(&[VERSION, METHOD_NONE_ACCEPTABLE]).await?;
        stream.flush().await?;
        return Err(Socks5Error::NoAcceptableMethod);
    }
    stream.write_all(&[VERSION, wanted]).await?;
    stream.flush().await?;
    if users.is_empty() {
        return Ok(Socks5Auth::Anonymous);
    }

    // RFC 1929 §2: VER(1) ULEN(1) UNAME(1..255) PLEN(1) PASSWD(1..255).
    let auth_version = stream.read_u8().await?;
    if auth_version != AUTH_VERSION {
        return Err(Socks5Error::BadAuthVersion(auth_version));
    }
    let name = read_short_field(stream).await?;
    let password = read_short_field(stream).await?;

    let mut matched: Option<&str> = None;
    for (user, secret) in users {
        let ok = constant_time_eq(user.as_bytes(), &name) as u8
            & constant_time_eq(secret.expose().as_bytes(), &password) as u8;
        if ok == 1 && matched.is_none() {
            matched = Some(user);
        }
    }
    // RFC 1929 §2: STATUS 0x00 is success; anything else means the server closes.
    match matched {
        Some(user) => {
            stream.write_all(&[AUTH_VERSION, 0x00]).await?;
            stream.flush().await?;
            Ok(Socks5Auth::User(user.to_owned()))
        }
        None => {
            stream.write_all(&[AUTH_VERSION, 0x01]).await?;
            stream.flush().await?;
            Err(Socks5Error::AuthFailed)
        }
    }
}

/// Reads one RFC 1929 length-prefixed field; the bytes are wiped when dropped.
async fn read_short_field<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Zeroizing<Vec<u8>>, Socks5Error> {
    let len = usize::from(stream.read_u8().await?);
    let mut field = Zeroizing::new(vec![0u8; len]);
    stream.read_exact(&mut field).await?;
    Ok(field)
}

/// Compares two byte strings without an early exit on the first difference.
fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != given.len());
    for (i, &byte) in given.iter().enumerate() {
        diff |= byte ^ expected.get(i).copied().unwrap_or(!byte);
    }
    diff == 0
}

/// Reads the RFC 1928 §4 request and returns the CONNECT target.
///
/// Protocol failures are answered here before the error is returned: an unsupported command
/// gets 0x07 (after the whole request was read), an unknown address type 0x08, a bad domain
/// name 0x01. The caller only answers the CONNECT outcome, with [`reply`].
pub async fn read_request<S>(stream: &mut S) -> Result<Socks5Target, Socks5Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    let [version, command, _reserved, address_type] = head;
    if version != VERSION {
        return Err(Socks5Error::BadVersion(version));
    }
    let host = match address_type {
        ATYP_IPV4 => {
            let mut octets = [0u8; 4];
            stream.read_exact(&mut octets).await?;
            Ok(Ipv4Addr::from(octets).to_string())
        }
        ATYP_IPV6 => {
            let mut octets = [0u8; 16];
            stream.read_exact(&mut octets).await?;
            Ok(Ipv6Addr::from(octets).to_string())
        }
        ATYP_DOMAIN => {
            // RFC 1928 §5: one length octet, then the name, with no terminating NUL.
            let len = usize::from(stream.read_u8().await?);
            let mut name = vec![0u8; len];
            stream.read_exact(&mut name).await?;
            match String::from_utf8(name) {
                Ok(name) if is_plausible_host(&name) => Ok(name),
                _ => Err(Socks5Error::BadDomainName),
            }
        }
        other => {
            // The address length is unknown, so the rest of the request cannot be read.
            reply(stream, Socks5Reply::AddressTypeNotSupported).await?;
            return Err(Socks5Error::UnsupportedAddressType(other));
        }
    };
    let port = stream.read_u16().await?;
    let host = match host {
        Ok(host) => host,
        Err(error) => {
            reply(stream, Socks5Reply::GeneralFailure).await?;
            return Err(error);
        }
    };
    if command != CMD_CONNECT {
        // BIND (0x02) and UDP ASSOCIATE (0x03) make no sense through an HTTP parent.
        reply(stream, Socks5Reply::CommandNotSupported).await?;
        return Err(Socks5Error::UnsupportedCommand(command));
    }
    Ok(Socks5Target { host, port })
}

/// A domain name we are willing to pass on: non-empty, printable ASCII, no spaces, so it can
/// never inject anything into the CONNECT line sent to the parent.
fn is_plausible_host(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// Sends an RFC 1928 §6 reply. Failures carry the unspecified IPv4 address 0.0.0.0:0.
pub async fn reply<S>(stream: &mut S, reply: Socks5Reply) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let bound = match reply {
        Socks5Reply::Succeeded(addr) => addr,
        _ => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
    };
    let mut message = Vec::with_capacity(22);
    message.extend_from_slice(&[VERSION, reply.code(), 0x00]);
    match bound {
        SocketAddr::V4(v4) => {
            message.push(ATYP_IPV4);
            message.extend_from_slice(&v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            message.push(ATYP_IPV6);
            message.extend_from_slice(&v6.ip().octets());
        }
    }
    message.extend_from_slice(&bound.port().to_be_bytes());
    stream.write_all(&message).await?;
    stream.flush().await
}

/// What one served SOCKS5 connection did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socks5Session {
    /// Who the client authenticated as.
    pub auth: Socks5Auth,
    /// Where it was connected.
    pub target: Socks5Target,
    /// Bytes copied from the client to the target.
    pub client_to_target: u64,
    /// Bytes copied from the target to the client.
    pub target_to_client: u64,
}

/// Serves one SOCKS5 client: negotiation, request, `connect`, reply, then a two-way splice
/// with half-close (each direction's EOF is passed on as a write shutdown while the other
/// direction keeps flowing).
///
/// The negotiation and request must complete within `handshake_deadline`; the splice itself
/// has no deadline here (the caller wraps it for idle timeouts and shutdown drain). The
/// success reply carries 0.0.0.0:0 as the bound address, as CNTLM's does: the real one is
/// the parent's and unknown to us. When the connection fails before the splice, the client
/// gets the matching reply and its remaining bytes are read for a moment before closing, so
/// the reply is not lost to a TCP reset.
pub async fn serve_connection<S, C, F, U>(
    mut client: S,
    users: &[(String, Password)],
    handshake_deadline: Duration,
    connect: C,
) -> Result<Socks5Session, Socks5Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: FnOnce(Socks5Target) -> F,
    F: Future<Output = io::Result<U>>,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = async {
        let auth = authenticate(&mut client, users).await?;
        let target = read_request(&mut client).await?;
        Ok::<_, Socks5Error>((auth, target))
    };
    let outcome = match tokio::time::timeout(handshake_deadline, handshake).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Socks5Error::HandshakeTimeout),
    };
    let (auth, target) = match outcome {
        Ok(parts) => parts,
        Err(error) => {
            linger_close(&mut client).await;
            return Err(error);
        }
    };

    let mut upstream = match connect(target.clone()).await {
        Ok(upstream) => upstream,
        Err(source) => {
            reply(&mut client, Socks5Reply::from_connect_error(&source)).await?;
            linger_close(&mut client).await;
            return Err(Socks5Error::Connect { target, source });
        }
    };
    let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    reply(&mut client, Socks5Reply::Succeeded(unspecified)).await?;
    let (client_to_target, target_to_client) =
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok(counts) => counts,
            Err(source) => return Err(Socks5Error::Tunnel { target, source }),
        };
    Ok(Socks5Session {
        auth,
        target,
        client_to_target,
        target_to_client,
    })
}

/// Half-closes our side, then discards what the client still sends (bounded in bytes and
/// time) so that the final close does not reset the connection under our last reply.
async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let _ = stream.shutdown().await;
    let mut rest = stream.take(LINGER_BYTES);
    let _ = tokio::time::timeout(LINGER, tokio::io::copy(&mut rest, &mut tokio::io::sink())).await;
}

#[cfg(test)]
#[path = "socks5_tests.rs"]
mod tests;
