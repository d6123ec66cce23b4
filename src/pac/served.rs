//! The PAC cntlm serves at `http://<listen>/proxy.pac` for clients that only take a PAC URL:
//! everything goes through cntlm, and DIRECT if cntlm is not running.

/// A PAC script sending every URL to `proxy` (`host:port` as clients should reach cntlm, e.g.
/// the listen address or the `Host` the PAC request came in on), then DIRECT.
///
/// `proxy` is embedded as a JavaScript string literal with every character outside
/// `[A-Za-z0-9.:-_[]]` escaped, so a hostile `Host` header cannot inject script.
pub fn served_pac(proxy: &str) -> String {
    let mut literal = String::with_capacity(proxy.len() + 2);
    for c in proxy.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '_' | '[' | ']') {
            literal.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                literal.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    format!(
        "// Served by cntlm: every request through the local cntlm proxy, DIRECT if it is down.\n\
         function FindProxyForURL(url, host) {{\n  return \"PROXY \" + \"{literal}\" + \"; DIRECT\";\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_end_the_string() {
        let pac = served_pac("a\"b\\c\n;</");
        assert!(
            pac.contains(r#""a\u0022b\u005cc\u000a\u003b\u003c\u002f""#),
            "{pac}"
        );
    }
}
