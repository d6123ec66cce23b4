//! A small test per flag (ripgrep style): attached and separate values, repetition, and
//! what each flag turns into.

use super::*;
use crate::auth::NtlmDialect;
use crate::config::Config;

fn args(argv: &[&str]) -> Args {
    let mut full = vec!["cntlm"];
    full.extend_from_slice(argv);
    Args::parse_from_argv(full).expect("valid command line")
}

/// Resolves a command line alone (no config file) that must be free of errors.
fn config(argv: &[&str]) -> Config {
    let (settings, report) = args(argv).to_settings();
    assert!(report.is_usable(), "{report:?}");
    settings.resolve()
}

fn error(argv: &[&str]) -> String {
    let (_, report) = args(argv).to_settings();
    assert_eq!(report.errors.len(), 1, "{report:?}");
    report.errors[0].to_string()
}

#[test]
fn flag_a() {
    assert_eq!(config(&["-a", "ntlm"]).auth.dialect, NtlmDialect::Ntlm);
    assert_eq!(config(&["-aLM"]).auth.dialect, NtlmDialect::Lm);
    assert_eq!(
        config(&["-a", "negotiate"]).auth.scheme,
        crate::config::AuthChoice::Negotiate
    );
    assert_eq!(
        config(&["-aAuto"]).auth.scheme,
        crate::config::AuthChoice::Auto
    );
    assert_eq!(config(&[]).auth.dialect, NtlmDialect::NtlmV2);
    // Last one wins on the command line.
    assert_eq!(
        config(&["-a", "LM", "-a", "NT"]).auth.dialect,
        NtlmDialect::Nt
    );
    assert!(error(&["-a", "bogus"]).starts_with("command line: -a: unknown NTLM auth combination"));
}

#[test]
fn flag_a_upper_and_d_upper_keep_their_order() {
    let c = config(&["-A", "127.0.0.1", "-D", "10.0.0.0/8", "-A10.1.0.0/16"]);
    let got: Vec<(AclAction, String)> = c
        .acl
        .iter()
        .map(|r| (r.action, r.network.to_string()))
        .collect();
    assert_eq!(
        got,
        vec![
            (AclAction::Allow, "127.0.0.1/32".into()),
            (AclAction::Deny, "10.0.0.0/8".into()),
            (AclAction::Allow, "10.1.0.0/16".into()),
        ]
    );
    assert!(error(&["-D", "nonsense"]).starts_with("command line: -D:"));
}

#[test]
fn flag_b_upper() {
    assert!(config(&["-B"]).ntlm_to_basic);
    assert!(!config(&[]).ntlm_to_basic);
}

#[test]
fn flag_c() {
    assert_eq!(
        args(&["-c", "/etc/x.conf"]).config,
        Some(PathBuf::from("/etc/x.conf"))
    );
    assert_eq!(
        args(&["-c/dev/null"]).config,
        Some(PathBuf::from("/dev/null"))
    );
}

#[test]
fn flag_d() {
    assert_eq!(
        config(&["-d", "corp-uk"]).auth.credentials.domain,
        "corp-uk"
    );
    assert_eq!(config(&["-dA", "-dB"]).auth.credentials.domain, "B");
}

#[test]
fn flag_f() {
    assert!(args(&["-f"]).foreground);
    assert!(args(&["-fv"]).verbose);
}

#[test]
fn flag_f_upper() {
    assert_eq!(config(&["-F", "0x06820000"]).auth.flags, Some(0x8206));
    assert_eq!(config(&["-F0x07820000"]).auth.flags, Some(0x8207));
    assert!(error(&["-F", "x"]).starts_with("command line: -F:"));
}

#[test]
fn flag_g() {
    let c = config(&["-g", "-l", "3128"]);
    assert!(c.gateway);
    assert_eq!(c.listen[0].to_string(), "0.0.0.0:3128");
    // Unlike CNTLM, position does not matter.
    assert_eq!(
        config(&["-l", "3128", "-g"]).listen[0].to_string(),
        "0.0.0.0:3128"
    );
}

#[test]
fn flag_g_upper() {
    let c = config(&["-G", "Wget/", "-G", "APT"]);
    assert_eq!(c.isa_scanner_agents, vec!["Wget/", "APT"]);
}

#[test]
fn flag_h_and_help() {
    assert!(args(&["-h"]).help);
    assert!(args(&["--help"]).long_help);
    assert!(USAGE.contains("Default: NTLMv2"));
}

#[test]
fn flag_h_upper() {
    assert!(args(&["-H"]).hashes);
}

#[test]
fn flag_i_upper() {
    assert!(args(&["-I"]).interactive);
}

#[test]
fn flag_l() {
    let c = config(&["-l", "3128", "-l127.0.0.2:3129", "-l", "[::1]:3130"]);
    let got: Vec<String> = c.listen.iter().map(|a| a.to_string()).collect();
    assert_eq!(got, vec!["127.0.0.1:3128", "127.0.0.2:3129", "[::1]:3130"]);
    assert_eq!(
        error(&["-l", "31a28"]),
        "command line: -l: \"31a28\" is not a port (expected [address:]port)"
    );
}

#[test]
fn flag_l_upper() {
    let c = config(&["-L", "8443:remote:443", "-L", "127.0.0.1:2222:git:22"]);
    assert_eq!(c.tunnels.len(), 2);
    assert_eq!(c.tunnels[1].listen.to_string(), "127.0.0.1:2222");
    assert!(error(&["-L", "8443:remote"]).contains("[laddress:]lport:rhost:rport"));
}

#[test]
fn flag_m_upper() {
    assert_eq!(
        args(&["-M", "http://example.com/"]).magic.as_deref(),
        Some("http://example.com/")
    );
}

#[test]
fn flag_n_upper() {
    let c = config(&["-N", "localhost, 10.*", "-N", "*.corp"]);
    assert_eq!(c.no_proxy, vec!["localhost", "10.*", "*.corp"]);
}

#[test]
fn flag_o_upper() {
    let c = config(&["-O", "1080"]);
    assert_eq!(c.socks5_listen[0].to_string(), "127.0.0.1:1080");
}

#[test]
fn flag_p() {
    let c = config(&["-p", "-starts-with-dash"]);
    assert_eq!(
        c.auth.credentials.password.as_ref().map(Password::expose),
        Some("-starts-with-dash")
    );
    assert!(!format!("{:?}", args(&["-p", "hunter2"])).contains("hunter2"));
    assert!(error(&["-p", ""]).contains("empty password is refused"));
}

#[test]
fn flag_p_upper() {
    assert_eq!(
        args(&["-P", "/run/cntlm.pid"]).pid_file,
        Some(PathBuf::from("/run/cntlm.pid"))
    );
}

#[test]
fn flag_r() {
    let c = config(&["-r", "User-Agent: curl", "-r", "X-A: 1"]);
    assert_eq!(c.headers.len(), 2);
    assert!(error(&["-r", "bad"]).contains("expected Name: value"));
}

#[test]
fn flag_r_upper() {
    let c = config(&["-R", "alice:one", "-R", "bob:two"]);
    assert_eq!(c.socks5_users.len(), 2);
    assert!(!format!("{:?}", args(&["-R", "alice:s3cr3t"])).contains("s3cr3t"));
    let message = error(&["-R", "alice"]);
    assert!(!message.contains("alice"));
}

#[test]
fn flag_s() {
    assert!(config(&["-s"]).serialize);
}

#[test]
fn flag_s_upper() {
    assert_eq!(config(&["-S", "2048"]).isa_scanner_size, Some(2048));
    assert!(error(&["-S", "2M"]).starts_with("command line: -S:"));
}

#[test]
fn flag_t_upper() {
    assert_eq!(
        args(&["-T", "trace.log"]).trace,
        Some(PathBuf::from("trace.log"))
    );
}

#[test]
fn flag_u() {
    let c = config(&["-u", "testuser"]);
    assert_eq!(c.auth.credentials.user, "testuser");
    let c = config(&["-u", "testuser@corp-uk"]);
    assert_eq!(
        (
            c.auth.credentials.user.as_str(),
            c.auth.credentials.domain.as_str()
        ),
        ("testuser", "corp-uk")
    );
    // Splits at the first `@`.
    assert_eq!(config(&["-u", "a@b@c"]).auth.credentials.domain, "b@c");
    // Whichever of -u user@dom and -d comes last sets the domain, as in CNTLM.
    assert_eq!(
        config(&["-d", "x", "-u", "u@y"]).auth.credentials.domain,
        "y"
    );
    assert_eq!(
        config(&["-u", "u@y", "-d", "x"]).auth.credentials.domain,
        "x"
    );
}

#[test]
fn flag_u_upper() {
    assert_eq!(args(&["-U", "nobody"]).run_as.as_deref(), Some("nobody"));
}

#[test]
fn flag_v() {
    assert!(args(&["-v"]).verbose);
    assert!(args(&["-v", "-v"]).verbose);
}

#[test]
fn flag_w() {
    assert_eq!(
        config(&["-w", "LAPTOP"]).auth.credentials.workstation,
        "LAPTOP"
    );
}

#[test]
fn flag_x() {
    assert_eq!(
        config(&["-x", "/etc/proxy.pac"]).pac.as_deref(),
        Some("/etc/proxy.pac")
    );
}

#[test]
fn flag_check_config() {
    assert!(args(&["--check-config"]).check_config);
}

#[test]
fn flag_route() {
    assert_eq!(
        args(&["--route", "https://example.com/"]).route.as_deref(),
        Some("https://example.com/")
    );
    assert_eq!(args(&["-f"]).route, None);
}

#[test]
fn positional_parents_in_both_forms() {
    let c = config(&["-f", "proxy1:8080", "proxy2", "3128", "[fd00::1]:80"]);
    let got: Vec<String> = c.parents.iter().map(|p| p.to_string()).collect();
    assert_eq!(got, vec!["proxy1:8080", "proxy2:3128", "[fd00::1]:80"]);
    assert!(error(&["proxy-without-port"]).starts_with("command line: parent proxy:"));
}

#[test]
fn options_after_positionals_are_still_options() {
    let a = args(&["proxy:8080", "-f"]);
    assert!(a.foreground);
    assert_eq!(a.parents, vec!["proxy:8080"]);
}

#[test]
fn unknown_flags_are_rejected() {
    assert!(Args::parse_from_argv(["cntlm", "-q"]).is_err());
    assert!(Args::parse_from_argv(["cntlm", "-l"]).is_err());
}
