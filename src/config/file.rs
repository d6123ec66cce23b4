//! The reader for CNTLM's `Keyword value` config grammar (cntlm-compat.md §2.3).
//!
//! - A line is `<alphanumeric keyword><whitespace><value>`; keywords are matched
//!   case-insensitively later (`keywords`), here they are only split off.
//! - A line whose first non-blank character is `#` or `;` is a comment; blank lines and
//!   `[section]` lines (the `cntlm.ini` habit) have no effect.
//! - An unquoted value ends at the first `#` (not `;`) and loses its trailing whitespace, so
//!   `Password pa#ss` is `pa`, exactly as in CNTLM 0.92.3.
//! - A value starting with `"` is taken literally up to the next `"`, without escapes.
//!
//! Deliberate differences from 0.92.3, each reported as a warning:
//! - 0.92.3 drops a last line that has no newline (an `feof` check); we read it.
//! - 0.92.3 cuts lines at 4096 bytes and values at 49 bytes (its 50-byte buffers); we cut
//!   nothing, so a long password or header is used whole.
//! - A UTF-8 byte-order mark (Notepad writes one into `cntlm.ini`) is skipped; invalid UTF-8
//!   is replaced by U+FFFD and reported.
//!
//! The reader never fails and never panics: every input gives entries plus warnings.

use std::fmt;

/// One `Keyword value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number.
    pub line: usize,
    /// The keyword as written (case kept, for messages).
    pub keyword: String,
    /// The value: unquoted and comment-stripped, or the literal text between quotes.
    pub value: String,
}

/// Something the reader worked around, with the line it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileWarning {
    /// The last line had no newline: CNTLM 0.92.3 ignores such a line, we read it.
    LastLineWithoutNewline,
    /// A line that is neither a comment, a section, nor `Keyword value`.
    Malformed,
    /// A `"` without its closing `"`: the rest of the line was taken as the value.
    UnterminatedQuote,
    /// Text after a closing quote that is not a comment; it was ignored.
    TextAfterQuote,
    /// The file is not valid UTF-8; bad bytes were replaced by U+FFFD.
    NotUtf8,
}

impl fmt::Display for FileWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileWarning::LastLineWithoutNewline => {
                "the last line has no newline: CNTLM 0.92.3 ignores such a line, cntlm reads it"
            }
            FileWarning::Malformed => "not a comment, [section] or \"Keyword value\" line; ignored",
            FileWarning::UnterminatedQuote => {
                "a quoted value has no closing '\"'; the rest of the line is taken as the value"
            }
            FileWarning::TextAfterQuote => "text after the closing '\"' ignored",
            FileWarning::NotUtf8 => {
                "not valid UTF-8; invalid bytes were replaced (save the file as UTF-8)"
            }
        })
    }
}

/// The lines of one config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigText {
    /// The `Keyword value` lines, in file order.
    pub entries: Vec<Entry>,
    /// `(line, warning)` pairs, line 1-based.
    pub warnings: Vec<(usize, FileWarning)>,
}

/// Splits a config file into entries. Never fails; see the module docs for the grammar.
pub fn parse(bytes: &[u8]) -> ConfigText {
    let mut out = ConfigText::default();
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => {
            out.warnings.push((1, FileWarning::NotUtf8));
            String::from_utf8_lossy(bytes)
        }
    };
    let unterminated = !text.is_empty() && !text.ends_with('\n');
    let line_count = text.split('\n').count();
    for (index, raw) in text.split('\n').enumerate() {
        let number = index + 1;
        let is_last = number == line_count;
        if let Some(entry) = parse_line(raw, number, &mut out.warnings) {
            if is_last && unterminated {
                out.warnings
                    .push((number, FileWarning::LastLineWithoutNewline));
            }
            out.entries.push(entry);
        }
    }
    out
}

/// CNTLM's `isspace`: blank, tab, CR, vertical tab, form feed (and newline, already split).
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\x0B' | '\x0C' | '\n')
}

fn parse_line(raw: &str, number: usize, warnings: &mut Vec<(usize, FileWarning)>) -> Option<Entry> {
    let line = raw.trim_start_matches(is_space);
    if line.trim_end_matches(is_space).is_empty()
        || line.starts_with('#')
        || line.starts_with(';')
        || line.starts_with('[')
    {
        return None;
    }
    let keyword_len = line
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(keyword_len);
    if keyword.is_empty() || !rest.is_empty() && !rest.starts_with(is_space) {
        warnings.push((number, FileWarning::Malformed));
        return None;
    }
    let rest = rest.trim_start_matches(is_space);
    let value = if let Some(quoted) = rest.strip_prefix('"') {
        match quoted.split_once('"') {
            Some((value, after)) => {
                let after = after.trim_matches(is_space);
                if !after.is_empty() && !after.starts_with('#') {
                    warnings.push((number, FileWarning::TextAfterQuote));
                }
                value
            }
            None => {
                warnings.push((number, FileWarning::UnterminatedQuote));
                quoted.trim_end_matches(is_space)
            }
        }
    } else {
        let end = rest.find('#').unwrap_or(rest.len());
        rest[..end].trim_end_matches(is_space)
    };
    Some(Entry {
        line: number,
        keyword: keyword.to_string(),
        value: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(usize, String, String)> {
        parse(text.as_bytes())
            .entries
            .into_iter()
            .map(|e| (e.line, e.keyword, e.value))
            .collect()
    }

    fn one(text: &str) -> String {
        let all = entries(text);
        assert_eq!(all.len(), 1, "{all:?}");
        all[0].2.clone()
    }

    #[test]
    fn keyword_and_value_split_on_whitespace() {
        assert_eq!(
            entries("Username\ttestuser\n  Domain   corp-uk  \n"),
            vec![
                (1, "Username".into(), "testuser".into()),
                (2, "Domain".into(), "corp-uk".into())
            ]
        );
    }

    #[test]
    fn comments_blank_lines_and_sections_are_skipped() {
        let text = "# comment\n; also a comment\n\n   \n[Global]\nListen 3128\n";
        assert_eq!(entries(text), vec![(6, "Listen".into(), "3128".into())]);
    }

    #[test]
    fn cntlm_compat_2_3_unquoted_value_ends_at_hash() {
        assert_eq!(one("Password pa#ss\n"), "pa");
        assert_eq!(one("Listen 3128   # the port\n"), "3128");
        // `;` is not a comment inside a value.
        assert_eq!(one("NoProxy a;b\n"), "a;b");
    }

    #[test]
    fn cntlm_compat_2_3_quoted_value_is_literal() {
        assert_eq!(one("Password \"pa#ss word\"\n"), "pa#ss word");
        assert_eq!(one("Password \"\"\n"), "");
        assert_eq!(one("Password \"a\\\"\n"), "a\\");
    }

    #[test]
    fn unterminated_quote_takes_the_rest_and_warns() {
        let parsed = parse(b"Password \"abc def  \n");
        assert_eq!(parsed.entries[0].value, "abc def");
        assert_eq!(parsed.warnings, vec![(1, FileWarning::UnterminatedQuote)]);
    }

    #[test]
    fn text_after_quote_warns_but_comment_does_not() {
        assert!(parse(b"Domain \"x\" # fine\n").warnings.is_empty());
        assert_eq!(
            parse(b"Domain \"x\" y\n").warnings,
            vec![(1, FileWarning::TextAfterQuote)]
        );
    }

    #[test]
    fn cntlm_compat_2_3_last_line_without_newline_is_read_and_warned() {
        let parsed = parse(b"Username u\nWorkstation WS");
        assert_eq!(parsed.entries.len(), 2);
        assert_eq!(parsed.entries[1].value, "WS");
        assert_eq!(
            parsed.warnings,
            vec![(2, FileWarning::LastLineWithoutNewline)]
        );
        // A trailing comment without newline is nothing to warn about.
        assert!(parse(b"Username u\n# end").warnings.is_empty());
    }

    #[test]
    fn crlf_line_endings_are_trimmed() {
        assert_eq!(
            entries("Username u\r\nDomain \"d\"\r\n"),
            vec![
                (1, "Username".into(), "u".into()),
                (2, "Domain".into(), "d".into())
            ]
        );
    }

    #[test]
    fn long_values_are_not_truncated_like_cntlm_does_at_49_bytes() {
        let long = "x".repeat(300);
        assert_eq!(one(&format!("Password {long}\n")), long);
    }

    #[test]
    fn keyword_without_value_gives_an_empty_value() {
        assert_eq!(entries("Gateway\n"), vec![(1, "Gateway".into(), "".into())]);
    }

    #[test]
    fn malformed_lines_are_warned_and_skipped() {
        let parsed = parse(b"Listen=3128\n-x y\n");
        assert!(parsed.entries.is_empty());
        assert_eq!(
            parsed.warnings,
            vec![(1, FileWarning::Malformed), (2, FileWarning::Malformed)]
        );
    }

    #[test]
    fn bom_is_skipped_and_invalid_utf8_reported() {
        assert_eq!(one("\u{FEFF}Listen 3128\n"), "3128");
        let parsed = parse(b"Domain \xFFx\n");
        assert_eq!(parsed.entries[0].value, "\u{FFFD}x");
        assert_eq!(parsed.warnings, vec![(1, FileWarning::NotUtf8)]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let parsed = parse(&bytes);
            for entry in parsed.entries {
                proptest::prop_assert!(!entry.keyword.is_empty());
                proptest::prop_assert!(entry.keyword.chars().all(|c| c.is_ascii_alphanumeric()));
            }
        }
    }
}
