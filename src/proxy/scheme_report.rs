//! `-M`'s Kerberos part: does the parent offer Negotiate, and would our ticket be accepted?
//!
//! One request without credentials learns the parent's offer; when it includes Negotiate and a
//! ticket (or keytab, or password) gives a token, a second request carries that token and the
//! parent's answer says whether it was accepted. Nothing is cached and no secret is printed.

use std::fmt;
use std::time::Duration;

use tokio::net::TcpStream;

use super::{AuthScheme, Offer, drain_407, first_token, kerberos_sources, send_probe};
use crate::auth::negotiate;
use crate::config::{AuthSettings, Limits, ParentProxy};
use crate::http::head::RequestHead;
use crate::http::{Headers, Version};
use crate::proxy::target::Target;
use crate::upstream::{AuthState, PoolKey, UpstreamConn, UpstreamError};

/// What [`negotiate_probe`] found out about one parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiateReport {
    /// The parent asked.
    pub parent: String,
    /// The service principal a token would be for.
    pub service_principal: String,
    /// `None` when the system's Kerberos library loads, else why it does not.
    pub unavailable: Option<String>,
    /// The schemes of the parent's `407` to a request without credentials, in its order
    /// (empty when it asked for none).
    pub offers: Vec<AuthScheme>,
    /// The status of that first answer (`None` when the parent could not be asked).
    pub first_status: Option<u16>,
    /// Whether our credentials produced a token: `Ok` or why not (not tried: `None`).
    pub token: Option<Result<(), String>>,
    /// Whether the parent accepted the token (`None` when none was sent).
    pub accepted: Option<bool>,
    /// A failure talking to the parent, if any.
    pub error: Option<String>,
}

impl NegotiateReport {
    /// Whether the parent offers Negotiate.
    pub fn offers_negotiate(&self) -> bool {
        self.offers.contains(&AuthScheme::Negotiate)
    }
}

impl fmt::Display for NegotiateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offers: Vec<&str> = self.offers.iter().map(|s| s.name()).collect();
        writeln!(
            f,
            "Parent {}: offers {}",
            self.parent,
            match (self.first_status, offers.is_empty()) {
                (None, _) => "? (not reached)".to_string(),
                (Some(407), true) => "no scheme we know".to_string(),
                (Some(s), true) => format!("nothing: it answered {s} without authentication"),
                (_, false) => offers.join(", "),
            }
        )?;
        if let Some(e) = &self.error {
            writeln!(f, "  error: {e}")?;
        }
        if let Some(reason) = &self.unavailable {
            writeln!(f, "  Negotiate unavailable here: {reason}")?;
        }
        if !self.offers_negotiate() {
            return Ok(());
        }
        match &self.token {
            None => {}
            Some(Ok(())) => writeln!(
                f,
                "  Kerberos token for {}: obtained",
                self.service_principal
            )?,
            Some(Err(e)) => writeln!(f, "  Kerberos token for {}: {e}", self.service_principal)?,
        }
        match self.accepted {
            Some(true) => writeln!(
                f,
                "  the parent ACCEPTED the ticket: Auth Negotiate (or Auto) works"
            ),
            Some(false) => writeln!(f, "  the parent REJECTED the ticket"),
            None => Ok(()),
        }
    }
}

/// Asks `parent` for `url` without credentials, then (if it offers Negotiate) with a token
/// from `auth`'s Kerberos sources; see the module documentation.
pub async fn negotiate_probe(
    parent: &ParentProxy,
    url: &str,
    auth: &AuthSettings,
    limits: &Limits,
) -> NegotiateReport {
    let spn = super::service_principal(auth, parent);
    let mut report = NegotiateReport {
        parent: parent.to_string(),
        service_principal: spn.clone(),
        unavailable: negotiate::unavailable_reason(),
        offers: Vec::new(),
        first_status: None,
        token: None,
        accepted: None,
        error: None,
    };
    if let Err(e) = ask(parent, url, auth, limits, spn, &mut report).await {
        report.error = Some(e.to_string());
    }
    report
}

async fn connect(parent: &ParentProxy, limits: &Limits) -> Result<UpstreamConn, UpstreamError> {
    let who = format!("parent {parent}");
    match tokio::time::timeout(
        limits.parent_connect,
        TcpStream::connect((parent.host.as_str(), parent.port)),
    )
    .await
    {
        Ok(Ok(s)) => Ok(UpstreamConn::fresh(
            s,
            PoolKey::Parent(parent.clone()),
            AuthState::Fresh,
        )),
        Ok(Err(source)) => Err(UpstreamError::Io { who, source }),
        Err(_) => Err(UpstreamError::Timeout { who }),
    }
}

async fn ask(
    parent: &ParentProxy,
    url: &str,
    auth: &AuthSettings,
    limits: &Limits,
    spn: String,
    report: &mut NegotiateReport,
) -> Result<(), UpstreamError> {
    let who = format!("parent {parent}");
    let mut headers = Headers::default();
    let host = Target::parse_absolute(url).map_or_else(|| url.to_string(), |t| t.authority);
    headers.push("Host", host);
    headers.push("Proxy-Connection", "keep-alive");
    let probe = RequestHead {
        method: "GET".to_string(),
        target: url.to_string(),
        version: Version::Http11,
        headers,
    };
    let limits = Limits {
        parent_first_byte: limits.parent_first_byte.min(Duration::from_secs(30)),
        ..limits.clone()
    };
    let mut up = connect(parent, &limits).await?;
    let first = send_probe(&mut up, &probe, None, &limits, &who).await?;
    report.first_status = Some(first.status);
    if first.status != 407 {
        return Ok(());
    }
    let offer = Offer::parse(&first);
    report.offers = offer.schemes.iter().map(|(s, _)| *s).collect();
    if !offer.has(AuthScheme::Negotiate) || report.unavailable.is_some() {
        return Ok(());
    }
    let token = match first_token(spn, kerberos_sources(auth)).await {
        Ok((_, token)) => token,
        Err(e) => {
            report.token = Some(Err(e.to_string()));
            return Ok(());
        }
    };
    report.token = Some(Ok(()));
    if !drain_407(&mut up, &probe.method, &first, &limits).await {
        up = connect(parent, &limits).await?;
    }
    let authorization = format!(
        "Negotiate {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &token)
    );
    let second = send_probe(&mut up, &probe, Some(&authorization), &limits, &who).await?;
    report.accepted = Some(second.status != 407);
    Ok(())
}
