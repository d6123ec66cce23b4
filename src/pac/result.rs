//! The parser for what `FindProxyForURL` returns: `PROXY host:port; SOCKS5 host:port; DIRECT`.
//!
//! The grammar is the one Netscape's PAC note defined and every browser extended: elements are
//! separated by `;`, each is `DIRECT` or a keyword followed by whitespace and `host[:port]`.
//! Keywords are matched case-insensitively (`PROXY` and `HTTP` mean a plain HTTP proxy, `HTTPS`
//! an HTTP proxy reached over TLS, `SOCKS` and `SOCKS4` a SOCKS4 proxy as in Chrome and Firefox,
//! `SOCKS5` a SOCKS5 proxy). A missing port takes the scheme's default (80, 443, 1080), as
//! Chrome does. Empty elements (`"PROXY a:1;;DIRECT;"`) are skipped, and a result with no
//! element at all means DIRECT, as the Netscape note says of a null string.
//!
//! We are strict about everything else: one malformed element fails the whole result with a
//! typed error, so the caller falls back to its configured parents instead of half-trusting a
//! string it did not understand.

use std::fmt;

/// Longest result string we parse; real PACs return a few dozen bytes.
pub const MAX_RESULT_LEN: usize = 64 * 1024;

/// One way to reach a URL, in the order the PAC listed it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PacProxy {
    /// `DIRECT`: connect to the origin without a proxy.
    Direct,
    /// A proxy (`PROXY`, `HTTP`, `HTTPS`, `SOCKS`, `SOCKS4`, `SOCKS5`).
    Proxy {
        /// How to speak to the proxy.
        kind: PacProxyKind,
        /// Host name or address literal (IPv6 without brackets, like `config::ParentProxy`).
        host: String,
        /// TCP port (the kind's default when the PAC gave none).
        port: u16,
    },
}

/// The protocol a PAC-named proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacProxyKind {
    /// `PROXY` or `HTTP`: an HTTP proxy over plain TCP.
    Http,
    /// `HTTPS`: an HTTP proxy reached over TLS.
    Https,
    /// `SOCKS` or `SOCKS4`: a SOCKS4 proxy.
    Socks4,
    /// `SOCKS5`: a SOCKS5 proxy (RFC 1928).
    Socks5,
}

impl PacProxyKind {
    /// The port used when the PAC names a host without one.
    pub fn default_port(self) -> u16 {
        match self {
            PacProxyKind::Http => 80,
            PacProxyKind::Https => 443,
            PacProxyKind::Socks4 | PacProxyKind::Socks5 => 1080,
        }
    }

    /// The keyword this kind is written with in a PAC result.
    pub fn keyword(self) -> &'static str {
        match self {
            PacProxyKind::Http => "PROXY",
            PacProxyKind::Https => "HTTPS",
            PacProxyKind::Socks4 => "SOCKS4",
            PacProxyKind::Socks5 => "SOCKS5",
        }
    }
}

impl fmt::Display for PacProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacProxy::Direct => f.write_str("DIRECT"),
            PacProxy::Proxy { kind, host, port } if host.contains(':') => {
                write!(f, "{} [{host}]:{port}", kind.keyword())
            }
            PacProxy::Proxy { kind, host, port } => write!(f, "{} {host}:{port}", kind.keyword()),
        }
    }
}

/// Why a PAC result string was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacResultError {
    /// The string is longer than [`MAX_RESULT_LEN`].
    #[error("PAC result is {len} bytes long, more than the {MAX_RESULT_LEN} accepted")]
    TooLong {
        /// Length of the string.
        len: usize,
    },
    /// An element starts with a word that is not a PAC keyword.
    #[error("PAC result element {index} has unknown keyword {keyword:?}")]
    UnknownKeyword {
        /// 0-based index of the element among the `;`-separated ones.
        index: usize,
        /// The word, truncated to 40 characters.
        keyword: String,
    },
    /// `DIRECT` followed by something.
    #[error("PAC result element {index}: DIRECT takes no address")]
    DirectWithAddress {
        /// 0-based index of the element.
        index: usize,
    },
    /// A proxy keyword without an address.
    #[error("PAC result element {index}: {keyword} needs host:port")]
    MissingAddress {
        /// 0-based index of the element.
        index: usize,
        /// The keyword as written.
        keyword: String,
    },
    /// The address part is not `host`, `host:port` or `[v6]:port`.
    #[error("PAC result element {index}: bad proxy address {address:?}")]
    BadAddress {
        /// 0-based index of the element.
        index: usize,
        /// The address as written, truncated to 80 characters.
        address: String,
    },
}

/// Parses a `FindProxyForURL` result into the proxies to try, in order.
pub fn parse_pac_result(text: &str) -> Result<Vec<PacProxy>, PacResultError> {
    if text.len() > MAX_RESULT_LEN {
        return Err(PacResultError::TooLong { len: text.len() });
    }
    let mut proxies = Vec::new();
    for (index, element) in text.split(';').enumerate() {
        let element = element.trim();
        if element.is_empty() {
            continue;
        }
        proxies.push(parse_element(index, element)?);
    }
    if proxies.is_empty() {
        proxies.push(PacProxy::Direct);
    }
    Ok(proxies)
}

/// Parses one trimmed, non-empty element.
fn parse_element(index: usize, element: &str) -> Result<PacProxy, PacResultError> {
    let (keyword, rest) = match element.find(char::is_whitespace) {
        Some(at) => (&element[..at], element[at..].trim()),
        None => (element, ""),
    };
    let kind = match keyword.to_ascii_uppercase().as_str() {
        "DIRECT" if rest.is_empty() => return Ok(PacProxy::Direct),
        "DIRECT" => return Err(PacResultError::DirectWithAddress { index }),
        "PROXY" | "HTTP" => PacProxyKind::Http,
        "HTTPS" => PacProxyKind::Https,
        "SOCKS" | "SOCKS4" => PacProxyKind::Socks4,
        "SOCKS5" => PacProxyKind::Socks5,
        _ => {
            return Err(PacResultError::UnknownKeyword {
                index,
                keyword: truncate(keyword, 40),
            });
        }
    };
    if rest.is_empty() {
        return Err(PacResultError::MissingAddress {
            index,
            keyword: keyword.to_owned(),
        });
    }
    let bad = || PacResultError::BadAddress {
        index,
        address: truncate(rest, 80),
    };
    let (host, port) = split_host_port(rest).ok_or_else(bad)?;
    let port = match port {
        None => kind.default_port(),
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(bad()),
            }
        }
        Some(_) => return Err(bad()),
    };
    if !valid_host(host) {
        return Err(bad());
    }
    Ok(PacProxy::Proxy {
        kind,
        host: host.to_owned(),
        port,
    })
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`; `None` when the shape is wrong.
fn split_host_port(address: &str) -> Option<(&str, Option<&str>)> {
    if let Some(bracketed) = address.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return None;
        }
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match address.split_once(':') {
        None => Some((address, None)),
        Some((host, port)) => Some((host, Some(port))),
    }
}

/// A DNS name or IPv4 literal as a proxy host: letters, digits, `-`, `_` and `.`, or an IPv6
/// literal that came out of brackets.
fn valid_host(host: &str) -> bool {
    if host.contains(':') {
        return host.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// At most `max` characters of `text`, for error messages.
fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn proxy(kind: PacProxyKind, host: &str, port: u16) -> PacProxy {
        PacProxy::Proxy {
            kind,
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn every_keyword_parses_in_order() {
        let got = parse_pac_result(
            "PROXY a:1; HTTP b:2; HTTPS c:3; SOCKS d:4; SOCKS4 e:5; SOCKS5 f:6; DIRECT",
        )
        .expect("valid result");
        assert_eq!(
            got,
            vec![
                proxy(PacProxyKind::Http, "a", 1),
                proxy(PacProxyKind::Http, "b", 2),
                proxy(PacProxyKind::Https, "c", 3),
                proxy(PacProxyKind::Socks4, "d", 4),
                proxy(PacProxyKind::Socks4, "e", 5),
                proxy(PacProxyKind::Socks5, "f", 6),
                PacProxy::Direct,
            ]
        );
    }

    #[test]
    fn whitespace_case_and_empty_elements_are_tolerated() {
        let got = parse_pac_result(" \tproxy   Parent.Corp:8080 ;; direct ;\n").expect("valid");
        assert_eq!(
            got,
            vec![
                proxy(PacProxyKind::Http, "Parent.Corp", 8080),
                PacProxy::Direct
            ]
        );
    }

    #[test]
    fn missing_port_takes_the_kind_default() {
        let got = parse_pac_result("PROXY p; HTTPS q; SOCKS5 r").expect("valid");
        assert_eq!(
            got,
            vec![
                proxy(PacProxyKind::Http, "p", 80),
                proxy(PacProxyKind::Https, "q", 443),
                proxy(PacProxyKind::Socks5, "r", 1080),
            ]
        );
    }

    #[test]
    fn ipv6_literals_in_brackets() {
        let got = parse_pac_result("PROXY [::1]:3128; PROXY [fe80::2]").expect("valid");
        assert_eq!(
            got,
            vec![
                proxy(PacProxyKind::Http, "::1", 3128),
                proxy(PacProxyKind::Http, "fe80::2", 80)
            ]
        );
        assert_eq!(got[0].to_string(), "PROXY [::1]:3128");
    }

    #[test]
    fn empty_result_means_direct() {
        assert_eq!(parse_pac_result("").expect("valid"), vec![PacProxy::Direct]);
        assert_eq!(
            parse_pac_result(" ; ").expect("valid"),
            vec![PacProxy::Direct]
        );
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(matches!(
            parse_pac_result("PROXY a:1; FOO b:2"),
            Err(PacResultError::UnknownKeyword { index: 1, .. })
        ));
        assert!(matches!(
            parse_pac_result("DIRECT x:1"),
            Err(PacResultError::DirectWithAddress { index: 0 })
        ));
        assert!(matches!(
            parse_pac_result("PROXY"),
            Err(PacResultError::MissingAddress { .. })
        ));
        for bad in [
            "PROXY a:0",
            "PROXY a:65536",
            "PROXY a:+80",
            "PROXY a:",
            "PROXY :80",
            "PROXY a b:1",
            "PROXY a/b:1",
            "PROXY [zz]:1",
            "PROXY [::1]x",
            "PROXY ::1:80",
            "PROXY user@host:1",
        ] {
            assert!(
                matches!(
                    parse_pac_result(bad),
                    Err(PacResultError::BadAddress { .. })
                ),
                "{bad} should be a bad address"
            );
        }
        let long = "DIRECT;".repeat(MAX_RESULT_LEN / 7 + 1);
        assert!(matches!(
            parse_pac_result(&long),
            Err(PacResultError::TooLong { .. })
        ));
    }

    fn kind_strategy() -> impl Strategy<Value = PacProxyKind> {
        prop_oneof![
            Just(PacProxyKind::Http),
            Just(PacProxyKind::Https),
            Just(PacProxyKind::Socks4),
            Just(PacProxyKind::Socks5),
        ]
    }

    fn proxy_strategy() -> impl Strategy<Value = PacProxy> {
        prop_oneof![
            Just(PacProxy::Direct),
            (kind_strategy(), "[a-z0-9][a-z0-9.-]{0,20}", 1u16..)
                .prop_map(|(kind, host, port)| { PacProxy::Proxy { kind, host, port } }),
            (kind_strategy(), any::<std::net::Ipv6Addr>(), 1u16..).prop_map(|(kind, ip, port)| {
                PacProxy::Proxy {
                    kind,
                    host: ip.to_string(),
                    port,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn never_panics_on_any_string(text in ".{0,200}") {
            let _ = parse_pac_result(&text);
        }

        #[test]
        fn never_panics_on_near_miss_strings(
            text in "((PROXY|proxy|DIRECT|SOCKS5|HTTPS|HTTP|SOCKS4?)?[ \t]*[a-z0-9:\\[\\].]{0,12}[ ;]*){0,6}"
        ) {
            let _ = parse_pac_result(&text);
        }

        #[test]
        fn display_then_parse_round_trips(list in proptest::collection::vec(proxy_strategy(), 1..6)) {
            let text = list.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            prop_assert_eq!(parse_pac_result(&text), Ok(list));
        }
    }
}
