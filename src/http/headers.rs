//! The header list of a head, kept exactly as received (case, order, duplicates), and the
//! edits a proxy must make to it: hop-by-hop removal (RFC 9110 §7.6.1) and the `Header` / `-r`
//! substitutions.

use crate::config::HeaderSubstitution;

/// One header field as received: the name keeps its case, the value its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Field name, case as received.
    pub name: String,
    /// Field value without surrounding whitespace (httparse trims it).
    pub value: Vec<u8>,
}

/// An ordered list of header fields; lookups are case-insensitive (RFC 9110 §5.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

/// Headers that describe one connection only and never travel past it (RFC 9110 §7.6.1), plus
/// `Proxy-Connection` (a non-standard alias clients still send) and `Proxy-Authorization`
/// (the client's credentials are for us; the parent gets ours).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "upgrade",
    "proxy-authorization",
];

/// Names `Connection` may nominate that we still must not drop: the message framing.
const FRAMING: &[&str] = &["content-length", "transfer-encoding", "host"];

/// Whether an `Upgrade` request is being tunnelled (its `Upgrade` header must then survive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradePolicy {
    /// Drop `Upgrade` like every other hop-by-hop header.
    Strip,
    /// Keep `Upgrade` and announce it with `Connection: upgrade` (RFC 9110 §7.8).
    Keep,
}

impl Headers {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// How many fields are named `name`.
    pub fn count(&self, name: &str) -> usize {
        self.get_all(name).count()
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether any `name` field lists `token` in its comma-separated value, case-insensitively.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// Removes every field named `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|h| !h.name.eq_ignore_ascii_case(name));
    }

    /// Appends a field.
    pub fn push(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.0.push(Header {
            name: name.to_string(),
            value: value.into(),
        });
    }

    /// Replaces the first `name` field in place (dropping later ones), or appends it.
    pub fn set(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        let value = value.into();
        match self
            .0
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(name))
        {
            Some(at) => {
                self.0[at].value = value;
                let mut seen = 0usize;
                self.0.retain(|h| {
                    if h.name.eq_ignore_ascii_case(name) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.push(name, value),
        }
    }

    /// Removes the hop-by-hop fields and every field the `Connection` headers nominate
    /// (RFC 9110 §7.6.1), except framing fields, which the body code needs intact.
    pub fn strip_hop_by_hop(&mut self, upgrade: UpgradePolicy) {
        let mut nominated: Vec<String> = Vec::new();
        for name in ["connection", "proxy-connection"] {
            for value in self.get_all(name) {
                for token in value.split(|&b| b == b',') {
                    let token = String::from_utf8_lossy(token.trim_ascii()).to_ascii_lowercase();
                    if !token.is_empty() && !FRAMING.contains(&token.as_str()) {
                        nominated.push(token);
                    }
                }
            }
        }
        self.0.retain(|h| {
            let lower = h.name.to_ascii_lowercase();
            if upgrade == UpgradePolicy::Keep && lower == "upgrade" {
                return true;
            }
            !HOP_BY_HOP.contains(&lower.as_str()) && !nominated.contains(&lower)
        });
        if upgrade == UpgradePolicy::Keep {
            self.push("Connection", "upgrade");
        }
    }

    /// Applies `Header` / `-r` substitutions: each replaces any client value or is appended.
    pub fn substitute(&mut self, substitutions: &[HeaderSubstitution]) {
        for s in substitutions {
            self.set(&s.name, s.value.as_bytes());
        }
    }

    /// Writes every field as `Name: value\r\n`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for h in &self.0 {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(&h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(fields: &[(&str, &str)]) -> Headers {
        let mut h = Headers::default();
        for (n, v) in fields {
            h.push(n, v.as_bytes());
        }
        h
    }

    #[test]
    fn rfc9110_7_6_1_hop_by_hop_and_nominated_fields_are_removed() {
        let mut h = list(&[
            ("Host", "a"),
            ("Connection", "close, X-Secret"),
            ("X-Secret", "1"),
            ("Proxy-Connection", "keep-alive"),
            ("Keep-Alive", "300"),
            ("TE", "trailers"),
            ("Upgrade", "websocket"),
            ("Proxy-Authorization", "Basic eA=="),
            ("x-keep", "2"),
            ("X-Keep", "3"),
        ]);
        h.strip_hop_by_hop(UpgradePolicy::Strip);
        assert_eq!(h, list(&[("Host", "a"), ("x-keep", "2"), ("X-Keep", "3")]));
    }

    #[test]
    fn connection_cannot_nominate_framing_fields() {
        let mut h = list(&[("Connection", "content-length"), ("Content-Length", "3")]);
        h.strip_hop_by_hop(UpgradePolicy::Strip);
        assert_eq!(h, list(&[("Content-Length", "3")]));
    }

    #[test]
    fn upgrade_survives_when_tunnelling_it() {
        let mut h = list(&[("Connection", "Upgrade"), ("Upgrade", "websocket")]);
        h.strip_hop_by_hop(UpgradePolicy::Keep);
        assert_eq!(
            h,
            list(&[("Upgrade", "websocket"), ("Connection", "upgrade")])
        );
    }

    #[test]
    fn substitution_replaces_in_place_and_appends() {
        let mut h = list(&[
            ("User-Agent", "curl"),
            ("Accept", "*/*"),
            ("user-agent", "x"),
        ]);
        h.substitute(&[
            HeaderSubstitution {
                name: "User-Agent".into(),
                value: "corp".into(),
            },
            HeaderSubstitution {
                name: "X-New".into(),
                value: "1".into(),
            },
        ]);
        assert_eq!(
            h,
            list(&[("User-Agent", "corp"), ("Accept", "*/*"), ("X-New", "1")])
        );
    }

    #[test]
    fn tokens_are_matched_case_insensitively() {
        let h = list(&[("Connection", "Keep-Alive , Upgrade")]);
        assert!(h.has_token("connection", "upgrade"));
        assert!(h.has_token("CONNECTION", "keep-alive"));
        assert!(!h.has_token("connection", "close"));
    }
}
