//! The config keywords: CNTLM 0.92.3's 22 (cntlm-compat.md §2.2), the fork's `Pac`, and our
//! `HashFormat` and `ProxyFallback`, each validated into `Settings`.
//!
//! Keywords are case-insensitive. For a single-value keyword the **first** occurrence in the
//! file wins and later ones are reported, as CNTLM does; list keywords (`Listen`, `Proxy`,
//! `NoProxy`, `Allow`/`Deny`, `Header`, `Tunnel`, `SOCKS5Proxy`, `SOCKS5Users`,
//! `ISAScannerAgent`) add up. `Pass*` values are decoded after the whole file is read, so
//! `HashFormat` applies wherever it is written.

use std::collections::HashMap;

use crate::auth::ntlm::hashes::{self, HashFormat};
use crate::auth::{NtlmDialect, Password};
use crate::config::file::{self, ConfigText};
use crate::config::report::{Origin, Report, ValueError};
use crate::config::settings::Settings;
use crate::config::values;
use crate::config::{AclAction, AclRule, AuthChoice};

/// A keyword the config file understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// `Allow ip[/mask]` (list).
    Allow,
    /// `Auth NTLMv2|NTLM2SR|NTLM|NT|LM`.
    Auth,
    /// `Deny ip[/mask]` (list).
    Deny,
    /// `Domain name`.
    Domain,
    /// `Flags number` (Type 1 flags override, byte-swapped).
    Flags,
    /// `Gateway yes`.
    Gateway,
    /// `Header Name: value` (list).
    Header,
    /// `ISAScannerAgent pattern` (list).
    IsaScannerAgent,
    /// `ISAScannerSize kib`.
    IsaScannerSize,
    /// `Listen [addr:]port` (list).
    Listen,
    /// `NoProxy patterns` (list).
    NoProxy,
    /// `NTLMToBasic yes`.
    NtlmToBasic,
    /// `PassLM hex`.
    PassLm,
    /// `PassNT hex`.
    PassNt,
    /// `PassNTLMv2 hex`.
    PassNtlmV2,
    /// `Password text`.
    Password,
    /// `Proxy host:port` (list).
    Proxy,
    /// `SOCKS5Proxy [addr:]port` (list).
    Socks5Proxy,
    /// `SOCKS5Users user:pass` (list; `SOCKS5User` accepted too).
    Socks5Users,
    /// `Tunnel [addr:]lport:rhost:rport` (list).
    Tunnel,
    /// `Username name` (an `@` is literal here, unlike `-u`).
    Username,
    /// `Workstation name`.
    Workstation,
    /// `Pac file-or-url` (the maintained fork's keyword).
    Pac,
    /// `HashFormat inverted|plain` (ours): how `Pass*` hex is read.
    HashFormat,
    /// `ProxyFallback direct|none` (ours): go DIRECT when every parent is down.
    ProxyFallback,
    /// `PacAuthDomains patterns` (ours, list): PAC-named parents that may get credentials.
    PacAuthDomains,
    /// `KerberosKeytab path` (ours): a client keytab for Negotiate.
    KerberosKeytab,
    /// `KerberosPrincipal user@REALM` (ours): the keytab entry to use.
    KerberosPrincipal,
    /// `KerberosSPN HTTP@host` (ours): the parent's service principal, when not `HTTP@<host>`.
    KerberosSpn,
}

/// Canonical spellings, for lookup and messages.
const KEYWORDS: &[(&str, Keyword)] = &[
    ("Allow", Keyword::Allow),
    ("Auth", Keyword::Auth),
    ("Deny", Keyword::Deny),
    ("Domain", Keyword::Domain),
    ("Flags", Keyword::Flags),
    ("Gateway", Keyword::Gateway),
    ("Header", Keyword::Header),
    ("ISAScannerAgent", Keyword::IsaScannerAgent),
    ("ISAScannerSize", Keyword::IsaScannerSize),
    ("Listen", Keyword::Listen),
    ("NoProxy", Keyword::NoProxy),
    ("NTLMToBasic", Keyword::NtlmToBasic),
    ("PassLM", Keyword::PassLm),
    ("PassNT", Keyword::PassNt),
    ("PassNTLMv2", Keyword::PassNtlmV2),
    ("Password", Keyword::Password),
    ("Proxy", Keyword::Proxy),
    ("SOCKS5Proxy", Keyword::Socks5Proxy),
    ("SOCKS5Users", Keyword::Socks5Users),
    ("Tunnel", Keyword::Tunnel),
    ("Username", Keyword::Username),
    ("Workstation", Keyword::Workstation),
    ("Pac", Keyword::Pac),
    ("HashFormat", Keyword::HashFormat),
    ("ProxyFallback", Keyword::ProxyFallback),
    ("PacAuthDomains", Keyword::PacAuthDomains),
    ("KerberosKeytab", Keyword::KerberosKeytab),
    ("KerberosPrincipal", Keyword::KerberosPrincipal),
    ("KerberosSPN", Keyword::KerberosSpn),
];

impl Keyword {
    /// Finds a keyword case-insensitively; `SOCKS5User` (the spelling of CNTLM's docs) maps
    /// to `SOCKS5Users` (the spelling its code reads).
    pub fn lookup(name: &str) -> Option<Keyword> {
        if name.eq_ignore_ascii_case("SOCKS5User") {
            return Some(Keyword::Socks5Users);
        }
        KEYWORDS
            .iter()
            .find(|(spelling, _)| spelling.eq_ignore_ascii_case(name))
            .map(|(_, keyword)| *keyword)
    }

    /// The canonical spelling.
    pub fn name(self) -> &'static str {
        KEYWORDS
            .iter()
            .find(|(_, keyword)| *keyword == self)
            .map(|(spelling, _)| *spelling)
            .expect("every keyword is in KEYWORDS")
    }

    /// Whether repeated lines add up (otherwise the first one wins).
    pub fn is_list(self) -> bool {
        matches!(
            self,
            Keyword::Allow
                | Keyword::Deny
                | Keyword::Header
                | Keyword::IsaScannerAgent
                | Keyword::Listen
                | Keyword::NoProxy
                | Keyword::PacAuthDomains
                | Keyword::Proxy
                | Keyword::Socks5Proxy
                | Keyword::Socks5Users
                | Keyword::Tunnel
        )
    }
}

/// A config file read into `Settings`, with everything worth telling the user.
#[derive(Debug, Clone, Default)]
pub struct FileSettings {
    /// The validated settings (erroneous lines left out).
    pub settings: Settings,
    /// Errors and warnings, with file and line.
    pub report: Report,
    /// Whether any `Pass*` value relies on the default hash format (no `HashFormat`, no
    /// `plain:`/`inverted:` prefix): `--check-config` then explains the ambiguity.
    pub hash_format_implicit: bool,
    /// Whether any `Pass*` line was present.
    pub has_hashes: bool,
}

/// A `Pass*` value kept until `HashFormat` is known. The text is a secret too.
struct PendingHash {
    keyword: Keyword,
    line: usize,
    text: Password,
}

/// Reads a config file named `path` (for messages) with contents `bytes`.
pub fn read_file(path: &str, bytes: &[u8]) -> FileSettings {
    let ConfigText { entries, warnings } = file::parse(bytes);
    let mut out = FileSettings::default();
    let at = |line| Origin::File {
        path: path.to_string(),
        line,
    };
    for (line, warning) in warnings {
        out.report.warn(Some(at(line)), warning.to_string());
    }
    let mut first_line: HashMap<Keyword, usize> = HashMap::new();
    let mut pending = Vec::new();
    for entry in entries {
        let origin = at(entry.line);
        let Some(keyword) = Keyword::lookup(&entry.keyword) else {
            let message = if entry.keyword.eq_ignore_ascii_case("SSPI") {
                "SSPI (the maintained fork's keyword) is not supported yet; ignored".to_string()
            } else {
                format!(
                    "unknown keyword {:?}; ignored (CNTLM: \"Ignoring config file option\")",
                    entry.keyword
                )
            };
            out.report.warn(Some(origin), message);
            continue;
        };
        if entry.keyword.eq_ignore_ascii_case("SOCKS5User") {
            out.report.warn(
                Some(origin.clone()),
                "SOCKS5User read as SOCKS5Users (CNTLM 0.92.3 ignores this spelling and \
                 leaves the SOCKS5 port open to anyone)",
            );
        }
        if entry.value.is_empty() {
            if keyword == Keyword::Password {
                out.report
                    .error(origin, keyword.name(), ValueError::EmptyPassword);
            } else {
                out.report.warn(
                    Some(origin),
                    format!("{}: no value; ignored", keyword.name()),
                );
            }
            continue;
        }
        if !keyword.is_list() {
            if let Some(first) = first_line.get(&keyword) {
                out.report.warn(
                    Some(origin),
                    format!(
                        "{} already set on line {first}; this line is ignored (the first one \
                         wins, as in CNTLM)",
                        keyword.name()
                    ),
                );
                continue;
            }
            first_line.insert(keyword, entry.line);
        }
        if matches!(
            keyword,
            Keyword::PassLm | Keyword::PassNt | Keyword::PassNtlmV2
        ) {
            pending.push(PendingHash {
                keyword,
                line: entry.line,
                text: Password::new(entry.value),
            });
            continue;
        }
        if let Err(problem) = apply(keyword, &entry.value, &mut out.settings, &mut |msg| {
            out.report.warn(Some(origin.clone()), msg)
        }) {
            out.report.error(origin, keyword.name(), problem);
        }
    }
    decode_hashes(pending, path, &mut out);
    out
}

fn decode_hashes(pending: Vec<PendingHash>, path: &str, out: &mut FileSettings) {
    let format = out.settings.hash_format.unwrap_or_default();
    for hash in pending {
        out.has_hashes = true;
        let text = hash.text.expose();
        let prefixed = ["plain:", "inverted:"].iter().any(|p| {
            text.get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p))
        });
        if !prefixed && out.settings.hash_format.is_none() {
            out.hash_format_implicit = true;
        }
        match hashes::decode(text, format) {
            Ok(decoded) => {
                let slot = match hash.keyword {
                    Keyword::PassLm => &mut out.settings.lm_hash,
                    Keyword::PassNt => &mut out.settings.nt_hash,
                    _ => &mut out.settings.ntlmv2_hash,
                };
                *slot = Some(decoded);
            }
            Err(_) => out.report.error(
                Origin::File {
                    path: path.to_string(),
                    line: hash.line,
                },
                hash.keyword.name(),
                ValueError::InvalidSecret {
                    what: "a password hash",
                    expected: "32 hexadecimal digits as printed by cntlm -H, optionally \
                               prefixed by plain: or inverted:",
                },
            ),
        }
    }
}

/// The `--check-config` advice about the two indistinguishable hash formats, when relevant.
pub fn hash_format_advice(file: &FileSettings) -> Option<String> {
    if !file.has_hashes {
        return None;
    }
    let format = file.settings.hash_format.unwrap_or_default();
    Some(if file.hash_format_implicit {
        "PassLM/PassNT/PassNTLMv2 are read as CNTLM 0.92.3 writes them (bit-inverted hex, \
         what `cntlm -H` prints). Hashes from cntlm 0.94+ (the maintained fork) are plain hex \
         and look the same: for those, add `HashFormat plain` or prefix each value with `plain:`"
            .to_string()
    } else {
        format!(
            "PassLM/PassNT/PassNTLMv2 are read as {} hex (HashFormat or value prefixes)",
            match format {
                HashFormat::Inverted => "CNTLM 0.92.3's bit-inverted",
                HashFormat::Plain => "plain",
            }
        )
    })
}

/// Validates one keyword's value into `settings`; `warn` receives non-fatal remarks.
///
/// The command line's flags (`crate::cli`) call the same `values` parsers.
fn apply(
    keyword: Keyword,
    value: &str,
    settings: &mut Settings,
    warn: &mut dyn FnMut(String),
) -> Result<(), ValueError> {
    match keyword {
        Keyword::Allow | Keyword::Deny => {
            let action = if keyword == Keyword::Allow {
                AclAction::Allow
            } else {
                AclAction::Deny
            };
            let parsed = values::parse_acl(value)?;
            if parsed.host_bits_set {
                warn(format!(
                    "{}: subnet definition might be incorrect: {value:?} has bits set outside \
                     its mask; using {}",
                    keyword.name(),
                    parsed.networks[0]
                ));
            }
            settings.acl.extend(
                parsed
                    .networks
                    .into_iter()
                    .map(|network| AclRule { action, network }),
            );
        }
        Keyword::Auth => {
            let (choice, dialect) = parse_auth(value)?;
            settings.auth_choice = Some(choice);
            settings.dialect = dialect.or(settings.dialect);
        }
        Keyword::KerberosKeytab => settings.kerberos_keytab = Some(value.into()),
        Keyword::KerberosPrincipal => settings.kerberos_principal = Some(value.to_string()),
        Keyword::KerberosSpn => settings.kerberos_spn = Some(value.to_string()),
        Keyword::Domain => settings.domain = Some(value.to_string()),
        Keyword::Flags => settings.flags = Some(values::parse_flags(value)?),
        Keyword::Gateway | Keyword::NtlmToBasic => {
            let (on, unusual) = values::parse_yes(value);
            if unusual {
                warn(format!(
                    "{}: only \"yes\" turns it on; {value:?} means no",
                    keyword.name()
                ));
            }
            let slot = if keyword == Keyword::Gateway {
                &mut settings.gateway
            } else {
                &mut settings.ntlm_to_basic
            };
            *slot = Some(on);
        }
        Keyword::Header => settings.headers.push(values::parse_header(value)?),
        Keyword::IsaScannerAgent => settings.isa_scanner_agents.push(value.to_string()),
        Keyword::IsaScannerSize => settings.isa_scanner_size = Some(values::parse_kib(value)?),
        Keyword::Listen => settings.listen.push(values::parse_listen(value)?),
        Keyword::NoProxy => settings.no_proxy.extend(values::parse_no_proxy(value)),
        Keyword::Password => settings.password = Some(Password::new(value)),
        Keyword::Proxy => settings.parents.push(values::parse_proxy(value)?),
        Keyword::Socks5Proxy => settings.socks5_listen.push(values::parse_listen(value)?),
        Keyword::Socks5Users => settings
            .socks5_users
            .push(values::parse_socks5_user(value)?),
        Keyword::Tunnel => settings.tunnels.push(values::parse_tunnel(value)?),
        Keyword::Username => settings.user = Some(value.to_string()),
        Keyword::Workstation => settings.workstation = Some(value.to_string()),
        Keyword::Pac => settings.pac = Some(value.to_string()),
        Keyword::PacAuthDomains => settings
            .pac_auth_domains
            .extend(values::parse_no_proxy(value)),
        Keyword::HashFormat => {
            settings.hash_format =
                Some(HashFormat::parse(value).ok_or_else(|| ValueError::Invalid {
                    value: value.to_string(),
                    what: "a hash format",
                    expected: "inverted (CNTLM 0.92.3) or plain (cntlm 0.94+)",
                })?)
        }
        Keyword::ProxyFallback => settings.direct_fallback = Some(values::parse_fallback(value)?),
        // Decoded in `decode_hashes` once HashFormat is known.
        Keyword::PassLm | Keyword::PassNt | Keyword::PassNtlmV2 => {}
    }
    Ok(())
}

/// `Auth` / `-a`, case-insensitive: CNTLM's dialect names (NTLM, with that dialect), or
/// `Negotiate` (alias `GSS`, the maintained fork's spelling), `Basic`, `Auto`.
pub fn parse_auth(value: &str) -> Result<(AuthChoice, Option<NtlmDialect>), ValueError> {
    let text = value.trim();
    if let Some(dialect) = NtlmDialect::parse(text) {
        return Ok((AuthChoice::Ntlm, Some(dialect)));
    }
    match text.to_ascii_lowercase().as_str() {
        "negotiate" | "gss" => Ok((AuthChoice::Negotiate, None)),
        "basic" => Ok((AuthChoice::Basic, None)),
        "auto" => Ok((AuthChoice::Auto, None)),
        _ => Err(ValueError::UnknownAuth {
            value: value.to_string(),
        }),
    }
}

#[cfg(test)]
#[path = "keywords_tests.rs"]
mod tests;
