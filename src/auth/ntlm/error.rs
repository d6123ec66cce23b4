//! Why an NTLM exchange cannot go on, split the way rustls splits peer errors:
//! *malformed* (the bytes cannot be parsed), *misbehaving* (they parse but break MS-NLMP),
//! *incompatible* (valid, but beyond what we can or will answer), plus our own side's
//! reasons (missing key material, no randomness).
//!
//! `Display` is one level; the detail is in `source()`.

use crate::auth::NtlmDialect;

/// Why an NTLM message could not be built, parsed or answered.
#[derive(Debug, thiserror::Error)]
pub enum NtlmError {
    /// The peer's message cannot be parsed.
    #[error("malformed ntlm message")]
    Malformed(#[source] Malformed),
    /// The peer's message parses but breaks MS-NLMP.
    #[error("ntlm message breaks the protocol")]
    Misbehaving(#[source] Misbehaving),
    /// The peer's message is valid, but beyond what we can or will answer.
    #[error("ntlm message cannot be answered")]
    Incompatible(#[source] Incompatible),
    /// The configuration lacks the key material `dialect` needs.
    #[error("auth {} needs {needs} (or Password)", .dialect.name())]
    MissingKey {
        /// The dialect that was asked for.
        dialect: NtlmDialect,
        /// The `Pass*` keyword(s) that would have provided the key.
        needs: &'static str,
    },
    /// The operating system's CSPRNG failed to give a client challenge.
    #[error("no randomness for the ntlm client challenge")]
    Random(#[source] getrandom::Error),
}

/// The bytes cannot be parsed as the NTLM message they claim to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Shorter than the fixed header.
    #[error("{len} bytes is shorter than the {min}-byte header")]
    TooShort {
        /// Bytes received.
        len: usize,
        /// Bytes the header needs.
        min: usize,
    },
    /// Does not start with `NTLMSSP\0` (MS-NLMP §2.2.1).
    #[error("no NTLMSSP signature")]
    BadSignature,
    /// The MessageType is not the one expected here.
    #[error("message type {found}, expected {expected}")]
    WrongMessageType {
        /// MessageType read.
        found: u32,
        /// MessageType expected.
        expected: u32,
    },
    /// A security buffer points (partly) outside the message: a lying length or offset.
    #[error(
        "{field} field ({len} bytes at offset {offset}) lies outside the {message_len}-byte message"
    )]
    FieldOutOfBounds {
        /// Which field.
        field: &'static str,
        /// Claimed offset.
        offset: u32,
        /// Claimed length.
        len: u16,
        /// Actual message length.
        message_len: usize,
    },
    /// An AV pair claims more bytes than its TargetInfo field holds (MS-NLMP §2.2.2.1).
    #[error("av pair at byte {at} of target info claims {len} bytes, {available} left")]
    AvPairOverrun {
        /// Offset of the pair inside TargetInfo.
        at: usize,
        /// Its claimed AvLen.
        len: u16,
        /// Bytes left in TargetInfo after its header.
        available: usize,
    },
}

/// The message parses but breaks MS-NLMP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misbehaving {
    /// `MsvAvTimestamp` whose AvLen is not 8 (MS-NLMP §2.2.2.1: a FILETIME).
    #[error("MsvAvTimestamp of {len} bytes, expected 8")]
    TimestampLength {
        /// AvLen read.
        len: u16,
    },
    /// A string field in UTF-16 with an odd number of bytes.
    #[error("{field} is not valid UTF-16LE")]
    NotUtf16 {
        /// Which field.
        field: &'static str,
    },
}

/// The message is valid, but beyond what we can or will answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incompatible {
    /// Longer than the configured limit (16 KiB by default, DESIGN.md §2).
    #[error("{len} bytes is more than the {max}-byte limit")]
    TooLong {
        /// Bytes received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A Type 3 field would not fit its 16-bit length (MS-NLMP §2.2.1.3).
    #[error("{field} would be {len} bytes, more than a security buffer holds")]
    FieldTooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
}

impl From<Malformed> for NtlmError {
    fn from(e: Malformed) -> Self {
        NtlmError::Malformed(e)
    }
}

impl From<Misbehaving> for NtlmError {
    fn from(e: Misbehaving) -> Self {
        NtlmError::Misbehaving(e)
    }
}

impl From<Incompatible> for NtlmError {
    fn from(e: Incompatible) -> Self {
        NtlmError::Incompatible(e)
    }
}
