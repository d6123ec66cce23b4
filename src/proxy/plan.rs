//! The way out for one request (issue 6 §1): `NoProxy` first, then the PAC's answer, then the
//! static `Proxy` list when no PAC answers; and to which parents credentials may go.
//!
//! A PAC answer is read in order: HTTP parents (`PROXY`, `HTTP`) are tried with the same
//! failover and back-off as static ones; a `DIRECT` before any parent means DIRECT; a `DIRECT`
//! after parents means "DIRECT when those are all down", as browsers do. `SOCKS5` entries
//! before the first HTTP parent are tried first (`socks_hop`); `SOCKS`, `SOCKS4`, `HTTPS` and
//! later `SOCKS5` entries are skipped with one log line each (we do not speak SOCKS4 or TLS to
//! a parent); an answer with nothing usable left falls back to the static list.

use crate::config::ParentProxy;
use crate::pac::{PacProxy, PacProxyKind};
use crate::proxy::Shared;
use crate::route::Router;

/// Why a plan is what it is (for `--route` and debug logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanSource {
    /// A `NoProxy` pattern matched: DIRECT.
    NoProxy {
        /// The pattern as configured.
        rule: String,
    },
    /// The PAC answered with these entries.
    Pac {
        /// The entries, in order, as the PAC returned them.
        answer: Vec<PacProxy>,
    },
    /// The static `Proxy` list, because no PAC is configured.
    Static,
    /// The static `Proxy` list, because the PAC gave no usable answer.
    PacFallback {
        /// Why the PAC was not used.
        reason: String,
    },
}

/// How one request leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// SOCKS5 parents to try first, in order (PAC `SOCKS5` entries before any HTTP parent).
    pub socks: Vec<ParentProxy>,
    /// HTTP parents to try, in order (after the SOCKS5 ones failed).
    pub parents: Vec<ParentProxy>,
    /// Whether DIRECT may be used when every parent is down (the PAC listed DIRECT after
    /// them, or `ProxyFallback direct`).
    pub direct_after: bool,
    /// Where the decision came from.
    pub source: PlanSource,
}

impl Plan {
    /// Whether the request goes DIRECT straight away.
    pub fn is_direct(&self) -> bool {
        self.parents.is_empty() && self.socks.is_empty()
    }
}

/// The PAC's view of the URL of a CONNECT to `host:port` (what browsers pass).
pub fn connect_url(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("https://[{host}]:{port}/")
    } else {
        format!("https://{host}:{port}/")
    }
}

/// Decides the plan for a request to `url` (absolute URL; for CONNECT see [`connect_url`])
/// whose host is `host` (no port, no brackets).
pub async fn decide(shared: &Shared, url: &str, host: &str) -> Plan {
    let direct_fallback = shared.config.direct_fallback;
    if let Some(rule) = shared.router.matching_rule(host) {
        return Plan {
            socks: Vec::new(),
            parents: Vec::new(),
            direct_after: false,
            source: PlanSource::NoProxy { rule },
        };
    }
    let static_plan = |source| Plan {
        socks: Vec::new(),
        parents: shared.parents.configured().to_vec(),
        direct_after: direct_fallback,
        source,
    };
    let Some(pac) = &shared.pac else {
        return static_plan(PlanSource::Static);
    };
    let answer = match pac.find(url, host).await {
        Ok(answer) => answer,
        Err(e) => {
            pac.warn_once(format!(
                "PAC gives no answer ({e}): using the static Proxy list"
            ));
            return static_plan(PlanSource::PacFallback {
                reason: e.to_string(),
            });
        }
    };
    let mut parents = Vec::new();
    let mut socks = Vec::new();
    let mut direct_after = direct_fallback;
    for entry in &answer {
        match entry {
            PacProxy::Direct => {
                direct_after = true;
                break;
            }
            PacProxy::Proxy {
                kind: PacProxyKind::Http,
                host,
                port,
            } => {
                let parent = ParentProxy {
                    host: host.to_ascii_lowercase(),
                    port: *port,
                };
                if !parents.contains(&parent) {
                    parents.push(parent);
                }
            }
            PacProxy::Proxy {
                kind: PacProxyKind::Socks5,
                host,
                port,
            } if parents.is_empty() => {
                let parent = ParentProxy {
                    host: host.to_ascii_lowercase(),
                    port: *port,
                };
                if !socks.contains(&parent) {
                    socks.push(parent);
                }
            }
            PacProxy::Proxy { kind, .. } => pac.warn_once(format!(
                "PAC entry \"{entry}\" skipped: {}",
                match kind {
                    PacProxyKind::Https => "cntlm does not speak TLS to a parent yet",
                    PacProxyKind::Socks4 => "cntlm does not speak SOCKS4",
                    _ => "SOCKS5 parents are used only before the first HTTP parent",
                }
            )),
        }
    }
    if parents.is_empty() && socks.is_empty() && !direct_after {
        pac.warn_once(format!(
            "PAC answer \"{}\" has no usable entry: using the static Proxy list",
            answer_text(&answer)
        ));
        return static_plan(PlanSource::PacFallback {
            reason: "no usable entry in the PAC answer".into(),
        });
    }
    Plan {
        socks,
        parents,
        direct_after,
        source: PlanSource::Pac { answer },
    }
}

/// A PAC answer as one `;`-separated string.
pub fn answer_text(answer: &[PacProxy]) -> String {
    answer
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Which parents may receive credentials (issue 6 §1: a hostile WPAD must not harvest them).
///
/// - Static `Proxy` parents always may: the user named them.
/// - With `PacAuthDomains` set, a PAC-named parent may when its host matches one of the
///   patterns (`NoProxy` syntax: `*.corp.example`, `.corp.example`, `10.0.0.0/8`, `*`).
/// - Without it, a PAC-named parent may only when the PAC is a local file (the user's own
///   script); a PAC fetched over plain HTTP can be answered by anyone on the path, so its
///   parents get no credentials until the user lists their domains.
#[derive(Debug, Clone)]
pub struct CredentialPolicy {
    /// `PacAuthDomains` patterns, when any are configured.
    allowed: Option<Router>,
    /// Whether the PAC is a local file (trusted when no patterns are set).
    pac_is_local: bool,
}

/// Whether a parent gets credentials, and why (for `--route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialVerdict {
    /// A static `Proxy` parent.
    StaticParent,
    /// A PAC-named parent matching `PacAuthDomains`.
    AllowListed,
    /// A PAC-named parent from a local PAC file, no `PacAuthDomains` set.
    LocalPac,
    /// A PAC-named parent outside the allow-list (or from a fetched PAC without one).
    Refused,
}

impl CredentialVerdict {
    /// Whether credentials are sent.
    pub fn allows(self) -> bool {
        self != CredentialVerdict::Refused
    }
}

impl CredentialPolicy {
    /// The policy for `PacAuthDomains` patterns and a PAC that is (or is not) a local file.
    pub fn new(patterns: &[String], pac_is_local: bool) -> CredentialPolicy {
        CredentialPolicy {
            allowed: (!patterns.is_empty()).then(|| Router::new(patterns, true)),
            pac_is_local,
        }
    }

    /// The verdict for `parent`; `is_static` says whether it is a `Proxy` parent.
    pub fn verdict(&self, parent: &ParentProxy, is_static: bool) -> CredentialVerdict {
        if is_static {
            return CredentialVerdict::StaticParent;
        }
        match &self.allowed {
            Some(list) if list.matching_rule(&parent.host).is_some() => {
                CredentialVerdict::AllowListed
            }
            Some(_) => CredentialVerdict::Refused,
            None if self.pac_is_local => CredentialVerdict::LocalPac,
            None => CredentialVerdict::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(host: &str) -> ParentProxy {
        ParentProxy {
            host: host.into(),
            port: 8080,
        }
    }

    #[test]
    fn credentials_go_only_where_the_user_said() {
        let listed = CredentialPolicy::new(&["*.corp.example, proxy.example".into()], false);
        assert!(listed.verdict(&p("gw.corp.example"), false).allows());
        assert!(listed.verdict(&p("proxy.example"), false).allows());
        assert!(!listed.verdict(&p("evil.example"), false).allows());
        assert!(listed.verdict(&p("evil.example"), true).allows());
        let fetched = CredentialPolicy::new(&[], false);
        assert_eq!(
            fetched.verdict(&p("gw.corp.example"), false),
            CredentialVerdict::Refused
        );
        let local = CredentialPolicy::new(&[], true);
        assert_eq!(
            local.verdict(&p("gw.corp.example"), false),
            CredentialVerdict::LocalPac
        );
    }

    #[cfg(feature = "pac")]
    #[tokio::test]
    async fn pac_answers_become_plans() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pac = dir.path().join("t.pac");
        std::fs::write(
            &pac,
            r#"function FindProxyForURL(u, h) {
                 if (h == "d") return "DIRECT; PROXY a.example:1";
                 if (h == "p") return "PROXY A.Example:1; PROXY b.example:2; DIRECT";
                 if (h == "s") return "SOCKS5 s.example:1; PROXY b.example:2; SOCKS5 t.example:3";
                 if (h == "x") return "HTTPS h.example:1; SOCKS4 q.example:1";
                 return "PROXY a.example:1";
               }"#,
        )
        .expect("write pac");
        let config = crate::config::Config {
            parents: vec![p("static.example")],
            no_proxy: vec!["np".into()],
            pac: Some(pac.display().to_string()),
            ..Default::default()
        };
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let shared = Shared::new(std::sync::Arc::new(config), Vec::new(), rx);
        assert!(shared.pac.as_ref().expect("pac").refresh().await);
        let at = |host: &str, port| ParentProxy {
            host: host.into(),
            port,
        };

        let direct = decide(&shared, "http://d/", "d").await;
        assert!(direct.is_direct(), "{direct:?}");
        let parents = decide(&shared, "http://p/", "p").await;
        assert_eq!(
            parents.parents,
            vec![at("a.example", 1), at("b.example", 2)]
        );
        assert!(parents.direct_after);
        let socks = decide(&shared, "http://s/", "s").await;
        assert_eq!(socks.socks, vec![at("s.example", 1)]);
        assert_eq!(socks.parents, vec![at("b.example", 2)]);
        assert!(!socks.direct_after);
        let unusable = decide(&shared, "http://x/", "x").await;
        assert!(matches!(unusable.source, PlanSource::PacFallback { .. }));
        assert_eq!(unusable.parents, vec![p("static.example")]);
        let np = decide(&shared, "http://np/", "np").await;
        assert!(np.is_direct() && matches!(np.source, PlanSource::NoProxy { .. }));
    }

    #[test]
    fn connect_urls_bracket_v6() {
        assert_eq!(connect_url("h.example", 443), "https://h.example:443/");
        assert_eq!(connect_url("::1", 8443), "https://[::1]:8443/");
    }
}
