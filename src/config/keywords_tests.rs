//! One test per config keyword (STYLE.md), plus the file-level rules: first wins, lists add
//! up, case-insensitivity, unknown keywords, and no panic on any input.

use super::*;
use crate::auth::ntlm::crypto;
use crate::config::Config;

fn read(text: &str) -> FileSettings {
    read_file("cntlm.conf", text.as_bytes())
}

/// Reads a file that must be free of errors and warnings, and resolves it.
fn clean(text: &str) -> Config {
    let file = read(text);
    assert_eq!(file.report, Report::default(), "for {text:?}");
    file.settings.resolve()
}

fn only_error(text: &str) -> String {
    let file = read(text);
    assert_eq!(file.report.errors.len(), 1, "{:?}", file.report);
    file.report.errors[0].to_string()
}

#[test]
fn allow() {
    let c = clean("Allow 127.0.0.1\nAllow 10.0.0.0/8\n");
    assert_eq!(c.acl.len(), 2);
    assert!(c.acl.iter().all(|r| r.action == AclAction::Allow));
    assert_eq!(c.acl[1].network.to_string(), "10.0.0.0/8");
    assert_eq!(
        only_error("Allow 10.0.0.0/40\n"),
        "cntlm.conf:1: Allow: \"10.0.0.0/40\" is not a network with a valid mask \
         (expected ip[/mask], * or 0/0; host names are not resolved)"
    );
}

#[test]
fn deny_keeps_order_with_allow() {
    let c = clean("Allow 127.0.0.1\nDeny 0/0\n");
    assert_eq!(c.acl.len(), 3);
    assert_eq!(c.acl[0].action, AclAction::Allow);
    assert_eq!(c.acl[1].action, AclAction::Deny);
    let loose = read("Deny 10.1.2.3/8\n");
    assert!(
        loose.report.warnings[0]
            .message
            .contains("subnet definition")
    );
}

#[test]
fn auth() {
    assert_eq!(clean("Auth ntlm2sr\n").auth.dialect, NtlmDialect::Ntlm2Sr);
    assert_eq!(clean("auth LM\n").auth.dialect, NtlmDialect::Lm);
    assert_eq!(clean("Auth NT\n").auth.dialect, NtlmDialect::Nt);
    assert_eq!(clean("Auth NTLM\n").auth.dialect, NtlmDialect::Ntlm);
    assert_eq!(clean("Auth ntlmv2\n").auth.dialect, NtlmDialect::NtlmV2);
    assert!(only_error("Auth Kerberos\n").contains("unknown NTLM auth combination"));
    assert_eq!(clean("Auth NTLMv2\n").auth.scheme, AuthChoice::Ntlm);
    assert_eq!(clean("Auth Negotiate\n").auth.scheme, AuthChoice::Negotiate);
    assert_eq!(clean("auth gss\n").auth.scheme, AuthChoice::Negotiate);
    assert_eq!(clean("Auth Basic\n").auth.scheme, AuthChoice::Basic);
    let auto = clean("Auth AUTO\n");
    assert_eq!(auto.auth.scheme, AuthChoice::Auto);
    assert_eq!(
        auto.auth.dialect,
        NtlmDialect::NtlmV2,
        "NTLM under Auto keeps its default"
    );
}

#[test]
fn kerberos_keytab_principal_and_spn() {
    let c = clean(
        "KerberosKeytab /etc/cntlm/robot.keytab\nKerberosPrincipal robot@CORP.EXAMPLE\n\
         kerberosspn HTTP/lb.corp@CORP.EXAMPLE\n",
    );
    assert_eq!(
        c.auth.kerberos.keytab.as_deref(),
        Some(std::path::Path::new("/etc/cntlm/robot.keytab"))
    );
    assert_eq!(
        c.auth.kerberos.principal.as_deref(),
        Some("robot@CORP.EXAMPLE")
    );
    assert_eq!(
        c.auth.kerberos.spn.as_deref(),
        Some("HTTP/lb.corp@CORP.EXAMPLE")
    );
    assert_eq!(
        clean("").auth.kerberos,
        crate::config::KerberosSettings::default()
    );
}

#[test]
fn domain() {
    assert_eq!(clean("Domain corp-uk\n").auth.credentials.domain, "corp-uk");
}

#[test]
fn flags_are_byte_swapped_to_wire_order() {
    assert_eq!(clean("Flags 0x06820000\n").auth.flags, Some(0x0000_8206));
    assert!(only_error("Flags lots\n").contains("Flags: \"lots\" is not a flags value"));
}

#[test]
fn gateway() {
    let c = clean("Gateway yes\nListen 3128\n");
    assert!(c.gateway);
    assert_eq!(c.listen[0].to_string(), "0.0.0.0:3128");
    assert!(!clean("Gateway no\n").gateway);
    let odd = read("Gateway on\n");
    assert!(!odd.settings.resolve().gateway);
    assert_eq!(odd.report.warnings.len(), 1);
}

#[test]
fn header() {
    let c = clean("Header User-Agent: Mozilla/5.0\nHeader X-Test: 1\n");
    assert_eq!(c.headers.len(), 2);
    assert_eq!(c.headers[0].name, "User-Agent");
    assert!(only_error("Header nocolon\n").contains("expected Name: value"));
}

#[test]
fn isa_scanner_agent() {
    let c = clean("ISAScannerAgent Wget/\nISAScannerAgent APT-HTTP/\n");
    assert_eq!(c.isa_scanner_agents, vec!["Wget/", "APT-HTTP/"]);
    assert_eq!(
        c.isa_scanner_size, None,
        "matching User-Agents only (proxy::isa)"
    );
}

#[test]
fn isa_scanner_size() {
    assert_eq!(clean("ISAScannerSize 1024\n").isa_scanner_size, Some(1024));
    assert!(only_error("ISAScannerSize big\n").contains("is not a size"));
}

#[test]
fn listen() {
    let c = clean("Listen 3128\nListen 127.0.0.1:3129\nListen [::1]:3130\n");
    let got: Vec<String> = c.listen.iter().map(|a| a.to_string()).collect();
    assert_eq!(got, vec!["127.0.0.1:3128", "127.0.0.1:3129", "[::1]:3130"]);
    assert_eq!(
        only_error("\n\nListen 31a28\n"),
        "cntlm.conf:3: Listen: \"31a28\" is not a port (expected [address:]port)"
    );
}

#[test]
fn no_proxy() {
    let c = clean("NoProxy localhost, 127.0.0.*\nNoProxy *.corp\n");
    assert_eq!(c.no_proxy, vec!["localhost", "127.0.0.*", "*.corp"]);
}

#[test]
fn ntlm_to_basic() {
    assert!(clean("NTLMToBasic yes\n").ntlm_to_basic);
    assert!(!clean("NTLMToBasic no\n").ntlm_to_basic);
}

#[test]
fn pass_lm() {
    let c = clean("PassLM 1AD35398BE6565DDB5C4EF70C0593492\n");
    let expected = crypto::lm_hash(&Password::new("password"));
    assert_eq!(c.auth.credentials.lm_hash, Some(expected));
}

#[test]
fn pass_nt_inverted_by_default() {
    let c = clean("PassNT 77B9081511704EE852F94227CF48A793\n");
    let expected = crypto::nt_hash(&Password::new("password"));
    assert_eq!(c.auth.credentials.nt_hash, Some(expected));
}

#[test]
fn pass_ntlmv2() {
    let c = clean("PassNTLMv2 1F6839EE15E639893286CF65C5D0A65C\n");
    let nt = crypto::nt_hash(&Password::new("password"));
    let expected = crypto::cntlm_ntlmv2_hash(&nt, "testuser", "corp-uk");
    assert_eq!(c.auth.credentials.ntlmv2_hash, Some(expected));
}

#[test]
fn pass_errors_never_echo_the_secret() {
    let message = only_error("PassNT 0123456789abcdef\n");
    assert!(message.starts_with("cntlm.conf:1: PassNT: the value is not a password hash"));
    assert!(!message.contains("0123456789"));
}

#[test]
fn hash_format_plain_applies_wherever_it_is_written() {
    let text = "PassNT 8846F7EAEE8FB117AD06BDD830B7586C\nHashFormat plain\n";
    let file = read(text);
    assert!(file.report.is_usable());
    let expected = crypto::nt_hash(&Password::new("password"));
    assert_eq!(file.settings.nt_hash, Some(expected));
    assert_eq!(file.settings.resolve().auth.hash_format, HashFormat::Plain);
    assert!(only_error("HashFormat weird\n").contains("expected inverted"));
}

#[test]
fn hash_prefix_and_advice() {
    let implicit = read("PassNT 77B9081511704EE852F94227CF48A793\n");
    assert!(implicit.hash_format_implicit);
    assert!(hash_format_advice(&implicit).is_some_and(|a| a.contains("HashFormat plain")));
    let prefixed = read("PassNT plain:8846F7EAEE8FB117AD06BDD830B7586C\n");
    assert!(!prefixed.hash_format_implicit);
    assert_eq!(
        prefixed.settings.nt_hash,
        Some(crypto::nt_hash(&Password::new("password")))
    );
    assert!(hash_format_advice(&read("Username u\n")).is_none());
}

#[test]
fn password() {
    let c = clean("Password \"pa#ss word\"\n");
    assert_eq!(
        c.auth.credentials.password.as_ref().map(Password::expose),
        Some("pa#ss word")
    );
    // CNTLM's unquoted `#` truncation is kept.
    let c = clean("Password pa#ss\n");
    assert_eq!(
        c.auth.credentials.password.as_ref().map(Password::expose),
        Some("pa")
    );
    assert_eq!(
        only_error("Password \"\"\n"),
        "cntlm.conf:1: Password: an empty password is refused"
    );
}

#[test]
fn proxy() {
    let c = clean("Proxy proxy1.corp:8080\nProxy proxy2.corp 3128\nProxy [fd00::1]:80\n");
    let got: Vec<String> = c.parents.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        got,
        vec!["proxy1.corp:8080", "proxy2.corp:3128", "[fd00::1]:80"]
    );
    assert!(only_error("Proxy proxy1.corp\n").contains("expected host:port or host port"));
}

#[test]
fn socks5_proxy() {
    let c = clean("SOCKS5Proxy 1080\nSOCKS5Proxy 127.0.0.1:1081\n");
    assert_eq!(c.socks5_listen.len(), 2);
    assert_eq!(c.socks5_listen[0].to_string(), "127.0.0.1:1080");
}

#[test]
fn socks5_users_and_the_documented_spelling() {
    let c = clean("SOCKS5Users alice:one\n");
    assert_eq!(c.socks5_users[0].0, "alice");
    let both = read("SOCKS5User bob:two\nsocks5users carol:three\n");
    assert_eq!(both.settings.socks5_users.len(), 2);
    assert_eq!(both.report.warnings.len(), 1);
    assert!(
        both.report.warnings[0]
            .message
            .contains("SOCKS5User read as SOCKS5Users")
    );
}

#[test]
fn tunnel() {
    let c = clean("Tunnel 11443:remote.example:443\nTunnel [::1]:2222:[fd00::5]:22\n");
    assert_eq!(c.tunnels.len(), 2);
    assert_eq!(c.tunnels[0].listen.to_string(), "127.0.0.1:11443");
    assert_eq!(c.tunnels[1].host, "fd00::5");
    assert!(only_error("Tunnel 1:2\n").contains("[laddress:]lport:rhost:rport"));
}

#[test]
fn username_keeps_at_literal() {
    let c = clean("Username user@example\n");
    assert_eq!(c.auth.credentials.user, "user@example");
    assert_eq!(c.auth.credentials.domain, "");
}

#[test]
fn workstation() {
    assert_eq!(
        clean("Workstation LAPTOP1\n").auth.credentials.workstation,
        "LAPTOP1"
    );
}

#[test]
fn pac() {
    assert_eq!(
        clean("Pac http://wpad.corp/wpad.dat\n").pac.as_deref(),
        Some("http://wpad.corp/wpad.dat")
    );
}

#[test]
fn pac_auth_domains_add_up() {
    let c = clean("PacAuthDomains *.corp.example, proxy.example\nPacAuthDomains 10.0.0.0/8\n");
    assert_eq!(
        c.pac_auth_domains,
        vec!["*.corp.example", "proxy.example", "10.0.0.0/8"]
    );
    assert!(clean("").pac_auth_domains.is_empty());
}

#[test]
fn proxy_fallback() {
    assert!(clean("ProxyFallback direct\n").direct_fallback);
    assert!(!clean("ProxyFallback none\n").direct_fallback);
    assert!(!clean("").direct_fallback);
}

#[test]
fn keywords_are_case_insensitive() {
    let c = clean("USERNAME u\nlisten 1\nnTlMtObAsIc YES\n");
    assert_eq!(c.auth.credentials.user, "u");
    assert!(c.ntlm_to_basic);
}

#[test]
fn first_single_value_wins_in_the_file() {
    let file = read("Username first\nUsername second\n");
    assert_eq!(file.settings.user.as_deref(), Some("first"));
    assert_eq!(
        file.report.warnings[0].to_string(),
        "cntlm.conf:2: Username already set on line 1; this line is ignored (the first one \
         wins, as in CNTLM)"
    );
}

#[test]
fn unknown_keyword_is_warned_with_file_and_line() {
    let file = read("Listen 3128\nProxyy p:1\n");
    assert!(file.report.is_usable());
    assert_eq!(
        file.report.warnings[0].to_string(),
        "cntlm.conf:2: unknown keyword \"Proxyy\"; ignored (CNTLM: \"Ignoring config file option\")"
    );
}

#[test]
fn empty_values_are_warned() {
    let file = read("Domain\n");
    assert!(file.report.is_usable());
    assert_eq!(
        file.report.warnings[0].to_string(),
        "cntlm.conf:1: Domain: no value; ignored"
    );
}

#[test]
fn the_sample_config_reads_cleanly() {
    let sample = "\
#\n# Cntlm Authentication Proxy Configuration\n#\n\
Username\ttestuser\nDomain\t\tcorp-uk\nPassword\tpassword\n\
# NOTE: Use plaintext password only at your own risk\n\
Proxy\t\t10.0.0.41:8080\nProxy\t\t10.0.0.42:8080\n\
NoProxy\t\tlocalhost, 127.0.0.*, 10.*, 192.168.*\n\
Listen\t\t3128\n#Gateway\tyes\n#Allow\t\t127.0.0.1\n\
#Header\t\tUser-Agent: Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)\n\
#Tunnel\t\t11443:remote.com:443\n";
    let c = clean(sample);
    assert_eq!(c.parents.len(), 2);
    assert_eq!(c.no_proxy.len(), 4);
    assert_eq!(c.listen[0].to_string(), "127.0.0.1:3128");
}

proptest::proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let file = read_file("fuzz.conf", &bytes);
        let _ = file.settings.resolve();
    }

    #[test]
    fn never_panics_on_keyword_lines(
        keyword in proptest::sample::select(KEYWORDS.iter().map(|(k, _)| *k).collect::<Vec<_>>()),
        value in "[ -~]{0,40}",
    ) {
        let text = format!("{keyword} {value}\n");
        let file = read_file("fuzz.conf", text.as_bytes());
        let _ = crate::config::settings::check_credentials(&file.settings.resolve());
    }
}
