//! `-M <url>`: magic dialect detection (cntlm-compat.md §2.6, ntlm-protocol-notes.md §6).
//!
//! Each profile (NTLMv2, NTLM, LM, NTLM2SR, CNTLM 0.92.3's order, default flags) runs a full
//! handshake on a fresh connection to the first reachable parent: `GET <url>` with
//! `Proxy-Connection: keep-alive` and `Host` carrying the Type 1, the 407 with the Type 2,
//! then the same request with the Type 3. The first answer that is not a 407 wins, and its
//! profile is printed as config lines, byte for byte as CNTLM prints them.
//!
//! Two CNTLM bugs are fixed: a parent that closes the connection after its 407 gets a new
//! handshake on a new connection (CNTLM sends the Type 3 there and reports a false
//! "Credentials rejected", notes §7 item 7), and the caller exits non-zero when no profile
//! worked (CNTLM exits 0 whatever happened).
//!
//! With `Auth Negotiate` or `Auto`, a Kerberos report (from `proxy::scheme`) follows the NTLM
//! part, which is skipped without an NTLM secret.
//!
//! The HTTP exchange is the proxy's own (`proxy::handshake`, `http`, `upstream`): `-M` proves
//! exactly the code that will carry the traffic afterwards.

use std::io::Write;

use tokio::io::AsyncWriteExt;

use crate::auth::ntlm::crypto;
use crate::auth::ntlm::hashes::{self, HashFormat};
use crate::auth::{Credentials, Hash16, NtlmDialect};
use crate::config::{AuthChoice, AuthSettings, Config, Limits};
use crate::http::{Headers, RequestHead, ResponseHead, Version};
use crate::proxy::handshake::{self, ProbeOutcome};
use crate::proxy::scheme;
use crate::upstream::{AuthState, ParentSet, PoolKey, UpstreamConn, UpstreamError};

/// The profiles CNTLM 0.92.3 tries, strongest first (`NT` alone is never tried).
pub const PROFILES: [NtlmDialect; 4] = [
    NtlmDialect::NtlmV2,
    NtlmDialect::Ntlm,
    NtlmDialect::Lm,
    NtlmDialect::Ntlm2Sr,
];

/// How many fresh handshakes a profile gets when the parent keeps closing after its 407.
const HANDSHAKE_ATTEMPTS: usize = 3;

/// Why `-M` could not start.
#[derive(Debug, thiserror::Error)]
pub enum MagicError {
    /// The URL has no `://` (CNTLM prints exactly this on stderr).
    #[error("Invalid URL ({0})")]
    InvalidUrl(String),
    /// No `Proxy` line and no parent on the command line.
    #[error("-M needs a parent proxy (a Proxy line or host:port on the command line)")]
    NoParent,
    /// Neither a password nor any hash.
    #[error("Cannot detect NTLM dialect - password or all its hashes must be defined, try -I")]
    NoSecret,
    /// Writing the report failed.
    #[error("cannot write the report")]
    Output(#[from] std::io::Error),
}

/// How one profile fared, as its progress line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileResult {
    /// The probe was answered without a 407: the parent wants no authentication.
    NotRequired(u16),
    /// A 407 after the Type 3 that still offers NTLM or Basic.
    Rejected,
    /// A 407 that offers neither NTLM nor Basic: detection stops.
    NoScheme,
    /// The parent closed the connection (every attempt) before a final answer.
    Closed,
    /// The credentials cannot answer this dialect (e.g. only `PassNTLMv2` for `LM`).
    Skipped(&'static str),
    /// Authenticated: the parent's final status.
    Accepted(u16),
}

impl std::fmt::Display for ProfileResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProfileResult::NotRequired(code) => write!(f, "Auth not required (HTTP code: {code})"),
            ProfileResult::Rejected => f.write_str("Credentials rejected"),
            ProfileResult::NoScheme => f.write_str("Proxy doesn't offer NTLM or BASIC"),
            ProfileResult::Closed => f.write_str("Connection closed"),
            ProfileResult::Skipped(needs) => write!(f, "Skipped (needs {needs})"),
            ProfileResult::Accepted(code) => write!(f, "OK (HTTP code: {code})"),
        }
    }
}

/// How detection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MagicOutcome {
    /// Profile `index` (0-based) authenticated.
    Found {
        /// Index into [`PROFILES`].
        index: usize,
    },
    /// Every profile was answered without authentication.
    Open,
    /// No profile authenticated.
    WrongCredentials,
    /// No parent could be reached.
    ConnectFailed,
    /// No NTLM profile worked (or none was tried) but the parent accepted our Kerberos ticket.
    NegotiateAccepted,
}

impl MagicOutcome {
    /// Whether the user got something to put in the config (a profile, or "no proxy
    /// needed"). CNTLM exits 0 in every case; we exit non-zero when this is false.
    pub fn is_success(self) -> bool {
        matches!(
            self,
            MagicOutcome::Found { .. } | MagicOutcome::Open | MagicOutcome::NegotiateAccepted
        )
    }
}

/// Runs the detection against `url` with `config`'s parents and credentials, writing CNTLM's
/// progress lines and result to `out` as they happen.
///
/// With `Auth Negotiate` or `Auth Auto` (schemes CNTLM 0.92.3 lacks) a Kerberos report for the
/// first parent follows the NTLM part (which is skipped when there is no NTLM secret): does it
/// offer Negotiate, does a ticket come, is it accepted ([`scheme::negotiate_probe`]).
pub async fn detect<W: Write>(
    config: &Config,
    url: &str,
    out: &mut W,
) -> Result<MagicOutcome, MagicError> {
    let request = magic_request(url)?;
    let Some(first_parent) = config.parents.first() else {
        return Err(MagicError::NoParent);
    };
    let kerberos = matches!(config.auth.scheme, AuthChoice::Negotiate | AuthChoice::Auto);
    let has_ntlm_secret = handshake::has_secret(&config.auth.credentials);
    if !has_ntlm_secret && !kerberos {
        return Err(MagicError::NoSecret);
    }
    let ntlm = if has_ntlm_secret {
        let outcome = detect_ntlm(config, &request, out).await?;
        if !kerberos || outcome == MagicOutcome::ConnectFailed {
            return Ok(outcome);
        }
        writeln!(out)?;
        Some(outcome)
    } else {
        None
    };
    let report = scheme::negotiate_probe(first_parent, url, &config.auth, &config.limits).await;
    write!(
        out,
        "Kerberos (Auth {}):\n{report}",
        if config.auth.scheme == AuthChoice::Auto {
            "Auto"
        } else {
            "Negotiate"
        }
    )?;
    out.flush()?;
    Ok(match ntlm {
        Some(found) if found.is_success() => found,
        _ if report.accepted == Some(true) => MagicOutcome::NegotiateAccepted,
        Some(other) => other,
        None if report.first_status.is_none() => MagicOutcome::ConnectFailed,
        None => MagicOutcome::WrongCredentials,
    })
}

/// The NTLM profiles, as CNTLM 0.92.3 runs and prints them.
async fn detect_ntlm<W: Write>(
    config: &Config,
    request: &RequestHead,
    out: &mut W,
) -> Result<MagicOutcome, MagicError> {
    let creds = &config.auth.credentials;
    let limits = &config.limits;
    let parents = ParentSet::new(
        config.parents.clone(),
        limits.parent_connect,
        limits.parent_backoff,
    );
    let mut all_open = true;
    for (index, &dialect) in PROFILES.iter().enumerate() {
        write!(out, "Config profile {:2}/{}... ", index + 1, PROFILES.len())?;
        out.flush()?;
        // Default flags in every profile, as CNTLM; NTLM whatever `Auth` names.
        let auth = AuthSettings {
            dialect,
            flags: None,
            scheme: AuthChoice::Ntlm,
            ..config.auth.clone()
        };
        let result = match missing_secret(dialect, creds) {
            Some(needs) => ProfileResult::Skipped(needs),
            None => match try_profile(&parents, request, &auth, limits).await {
                Ok(result) => result,
                Err(Unreachable) => {
                    writeln!(out, "\nConnection to proxy failed, bailing out")?;
                    out.flush()?;
                    return Ok(MagicOutcome::ConnectFailed);
                }
            },
        };
        writeln!(out, "{result}")?;
        out.flush()?;
        match result {
            ProfileResult::Accepted(_) => {
                out.write_all(
                    result_block(index, dialect, creds, config.auth.hash_format).as_bytes(),
                )?;
                out.flush()?;
                return Ok(MagicOutcome::Found { index });
            }
            ProfileResult::NotRequired(_) => {}
            ProfileResult::NoScheme => {
                all_open = false;
                break;
            }
            _ => all_open = false,
        }
    }
    if all_open {
        writeln!(out, "\nYour proxy is open, you don't need another proxy.")?;
        out.flush()?;
        return Ok(MagicOutcome::Open);
    }
    writeln!(
        out,
        "\nWrong credentials, invalid URL or proxy doesn't support NTLM nor BASIC."
    )?;
    out.flush()?;
    Ok(MagicOutcome::WrongCredentials)
}

/// `GET <url> HTTP/1.1` with `Proxy-Connection: keep-alive` and `Host`, as CNTLM sends it.
fn magic_request(url: &str) -> Result<RequestHead, MagicError> {
    let Some((_, rest)) = url.split_once("://") else {
        return Err(MagicError::InvalidUrl(url.to_string()));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        return Err(MagicError::InvalidUrl(url.to_string()));
    }
    let mut headers = Headers::default();
    headers.push("Proxy-Connection", "keep-alive");
    headers.push("Host", host);
    Ok(RequestHead {
        method: "GET".to_string(),
        target: url.to_string(),
        version: Version::Http11,
        headers,
    })
}

/// Which secret a dialect lacks, for the "Skipped" line (mirrors `check_credentials`).
fn missing_secret(dialect: NtlmDialect, creds: &Credentials) -> Option<&'static str> {
    if creds.password.is_some() {
        return None;
    }
    let (lm, nt, v2) = (
        creds.lm_hash.is_some(),
        creds.nt_hash.is_some(),
        creds.ntlmv2_hash.is_some(),
    );
    match dialect {
        NtlmDialect::NtlmV2 if !nt && !v2 => Some("PassNTLMv2 or PassNT"),
        NtlmDialect::Ntlm if !lm || !nt => Some("PassLM and PassNT"),
        NtlmDialect::Lm if !lm => Some("PassLM"),
        NtlmDialect::Nt | NtlmDialect::Ntlm2Sr if !nt => Some("PassNT"),
        _ => None,
    }
}

/// No parent accepted a connection.
struct Unreachable;

/// One profile: a full handshake on a fresh connection, started over (up to
/// `HANDSHAKE_ATTEMPTS` times) when the parent closes after its 407.
async fn try_profile(
    parents: &ParentSet,
    request: &RequestHead,
    auth: &AuthSettings,
    limits: &Limits,
) -> Result<ProfileResult, Unreachable> {
    for _ in 0..HANDSHAKE_ATTEMPTS {
        let (parent, stream) = parents.connect().await.map_err(|_| Unreachable)?;
        let who = format!("parent {parent}");
        let mut up = UpstreamConn::fresh(stream, PoolKey::Parent(parent), AuthState::Fresh);
        match handshake::probe(&mut up, request, auth, limits, &who).await {
            Ok(ProbeOutcome::Challenge { authorization, .. }) => {
                return Ok(
                    match answer(&mut up, request, &authorization, limits, &who).await {
                        Ok(resp) => final_result(&resp),
                        Err(_) => ProfileResult::Closed,
                    },
                );
            }
            // The fix: a new handshake, never a Type 3 on a connection that saw no Type 2.
            Ok(ProbeOutcome::ParentClosed) => {}
            Ok(ProbeOutcome::NoNtlm(resp)) => return Ok(final_result(&resp)),
            Ok(ProbeOutcome::Authenticated(resp)) => {
                return Ok(ProfileResult::Accepted(resp.status));
            }
            Ok(ProbeOutcome::Refused(_)) => return Ok(ProfileResult::Rejected),
            Ok(ProbeOutcome::Answer(resp)) => return Ok(ProfileResult::NotRequired(resp.status)),
            Err(UpstreamError::Auth { .. }) => return Ok(ProfileResult::Rejected),
            Err(_) => return Ok(ProfileResult::Closed),
        }
    }
    Ok(ProfileResult::Closed)
}

/// Sends the request again with the Type 3 and reads the final answer.
async fn answer(
    up: &mut UpstreamConn,
    request: &RequestHead,
    authorization: &str,
    limits: &Limits,
    who: &str,
) -> Result<ResponseHead, UpstreamError> {
    let mut head = request.clone();
    head.headers
        .push("Proxy-Authorization", authorization.as_bytes());
    up.stream
        .write_all(&head.to_bytes())
        .await
        .map_err(|source| UpstreamError::Io {
            who: who.to_string(),
            source,
        })?;
    handshake::read_final(up, limits, who).await
}

/// CNTLM's reading of a final answer: a 407 is a rejection while it still offers NTLM or
/// Basic; anything else is success, whatever the code (even 403 or 502).
fn final_result(resp: &ResponseHead) -> ProfileResult {
    if resp.status != 407 {
        return ProfileResult::Accepted(resp.status);
    }
    let offers = resp
        .headers
        .get_all("proxy-authenticate")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|item| {
            let scheme = item.split(|&b| b == b' ').next().unwrap_or_default();
            scheme.eq_ignore_ascii_case(b"NTLM") || scheme.eq_ignore_ascii_case(b"Basic")
        });
    if offers {
        ProfileResult::Rejected
    } else {
        ProfileResult::NoScheme
    }
}

/// The config lines for profile `index` (0-based, as CNTLM prints it): the banner, `Auth`,
/// and the `Pass*` lines the dialect uses in PassNT, PassLM, PassNTLMv2 order, in `format`.
pub fn result_block(
    index: usize,
    dialect: NtlmDialect,
    creds: &Credentials,
    format: HashFormat,
) -> String {
    let nt = creds
        .password
        .as_ref()
        .map(crypto::nt_hash)
        .or_else(|| creds.nt_hash.clone());
    let lm = creds
        .password
        .as_ref()
        .map(crypto::lm_hash)
        .or_else(|| creds.lm_hash.clone());
    let v2 = match (&creds.password, &creds.ntlmv2_hash, &nt) {
        (None, Some(v2), _) => Some(v2.clone()),
        (_, _, Some(nt)) => Some(crypto::cntlm_ntlmv2_hash(nt, &creds.user, &creds.domain)),
        _ => None,
    };
    let (use_nt, use_lm, use_v2) = match dialect {
        NtlmDialect::NtlmV2 => (false, false, true),
        NtlmDialect::Ntlm => (true, true, false),
        NtlmDialect::Lm => (false, true, false),
        NtlmDialect::Nt | NtlmDialect::Ntlm2Sr => (true, false, false),
    };
    let mut out = format!("----------------------------[ Profile {index:2} ]------\n");
    out.push_str(&format!("Auth            {}\n", dialect.name()));
    let mut line = |name: &str, used: bool, hash: &Option<Hash16>| {
        if let (true, Some(hash)) = (used, hash) {
            out.push_str(&format!("{name:<16}{}\n", hashes::encode(hash, format)));
        }
    };
    line("PassNT", use_nt, &nt);
    line("PassLM", use_lm, &lm);
    line("PassNTLMv2", use_v2, &v2);
    out.push_str("------------------------------------------------\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Password;

    fn creds() -> Credentials {
        Credentials {
            user: "testuser".into(),
            domain: "corp-uk".into(),
            password: Some(Password::new("password")),
            ..Credentials::default()
        }
    }

    #[test]
    fn ntlmv2_block_is_cntlms_with_the_inverted_hash() {
        let block = result_block(0, NtlmDialect::NtlmV2, &creds(), HashFormat::Inverted);
        assert_eq!(
            block,
            "----------------------------[ Profile  0 ]------\n\
             Auth            NTLMv2\n\
             PassNTLMv2      1F6839EE15E639893286CF65C5D0A65C\n\
             ------------------------------------------------\n"
        );
    }

    #[test]
    fn ntlm_block_prints_nt_then_lm_and_honours_the_hash_format() {
        let block = result_block(1, NtlmDialect::Ntlm, &creds(), HashFormat::Plain);
        assert_eq!(
            block,
            "----------------------------[ Profile  1 ]------\n\
             Auth            NTLM\n\
             PassNT          8846F7EAEE8FB117AD06BDD830B7586C\n\
             PassLM          E52CAC67419A9A224A3B108F3FA6CB6D\n\
             ------------------------------------------------\n"
        );
        let lm = result_block(2, NtlmDialect::Lm, &creds(), HashFormat::Inverted);
        assert!(lm.contains("PassLM          1AD35398BE6565DDB5C4EF70C0593492\n"));
        assert!(!lm.contains("PassNT"));
        let sr = result_block(3, NtlmDialect::Ntlm2Sr, &creds(), HashFormat::Inverted);
        assert!(sr.contains("PassNT          77B9081511704EE852F94227CF48A793\n"));
        assert!(!sr.contains("PassLM"));
    }

    #[test]
    fn configured_hashes_are_printed_when_there_is_no_password() {
        let only_v2 = Credentials {
            user: "u".into(),
            ntlmv2_hash: Some(Hash16::new([0x11; 16])),
            ..Credentials::default()
        };
        let block = result_block(0, NtlmDialect::NtlmV2, &only_v2, HashFormat::Inverted);
        assert!(block.contains(&format!("PassNTLMv2      {}\n", "EE".repeat(16))));
        assert_eq!(
            missing_secret(NtlmDialect::Lm, &only_v2),
            Some("PassLM"),
            "LM cannot be tried from a PassNTLMv2"
        );
        assert_eq!(missing_secret(NtlmDialect::NtlmV2, &only_v2), None);
    }

    #[test]
    fn the_request_is_cntlms_and_a_url_without_scheme_is_refused() {
        let req = magic_request("http://www.example.com:8080/path?q").expect("valid");
        assert_eq!(
            String::from_utf8_lossy(&req.to_bytes()),
            "GET http://www.example.com:8080/path?q HTTP/1.1\r\n\
             Proxy-Connection: keep-alive\r\nHost: www.example.com:8080\r\n\r\n"
        );
        let err = magic_request("www.example.com").expect_err("no scheme");
        assert_eq!(err.to_string(), "Invalid URL (www.example.com)");
    }

    #[test]
    fn progress_lines_are_cntlms() {
        assert_eq!(
            format!(
                "Config profile {:2}/{}... {}",
                1,
                4,
                ProfileResult::Accepted(200)
            ),
            "Config profile  1/4... OK (HTTP code: 200)"
        );
        assert_eq!(
            ProfileResult::NotRequired(200).to_string(),
            "Auth not required (HTTP code: 200)"
        );
    }
}
