//! `cntlm --route URL` (issue 6 §3): how a request to URL would leave, and why: the NoProxy
//! rule that matched, the PAC's answer (with its source and age) or the static parents, which
//! parents answer a quick connect right now, and what would be sent to the first usable one.
//!
//! It runs the same decision code as the proxy (`plan::decide`), on a fresh state: no parent
//! is backed off yet, so each one is probed with one connect and reported alive or down.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpStream;

use crate::config::{Config, ParentProxy};
use crate::proxy::Shared;
use crate::proxy::handshake::has_secret;
use crate::proxy::plan::{self, CredentialVerdict, PlanSource};
use crate::proxy::target::Target;

/// Longest a probe connect may take (shorter than `Limits::parent_connect`: this is a
/// diagnosis, and a black-holed parent should not hold it for long).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What `--route` found.
#[derive(Debug, Clone)]
pub struct RouteReport {
    /// The explanation, one fact per line.
    pub text: String,
    /// Whether a usable route exists (a live parent, or DIRECT allowed).
    pub usable: bool,
}

/// Why `--route` could not even start.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The argument is not an absolute `http://` or `https://` URL.
    #[error(
        "--route needs an absolute URL such as http://example.com/ or https://example.com/, not {0:?}"
    )]
    BadUrl(String),
}

/// Explains the route of a request to `url` under `config`.
pub async fn explain(config: Arc<Config>, url: &str) -> Result<RouteReport, ExplainError> {
    let target = Target::parse_absolute(url)
        .filter(|t| t.scheme == "http" || t.scheme == "https")
        .ok_or_else(|| ExplainError::BadUrl(url.to_string()))?;
    let tunnel = target.scheme == "https";
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared::new(config.clone(), config.listen.clone(), stop_rx));
    if let Some(pac) = &shared.pac {
        pac.refresh().await;
    }
    let pac_url = if tunnel {
        plan::connect_url(&target.host, target.port)
    } else {
        // As the proxy does: without user info.
        format!("{}://{}{}", target.scheme, target.authority, target.path)
    };
    let plan = plan::decide(&shared, &pac_url, &target.host).await;

    let mut out = String::new();
    let request = if tunnel {
        format!("CONNECT {}:{} HTTP/1.1", target.host, target.port)
    } else {
        format!("GET {url} HTTP/1.1")
    };
    let _ = writeln!(out, "route for {url}");
    let _ = writeln!(out, "  request:  {request}");
    match &plan.source {
        PlanSource::NoProxy { rule } => {
            let _ = writeln!(
                out,
                "  NoProxy:  rule {rule:?} matches {}: DIRECT",
                target.host
            );
        }
        _ => {
            let _ = writeln!(out, "  NoProxy:  no rule matches {}", target.host);
        }
    }
    match (&plan.source, &shared.pac) {
        (PlanSource::Pac { answer }, Some(pac)) => {
            let (origin, age) = pac
                .status()
                .map(|s| (s.origin, age_of(s.loaded_at)))
                .unwrap_or_else(|| (pac.source().to_string(), "?".into()));
            let _ = writeln!(out, "  PAC:      {origin} (loaded {age} ago)");
            let _ = writeln!(
                out,
                "  PAC says: FindProxyForURL({pac_url:?}, {:?}) = \"{}\"",
                target.host,
                plan::answer_text(answer)
            );
        }
        (PlanSource::PacFallback { reason }, Some(pac)) => {
            let _ = writeln!(
                out,
                "  PAC:      {} gives no answer: {reason}",
                pac.source()
            );
            let _ = writeln!(out, "            falling back to the static Proxy list");
        }
        (PlanSource::NoProxy { .. }, Some(pac)) => {
            let _ = writeln!(
                out,
                "  PAC:      {} (not consulted: NoProxy wins)",
                pac.source()
            );
        }
        (PlanSource::Static, None) => {
            let _ = writeln!(out, "  PAC:      none configured: static Proxy list");
        }
        _ => {}
    }

    let mut first_socks: Option<ParentProxy> = None;
    if !plan.socks.is_empty() {
        let _ = writeln!(
            out,
            "  SOCKS5 parents first, in order (never sent credentials):"
        );
    }
    for (i, parent) in plan.socks.iter().enumerate() {
        let state = match probe(parent).await {
            Ok(()) => {
                if first_socks.is_none() {
                    first_socks = Some(parent.clone());
                }
                "alive".to_string()
            }
            Err(why) => format!("down ({why})"),
        };
        let _ = writeln!(out, "    {}. SOCKS5 {parent}  {state}", i + 1);
    }
    let mut first_alive: Option<ParentProxy> = None;
    if !plan.parents.is_empty() {
        let _ = writeln!(out, "  parents, in order:");
    }
    for (i, parent) in plan.parents.iter().enumerate() {
        let state = match probe(parent).await {
            Ok(()) => {
                if first_alive.is_none() {
                    first_alive = Some(parent.clone());
                }
                "alive".to_string()
            }
            Err(why) => format!(
                "down ({why}): would be backed off for {} s",
                config.limits.parent_backoff.as_secs()
            ),
        };
        let creds = match shared
            .credentials
            .verdict(parent, shared.parents.is_configured(parent))
        {
            CredentialVerdict::StaticParent => "credentials: yes (a Proxy line)",
            CredentialVerdict::AllowListed => "credentials: yes (matches PacAuthDomains)",
            CredentialVerdict::LocalPac => "credentials: yes (named by the local PAC file)",
            CredentialVerdict::Refused => {
                "credentials: NO (not a Proxy line, not in PacAuthDomains)"
            }
        };
        let _ = writeln!(out, "    {}. {parent}  {state}; {creds}", i + 1);
    }
    if !plan.parents.is_empty() && plan.direct_after {
        let why = match plan.source {
            PlanSource::Pac { .. } => "the PAC lists DIRECT after them",
            _ => "ProxyFallback direct",
        };
        let _ = writeln!(out, "    then DIRECT when all are down ({why})");
    }

    let direct_line = if tunnel {
        format!(
            "a TCP connection to {}:{} DIRECT (tunnelled bytes as they come)",
            target.host, target.port
        )
    } else {
        format!(
            "GET {} HTTP/1.1 to {}:{} DIRECT (Host: {})",
            target.path, target.host, target.port, target.authority
        )
    };
    let usable = match (&first_socks, &first_alive) {
        (Some(parent), _) => {
            let _ = writeln!(
                out,
                "  would send: a SOCKS5 CONNECT to {}:{} through {parent} (no authentication), then {}",
                target.host,
                target.port,
                if tunnel {
                    "the tunnelled bytes".to_string()
                } else {
                    format!("GET {} HTTP/1.1", target.path)
                }
            );
            true
        }
        (None, Some(parent)) => {
            let creds = &config.auth.credentials;
            let auth = if !has_secret(creds) {
                "without credentials (none configured)".to_string()
            } else if shared
                .credentials
                .verdict(parent, shared.parents.is_configured(parent))
                .allows()
            {
                let who = if creds.domain.is_empty() {
                    creds.user.clone()
                } else {
                    format!("{}\\{}", creds.domain, creds.user)
                };
                format!(
                    "with {} authentication as {who} when it asks",
                    config.auth.dialect.name()
                )
            } else {
                "without credentials (the parent is not trusted with them)".to_string()
            };
            let _ = writeln!(out, "  would send: {request} to parent {parent} {auth}");
            true
        }
        (None, None) if plan.is_direct() => {
            let _ = writeln!(out, "  would send: {direct_line}");
            true
        }
        (None, None) if plan.direct_after => {
            let _ = writeln!(out, "  would send: {direct_line} (no parent answers)");
            true
        }
        (None, None) => {
            let _ = writeln!(
                out,
                "  would send: nothing: no parent answers and DIRECT is not allowed (ProxyFallback direct)"
            );
            false
        }
    };
    let _ = writeln!(
        out,
        "  route:    {}",
        if usable { "usable" } else { "NOT usable" }
    );
    Ok(RouteReport { text: out, usable })
}

/// One quick connect to `parent`.
async fn probe(parent: &ParentProxy) -> Result<(), String> {
    match tokio::time::timeout(
        PROBE_TIMEOUT,
        TcpStream::connect((parent.host.as_str(), parent.port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer in {} s", PROBE_TIMEOUT.as_secs())),
    }
}

/// `12 s`, `3 min`, `2 h`: how long ago `then` was.
fn age_of(then: SystemTime) -> String {
    let secs = then.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}
