//! The NTLM engine (MS-NLMP): key derivation, challenge responses and the three messages.
//!
//! - `crypto`: LMOWFv1, NTOWFv1, NTOWFv2 and every response dialect (§3.3).
//! - `hashes`: the `Pass*` hex text CNTLM reads and `-H` prints.
//! - `reader`: the bounds-checked cursor every untrusted byte goes through.
//! - `flags`: `NegotiateFlags` (§2.2.2.5) and `AvId` (§2.2.2.1).
//! - `negotiate`, `challenge`, `authenticate`: Type 1, 2 and 3 (§2.2.1.1–§2.2.1.3).
//! - `error`: `NtlmError`, split into malformed, misbehaving and incompatible.
//!
//! The proxy needs two calls: [`negotiate()`] for the Type 1 and [`authenticate()`] for the
//! Type 3 that answers the parent's Type 2. [`authenticate_with`] is the same with the
//! client challenge, the clock and the CNTLM-compatibility profile fixed by the caller.
//!
//! Type 1 is byte for byte CNTLM 0.92.3's. Type 3 keeps CNTLM's layout; where we differ on
//! purpose (each pinned by a test in `tests/ntlm_cntlm.rs` or `tests/ntlm_challenge.rs`):
//! - `Auth NT` sends its NT response (CNTLM sends 24 zero bytes, notes §7.1);
//! - NTLMv2 uses the server's `MsvAvTimestamp` and works without TargetInfo;
//! - by default ([`Type3Profile::Negotiated`]) the Type 3 flags drop what we do not do
//!   (key exchange, signing, sealing, Version) instead of echoing the server's, and the
//!   strings follow the server's UNICODE/OEM choice instead of CNTLM's per-dialect one;
//! - the Type 2 is validated (signature, type, bounds, size) instead of read blindly;
//! - the client challenge comes from the OS CSPRNG.

pub mod authenticate;
pub mod challenge;
pub mod crypto;
pub mod error;
pub mod flags;
pub mod hashes;
pub mod negotiate;
pub mod reader;

pub use authenticate::{AuthenticateMessage, Charset, ResponseInputs, Type3Profile};
pub use challenge::{ChallengeMessage, DEFAULT_MAX_LEN, TargetInfo};
pub use error::{Incompatible, Malformed, Misbehaving, NtlmError};
pub use flags::{AvId, NegotiateFlags};
pub use negotiate::NegotiateMessage;

use crate::auth::{Credentials, NtlmDialect};

/// The Type 1 (NEGOTIATE_MESSAGE) bytes for `dialect`, byte for byte what CNTLM 0.92.3
/// sends: its default flags, or `flags` when the `Flags`/`-F` override is set.
///
/// `flags` is the NegotiateFlags value as MS-NLMP defines it (written little-endian), i.e.
/// CNTLM's `-F` number after the byte swap CNTLM applies; the config layer stores it that
/// way ([`NegotiateFlags::from_cntlm_option`] does the swap).
///
/// A domain or workstation too long for a security buffer (64 KiB) is left out: both are
/// optional in a Type 1, and this keeps the call infallible.
pub fn negotiate(dialect: NtlmDialect, flags: Option<u32>, credentials: &Credentials) -> Vec<u8> {
    let mut message = NegotiateMessage::new(dialect, flags.map(NegotiateFlags), credentials);
    match message.encode() {
        Ok(bytes) => bytes,
        Err(_) => {
            message.domain.clear();
            message.workstation.clear();
            message
                .encode()
                .expect("a Type 1 without payload always fits its security buffers")
        }
    }
}

/// Parses a Type 2 (CHALLENGE_MESSAGE) of at most `max_len` bytes and answers it with the
/// Type 3 (AUTHENTICATE_MESSAGE) bytes for `dialect`, with a fresh client challenge from
/// the OS CSPRNG, the current time, and the default [`Type3Profile::Negotiated`].
pub fn authenticate(
    dialect: NtlmDialect,
    credentials: &Credentials,
    challenge: &[u8],
    max_len: usize,
) -> Result<Vec<u8>, NtlmError> {
    let inputs = ResponseInputs::fresh(Type3Profile::default())?;
    authenticate_with(dialect, credentials, challenge, max_len, &inputs)
}

/// [`authenticate()`] with the client challenge, the fallback time and the profile given:
/// deterministic, for tests and for comparisons with CNTLM.
pub fn authenticate_with(
    dialect: NtlmDialect,
    credentials: &Credentials,
    challenge: &[u8],
    max_len: usize,
    inputs: &ResponseInputs,
) -> Result<Vec<u8>, NtlmError> {
    let challenge = ChallengeMessage::parse(challenge, max_len)?;
    AuthenticateMessage::answer(&challenge, dialect, credentials, inputs)?.encode()
}
