//! One source's view of the settings, the precedence rule that merges sources, and the
//! resolution into the immutable `Config`.
//!
//! The config file and the command line each produce a `Settings` (every single value
//! optional, every list possibly empty). The one precedence rule, as in CNTLM:
//! - single values: the command line wins over the file;
//! - lists add up, command line first (so CLI parents are tried before `Proxy` lines);
//! - ACLs given on the command line replace the file's entirely;
//! - `Header`s: a command-line header replaces file headers of the same name.

use crate::auth::ntlm::hashes::HashFormat;
use crate::auth::{Credentials, Hash16, NtlmDialect, Password};
use crate::cli::Args;
use crate::config::keywords::{FileSettings, read_file};
use crate::config::report::{Origin, Report, ValueError};
use crate::config::values::{Exposure, ListenSpec, TunnelRaw};
use crate::config::{
    AclRule, AuthChoice, AuthSettings, Config, HeaderSubstitution, KerberosSettings, Limits,
    ParentProxy, TunnelSpec,
};

/// Settings from one source, before merging and defaults.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `Listen` / `-l`.
    pub listen: Vec<ListenSpec>,
    /// `Gateway` / `-g`.
    pub gateway: Option<bool>,
    /// `Allow` / `Deny` / `-A` / `-D`, in order.
    pub acl: Vec<AclRule>,
    /// `Proxy` / positional arguments.
    pub parents: Vec<ParentProxy>,
    /// `ProxyFallback`.
    pub direct_fallback: Option<bool>,
    /// `NoProxy` / `-N`.
    pub no_proxy: Vec<String>,
    /// `Auth` / `-a`.
    pub dialect: Option<NtlmDialect>,
    /// `Auth` / `-a`: the scheme (`Negotiate`, `Basic`, `Auto`, or an NTLM dialect).
    pub auth_choice: Option<AuthChoice>,
    /// `KerberosKeytab`.
    pub kerberos_keytab: Option<std::path::PathBuf>,
    /// `KerberosPrincipal`.
    pub kerberos_principal: Option<String>,
    /// `KerberosSPN`.
    pub kerberos_spn: Option<String>,
    /// `Flags` / `-F`, already in wire order.
    pub flags: Option<u32>,
    /// `Username` / `-u`.
    pub user: Option<String>,
    /// `Domain` / `-d` (or the part after `@` of `-u`).
    pub domain: Option<String>,
    /// `Workstation` / `-w`.
    pub workstation: Option<String>,
    /// `Password` / `-p` / `-I`.
    pub password: Option<Password>,
    /// `HashFormat`, when written.
    pub hash_format: Option<HashFormat>,
    /// `PassLM`, decoded.
    pub lm_hash: Option<Hash16>,
    /// `PassNT`, decoded.
    pub nt_hash: Option<Hash16>,
    /// `PassNTLMv2`, decoded.
    pub ntlmv2_hash: Option<Hash16>,
    /// `Header` / `-r`.
    pub headers: Vec<HeaderSubstitution>,
    /// `Tunnel` / `-L`.
    pub tunnels: Vec<TunnelRaw>,
    /// `SOCKS5Proxy` / `-O`.
    pub socks5_listen: Vec<ListenSpec>,
    /// `SOCKS5Users` / `-R`.
    pub socks5_users: Vec<(String, Password)>,
    /// `NTLMToBasic` / `-B`.
    pub ntlm_to_basic: Option<bool>,
    /// `ISAScannerSize` / `-S`.
    pub isa_scanner_size: Option<u64>,
    /// `ISAScannerAgent` / `-G`.
    pub isa_scanner_agents: Vec<String>,
    /// `Pac` / `-x`.
    pub pac: Option<String>,
    /// `PacAuthDomains`.
    pub pac_auth_domains: Vec<String>,
    /// `-s`.
    pub serialize: Option<bool>,
}

fn lists<T>(first: Vec<T>, then: Vec<T>) -> Vec<T> {
    let mut out = first;
    out.extend(then);
    out
}

impl Settings {
    /// Merges `self` (the command line) over `file` with the module's precedence rule.
    pub fn over(self, file: Settings) -> Settings {
        let cli_header_names: Vec<String> = self
            .headers
            .iter()
            .map(|h| h.name.to_ascii_lowercase())
            .collect();
        let file_headers = file
            .headers
            .into_iter()
            .filter(|h| !cli_header_names.contains(&h.name.to_ascii_lowercase()));
        Settings {
            listen: lists(self.listen, file.listen),
            gateway: self.gateway.or(file.gateway),
            acl: if self.acl.is_empty() {
                file.acl
            } else {
                self.acl
            },
            parents: lists(self.parents, file.parents),
            direct_fallback: self.direct_fallback.or(file.direct_fallback),
            no_proxy: lists(self.no_proxy, file.no_proxy),
            dialect: self.dialect.or(file.dialect),
            auth_choice: self.auth_choice.or(file.auth_choice),
            kerberos_keytab: self.kerberos_keytab.or(file.kerberos_keytab),
            kerberos_principal: self.kerberos_principal.or(file.kerberos_principal),
            kerberos_spn: self.kerberos_spn.or(file.kerberos_spn),
            flags: self.flags.or(file.flags),
            user: self.user.or(file.user),
            domain: self.domain.or(file.domain),
            workstation: self.workstation.or(file.workstation),
            password: self.password.or(file.password),
            hash_format: self.hash_format.or(file.hash_format),
            lm_hash: self.lm_hash.or(file.lm_hash),
            nt_hash: self.nt_hash.or(file.nt_hash),
            ntlmv2_hash: self.ntlmv2_hash.or(file.ntlmv2_hash),
            headers: self.headers.into_iter().chain(file_headers).collect(),
            tunnels: lists(self.tunnels, file.tunnels),
            socks5_listen: lists(self.socks5_listen, file.socks5_listen),
            socks5_users: lists(self.socks5_users, file.socks5_users),
            ntlm_to_basic: self.ntlm_to_basic.or(file.ntlm_to_basic),
            isa_scanner_size: self.isa_scanner_size.or(file.isa_scanner_size),
            isa_scanner_agents: lists(self.isa_scanner_agents, file.isa_scanner_agents),
            pac: self.pac.or(file.pac),
            pac_auth_domains: lists(self.pac_auth_domains, file.pac_auth_domains),
            serialize: self.serialize.or(file.serialize),
        }
    }

    /// Applies the defaults and builds the `Config` the proxy runs on.
    ///
    /// With no `Listen` anywhere the proxy listens on port 3128 (CNTLM has no default and
    /// refuses to start; DESIGN.md §1 makes 3128 the embedded default). `Gateway` applies to
    /// every port-only spec, wherever it was written.
    pub fn resolve(self) -> Config {
        let exposure = if self.gateway == Some(true) {
            Exposure::Gateway
        } else {
            Exposure::Loopback
        };
        let mut listen: Vec<_> = self.listen.iter().map(|s| s.resolve(exposure)).collect();
        if listen.is_empty() {
            listen.push(
                ListenSpec {
                    addr: None,
                    port: 3128,
                }
                .resolve(exposure),
            );
        }
        Config {
            listen,
            gateway: exposure == Exposure::Gateway,
            acl: self.acl,
            parents: self.parents,
            direct_fallback: self.direct_fallback.unwrap_or(false),
            no_proxy: self.no_proxy,
            auth: AuthSettings {
                dialect: self.dialect.unwrap_or_default(),
                flags: self.flags,
                credentials: Credentials {
                    user: self.user.unwrap_or_default(),
                    domain: self.domain.unwrap_or_default(),
                    workstation: self.workstation.unwrap_or_else(default_workstation),
                    password: self.password,
                    lm_hash: self.lm_hash,
                    nt_hash: self.nt_hash,
                    ntlmv2_hash: self.ntlmv2_hash,
                },
                hash_format: self.hash_format.unwrap_or_default(),
                scheme: self.auth_choice.unwrap_or_default(),
                kerberos: KerberosSettings {
                    keytab: self.kerberos_keytab,
                    principal: self.kerberos_principal,
                    spn: self.kerberos_spn,
                },
            },
            headers: self.headers,
            tunnels: self
                .tunnels
                .into_iter()
                .map(|t| TunnelSpec {
                    listen: t.listen.resolve(exposure),
                    host: t.host,
                    port: t.port,
                })
                .collect(),
            socks5_listen: self
                .socks5_listen
                .iter()
                .map(|s| s.resolve(exposure))
                .collect(),
            socks5_users: self.socks5_users,
            ntlm_to_basic: self.ntlm_to_basic.unwrap_or(false),
            isa_scanner_size: self.isa_scanner_size,
            isa_scanner_agents: self.isa_scanner_agents,
            pac: self.pac,
            pac_auth_domains: self.pac_auth_domains,
            serialize: self.serialize.unwrap_or(false),
            limits: Limits::default(),
        }
    }
}

/// The merged settings of every source, with the findings of each.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Command line over file, not yet resolved (main may still add a `-I` password).
    pub settings: Settings,
    /// The file alone, for `--check-config`'s hash-format advice.
    pub file: FileSettings,
    /// Errors and warnings of the file and the command line together.
    pub report: Report,
}

/// Reads the config file contents (`(name for messages, bytes)`, or none) and the command
/// line into merged `Sources`: the one entry point for start-up and, later, reload.
pub fn load_sources(args: &Args, file: Option<(&str, &[u8])>) -> Sources {
    let file = match file {
        Some((name, bytes)) => read_file(name, bytes),
        None => FileSettings::default(),
    };
    let (cli, cli_report) = args.to_settings();
    let mut report = file.report.clone();
    report.extend(cli_report);
    Sources {
        settings: cli.over(file.settings.clone()),
        file,
        report,
    }
}

/// Checks that the credentials can answer the chosen dialect, once every source (including
/// `-I`) is known.
///
/// No credentials at all is only a warning: a parent without authentication still works.
/// Credentials that cannot serve the chosen `Auth` (say `Auth LM` with only `PassNT`) are an
/// error, because every request would fail.
pub fn check_credentials(config: &Config) -> Report {
    let mut report = Report::default();
    let creds = &config.auth.credentials;
    if config.parents.is_empty() || config.ntlm_to_basic {
        return report;
    }
    let scheme = config.auth.scheme;
    if matches!(scheme, AuthChoice::Negotiate | AuthChoice::Auto)
        && let Some(reason) = crate::auth::negotiate::unavailable_reason()
    {
        report.warn(
            None,
            format!(
                "Negotiate unavailable: {reason}{}",
                if scheme == AuthChoice::Auto {
                    "; Auth Auto will use NTLM or Basic"
                } else {
                    "; parents asking for authentication will be refused"
                }
            ),
        );
    }
    if scheme != AuthChoice::Ntlm {
        // Kerberos can work from the user's ticket cache and Basic needs only a password:
        // what is missing shows per parent, at the first request.
        if scheme == AuthChoice::Basic && creds.password.is_none() {
            report.warn(
                None,
                "Auth Basic without Password (or -p/-I): parents asking for Basic will be refused",
            );
        }
        return report;
    }
    let has_password = creds.password.is_some();
    let (lm, nt, v2) = (
        has_password || creds.lm_hash.is_some(),
        has_password || creds.nt_hash.is_some(),
        has_password || creds.nt_hash.is_some() || creds.ntlmv2_hash.is_some(),
    );
    if !lm && !nt && !v2 {
        report.warn(
            None,
            "no Password, PassNT, PassLM or PassNTLMv2 (nor -p/-I): parents that ask for \
             authentication will be refused",
        );
        return report;
    }
    let dialect = config.auth.dialect;
    let missing = match dialect {
        NtlmDialect::Lm if !lm => Some("PassLM"),
        NtlmDialect::Nt | NtlmDialect::Ntlm2Sr if !nt => Some("PassNT"),
        NtlmDialect::Ntlm if !lm || !nt => Some("PassLM and PassNT"),
        NtlmDialect::NtlmV2 if !v2 => Some("PassNTLMv2 or PassNT"),
        _ => None,
    };
    if let Some(missing) = missing {
        report.error(
            Origin::Combined,
            "Auth",
            ValueError::Unusable(format!(
                "Auth {} needs {missing} (or Password)",
                dialect.name()
            )),
        );
    }
    report
}

/// The workstation name sent when `Workstation` is not set: this machine's short host name,
/// as CNTLM does (it sends `gethostname()`); the NTLM layer upper-cases it on the wire.
pub fn default_workstation() -> String {
    #[cfg(unix)]
    let name = nix::unistd::gethostname()
        .ok()
        .and_then(|n| n.into_string().ok())
        .unwrap_or_default();
    #[cfg(not(unix))]
    let name = String::new();
    name.split('.').next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AclAction;
    use crate::config::values::{parse_acl, parse_header, parse_listen, parse_proxy};

    fn acl(text: &str) -> AclRule {
        AclRule {
            action: AclAction::Allow,
            network: parse_acl(text).expect("valid").networks[0],
        }
    }

    #[test]
    fn workstation_defaults_to_the_short_host_name_like_cntlm() {
        let config = Settings::default().resolve();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let short = host.trim().split('.').next().unwrap_or_default();
        assert_eq!(config.auth.credentials.workstation, short);
        let named = Settings {
            workstation: Some("LAPTOP7".into()),
            ..Settings::default()
        };
        assert_eq!(named.resolve().auth.credentials.workstation, "LAPTOP7");
    }

    #[test]
    fn cli_single_values_win_and_lists_add_up_cli_first() {
        let cli = Settings {
            user: Some("cli".into()),
            parents: vec![parse_proxy("a:1").expect("valid")],
            listen: vec![parse_listen("1").expect("valid")],
            ..Settings::default()
        };
        let file = Settings {
            user: Some("file".into()),
            domain: Some("dom".into()),
            parents: vec![parse_proxy("b:2").expect("valid")],
            listen: vec![parse_listen("2").expect("valid")],
            ..Settings::default()
        };
        let config = cli.over(file).resolve();
        assert_eq!(config.auth.credentials.user, "cli");
        assert_eq!(config.auth.credentials.domain, "dom");
        let parents: Vec<String> = config.parents.iter().map(|p| p.to_string()).collect();
        assert_eq!(parents, vec!["a:1", "b:2"]);
        assert_eq!(config.listen.len(), 2);
    }

    #[test]
    fn cli_acls_replace_the_files() {
        let file = Settings {
            acl: vec![acl("10.0.0.0/8"), acl("192.168.0.0/16")],
            ..Settings::default()
        };
        let merged = Settings::default().over(file.clone());
        assert_eq!(merged.acl.len(), 2);
        let cli = Settings {
            acl: vec![acl("127.0.0.1")],
            ..Settings::default()
        };
        assert_eq!(cli.over(file).acl, vec![acl("127.0.0.1")]);
    }

    #[test]
    fn cli_header_replaces_file_header_of_the_same_name() {
        let file = Settings {
            headers: vec![
                parse_header("User-Agent: file").expect("valid"),
                parse_header("X-Other: kept").expect("valid"),
            ],
            ..Settings::default()
        };
        let cli = Settings {
            headers: vec![parse_header("user-agent: cli").expect("valid")],
            ..Settings::default()
        };
        let merged = cli.over(file);
        let values: Vec<&str> = merged.headers.iter().map(|h| h.value.as_str()).collect();
        assert_eq!(values, vec!["cli", "kept"]);
    }

    #[test]
    fn defaults_are_loopback_3128_direct_ntlmv2() {
        let config = Settings::default().resolve();
        assert_eq!(config.listen[0].to_string(), "127.0.0.1:3128");
        assert!(config.parents.is_empty());
        assert_eq!(config.auth.dialect, NtlmDialect::NtlmV2);
        assert_eq!(config.auth.hash_format, HashFormat::Inverted);
    }

    #[test]
    fn gateway_binds_port_only_specs_everywhere() {
        let settings = Settings {
            gateway: Some(true),
            listen: vec![
                parse_listen("3128").expect("valid"),
                parse_listen("127.0.0.1:3129").expect("valid"),
            ],
            ..Settings::default()
        };
        let config = settings.resolve();
        assert_eq!(config.listen[0].to_string(), "0.0.0.0:3128");
        assert_eq!(config.listen[1].to_string(), "127.0.0.1:3129");
        assert!(config.gateway);
    }

    #[test]
    fn isa_agent_alone_leaves_the_size_unset() {
        // The man page: -G without -S enables the plugin for matching User-Agents only, which
        // `proxy::isa` can tell from an explicit `-S 0` (every download, no limit) only if
        // the size stays unset here.
        let settings = Settings {
            isa_scanner_agents: vec!["Wget".into()],
            ..Settings::default()
        };
        assert_eq!(settings.resolve().isa_scanner_size, None);
    }

    #[test]
    fn credentials_that_cannot_serve_the_dialect_are_an_error() {
        let base = Settings {
            parents: vec![parse_proxy("p:1").expect("valid")],
            ..Settings::default()
        };
        // Nothing at all: a warning only.
        let report = check_credentials(&base.clone().resolve());
        assert!(report.is_usable());
        assert_eq!(report.warnings.len(), 1);
        // Auth LM with only an NT hash: unusable.
        let lm_only_nt = Settings {
            dialect: Some(NtlmDialect::Lm),
            nt_hash: Some(Hash16::new([1; 16])),
            ..base.clone()
        };
        let report = check_credentials(&lm_only_nt.resolve());
        assert!(!report.is_usable());
        assert!(
            report.errors[0]
                .to_string()
                .contains("Auth LM needs PassLM")
        );
        // NTLMv2 from an NT hash: fine.
        let v2_from_nt = Settings {
            nt_hash: Some(Hash16::new([1; 16])),
            ..base
        };
        assert_eq!(check_credentials(&v2_from_nt.resolve()), Report::default());
    }
}
