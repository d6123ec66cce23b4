//! Choosing the way out for a request: DIRECT or through the configured parents.
//!
//! `NoProxy` patterns follow CNTLM (`fnmatch(pattern, host, 0)`: `*`, `?`, `[..]`), matched
//! case-insensitively because host names are (CNTLM 0.92.3 is case-sensitive, so `*.Corp.com`
//! silently failed for `www.corp.com`). On top, a pattern may be a CIDR range (`10.0.0.0/8`)
//! matched against address literals, or a `.domain` suffix matching the domain and every name
//! under it.

use std::net::IpAddr;

use ipnet::IpNet;

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Straight to the origin.
    Direct,
    /// Through the configured parent proxies, in order.
    Parent,
}

#[derive(Debug, Clone)]
enum Pattern {
    /// An fnmatch-style wildcard pattern, lower-cased.
    Glob(String),
    /// An address range, for address-literal hosts.
    Net(IpNet),
    /// `.domain`: the domain itself or any name under it (lower-cased, without the dot).
    Suffix(String),
}

/// Decides `Route`s from the NoProxy patterns and whether parents exist.
#[derive(Debug, Clone)]
pub struct Router {
    /// Parsed NoProxy patterns, in configuration order, each with its text as configured.
    patterns: Vec<(String, Pattern)>,
    /// Whether any parent is configured (none: everything DIRECT).
    has_parents: bool,
}

impl Router {
    /// Builds a router; each `no_proxy` entry may hold several patterns split by `,` or spaces.
    pub fn new(no_proxy: &[String], has_parents: bool) -> Self {
        let patterns = no_proxy
            .iter()
            .flat_map(|entry| entry.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|p| !p.is_empty())
            .map(|p| {
                let lower = p.to_ascii_lowercase();
                let pattern = if let Ok(net) = lower.parse::<IpNet>() {
                    Pattern::Net(net)
                } else if let Some(domain) = lower.strip_prefix('.')
                    && !domain.contains(['*', '?', '['])
                {
                    Pattern::Suffix(domain.to_string())
                } else {
                    Pattern::Glob(lower)
                };
                (p.to_string(), pattern)
            })
            .collect();
        Router {
            patterns,
            has_parents,
        }
    }

    /// The route for a request to `host` (a name or an address literal, brackets allowed).
    pub fn route(&self, host: &str) -> Route {
        if !self.has_parents || self.no_proxy_matches(host) {
            Route::Direct
        } else {
            Route::Parent
        }
    }

    /// Whether `host` matches a NoProxy pattern.
    pub fn no_proxy_matches(&self, host: &str) -> bool {
        self.matching_rule(host).is_some()
    }

    /// The first pattern `host` matches, as configured (for `--route` and logs).
    pub fn matching_rule(&self, host: &str) -> Option<String> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let addr: Option<IpAddr> = host.parse().ok();
        let hit = |p: &Pattern| match p {
            Pattern::Glob(g) => fnmatch(g.as_bytes(), host.as_bytes()),
            Pattern::Net(net) => addr.is_some_and(|a| net.contains(&a)),
            Pattern::Suffix(d) => {
                host == *d
                    || (host.len() > d.len()
                        && host.ends_with(d.as_str())
                        && host.as_bytes()[host.len() - d.len() - 1] == b'.')
            }
        };
        self.patterns
            .iter()
            .find(|(_, p)| hit(p))
            .map(|(text, _)| text.clone())
    }
}

/// fnmatch(3) with flags 0: `*` any run (including `/` and `.`), `?` one byte, `[..]` a set
/// with ranges and `!`/`^` negation, `\` escapes. Iterative with one backtrack point, so it
/// runs in O(pattern × text) at worst.
fn fnmatch(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match class(&pattern[p..], text[t]) {
                Some((true, len)) => Some(p + len),
                Some((false, _)) => None,
                None => (text[t] == b'[').then_some(p + 1),
            },
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(p + 2),
            Some(&c) => (c == text[t]).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                t += 1;
            }
            (None, Some((sp, st))) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the bracket expression at the start of `pattern`: `Some((matched,
/// length of the expression))`, or `None` when the bracket is not closed (a literal `[`).
fn class(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pattern.len() {
        let lo = pattern[i];
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = pattern[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(patterns: &[&str]) -> Router {
        Router::new(
            &patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            true,
        )
    }

    #[test]
    fn no_parents_means_direct() {
        assert_eq!(Router::new(&[], false).route("example.com"), Route::Direct);
        assert_eq!(router(&[]).route("example.com"), Route::Parent);
    }

    #[test]
    fn cntlm_wildcards_match_case_insensitively() {
        let r = router(&["localhost, 127.0.0.*, *.Corp.com", "build-?? host[0-9]"]);
        assert_eq!(r.route("LOCALHOST"), Route::Direct);
        assert_eq!(r.route("127.0.0.1"), Route::Direct);
        assert_eq!(r.route("www.corp.com"), Route::Direct);
        assert_eq!(r.route("corp.com"), Route::Parent);
        assert_eq!(r.route("build-01"), Route::Direct);
        assert_eq!(r.route("build-1"), Route::Parent);
        assert_eq!(r.route("host7"), Route::Direct);
        assert_eq!(r.route("hostx"), Route::Parent);
        assert_eq!(r.route("example.com"), Route::Parent);
    }

    #[test]
    fn cidr_and_domain_suffix() {
        let r = router(&["10.0.0.0/8", "fd00::/8", ".intra.example"]);
        assert_eq!(r.route("10.1.2.3"), Route::Direct);
        assert_eq!(r.route("11.1.2.3"), Route::Parent);
        assert_eq!(r.route("[fd00::1]"), Route::Direct);
        assert_eq!(r.route("intra.example"), Route::Direct);
        assert_eq!(r.route("a.b.Intra.Example"), Route::Direct);
        assert_eq!(r.route("xintra.example"), Route::Parent);
    }

    #[test]
    fn fnmatch_classes_and_escapes() {
        assert!(fnmatch(b"[!a]x", b"bx"));
        assert!(!fnmatch(b"[!a]x", b"ax"));
        assert!(fnmatch(b"[]]", b"]"));
        assert!(fnmatch(b"a[", b"a["));
        assert!(fnmatch(b"\\*", b"*"));
        assert!(!fnmatch(b"\\*", b"x"));
        assert!(fnmatch(b"*a*b*c", b"xxaybzzc"));
        assert!(!fnmatch(b"*a*b*c", b"xxaybzz"));
    }
}
