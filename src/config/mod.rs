//! The resolved, validated configuration the proxy runs on.
//!
//! Sources (the config file, the command line, an interactive password) are merged elsewhere
//! (`file`, `keywords`, `crate::cli`); what leaves this module is one immutable `Config`,
//! shared behind an `Arc` and replaced whole on reload.

pub mod file;
pub mod keywords;
pub mod report;
pub mod settings;
pub mod values;

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::auth::ntlm::hashes::HashFormat;
use crate::auth::{Credentials, NtlmDialect, Password};

/// Everything the running proxy needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses of the proxy listeners (`Listen` / `-l`); 127.0.0.1:3128 when none is given.
    pub listen: Vec<SocketAddr>,
    /// `Gateway yes` / `-g`: port-only listen specs bind every address instead of loopback.
    pub gateway: bool,
    /// `Allow` / `Deny` / `-A` / `-D` in order; the first match wins; no match allows.
    pub acl: Vec<AclRule>,
    /// Parent proxies (`Proxy` lines and positional arguments), tried in order.
    pub parents: Vec<ParentProxy>,
    /// Go DIRECT when every parent is down (the CNTLM man page's promise, off by default).
    pub direct_fallback: bool,
    /// `NoProxy` / `-N` patterns: matching hosts go DIRECT.
    pub no_proxy: Vec<String>,
    /// How to authenticate to parents.
    pub auth: AuthSettings,
    /// `Header` / `-r` substitutions: add or replace these request headers.
    pub headers: Vec<HeaderSubstitution>,
    /// `Tunnel` / `-L` port forwards.
    pub tunnels: Vec<TunnelSpec>,
    /// `SOCKS5Proxy` / `-O` listener addresses.
    pub socks5_listen: Vec<SocketAddr>,
    /// `SOCKS5Users` / `-R` accounts; empty means no SOCKS5 authentication.
    pub socks5_users: Vec<(String, Password)>,
    /// `NTLMToBasic yes` / `-B`: take credentials from the client's Basic header.
    pub ntlm_to_basic: bool,
    /// `ISAScannerSize` / `-S` in KiB (0 = no limit): the ISA plugin for every download up to
    /// this size. Unset with `ISAScannerAgent` alone: the plugin is on for matching
    /// User-Agents only (`proxy::isa`).
    pub isa_scanner_size: Option<u64>,
    /// `ISAScannerAgent` / `-G` User-Agent patterns.
    pub isa_scanner_agents: Vec<String>,
    /// `Pac` / `-x`: a PAC file path or URL.
    pub pac: Option<String>,
    /// `PacAuthDomains` patterns: PAC-named parents that may receive credentials.
    pub pac_auth_domains: Vec<String>,
    /// `-s`: serialize requests.
    pub serialize: bool,
    /// Limits and timeouts (DESIGN.md §2 "Limits and defaults").
    pub limits: Limits,
}

/// One `Allow` or `Deny` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    /// Whether a match lets the client in.
    pub action: AclAction,
    /// The network the client address is matched against.
    pub network: IpNet,
}

/// What an ACL rule does on a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclAction {
    /// `Allow` / `-A`.
    Allow,
    /// `Deny` / `-D`.
    Deny,
}

/// A parent proxy as configured (`host:port`); resolved when connecting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParentProxy {
    /// Host name or address literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::fmt::Display for ParentProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Authentication settings for parents.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// `Auth` / `-a`; NTLMv2 by default (CNTLM's real default, whatever its `-h` says).
    pub dialect: NtlmDialect,
    /// `Flags` / `-F`: the Type 1 flags override, already byte-swapped to wire order.
    pub flags: Option<u32>,
    /// User, domain, workstation, password and hashes.
    pub credentials: Credentials,
    /// How `Pass*` values were encoded (kept for `-M` output).
    pub hash_format: HashFormat,
    /// `Auth` / `-a`: which scheme answers the parent (NTLM with `dialect` by default).
    pub scheme: AuthChoice,
    /// Where Kerberos credentials come from and which service principal to ask for.
    pub kerberos: KerberosSettings,
}

/// The scheme used towards parents (`Auth` / `-a`; the NTLM dialect is `AuthSettings::dialect`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthChoice {
    /// `Auth NTLMv2|NTLM2SR|NTLM|NT|LM`: NTLM only, as CNTLM 0.92.3.
    #[default]
    Ntlm,
    /// `Auth Negotiate` (alias `GSS`): Kerberos through SPNEGO (RFC 4559) only.
    Negotiate,
    /// `Auth Basic`: Basic (RFC 7617) only, and only to a parent that challenged with it.
    Basic,
    /// `Auth Auto`: pick from each parent's offer: Negotiate, else NTLM, else Basic.
    Auto,
}

/// Kerberos settings (`KerberosKeytab`, `KerberosPrincipal`, `KerberosSPN`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KerberosSettings {
    /// `KerberosKeytab`: a client keytab to obtain tickets from.
    pub keytab: Option<std::path::PathBuf>,
    /// `KerberosPrincipal`: the keytab entry (`user@REALM`) to use.
    pub principal: Option<String>,
    /// `KerberosSPN`: the service principal instead of `HTTP@<parent host>`.
    pub spn: Option<String>,
}

/// A `Header` / `-r` line: set `name` to `value`, replacing any client value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSubstitution {
    /// Header name as written.
    pub name: String,
    /// Header value as written.
    pub value: String,
}

/// A `Tunnel` / `-L` spec: listen on `listen`, forward to `host:port` through the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    /// Local address to bind.
    pub listen: SocketAddr,
    /// Remote host.
    pub host: String,
    /// Remote port.
    pub port: u16,
}

/// Limits and timeouts, each configurable (DESIGN.md §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line.
    pub request_line: usize,
    /// Longest single header field.
    pub header_field: usize,
    /// Largest request or response head.
    pub head: usize,
    /// Most header fields in a head.
    pub header_count: usize,
    /// Deadline for a whole request head to arrive.
    pub header_deadline: Duration,
    /// Idle time allowed between requests on a client keep-alive connection.
    pub client_idle: Duration,
    /// Idle time allowed on a tunnel.
    pub tunnel_idle: Duration,
    /// Time allowed to connect to a parent.
    pub parent_connect: Duration,
    /// Time allowed for a parent's first response byte.
    pub parent_first_byte: Duration,
    /// How long a dead parent is skipped before it is probed again.
    pub parent_backoff: Duration,
    /// Largest NTLM Type 2 message accepted.
    pub ntlm_challenge: usize,
    /// Most client connections served at once; above it, a fast 503.
    pub max_connections: usize,
    /// Listen backlog.
    pub backlog: u32,
    /// Consecutive credential rejections after which we stop authenticating.
    pub auth_failures: u32,
    /// Drain deadline for tunnels at shutdown.
    pub shutdown_drain: Duration,
    /// How often a PAC is re-fetched (besides every network change).
    pub pac_refetch: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_line: 8 * 1024,
            header_field: 8 * 1024,
            head: 64 * 1024,
            header_count: 100,
            header_deadline: Duration::from_secs(30),
            client_idle: Duration::from_secs(120),
            tunnel_idle: Duration::from_secs(300),
            parent_connect: Duration::from_secs(10),
            parent_first_byte: Duration::from_secs(60),
            parent_backoff: Duration::from_secs(60),
            ntlm_challenge: 16 * 1024,
            max_connections: 4096,
            backlog: 1024,
            auth_failures: 3,
            shutdown_drain: Duration::from_secs(30),
            pac_refetch: crate::pac::fetch::PAC_REFETCH_INTERVAL,
        }
    }
}

impl Default for Config {
    /// The embedded default: 127.0.0.1:3128, no parent (DIRECT), NTLMv2.
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 3128))],
            gateway: false,
            acl: Vec::new(),
            parents: Vec::new(),
            direct_fallback: false,
            no_proxy: Vec::new(),
            auth: AuthSettings::default(),
            headers: Vec::new(),
            tunnels: Vec::new(),
            socks5_listen: Vec::new(),
            socks5_users: Vec::new(),
            ntlm_to_basic: false,
            isa_scanner_size: None,
            isa_scanner_agents: Vec::new(),
            pac: None,
            pac_auth_domains: Vec::new(),
            serialize: false,
            limits: Limits::default(),
        }
    }
}
