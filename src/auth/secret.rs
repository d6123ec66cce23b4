//! Secret values: passwords and the 16-byte NTLM hashes derived from them.
//!
//! Every secret lives in its own type so that it cannot reach a log line by accident:
//! `Debug` and `Display` print a fixed placeholder and the memory is wiped on drop.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// A clear-text password (from the config, `-p`, `-I` or a `-H` prompt).
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password; the caller has already refused empty ones where that matters.
    pub fn new(text: impl Into<String>) -> Self {
        Password(text.into())
    }

    /// The clear text, for the hash functions only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the password is the empty string (CNTLM hashes it to all-zero keys; we refuse it).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A 16-byte key derived from a password: LMOWFv1, NTOWFv1 or NTOWFv2 (MS-NLMP §3.3).
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Hash16([u8; 16]);

impl Hash16 {
    /// Wraps raw key bytes.
    pub fn new(bytes: [u8; 16]) -> Self {
        Hash16(bytes)
    }

    /// The raw key bytes, for the response computations only.
    pub fn expose(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for Hash16 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hash16(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let p = Password::new("hunter2");
        assert!(!format!("{p:?} {p}").contains("hunter2"));
        let h = Hash16::new([0xAB; 16]);
        assert!(!format!("{h:?}").to_lowercase().contains("ab"));
    }
}
