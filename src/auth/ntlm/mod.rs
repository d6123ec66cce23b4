//! The NTLM engine (MS-NLMP): key derivation, challenge responses and the three messages.
//!
//! - `crypto`: LMOWFv1, NTOWFv1, NTOWFv2 and every response dialect (§3.3).
//! - `hashes`: the `Pass*` hex text CNTLM reads and `-H` prints.

pub mod crypto;
pub mod hashes;

use crate::auth::{Credentials, NtlmDialect};

/// Why an NTLM exchange cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum NtlmError {
    /// Placeholder until the message layer lands.
    #[error("ntlm message layer not built yet")]
    Unsupported,
}

/// The Type 1 (NEGOTIATE_MESSAGE) bytes for `dialect`, with CNTLM's default flags or the
/// `Flags` override (already in wire order).
pub fn negotiate(
    _dialect: NtlmDialect,
    _flags: Option<u32>,
    _credentials: &Credentials,
) -> Vec<u8> {
    Vec::new()
}

/// Parses a Type 2 (CHALLENGE_MESSAGE) of at most `max_len` bytes and answers it with the
/// Type 3 (AUTHENTICATE_MESSAGE) bytes for `dialect`, with a fresh client challenge.
pub fn authenticate(
    _dialect: NtlmDialect,
    _credentials: &Credentials,
    _challenge: &[u8],
    _max_len: usize,
) -> Result<Vec<u8>, NtlmError> {
    Err(NtlmError::Unsupported)
}
