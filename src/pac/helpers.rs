//! The Rust halves of the PAC helper functions: address matching, list sorting and shell-glob
//! matching, plus the JavaScript prelude (`prelude.js`) that defines the standard names on top
//! of them.
//!
//! Address parsing lives here because `std::net` and `ipnet` already do it correctly for IPv4
//! and IPv6; `shExpMatch` lives here because a glob turned into a JavaScript regular expression
//! can backtrack exponentially, while the matcher below is O(len(text) * len(pattern)).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

/// Our own JavaScript definitions of the standard PAC functions, evaluated before the PAC.
pub(crate) const PRELUDE_JS: &str = include_str!("prelude.js");

/// Parses an address literal, with or without IPv6 brackets.
pub(crate) fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse().ok()
}

/// `isInNet(host, pattern, mask)` once `host` is an IPv4 address: `host & mask == pattern & mask`.
/// A malformed pattern or mask never matches.
pub(crate) fn in_net(address: &str, pattern: &str, mask: &str) -> bool {
    let (Ok(address), Ok(pattern), Ok(mask)) = (
        address.trim().parse::<Ipv4Addr>(),
        pattern.trim().parse::<Ipv4Addr>(),
        mask.trim().parse::<Ipv4Addr>(),
    ) else {
        return false;
    };
    let mask = u32::from(mask);
    u32::from(address) & mask == u32::from(pattern) & mask
}

/// `isInNetEx(host, prefix)` once `host` is resolved to a `;`-separated list: true when any
/// address lies in the CIDR `prefix` (`"10.0.0.0/8"`, `"fd00::/8"`; a bare address is a /32
/// or /128).
pub(crate) fn in_net_ex(addresses: &str, prefix: &str) -> bool {
    let prefix = prefix.trim();
    let net = match prefix.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match parse_ip(prefix) {
            Some(ip) => IpNet::from(ip),
            None => return false,
        },
    };
    addresses
        .split(';')
        .filter_map(parse_ip)
        .any(|ip| net.contains(&ip))
}

/// `sortIpAddressList(list)`: IPv6 addresses first, then IPv4, each ascending; `None` (PAC
/// `false`) when any element is not an address.
pub(crate) fn sort_ip_list(list: &str) -> Option<String> {
    let mut ips = list
        .split(';')
        .map(parse_ip)
        .collect::<Option<Vec<IpAddr>>>()?;
    ips.sort_by_key(|ip| (ip.is_ipv4(), *ip));
    Some(join_ips(&ips))
}

/// `a;b;c` as the Microsoft `*Ex` functions write address lists.
pub(crate) fn join_ips(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(";")
}

/// `shExpMatch(text, pattern)`: `*` matches any run of characters, `?` exactly one, everything
/// else itself (case-sensitive, as in every browser).
pub(crate) fn glob_match(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    let (mut t, mut p) = (0, 0);
    // Where the last `*` was and the text position it currently stands for; on a mismatch the
    // star absorbs one more character. One star of backtracking suffices for `*`-globs.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_net_masks_both_sides() {
        assert!(in_net("198.95.249.79", "198.95.0.0", "255.255.0.0"));
        assert!(!in_net("198.96.1.1", "198.95.0.0", "255.255.0.0"));
        assert!(in_net("10.1.2.3", "10.1.2.3", "255.255.255.255"));
        assert!(!in_net("10.1.2.3", "garbage", "255.0.0.0"));
    }

    #[test]
    fn in_net_ex_takes_cidr_of_either_family() {
        assert!(in_net_ex("fd00::1;10.0.0.1", "10.0.0.0/8"));
        assert!(in_net_ex("fd00::1", "fd00::/8"));
        assert!(!in_net_ex("192.168.1.1", "10.0.0.0/8"));
        assert!(in_net_ex("192.168.1.1", "192.168.1.1"));
        assert!(!in_net_ex("192.168.1.1", "nonsense/99"));
    }

    #[test]
    fn sort_puts_ipv6_first_and_rejects_garbage() {
        assert_eq!(
            sort_ip_list("10.0.0.2;::1;10.0.0.1;fe80::1").as_deref(),
            Some("::1;fe80::1;10.0.0.1;10.0.0.2")
        );
        assert_eq!(sort_ip_list("10.0.0.1;host"), None);
    }

    #[test]
    fn glob_stars_and_question_marks() {
        assert!(glob_match(
            "http://home.netscape.com/people/ari/index.html",
            "*/ari/*"
        ));
        assert!(!glob_match(
            "http://home.netscape.com/people/montulli/index.html",
            "*/ari/*"
        ));
        assert!(glob_match("abc", "a?c"));
        assert!(!glob_match("abbc", "a?c"));
        assert!(glob_match("", "*"));
        assert!(!glob_match("", "?"));
        assert!(glob_match("a.b.c", "*.c"));
        assert!(glob_match("x.corp.example", "*.corp.*"));
        assert!(!glob_match("corp.example", "*.corp.*"));
        assert!(glob_match("a.b", "a.b"));
        assert!(!glob_match("axb", "a.b"));
        // Pathological for a backtracking regex; linear-ish here.
        let text = "a".repeat(5000);
        assert!(!glob_match(&text, "*a*a*a*a*a*a*a*a*b"));
    }
}
