//! Black-box tests of the `cntlm` binary's command line: `-H` byte for byte (cntlm-compat.md
//! §2.5), `--check-config`, `-h`. No network: none of these start the proxy.

use std::io::Write;

use assert_cmd::Command;
use md4::{Digest, Md4};

/// The documented `-H` output for user testuser, domain corp-uk, password "password".
const DOCUMENTED_H: &str = "Password: \n\
PassLM          1AD35398BE6565DDB5C4EF70C0593492\n\
PassNT          77B9081511704EE852F94227CF48A793\n\
PassNTLMv2      1F6839EE15E639893286CF65C5D0A65C    # Only for user 'testuser', domain 'corp-uk'\n";

fn cntlm() -> Command {
    assert_cmd::cargo::cargo_bin_cmd!("cntlm")
}

fn stdout_of(cmd: &mut Command) -> String {
    let output = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(output).expect("stdout is UTF-8")
}

/// Runs a command that must exit with `code`; returns (stdout, stderr).
fn outputs_with_code(cmd: &mut Command, code: i32) -> (String, String) {
    let assert = cmd.assert().code(code);
    let output = assert.get_output();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write temp config");
    file
}

#[test]
fn cntlm_compat_2_5_h_output_is_byte_exact() {
    let out = stdout_of(
        cntlm()
            .args(["-c", "/dev/null", "-H", "-u", "testuser", "-d", "corp-uk"])
            .write_stdin("password\n"),
    );
    assert_eq!(out, DOCUMENTED_H);
}

#[test]
fn h_accepts_crlf_answers() {
    let out = stdout_of(
        cntlm()
            .args(["-c", "/dev/null", "-H", "-u", "testuser", "-d", "corp-uk"])
            .write_stdin("password\r\n"),
    );
    assert_eq!(out, DOCUMENTED_H);
}

#[test]
fn h_with_user_at_domain() {
    let out = stdout_of(
        cntlm()
            .args(["-c", "/dev/null", "-H", "-u", "testuser@corp-uk"])
            .write_stdin("password\n"),
    );
    assert_eq!(out, DOCUMENTED_H);
}

#[test]
fn h_with_username_and_domain_from_the_config_file() {
    let file = config_file("Username\ttestuser\nDomain\t\tcorp-uk\n");
    let path = file.path().to_str().expect("utf-8 temp path");
    let out = stdout_of(cntlm().args(["-c", path, "-H"]).write_stdin("password\n"));
    assert_eq!(out, DOCUMENTED_H);
}

#[test]
fn h_keeps_p_when_stdin_is_at_eof() {
    let out = stdout_of(
        cntlm()
            .args(["-c", "/dev/null", "-H", "-u", "testuser", "-d", "corp-uk"])
            .args(["-p", "password"])
            .write_stdin(""),
    );
    assert_eq!(out, DOCUMENTED_H);
}

#[test]
fn h_answer_wins_over_p_and_password() {
    let file = config_file("Password wrong1\n");
    let path = file.path().to_str().expect("utf-8 temp path");
    let out = stdout_of(
        cntlm()
            .args([
                "-c", path, "-H", "-u", "testuser", "-d", "corp-uk", "-p", "wrong2",
            ])
            .write_stdin("password\n"),
    );
    assert_eq!(out, DOCUMENTED_H);
}

/// Hex of the bitwise complement: CNTLM 0.92.3's `Pass*` format.
fn inverted_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{:02X}", b ^ 0xFF)).collect()
}

#[test]
fn h_hashes_non_ascii_passwords_as_utf16le_unlike_cntlm() {
    let password = "pässwörd€";
    // MS-NLMP §3.3.1 NTOWFv1: MD4 of the UTF-16LE password.
    let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let correct = inverted_hex(&Md4::digest(&utf16));
    // CNTLM 0.92.3 widens each UTF-8 byte to 16 bits instead.
    let widened: Vec<u8> = password.bytes().flat_map(|b| [b, 0]).collect();
    let cntlm_0923 = inverted_hex(&Md4::digest(&widened));
    assert_ne!(correct, cntlm_0923);

    let out = stdout_of(
        cntlm()
            .args(["-c", "/dev/null", "-H", "-u", "testuser", "-d", "corp-uk"])
            .write_stdin(format!("{password}\n")),
    );
    let nt_line = out
        .lines()
        .find(|l| l.starts_with("PassNT "))
        .expect("a PassNT line");
    assert_eq!(nt_line, format!("PassNT          {correct}"));
}

#[test]
fn h_refuses_an_empty_password() {
    let assert = cntlm()
        .args(["-c", "/dev/null", "-H", "-u", "testuser"])
        .write_stdin("\n")
        .assert()
        .failure();
    let output = assert.get_output();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "Password: \n");
    assert!(String::from_utf8_lossy(&output.stderr).contains("an empty password is refused"));
}

#[test]
fn h_refuses_an_empty_p() {
    let out = outputs_with_code(
        cntlm()
            .args(["-c", "/dev/null", "-H", "-u", "testuser", "-p", ""])
            .write_stdin(""),
        1,
    );
    assert!(
        out.1.contains("-p: an empty password is refused"),
        "{out:?}"
    );
}

#[test]
fn check_config_accepts_a_good_file() {
    let file = config_file(
        "# cntlm.conf\nUsername testuser\nDomain corp-uk\n\
         PassNTLMv2 1F6839EE15E639893286CF65C5D0A65C\nProxy 10.0.0.41:8080\nListen 3128\n",
    );
    let path = file.path().to_str().expect("utf-8 temp path");
    let out = stdout_of(cntlm().args(["-c", path, "--check-config"]));
    assert!(out.contains("configuration OK (0 warning(s))"), "{out}");
    assert!(out.contains("parents 10.0.0.41:8080"), "{out}");
    // Pass* lines present and no HashFormat: the ambiguity advice is printed.
    assert!(
        out.contains("note:") && out.contains("HashFormat plain"),
        "{out}"
    );
}

#[test]
fn check_config_reports_every_problem_with_line_numbers() {
    let file = config_file("Username u\nBogus 1\nListen 31a28\nSOCKS5User a:b\nAuth NTLMv3\n");
    let path = file.path().to_str().expect("utf-8 temp path");
    let output = cntlm()
        .args(["-c", path, "--check-config"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(output).expect("utf-8");
    let expected_lines = [
        format!("warning: {path}:2: unknown keyword \"Bogus\""),
        format!("error: {path}:3: Listen: \"31a28\" is not a port (expected [address:]port)"),
        format!("warning: {path}:4: SOCKS5User read as SOCKS5Users"),
        format!("error: {path}:5: Auth: unknown NTLM auth combination \"NTLMv3\""),
    ];
    let mut last = 0;
    for expected in &expected_lines {
        let at = out
            .find(expected.as_str())
            .unwrap_or_else(|| panic!("{expected} in {out}"));
        assert!(at >= last, "lines in file order: {out}");
        last = at;
    }
    assert!(out.contains("2 error(s), 2 warning(s): the configuration is not usable"));
}

#[test]
fn check_config_reports_command_line_errors_too() {
    let out = outputs_with_code(
        cntlm().args(["-c", "/dev/null", "--check-config", "-l", "nope"]),
        1,
    );
    assert!(
        out.0
            .contains("error: command line: -l: \"nope\" is not a port"),
        "{out:?}"
    );
}

#[test]
fn errors_stop_the_proxy_before_it_starts() {
    let file = config_file("Listen 31a28\n");
    let path = file.path().to_str().expect("utf-8 temp path");
    let out = outputs_with_code(cntlm().args(["-c", path, "-f"]), 1);
    assert!(
        out.1.contains(":1: Listen: \"31a28\" is not a port"),
        "{out:?}"
    );
}

#[test]
fn unreadable_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.conf");
    let out = outputs_with_code(
        cntlm().args(["-c", missing.to_str().expect("utf-8"), "-f"]),
        1,
    );
    assert!(out.1.contains("cannot read config file"), "{out:?}");
}

#[test]
fn dash_h_behaves_like_cntlm_but_tells_the_truth() {
    let assert = cntlm().arg("-h").assert().code(1);
    let output = assert.get_output();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.starts_with("cntlm "), "banner on stdout: {stdout}");
    assert!(stderr.contains("Usage: cntlm"), "usage on stderr: {stderr}");
    assert!(stderr.contains("Default: NTLMv2"));
    assert!(stderr.contains("HashFormat plain"));
}

#[test]
fn long_help_goes_to_stdout_with_success() {
    let out = stdout_of(cntlm().arg("--help"));
    assert!(out.contains("Usage: cntlm") && out.contains("--check-config"));
}

#[test]
fn unknown_flag_exits_1() {
    cntlm().args(["-c", "/dev/null", "-q"]).assert().code(1);
}

#[test]
fn magic_without_a_parent_says_so_and_exits_1() {
    let out = outputs_with_code(
        cntlm()
            .args(["-c", "/dev/null", "-M", "http://example.invalid/"])
            .write_stdin(""),
        1,
    );
    assert_eq!(out.0, "Password: \n", "{out:?}");
    assert!(out.1.contains("-M needs a parent proxy"), "{out:?}");
}

#[test]
fn command_line_overrides_the_file_and_file_password_serves_h_at_eof() {
    let file = config_file("Username fileuser\nDomain corp-uk\nPassword password\n");
    let path = file.path().to_str().expect("utf-8 temp path");
    let out = stdout_of(
        cntlm()
            .args(["-c", path, "-H", "-u", "testuser"])
            .write_stdin(""),
    );
    assert_eq!(out, DOCUMENTED_H);
}
