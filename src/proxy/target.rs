//! Request targets: absolute-form URLs and CONNECT's authority-form (RFC 9112 §3.2), and the
//! loop guard that refuses requests naming one of our own listeners.

use std::net::{IpAddr, SocketAddr};

/// The parts of a request target we route and rewrite on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Lower-cased scheme (`http`, `https`, ...).
    pub scheme: String,
    /// Host name or address literal, without IPv6 brackets.
    pub host: String,
    /// Port (the scheme's default when absent).
    pub port: u16,
    /// `host[:port]` as written (userinfo removed): the `Host` value to send.
    pub authority: String,
    /// Origin-form for DIRECT requests: path and query, at least `/`.
    pub path: String,
}

/// Splits `host[:port]` (IPv6 in brackets); `default` is used when the port is absent.
pub fn split_host_port(authority: &str, default: Option<u16>) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return None,
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return None,
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return None;
    }
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
        None => default?,
    };
    Some((host.to_string(), port))
}

impl Target {
    /// Parses an absolute-form target (`scheme://authority/path?query`).
    pub fn parse_absolute(target: &str) -> Option<Self> {
        let (scheme, rest) = target.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return None;
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let default = match scheme.as_str() {
            "http" | "ws" => Some(80),
            "https" | "wss" => Some(443),
            "ftp" => Some(21),
            _ => None,
        };
        let (host, port) = split_host_port(authority, default)?;
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Some(Target {
            scheme,
            host,
            port,
            authority: authority.to_string(),
            path,
        })
    }
}

/// Whether `host:port` is one of our own listeners (a request there would loop forever).
pub fn names_us(host: &str, port: u16, listening: &[SocketAddr]) -> bool {
    let lower = host.to_ascii_lowercase();
    let ip: Option<IpAddr> = lower.parse().ok();
    let loopback_name = lower == "localhost" || lower.ends_with(".localhost");
    listening.iter().any(|l| {
        l.port() == port
            && match ip {
                Some(ip) => {
                    ip == l.ip()
                        || (ip.is_loopback() && (l.ip().is_loopback() || l.ip().is_unspecified()))
                        || (ip.is_unspecified())
                }
                None => loopback_name && (l.ip().is_loopback() || l.ip().is_unspecified()),
            }
    })
}

/// What a client asking us to reach one of our own listen addresses is told (508).
pub const LOOP_REFUSED: &str = "the request names this proxy itself; refusing to loop";

/// `target` for a log line: an absolute URL's user info (`user:password@`) replaced by `***@`,
/// so a password a client put in a URL never reaches the log.
pub fn without_userinfo(target: &str) -> std::borrow::Cow<'_, str> {
    let Some(scheme_end) = target.find("://") else {
        return target.into();
    };
    let rest = &target[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &target[..scheme_end + 3], &rest[at..]).into(),
        None => target.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_form_parts() {
        let t = Target::parse_absolute("http://user:pw@Example.com:8080?q={x}").expect("valid");
        assert_eq!(t.host, "Example.com");
        assert_eq!(t.port, 8080);
        assert_eq!(t.authority, "Example.com:8080");
        assert_eq!(t.path, "/?q={x}");
        let t = Target::parse_absolute("http://[::1]/a").expect("valid");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 80, "/a")
        );
        assert!(Target::parse_absolute("/origin-form").is_none());
        assert!(Target::parse_absolute("http:///nohost").is_none());
        assert!(Target::parse_absolute("http://h:x/").is_none());
    }

    #[test]
    fn authority_form() {
        assert_eq!(split_host_port("h:443", None), Some(("h".into(), 443)));
        assert_eq!(split_host_port("[::1]:22", None), Some(("::1".into(), 22)));
        assert_eq!(split_host_port("h", None), None);
        assert_eq!(split_host_port("::1:22", None), None);
    }

    #[test]
    fn loop_guard() {
        let l: Vec<SocketAddr> = vec!["127.0.0.1:3128".parse().expect("addr")];
        assert!(names_us("127.0.0.1", 3128, &l));
        assert!(names_us("localhost", 3128, &l));
        assert!(names_us("127.0.0.2", 3128, &l));
        assert!(!names_us("127.0.0.1", 80, &l));
        assert!(!names_us("example.com", 3128, &l));
    }

    #[test]
    fn log_lines_never_carry_a_urls_password() {
        assert_eq!(
            without_userinfo("http://alice:s3cret@example.com/p?q=a@b"),
            "http://***@example.com/p?q=a@b"
        );
        assert_eq!(
            without_userinfo("http://example.com/a@b"),
            "http://example.com/a@b"
        );
        assert_eq!(without_userinfo("example.com:443"), "example.com:443");
        assert_eq!(without_userinfo("ftp://u@h"), "ftp://***@h");
    }
}
