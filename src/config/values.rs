//! Parsers for the value syntaxes shared by config keywords and command-line flags.
//!
//! Each parser is pure (no DNS, no files) and returns a `ValueError` that says what would be
//! valid; the caller adds the origin and keyword. IPv6 literals are accepted in brackets
//! everywhere an address is (`[::1]:3128`), which CNTLM 0.92.3's `:`-splitting cannot do.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

use crate::auth::Password;
use crate::config::report::ValueError;
use crate::config::{HeaderSubstitution, ParentProxy};

/// A `Listen` / `-l` / `SOCKS5Proxy` / tunnel-side spec before `Gateway` is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSpec {
    /// The address written, if any.
    pub addr: Option<IpAddr>,
    /// The port (0 lets the OS choose, handy for tests).
    pub port: u16,
}

/// Whether port-only specs bind every address (`Gateway yes`) or loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Exposure {
    /// 127.0.0.1: only local applications can connect (the default).
    #[default]
    Loopback,
    /// 0.0.0.0: other hosts (VMs, the LAN) can connect; guard it with `Allow`/`Deny`.
    Gateway,
}

impl ListenSpec {
    /// The socket address to bind: the written address, else loopback or every address.
    pub fn resolve(self, exposure: Exposure) -> SocketAddr {
        let addr = self.addr.unwrap_or(match exposure {
            Exposure::Loopback => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Exposure::Gateway => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        });
        SocketAddr::new(addr, self.port)
    }
}

/// A `Tunnel` / `-L` spec before `Gateway` is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRaw {
    /// Local side.
    pub listen: ListenSpec,
    /// Remote host (IPv6 without brackets).
    pub host: String,
    /// Remote port.
    pub port: u16,
}

const LISTEN_SYNTAX: &str = "[address:]port";
const TUNNEL_SYNTAX: &str = "[laddress:]lport:rhost:rport";
const PROXY_SYNTAX: &str = "host:port or host port";

fn invalid(value: &str, what: &'static str, expected: &'static str) -> ValueError {
    ValueError::Invalid {
        value: value.to_string(),
        what,
        expected,
    }
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses an address literal: IPv4, IPv6 (brackets optional here), or `localhost`.
fn parse_addr(text: &str) -> Option<IpAddr> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if bare.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    bare.parse().ok()
}

/// Splits on `:` outside brackets: `[::1]:80:host:81` -> `[::1]`, `80`, `host`, `81`.
fn split_colons(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `Listen` / `-l` / `SOCKS5Proxy` / `-O`: `[address:]port`, e.g. `3128`, `10.0.0.1:3128`,
/// `[::1]:3128`.
pub fn parse_listen(text: &str) -> Result<ListenSpec, ValueError> {
    let text = text.trim();
    let parts = split_colons(text);
    match parts.as_slice() {
        [port] => parse_port(port)
            .map(|port| ListenSpec { addr: None, port })
            .ok_or_else(|| invalid(text, "a port", LISTEN_SYNTAX)),
        [addr, port] => {
            let addr =
                parse_addr(addr).ok_or_else(|| invalid(text, "an address", LISTEN_SYNTAX))?;
            let port = parse_port(port).ok_or_else(|| invalid(text, "a port", LISTEN_SYNTAX))?;
            Ok(ListenSpec {
                addr: Some(addr),
                port,
            })
        }
        _ => Err(invalid(
            text,
            "a listen address",
            "[address:]port, IPv6 in brackets: [::1]:3128",
        )),
    }
}

/// `Proxy` / positional arguments: `host:port`, `[v6]:port` or `host port`.
pub fn parse_proxy(text: &str) -> Result<ParentProxy, ValueError> {
    let text = text.trim();
    // `user:password@proxy:8080` is a common mistake (credentials belong in Username and
    // Password): say so without repeating the password in the error.
    if text.contains('@') {
        return Err(invalid(
            "<user info>@…",
            "a proxy address without user:password@ (use Username and Password)",
            PROXY_SYNTAX,
        ));
    }
    let (host, port) = match text.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((host, port)) => (host, port.trim()),
        None => match split_colons(text).as_slice() {
            [host, port] => (*host, *port),
            _ => return Err(invalid(text, "a proxy address", PROXY_SYNTAX)),
        },
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host_ok = !host.is_empty()
        && !host.contains("//")
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !host_ok || (host.contains(':') && host.parse::<Ipv6Addr>().is_err()) {
        return Err(invalid(text, "a proxy address", PROXY_SYNTAX));
    }
    match parse_port(port) {
        Some(port) if port != 0 => Ok(ParentProxy {
            host: host.to_string(),
            port,
        }),
        _ => Err(invalid(text, "a proxy address with a port", PROXY_SYNTAX)),
    }
}

/// An ACL network, and whether host bits were set below the mask (CNTLM warns "Subnet
/// definition might be incorrect"; we keep the network part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclNetworks {
    /// The networks: one, or IPv4 and IPv6 "everything" for `*` and `0/0`.
    pub networks: Vec<IpNet>,
    /// Whether the address had bits set outside its mask.
    pub host_bits_set: bool,
}

/// `Allow` / `Deny` / `-A` / `-D`: `ip[/mask]` (IPv4 or IPv6), `*` or `0/0` for everything.
///
/// Host names are refused rather than resolved: CNTLM resolves them once at start, which
/// we leave out so that reading a config never touches the network.
pub fn parse_acl(text: &str) -> Result<AclNetworks, ValueError> {
    const SYNTAX: &str = "ip[/mask], * or 0/0; host names are not resolved";
    let text = text.trim();
    if text == "*" || text == "0/0" {
        return Ok(AclNetworks {
            networks: vec![
                IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).expect("0 is a valid v4 prefix"),
                IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).expect("0 is a valid v6 prefix"),
            ],
            host_bits_set: false,
        });
    }
    let (addr, mask) = match text.split_once('/') {
        Some((addr, mask)) => (addr, Some(mask)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| invalid(text, "an IP address or network", SYNTAX))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match mask {
        None => max,
        Some(mask) => parse_port(mask)
            .and_then(|m| u8::try_from(m).ok())
            .filter(|m| *m <= max)
            .ok_or_else(|| invalid(text, "a network with a valid mask", SYNTAX))?,
    };
    let net = IpNet::new(addr, prefix).map_err(|_| invalid(text, "a network", SYNTAX))?;
    Ok(AclNetworks {
        host_bits_set: net.trunc() != net,
        networks: vec![net.trunc()],
    })
}

/// `Tunnel` / `-L`: `[laddress:]lport:rhost:rport`, IPv6 in brackets on either side.
pub fn parse_tunnel(text: &str) -> Result<TunnelRaw, ValueError> {
    let text = text.trim();
    let bad = || invalid(text, "a tunnel specification", TUNNEL_SYNTAX);
    let parts = split_colons(text);
    let (addr, lport, host, rport) = match parts.as_slice() {
        [lport, host, rport] => (None, *lport, *host, *rport),
        [addr, lport, host, rport] => (Some(*addr), *lport, *host, *rport),
        _ => return Err(bad()),
    };
    let addr = match addr {
        Some(addr) => Some(parse_addr(addr).ok_or_else(bad)?),
        None => None,
    };
    let lport = parse_port(lport).ok_or_else(bad)?;
    let rport = parse_port(rport).filter(|p| *p != 0).ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(['[', ']', ' ', '/']) {
        return Err(bad());
    }
    Ok(TunnelRaw {
        listen: ListenSpec { addr, port: lport },
        host: host.to_string(),
        port: rport,
    })
}

/// `Flags` / `-F`: C `strtoul(text, 0)` syntax (`0x` hex, leading `0` octal, else decimal),
/// then byte-swapped as CNTLM does, giving the NegotiateFlags value that goes on the wire:
/// `0x06820000` -> `0x00008206` (ntlm-protocol-notes.md §2.1).
pub fn parse_flags(text: &str) -> Result<u32, ValueError> {
    const SYNTAX: &str = "a 32-bit number: 0x hexadecimal, 0 octal or decimal";
    let text = text.trim();
    let parsed = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if text.len() > 1 && text.starts_with('0') {
        u32::from_str_radix(&text[1..], 8).ok()
    } else if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    };
    // from_str_radix accepts a leading '+'; strtoul would too, but keep it strict.
    match parsed {
        Some(value) if !text.contains('+') => Ok(value.swap_bytes()),
        _ => Err(invalid(text, "a flags value", SYNTAX)),
    }
}

/// `Gateway` / `NTLMToBasic`: only `yes` (any case) turns them on, as in CNTLM. The second
/// value says whether the text was neither `yes` nor `no` (worth a warning).
pub fn parse_yes(text: &str) -> (bool, bool) {
    let text = text.trim();
    if text.eq_ignore_ascii_case("yes") {
        (true, false)
    } else {
        (false, !text.eq_ignore_ascii_case("no"))
    }
}

/// `ProxyFallback`: `direct` (go DIRECT when every parent is down) or `none` (answer 502).
pub fn parse_fallback(text: &str) -> Result<bool, ValueError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "direct" => Ok(true),
        "none" | "no" => Ok(false),
        _ => Err(invalid(text, "a fallback", "direct or none")),
    }
}

/// `Header` / `-r`: `Name: value`.
pub fn parse_header(text: &str) -> Result<HeaderSubstitution, ValueError> {
    let bad = || invalid(text, "a header", "Name: value");
    let (name, value) = text.split_once(':').ok_or_else(bad)?;
    let name = name.trim();
    // RFC 9110 §5.6.2 token characters.
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(is_tchar) || value.contains(['\r', '\n']) {
        return Err(bad());
    }
    Ok(HeaderSubstitution {
        name: name.to_string(),
        value: value.trim().to_string(),
    })
}

/// `SOCKS5Users` / `-R`: `user:password`; the value is never echoed in errors.
pub fn parse_socks5_user(text: &str) -> Result<(String, Password), ValueError> {
    let bad = ValueError::InvalidSecret {
        what: "a SOCKS5 account",
        expected: "user:password, both non-empty",
    };
    match text.split_once(':') {
        Some((user, pass)) if !user.is_empty() && !pass.is_empty() => {
            Ok((user.to_string(), Password::new(pass)))
        }
        _ => Err(bad),
    }
}

/// `NoProxy` / `-N`: patterns separated by commas and/or blanks.
pub fn parse_no_proxy(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// `ISAScannerSize` / `-S`: a size in KiB (0 = no limit).
pub fn parse_kib(text: &str) -> Result<u64, ValueError> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(text, "a size", "a number of KiB, 0 for no limit"));
    }
    text.parse()
        .map_err(|_| invalid(text, "a size", "a number of KiB, 0 for no limit"))
}

/// `MaxConnections`: how many client connections are served at once, 1 to 1,000,000 (each
/// costs up to two descriptors, so the open-file limit is the practical bound).
pub fn parse_max_connections(text: &str) -> Result<usize, ValueError> {
    let text = text.trim();
    let expected = "a number of connections from 1 to 1000000";
    match text.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) && text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(invalid(text, "a connection count", expected)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(addr: Option<&str>, port: u16) -> ListenSpec {
        ListenSpec {
            addr: addr.map(|a| a.parse().expect("test address")),
            port,
        }
    }

    #[test]
    fn listen_port_address_and_bracketed_ipv6() {
        assert_eq!(parse_listen("3128"), Ok(spec(None, 3128)));
        assert_eq!(
            parse_listen("10.0.0.1:3128"),
            Ok(spec(Some("10.0.0.1"), 3128))
        );
        assert_eq!(parse_listen("[::1]:3128"), Ok(spec(Some("::1"), 3128)));
        assert_eq!(
            parse_listen("localhost:3128"),
            Ok(spec(Some("127.0.0.1"), 3128))
        );
        assert_eq!(parse_listen("0"), Ok(spec(None, 0)));
    }

    #[test]
    fn listen_errors_say_what_is_valid() {
        let err = parse_listen("31a28").expect_err("not a port");
        assert_eq!(
            err.to_string(),
            "\"31a28\" is not a port (expected [address:]port)"
        );
        assert!(parse_listen("70000").is_err());
        assert!(parse_listen("host.example:3128").is_err());
        assert!(parse_listen("::1:3128").is_err());
        assert!(parse_listen("").is_err());
    }

    #[test]
    fn listen_resolves_port_only_specs_by_exposure() {
        let s = spec(None, 3128);
        assert_eq!(s.resolve(Exposure::Loopback).to_string(), "127.0.0.1:3128");
        assert_eq!(s.resolve(Exposure::Gateway).to_string(), "0.0.0.0:3128");
        let s = spec(Some("10.1.2.3"), 1);
        assert_eq!(s.resolve(Exposure::Gateway).to_string(), "10.1.2.3:1");
    }

    #[test]
    fn proxy_both_cntlm_forms_and_ipv6() {
        let p = |h: &str, port| ParentProxy {
            host: h.into(),
            port,
        };
        assert_eq!(parse_proxy("proxy.corp:8080"), Ok(p("proxy.corp", 8080)));
        assert_eq!(parse_proxy("proxy.corp 8080"), Ok(p("proxy.corp", 8080)));
        assert_eq!(parse_proxy("proxy.corp\t 8080"), Ok(p("proxy.corp", 8080)));
        assert_eq!(parse_proxy("[fd00::1]:3128"), Ok(p("fd00::1", 3128)));
        for bad in [
            "proxy",
            "proxy:",
            "proxy:0",
            "http://proxy:8080",
            "a:b:c",
            "proxy x",
            "",
        ] {
            assert!(parse_proxy(bad).is_err(), "{bad}");
        }
        let err = parse_proxy("alice:s3cret@proxy.corp:8080").expect_err("user info refused");
        assert!(!format!("{err}").contains("s3cret"), "{err}");
    }

    #[test]
    fn acl_forms() {
        let one = |t: &str| parse_acl(t).expect("valid acl").networks;
        assert_eq!(
            one("10.0.0.0/8"),
            vec!["10.0.0.0/8".parse::<IpNet>().expect("test net")]
        );
        assert_eq!(
            one("127.0.0.1"),
            vec!["127.0.0.1/32".parse::<IpNet>().expect("test net")]
        );
        assert_eq!(
            one("fd00::/8"),
            vec!["fd00::/8".parse::<IpNet>().expect("test net")]
        );
        assert_eq!(one("*").len(), 2);
        assert_eq!(one("0/0"), one("*"));
        let loose = parse_acl("10.1.2.3/8").expect("valid");
        assert!(loose.host_bits_set);
        assert_eq!(loose.networks[0].to_string(), "10.0.0.0/8");
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "host.example",
            "10.0.0.0/",
            "10.0.0.0/x",
        ] {
            assert!(parse_acl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tunnel_forms() {
        let t = parse_tunnel("11443:remote.example:443").expect("valid");
        assert_eq!(t.listen, spec(None, 11443));
        assert_eq!((t.host.as_str(), t.port), ("remote.example", 443));
        let t = parse_tunnel("127.0.0.2:2222:host:22").expect("valid");
        assert_eq!(t.listen, spec(Some("127.0.0.2"), 2222));
        let t = parse_tunnel("[::1]:2222:[fd00::5]:22").expect("valid");
        assert_eq!(t.listen, spec(Some("::1"), 2222));
        assert_eq!(t.host, "fd00::5");
        for bad in ["1:2", "a:1:h:2:3", "x:host:22", "1:host:0", "1::22"] {
            assert!(parse_tunnel(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_are_strtoul_base0_and_byte_swapped() {
        assert_eq!(parse_flags("0x06820000"), Ok(0x0000_8206));
        assert_eq!(parse_flags("0X07820000"), Ok(0x0000_8207));
        assert_eq!(parse_flags("109182976"), Ok(0x0000_8206)); // 0x06820000 in decimal
        assert_eq!(parse_flags("010"), Ok(8u32.swap_bytes()));
        assert_eq!(parse_flags("0"), Ok(0));
        for bad in ["", "0x", "12z", "0x1ffffffff", "-1", "+5", "09"] {
            assert!(parse_flags(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_yes_turns_on() {
        assert_eq!(parse_yes("yes"), (true, false));
        assert_eq!(parse_yes("YES"), (true, false));
        assert_eq!(parse_yes("no"), (false, false));
        assert_eq!(parse_yes("on"), (false, true));
        assert_eq!(parse_yes("1"), (false, true));
    }

    #[test]
    fn fallback_values() {
        assert_eq!(parse_fallback("direct"), Ok(true));
        assert_eq!(parse_fallback("None"), Ok(false));
        assert!(parse_fallback("maybe").is_err());
    }

    #[test]
    fn header_substitution() {
        let h = parse_header("User-Agent: Mozilla/5.0 (X)").expect("valid");
        assert_eq!(
            (h.name.as_str(), h.value.as_str()),
            ("User-Agent", "Mozilla/5.0 (X)")
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": v").is_err());
        assert!(parse_header("Bad Name: v").is_err());
    }

    #[test]
    fn socks5_accounts_never_echo_the_value() {
        let (user, pass) = parse_socks5_user("alice:s3:cret").expect("valid");
        assert_eq!((user.as_str(), pass.expose()), ("alice", "s3:cret"));
        let err = parse_socks5_user("alice:").expect_err("empty password");
        assert!(!err.to_string().contains("alice"));
        assert!(parse_socks5_user(":x").is_err());
        assert!(parse_socks5_user("nocolon").is_err());
    }

    #[test]
    fn no_proxy_splits_on_commas_and_blanks() {
        assert_eq!(
            parse_no_proxy("localhost, 127.0.0.*,10.*  *.corp"),
            vec!["localhost", "127.0.0.*", "10.*", "*.corp"]
        );
    }

    #[test]
    fn kib_sizes() {
        assert_eq!(parse_kib("1024"), Ok(1024));
        assert_eq!(parse_kib("0"), Ok(0));
        assert!(parse_kib("1k").is_err());
    }
}
