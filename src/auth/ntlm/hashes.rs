//! The `PassLM` / `PassNT` / `PassNTLMv2` hex text, and the lines `-H` prints.
//!
//! CNTLM 0.92.3 prints and reads every hash bit-inverted (each byte XOR 0xFF); the
//! maintained fork (0.94) switched to plain hex. Both are 32 hex digits and cannot be told
//! apart, so the format is a setting (`HashFormat`), and a value may carry an explicit
//! `plain:` or `inverted:` prefix that wins over it.

use std::fmt::Write as _;

use crate::auth::ntlm::crypto;
use crate::auth::secret::{Hash16, Password};

/// How the 32 hex digits of a `Pass*` value encode the 16 key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashFormat {
    /// CNTLM 0.92.3 (every distribution's): hex of the bitwise complement.
    #[default]
    Inverted,
    /// The maintained fork (0.94+): hex of the bytes themselves.
    Plain,
}

impl HashFormat {
    /// Parses the `HashFormat` keyword's value (`inverted`/`cntlm` or `plain`).
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "inverted" | "cntlm" | "0.92" | "0.92.3" => Some(HashFormat::Inverted),
            "plain" | "0.94" => Some(HashFormat::Plain),
            _ => None,
        }
    }
}

/// Why a `Pass*` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashTextError {
    /// Not 32 hexadecimal digits.
    #[error(
        "expected 32 hexadecimal digits (as printed by cntlm -H), optionally prefixed by plain: or inverted:"
    )]
    NotHex,
}

/// Decodes a `Pass*` value: 32 hex digits, optionally prefixed `plain:` or `inverted:`.
pub fn decode(text: &str, default: HashFormat) -> Result<Hash16, HashTextError> {
    let (format, digits) = if let Some(rest) = strip_prefix_ci(text, "plain:") {
        (HashFormat::Plain, rest)
    } else if let Some(rest) = strip_prefix_ci(text, "inverted:") {
        (HashFormat::Inverted, rest)
    } else {
        (default, text)
    };
    let digits = digits.trim().as_bytes();
    if digits.len() != 32 {
        return Err(HashTextError::NotHex);
    }
    let mut out = [0u8; 16];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let hi = hex_value(pair[0]).ok_or(HashTextError::NotHex)?;
        let lo = hex_value(pair[1]).ok_or(HashTextError::NotHex)?;
        out[i] = (hi << 4) | lo;
    }
    if format == HashFormat::Inverted {
        out.iter_mut().for_each(|b| *b ^= 0xFF);
    }
    Ok(Hash16::new(out))
}

/// Encodes a hash as 32 upper-case hex digits in `format`.
pub fn encode(hash: &Hash16, format: HashFormat) -> String {
    let mask = match format {
        HashFormat::Inverted => 0xFF,
        HashFormat::Plain => 0x00,
    };
    let mut out = String::with_capacity(32);
    for b in hash.expose() {
        let _ = write!(out, "{:02X}", b ^ mask);
    }
    out
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// The three lines `cntlm -H` prints after the prompt, byte for byte as CNTLM 0.92.3.
pub fn h_output(password: &Password, user: &str, domain: &str, format: HashFormat) -> String {
    let lm = crypto::lm_hash(password);
    let nt = crypto::nt_hash(password);
    let v2 = crypto::cntlm_ntlmv2_hash(&nt, user, domain);
    format!(
        "PassLM          {}\nPassNT          {}\nPassNTLMv2      {}    # Only for user '{}', domain '{}'\n",
        encode(&lm, format),
        encode(&nt, format),
        encode(&v2, format),
        user,
        domain
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cntlm_h_output_for_the_documented_example() {
        let out = h_output(
            &Password::new("password"),
            "testuser",
            "corp-uk",
            HashFormat::Inverted,
        );
        assert_eq!(
            out,
            "PassLM          1AD35398BE6565DDB5C4EF70C0593492\n\
             PassNT          77B9081511704EE852F94227CF48A793\n\
             PassNTLMv2      1F6839EE15E639893286CF65C5D0A65C    # Only for user 'testuser', domain 'corp-uk'\n"
        );
    }

    #[test]
    fn decode_reads_both_formats_and_prefixes() {
        let nt = crypto::nt_hash(&Password::new("password"));
        let inv = decode("77B9081511704EE852F94227CF48A793", HashFormat::Inverted)
            .expect("valid hash text");
        assert_eq!(inv, nt);
        let plain = decode(
            "plain:8846f7eaee8fb117ad06bdd830b7586c",
            HashFormat::Inverted,
        )
        .expect("valid hash text");
        assert_eq!(plain, nt);
        let plain2 =
            decode("8846F7EAEE8FB117AD06BDD830B7586C", HashFormat::Plain).expect("valid hash text");
        assert_eq!(plain2, nt);
        assert_eq!(decode("xyz", HashFormat::Plain), Err(HashTextError::NotHex));
        assert_eq!(
            decode("8846F7EAEE8FB117AD06BDD830B7586Z", HashFormat::Plain),
            Err(HashTextError::NotHex)
        );
    }
}
