//! The SOCKS5 client side (RFC 1928), for `SOCKS5 host:port` entries of a PAC answer: method
//! negotiation offering only "no authentication" (a SOCKS parent named by a PAC never gets
//! credentials), then one CONNECT to the target by name, so the parent resolves it as the PAC
//! author intended.
//!
//! Every read is bounded by the RFC's message sizes and the whole exchange by the caller's
//! timeout; nothing read from the parent is used to size a buffer without a check.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// RFC 1928 §3: the version byte of every message.
const VERSION: u8 = 0x05;
/// RFC 1928 §3: no authentication required.
const METHOD_NO_AUTH: u8 = 0x00;
/// RFC 1928 §4: CONNECT.
const CMD_CONNECT: u8 = 0x01;
/// RFC 1928 §5 address types.
const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;

/// Why a SOCKS5 parent did not give us a connection to the target.
#[derive(Debug, thiserror::Error)]
pub enum Socks5ClientError {
    /// Connecting to or talking with the parent failed.
    #[error("SOCKS5 parent: {0}")]
    Io(#[from] std::io::Error),
    /// The exchange took longer than allowed.
    #[error("SOCKS5 parent did not answer in time")]
    Timeout,
    /// The parent answered something that is not RFC 1928.
    #[error("SOCKS5 parent sent an invalid answer ({0})")]
    Malformed(&'static str),
    /// The parent wants authentication we do not offer.
    #[error("SOCKS5 parent requires authentication")]
    AuthRequired,
    /// The parent refused or failed the CONNECT (RFC 1928 §6 reply code).
    #[error("SOCKS5 parent refused the connection (reply {0})")]
    Refused(u8),
    /// The target name is longer than a SOCKS5 domain can be (255 bytes).
    #[error("target host name too long for SOCKS5")]
    NameTooLong,
}

/// The CONNECT request for `host:port` (RFC 1928 §4): address literals as such, names as
/// ATYP 3 for the parent to resolve.
fn connect_request(host: &str, port: u16) -> Result<Vec<u8>, Socks5ClientError> {
    let mut req = vec![VERSION, CMD_CONNECT, 0x00];
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            req.push(ATYP_IPV4);
            req.extend_from_slice(&v4.octets());
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            req.push(ATYP_IPV6);
            req.extend_from_slice(&v6.octets());
        }
        Err(_) => {
            let len = u8::try_from(host.len()).map_err(|_| Socks5ClientError::NameTooLong)?;
            req.push(ATYP_DOMAIN);
            req.push(len);
            req.extend_from_slice(host.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    Ok(req)
}

/// Asks the SOCKS5 parent on `stream` to connect to `host:port`, within `timeout`. On success
/// `stream` carries the target's bytes.
pub async fn connect_through(
    stream: &mut TcpStream,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<(), Socks5ClientError> {
    let request = connect_request(host, port)?;
    tokio::time::timeout(timeout, exchange(stream, &request))
        .await
        .map_err(|_| Socks5ClientError::Timeout)?
}

async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Result<(), Socks5ClientError> {
    // RFC 1928 §3: offer one method, no authentication.
    stream.write_all(&[VERSION, 1, METHOD_NO_AUTH]).await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    if choice[0] != VERSION {
        return Err(Socks5ClientError::Malformed("version"));
    }
    if choice[1] != METHOD_NO_AUTH {
        return Err(Socks5ClientError::AuthRequired);
    }
    stream.write_all(request).await?;
    // RFC 1928 §6: VER REP RSV ATYP BND.ADDR BND.PORT.
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    if head[0] != VERSION {
        return Err(Socks5ClientError::Malformed("version"));
    }
    if head[1] != 0x00 {
        return Err(Socks5ClientError::Refused(head[1]));
    }
    let addr_len = match head[3] {
        ATYP_IPV4 => 4,
        ATYP_IPV6 => 16,
        ATYP_DOMAIN => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).await?;
            usize::from(len[0])
        }
        _ => return Err(Socks5ClientError::Malformed("address type")),
    };
    // The bound address and port: read and ignored (the parent's own side, not ours to use).
    let mut bound = [0u8; 255 + 2];
    stream.read_exact(&mut bound[..addr_len + 2]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1928_4_connect_requests() {
        assert_eq!(
            connect_request("10.1.2.3", 80).expect("v4"),
            vec![5, 1, 0, 1, 10, 1, 2, 3, 0, 80]
        );
        assert_eq!(
            connect_request("a.example", 443).expect("name"),
            [&[5u8, 1, 0, 3, 9][..], b"a.example", &[1, 187]].concat()
        );
        assert_eq!(connect_request("::1", 1).expect("v6")[3], ATYP_IPV6);
        assert!(matches!(
            connect_request(&"x".repeat(256), 1),
            Err(Socks5ClientError::NameTooLong)
        ));
    }
}
