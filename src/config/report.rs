//! What went wrong (or looks suspicious) in a configuration, and where.
//!
//! Every problem names its origin (`cntlm.conf:12` or the command-line flag), the keyword and
//! what would be valid, so `--check-config` can print them all at once and `main` can refuse
//! to start on the first error list instead of the first error.

use std::fmt;

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of a config file (1-based).
    File {
        /// The file as the user named it.
        path: String,
        /// 1-based line number.
        line: usize,
    },
    /// A command-line flag such as `-l` or a positional parent proxy.
    CommandLine,
    /// The combination of every source (e.g. `Auth` against the credentials given).
    Combined,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{path}:{line}"),
            Origin::CommandLine => f.write_str("command line"),
            Origin::Combined => f.write_str("configuration"),
        }
    }
}

/// What is wrong with one value.
///
/// Values that are secrets (passwords, hashes, SOCKS5 accounts) are never echoed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A value that does not parse as the keyword needs.
    #[error("{value:?} is not {what} (expected {expected})")]
    Invalid {
        /// The offending text, as written.
        value: String,
        /// What it should have been ("a port").
        what: &'static str,
        /// The accepted syntax ("[address:]port").
        expected: &'static str,
    },
    /// A secret value that does not parse; the value itself is not repeated.
    #[error("the value is not {what} (expected {expected})")]
    InvalidSecret {
        /// What it should have been.
        what: &'static str,
        /// The accepted syntax.
        expected: &'static str,
    },
    /// `Auth` / `-a` with a dialect we do not know (CNTLM: "Unknown NTLM auth combination.").
    #[error(
        "unknown NTLM auth combination {value:?} (expected NTLMv2, NTLM2SR, NTLM, NT, LM, Negotiate, Basic or Auto)"
    )]
    UnknownAuth {
        /// The value given.
        value: String,
    },
    /// An empty password: CNTLM hashes it into keys every parent rejects; we refuse it.
    #[error("an empty password is refused")]
    EmptyPassword,
    /// The keyword has no value at all.
    #[error("missing value")]
    MissingValue,
    /// The configuration as a whole cannot work (e.g. the dialect needs a hash nobody gave).
    #[error("{0}")]
    Unusable(String),
}

/// An error in one setting: `cntlm.conf:12: Listen: "31a28" is not a port (expected [address:]port)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {keyword}: {problem}")]
pub struct ConfigError {
    /// Where it was written.
    pub origin: Origin,
    /// The keyword (`Listen`) or flag (`-l`).
    pub keyword: String,
    /// What is wrong and what would be valid.
    pub problem: ValueError,
}

/// Something that works but deserves the user's attention (a fixed CNTLM quirk, a typo...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Where, when it is tied to one place.
    pub origin: Option<Origin>,
    /// The message, lower case, no trailing period.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(origin) => write!(f, "{origin}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every error and warning found while reading and resolving a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Problems that make the configuration unusable.
    pub errors: Vec<ConfigError>,
    /// Problems we worked around.
    pub warnings: Vec<ConfigWarning>,
}

impl Report {
    /// Records an error.
    pub fn error(&mut self, origin: Origin, keyword: impl Into<String>, problem: ValueError) {
        self.errors.push(ConfigError {
            origin,
            keyword: keyword.into(),
            problem,
        });
    }

    /// Records a warning.
    pub fn warn(&mut self, origin: Option<Origin>, message: impl Into<String>) {
        self.warnings.push(ConfigWarning {
            origin,
            message: message.into(),
        });
    }

    /// Appends another report's findings.
    pub fn extend(&mut self, other: Report) {
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
    }

    /// Whether no error was found (warnings allowed).
    pub fn is_usable(&self) -> bool {
        self.errors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_names_file_line_keyword_and_expectation() {
        let err = ConfigError {
            origin: Origin::File {
                path: "cntlm.conf".into(),
                line: 12,
            },
            keyword: "Listen".into(),
            problem: ValueError::Invalid {
                value: "31a28".into(),
                what: "a port",
                expected: "[address:]port",
            },
        };
        assert_eq!(
            err.to_string(),
            "cntlm.conf:12: Listen: \"31a28\" is not a port (expected [address:]port)"
        );
    }

    #[test]
    fn secret_errors_do_not_repeat_the_value() {
        let err = ConfigError {
            origin: Origin::CommandLine,
            keyword: "-R".into(),
            problem: ValueError::InvalidSecret {
                what: "an account",
                expected: "user:password",
            },
        };
        assert_eq!(
            err.to_string(),
            "command line: -R: the value is not an account (expected user:password)"
        );
    }
}
