//! The command line: one field per CNTLM 0.92.3 flag, same letters (cntlm-compat.md §2.1).
//!
//! This is the low level (ripgrep's split): it mirrors the flags one to one and does no I/O;
//! `to_settings` validates the values into a `Settings` that `config::settings` merges over
//! the file. Deliberate differences from CNTLM:
//! - `-h` prints an accurate help (the real default dialect is NTLMv2); like CNTLM it prints
//!   the banner on stdout, the usage on stderr, and exits 1. `--help` prints both on stdout
//!   and exits 0.
//! - `-g` applies to every port-only listen spec, wherever it stands; in CNTLM it only
//!   affects the `-l` options written after it.
//! - `-p` cannot be blanked from the visible argv soundly in Rust; `main` warns instead.
//! - `-x` (`Pac`), `--check-config` and `--route` are ours.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use crate::auth::Password;
use crate::config::keywords::parse_auth;
use crate::config::report::{Origin, Report, ValueError};
use crate::config::settings::Settings;
use crate::config::values;
use crate::config::{AclAction, AclRule};

/// The banner line both `-h` and `--help` start with.
pub fn banner() -> String {
    format!(
        "cntlm {} - a drop-in successor to CNTLM 0.92.3, the NTLM authenticating proxy\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The usage text printed by `-h` and `--help`.
pub const USAGE: &str = "\
Usage: cntlm [options] [parent-proxy:port | parent-proxy port]...

  -a NTLMv2|NTLM2SR|NTLM|NT|LM|Negotiate|Basic|Auto
                     Scheme (or NTLM dialect) answered to the parent (Auth).
                     Default: NTLMv2. Auto picks from the parent's offer.
  -A ip[/mask]       Allow clients from this address or network (Allow), repeatable.
  -B                 Take credentials from the client's Basic auth (NTLMToBasic yes).
  -c file            Config file. Default: /etc/cntlm.conf when it exists (cntlm.ini
                     beside cntlm.exe on Windows); -c /dev/null reads none.
  -D ip[/mask]       Deny clients (Deny), repeatable. ACLs given here replace the file's.
  -d domain          Domain (Domain).
  -F flags           NTLM Type 1 flags override, byte order as CNTLM reads it (Flags).
  -f                 Stay in the foreground.
  -G pattern         ISA scanner plugin User-Agent pattern (ISAScannerAgent), repeatable.
  -g                 Gateway: port-only listen specs bind every address (Gateway yes).
  -H                 Prompt for the password, print PassLM/PassNT/PassNTLMv2, exit.
  -h, --help         This help.
  -I                 Prompt for the password (no echo) instead of keeping it in a file.
  -L [addr:]lport:rhost:rport
                     Tunnel lport to rhost:rport through the parent (Tunnel), repeatable.
  -l [addr:]port     Listen here (Listen), repeatable. Default: 127.0.0.1:3128.
                     IPv6 in brackets: [::1]:3128.
  -M url             Find the best dialect for the parent with this URL.
  -N \"pat1, pat2\"    Hosts reached directly, not through the parent (NoProxy).
  -O [addr:]port     SOCKS5 listener (SOCKS5Proxy), repeatable.
  -P file            PID file.
  -p password        Password (Password). Other local users can read it (ps): prefer -I.
  -R user:pass       SOCKS5 account (SOCKS5Users), repeatable.
  -r \"Name: value\"   Add or replace a request header (Header), repeatable.
  -S kib             ISA scanner plugin size limit in KiB (ISAScannerSize).
  -s                 Serialize requests.
  -T file            Write a debug trace into file.
  -U uid|user        Run as this user once the ports are open.
  -u user[@domain]   User name (Username), optionally with the domain.
  -v                 Debug logging to the console; implies -f.
  -w workstation     Workstation name (Workstation).
  -x file|url        Proxy auto-config (Pac).
      --check-config Read the configuration, print every problem, exit 0 only if usable.
      --route URL    Explain how a request to URL would leave (NoProxy, PAC, parents), then
                     exit: 0 when a usable route exists.

Single values on the command line override the config file; lists add up.
PassLM/PassNT/PassNTLMv2 are read (and -H prints them) in CNTLM 0.92.3's bit-inverted hex.
For hashes made by cntlm 0.94+ (plain hex), write `HashFormat plain` in the config or
prefix each value with `plain:`.
";

/// Wraps a secret flag value as soon as clap hands it over.
fn secret(text: &str) -> Result<Password, std::convert::Infallible> {
    Ok(Password::new(text))
}

/// CNTLM's flags. Field docs name the config keyword each one mirrors.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "cntlm",
    disable_help_flag = true,
    disable_version_flag = true,
    args_override_self = true
)]
pub struct Args {
    /// `-a` (Auth): the NTLM dialect.
    #[arg(short = 'a', value_name = "TYPE")]
    pub auth: Option<String>,
    /// `-A` (Allow): ACL allow rules.
    #[arg(short = 'A', value_name = "IP[/MASK]")]
    pub allow: Vec<String>,
    /// `-B` (NTLMToBasic yes).
    #[arg(short = 'B')]
    pub ntlm_to_basic: bool,
    /// `-c`: the config file.
    #[arg(short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// `-d` (Domain).
    #[arg(short = 'd', value_name = "DOMAIN", allow_hyphen_values = true)]
    pub domain: Option<String>,
    /// `-D` (Deny): ACL deny rules.
    #[arg(short = 'D', value_name = "IP[/MASK]")]
    pub deny: Vec<String>,
    /// `-f`: stay in the foreground.
    #[arg(short = 'f')]
    pub foreground: bool,
    /// `-F` (Flags).
    #[arg(short = 'F', value_name = "FLAGS")]
    pub flags: Option<String>,
    /// `-g` (Gateway yes).
    #[arg(short = 'g')]
    pub gateway: bool,
    /// `-G` (ISAScannerAgent).
    #[arg(short = 'G', value_name = "PATTERN")]
    pub isa_scanner_agent: Vec<String>,
    /// `-h`: CNTLM's help (banner on stdout, usage on stderr, exit 1).
    #[arg(short = 'h')]
    pub help: bool,
    /// `--help`: the same help on stdout, exit 0.
    #[arg(long = "help")]
    pub long_help: bool,
    /// `-H`: print the password hashes and exit.
    #[arg(short = 'H')]
    pub hashes: bool,
    /// `-I`: prompt for the password.
    #[arg(short = 'I')]
    pub interactive: bool,
    /// `-l` (Listen).
    #[arg(short = 'l', value_name = "[ADDR:]PORT")]
    pub listen: Vec<String>,
    /// `-L` (Tunnel).
    #[arg(short = 'L', value_name = "[ADDR:]LPORT:RHOST:RPORT")]
    pub tunnel: Vec<String>,
    /// `-M`: magic dialect detection against this URL.
    #[arg(short = 'M', value_name = "URL")]
    pub magic: Option<String>,
    /// `-N` (NoProxy).
    #[arg(short = 'N', value_name = "PATTERNS", allow_hyphen_values = true)]
    pub no_proxy: Vec<String>,
    /// `-O` (SOCKS5Proxy).
    #[arg(short = 'O', value_name = "[ADDR:]PORT")]
    pub socks5: Vec<String>,
    /// `-p` (Password).
    #[arg(short = 'p', value_name = "PASSWORD", allow_hyphen_values = true, value_parser = secret)]
    pub password: Option<Password>,
    /// `-P`: PID file.
    #[arg(short = 'P', value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// `-r` (Header).
    #[arg(short = 'r', value_name = "HEADER", allow_hyphen_values = true)]
    pub header: Vec<String>,
    /// `-R` (SOCKS5Users): `user:pass`, kept secret until split.
    #[arg(short = 'R', value_name = "USER:PASS", allow_hyphen_values = true, value_parser = secret)]
    pub socks5_user: Vec<Password>,
    /// `-s`: serialize requests.
    #[arg(short = 's')]
    pub serialize: bool,
    /// `-S` (ISAScannerSize).
    #[arg(short = 'S', value_name = "KIB")]
    pub isa_scanner_size: Option<String>,
    /// `-T`: debug trace file.
    #[arg(short = 'T', value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// `-u` (Username), `user@domain` also sets the domain.
    #[arg(short = 'u', value_name = "USER[@DOMAIN]", allow_hyphen_values = true)]
    pub user: Option<String>,
    /// `-U`: user to run as.
    #[arg(short = 'U', value_name = "UID|USER")]
    pub run_as: Option<String>,
    /// `-v`: debug logging, implies `-f`.
    #[arg(short = 'v')]
    pub verbose: bool,
    /// `-w` (Workstation).
    #[arg(short = 'w', value_name = "NAME", allow_hyphen_values = true)]
    pub workstation: Option<String>,
    /// `-x` (Pac).
    #[arg(short = 'x', value_name = "FILE|URL")]
    pub pac: Option<String>,
    /// `--check-config`.
    #[arg(long = "check-config")]
    pub check_config: bool,
    /// `--route URL`: explain how a request to URL would leave, then exit.
    #[arg(long = "route", value_name = "URL")]
    pub route: Option<String>,
    /// Parent proxies: `host:port` or `host port`.
    #[arg(value_name = "PROXY")]
    pub parents: Vec<String>,
    /// `-A` and `-D` in command-line order (the first matching rule wins).
    #[arg(skip)]
    pub acl_order: Vec<(AclAction, String)>,
    /// Whether `-d` came after `-u user@domain` (then `-d` wins, as in CNTLM's getopt loop).
    #[arg(skip)]
    pub domain_after_user: bool,
}

fn last_index(matches: &ArgMatches, id: &str) -> Option<usize> {
    matches.indices_of(id).and_then(Iterator::max)
}

impl Args {
    /// Parses an argv (program name first), CNTLM-style.
    pub fn parse_from_argv<I, T>(argv: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Args::command().try_get_matches_from(argv)?;
        let mut args = Args::from_arg_matches(&matches)?;
        let mut acl: Vec<(usize, AclAction, String)> = Vec::new();
        for (id, action, list) in [
            ("allow", AclAction::Allow, &args.allow),
            ("deny", AclAction::Deny, &args.deny),
        ] {
            if let Some(indices) = matches.indices_of(id) {
                acl.extend(
                    indices
                        .zip(list.iter())
                        .map(|(i, value)| (i, action, value.clone())),
                );
            }
        }
        acl.sort_by_key(|(i, _, _)| *i);
        args.acl_order = acl.into_iter().map(|(_, a, v)| (a, v)).collect();
        args.domain_after_user =
            match (last_index(&matches, "domain"), last_index(&matches, "user")) {
                (Some(d), Some(u)) => d > u,
                (Some(_), None) => true,
                _ => false,
            };
        Ok(args)
    }

    /// Validates the flags into `Settings`; errors name the flag and what would be valid.
    pub fn to_settings(&self) -> (Settings, Report) {
        let mut report = Report::default();
        let mut s = Settings::default();
        let mut check = |flag: &str, result: Result<(), ValueError>| {
            if let Err(problem) = result {
                report.error(Origin::CommandLine, flag, problem);
            }
        };
        if let Some(auth) = &self.auth {
            check(
                "-a",
                parse_auth(auth).map(|(choice, dialect)| {
                    s.auth_choice = Some(choice);
                    s.dialect = dialect;
                }),
            );
        }
        for (action, text) in &self.acl_order {
            let flag = if *action == AclAction::Allow {
                "-A"
            } else {
                "-D"
            };
            check(
                flag,
                values::parse_acl(text).map(|parsed| {
                    s.acl
                        .extend(parsed.networks.into_iter().map(|network| AclRule {
                            action: *action,
                            network,
                        }))
                }),
            );
        }
        if self.ntlm_to_basic {
            s.ntlm_to_basic = Some(true);
        }
        if let Some(flags) = &self.flags {
            check("-F", values::parse_flags(flags).map(|f| s.flags = Some(f)));
        }
        if self.gateway {
            s.gateway = Some(true);
        }
        s.isa_scanner_agents = self.isa_scanner_agent.clone();
        for text in &self.listen {
            check("-l", values::parse_listen(text).map(|l| s.listen.push(l)));
        }
        for text in &self.tunnel {
            check("-L", values::parse_tunnel(text).map(|t| s.tunnels.push(t)));
        }
        for text in &self.no_proxy {
            s.no_proxy.extend(values::parse_no_proxy(text));
        }
        for text in &self.socks5 {
            check(
                "-O",
                values::parse_listen(text).map(|l| s.socks5_listen.push(l)),
            );
        }
        if let Some(password) = &self.password {
            if password.is_empty() {
                check("-p", Err(ValueError::EmptyPassword));
            } else {
                s.password = Some(password.clone());
            }
        }
        for text in &self.header {
            check("-r", values::parse_header(text).map(|h| s.headers.push(h)));
        }
        for account in &self.socks5_user {
            check(
                "-R",
                values::parse_socks5_user(account.expose()).map(|a| s.socks5_users.push(a)),
            );
        }
        if self.serialize {
            s.serialize = Some(true);
        }
        if let Some(size) = &self.isa_scanner_size {
            check(
                "-S",
                values::parse_kib(size).map(|k| s.isa_scanner_size = Some(k)),
            );
        }
        // `-u user@domain` splits at the first `@`; a later `-d` still wins.
        if let Some(user) = &self.user {
            match user.split_once('@') {
                Some((name, domain)) => {
                    s.user = Some(name.to_string());
                    s.domain = Some(domain.to_string());
                }
                None => s.user = Some(user.clone()),
            }
        }
        if let Some(domain) = &self.domain
            && (self.domain_after_user || s.domain.is_none())
        {
            s.domain = Some(domain.clone());
        }
        s.workstation = self.workstation.clone();
        s.pac = self.pac.clone();
        let (parents, problems) = parse_parents(&self.parents);
        s.parents = parents;
        for problem in problems {
            check("parent proxy", Err(problem));
        }
        (s, report)
    }
}

/// Positional parent proxies: each is `host:port`, or `host` followed by `port`.
fn parse_parents(words: &[String]) -> (Vec<crate::config::ParentProxy>, Vec<ValueError>) {
    let mut parents = Vec::new();
    let mut problems = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        let next_is_port = words
            .get(i + 1)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let spec = if !word.contains(':') && next_is_port {
            i += 1;
            format!("{word} {}", words[i])
        } else {
            word.clone()
        };
        match values::parse_proxy(&spec) {
            Ok(parent) => parents.push(parent),
            Err(problem) => problems.push(problem),
        }
        i += 1;
    }
    (parents, problems)
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
